"""The report's statistics respect the metric's range and the seed count; anchors are fixed; methods are complete.

Synthetic study directories only (no JAX, no training): see tests/test_report.py's make_study.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.stats as sps

from mtdqn.analysis import build_report, load_study
from mtdqn.analysis import ranges
from mtdqn.analysis.anchors import ANCHORS
from mtdqn.analysis.stats import MIN_SEEDS, bootstrap_diff, bootstrap_mean, min_detectable_difference

from synthetic_study import BOUNDS, OPTIONS, REPS, SEEDS, TASKS, make_study


# ---------------------------------------------------------------- intervals stay in range


def _inside(lo: float, hi: float, bounds: tuple[float, float]) -> bool:
    return bounds[0] <= lo <= hi <= bounds[1]


def test_intervals_never_leave_the_feasible_range():
    """Property over many random samples, piled up against a bound as returns at a ceiling are."""
    rng = np.random.default_rng(0)
    for trial in range(300):
        lo_b, hi_b = sorted(rng.uniform(-500, 500, size=2))
        n = int(rng.integers(MIN_SEEDS, 12))
        # a mix of values at the ceiling and far below it: the case a t-band overshoots
        x = np.where(rng.random(n) < 0.6, hi_b, rng.uniform(lo_b, hi_b, n))
        y = np.where(rng.random(n) < 0.3, lo_b, rng.uniform(lo_b, hi_b, n))
        e = bootstrap_mean(x, (lo_b, hi_b), reps=200, seed=trial)
        assert _inside(e.lo, e.hi, (lo_b, hi_b)) and e.lo <= e.value <= e.hi
        d = bootstrap_diff(x, y, (lo_b, hi_b), reps=200, seed=trial)
        width = hi_b - lo_b
        assert _inside(d.lo, d.hi, (-width, width)) and d.lo <= d.value <= d.hi


def test_t_interval_would_overshoot_where_the_bootstrap_does_not():
    """The case from the issue: CartPole finals at the 500 ceiling with one failed seed."""
    x = [500.0, 500.0, 500.0, 500.0, 37.0]
    e = bootstrap_mean(x, ranges.return_bounds("CartPole-v1"), reps=2000, seed=0)
    assert e.hi <= 500.0 and e.lo >= 0.0
    from mtdqn.analysis import mean_ci

    assert mean_ci(x).hi > 500.0  # what the report used to print


def test_no_interval_below_min_seeds_and_detectable_difference():
    e = bootstrap_mean([1.0, 2.0], reps=100)
    assert e.value == 1.5 and math.isnan(e.lo) and math.isnan(e.hi) and e.n == 2
    assert math.isnan(bootstrap_diff([1.0, 2.0], [3.0, 4.0]).lo)
    # (t_{0.975, 8} + t_{0.8, 8}) * sqrt(2 * 1 / 5) for two groups of 5 with variance 1
    x, y = [1.0, 2.0, 3.0, 4.0, 5.0], [2.0, 3.0, 4.0, 5.0, 6.0]
    sd2 = np.var(x, ddof=1)
    expected = (2.3060041352 + 0.8888857) * math.sqrt(2 * sd2 / 5)
    assert min_detectable_difference(x, y) == pytest.approx(expected, rel=1e-4)
    assert math.isnan(min_detectable_difference([500.0] * 5, [500.0] * 5))  # no spread: nothing to size
    # unequal spreads: the degrees of freedom of the Welch test the report runs (4.08 here), not n_x + n_y - 2
    # (8 understated the difference by a third: a walk-through's 365 where its test needed 488)
    wide = [0.0, 10.0, 20.0, 30.0, 40.0]
    va, vb = np.var(x, ddof=1) / 5, np.var(wide, ddof=1) / 5
    dof = (va + vb) ** 2 / (va**2 / 4 + vb**2 / 4)
    expected = (sps.t.ppf(0.975, dof) + sps.t.ppf(0.8, dof)) * math.sqrt(va + vb)
    assert dof == pytest.approx(4.08, abs=0.01)
    assert min_detectable_difference(x, wide) == pytest.approx(expected, rel=1e-9)
    assert min_detectable_difference(x, wide) > 1.1 * (2.3060041352 + 0.8888857) * math.sqrt(va + vb)
    from mtdqn.analysis.fmt import detectable

    assert detectable(713.0, 500.0).startswith("none within the range")  # the demo's CartPole at 2 seeds
    assert detectable(12.5, 500.0) == "12.5" and detectable(float("nan"), 500.0).startswith("n/a")


@pytest.fixture(scope="module")
def full(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """5 seeds, greedy evaluations during training."""
    return build_report(make_study(tmp_path_factory.mktemp("full"), evals=True), reps=REPS)


@pytest.mark.slow
def test_report_tables_stay_in_range(full: Path):
    data = full / "data"
    per_task = pd.read_parquet(data / "per_task.parquet")
    for r in per_task.itertuples():
        assert _inside(r.final_lo, r.final_hi, BOUNDS[r.task]) and _inside(r.auc_lo, r.auc_hi, BOUNDS[r.task])
    curves = pd.read_parquet(data / "curves.parquet")
    for task, g in curves.groupby("task"):
        assert (g["lo"] >= BOUNDS[task][0]).all() and (g["hi"] <= BOUNDS[task][1]).all()
    for stem, cols, bounds in (("conflict_summary", ("cosine_lo", "cosine_hi"), ranges.COSINE),
                               ("conflict_summary", ("conflict_lo", "conflict_hi"), ranges.FRACTION),
                               ("cka", ("lo", "hi"), ranges.CKA), ("grad_probe", ("lo", "hi"), ranges.COSINE),
                               ("improvement", ("poi_lo", "poi_hi"), (0.0, 1.0))):
        df = pd.read_parquet(data / f"{stem}.parquet")
        assert len(df) and all(_inside(lo, hi, bounds) for lo, hi in df[list(cols)].to_numpy())


def test_greedy_evaluation_is_the_main_learning_curve(full: Path):
    md = (full / "report.md").read_text()
    assert "Greedy evaluation return vs env steps" in md and "figures/training_curves.png" in md
    # AUC comes from the evaluation curve: the mean of the trapezoid over the evaluation steps
    study = load_study(full.parent)
    ev = study.cells["shared"].evals
    one = ev[(ev["task"] == "CartPole-v1") & (ev["seed"] == 0)].sort_values("step")
    s, v = one["step"].to_numpy(float), one["return_mean"].to_numpy(float)
    expected = np.sum((v[1:] + v[:-1]) * np.diff(s)) / 2 / (s[-1] - s[0])
    per_seed = pd.read_parquet(full / "data" / "per_seed.parquet")
    row = per_seed[(per_seed["variant"] == "shared") & (per_seed["task"] == "CartPole-v1") & (per_seed["seed"] == 0)]
    assert row["auc"].iloc[0] == pytest.approx(expected)
    diffs = pd.read_parquet(full / "data" / "differences.parquet")
    assert set(diffs["metric"]) == {"final_return", "final_discounted", "auc", "steps_to_threshold"}
    # an interval wherever a Welch test is made; none (not a [v, v] one) where every seed of both sides agrees,
    # a comparison rests on one seed, or the times are censored (steps to threshold: Gehan's test, no interval)
    assert (np.isfinite(diffs["lo"]) == (diffs["test"] == "welch")).all() and diffs["estimable"].any()
    assert not (diffs["test"] == "welch")[~diffs["estimable"] | (diffs["metric"] == "steps_to_threshold")].any()
    assert np.isfinite(diffs["mde"]).any()
    welch = diffs[diffs["test"] == "welch"]  # the detectable difference is sized with the Welch test's own dof
    pooled = welch["n"] + welch["n_reference"] - 2  # what it used: Welch's is never above it, below where spreads
    assert len(welch) and (welch["dof"] <= pooled + 1e-9).all() and (welch["dof"] < pooled - 0.1).any()  # differ


@pytest.fixture(scope="module")
def old_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A study as older runs left it, and its report: no evaluations during training, and the logging windows
    before learning started written as zeros (the writer skips them now); reported while Acrobot-v1 has no fixed
    anchors.  Three tests read its one report, each a part the others do not touch: the learning curves, the
    gradient tables, the normalization and aggregates."""
    study = make_study(tmp_path_factory.mktemp("old") / "s")
    cell = study / "cells" / "shared"
    gt, gp = pd.read_parquet(cell / "grad_tasks.parquet"), pd.read_parquet(cell / "grad_pairs.parquet")
    first = gt["step"] == gt["step"].min()
    gt.loc[first, ["grad_norm", "weight", "loss"]] = 0.0
    gp.loc[gp["step"] == gp["step"].min(), "cosine"] = 0.0
    gp["conflict_rate"] = (gp["cosine"] < 0).astype(float)
    gt.to_parquet(cell / "grad_tasks.parquet")
    gp.to_parquet(cell / "grad_pairs.parquet")
    with pytest.MonkeyPatch.context() as m:
        m.delitem(ANCHORS, "Acrobot-v1")
        return build_report(study, reps=50)


