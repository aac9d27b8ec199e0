"""Per-task experience replay as ring buffers in device memory.

All tasks write the same number of transitions each vector step, so one write
position and one fill level serve every task; arrays carry a leading task axis
``(tasks, capacity, ...)``.  Sampling draws the same number of transitions from
every task, giving the mixed-task batch ``(tasks, batch, ...)`` the loss needs.
Storing ``next_obs`` explicitly (rather than the following slot) keeps
truncated and auto-reset transitions correct at no bookkeeping cost.

n-step returns (``--n-step``) are formed when sampling, not when writing
(:func:`replay_sample_n_step`): an env's transitions lie ``num_envs`` slots
apart, so the n steps after a sampled one are read from the ring itself, and
the buffer then also stores whether each transition ended its episode
(``done``; absent, ``None``, with 1-step targets, so their replay is what it
was).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

__all__ = ["Replay", "Transition", "replay_init", "replay_add", "replay_sample", "replay_sample_n_step",
           "n_step_transitions"]


@struct.dataclass
class Transition:
    """A batch of transitions; every field has leading axes (tasks, n)."""

    obs: jax.Array
    action: jax.Array
    reward: jax.Array  # scaled by the task's reward_scale
    next_obs: jax.Array
    terminated: jax.Array
    done: jax.Array | None = None  # terminated or truncated; stored only for n-step returns


@struct.dataclass
class Replay:
    data: Transition  # (tasks, capacity, ...)
    pos: jax.Array  # next write index, shared by all tasks
    size: jax.Array  # filled entries, shared by all tasks


def replay_init(num_tasks: int, capacity: int, obs_shape: tuple[int, ...], obs_dtype: jnp.dtype,
                with_done: bool = False) -> Replay:
    """Empty buffers; ``with_done`` also keeps each transition's episode end (n-step returns need it)."""
    obs = jnp.zeros((num_tasks, capacity, *obs_shape), obs_dtype)
    data = Transition(
        obs=obs,
        action=jnp.zeros((num_tasks, capacity), jnp.int32),
        reward=jnp.zeros((num_tasks, capacity), jnp.float32),
        next_obs=obs,
        terminated=jnp.zeros((num_tasks, capacity), bool),
        done=jnp.zeros((num_tasks, capacity), bool) if with_done else None,
    )
    return Replay(data=data, pos=jnp.int32(0), size=jnp.int32(0))


def replay_add(replay: Replay, batch: Transition) -> Replay:
    """Write ``n`` transitions per task (fields (tasks, n, ...)) at the ring position."""
    capacity = replay.data.action.shape[1]
    n = batch.action.shape[1]
    idx = (replay.pos + jnp.arange(n)) % capacity
    data = jax.tree.map(lambda buf, new: buf.at[:, idx].set(new.astype(buf.dtype)), replay.data, batch)
    return Replay(data=data, pos=(replay.pos + n) % capacity, size=jnp.minimum(replay.size + n, capacity))


def _sample_slots(replay: Replay, key: jax.Array, batch_size: int) -> jax.Array:
    """Uniform slot indices (tasks, batch) over the filled entries."""
    num_tasks = replay.data.action.shape[0]
    return jax.random.randint(key, (num_tasks, batch_size), 0, jnp.maximum(replay.size, 1))


def _gather(buf: jax.Array, idx: jax.Array) -> jax.Array:
    """Each task's entries at its own indices: (tasks, capacity, ...), (tasks, batch) -> (tasks, batch, ...)."""
    return jax.vmap(lambda b, i: b[i])(buf, idx)


def replay_sample(replay: Replay, key: jax.Array, batch_size: int) -> Transition:
    """Uniform sample of ``batch_size`` transitions from each task's filled entries."""
    idx = _sample_slots(replay, key, batch_size)
    return jax.tree.map(lambda buf: _gather(buf, idx), replay.data)


def replay_sample_n_step(replay: Replay, key: jax.Array, batch_size: int, n: int, stride: int,
                         gammas: jax.Array) -> tuple[Transition, jax.Array]:
    """Uniform sample of n-step transitions (:func:`n_step_transitions`) from each task's filled entries."""
    return n_step_transitions(replay, _sample_slots(replay, key, batch_size), n, stride, gammas)


def n_step_transitions(replay: Replay, idx: jax.Array, n: int, stride: int,
                       gammas: jax.Array) -> tuple[Transition, jax.Array]:
    """The n-step transitions starting at slots ``idx`` (tasks, batch): (batch, d_t), every field (tasks, batch).

    A slot starts a window of its env's next ``n`` transitions, which
    lie ``stride`` (= num_envs) slots apart.  The window stops after the
    transition that ends the episode (terminated or truncated) and at the
    newest transition written.  With m + 1 steps in it: ``reward`` is
    sum_k gamma^k r_k over the window, ``next_obs`` and ``terminated`` are
    its last step's, and ``d_t = gamma^(m+1)`` (0 if that step terminated),
    so a truncated window bootstraps and a terminated one does not, as the
    1-step target.  ``gammas`` (tasks,): each task's discount.
    """
    data = replay.data
    capacity = data.action.shape[1]
    steps_after = ((replay.pos - 1 - idx) % capacity) // stride  # this env's transitions written after slot idx
    gamma = gammas[:, None].astype(jnp.float32)  # (tasks, 1)
    reward = jnp.zeros(idx.shape, jnp.float32)
    last = idx  # slot of the window's last step
    steps = jnp.ones(idx.shape, jnp.int32)  # m + 1: transitions in the window
    open_ = jnp.ones(idx.shape, bool)  # the window still extends to step k
    for k in range(n):
        slot = (idx + k * stride) % capacity
        inside = open_ & (k <= steps_after)
        reward = reward + jnp.where(inside, gamma**k * _gather(data.reward, slot), 0.0)
        last = jnp.where(inside, slot, last)
        steps = jnp.where(inside, k + 1, steps)
        open_ = inside & ~_gather(data.done, slot)
    terminated = _gather(data.terminated, last)
    batch = Transition(obs=_gather(data.obs, idx), action=_gather(data.action, idx), reward=reward,
                       next_obs=_gather(data.next_obs, last), terminated=terminated)
    return batch, jnp.where(terminated, 0.0, gamma**steps.astype(jnp.float32))
