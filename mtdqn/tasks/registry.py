"""Task specs, the registry of JAX-native tasks, and how a task set is laid out.

A task spec is a name with optional options, ``CartPole-v1:reward_scale=100``,
usable everywhere a task name is.  ``gamma=0.95`` gives one task its own
discount factor (its TD targets and its discounted evaluation return); tasks
without it use the run's ``--gamma``.  D'Eramo et al. (2020) discount each task
with its own gamma (github.com/carloderamo/shared, dqn/dqn.py, ``_next_q``:
``out_q[start:stop] *= self.mdp_info.gamma[i]``).

MinAtar games take three more options, the settings of Young & Tian's own package that gymnax's MinAtar
lacks (:mod:`mtdqn.tasks.minatar`): ``sticky=0.1`` (with that probability the game repeats its last action),
``actions=full`` (all six actions, the ones outside a game's minimal set doing nothing) and ``max_steps=N``
(the episode cut-off, a truncation; gymnax's default is 1,000 steps, Freeway 2,500).  A plain MinAtar name is
gymnax's game unchanged (no sticky actions, the minimal action set, gymnax's cut-off), except Seaquest,
which is ours: MinAtar's game, faster than gymnax's (:mod:`mtdqn.tasks.seaquest`), and Asterix, gymnax's game
with MinAtar's spawn (:mod:`mtdqn.tasks.asterix`).  ``max_steps=N`` also
sets a MiniGrid task's time limit (MiniGrid's ``max_steps``, which also scales its success reward) and that of
CartPole-v1, Acrobot-v1 and MountainCar-v0 (gymnax's ``max_steps_in_episode``: 500, 500, 200).

``gym:<ID>[:options]`` names any Gymnasium environment instead (backend "gymnasium", stepped on the host: see
:mod:`mtdqn.tasks.gymnasium_env`); one agent's tasks all share one backend.  ``obs=image`` (gym: tasks only)
keeps the ``image`` entry of a dict observation, as MiniGrid's ``ImgObsWrapper`` does:
``gym:MiniGrid-DoorKey-6x6-v0:obs=image`` is the package's task with our JAX task's observation.
All tasks of one agent are padded to a common observation shape and action
count (:class:`TaskSet`): vector observations are zero-padded to the widest
one, image observations to the most channels; Q heads are padded to the most
actions and masked.

Most JAX tasks come from ``gymnax.make``; the two classic tasks it lacks,
Car-On-Hill and the discrete LSPI pendulum, Seaquest-MinAtar (gymnax's is
slow) and Asterix-MinAtar (gymnax's with MinAtar's spawn: gymnax's loses
entities) are written against gymnax's ``Environment`` API in this package
(:data:`NATIVE_ENVS`) and step in the same compiled loop, and so are the seven
MiniGrid tasks of MOORE's MT7 (:mod:`mtdqn.tasks.minigrid`).  A user's own
environment joins them by name (:func:`register_task`) or as an import path
``module:factory`` (:mod:`mtdqn.tasks.custom`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache, partial
from typing import Any, Callable

import gymnax
import numpy as np

from mtdqn.errors import ConfigError
from mtdqn.taskfacts import FACTS
from mtdqn.tasknames import check_listed_once, split_spec, task_options, unknown_task
from mtdqn.tasks import custom
from mtdqn.tasks.car_on_hill import CarOnHill
from mtdqn.tasks.inverted_pendulum import InvertedPendulumDiscrete
from mtdqn.tasks.minatar import MINATAR_GAMES, OUR_GAMES, MinAtarEnv
from mtdqn.tasks.minigrid import SPECS as MINIGRID_SPECS
from mtdqn.tasks.minigrid import MiniGrid

__all__ = ["TASKS", "NATIVE_ENVS", "make_env", "Task", "TaskSet", "parse_task", "make_task_set", "list_tasks",
           "observation_bounds", "register_task"]

# name -> kind ("vector" | "image"), from the one table of task facts; each name is a gymnax id or one of
# NATIVE_ENVS.
TASKS: dict[str, str] = {name: f.kind for name, f in FACTS.items()}

# Tasks gymnax does not ship, written here against its Environment API (the rest come from gymnax.make).
NATIVE_ENVS: dict[str, Callable[[], Any]] = {
    "CarOnHill-v0": CarOnHill,  # Ernst et al. (2005); mtdqn/tasks/car_on_hill.py
    "InvertedPendulumDiscrete-v0": InvertedPendulumDiscrete,  # Lagoudakis & Parr (2003); inverted_pendulum.py
    # Seaquest (gymnax's steps ~10x slower than its other MinAtar games; ours is MinAtar's game, seaquest.py) and
    # Asterix (gymnax's game with MinAtar's spawn, asterix.py): the plain names play what the wrapper plays
    **OUR_GAMES,
    **{name: partial(MiniGrid, spec) for name, spec in MINIGRID_SPECS.items()},  # minigrid 3.2.0's tasks
}

def make_env(name: str, sticky: float = 0.0, full_actions: bool = False,
             max_steps: int | None = None) -> tuple[Any, Any]:
    """(env, default params) of a registered JAX task: ours from :data:`NATIVE_ENVS`, the rest from gymnax;
    a MinAtar game with any of its options set runs in :class:`~mtdqn.tasks.minatar.MinAtarEnv`; a MiniGrid or
    classic task's ``max_steps`` is its params' time limit (``tasknames.CLASSIC_TIME_LIMITED``)."""
    if name in MINATAR_GAMES and (sticky or full_actions or max_steps is not None):
        env = MinAtarEnv(name, sticky, full_actions, max_steps)
        return env, env.default_params
    if custom.lookup(name) is not None:
        return custom.make(name)
    if name in NATIVE_ENVS:
        env = NATIVE_ENVS[name]()
        params = env.default_params
    else:
        env, params = gymnax.make(name)
    return env, params if max_steps is None else params.replace(max_steps_in_episode=max_steps)  # MiniGrid, classic


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
    sticky: float = 0.0  # MinAtar: probability that the game repeats its last action
    full_actions: bool = False  # MinAtar: all six actions instead of the game's minimal set
    max_steps: int | None = None  # MinAtar, MiniGrid, classic: the episode cut-off; None: the env's
    image_obs: bool = False  # gym: tasks: observe the dict observation's "image" entry (obs=image)

    def discount(self, default: float) -> float:
        """This task's discount factor: its own ``gamma=`` option, else the run's ``default``."""
        return default if self.gamma is None else self.gamma

    def make(self) -> tuple[Any, Any]:
        """(gymnax env, env params); gymnasium tasks are made by :class:`~mtdqn.tasks.gymnasium_env.HostEnvs`."""
        if self.backend != "gymnax":
            raise ConfigError(f"task {self.spec!r} steps on the host and cannot run inside compiled code")
        return make_env(self.name, self.sticky, self.full_actions, self.max_steps)


def register_task(name: str, factory: Any, kind: str | None = None) -> Task:
    """Make your own gymnax-API environment a task named ``name`` in this process (:mod:`mtdqn.tasks.custom`).

    ``factory``: a zero-argument callable returning the environment (its class, a function), or the
    environment itself.  ``kind``: "vector" or "image", checked against its observations (None: read from
    them).  Everything is checked at once, each failure a one-line ConfigError: the API, discrete actions, the
    observation shape, gymnax >= 1.0's six-value step.  Returns the task as :func:`parse_task` reads it.
    """
    if kind is not None and kind not in ("vector", "image"):
        raise ConfigError(f"kind must be 'vector' or 'image' (or None: read from the observations), got {kind!r}")
    built_in = {t.lower() for t in TASKS}  # however cased: a task's name names folders, one on some disks
    custom.register(name, factory, kind, lambda n: n.lower() in built_in or n.startswith("gym:"))
    return parse_task(name)


def parse_task(spec: str) -> Task:
    """Parse ``NAME[:key=value,...]`` into a :class:`Task`; one-line error on anything else."""
    spec = spec.strip()
    backend, name, _ = split_spec(spec)
    own = custom.lookup(name) if backend == "gymnax" and name not in TASKS else None
    if backend == "gymnax" and name not in TASKS and own is None:
        raise ConfigError(unknown_task(name, custom.REGISTERED))
    options = task_options(spec)[2]
    if backend == "gymnasium":
        from mtdqn.tasks.gymnasium_env import gym_task_info  # imported late: gymnasium and ale-py are slow

        image_obs = options.get("obs") == "image"
        kind, shape, actions, max_steps = gym_task_info(name, image_obs)
        return Task(spec, name, kind, shape, actions, max_steps, options.get("reward_scale", 1.0), backend,
                    options.get("gamma"), image_obs=image_obs)
    if own is not None:
        return Task(spec, name, own.kind, own.obs_shape, own.num_actions, own.max_episode_steps,
                    options.get("reward_scale", 1.0), gamma=options.get("gamma"))
    sticky, full_actions, max_steps = (options.get("sticky", 0.0), options.get("actions") == "full",
                                       options.get("max_steps"))
    env, params = make_env(name, sticky, full_actions, max_steps)
    return Task(
        spec=spec,
        name=name,
        kind=TASKS[name],
        obs_shape=tuple(int(d) for d in env.observation_space(params).shape),
        num_actions=int(env.num_actions),
        max_episode_steps=int(params.max_steps_in_episode),
        reward_scale=options.get("reward_scale", 1.0),
        gamma=options.get("gamma"),
        sticky=sticky,
        full_actions=full_actions,
        max_steps=max_steps,
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
    check_listed_once([t.spec for t in tasks])
    if len({t.backend for t in tasks}) > 1:
        raise ConfigError(
            "cannot mix gym: tasks with gymnax tasks in one agent: the compiled loop cannot step host "
            "(Gymnasium) envs; use gym: for all tasks (e.g. gym:CartPole-v1) or for none"
        )
    kinds = {t.kind for t in tasks}
    if len(kinds) > 1:
        vector, image = (next(t.spec for t in tasks if t.kind == kind) for kind in ("vector", "image"))
        raise ConfigError(f"cannot mix vector tasks ({vector}) and image tasks ({image}) in one agent: "
                          "their trunks differ (MLP vs conv)")
    kind = kinds.pop()
    if kind == "vector":
        obs_shape: tuple[int, ...] = (max(t.obs_shape[0] for t in tasks),)
    else:
        spatial = {t.obs_shape[:-1] for t in tasks}
        if len(spatial) > 1:
            sizes = ", ".join(f"{t.spec} {'x'.join(map(str, t.obs_shape))}" for t in tasks)
            raise ConfigError(f"image tasks in one agent must share their image size (one conv trunk reads them); "
                              f"got {sizes} (MiniGrid's views are 7x7x3, MinAtar's images 10x10)")
        obs_shape = (*spatial.pop(), max(t.obs_shape[-1] for t in tasks))
    return TaskSet(tasks=tasks, kind=kind, obs_shape=obs_shape, num_actions=max(t.num_actions for t in tasks),
                   backend=tasks[0].backend)


def list_tasks() -> list[Task]:
    """Every registered task, for `mtdqn tasks`: the built-in ones, then those registered in this process."""
    return [parse_task(name) for name in [*TASKS, *custom.REGISTERED]]


def _finite_or_inf(bound: Any, shape: tuple[int, ...], sign: float) -> np.ndarray:
    """A space's bound over the whole observation shape, float64; float32's max (gymnax's "unbounded") as inf."""
    bound = np.broadcast_to(np.asarray(bound, np.float64), shape)
    return np.where(np.abs(bound) >= np.finfo(np.float32).max, sign * np.inf, bound)


def observation_bounds(task: Task) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) of the task's observation space, each of its obs_shape; inf where a dimension is unbounded.

    gymnax writes "unbounded" as float32's largest value (CartPole's velocities,
    the pendulum's angle and speed); both that and inf come back as inf.
    """
    if task.backend == "gymnasium":
        from mtdqn.tasks.gymnasium_env import gym_obs_bounds  # imported late: gymnasium and ale-py are slow

        low, high = gym_obs_bounds(task.name, task.image_obs)  # cached per registration
    else:
        low, high = _gymnax_bounds(task, custom.registration(task.name))
    return _finite_or_inf(low, task.obs_shape, -1.0), _finite_or_inf(high, task.obs_shape, 1.0)


@lru_cache(maxsize=64)
def _gymnax_bounds(task: Task, registration: int | None) -> tuple[Any, Any]:
    """The declared bounds of a gymnax-API task's observation space, per ``registration``
    (:func:`mtdqn.tasks.custom.registration`, as agents are cached: a name registered again may declare others
    under the same shapes)."""
    env, params = make_env(task.name)
    space = env.observation_space(params)
    return getattr(space, "low", -np.inf), getattr(space, "high", np.inf)  # your own may declare none