@pytest.mark.slow
def test_old_runs_without_evaluations_use_training_curves(old_run: Path):
    md = (old_run / "report.md").read_text()
    assert "epsilon-greedy training policy vs env steps" in md and "training_curves.png" not in md


# ---------------------------------------------------------------- small n


@pytest.mark.slow
def test_two_seeds_draw_no_interval_and_say_smoke_test(tmp_path: Path):
    out = build_report(make_study(tmp_path, seeds=[0, 1]), reps=50)
    md = (out / "report.md").read_text()
    first = [ln for ln in md.splitlines() if ln.strip()][:3]
    assert first[0].startswith("# Study report") and first[1] == "## Study"
    assert first[2].startswith("**Smoke test, not evidence.**") and "2 seeds per variant" in first[2]
    assert "Smoke test" in (out / "results.md").read_text()
    data = out / "data"
    for stem, cols in (("per_task", ("final_lo", "final_hi", "auc_lo", "auc_hi")), ("curves", ("lo", "hi")),
                       ("differences", ("lo", "hi")), ("aggregates", ("lo", "hi")),
                       ("improvement", ("poi_lo", "poi_hi", "iqm_diff_lo", "mean_diff_lo")),
                       ("conflict_summary", ("cosine_lo", "conflict_lo")), ("cka", ("lo", "hi"))):
        df = pd.read_parquet(data / f"{stem}.parquet")
        assert len(df) and df[list(cols)].isna().all().all(), stem
    # the seeds are shown instead
    block = md.split("### Per-task results", 1)[1].split("\n### ", 1)[0]
    rows = [ln for ln in block.splitlines() if ln.startswith("| CartPole-v1")]
    assert rows and all("(seeds: " in ln for ln in rows)
    assert "95% CI [" not in md.split("## Findings", 1)[1].split("\n## ", 1)[0]
    assert "no interval or test with n = 2 vs 2 seeds" in md and "per seed `shared`" in md
    findings_text = md.split("## Findings", 1)[1].split("\n## ", 1)[0]
    assert "no clear difference" not in findings_text  # nothing was tested: 'not tested', not a verdict
    # Referee 14: every untested comparison is counted, the aggregate ones too; the advice matches the minimum
    first = [ln for ln in findings_text.splitlines() if ln.startswith("- ")][0]
    diffs = pd.read_parquet(data / "differences.parquet")
    assert f"Not tested: {len(diffs) + 2} in all" in first, first
    assert "`--seeds 5`" in md and "--seeds 10` or more" not in md


