"""Per-seed statistics: confidence intervals, curve summaries, normalization, CKA.

Everything here is plain numpy/scipy on small arrays so it can be checked
against hand-computed values. Aggregates across tasks (IQM, probability of
improvement) live in `aggregate.py` because they go through rliable.

The report's intervals are Student-t intervals over seeds, clipped to the
metric's feasible range (:mod:`mtdqn.analysis.ranges`): :func:`t_mean` for a
mean and :func:`welch_diff` (Welch's unequal-variance interval) for a
difference, with :func:`welch_p` its test, :func:`hedges_g` its standardized
size and :func:`holm` the correction across a report's comparisons. They were
picked by a coverage simulation (``tests/test_report_inference.py``): at 5 and
10 seeds per group, on normal, skewed, bimodal ("some seeds learn") and
uniform returns, the Welch interval covers the true difference 93-99% of the
time, where the percentile bootstrap the report used before covered 87-89% at
5 seeds (the test measures and checks them). Its known
weak spot, also measured there: one group bimodal and the other not, at 5
seeds, all three candidates (Welch, percentile and studentized bootstrap)
cover only ~84%. Below :data:`MIN_SEEDS` seeds no interval is given at all:
the seeds' values are shown instead. A group of identical values has no
spread to build an interval from: "not estimable (no variation)", never a
[0, 0] interval.

The percentile bootstraps (:func:`bootstrap_mean`, :func:`bootstrap_diff`)
stay for the transfer tables and ``benchmarks/deramo_classic.py``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
from scipy import stats as sps

from .ranges import UNBOUNDED, Bounds, difference_bounds

__all__ = [
    "Estimate",
    "MIN_SEEDS",
    "clip",
    "t_mean",
    "welch_diff",
    "welch_p",
    "hedges_g",
    "holm",
    "no_variation",
    "deviating_seeds",
    "detectable_from_se",
    "gehan_permutation_p",
    "gehan_permutation_test",
    "gehan_concordance",
    "gehan_concordance_ci",
    "Concordance",
    "PermutationTest",
    "bootstrap_mean",
    "bootstrap_diff",
    "min_detectable_difference",
    "mean_ci",
    "diff_ci",
    "moving_average",
    "auc",
    "steps_to_threshold",
    "normalize",
    "linear_cka",
    "tarone_k",
    "tarone_testable",
]


class Estimate(NamedTuple):
    """A point estimate with its 95% interval and the number of seeds behind it.

    `n` is the sample size of the estimate (for a difference: the smaller of the
    two groups, see `diff_ci`); `lo`/`hi` are NaN when the interval is undefined.
    """

    value: float
    lo: float
    hi: float
    n: int


def _finite(values: np.ndarray | list[float]) -> np.ndarray:
    x = np.asarray(values, dtype=np.float64).ravel()
    return x[np.isfinite(x)]


MIN_SEEDS = 5
"""Fewest seeds per variant for which the report gives an interval; below it, the seeds are shown instead."""


def clip(e: Estimate, bounds: Bounds) -> Estimate:
    """``e`` with its value and interval clipped to ``bounds`` (NaN stays NaN)."""
    lo, hi = bounds
    c = lambda v: float(min(max(v, lo), hi)) if np.isfinite(v) else v  # noqa: E731
    return Estimate(c(e.value), c(e.lo), c(e.hi), e.n)


def _percentiles(stat: np.ndarray, confidence: float) -> tuple[float, float]:
    tail = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(stat, [tail, 1.0 - tail])
    return float(lo), float(hi)


def bootstrap_mean(values: np.ndarray | list[float], bounds: Bounds = UNBOUNDED, *, reps: int = 2000,
                   seed: int = 0, confidence: float = 0.95, min_seeds: int = MIN_SEEDS) -> Estimate:
    """Mean over seeds with a percentile-bootstrap interval inside ``bounds``; NaN bounds below ``min_seeds``.

    Non-finite values are dropped. ``seed`` fixes the resampling so a report
    rebuilds byte for byte. Percentile bootstraps under-cover at 5-10 seeds
    (Agarwal et al. 2021 use them all the same): read them as a guide, not a test.
    """
    x = _finite(values)
    n = int(x.size)
    if n == 0:
        return Estimate(float("nan"), float("nan"), float("nan"), 0)
    mean = float(x.mean())
    if n < min_seeds:
        return clip(Estimate(mean, float("nan"), float("nan"), n), bounds)
    idx = np.random.default_rng(seed).integers(0, n, size=(reps, n))
    return clip(Estimate(mean, *_percentiles(x[idx].mean(axis=1), confidence), n), bounds)


def _point_difference(a: np.ndarray, b: np.ndarray, bounds: Bounds) -> Estimate:
    """mean(a) - mean(b) of two non-empty groups without an interval, within ``difference_bounds(bounds)``;
    `n` is the smaller group's size."""
    return clip(Estimate(float(a.mean() - b.mean()), float("nan"), float("nan"), int(min(a.size, b.size))),
                difference_bounds(bounds))


