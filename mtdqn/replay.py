"""Per-task experience replay as ring buffers in device memory.

All tasks write the same number of transitions each vector step, so one write
position and one fill level serve every task; arrays carry a leading task axis
``(tasks, capacity, ...)``.  Sampling draws the same number of transitions from
every task, giving the mixed-task batch ``(tasks, batch, ...)`` the loss needs.
Storing ``next_obs`` explicitly (rather than the following slot) keeps
truncated and auto-reset transitions correct at no bookkeeping cost.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

__all__ = ["Replay", "Transition", "replay_init", "replay_add", "replay_sample"]


@struct.dataclass
class Transition:
    """A batch of transitions; every field has leading axes (tasks, n)."""

    obs: jax.Array
    action: jax.Array
    reward: jax.Array  # scaled by the task's reward_scale
    next_obs: jax.Array
    terminated: jax.Array


@struct.dataclass
class Replay:
    data: Transition  # (tasks, capacity, ...)
    pos: jax.Array  # next write index, shared by all tasks
    size: jax.Array  # filled entries, shared by all tasks


def replay_init(num_tasks: int, capacity: int, obs_shape: tuple[int, ...], obs_dtype: jnp.dtype) -> Replay:
    """Empty buffers."""
    obs = jnp.zeros((num_tasks, capacity, *obs_shape), obs_dtype)
    data = Transition(
        obs=obs,
        action=jnp.zeros((num_tasks, capacity), jnp.int32),
        reward=jnp.zeros((num_tasks, capacity), jnp.float32),
        next_obs=obs,
        terminated=jnp.zeros((num_tasks, capacity), bool),
    )
    return Replay(data=data, pos=jnp.int32(0), size=jnp.int32(0))


def replay_add(replay: Replay, batch: Transition) -> Replay:
    """Write ``n`` transitions per task (fields (tasks, n, ...)) at the ring position."""
    capacity = replay.data.action.shape[1]
    n = batch.action.shape[1]
    idx = (replay.pos + jnp.arange(n)) % capacity
    data = jax.tree.map(lambda buf, new: buf.at[:, idx].set(new.astype(buf.dtype)), replay.data, batch)
    return Replay(data=data, pos=(replay.pos + n) % capacity, size=jnp.minimum(replay.size + n, capacity))


def replay_sample(replay: Replay, key: jax.Array, batch_size: int) -> Transition:
    """Uniform sample of ``batch_size`` transitions from each task's filled entries."""
    num_tasks = replay.data.action.shape[0]
    idx = jax.random.randint(key, (num_tasks, batch_size), 0, jnp.maximum(replay.size, 1))
    return jax.tree.map(lambda buf: jax.vmap(lambda b, i: b[i])(buf, idx), replay.data)
