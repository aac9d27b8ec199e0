"""Feasible ranges of every metric the report shows, so no interval leaves them.

An undiscounted episode return is bounded by the task itself (CartPole-v1
pays +1 per step for at most 500 steps, so [0, 500]); a cosine lies in
[-1, 1]; a fraction and a linear CKA in [0, 1].  The statistics take these
bounds and keep every interval inside them (:func:`mtdqn.analysis.stats.clip`);
a task missing from :data:`RETURN_BOUNDS` is unbounded, which a percentile
bootstrap still never leaves the data's own range for.
"""

from __future__ import annotations

import math

__all__ = ["Bounds", "RETURN_BOUNDS", "COSINE", "FRACTION", "CKA", "WEIGHT", "UNBOUNDED", "return_bounds",
           "difference_bounds", "base_task"]

Bounds = tuple[float, float]

UNBOUNDED: Bounds = (-math.inf, math.inf)
COSINE: Bounds = (-1.0, 1.0)
FRACTION: Bounds = (0.0, 1.0)
CKA: Bounds = (0.0, 1.0)  # linear CKA on centred features: a ratio of squared Frobenius norms, at most 1
WEIGHT: Bounds = (0.0, math.inf)  # strategy weights are non-negative coefficients

# Undiscounted episode return of each registered task: (lowest, highest) possible.
RETURN_BOUNDS: dict[str, Bounds] = {
    "CartPole-v1": (0.0, 500.0),  # +1 per step, truncated at 500 steps
    "Acrobot-v1": (-500.0, 0.0),  # -1 per step until the goal, truncated at 500 steps
    "MountainCar-v0": (-200.0, 0.0),  # -1 per step until the goal, truncated at 200 steps
    "CarOnHill-v0": (-1.0, 1.0),  # one terminal reward of +1 or -1, 0 otherwise
    "InvertedPendulumDiscrete-v0": (-1.0, 0.0),  # -1 when it falls, 0 otherwise
    "Breakout-MinAtar": (0.0, math.inf),  # MinAtar rewards are non-negative
    "Asterix-MinAtar": (0.0, math.inf),
    "Freeway-MinAtar": (0.0, math.inf),
    "SpaceInvaders-MinAtar": (0.0, math.inf),
    "Seaquest-MinAtar": (0.0, math.inf),
}


def base_task(task: str) -> str:
    """The registered name behind a task spec: options (``:reward_scale=...``) and ``gym:`` dropped.

    Reported returns are unscaled, so a task's bounds do not depend on its options.
    """
    name = task.split(":", 1)[1] if task.startswith("gym:") else task
    return name.split(":", 1)[0]


def return_bounds(task: str) -> Bounds:
    """Feasible range of a task's undiscounted return; unbounded for a task not in the table."""
    return RETURN_BOUNDS.get(base_task(task), UNBOUNDED)


def difference_bounds(bounds: Bounds) -> Bounds:
    """Range of a difference of two quantities that each lie in ``bounds``."""
    lo, hi = bounds
    width = hi - lo
    return (-width, width)
