"""The Gymnasium backend: any registered environment id, stepped on the host.

A task spec ``gym:<ID>[:reward_scale=x]`` names a Gymnasium environment
(``gym:CartPole-v1``, ``gym:ALE/Pong-v5`` with ``pip install 'mtdqn[atari]'``).
Such environments live in Python, so they cannot run inside the compiled
``lax.scan`` loop; ``mtdqn.train.host_loop`` steps them between calls of the
same jitted ``act`` / ``update`` the compiled loop uses.

Only what the network understands is accepted: a ``Discrete`` action space
(starting at 0) and a ``Box`` observation that is 1-D (vector kind, MLP trunk)
or 3-D ``(H, W, C)`` uint8 pixels (image kind, conv trunk).  MiniGrid's
ids (``gym:MiniGrid-DoorKey-6x6-v0``, with the ``minigrid`` package) observe
a dict; the task option ``obs=image`` keeps its ``image`` entry, the 7x7x3
egocentric view, as minigrid's ``ImgObsWrapper`` does: the observation our
JAX MiniGrid tasks (:mod:`mtdqn.tasks.minigrid`) give, so the same agent can
be compared on both.  Frames are used
as they come: no grey-scaling, resizing or frame stacking (Atari's 210x160x3
makes a large conv trunk; preprocess with a wrapper-registered id if needed).

:class:`HostEnvs` holds one ``SyncVectorEnv`` per (seed, task) in
``AutoresetMode.SAME_STEP``: a step that ends an episode returns the fresh
episode's observation *and* ``info["final_obs"]``, the one the transition
really ended in, which a truncated transition must bootstrap from.
"""

from __future__ import annotations

import difflib
from functools import lru_cache
from typing import Any

import gymnasium as gym
import jax
import numpy as np
from gymnasium.vector import AutoresetMode, SyncVectorEnv

from mtdqn.errors import ConfigError
from mtdqn.tasks.envs import EnvStep, obs_dtype, observation_kind

__all__ = ["GYM_PREFIX", "GYM_EXAMPLES", "make_env", "gym_task_info", "gym_obs_bounds", "env_seeds", "HostEnvs"]

GYM_PREFIX = "gym:"
# Shown by `mtdqn tasks`; any other registered id with a Discrete action space works too.
GYM_EXAMPLES = ("CartPole-v1", "Acrobot-v1", "MountainCar-v0", "LunarLander-v3", "ALE/Pong-v5", "ALE/Breakout-v5")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _register_plugins(env_id: str) -> None:
    """Gymnasium >= 1.0 no longer finds plugins by entry point: ale-py and minigrid register their ids when
    imported."""
    if env_id.startswith("ALE/"):
        try:
            import ale_py
        except ImportError:
            raise ConfigError(f"gym:{env_id} needs ale-py: pip install 'mtdqn[atari]'") from None
        gym.register_envs(ale_py)
    elif env_id.startswith("MiniGrid-"):
        try:
            import minigrid
        except ImportError:
            raise ConfigError(f"gym:{env_id} needs the minigrid package: pip install minigrid") from None
        gym.register_envs(minigrid)


def _image_view(env: gym.Env, env_id: str) -> gym.Env:
    """The env observing only its dict observation's ``image`` entry (minigrid's ``ImgObsWrapper``)."""
    space = env.observation_space
    if not isinstance(space, gym.spaces.Dict) or "image" not in space.spaces:
        env.close()
        raise ConfigError(f"task option obs=image: gym:{env_id} has no dict observation with an 'image' entry")
    return gym.wrappers.TransformObservation(env, lambda obs: obs["image"], space["image"])


def make_env(env_id: str, image_obs: bool = False, **kwargs: Any) -> gym.Env:
    """``gym.make(env_id, **kwargs)`` with every failure turned into one line (and close names suggested);
    ``image_obs``: observe the dict observation's ``image`` entry (task option ``obs=image``)."""
    _register_plugins(env_id)
    try:
        env = gym.make(env_id, **kwargs)
    except gym.error.UnregisteredEnv:
        close = difflib.get_close_matches(env_id, list(gym.registry), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(repr(GYM_PREFIX + c) for c in close)}?" if close else ""
        raise ConfigError(f"unknown Gymnasium environment {env_id!r}{hint}") from None
    except gym.error.DependencyNotInstalled as exc:
        raise ConfigError(f"gym:{env_id} needs a missing dependency: {_first_line(exc)}") from None
    except Exception as exc:  # anything else a third-party constructor raises
        raise ConfigError(f"cannot create Gymnasium environment {env_id!r}: {_first_line(exc)}") from None
    return _image_view(env, env_id) if image_obs else env


def _kind(env_id: str, space: Any) -> tuple[str, tuple[int, ...]]:
    """Observation kind and shape, or a one-line error naming what the network cannot take."""
    if not isinstance(space, gym.spaces.Box):
        hint = "; add the task option obs=image for its image entry" if isinstance(space, gym.spaces.Dict) and \
            "image" in space.spaces else ""
        raise ConfigError(f"gym:{env_id} has a {type(space).__name__} observation space; only Box is supported{hint}")
    shape = tuple(int(d) for d in space.shape)
    kind = observation_kind(f"gym:{env_id}", shape)
    if kind == "image" and space.dtype != np.uint8:
        raise ConfigError(f"gym:{env_id} has {space.dtype} image observations; only uint8 pixels are supported")
    return kind, shape


