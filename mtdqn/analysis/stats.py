"""Per-seed statistics: interval estimates and tests of a mean or a difference of means over seeds.

Everything here is plain numpy/scipy on small arrays so it can be checked
against hand-computed values. Aggregates across tasks (IQM, probability of
improvement) live in `aggregate.py` because they go through rliable; the
permutation tests for censored steps to threshold in `permutation.py`; the
learning-curve summaries in `curves.py`; normalization by fixed anchors in
`anchors.py`; linear CKA in `cka.py`.

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

import math
from typing import NamedTuple

import numpy as np
from scipy import stats as sps

from .ranges import UNBOUNDED, Bounds, difference_bounds

__all__ = [
    "Estimate",
    "MIN_SEEDS",
    "finite_values",
    "clip",
    "t_mean",
    "welch_diff",
    "welch_p",
    "welch_se_dof",
    "hedges_g",
    "holm",
    "no_variation",
    "deviating_seeds",
    "detectable_from_se",
    "seeds_to_detect",
    "bootstrap_mean",
    "bootstrap_diff",
    "min_detectable_difference",
    "mean_ci",
    "diff_ci",
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


def finite_values(values: np.ndarray | list[float]) -> np.ndarray:
    """``values`` flattened to float64, non-finite entries (NaN: no value) dropped."""
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
    x = finite_values(values)
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
    a, b = finite_values(x), finite_values(y)
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
    finite = [finite_values(g) for g in groups]
    return all(g.size > 0 for g in finite) and all(np.ptp(g) == 0.0 for g in finite) \
        and len({float(g[0]) for g in finite}) == 1


def deviating_seeds(*groups: np.ndarray | list[float]) -> int:
    """How many values of all ``groups`` together differ from their most common value (finite values only).

    1 means the comparison rests on a single seed: every other seed of both sides gave one value. Welch's
    t is then exactly 1 in absolute value whatever the deviation (n-1 degrees of freedom: p = 0.3632 at
    n = 6), so its p, Hedges' g and detectable difference describe the design, not an effect.
    """
    x = np.concatenate([finite_values(g) for g in groups]) if groups else np.zeros(0)
    if x.size == 0:
        return 0
    _, counts = np.unique(x, return_counts=True)
    return int(x.size - counts.max())


def t_mean(values: np.ndarray | list[float], bounds: Bounds = UNBOUNDED, *, confidence: float = 0.95,
           min_seeds: int = MIN_SEEDS) -> Estimate:
    """Mean over seeds with a Student-t interval clipped to ``bounds``; NaN interval below ``min_seeds`` seeds
    or with no spread (every seed the same value)."""
    x = finite_values(values)
    n = int(x.size)
    if n == 0:
        return Estimate(float("nan"), float("nan"), float("nan"), 0)
    mean = float(x.mean())
    sd = float(x.std(ddof=1)) if n > 1 else 0.0
    if n < min_seeds or sd == 0.0:
        return clip(Estimate(mean, float("nan"), float("nan"), n), bounds)
    half = float(sps.t.ppf(0.5 + confidence / 2, n - 1) * sd / np.sqrt(n))
    return clip(Estimate(mean, mean - half, mean + half, n), bounds)


def welch_se_dof(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(standard error, Welch-Satterthwaite degrees of freedom) of mean(a) - mean(b) (each of 2 or more
    values); se 0: no spread.  The test, its interval and the difference it could detect all use them."""
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    se = float(np.sqrt(va + vb))
    if se == 0.0:
        return 0.0, float("nan")
    return se, float((va + vb) ** 2 / (va**2 / (a.size - 1) + vb**2 / (b.size - 1)))


def welch_diff(x: np.ndarray | list[float], y: np.ndarray | list[float], bounds: Bounds = UNBOUNDED, *,
               confidence: float = 0.95, min_seeds: int = MIN_SEEDS) -> Estimate:
    """mean(x) - mean(y) with Welch's t-interval, clipped to ``difference_bounds(bounds)``.

    Unpaired: seed i of every variant starts from the same key and meets the same evaluation episodes, but
    trains its own network; treating the seeds as independent is conservative where matched seeds' scores
    correlate positively, somewhat liberal where they correlate negatively (benchmarks/matched_seeds.py).
    `n` is min(len(x), len(y)); NaN interval when either group has fewer than ``min_seeds`` seeds or
    neither varies.
    """
    a, b = finite_values(x), finite_values(y)
    if a.size == 0 or b.size == 0:
        return Estimate(float("nan"), float("nan"), float("nan"), 0)
    point = _point_difference(a, b, bounds)
    se, dof = welch_se_dof(a, b) if point.n >= 2 else (0.0, float("nan"))
    if point.n < min_seeds or se == 0.0:
        return point
    half = float(sps.t.ppf(0.5 + confidence / 2, dof) * se)
    return clip(Estimate(point.value, point.value - half, point.value + half, point.n), difference_bounds(bounds))


