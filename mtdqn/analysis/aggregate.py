"""Aggregates across tasks through rliable: IQM, mean, probability of improvement.

Agarwal et al., 2021, "Deep Reinforcement Learning at the Edge of the
Statistical Precipice" (the rliable library). Stratified bootstrap over seeds
within each task, percentile intervals.

Reproducibility: rliable 1.2 accepts `random_state` but its bootstrap classes
draw resampling indices with the *global* `np.random.choice`
(`StratifiedBootstrap.update_indices`, `StratifiedIndependentBootstrap._get_indices`),
so the argument has no effect on the intervals (and passing it only triggers a
deprecation warning from `arch`). The only way to make the intervals
reproducible is to seed the global numpy state around the call; `_seeded_numpy`
does that and restores the caller's state afterwards.

Below :data:`~mtdqn.analysis.stats.MIN_SEEDS` runs per variant the point
estimates are kept and the intervals are NaN: a stratified bootstrap of 2
runs per task has a handful of distinct resamples, and its "95% CI" is just
the spread of those.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np
from rliable import library as rly
from rliable import metrics as rlm

from .permutation import (
    NO_TEST, PermutationTest, complement, permutation_is_exact, permutation_p_values, split_blocks,
)
from .stats import MIN_SEEDS, Estimate

__all__ = ["aggregate_intervals", "probability_of_improvement", "iqm_difference", "permutation_p", "permutation_test",
           "poi_ties"]


@contextlib.contextmanager
def _seeded_numpy(seed: int) -> Iterator[None]:
    """Seed numpy's global RNG for rliable, restoring the previous state on exit."""
    saved = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(saved)


def _iqm_and_mean(scores: np.ndarray) -> np.ndarray:
    return np.array([rlm.aggregate_iqm(scores), rlm.aggregate_mean(scores)])


def aggregate_intervals(
    scores: np.ndarray, reps: int, seed: int
) -> dict[str, Estimate]:
    """IQM and mean of a (seeds, tasks) normalized-score matrix with 95% bootstrap CIs.

    Returns {"IQM": Estimate, "mean": Estimate}; `n` is the seed count.
    """
    scores = np.asarray(scores, dtype=np.float64)
    with _seeded_numpy(seed):
        point, interval = rly.get_interval_estimates(
            {"x": scores}, _iqm_and_mean, reps=reps
        )
    n = int(scores.shape[0])
    p, ci = point["x"], interval["x"]
    return {
        name: _small_n(Estimate(float(p[i]), float(ci[0, i]), float(ci[1, i]), n))
        for i, name in enumerate(("IQM", "mean"))
    }


def _small_n(e: Estimate) -> Estimate:
    """``e`` without its interval when it rests on fewer than MIN_SEEDS runs."""
    return e if e.n >= MIN_SEEDS else Estimate(e.value, float("nan"), float("nan"), e.n)


def probability_of_improvement(
    scores_x: np.ndarray, scores_y: np.ndarray, reps: int, seed: int
) -> Estimate:
    """P(X > Y) averaged over tasks (Mann-Whitney per task) with a 95% bootstrap CI.

    `n` is min(runs of X, runs of Y).
    """
    x = np.asarray(scores_x, dtype=np.float64)
    y = np.asarray(scores_y, dtype=np.float64)
    with _seeded_numpy(seed):
        point, interval = rly.get_interval_estimates(
            {"xy": [x, y]}, rlm.probability_of_improvement, reps=reps
        )
    ci = np.asarray(interval["xy"]).ravel()
    return _small_n(Estimate(float(point["xy"]), float(ci[0]), float(ci[1]), int(min(len(x), len(y)))))


