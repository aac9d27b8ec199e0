"""Statistics of mtdqn.analysis against hand-computed values; findings wording."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from mtdqn.analysis import (
    Estimate,
    auc,
    compare_sentence,
    diff_ci,
    findings,
    linear_cka,
    mean_ci,
    moving_average,
    normalize,
    steps_to_threshold,
)
from mtdqn.analysis.aggregate import aggregate_intervals, iqm_difference, probability_of_improvement

# ---------------------------------------------------------------- intervals


def test_mean_ci_matches_hand_computed_t_interval():
    # mean 2, sd 1, n 3: half-width = t_{0.975, 2} / sqrt(3) = 4.302652729911275 / 1.7320508
    e = mean_ci([1.0, 2.0, 3.0])
    assert e.value == pytest.approx(2.0)
    assert e.hi - e.value == pytest.approx(2.4841377118, rel=1e-9)
    assert e.value - e.lo == pytest.approx(2.4841377118, rel=1e-9)
    assert e.n == 3


def test_mean_ci_drops_nan_and_handles_tiny_samples():
    assert mean_ci([1.0, np.nan, 3.0]) == pytest.approx(mean_ci([1.0, 3.0]), nan_ok=True)
    one = mean_ci([5.0])
    assert one.value == 5.0 and one.n == 1 and math.isnan(one.lo) and math.isnan(one.hi)
    assert mean_ci([]).n == 0 and math.isnan(mean_ci([]).value)


def test_diff_ci_welch_hand_computed():
    # var 1 each, n 3 each: se = sqrt(2/3); Welch dof = 4; t_{0.975, 4} = 2.7764451051977987
    e = diff_ci([1.0, 2.0, 3.0], [4.0, 5.0, 6.0])
    half = 2.7764451051977987 * math.sqrt(2.0 / 3.0)
    assert e.value == pytest.approx(-3.0)
    assert (e.lo, e.hi) == pytest.approx((-3.0 - half, -3.0 + half), rel=1e-9)
    assert e.n == 3


def test_diff_ci_zero_variance_is_a_point():
    e = diff_ci([2.0, 2.0], [1.0, 1.0])
    assert (e.value, e.lo, e.hi) == (1.0, 1.0, 1.0)


# ---------------------------------------------------------------- curves


def test_moving_average_trailing_and_skips_nan():
    np.testing.assert_allclose(moving_average([1.0, np.nan, 3.0, 5.0], 2), [1.0, 2.0, 4.0])
    np.testing.assert_allclose(moving_average([1.0, 2.0, 3.0], 1), [1.0, 2.0, 3.0])
    with pytest.raises(ValueError):
        moving_average([1.0], 0)


def test_auc_is_normalized_trapezoid():
    # (0+2)/2*1 + (2+2)/2*2 = 5 over a span of 3
    assert auc([0, 1, 3], [0.0, 2.0, 2.0]) == pytest.approx(5.0 / 3.0)
    # NaN point dropped: (0+2)/2*2 + (2+2)/2*1 = 4 over 3
    assert auc([0, 1, 2, 3], [0.0, np.nan, 2.0, 2.0]) == pytest.approx(4.0 / 3.0)
    assert auc([0, 10], [3.0, 3.0]) == pytest.approx(3.0)  # constant curve -> its value
    assert auc([5], [7.0]) == 7.0
    assert math.isnan(auc([1, 2], [np.nan, np.nan]))


def test_steps_to_threshold_first_crossing():
    steps, vals = [0, 10, 20, 30], [0.0, 1.0, 5.0, 3.0]
    assert steps_to_threshold(steps, vals, 5.0) == 20.0  # >= counts
    assert steps_to_threshold(steps, vals, 0.5) == 10.0
    assert math.isnan(steps_to_threshold(steps, vals, 6.0))


def test_normalize_and_zero_denominator():
    np.testing.assert_allclose(normalize(np.array([0.0, 5.0, 10.0]), 0.0, 10.0), [0.0, 0.5, 1.0])
    np.testing.assert_allclose(normalize(np.array([-10.0]), -20.0, 0.0), [0.5])
    with pytest.raises(ValueError):
        normalize(np.array([1.0]), 3.0, 3.0)


# ---------------------------------------------------------------- CKA


@pytest.mark.parametrize("debiased", [True, False])
def test_linear_cka_identical_is_one(debiased):
    x = np.random.default_rng(0).normal(size=(50, 8))
    assert linear_cka(x, x, debiased=debiased) == pytest.approx(1.0)


@pytest.mark.parametrize("debiased", [True, False])
def test_linear_cka_invariant_to_orthogonal_and_isotropic_scaling(debiased):
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(60, 6)), rng.normal(size=(60, 4))
    y = y + x[:, :4]  # some shared structure so the value is not trivially ~0
    q, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    base = linear_cka(x, y, debiased=debiased)
    assert linear_cka(3.7 * x @ q, y, debiased=debiased) == pytest.approx(base, rel=1e-10)
    assert linear_cka(x, 0.01 * y, debiased=debiased) == pytest.approx(base, rel=1e-10)
    assert linear_cka(x + 5.0, y, debiased=debiased) == pytest.approx(base, rel=1e-10)  # a shift of the features
    assert 0.1 < base < 1.0


def test_debiased_cka_is_kornbliths_feature_space_formula():
    """The Gram-matrix form (Song et al.'s unbiased HSIC) against the feature-space one of Kornblith's reference
    code (``feature_space_linear_cka(..., debiased=True)``), written out here from it, and both biased forms."""
    def reference(x: np.ndarray, y: np.ndarray) -> float:
        x, y = x - x.mean(0), y - y.mean(0)
        n = x.shape[0]

        def debias(xty, rows_x, rows_y, norm_x, norm_y):
            return xty - n / (n - 2.0) * rows_x @ rows_y + norm_x * norm_y / ((n - 1) * (n - 2))

        rx, ry = (x * x).sum(1), (y * y).sum(1)
        cross = debias(np.linalg.norm(x.T @ y) ** 2, rx, ry, rx.sum(), ry.sum())
        nx = np.sqrt(debias(np.linalg.norm(x.T @ x) ** 2, rx, rx, rx.sum(), rx.sum()))
        ny = np.sqrt(debias(np.linalg.norm(y.T @ y) ** 2, ry, ry, ry.sum(), ry.sum()))
        return cross / (nx * ny)

    rng = np.random.default_rng(4)
    x = rng.normal(size=(100, 20))
    y = x[:, :5] @ rng.normal(size=(5, 30)) + rng.normal(size=(100, 30))
    assert linear_cka(x, y) == pytest.approx(reference(x, y), rel=1e-10)
    xc, yc = x - x.mean(0), y - y.mean(0)
    biased = np.linalg.norm(yc.T @ xc) ** 2 / (np.linalg.norm(xc.T @ xc) * np.linalg.norm(yc.T @ yc))
    assert linear_cka(x, y, debiased=False) == pytest.approx(biased, rel=1e-10)
    assert linear_cka(x, y) < linear_cka(x, y, debiased=False)  # 0.46 < 0.50: the bias taken out
    assert np.isnan(linear_cka(x[:3], y[:3])) and np.isnan(linear_cka(np.ones((10, 2)), y[:10]))


def test_linear_cka_independent_features_small_and_shape_checked():
    rng = np.random.default_rng(2)
    assert linear_cka(rng.normal(size=(2000, 5)), rng.normal(size=(2000, 7))) < 0.05
    with pytest.raises(ValueError):
        linear_cka(np.zeros((5, 2)), np.zeros((6, 2)))


# ---------------------------------------------------------------- rliable aggregates


def test_rliable_aggregates_reproducible_and_leave_global_state_alone():
    rng = np.random.default_rng(3)
    # 5 runs: below MIN_SEEDS (5) the aggregates keep their points and drop their intervals
    s, r = rng.normal(1.0, 0.2, size=(5, 2)), rng.normal(0.8, 0.2, size=(5, 2))
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    a = aggregate_intervals(s, reps=200, seed=0)
    b = aggregate_intervals(s, reps=200, seed=0)
    assert a == b
    np.testing.assert_array_equal(np.random.get_state()[1], before)
    # IQM of 10 values: rliable's trim_mean(0.25) drops 2 each side, the mean of the middle 6
    assert a["IQM"].value == pytest.approx(np.sort(s.ravel())[2:8].mean())
    assert a["mean"].value == pytest.approx(s.mean())
    assert a["IQM"].lo <= a["IQM"].value <= a["IQM"].hi and a["IQM"].n == 5
    small = aggregate_intervals(s[:4], reps=50, seed=0)["IQM"]
    assert math.isnan(small.lo) and math.isnan(small.hi) and small.n == 4
    poi = probability_of_improvement(s, r, reps=100, seed=0)
    assert 0.0 <= poi.lo <= poi.value <= poi.hi <= 1.0
    d = iqm_difference(s, r, reps=100, seed=0)  # now IQM and mean differences
    assert d["IQM"].value == pytest.approx(a["IQM"].value - aggregate_intervals(r, 10, 0)["IQM"].value)
    assert d["mean"].value == pytest.approx(s.mean() - r.mean())


def test_probability_of_improvement_hand_cases():
    x = np.array([[2.0], [3.0]])
    y = np.array([[0.0], [1.0]])
    assert probability_of_improvement(x, y, reps=50, seed=0).value == pytest.approx(1.0)
    assert probability_of_improvement(y, x, reps=50, seed=0).value == pytest.approx(0.0)


# ---------------------------------------------------------------- findings wording


def test_compare_sentence_no_clear_difference_when_ci_contains_zero():
    s = compare_sentence("Final return on cartpole", "shared", "independent",
                         Estimate(1.0, -0.5, 2.5, 3), 3, 3, "Welch t-interval")
    assert "no clear difference" in s
    assert "+1.00" in s and "[-0.50, 2.50]" in s and "n = 3 vs 3 seeds" in s
    assert "higher" not in s and "lower" not in s


def test_compare_sentence_higher_and_lower_carry_numbers():
    hi = compare_sentence("IQM", "shared", "independent", Estimate(0.25, 0.1, 0.4, 5), 5, 4, "bootstrap",
                          p=0.001, p_holm=0.01)
    assert "`shared` is higher than `independent` by 0.250" in hi
    assert "[0.100, 0.400]" in hi and "n = 5 vs 4 seeds" in hi and "Holm-corrected p = 0.010" in hi
    lo = compare_sentence("IQM", "shared", "independent", Estimate(-12.0, -20.0, -4.0, 5), 5, 5, "Welch",
                          p=0.0004, p_holm=0.002, effect=-2.1)
    # three significant digits (was "12.00": false precision)
    assert "is lower than" in lo and "by 12.0 " in lo and "-12.0," in lo and "no clear" not in lo
    assert "p < 0.001" in lo and "p = < 0.001" not in lo and "Hedges' g -2.10" in lo


def test_compare_sentence_needs_the_corrected_test_not_the_interval():
    # an interval that excludes 0 is not a finding without a test that survives the correction
    untested = compare_sentence("x", "a", "b", Estimate(0.25, 0.1, 0.4, 5), 5, 5, "Welch")
    assert "no clear difference" in untested
    suggestive = compare_sentence("x", "a", "b", Estimate(0.25, 0.1, 0.4, 5), 5, 5, "Welch", p=0.02, p_holm=0.24)
    assert "suggestive only, `a` higher than `b`" in suggestive and "not a finding" in suggestive
    assert "is higher" not in suggestive
    flat = compare_sentence("x", "a", "b", Estimate(0.0, float("nan"), float("nan"), 5), 5, 5, "Welch",
                            estimable=False, seeds=("-200, -200", "-200, -200"))
    assert "not estimable (no variation: every seed of both gave -200)" in flat and "[0" not in flat


def test_compare_sentence_below_min_seeds_says_not_tested():
    """Referee 14: an untested comparison reads 'not tested', never 'no clear difference' (which a test says)."""
    s = compare_sentence("x", "a", "b", Estimate(3.0, float("nan"), float("nan"), 1), 1, 1, "Welch")
    assert "not tested" in s and "no clear difference" not in s and "no interval or test" in s


def test_lists_compared_in_one_sentence_share_one_precision():
    """'per seed shared 9.67, 9.67 vs independent 10.7, 9.7': each list took its digits from its own largest
    value, so 9.6667 printed two ways in one sentence."""
    from mtdqn.analysis.fmt import value_lists, values

    third = 29 / 3
    assert value_lists([third, third], [10.7, third]) == ("9.7, 9.7", "10.7, 9.7")
    assert values([third, third]) == "9.67, 9.67"  # a list alone keeps its own precision
    assert value_lists([50_000, float("nan")], [1_200_000], censored=60_000) == ("50k, >60k", "1.2M")


def test_findings_from_tables():
    imp = pd.DataFrame([{"variant": "shared", "reference": "ind", "poi": 0.7, "poi_lo": 0.4, "poi_hi": 0.9,
                         "iqm_diff": 0.3, "iqm_diff_lo": 0.1, "iqm_diff_hi": 0.5, "mean_diff": 0.2,
                         "mean_diff_lo": -0.1, "mean_diff_hi": 0.4, "iqm_p": 0.004, "iqm_p_holm": 0.012,
                         "mean_p": 0.3, "mean_p_holm": 0.6, "poi_ties": 0.25, "n": 6, "n_reference": 6,
                         "n_tasks": 2}])
    fd = pd.DataFrame([{"variant": "shared", "reference": "ind", "task": "t1", "metric": "final_return",
                        "diff": -1.0, "lo": -3.0, "hi": 1.0, "p": 0.3, "p_holm": 0.6, "effect": -0.4,
                        "estimable": True, "mde": 4.5, "max_diff": 500.0, "n": 6, "n_reference": 6,
                        "values": "1, 2, 3", "values_reference": "2, 3, 4"}])
    conflict = pd.DataFrame([{"variant": "shared", "n_pairs": 1, "cosine_mean": -0.1, "cosine_lo": -0.2,
                              "cosine_hi": 0.0, "conflict_fraction": 0.6, "conflict_lo": 0.5, "conflict_hi": 0.7,
                              "n": 3}])
    out = findings("ind", ("ind", "shared"), imp, fd, conflict)
    # now: the comparison count first, and the aggregate mean beside the IQM
    assert len(out) == 6
    assert "tests 3 comparison(s)" in out[0] and "Holm-Bonferroni" in out[0]
    assert "higher" in out[1] and "IQM" in out[1]
    assert "Aggregate mean" in out[2] and "no clear difference" in out[2]
    assert "0.700" in out[3] and "25% of run pairs tie" in out[3] and "not tested" in out[3]
    assert "no clear difference" in out[4] and "t1" in out[4] and "detectable" in out[4] and "4.50" in out[4]
    assert "conflict fraction" in out[5] and "0.600" in out[5] and "n = 3 seeds" in out[5]