def test_five_seeds_have_no_smoke_test_note(full: Path):
    """At 5 seeds the report opens on the study, not the note, and draws the intervals the note would withhold."""
    md = (full / "report.md").read_text()
    first = [ln for ln in md.splitlines() if ln.strip()][:3]
    assert first[0].startswith("# Study report") and first[1] == "## Study"
    assert "Smoke test" not in md and "Smoke test" not in (full / "results.md").read_text()
    block = md.split("### Per-task results", 1)[1].split("\n### ", 1)[0]
    rows = [ln for ln in block.splitlines() if ln.startswith("| CartPole-v1")]
    assert rows and not any("(seeds: " in ln for ln in rows)
    findings = md.split("## Findings", 1)[1].split("\n## ", 1)[0]
    assert findings.count("95% CI [") >= 9 and "no interval or test with" not in md
    per_task = pd.read_parquet(full / "data" / "per_task.parquet")
    assert len(per_task) and per_task[["final_lo", "final_hi", "auc_lo", "auc_hi"]].notna().all().all()


# ---------------------------------------------------------------- fixed anchors


@pytest.mark.slow
def test_normalization_uses_fixed_anchors_not_the_reference_seeds(full: Path, tmp_path: Path):
    # `full`'s study but for the reference's final scores, at full's resamples (the intervals are compared)
    a, b = full, build_report(make_study(tmp_path / "b", evals=True, reference_finals=(40.0, -400.0)), reps=REPS)
    na, nb = (pd.read_parquet(x / "data" / "normalization.parquet") for x in (a, b))
    pd.testing.assert_frame_equal(na.drop(columns="study_random_return"), nb.drop(columns="study_random_return"))
    for task in TASKS:
        row = na.set_index("task").loc[task]
        assert (row["random_return"], row["reference_return"]) == ANCHORS[task][:2] and row["used"]
    ga, gb = (pd.read_parquet(x / "data" / "aggregates.parquet") for x in (a, b))
    shared = lambda g: g[g["variant"] == "shared"].reset_index(drop=True)  # noqa: E731
    pd.testing.assert_frame_equal(shared(ga), shared(gb))  # another variant's seeds cannot move it
    ref = lambda g: g[g["variant"] == "independent"]["value"].to_numpy()  # noqa: E731
    assert not np.allclose(ref(ga), ref(gb))  # while the reference's own score did change