def bootstrap_diff(x: np.ndarray | list[float], y: np.ndarray | list[float], bounds: Bounds = UNBOUNDED, *,
                   reps: int = 2000, seed: int = 0, confidence: float = 0.95,
                   min_seeds: int = MIN_SEEDS) -> Estimate:
    """mean(x) - mean(y), each group resampled independently (unpaired), percentile interval.

    ``bounds`` is the range of one value; the difference is kept inside
    ``difference_bounds(bounds)``. `n` is min(len(x), len(y)); no interval
    when either group has fewer than ``min_seeds`` seeds.
    """
    a, b = _finite(x), _finite(y)
    if a.size == 0 or b.size == 0:
        return Estimate(float("nan"), float("nan"), float("nan"), 0)
    point = _point_difference(a, b, bounds)
    if point.n < min_seeds:
        return point
    rng = np.random.default_rng(seed)
    ra = a[rng.integers(0, a.size, size=(reps, a.size))].mean(axis=1)
    rb = b[rng.integers(0, b.size, size=(reps, b.size))].mean(axis=1)
    return clip(Estimate(point.value, *_percentiles(ra - rb, confidence), point.n), difference_bounds(bounds))


def no_variation(*groups: np.ndarray | list[float]) -> bool:
    """Every finite value of every group is the same: no spread to build an interval or a test from.

    (MountainCar at -200 in every seed of both variants is the common case: the difference is 0 with
    nothing behind it.)
    """
    finite = [_finite(g) for g in groups]
    return all(g.size > 0 for g in finite) and all(np.ptp(g) == 0.0 for g in finite) \
        and len({float(g[0]) for g in finite}) == 1


def deviating_seeds(*groups: np.ndarray | list[float]) -> int:
    """How many values of all ``groups`` together differ from their most common value (finite values only).

    1 means the comparison rests on a single seed: every other seed of both sides gave one value. Welch's
    t is then exactly 1 in absolute value whatever the deviation (n-1 degrees of freedom: p = 0.3632 at
    n = 6), so its p, Hedges' g and detectable difference describe the design, not an effect.
    """
    x = np.concatenate([_finite(g) for g in groups]) if groups else np.zeros(0)
    if x.size == 0:
        return 0
    _, counts = np.unique(x, return_counts=True)
    return int(x.size - counts.max())


def t_mean(values: np.ndarray | list[float], bounds: Bounds = UNBOUNDED, *, confidence: float = 0.95,
           min_seeds: int = MIN_SEEDS) -> Estimate:
    """Mean over seeds with a Student-t interval clipped to ``bounds``; NaN interval below ``min_seeds`` seeds
    or with no spread (every seed the same value)."""
    x = _finite(values)
    n = int(x.size)
    if n == 0:
        return Estimate(float("nan"), float("nan"), float("nan"), 0)
    mean = float(x.mean())
    sd = float(x.std(ddof=1)) if n > 1 else 0.0
    if n < min_seeds or sd == 0.0:
        return clip(Estimate(mean, float("nan"), float("nan"), n), bounds)
    half = float(sps.t.ppf(0.5 + confidence / 2, n - 1) * sd / np.sqrt(n))
    return clip(Estimate(mean, mean - half, mean + half, n), bounds)


