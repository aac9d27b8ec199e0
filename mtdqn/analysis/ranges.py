"""Feasible ranges of every metric the report shows, so no interval leaves them.

A return is bounded by the task itself.  Each task's :class:`RewardShape`
says what its rewards can be: the range of one step's reward (containing 0)
and the most steps of an episode that can carry a nonzero reward (its time
limit, or 1 for a task paid once, at the end).  With rewards in ``[lo, hi]``,
``lo <= 0 <= hi``, and at most ``N`` of them nonzero, the discounted return
``sum_t gamma^t r_t`` lies in ``[lo * S, hi * S]`` with
``S = 1 + gamma + ... + gamma^(N-1)``: the k-th nonzero reward comes at step
``k`` or later, so its weight is at most ``gamma^k``.  ``gamma = 1`` gives the
undiscounted range (CartPole-v1 pays +1 per step for at most 500 steps, so
[0, 500]); with ``gamma = 0.99``, CartPole-v1's discounted return lies in
[0, 99.3].  A cosine and a debiased linear CKA lie in [-1, 1]; a fraction in [0, 1]; a lookahead affinity
``1 - L'/L`` at most 1.

The statistics take these bounds and keep every interval inside them
(:func:`mtdqn.analysis.stats.clip`); a task missing from :data:`REWARDS` is
unbounded, which a percentile bootstrap still never leaves the data's own
range for.
"""

from __future__ import annotations

import math

from mtdqn.tasknames import task_options
from mtdqn.taskfacts import FACTS, Bounds, RewardShape, base_task

__all__ = ["Bounds", "RewardShape", "REWARDS", "RETURN_BOUNDS", "COSINE", "FRACTION", "CKA", "WEIGHT", "AFFINITY",
           "UNBOUNDED",
           "return_bounds", "discounted_bounds", "describe_bounds", "difference_bounds"]

UNBOUNDED: Bounds = (-math.inf, math.inf)
COSINE: Bounds = (-1.0, 1.0)
FRACTION: Bounds = (0.0, 1.0)
CKA: Bounds = (-1.0, 1.0)  # debiased linear CKA: a cosine of U-centred Gram matrices (the biased one's [0, 1] in it)
WEIGHT: Bounds = (0.0, math.inf)  # strategy weights are non-negative coefficients
AFFINITY: Bounds = (-math.inf, 1.0)  # 1 - L_j(after i's step) / L_j: a loss is never negative, so at most 1


# Every registered task's rewards (unscaled: reported returns are unscaled), from the one table of task facts.
REWARDS: dict[str, RewardShape] = {task: f.rewards for task, f in FACTS.items()}


def _geometric(gamma: float, n: float) -> float:
    """1 + gamma + ... + gamma^(n-1) (n may be inf)."""
    if gamma == 1.0:
        return float(n)
    return 1.0 / (1.0 - gamma) if math.isinf(n) else (1.0 - gamma ** n) / (1.0 - gamma)


def _scaled(reward: float, weight: float) -> float:
    return 0.0 if reward == 0.0 else reward * weight  # 0 * inf is 0 here: no reward, no return


def discounted_bounds(task: str, gamma: float) -> Bounds:
    """Feasible range of a task's return discounted by ``gamma`` in (0, 1]; unbounded for an unknown task or a
    ``gamma`` that is not a number (a run that did not record it)."""
    shape = REWARDS.get(base_task(task))
    if shape is None or not (isinstance(gamma, (int, float)) and 0.0 < gamma <= 1.0):
        return UNBOUNDED
    weight = _geometric(float(gamma), _rewarded_steps(task, shape))
    return (_scaled(shape.reward[0], weight), _scaled(shape.reward[1], weight))


def _rewarded_steps(task: str, shape: RewardShape) -> float:
    """The shape's most rewarded steps, or a time-limited task's own ``max_steps=N`` (``Acrobot-v1:max_steps=1000``:
    1,000, not 500)."""
    limit = task_options(task)[2].get("max_steps") if shape.time_limited else None
    return float(limit) if limit is not None else shape.rewarded_steps


def return_bounds(task: str) -> Bounds:
    """Feasible range of a task's undiscounted return; unbounded for a task not in the table."""
    return discounted_bounds(task, 1.0)


# Undiscounted episode return of each registered task: (lowest, highest) possible.
RETURN_BOUNDS: dict[str, Bounds] = {task: return_bounds(task) for task in REWARDS}


def describe_bounds(task: str) -> str:
    """How a task's bounds are derived, for the report: its rewards in words and the numbers used."""
    shape = REWARDS.get(base_task(task))
    if shape is None:
        return "no known reward bounds: unbounded"
    lo, hi = shape.reward
    steps = _rewarded_steps(task, shape)
    n = "any number" if math.isinf(steps) else f"at most {steps:,g}"
    why = shape.why if not shape.time_limited else \
        f"{shape.why}, truncated at {steps:,.0f} steps{'' if steps == shape.rewarded_steps else ' (max_steps)'}"
    return f"{why}: each reward in [{lo:g}, {hi:g}], {n} of them nonzero per episode"


def difference_bounds(bounds: Bounds) -> Bounds:
    """Range of a difference of two quantities that each lie in ``bounds``."""
    lo, hi = bounds
    width = hi - lo
    return (-width, width)
