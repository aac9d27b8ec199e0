"""Tests by permuting runs: Gehan's test and concordance for steps to threshold, the splits they enumerate.

Steps to threshold is a censored time: a seed that never reached the
threshold within the budget has no time, only "later than the budget".  A
difference of means or a t-test would have to invent one, so the report
orders such times by Gehan's generalized Wilcoxon statistic for censored
data (Gehan 1965, Biometrika 52): each pair of runs counts +1, -1 or 0 when
censoring leaves their order unknown (:func:`gehan_concordance` is that
statistic over n_x n_y, Cliff's delta for censored times, the effect size a
referee asked for).  Its p comes from permuting runs between the two groups
rather than from the asymptotic normal approximation, which 5-10 seeds do
not support: every split of the pooled runs is enumerated up to
:data:`MAX_EXACT_SPLITS`, else :data:`MONTE_CARLO_SPLITS` random ones
(:func:`split_blocks`).  The aggregates' permutation tests
(:func:`mtdqn.analysis.aggregate.permutation_test`) permute the same splits.

A permutation test over a few runs is discrete: some can never reach a small
p (a single run reaching the threshold between two groups of equal size
gives p = 1 at every split).  :class:`PermutationTest` carries that smallest
attainable p, and Tarone's rule (Tarone 1990, Biometrics 46;
:func:`tarone_testable`, :func:`tarone_k`) leaves such tests out of the
multiple-testing family instead of letting them tighten every other
comparison's threshold.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from .stats import MIN_SEEDS

__all__ = [
    "gehan_concordance",
    "gehan_concordance_ci",
    "Concordance",
    "MAX_EXACT_SPLITS",
    "MONTE_CARLO_SPLITS",
    "permutation_is_exact",
    "permutation_wording",
    "permutations_exact",
    "split_blocks",
    "complement",
    "permutation_p_values",
    "PermutationTest",
    "NO_TEST",
    "gehan_permutation_test",
    "gehan_permutation_p",
    "tarone_testable",
    "tarone_k",
]


def _gehan_matrix(x: np.ndarray, y: np.ndarray, budget: float) -> np.ndarray:
    """(n, n) over X's runs then Y's, NaN (not reached) censored at ``budget``: U_ij +1 where run i certainly
    reached the threshold after run j, -1 where certainly before, 0 where censoring leaves the order unknown
    (both censored, or censored before the other's event) or the two tie."""
    pooled = np.concatenate([x, y])
    reached = np.isfinite(pooled)
    times = np.where(reached, pooled, float(budget))
    t_i, t_j = times[:, None], times[None, :]
    r_i, r_j = reached[:, None], reached[None, :]
    later = r_j & ((t_i > t_j) | (~r_i & (t_i >= t_j)))  # i certainly after j's event
    earlier = r_i & ((t_j > t_i) | (~r_j & (t_j >= t_i)))
    return later.astype(np.int64) - earlier.astype(np.int64)


def _pooled_gehan_scores(x: np.ndarray, y: np.ndarray, budget: float) -> np.ndarray:
    """Per run of X then Y, Gehan's score sum_j U_ij (:func:`_gehan_matrix`) over every pooled run."""
    return _gehan_matrix(x, y, budget).sum(axis=1)


def _gehan_pairs(times_x: np.ndarray | list[float], times_y: np.ndarray | list[float], budget: float) -> np.ndarray:
    """(n_x, n_y): :func:`_gehan_matrix`'s pairs between the groups (X's run against Y's)."""
    x, y = (np.asarray(v, dtype=np.float64).ravel() for v in (times_x, times_y))
    return _gehan_matrix(x, y, budget)[: x.size, x.size:]


def gehan_concordance(times_x: np.ndarray | list[float], times_y: np.ndarray | list[float], budget: float) -> float:
    """The steps-to-threshold effect size: over every (run of X, run of Y) pair, the share in which X's run
    certainly reached the threshold later minus the share in which it certainly reached it earlier (pairs that
    censoring leaves unordered count 0), in [-1, 1]; Gehan's statistic over n_x n_y, Cliff's delta for censored
    times (a referee asked for a standardized effect beside the restricted-mean difference).  NaN: not reached
    is censored at ``budget``; NaN without both groups."""
    pairs = _gehan_pairs(times_x, times_y, budget)
    return float(pairs.mean()) if pairs.size else float("nan")


class Concordance(NamedTuple):
    """Gehan's concordance c with its 95% percentile-bootstrap interval over seeds, and the share of run pairs
    tied or left unordered by censoring (they count 0 in c, so c cannot exceed one minus it in size)."""

    c: float
    lo: float
    hi: float
    unordered: float


def gehan_concordance_ci(times_x: np.ndarray | list[float], times_y: np.ndarray | list[float], budget: float,
                         reps: int = 2000, seed: int = 0) -> Concordance:
    """:func:`gehan_concordance` with a percentile-bootstrap interval (each group's runs resampled with
    replacement, ``reps`` times) and the share of tied or unordered pairs (a referee asked for both).  Like the
    aggregates' percentile intervals it under-covers at small n, and it has zero width when the groups are
    completely separated (every resample gives the same c)."""
    pairs = _gehan_pairs(times_x, times_y, budget)
    if not pairs.size:
        return Concordance(float("nan"), float("nan"), float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    n_x, n_y = pairs.shape  # a resample is how often it draws each run: (reps, n) counts, not (reps, n_x, n_y)
    counts_x = rng.multinomial(n_x, np.full(n_x, 1.0 / n_x), size=reps)
    counts_y = rng.multinomial(n_y, np.full(n_y, 1.0 / n_y), size=reps)
    boot = np.einsum("ri,ij,rj->r", counts_x, pairs, counts_y) / (n_x * n_y)
    lo, hi = np.percentile(boot, [2.5, 97.5])
    return Concordance(float(pairs.mean()), float(lo), float(hi), float((pairs == 0).mean()))


MAX_EXACT_SPLITS = 1_000_000
"""A permutation test enumerates every split of the pooled runs when there are at most this many (11 + 11 runs:
705,432; 10 + 10: 184,756), in vectorized blocks; beyond, it draws MONTE_CARLO_SPLITS random ones."""
MONTE_CARLO_SPLITS = 20_000
_BLOCK = 50_000  # splits per vectorized block: (block, runs, tasks) float64 stays in tens of MB


def permutation_is_exact(n_x: int, n_y: int) -> bool:
    """Whether a permutation test of ``n_x`` against ``n_y`` runs enumerates every split (else Monte Carlo)."""
    return math.comb(n_x + n_y, n_x) <= MAX_EXACT_SPLITS


def permutation_wording(exact: bool) -> str:
    """How the report names its permutation tests over runs: every split enumerated, or random splits and the
    floor they put on p (a referee recomputed a p reported as exact and found it Monte Carlo)."""
    if exact:
        return "exact two-sided permutation tests over runs (every split of the pooled runs enumerated)"
    return (f"Monte Carlo two-sided permutation tests over runs ({MONTE_CARLO_SPLITS:,} random splits of the "
            "pooled runs, "
            f"smallest attainable p {1 / (1 + MONTE_CARLO_SPLITS):.1g}; every split is enumerated only up to "
            f"{MAX_EXACT_SPLITS:,} splits)")


def permutations_exact(*tables: pd.DataFrame) -> bool:
    """Whether every permutation test in these tables (rows with a Gehan test, aggregate rows with a p) enumerated
    every split, from their seed counts ``n`` and ``n_reference``."""
    for table in tables:
        if table.empty or "n_reference" not in table:
            continue
        tested = (table["test"] == "gehan") if "test" in table else np.ones(len(table), dtype=bool)
        for n, m in table.loc[tested, ["n", "n_reference"]].itertuples(index=False):
            if not permutation_is_exact(int(n), int(m)):
                return False
    return True


def split_blocks(n_pooled: int, n_first: int, seed: int) -> Iterator[np.ndarray]:
    """The splits a permutation test compares, as blocks of (splits, n_first) indices of the first group's runs:
    all C(n_pooled, n_first) of them when :func:`permutation_is_exact`, else MONTE_CARLO_SPLITS uniform ones."""
    if permutation_is_exact(n_first, n_pooled - n_first):
        combos = itertools.combinations(range(n_pooled), n_first)
        while True:
            block = np.fromiter(itertools.chain.from_iterable(itertools.islice(combos, _BLOCK)), dtype=np.int64)
            if not block.size:
                return
            yield block.reshape(-1, n_first)
    rng = np.random.default_rng(seed)
    for start in range(0, MONTE_CARLO_SPLITS, _BLOCK):
        rows = min(_BLOCK, MONTE_CARLO_SPLITS - start)
        yield rng.permuted(np.tile(np.arange(n_pooled), (rows, 1)), axis=1)[:, :n_first]


def complement(first: np.ndarray, n_pooled: int) -> np.ndarray:
    """(splits, n_pooled - n_first) indices of the runs not in each row of ``first``, in order."""
    chosen = np.zeros((len(first), n_pooled), dtype=bool)
    np.put_along_axis(chosen, first, True, axis=1)
    return np.argsort(chosen, axis=1, kind="stable")[:, : n_pooled - first.shape[1]]


def permutation_p_values(observed: float, gaps: np.ndarray, exact: bool) -> PermutationTest:
    """p and smallest attainable p from |statistic| of every split (``exact``) or of random ones, ties counted
    (a relative tolerance of 1e-12 keeps float noise from splitting a tie)."""
    def beyond(level: float) -> int:
        return int(np.sum(gaps >= level - 1e-12 * max(1.0, abs(level))))

    if exact:
        return PermutationTest(beyond(observed) / gaps.size, beyond(float(gaps.max())) / gaps.size, True)
    return PermutationTest((1 + beyond(observed)) / (1 + gaps.size), 1.0 / (1 + gaps.size), False)


class PermutationTest(NamedTuple):
    """A permutation test's two-sided p and the smallest p any split of the same runs could give (Tarone's
    minimum attainable p, :func:`tarone_testable`; with random splits, 1 / (1 + reps): an observed split
    beyond every draw).  Both NaN where there is no test."""

    p: float
    smallest: float
    exact: bool = True  # every split enumerated (else MONTE_CARLO_SPLITS random ones)


NO_TEST = PermutationTest(float("nan"), float("nan"))


def gehan_permutation_test(times_x: np.ndarray | list[float], times_y: np.ndarray | list[float], budget: float,
                           *, min_seeds: int = MIN_SEEDS, seed: int = 0) -> PermutationTest:
    """Gehan's generalized Wilcoxon test for right-censored times, by permuting runs: its two-sided p and the
    smallest p these runs allow (1 where every split ties, as with a single run reaching the threshold
    between two groups of equal size).

    NaN in ``times_*`` means "not reached within ``budget``": censored at ``budget``, not a time of
    ``budget`` (a run that reached it exactly at the budget is an event there). Every split of the pooled
    runs is enumerated up to MAX_EXACT_SPLITS (6 + 6: 924), else random ones (:func:`split_blocks`). No test
    below ``min_seeds`` runs in a group or when no run of either group reached the threshold (nothing to
    order: not informative at this budget).
    """
    x, y = (np.asarray(v, dtype=np.float64).ravel() for v in (times_x, times_y))
    if min(x.size, y.size) < max(min_seeds, 2):
        return NO_TEST
    if not (np.isfinite(x).any() or np.isfinite(y).any()):
        return NO_TEST
    scores = _pooled_gehan_scores(x, y, budget)
    observed = abs(int(scores[: x.size].sum()))
    sums = np.concatenate([np.abs(scores[block].sum(axis=1)) for block in split_blocks(scores.size, x.size, seed)])
    return permutation_p_values(observed, sums, permutation_is_exact(x.size, y.size))


def gehan_permutation_p(times_x: np.ndarray | list[float], times_y: np.ndarray | list[float], budget: float,
                        **kwargs: Any) -> float:
    """The p of :func:`gehan_permutation_test` alone."""
    return gehan_permutation_test(times_x, times_y, budget, **kwargs).p


def tarone_testable(smallest_p: np.ndarray | list[float], alpha: float = 0.05) -> np.ndarray:
    """Which tests belong in a multiple-testing family, by Tarone's rule (Biometrics 1990): a discrete test
    whose smallest attainable p (``smallest_p``; 0 for a continuous one, NaN for no test) is above alpha / K
    can never be rejected at that level, so it is left out, K being the smallest count for which at most K
    tests remain.  A Gehan test of one censored-out run against another cannot pass any level, yet counted,
    it would tighten every other comparison's threshold."""
    p = np.asarray(smallest_p, dtype=np.float64).ravel()
    return np.isfinite(p) & (p <= alpha / tarone_k(p, alpha))


def tarone_k(smallest_p: np.ndarray | list[float], alpha: float = 0.05) -> int:
    """Tarone's K: the smallest k for which at most k tests have a smallest attainable p <= alpha / k (1 when
    there are no tests); the tests kept are those, and none of the others could pass alpha / K."""
    p = np.asarray(smallest_p, dtype=np.float64).ravel()
    tested = p[np.isfinite(p)]
    return next((k for k in range(1, tested.size + 1) if (tested <= alpha / k).sum() <= k), 1)
