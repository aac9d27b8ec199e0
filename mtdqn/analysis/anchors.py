"""Fixed normalization anchors: per task, a random-policy score and a reference score.

Normalized score = (x - random) / (reference - random): 0 is the uniform
random policy, 1 the reference.  Neither anchor comes from a study's own
seeds (Agarwal et al. 2021 normalize Atari by fixed random and human
scores), so the reference variant's noise is not divided out of every other
variant, and one variant's results cannot move another's score.

Random scores were measured once with our own random-policy evaluation
(epsilon 1.0, so the parameters do not matter), 1,000 episodes, seed 0::

    mtdqn train --tasks CartPole-v1,Acrobot-v1,MountainCar-v0 --seeds 1 --steps 2000 --log-every 1000 \\
        --learning-starts 500 --buffer-size 1000 --out /tmp/random-anchor-run --progress False
    mtdqn evaluate /tmp/random-anchor-run --episodes 1000 --epsilon 1.0

which printed CartPole-v1 21.77 ± 11.03, Acrobot-v1 -499.08 ± 9.31 and
MountainCar-v0 -200.00 ± 0.00 (mean ± std over episodes).  References are
the task's maximum return where it is reachable (CartPole-v1), else the
return Gymnasium registers as solving it (``reward_threshold`` in
``gymnasium/envs/__init__.py``).

MinAtar games have no anchors: Young & Tian (2019) report DQN's results as
learning curves in figures, not as numbers we could cite, so those tasks are
left out of aggregates (their per-task results are still reported).
"""

from __future__ import annotations

from typing import NamedTuple

from .ranges import base_task

__all__ = ["Anchors", "ANCHORS", "lookup", "usable", "MIN_GAP"]


class Anchors(NamedTuple):
    random: float
    reference: float
    source: str


_RANDOM = "random: our random-policy evaluation, 1,000 episodes (mtdqn.analysis.anchors)"
ANCHORS: dict[str, Anchors] = {
    "CartPole-v1": Anchors(21.77, 500.0, f"{_RANDOM}; reference: maximum return (500 steps)"),
    "Acrobot-v1": Anchors(-499.08, -100.0, f"{_RANDOM}; reference: Gymnasium reward_threshold"),
    "MountainCar-v0": Anchors(-200.0, -110.0, f"{_RANDOM}; reference: Gymnasium reward_threshold"),
}

MIN_GAP = 1.0
"""Smallest reference - random (in return units) for a usable scale: below it, noise of one return point
would move a normalized score by more than 1."""


def lookup(task: str) -> Anchors | None:
    """The anchors of a task spec (options such as ``:reward_scale`` do not change reported returns)."""
    return ANCHORS.get(base_task(task))


def usable(task: str, anchors: Anchors | None) -> str:
    """'' when the task can be normalized, else the note saying why it is left out of aggregates."""
    if anchors is None:
        return "no fixed anchors (no citable reference score); left out of aggregates"
    if anchors.reference - anchors.random < MIN_GAP:
        return "reference and random anchors are too close; left out of aggregates"
    return ""
