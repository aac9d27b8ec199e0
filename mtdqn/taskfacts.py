"""One table of what is known about each registered task, JAX-free: its kind, its rewards, its default
steps-to-threshold level and its normalization anchors.

Everything that needs a per-task fact reads it here: the registry its kind
(:data:`mtdqn.tasks.registry.TASKS`), the report its return and discounted
bounds (:mod:`mtdqn.analysis.ranges`) and its anchors
(:mod:`mtdqn.analysis.anchors`), studies their default thresholds
(:func:`mtdqn.studies.spec.default_threshold`).  A new task is one row here
plus its environment in the registry; ``tests/test_taskfacts.py`` checks that
the two list the same tasks with the same kind.

**Rewards** (:class:`RewardShape`): the range of one step's reward
(containing 0) and the most steps of an episode that can carry a nonzero
reward; :mod:`mtdqn.analysis.ranges` derives the undiscounted and discounted
return bounds from them.

**Anchors** (:class:`Anchors`): normalized score = (x - random) /
(reference - random).  Random scores were measured once with our own
random-policy evaluation (epsilon 1.0, so the parameters do not matter),
1,000 episodes, seed 0::

    mtdqn train --tasks CartPole-v1,Acrobot-v1,MountainCar-v0 --seeds 1 --steps 2000 --log-every 1000 \\
        --learning-starts 500 --buffer-size 1000 --out /tmp/random-anchor-run --progress False
    mtdqn evaluate /tmp/random-anchor-run --episodes 1000 --epsilon 1.0

which printed CartPole-v1 21.77 ± 11.03, Acrobot-v1 -499.08 ± 9.31 and
MountainCar-v0 -200.00 ± 0.00 (mean ± std over episodes).  References are
the task's maximum return where it is reachable (CartPole-v1), else the
return Gymnasium registers as solving it (``reward_threshold`` in
``gymnasium/envs/__init__.py``).  MiniGrid tasks: random as above, printed by
``benchmarks/minigrid_anchors.py``; the reference is the optimal return, the
mean over the package's first 200 layouts of 1 - 0.9 n / max_steps with n a
shortest plan's length (what the published rerun of MOORE's code, Todorov et
al. 2025, normalizes by: it divides by it, we subtract the random return,
0.007-0.19 here, first; MOORE's own code reports the mean raw return).  The anchors are
those of each task's default max_steps; a spec with ``max_steps=N`` has none
(:func:`mtdqn.analysis.anchors.lookup`).  MinAtar games and the two classic
tasks of D'Eramo et al. have no anchors: no citable reference score (Young &
Tian 2019 report DQN's results as learning curves in figures), so they are
left out of aggregates.

**Thresholds**: the return at which a task counts as reached (a study's
steps-to-threshold), unless the study sets its own.
"""

from __future__ import annotations

import math
from typing import Literal, NamedTuple

__all__ = ["Bounds", "RewardShape", "Anchors", "TaskFacts", "FACTS", "ENV_REVISIONS", "env_revisions",
           "changed_environments", "base_task", "facts", "implementation"]

Bounds = tuple[float, float]


class RewardShape(NamedTuple):
    """What bounds a task's return (see :mod:`mtdqn.analysis.ranges`)."""

    reward: Bounds
    """Lowest and highest reward of one step; the range contains 0."""
    rewarded_steps: float
    """Most steps of one episode with a nonzero reward: the time limit, 1 for one terminal reward, or inf."""
    why: str
    """Where the two come from, in words (the report states it; a time-limited task's limit is added to it)."""
    time_limited: bool = False
    """``rewarded_steps`` is the task's time limit: a spec's ``max_steps=N`` replaces it."""


class Anchors(NamedTuple):
    """Fixed normalization anchors: a random-policy score and a reference score, and where they come from."""

    random: float
    reference: float
    source: str


class TaskFacts(NamedTuple):
    kind: Literal["vector", "image"]
    """Which trunk reads the task's observations: an MLP (vector) or convolutions (image)."""
    rewards: RewardShape
    threshold: float | None
    """Default steps-to-threshold level (return), or None for none."""
    anchors: Anchors | None = None
    env: str = "gymnax's JAX port (gymnax.make)"
    """Whose implementation steps the task in the compiled loop (the report's Methods name it)."""


_GYMNAX_MINATAR = "gymnax's JAX port of MinAtar (no sticky actions; mtdqn.tasks.minatar when an option is set)"
_MINIGRID_ENV = "mtdqn's JAX port of minigrid 3.2.0 (mtdqn/tasks/minigrid/), checked against the package"


def implementation(task: str) -> str:
    """Whose environment a task spec runs: Gymnasium's on the host for ``gym:``, else its facts' ``env``."""
    if task.startswith("gym:"):
        return "Gymnasium's, stepped on the host (the gym: path)"
    known = facts(task)
    return known.env if known is not None else "registered by the user (mtdqn.tasks.custom)"


_RANDOM = "random: our random-policy evaluation, 1,000 episodes (mtdqn.taskfacts)"
_MINATAR = RewardShape((0.0, math.inf), math.inf, "MinAtar rewards are non-negative, with no stated maximum")
_MINIGRID_ANCHORS = (f"{_RANDOM}; reference: optimal return, shortest plans in 200 layouts "
                     "(benchmarks/minigrid_anchors.py)")
_MINIGRID = RewardShape((0.0, 1.0), 1, "one reward 1 - 0.9 t/max_steps on success, 0 otherwise")