def welch_p(x: np.ndarray | list[float], y: np.ndarray | list[float], *, min_seeds: int = MIN_SEEDS) -> float:
    """Two-sided p-value of Welch's t-test of equal means; NaN below ``min_seeds`` seeds or with no spread.

    Both groups constant but different (se 0, the difference certain on these seeds) gives p = 0.
    """
    a, b = finite_values(x), finite_values(y)
    if min(a.size, b.size) < max(min_seeds, 2) or no_variation(a, b):
        return float("nan")
    se, dof = welch_se_dof(a, b)
    if se == 0.0:
        return 0.0
    return float(2.0 * sps.t.sf(abs(float(a.mean() - b.mean())) / se, dof))


def hedges_g(x: np.ndarray | list[float], y: np.ndarray | list[float]) -> float:
    """Standardized difference (mean(x) - mean(y)) / pooled SD, with Hedges' small-sample correction
    1 - 3 / (4 (n_x + n_y) - 9): Cohen's d reads ~20% too large at 5 + 5 seeds without it. NaN with
    fewer than 2 values in a group or no pooled spread."""
    a, b = finite_values(x), finite_values(y)
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


def seeds_to_detect(diff: float, se: float, dof: float, seeds: int, *, alpha: float = 0.05, power: float = 0.8,
                    most: int = 1_000_000) -> int | None:
    """Seeds per variant at which :func:`detectable_from_se` reaches ``|diff|``, at the spread seen with
    ``seeds`` per side: the standard error shrinks as sqrt(seeds / n) and Welch's degrees of freedom grow as
    (n - 1) / (seeds - 1) (both exact for equal seeds per side and fixed spreads).  Scaling the detectable
    difference as 1/sqrt(n) alone kept the t quantiles of the seeds run, and overstated the seeds needed (46
    where this gives 37 for MT3's largest difference; a statistician's review).  None where nothing is sized or
    more than ``most`` would be needed."""
    if not (np.isfinite(diff) and diff != 0 and np.isfinite(se) and se > 0 and np.isfinite(dof) and seeds >= 2):
        return None

    def detectable(n: int) -> float:
        return detectable_from_se(se * math.sqrt(seeds / n), dof * (n - 1) / (seeds - 1), alpha=alpha, power=power)

    if detectable(most) > abs(diff):
        return None
    low, high = 2, most  # detectable(high) <= |diff|; the smallest such n, by bisection (it falls with n)
    while low < high:
        mid = (low + high) // 2
        low, high = (low, mid) if detectable(mid) <= abs(diff) else (mid + 1, high)
    return low


def min_detectable_difference(x: np.ndarray | list[float], y: np.ndarray | list[float], *, alpha: float = 0.05,
                              power: float = 0.8) -> float:
    """Smallest true difference of means a two-sided two-sample test would detect with ``power``.

    Normal-theory power analysis with the observed spread: (t_{1-alpha/2} +
    t_{power}) * sqrt(s_x^2/n_x + s_y^2/n_y), t with the Welch-Satterthwaite degrees
    of freedom of the test the report runs (n_x + n_y - 2 understated it by up to a
    third where the spreads differ). NaN below MIN_SEEDS finite values in a group (the spread of so few
    seeds sizes nothing: the report shows their values instead), or when
    neither group varies (no spread observed: nothing to size a test with).
    """
    a, b = finite_values(x), finite_values(y)
    if a.size < MIN_SEEDS or b.size < MIN_SEEDS:
        return float("nan")
    se, dof = welch_se_dof(a, b)
    return detectable_from_se(se, dof, alpha=alpha, power=power)


def mean_ci(values: np.ndarray | list[float], confidence: float = 0.95) -> Estimate:
    """Mean with a Student-t interval over seeds; non-finite values are dropped.

    A t-interval (not a bootstrap) because per-cell seed counts are tiny (3-10):
    a percentile bootstrap on 3 values under-covers badly. n=1 gives NaN bounds.
    """
    x = finite_values(values)
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

    Unpaired, as :func:`welch_diff`: seed i of each variant shares its key and
    evaluation episodes with seed i of another, not its network.
    `n` is min(len(x), len(y)); callers report both counts.
    """
    a, b = finite_values(x), finite_values(y)
    if a.size == 0 or b.size == 0:
        return Estimate(float("nan"), float("nan"), float("nan"), 0)
    diff = float(a.mean() - b.mean())
    n = int(min(a.size, b.size))
    if a.size < 2 or b.size < 2:
        return Estimate(diff, float("nan"), float("nan"), n)
    se, dof = welch_se_dof(a, b)
    if se == 0.0:
        return Estimate(diff, diff, diff, n)
    half = float(sps.t.ppf(0.5 + confidence / 2, dof) * se)
    return Estimate(diff, diff - half, diff + half, n)