class _Registration:
    """What gymnasium registers under an id now, its EnvSpec compared by identity (``gym.register`` makes a new
    one each time; a dataclass is unhashable): the key the facts read from an env are cached under, so that an
    id registered again (a notebook) is read afresh.  Held in the cache, the spec cannot be freed and its id
    reused."""

    __slots__ = ("spec",)

    def __init__(self, env_id: str) -> None:
        self.spec = gym.envs.registration.registry.get(env_id)

    def __hash__(self) -> int:
        return id(self.spec)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Registration) and other.spec is self.spec


def gym_task_info(env_id: str, image_obs: bool = False) -> tuple[str, tuple[int, ...], int, int]:
    """(kind, obs_shape, num_actions, max_episode_steps) read from a temporary env (0 steps: no time limit;
    an env that cuts its own episodes, as MiniGrid's ``max_steps``, gives that)."""
    return _gym_task_info(env_id, image_obs, _Registration(env_id))


@lru_cache(maxsize=64)
def _gym_task_info(env_id: str, image_obs: bool,
                   registration: _Registration) -> tuple[str, tuple[int, ...], int, int]:
    env = make_env(env_id, image_obs)
    try:
        kind, shape = _kind(env_id, env.observation_space)
        actions = env.action_space
        if not isinstance(actions, gym.spaces.Discrete) or int(actions.start) != 0:
            raise ConfigError(f"gym:{env_id} has action space {actions}; only Discrete(n) starting at 0 is supported")
        max_steps = env.spec.max_episode_steps if env.spec is not None else None
        if not max_steps and env_id.startswith("MiniGrid-"):  # no TimeLimit: the env truncates at its max_steps
            max_steps = env.unwrapped.max_steps
        return kind, shape, int(actions.n), int(max_steps or 0)
    finally:
        env.close()


def gym_obs_bounds(env_id: str, image_obs: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) of the env's Box observation space, read from a temporary env (cached per registration)."""
    return _gym_obs_bounds(env_id, image_obs, _Registration(env_id))


@lru_cache(maxsize=64)
def _gym_obs_bounds(env_id: str, image_obs: bool, registration: _Registration) -> tuple[np.ndarray, np.ndarray]:
    env = make_env(env_id, image_obs)
    try:
        return np.asarray(env.observation_space.low), np.asarray(env.observation_space.high)
    finally:
        env.close()


def env_seeds(key: jax.Array, num_tasks: int) -> list[int]:
    """One Gymnasium seed per task from a JAX key (env j of a task gets seed + j)."""
    return [int(s) for s in np.asarray(jax.random.randint(key, (num_tasks,), 0, 2**30))]


class HostEnvs:
    """``num_envs`` copies of every task's env for every seed; arrays come back as (seeds, tasks, envs, ...).

    Observations are zero-padded to the task set's common shape and dtype, the
    same layout :func:`mtdqn.tasks.envs.step_envs` produces inside compiled code.
    """

    def __init__(self, task_set: Any, num_envs: int, seeds: list[list[int]]):
        self.task_set = task_set
        self.seeds = seeds  # (seeds, tasks) ints
        self.dtype = np.dtype(obs_dtype(task_set))
        self.envs: list[list[SyncVectorEnv]] = []
        try:  # a constructor that fails half-way must not leave the envs made before it open
            for _ in seeds:
                row: list[SyncVectorEnv] = []
                self.envs.append(row)
                for task in task_set.tasks:
                    row.append(SyncVectorEnv([lambda t=task: make_env(t.name, t.image_obs)] * num_envs,
                                             autoreset_mode=AutoresetMode.SAME_STEP))
        except BaseException:
            self.close()
            raise

    def _pad(self, obs: np.ndarray) -> np.ndarray:
        pad = self.task_set.obs_shape[-1] - obs.shape[-1]
        return np.pad(obs, [(0, 0)] * (obs.ndim - 1) + [(0, pad)]).astype(self.dtype)

    def reset(self) -> np.ndarray:
        """Seeded reset of every env: observations (seeds, tasks, envs, *obs_shape)."""
        return np.stack([
            np.stack([self._pad(env.reset(seed=seed)[0]) for env, seed in zip(row, row_seeds)])
            for row, row_seeds in zip(self.envs, self.seeds)
        ])

    def step(self, actions: np.ndarray) -> EnvStep:
        """Step with ``actions`` (seeds, tasks, envs); next_obs is the pre-reset observation."""
        cells = [[self._step_one(env, a) for env, a in zip(row, row_actions)]
                 for row, row_actions in zip(self.envs, actions)]
        fields = [np.stack([np.stack([cell[k] for cell in row]) for row in cells]) for k in range(len(EnvStep._fields))]
        return EnvStep(*fields)

    def _step_one(self, env: SyncVectorEnv, actions: np.ndarray) -> tuple[np.ndarray, ...]:
        obs, reward, terminated, truncated, info = env.step(np.asarray(actions))
        next_obs = np.array(obs, copy=True)
        if "_final_obs" in info:  # SAME_STEP: the finished episodes' last observations
            for j in np.flatnonzero(info["_final_obs"]):
                next_obs[j] = info["final_obs"][j]
        done = np.logical_or(terminated, truncated)
        return self._pad(obs), self._pad(next_obs), reward.astype(np.float32), terminated.astype(bool), done

    def close(self) -> None:
        for row in self.envs:
            for env in row:
                env.close()