FACTS: dict[str, TaskFacts] = {
    "CartPole-v1": TaskFacts(
        "vector", RewardShape((0.0, 1.0), 500, "+1 per step", True), 400.0,
        Anchors(21.77, 500.0, f"{_RANDOM}; reference: maximum return (500 steps)")),
    "Acrobot-v1": TaskFacts(
        "vector", RewardShape((-1.0, 0.0), 500, "-1 per step until the goal", True), -120.0,
        Anchors(-499.08, -100.0, f"{_RANDOM}; reference: Gymnasium reward_threshold")),
    "MountainCar-v0": TaskFacts(
        "vector", RewardShape((-1.0, 0.0), 200, "-1 per step until the goal", True), -150.0,
        Anchors(-200.0, -110.0, f"{_RANDOM}; reference: Gymnasium reward_threshold")),
    "Breakout-MinAtar": TaskFacts("image", _MINATAR, 10.0, env=_GYMNAX_MINATAR),
    "Asterix-MinAtar": TaskFacts("image", _MINATAR, 5.0, env="gymnax's JAX port of MinAtar's Asterix with MinAtar's "
                                                             "spawn (mtdqn/tasks/asterix.py)"),
    "Freeway-MinAtar": TaskFacts("image", _MINATAR, 20.0, env=_GYMNAX_MINATAR),
    "SpaceInvaders-MinAtar": TaskFacts("image", _MINATAR, 30.0, env=_GYMNAX_MINATAR),
    # a quarter of published DQN's ~20 at 5M frames (MinAtar's learning curves), as Asterix's 5 is of its ~17
    "Seaquest-MinAtar": TaskFacts("image", _MINATAR, 5.0, env="mtdqn's JAX port of MinAtar's Seaquest "
                                                              "(mtdqn/tasks/seaquest.py)"),
    # +1 at the top, -1 off the hill or too fast: threshold = reaching the top more often than not
    "CarOnHill-v0": TaskFacts(
        "vector", RewardShape((-1.0, 1.0), 1, "one terminal reward of +1 or -1, 0 otherwise"), 0.5,
        env="mtdqn's JAX implementation of Ernst et al. (2005) (mtdqn/tasks/car_on_hill.py)"),
    # -1 when it falls, 0 while up: threshold = balanced on most of the horizon
    "InvertedPendulumDiscrete-v0": TaskFacts(
        "vector", RewardShape((-1.0, 0.0), 1, "-1 once, when it falls, 0 otherwise"), -0.5,
        env="mtdqn's JAX implementation of Lagoudakis & Parr (2003) (mtdqn/tasks/inverted_pendulum.py)"),
    # MOORE's MT7 (mtdqn/tasks/minigrid/): (random, optimal) returns measured by benchmarks/minigrid_anchors.py;
    # threshold 0.5: the goal reached in time at least about half the time
    **{f"MiniGrid-{task}-v0": TaskFacts("image", _MINIGRID, 0.5, Anchors(random, optimal, _MINIGRID_ANCHORS),
                                        _MINIGRID_ENV)
       for task, random, optimal in (("DoorKey-6x6", 0.0169, 0.9697), ("LavaGapS7", 0.0118, 0.9522),
                                     ("DistShift1", 0.0066, 0.9536), ("SimpleCrossingS9N2", 0.0083, 0.9549),
                                     ("RedBlueDoors-6x6", 0.0588, 0.9839), ("MultiRoom-N2-S4", 0.0071, 0.8400),
                                     ("MemoryS11", 0.1904, 0.9908))},
}


ENV_REVISIONS: dict[str, tuple[int, str]] = {
    "Asterix-MinAtar": (1, "MinAtar's spawn since 2026-12-07, gymnax's before (mtdqn/tasks/asterix.py)"),
}
"""Tasks whose environment changed what a policy meets under the same name: (revision, what changed).  A run's
config hash includes its tasks' revisions (:func:`mtdqn.config.config_hash`), so a run or study cell made
before a change is not resumed or counted as finished under it (one run trained on two games)."""


def env_revisions(tasks: tuple[str, ...] | list[str]) -> dict[str, int]:
    """{task spec: revision} of the tasks in :data:`ENV_REVISIONS` (empty for most runs)."""
    return {t: ENV_REVISIONS[base_task(t)][0] for t in tasks if base_task(t) in ENV_REVISIONS}


def changed_environments(tasks: tuple[str, ...] | list[str]) -> str:
    """The tasks among ``tasks`` whose environment changed under their name, each with what changed, for a
    record whose config hash is not this code's (a checkpoint, a study cell); '' for none."""
    return "; ".join(f"{t} ({ENV_REVISIONS[base_task(t)][1]})" for t in env_revisions(tasks))


def base_task(task: str) -> str:
    """The registered name behind a task spec: options (``:reward_scale=...``) and ``gym:`` dropped.

    Reported returns are unscaled, so no fact here depends on ``reward_scale`` or ``gamma``; the options that
    change returns are :data:`mtdqn.analysis.anchors.RETURN_OPTIONS`, and the anchors' lookup checks them.
    """
    name = task.split(":", 1)[1] if task.startswith("gym:") else task
    return name.split(":", 1)[0]


def facts(task: str) -> TaskFacts | None:
    """The facts of a task spec (``gym:`` ids of registered tasks included), or None for an unknown task."""
    return FACTS.get(base_task(task))