def _diffs(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return _iqm_and_mean(x) - _iqm_and_mean(y)


def iqm_difference(
    scores_x: np.ndarray, scores_y: np.ndarray, reps: int, seed: int
) -> dict[str, Estimate]:
    """{"IQM": IQM(X) - IQM(Y), "mean": mean(X) - mean(Y)} with 95% CIs, each matrix resampled independently.

    Uses rliable's independent stratified bootstrap, so runs of X and Y are not
    assumed paired. `n` is min(runs of X, runs of Y). The mean is given beside
    the IQM because with few runs the IQM trims exactly the failures a reader
    needs to see.
    """
    x = np.asarray(scores_x, dtype=np.float64)
    y = np.asarray(scores_y, dtype=np.float64)
    with _seeded_numpy(seed):
        point, interval = rly.get_interval_estimates({"xy": [x, y]}, _diffs, reps=reps)
    p, ci = np.asarray(point["xy"]).ravel(), np.asarray(interval["xy"]).reshape(2, -1)
    n = int(min(len(x), len(y)))
    return {name: _small_n(Estimate(float(p[i]), float(ci[0, i]), float(ci[1, i]), n))
            for i, name in enumerate(("IQM", "mean"))}




def _iqm_rows(values: np.ndarray) -> np.ndarray:
    """The IQM of each row of (splits, scores): rliable's ``aggregate_iqm`` (scipy's 25% ``trim_mean``) at once."""
    cut = int(0.25 * values.shape[1])
    return np.sort(values, axis=1)[:, cut: values.shape[1] - cut].mean(axis=1)


_ROW_AGGREGATES = {"IQM": _iqm_rows, "mean": lambda values: values.mean(axis=1)}
"""The aggregates the report compares (rliable's IQM and mean of a (runs, tasks) score matrix), of every row of
a (splits, runs x tasks) matrix at once (the permutation tests' blocks)."""


def permutation_test(scores_x: np.ndarray, scores_y: np.ndarray, statistic: str, *, seed: int = 0) -> PermutationTest:
    """Two-sided test of aggregate(X) - aggregate(Y) by permuting runs between the two variants: its p and the
    smallest p these runs allow (:class:`~mtdqn.analysis.permutation.PermutationTest`).

    Under "no difference" a run (its row of per-task scores) is as likely to belong to either variant, so
    every split of the pooled runs is equally likely: the test is exact at any n, which the rliable interval
    is not. All splits are enumerated up to MAX_EXACT_SPLITS (10 + 10 runs: 184,756), in vectorized blocks,
    else MONTE_CARLO_SPLITS random ones (p = (1 + hits) / (1 + splits)). No test below MIN_SEEDS runs in
    either variant.
    """
    x = np.asarray(scores_x, dtype=np.float64)
    y = np.asarray(scores_y, dtype=np.float64)
    if min(len(x), len(y)) < MIN_SEEDS:
        return NO_TEST
    stat = _ROW_AGGREGATES[statistic]
    pooled = np.concatenate([x, y])
    n = len(pooled)

    def gaps(first: np.ndarray) -> np.ndarray:  # |stat(first) - stat(rest)| of each split (row of indices)
        rest = complement(first, n)
        return np.abs(stat(pooled[first].reshape(len(first), -1)) - stat(pooled[rest].reshape(len(rest), -1)))

    observed = float(gaps(np.arange(len(x))[None])[0])
    every = np.concatenate([gaps(block) for block in split_blocks(n, len(x), seed)])
    return permutation_p_values(observed, every, permutation_is_exact(len(x), len(y)))


def permutation_p(scores_x: np.ndarray, scores_y: np.ndarray, statistic: str, **kwargs: Any) -> float:
    """The p of :func:`permutation_test` alone."""
    return permutation_test(scores_x, scores_y, statistic, **kwargs).p


def poi_ties(scores_x: np.ndarray, scores_y: np.ndarray) -> float:
    """Share of (run of X, run of Y) pairs, over tasks, with equal scores: each counts 1/2 in P(X > Y)."""
    x = np.asarray(scores_x, dtype=np.float64)
    y = np.asarray(scores_y, dtype=np.float64)
    if x.size == 0 or y.size == 0:
        return float("nan")
    return float(np.mean(x[:, None, :] == y[None, :, :]))