def _welch(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(standard error, Welch-Satterthwaite degrees of freedom) of mean(a) - mean(b); se 0: no spread."""
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    se = float(np.sqrt(va + vb))
    if se == 0.0:
        return 0.0, float("nan")
    return se, float((va + vb) ** 2 / (va**2 / (a.size - 1) + vb**2 / (b.size - 1)))


def welch_diff(x: np.ndarray | list[float], y: np.ndarray | list[float], bounds: Bounds = UNBOUNDED, *,
               confidence: float = 0.95, min_seeds: int = MIN_SEEDS) -> Estimate:
    """mean(x) - mean(y) with Welch's t-interval, clipped to ``difference_bounds(bounds)``.

    Unpaired: variants train as separate programs, so seed i of one shares nothing with seed i of another.
    `n` is min(len(x), len(y)); NaN interval when either group has fewer than ``min_seeds`` seeds or
    neither varies.
    """
    a, b = _finite(x), _finite(y)
    if a.size == 0 or b.size == 0:
        return Estimate(float("nan"), float("nan"), float("nan"), 0)
    point = _point_difference(a, b, bounds)
    se, dof = _welch(a, b) if point.n >= 2 else (0.0, float("nan"))
    if point.n < min_seeds or se == 0.0:
        return point
    half = float(sps.t.ppf(0.5 + confidence / 2, dof) * se)
    return clip(Estimate(point.value, point.value - half, point.value + half, point.n), difference_bounds(bounds))


def welch_p(x: np.ndarray | list[float], y: np.ndarray | list[float], *, min_seeds: int = MIN_SEEDS) -> float:
    """Two-sided p-value of Welch's t-test of equal means; NaN below ``min_seeds`` seeds or with no spread.

    Both groups constant but different (se 0, the difference certain on these seeds) gives p = 0.
    """
    a, b = _finite(x), _finite(y)
    if min(a.size, b.size) < max(min_seeds, 2) or no_variation(a, b):
        return float("nan")
    se, dof = _welch(a, b)
    if se == 0.0:
        return 0.0
    return float(2.0 * sps.t.sf(abs(float(a.mean() - b.mean())) / se, dof))


def hedges_g(x: np.ndarray | list[float], y: np.ndarray | list[float]) -> float:
    """Standardized difference (mean(x) - mean(y)) / pooled SD, with Hedges' small-sample correction
    1 - 3 / (4 (n_x + n_y) - 9): Cohen's d reads ~20% too large at 5 + 5 seeds without it. NaN with
    fewer than 2 values in a group or no pooled spread."""
    a, b = _finite(x), _finite(y)
    if a.size < 2 or b.size < 2:
        return float("nan")
    dof = a.size + b.size - 2
    pooled = float(np.sqrt(((a.size - 1) * a.var(ddof=1) + (b.size - 1) * b.var(ddof=1)) / dof))
    if pooled == 0.0:
        return float("nan")
    return float((a.mean() - b.mean()) / pooled * (1.0 - 3.0 / (4.0 * (a.size + b.size) - 9.0)))


def holm(pvalues: np.ndarray | list[float]) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values (family-wise error control, any dependence between the tests).

    NaN entries (comparisons not tested) stay NaN and do not count in the family. Reject at level alpha
    where the adjusted p is below alpha.
    """
    p = np.asarray(pvalues, dtype=np.float64).ravel()
    out = np.full(p.shape, np.nan)
    tested = np.flatnonzero(np.isfinite(p))
    m = tested.size
    if m == 0:
        return out
    order = tested[np.argsort(p[tested], kind="stable")]
    adjusted = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    out[order] = adjusted
    return out


def detectable_from_se(se: float, dof: float, *, alpha: float = 0.05, power: float = 0.8) -> float:
    """(t_{1-alpha/2} + t_{power}) * se with ``dof`` degrees of freedom: the difference a two-sided test at
    ``alpha`` finds with ``power`` (NaN for a non-finite or zero ``se``)."""
    if not (np.isfinite(se) and se > 0.0 and np.isfinite(dof) and dof > 0):
        return float("nan")
    return float((sps.t.ppf(1 - alpha / 2, dof) + sps.t.ppf(power, dof)) * se)


def min_detectable_difference(x: np.ndarray | list[float], y: np.ndarray | list[float], *, alpha: float = 0.05,
                              power: float = 0.8) -> float:
    """Smallest true difference of means a two-sided two-sample test would detect with ``power``.

    Normal-theory power analysis with the observed spread: (t_{1-alpha/2} +
    t_{power}) * sqrt(s_x^2/n_x + s_y^2/n_y), t with n_x + n_y - 2 degrees of
    freedom. NaN below MIN_SEEDS finite values in a group (the spread of so few
    seeds sizes nothing: the report shows their values instead), or when
    neither group varies (no spread observed: nothing to size a test with).
    """
    a, b = _finite(x), _finite(y)
    if a.size < MIN_SEEDS or b.size < MIN_SEEDS:
        return float("nan")
    se = float(np.sqrt(a.var(ddof=1) / a.size + b.var(ddof=1) / b.size))
    return detectable_from_se(se, a.size + b.size - 2, alpha=alpha, power=power)


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
        return "exact permutation tests over runs (every split of the pooled runs enumerated)"
    return (f"Monte Carlo permutation tests over runs ({MONTE_CARLO_SPLITS:,} random splits of the pooled runs, "
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


def mean_ci(values: np.ndarray | list[float], confidence: float = 0.95) -> Estimate:
    """Mean with a Student-t interval over seeds; non-finite values are dropped.

    A t-interval (not a bootstrap) because per-cell seed counts are tiny (3-10):
    a percentile bootstrap on 3 values under-covers badly. n=1 gives NaN bounds.
    """
    x = _finite(values)
    n = int(x.size)
    if n == 0:
        return Estimate(float("nan"), float("nan"), float("nan"), 0)
    mean = float(x.mean())
    if n == 1:
        return Estimate(mean, float("nan"), float("nan"), 1)
    half = float(sps.t.ppf(0.5 + confidence / 2, n - 1) * x.std(ddof=1) / np.sqrt(n))
    return Estimate(mean, mean - half, mean + half, n)


def diff_ci(
    x: np.ndarray | list[float], y: np.ndarray | list[float], confidence: float = 0.95
) -> Estimate:
    """mean(x) - mean(y) with a Welch t-interval (unequal variances, unpaired).

    Unpaired because variants are trained as separate programs: seed i of one
    variant shares nothing with seed i of another beyond the integer.
    `n` is min(len(x), len(y)); callers report both counts.
    """
    a, b = _finite(x), _finite(y)
    if a.size == 0 or b.size == 0:
        return Estimate(float("nan"), float("nan"), float("nan"), 0)
    diff = float(a.mean() - b.mean())
    n = int(min(a.size, b.size))
    if a.size < 2 or b.size < 2:
        return Estimate(diff, float("nan"), float("nan"), n)
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    se = float(np.sqrt(va + vb))
    if se == 0.0:
        return Estimate(diff, diff, diff, n)
    dof = (va + vb) ** 2 / (va**2 / (a.size - 1) + vb**2 / (b.size - 1))
    half = float(sps.t.ppf(0.5 + confidence / 2, dof) * se)
    return Estimate(diff, diff - half, diff + half, n)


def moving_average(values: np.ndarray | list[float], window: int) -> np.ndarray:
    """Trailing moving average (partial windows at the start), NaN entries skipped.

    NaN marks a logging window in which no episode ended; those points are
    dropped, so the result is shorter than the input by the number of NaNs.
    Trailing (not centred) so a smoothed value never looks into the future,
    which keeps steps-to-threshold honest.
    """
    if window < 1:
        raise ValueError(f"moving_average: window must be >= 1, got {window}")
    x = _finite(values)
    return pd.Series(x).rolling(window, min_periods=1).mean().to_numpy()


def auc(steps: np.ndarray | list[float], values: np.ndarray | list[float]) -> float:
    """Area under a learning curve divided by its step span: mean return over training.

    Trapezoid over the logged steps; points with a NaN value are dropped first.
    A single point returns that value; no points returns NaN.
    """
    s = np.asarray(steps, dtype=np.float64).ravel()
    v = np.asarray(values, dtype=np.float64).ravel()
    if s.shape != v.shape:
        raise ValueError(f"auc: steps {s.shape} and values {v.shape} differ in shape")
    keep = np.isfinite(v) & np.isfinite(s)
    s, v = s[keep], v[keep]
    if s.size == 0:
        return float("nan")
    order = np.argsort(s, kind="stable")
    s, v = s[order], v[order]
    span = s[-1] - s[0]
    if span <= 0:
        return float(v.mean())
    return float(np.sum((v[1:] + v[:-1]) * np.diff(s)) / 2.0 / span)


def steps_to_threshold(
    steps: np.ndarray | list[float], values: np.ndarray | list[float], threshold: float
) -> float:
    """First step whose value reaches `threshold` (>=); NaN if it never does.

    Pass the smoothed curve: a single lucky logging window should not count.
    """
    s = np.asarray(steps, dtype=np.float64).ravel()
    v = np.asarray(values, dtype=np.float64).ravel()
    hit = np.flatnonzero(np.isfinite(v) & (v >= threshold))
    return float(s[hit[0]]) if hit.size else float("nan")


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


def linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear CKA between two feature matrices of shape (examples, features).

    Kornblith et al., 2019, "Similarity of Neural Network Representations
    Revisited", eq. for linear kernels: ||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F)
    on column-centred features. Invariant to orthogonal transforms and isotropic
    scaling, not to arbitrary invertible maps, which is what makes it a useful
    similarity for trunk features. Feature counts may differ.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[0] != y.shape[0]:
        raise ValueError(f"linear_cka: need (n, d1) and (n, d2), got {x.shape} and {y.shape}")
    x = x - x.mean(axis=0, keepdims=True)
    y = y - y.mean(axis=0, keepdims=True)
    cross = np.linalg.norm(y.T @ x, ord="fro") ** 2
    norm = np.linalg.norm(x.T @ x, ord="fro") * np.linalg.norm(y.T @ y, ord="fro")
    if norm == 0.0:
        return float("nan")
    return float(cross / norm)
