"""Fixed normalization anchors: per task, a random-policy score and a reference score.

Normalized score (:func:`normalize`) = (x - random) / (reference - random): 0 is the uniform
random policy, 1 the reference.  Neither anchor comes from a study's own
seeds (Agarwal et al. 2021 normalize Atari by fixed random and human
scores), so the reference variant's noise is not divided out of every other
variant, and one variant's results cannot move another's score.  The anchors
themselves, and how they were measured, are in the one table of task facts
(:mod:`mtdqn.taskfacts`); tasks without anchors (MinAtar) are left out of
aggregates (their per-task results are still reported).  Anchors are measured for the task as registered: a
spec whose options change its returns (:data:`RETURN_OPTIONS`) has none, so it is left out too.
"""

from __future__ import annotations

import math

import numpy as np

from mtdqn.analysis.ranges import return_bounds
from mtdqn.taskfacts import FACTS, Anchors, base_task
from mtdqn.tasknames import task_options

__all__ = ["Anchors", "ANCHORS", "RETURN_OPTIONS", "return_options", "lookup", "usable", "MIN_GAP", "normalize"]

ANCHORS: dict[str, Anchors] = {task: f.anchors for task, f in FACTS.items() if f.anchors is not None}

MIN_GAP = 0.01
"""Smallest reference - random for a usable scale, as a fraction of the task's feasible return range
(:func:`mtdqn.analysis.ranges.return_bounds`; in return units where the range is unbounded): below it, noise of
1% of the range would move a normalized score by more than 1.  CartPole-v1's range is 500 (a gap of at least
5), a MiniGrid task's 1 (at least 0.01)."""


RETURN_OPTIONS = ("max_steps", "sticky", "actions")
"""Task options that change what a policy returns: a MiniGrid task's time limit also scales its success reward
(1 - 0.9 t/max_steps), a classic task's moves its returns' range (MountainCar-v0:max_steps=1000: a policy that
never reaches the flag scores -1,000, not -200), and MinAtar's cut-off, sticky actions and action set change its
game.  The others do not
(``reward_scale``: reported returns are unscaled; ``gamma``: aggregates are on the undiscounted return;
``obs``: what the agent sees)."""


def return_options(task: str) -> list[str]:
    """The options of a task spec that change its returns (:data:`RETURN_OPTIONS`), in the spec's order."""
    return [name for name in task_options(task)[2] if name in RETURN_OPTIONS]


def lookup(task: str) -> Anchors | None:
    """The anchors of a task spec; None where its options change its returns, since the anchors were measured
    without them (``MiniGrid-MemoryS11-v0:max_steps=100``'s random return is 0.024, the default task's 0.19)."""
    return None if return_options(task) else ANCHORS.get(base_task(task))


def usable(task: str, anchors: Anchors | None) -> str:
    """'' when the task can be normalized, else the note saying why it is left out of aggregates."""
    changed = return_options(task)
    if anchors is None and changed and base_task(task) in ANCHORS:
        verb = "changes" if len(changed) == 1 else "change"
        return (f"no fixed anchors for its options (the anchors are measured without {', '.join(changed)}, "
                f"which {verb} its returns); left out of aggregates")
    if anchors is None:
        return "no fixed anchors (no citable reference score); left out of aggregates"
    low, high = return_bounds(task)
    span = high - low if math.isfinite(high - low) else 1.0
    if anchors.reference - anchors.random < MIN_GAP * span:
        return "reference and random anchors are too close; left out of aggregates"
    return ""


def normalize(
    x: np.ndarray | float, random_return: float, reference_return: float
) -> np.ndarray:
    """(x - random) / (reference - random): 0 = random policy, 1 = reference.

    The caller must check the denominator first (see `tables.normalization_table`):
    a reference no better than random makes the scale meaningless.
    """
    denom = reference_return - random_return
    if not np.isfinite(denom) or denom == 0.0:
        raise ValueError(
            f"normalize: reference ({reference_return}) - random ({random_return}) is zero or non-finite"
        )
    return (np.asarray(x, dtype=np.float64) - random_return) / denom
