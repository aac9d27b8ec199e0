"""Task specs, the registry of JAX-native tasks, and how a task set is laid out.

A task spec is a name with optional options, ``CartPole-v1:reward_scale=100``,
usable everywhere a task name is.  ``gamma=0.95`` gives one task its own
discount factor (its TD targets and its discounted evaluation return); tasks
without it use the run's ``--gamma``.  D'Eramo et al. (2020) discount each task
with its own gamma (github.com/carloderamo/shared, dqn/dqn.py, ``_next_q``:
``out_q[start:stop] *= self.mdp_info.gamma[i]``).

``gym:<ID>[:options]`` names any Gymnasium environment instead (backend "gymnasium", stepped on the host: see
:mod:`mtdqn.tasks.gymnasium_env`); one agent's tasks all share one backend.
All tasks of one agent are padded to a common observation shape and action
count (:class:`TaskSet`): vector observations are zero-padded to the widest
one, image observations to the most channels; Q heads are padded to the most
actions and masked.

Most JAX tasks come from ``gymnax.make``; the two classic tasks it lacks,
Car-On-Hill and the discrete LSPI pendulum, are written against gymnax's
``Environment`` API in this package (:data:`NATIVE_ENVS`) and step in the same
compiled loop, and so are the seven MiniGrid tasks of MOORE's MT7 (:mod:`mtdqn.tasks.minigrid`).
``max_steps=N`` sets a JAX task's time limit (MiniGrid's ``max_steps``, which
also scales its success reward).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable

import gymnax
import numpy as np

from mtdqn.errors import ConfigError
from mtdqn.tasks.car_on_hill import CarOnHill
from mtdqn.tasks.inverted_pendulum import InvertedPendulumDiscrete
from mtdqn.tasks.minigrid import SPECS as MINIGRID_SPECS
from mtdqn.tasks.minigrid import MiniGrid

__all__ = ["TASKS", "NATIVE_ENVS", "make_env", "Task", "TaskSet", "parse_task", "make_task_set", "list_tasks"]

# name -> kind.  Seaquest-MinAtar steps ~70x slower than the others in gymnax.
TASKS: dict[str, str] = {
    "CartPole-v1": "vector",
    "Acrobot-v1": "vector",
    "MountainCar-v0": "vector",
    "Breakout-MinAtar": "image",
    "Asterix-MinAtar": "image",
    "Freeway-MinAtar": "image",
    "SpaceInvaders-MinAtar": "image",
    "Seaquest-MinAtar": "image",
    "CarOnHill-v0": "vector",
    "InvertedPendulumDiscrete-v0": "vector",
    **{name: "image" for name in MINIGRID_SPECS},  # 7x7x3 egocentric views; mtdqn/tasks/minigrid/
}

# Tasks gymnax does not ship, written here against its Environment API (the rest come from gymnax.make).
NATIVE_ENVS: dict[str, Callable[[], Any]] = {
    "CarOnHill-v0": CarOnHill,  # Ernst et al. (2005); mtdqn/tasks/car_on_hill.py
    "InvertedPendulumDiscrete-v0": InvertedPendulumDiscrete,  # Lagoudakis & Parr (2003); inverted_pendulum.py
    **{name: partial(MiniGrid, spec) for name, spec in MINIGRID_SPECS.items()},  # minigrid 3.2.0's tasks
}

_OPTIONS = {"reward_scale": float, "gamma": float, "max_steps": int}  # max_steps: the time limit of a JAX task


def make_env(name: str) -> tuple[Any, Any]:
    """(env, default params) of a registered JAX task: ours from :data:`NATIVE_ENVS`, the rest from gymnax."""
    if name in NATIVE_ENVS:
        env = NATIVE_ENVS[name]()
        return env, env.default_params
    return gymnax.make(name)


@dataclass(frozen=True)
class Task:
    """One environment with its options; hashable so compiled code can close over it."""

    spec: str
    name: str
    kind: str
    obs_shape: tuple[int, ...]
    num_actions: int
    max_episode_steps: int  # 0: the env sets no time limit (some Gymnasium envs)
    reward_scale: float = 1.0
    backend: str = "gymnax"  # "gymnax": stepped in compiled code; "gymnasium": on the host
    gamma: float | None = None  # this task's discount factor; None: the run's --gamma

    def discount(self, default: float) -> float:
        """This task's discount factor: its own ``gamma=`` option, else the run's ``default``."""
        return default if self.gamma is None else self.gamma

    def make(self) -> tuple[Any, Any]:
        """(gymnax env, env params); gymnasium tasks are made by :class:`~mtdqn.tasks.gymnasium_env.HostEnvs`."""
        if self.backend != "gymnax":
            raise ConfigError(f"task {self.spec!r} steps on the host and cannot run inside compiled code")
        env, params = make_env(self.name)
        return env, params.replace(max_steps_in_episode=self.max_episode_steps)  # the max_steps= option


def _suggest(name: str) -> str:
    close = difflib.get_close_matches(name, list(TASKS), n=1, cutoff=0.4)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown task {name!r}{hint} (see `mtdqn tasks`)"


def parse_task(spec: str) -> Task:
    """Parse ``NAME[:key=value,...]`` into a :class:`Task`; one-line error on anything else."""
    spec = spec.strip()
    backend = "gymnasium" if spec.startswith("gym:") else "gymnax"
    name, _, opts = spec.removeprefix("gym:").partition(":")
    if backend == "gymnax" and name not in TASKS:
        raise ConfigError(_suggest(name))
    options: dict[str, float] = {}
    for item in filter(None, (o.strip() for o in opts.split(","))):
        key, eq, raw = item.partition("=")
        if not eq or key not in _OPTIONS:
            raise ConfigError(
                f"bad task option {item!r} in {spec!r}; valid: {', '.join(k + '=<number>' for k in _OPTIONS)}"
            )
        try:
            value = _OPTIONS[key](raw)
        except ValueError:
            raise ConfigError(f"task option {key} in {spec!r} must be a number, got {raw!r}") from None
        if not np.isfinite(value) or value <= 0:
            raise ConfigError(f"task option {key} in {spec!r} must be finite and > 0, got {raw}")
        if key == "gamma" and value > 1:
            raise ConfigError(f"task option gamma in {spec!r} must be in (0, 1], got {raw}")
        options[key] = value
    if backend == "gymnasium" and "max_steps" in options:
        raise ConfigError(f"task option max_steps in {spec!r} is for JAX tasks; a gym: task keeps its TimeLimit")
    if backend == "gymnasium":
        from mtdqn.tasks.gymnasium_env import gym_task_info  # imported late: gymnasium and ale-py are slow

        kind, shape, actions, max_steps = gym_task_info(name)
        return Task(spec, name, kind, shape, actions, max_steps, options.get("reward_scale", 1.0), backend,
                    options.get("gamma"))
    env, params = make_env(name)
    return Task(
        spec=spec,
        name=name,
        kind=TASKS[name],
        obs_shape=tuple(int(d) for d in env.observation_space(params).shape),
        num_actions=int(env.num_actions),
        max_episode_steps=int(options.get("max_steps", params.max_steps_in_episode)),
        reward_scale=options.get("reward_scale", 1.0),
        gamma=options.get("gamma"),
    )


@dataclass(frozen=True)
class TaskSet:
    """The tasks of one agent and the common (padded) shapes they share."""

    tasks: tuple[Task, ...]
    kind: str
    obs_shape: tuple[int, ...]
    num_actions: int
    backend: str = "gymnax"

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(t.spec for t in self.tasks)

    def __len__(self) -> int:
        return len(self.tasks)

    def action_mask(self) -> np.ndarray:
        """(tasks, actions) bool: True where the action exists for the task."""
        return np.arange(self.num_actions)[None, :] < np.array([t.num_actions for t in self.tasks])[:, None]


def make_task_set(specs: tuple[str, ...] | list[str]) -> TaskSet:
    """Parse specs and check they can share one network."""
    tasks = tuple(parse_task(s) for s in specs)
    if len({t.spec for t in tasks}) != len(tasks):
        raise ConfigError(f"a task is listed twice in {list(specs)}")
    if len({t.backend for t in tasks}) > 1:
        raise ConfigError(
            "cannot mix gym: tasks with gymnax tasks in one agent: the compiled loop cannot step host "
            "(Gymnasium) envs; use gym: for all tasks (e.g. gym:CartPole-v1) or for none"
        )
    kinds = {t.kind for t in tasks}
    if len(kinds) > 1:
        raise ConfigError(
            "cannot mix vector tasks (classic control) and image tasks (MinAtar) in one agent: "
            "their trunks differ (MLP vs conv)"
        )
    kind = kinds.pop()
    if kind == "vector":
        obs_shape: tuple[int, ...] = (max(t.obs_shape[0] for t in tasks),)
    else:
        spatial = {t.obs_shape[:-1] for t in tasks}
        minigrid = {t.name in MINIGRID_SPECS for t in tasks}
        if len(spatial) > 1 and len(minigrid) > 1:
            raise ConfigError("cannot mix MiniGrid tasks (7x7x3 egocentric views) with MinAtar tasks (10x10 images) "
                              "in one agent: their images differ in size")
        if len(spatial) > 1:
            raise ConfigError(f"image tasks must share their spatial size, got {sorted(spatial)}")
        obs_shape = (*spatial.pop(), max(t.obs_shape[-1] for t in tasks))
    return TaskSet(tasks=tasks, kind=kind, obs_shape=obs_shape, num_actions=max(t.num_actions for t in tasks),
                   backend=tasks[0].backend)


def list_tasks() -> list[Task]:
    """Every registered task, for `mtdqn tasks`."""
    return [parse_task(name) for name in TASKS]