@pytest.mark.slow
def test_task_without_anchors_is_left_out_with_a_note(old_run: Path):
    out = old_run  # reported without Acrobot-v1's anchors
    norm = pd.read_parquet(out / "data" / "normalization.parquet").set_index("task")
    assert not norm.loc["Acrobot-v1", "used"] and norm.loc["CartPole-v1", "used"]
    assert set(pd.read_parquet(out / "data" / "aggregates.parquet")["n_tasks"]) == {1}
    assert "Task Acrobot-v1: no fixed anchors" in (out / "report.md").read_text()


# ---------------------------------------------------------------- methods


@pytest.mark.slow
def test_methods_section_lists_every_non_default_option(full: Path):
    from mtdqn.config import TrainConfig, config_to_dict, flatten_config

    md = (full / "report.md").read_text()
    methods = md.split("## Methods", 1)[1].split("\n## ", 1)[0]
    defaults = flatten_config(config_to_dict(TrainConfig()))
    for variant, options in OPTIONS.items():
        block = methods.split(f"### Methods: `{variant}`", 1)[1].split("\n### ", 1)[0]
        for key, value in flatten_config(options).items():
            if defaults[key] != value:
                assert f"{key} = {value!r} (default {defaults[key]!r})" in block, (variant, key)
        for item in ("git revision", "config hash", "packages", "hardware", "wall time", "CPU-hours",
                     "evaluation", "seeds", "parameters", "strategy"):
            assert f"| {item} |" in block, (variant, item)
    assert "network.sharing = 'independent'" in methods  # a default-valued key is not listed for `shared`
    assert "network.sharing = 'shared'" not in methods
    assert "| CPU-hours | 0.007 (wall time x 2 usable cores" in methods  # 12.5 s x 2 cores
    assert f"Seeds {', '.join(map(str, SEEDS))}" in methods


@pytest.mark.slow
def test_windows_without_updates_in_older_runs_are_dropped(old_run: Path):
    """Runs written before the writer skipped them logged pre-learning windows as zeros (`old_run`)."""
    out = old_run
    gp = pd.read_parquet(out.parent / "cells" / "shared" / "grad_pairs.parquet")
    weights = pd.read_parquet(out / "data" / "grad_tasks_summary.parquet")["weight_mean"]
    assert np.allclose(weights, 0.5)  # every real window applied 0.5; the zeros are not averaged in
    curve = pd.read_parquet(out / "data" / "conflict_curve.parquet")
    assert curve["step"].min() > gp["step"].min()
    assert set(pd.read_parquet(out / "data" / "grad_tasks_summary.parquet")["variant"]) == {"shared"}  # no panel


def test_a_seed_without_a_final_score_is_left_out_and_said(tmp_path):
    """A final score is NaN where an evaluation episode never ended (mtdqn.evaluate.UnfinishedEpisodesWarning).
    Was: the aggregates' permutation test read the NaN run as a number and called `shared` "lower by n/a, p <
    0.001", a finding in the conclusion, and the task's comparison said "no spread within either variant" at
    n = 5 vs 5 for 4 seeds with a value.  Now the run leaves the aggregates, the task's comparisons count the
    seeds with a value, and the notes name the seed."""
    import json

    root = make_study(tmp_path / "s")
    path = root / "cells" / "shared" / "summary.json"
    summary = json.loads(path.read_text())
    for key in ("final_eval", "final_eval_discounted"):
        summary[key]["Acrobot-v1"][1] = float("nan")
    path.write_text(json.dumps(summary))
    report = build_report(root, reps=REPS)
    data = report / "data"
    diff = pd.read_parquet(data / "differences.parquet").query("task == 'Acrobot-v1' and variant == 'shared'")
    finals = diff[diff["metric"].isin(["final_return", "final_discounted"])]
    assert len(finals) == 2 and (finals["n"] == len(SEEDS) - 1).all() and (finals["n_reference"] == len(SEEDS)).all()
    assert (finals["untested"] == "few_seeds").all() and finals["p"].isna().all()
    assert (diff.query("metric == 'auc'")["n"] == len(SEEDS)).all()  # its training curve is whole
    imp = pd.read_parquet(data / "improvement.parquet").query("variant == 'shared'")
    assert imp["n"].tolist() == [len(SEEDS) - 1] and np.isfinite(imp["mean_diff"]).all()
    assert imp["mean_p"].isna().all() and imp["iqm_p"].isna().all()  # 4 runs: below MIN_SEEDS, no test
    text = (report / "report.md").read_text()
    assert "lower than `independent` by n/a" not in text and "higher than `independent` by n/a" not in text
    assert ("`shared` has no final score on Acrobot-v1 for seed 1 (NaN: an evaluation episode that never ended): "
            "left out of that task's final-score statistics and of the aggregates") in text
    assert "| Acrobot-v1 | shared | 5 (4 with a final score) |" in text  # the per-task table's seed count
