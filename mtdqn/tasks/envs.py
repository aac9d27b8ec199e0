"""Stepping every task's vectorized environments inside compiled code.

Each task runs ``num_envs`` copies of its gymnax environment (vmapped); the
tasks themselves differ in type, so the loop over tasks is unrolled at trace
time.  Observations come back padded to the task set's common shape, so the
rest of the system sees arrays with a leading task axis: ``(tasks, envs, ...)``.

gymnax >= 1.0 returns ``(obs, state, reward, terminated, truncated, info)`` and
resets automatically; ``info["final_observation"]`` is the observation before
the reset, which is what a truncated transition must bootstrap from.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

import jax
import jax.numpy as jnp

from mtdqn.errors import ConfigError

if TYPE_CHECKING:  # annotations only: the registry builds on this module (gym: host envs step with EnvStep)
    from mtdqn.tasks.registry import TaskSet

__all__ = ["EnvStep", "observation_kind", "pad_obs", "obs_dtype", "reset_envs", "step_envs"]


class EnvStep(NamedTuple):
    """One vector step of all tasks; every field has leading axes (tasks, envs)."""

    obs: jax.Array  # observation to act on next (after auto-reset)
    next_obs: jax.Array  # observation the transition ended in (before reset)
    reward: jax.Array  # unscaled env reward
    terminated: jax.Array  # true end of the episode: no bootstrap
    done: jax.Array  # terminated or truncated: the episode ended


def observation_kind(label: str, shape: tuple[int, ...]) -> str:
    """Which trunk reads observations of ``shape``: "vector" (1-D, the MLP) or "image" ((H, W, C), the convolutions);
    a one-line error naming the task for any other rank."""
    if len(shape) == 1:
        return "vector"
    if len(shape) == 3 and shape[0] <= 4 and min(shape[1:]) >= 16:  # Atari's stack of 4 84x84 frames, channels first
        raise ConfigError(f"{label} has observations {shape}, channels first (C, H, W: a frame stack?); images are "
                          f"read as (H, W, C): move the channels last, e.g. gymnasium's TransformObservation with "
                          f"np.moveaxis(obs, 0, -1) and a Box of shape {(*shape[1:], shape[0])}")
    if len(shape) == 3:
        return "image"
    raise ConfigError(f"{label} has {len(shape)}-D observations {shape}; only 1-D vectors or (H, W, C) images are "
                      "supported")


def obs_dtype(task_set: TaskSet) -> jnp.dtype:
    """MinAtar observations are boolean grids: store them as uint8 to save replay memory."""
    return jnp.uint8 if task_set.kind == "image" else jnp.float32


def pad_obs(obs: jax.Array, task_set: TaskSet) -> jax.Array:
    """Zero-pad the last axis of one task's observations to the common width.  Wider integers stored as uint8
    (your own image task's int32 frames) are clipped into 0..255 first: a cast wraps (300 is 44, -1 is 255)."""
    pad = task_set.obs_shape[-1] - obs.shape[-1]
    widths = [(0, 0)] * (obs.ndim - 1) + [(0, pad)]
    stored = obs_dtype(task_set)
    if stored == jnp.uint8 and jnp.issubdtype(obs.dtype, jnp.integer) and obs.dtype != jnp.uint8:
        obs = jnp.clip(obs, 0, 255)
    return jnp.pad(obs, widths).astype(stored)


def reset_envs(task_set: TaskSet, key: jax.Array, num_envs: int) -> tuple[jax.Array, tuple[Any, ...]]:
    """Reset all envs: (obs (tasks, envs, *obs_shape), per-task env states)."""
    keys = jax.random.split(key, len(task_set))
    obs, states = [], []
    for task, task_key in zip(task_set.tasks, keys):
        env, params = task.make()
        o, s = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(task_key, num_envs), params)
        obs.append(pad_obs(o, task_set))
        states.append(jax.tree.map(strongly_typed, s))
    return jnp.stack(obs), tuple(states)


def strongly_typed(x: jax.Array) -> jax.Array:
    """``x`` without JAX's weak type (the same dtype and values).  Some gymnax resets leave counters weakly typed
    (CartPole's ``time``, Breakout's ``last_y``, Space Invaders' timers), and a step may return one strongly
    typed: a fresh state, the state after a chunk and one restored from a checkpoint (always strong) were
    then three signatures of one program, and ``jax.jit`` traced and compiled the chunk again for each."""
    return jax.lax.convert_element_type(x, x.dtype)


def step_envs(
    task_set: TaskSet, states: tuple[Any, ...], actions: jax.Array, key: jax.Array
) -> tuple[tuple[Any, ...], EnvStep]:
    """Step every task's envs with ``actions`` (tasks, envs)."""
    keys = jax.random.split(key, len(task_set))
    outs, new_states = [], []
    for i, (task, task_key) in enumerate(zip(task_set.tasks, keys)):
        env, params = task.make()
        num_envs = actions.shape[1]
        act = actions[i, :]
        o, s, r, term, trunc, info = jax.vmap(env.step, in_axes=(0, 0, 0, None))(
            jax.random.split(task_key, num_envs), states[i], act, params
        )
        new_states.append(s)
        outs.append(
            (
                pad_obs(o, task_set),
                pad_obs(info["final_observation"], task_set),
                r.astype(jnp.float32),
                term.astype(bool),
                jnp.logical_or(term, trunc),
            )
        )
    stacked = [jnp.stack(field) for field in zip(*outs)]
    return tuple(new_states), EnvStep(*stacked)
