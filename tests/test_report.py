"""build_report on a small synthetic study directory (no JAX, no training)."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mtdqn.analysis import build_report, load_study
from mtdqn.analysis.fmt import pvalue

TASKS = ["CartPole-v1", "Acrobot-v1"]  # real names: the report's return bounds and fixed anchors apply
SEEDS = [0, 1, 2, 3, 4]  # 5: enough seeds for intervals (see make_study(seeds=...) for a smoke test)
STEPS = 10_000
LOG_EVERY = 500
REPS = 200  # bootstrap resamples: enough to exercise rliable, fast enough for a unit test
# variant -> (asymptotic return per task, has shared params)
VARIANTS = {"independent": ((200.0, -100.0), False), "shared": ((260.0, -90.0), True), "pcgrad": (None, True)}
RANDOM = {"CartPole-v1": 20.0, "Acrobot-v1": -500.0}
THRESH = {"CartPole-v1": 150.0, "Acrobot-v1": -120.0}
BOUNDS = {"CartPole-v1": (0.0, 500.0), "Acrobot-v1": (-500.0, 0.0)}
GAMMA = {"CartPole-v1": 0.99, "Acrobot-v1": 0.95}  # each task's own discount, as summary.json's task_gamma
# Discounted returns lie in [lo * S, hi * S], S = (1 - gamma^N) / (1 - gamma), N = 500 rewarded steps for both.
DISCOUNTED_BOUNDS = {"CartPole-v1": (0.0, (1 - 0.99 ** 500) / 0.01), "Acrobot-v1": (-(1 - 0.95 ** 500) / 0.05, 0.0)}
# options each variant was trained with, as config.json records them (the methods section must list them)
OPTIONS = {"independent": {"network": {"sharing": "independent"}, "dqn": {"loss": "mse", "lr": 0.001}},
           "shared": {"network": {"sharing": "shared", "hidden": [64, 64]}, "dqn": {"loss": "mse"}, "log_every": 500}}


def _write_json(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def _clip(task: str, x: float) -> float:
    return float(np.clip(x, *BOUNDS[task]))


def _metrics(rng: np.random.Generator, finals: tuple[float, ...], seeds: list[int]) -> pd.DataFrame:
    rows = []
    for t, task in enumerate(TASKS):
        for seed in seeds:
            for step in range(LOG_EVERY, STEPS + 1, LOG_EVERY):
                ret = _clip(task, RANDOM[task] + (finals[t] - RANDOM[task]) * (1 - np.exp(-step / 3000))
                            + rng.normal(0, 10))
                ret = np.nan if rng.random() < 0.1 else ret  # windows where no episode ended
                rows.append({"step": step, "task": task, "seed": seed, "episode_return": ret,
                             "episode_length": 100.0, "episodes": 0 if np.isnan(ret) else 3, "loss": 0.1,
                             "q_mean": 1.0, "epsilon": max(0.05, 1 - step / STEPS)})
    return pd.DataFrame(rows)


def _evals(rng: np.random.Generator, finals: tuple[float, ...], seeds: list[int]) -> pd.DataFrame:
    """Greedy evaluations every 2,000 steps (the periodic-evaluation contract's evals.parquet)."""
    rows = []
    for t, task in enumerate(TASKS):
        for seed in seeds:
            for step in range(2000, STEPS + 1, 2000):
                ret = _clip(task, RANDOM[task] + (finals[t] - RANDOM[task]) * (1 - np.exp(-step / 2500))
                            + rng.normal(0, 15))
                rows.append({"step": step, "task": task, "seed": seed, "return_mean": ret, "return_std": 5.0,
                             "discounted_mean": ret / 10, "episodes": 10})
    return pd.DataFrame(rows)


def discounted(task: str, ret: float) -> float:
    """The discounted return of an episode paying +-1 per step for |ret| steps (both tasks' reward shape)."""
    g = GAMMA[task]
    return float(np.sign(ret) * (1 - g ** abs(ret)) / (1 - g))


# Lookahead affinity Z_{i->j} of the `shared` variant (i: row, whose step; j: column, whose loss); each seed
# adds AFFINITY_SEED_STEP * seed at every step, so per seed the mean over training is Z + that, and over seeds
# 0..4 the mean is Z + 2 * AFFINITY_SEED_STEP.
AFFINITY = {("CartPole-v1", "CartPole-v1"): 3.0e-3, ("CartPole-v1", "Acrobot-v1"): -1.0e-3,
            ("Acrobot-v1", "CartPole-v1"): 0.5e-3, ("Acrobot-v1", "Acrobot-v1"): 2.0e-3}
AFFINITY_SEED_STEP = 1e-4


def _affinity(seeds: list[int]) -> pd.DataFrame:
    rows = [{"step": step, "seed": seed, "task_i": i, "task_j": j,
             "value": np.float32(z + AFFINITY_SEED_STEP * seed + (1e-4 if step % 1000 else -1e-4))}
            for seed in seeds for step in range(LOG_EVERY, STEPS + 1, LOG_EVERY) for (i, j), z in AFFINITY.items()]
    return pd.DataFrame(rows)


def _grad_tables(rng: np.random.Generator, seeds: list[int]) -> tuple[pd.DataFrame, pd.DataFrame]:
    tasks, pairs = [], []
    for seed in seeds:
        for step in range(LOG_EVERY, STEPS + 1, LOG_EVERY):
            for task in TASKS:
                tasks.append({"step": step, "seed": seed, "task": task, "grad_norm": 1.0 + rng.random(),
                              "weight": 0.5, "loss": 0.2})
            # stored "backwards" on purpose: the analysis must canonicalize pair order
            pairs.append({"step": step, "seed": seed, "task_a": TASKS[1], "task_b": TASKS[0],
                          "cosine": float(np.clip(rng.normal(0.05, 0.3), -1, 1))})
    return pd.DataFrame(tasks), pd.DataFrame(pairs)


def make_study(root: Path, *, seeds: list[int] = SEEDS, evals: bool = False, drop: tuple[str, ...] = (),
               reference_finals: tuple[float, float] | None = None, with_discounted: bool = True,
               headline: str | None = None) -> Path:
    """Write a study with 2 tasks and variants independent / shared / pcgrad (failed).

    `evals`: cells also store greedy evaluations during training; `reference_finals`
    replaces the reference's final scores (everything else, other variants included, unchanged);
    `with_discounted`: summaries carry the discounted final score and each task's gamma (runs
    before them did not); `headline`: study.json's headline metric (absent: older studies).
    """
    rng = np.random.default_rng(0)
    _write_json(root / "study.json", {"name": "synthetic", "tasks": TASKS, "variants": list(VARIANTS),
                                      "reference": "independent", "seeds": seeds, "steps": STEPS,
                                      "git_revision": "abc123", "mtdqn_version": "0.1.0",
                                      **({"headline": headline} if headline else {})})
    for variant, (finals, shared) in VARIANTS.items():
        cell = root / "cells" / variant
        if finals is None:
            _write_json(cell / "summary.json", {"variant": variant, "status": "failed",
                                                "error": "XlaRuntimeError: out of memory"})
            continue
        final_eval = {t: [_clip(t, f + rng.normal(0, 8)) for _ in seeds] for t, f in zip(TASKS, finals)}
        if reference_finals is not None and variant == "independent":
            final_eval = {t: [_clip(t, f + 3.0 * i) for i in range(len(seeds))]
                          for t, f in zip(TASKS, reference_finals)}
        disc = {"final_eval_discounted": {t: [discounted(t, x) for x in xs] for t, xs in final_eval.items()},
                "task_gamma": dict(GAMMA)} if with_discounted else {}
        _write_json(cell / "summary.json", {
            "variant": variant, "status": "ok", "error": None, "tasks": TASKS, "seeds": seeds,
            "params_total": 20_000 if shared else 36_000, "params_shared": 16_000 if shared else 0,
            "wall_time_s": 12.5, "compile_s": 3.25, "env_steps_per_s": 4800.0, "final_eval": final_eval,
            "random_return": dict(RANDOM), "thresholds": THRESH, "eval_episodes": 10, "config_hash": "f00d",
            "devices": 1, "strategy": "sum", **disc, **({"eval_s": 1.75} if shared else {})})  # independent: older
        _write_json(cell / "config.json", {"config": OPTIONS[variant], "config_hash": "f00d", "git_revision": "abc123",
                                           "mtdqn_version": "0.1.0", "packages": {"jax": "0.10.2"},
                                           "host": {"cpu": "Test CPU", "cpu_cores": 2, "platform": "Linux"}})
        _metrics(rng, finals, seeds).to_parquet(cell / "metrics.parquet")
        if evals:
            _evals(rng, finals, seeds).to_parquet(cell / "evals.parquet")
        gt, gp = _grad_tables(rng, seeds)
        gt.to_parquet(cell / "grad_tasks.parquet")
        if shared:
            gp.to_parquet(cell / "grad_pairs.parquet")
            _affinity(seeds).to_parquet(cell / "affinity.parquet")
            probe = [{"seed": s, "task_a": a, "task_b": b, "cosine": float(rng.normal(0.02, 0.05)),
                      "negative": 0.25 if a == b else 0.5}
                     for s in seeds for a, b in ((TASKS[0], TASKS[0]), (TASKS[1], TASKS[1]), (TASKS[0], TASKS[1]))]
            pd.DataFrame(probe).to_parquet(cell / "grad_probe.parquet")
        cka = pd.DataFrame([{"seed": s, "task_a": TASKS[0], "task_b": TASKS[1], "cka": 0.4 + 0.1 * rng.random(),
                             "cka_init": 0.9, "cka_own": 0.2 + 0.1 * rng.random(), "cka_own_init": 0.5}
                            for s in seeds])
        cka.to_parquet(cell / "cka.parquet")
        for name in drop:
            (cell / name).unlink(missing_ok=True)
    return root


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_report(make_study(tmp_path_factory.mktemp("study")), reps=REPS)


def _md_table_rows(text: str, title: str) -> list[str]:
    """Data rows of the pipe table under '### title'."""
    block = text.split(f"### {title}\n", 1)[1].split("\n### ", 1)[0].split("\n## ", 1)[0]
    rows = [ln for ln in block.splitlines() if ln.startswith("|")]
    return rows[2:]  # drop header and separator


@pytest.mark.slow
def test_html_is_self_contained(report: Path):
    html = (report / "report.html").read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html, re.I)
    assert "http://" not in html and "https://" not in html
    imgs = re.findall(r"<img\b[^>]*>", html)
    assert len(imgs) >= 5
    assert all(re.search(r'src="data:image/png;base64,[A-Za-z0-9+/=]+"', tag) for tag in imgs)
    assert "<link" not in html and "<script" not in html


@pytest.mark.slow
def test_markdown_images_exist(report: Path):
    md = (report / "report.md").read_text()
    refs = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert refs and all(r.startswith("figures/") and r.endswith(".png") for r in refs)
    for ref in refs:
        assert (report / ref).is_file() and (report / ref).stat().st_size > 1000


def test_table_row_counts(report: Path):
    ok_variants, n_tasks = 2, len(TASKS)
    assert len(pd.read_parquet(report / "data" / "per_task.parquet")) == n_tasks * ok_variants
    assert len(pd.read_csv(report / "data" / "per_seed.csv")) == n_tasks * ok_variants * len(SEEDS)
    assert len(pd.read_parquet(report / "data" / "aggregates.parquet")) == ok_variants * 2  # IQM, mean
    results = (report / "results.md").read_text()
    assert len(_md_table_rows(results, "Per-task results")) == n_tasks * ok_variants
    assert len(_md_table_rows(results, "Aggregate normalized score")) == ok_variants * 2
    assert len(_md_table_rows(results, "Improvement over the reference")) == ok_variants - 1
    assert len(_md_table_rows(results, "Cost")) == ok_variants
    cost = pd.read_parquet(report / "data" / "cost.parquet").set_index("variant")  # eval_s: recorded by `shared`
    assert cost.loc["shared", "eval_s"] == 1.75 and math.isnan(cost.loc["independent", "eval_s"])
    header, *_ = [ln for ln in results.split("### Cost\n", 1)[1].splitlines() if ln.startswith("|")]
    assert "evaluations during training s" in header
    rows = {r.split("|")[1].strip(): r for r in _md_table_rows(results, "Cost")}
    assert "| 1.75 |" in rows["shared"] and "| n/a |" in rows["independent"]
    for title in ("Aggregate normalized score", "Improvement over the reference"):  # read without the report
        note = results.split(f"### {title}\n", 1)[1].split("\n|", 1)[0]
        assert "percentile stratified-bootstrap" in note and "under-cover at small n" in note, note
    md = (report / "report.md").read_text()
    # one row per task and metric (final return, discounted final return, AUC, steps to threshold)
    assert len(_md_table_rows(md, "Difference to the reference")) == n_tasks * 4
    assert len(_md_table_rows(md, "Per task pair, beside its own tasks over the same steps")) == 1  # only `shared` has shared params
    for probe in ("on each task's own states", "on every task's states pooled"):
        assert len(_md_table_rows(md, f"Linear CKA of trunk features between tasks, {probe}")) == ok_variants


def test_affinity_matrix_averages_over_training_then_seeds(report: Path):
    """The shared variant's T x T matrix: per seed the mean over windows (the +-1e-4 alternation cancels), then
    over seeds with a Student-t interval; shown in units of 1e-3, rows the stepping task; and its curve figure."""
    table = pd.read_parquet(report / "data" / "affinity.parquet")
    assert len(table) == len(AFFINITY) and set(table["variant"]) == {"shared"}
    seed_offsets = AFFINITY_SEED_STEP * np.asarray(SEEDS)
    half = 2.7764451 * seed_offsets.std(ddof=1) / np.sqrt(len(SEEDS))  # t(0.975, 4)
    for r in table.itertuples():
        z = AFFINITY[(r.task_i, r.task_j)] + seed_offsets.mean()
        assert r.mean == pytest.approx(z, abs=1e-7) and r.n == len(SEEDS)
        assert (r.lo, r.hi) == pytest.approx((z - half, z + half), abs=1e-7)
    rows = _md_table_rows((report / "report.md").read_text(), "Lookahead affinity Z_{i→j} between tasks")
    assert len(rows) == len(TASKS)
    cells = [c.strip() for c in rows[0].strip("|").split("|")]
    assert cells[:4] == ["shared", "CartPole-v1", "3.20 [3.00, 3.40]", "-0.800 [-0.996, -0.604]"]
    curve = pd.read_parquet(report / "data" / "affinity_curve.parquet")
    assert len(curve) == len(AFFINITY) * (STEPS // LOG_EVERY)
    assert (report / "figures" / "affinity_curves_shared.png").stat().st_size > 1000


def test_failed_variant_listed_and_excluded(report: Path):
    for name in ("report.md", "report.html"):
        text = (report / name).read_text()
        assert "pcgrad" in text and "FAILED" in text and "out of memory" in text
    per_task = pd.read_parquet(report / "data" / "per_task.parquet")
    assert "pcgrad" not in set(per_task["variant"])


def test_findings_carry_numbers_and_seed_counts(report: Path):
    md = (report / "report.md").read_text()
    section = md.split("## Findings\n", 1)[1].split("\n## ", 1)[0]
    bullets = [ln for ln in section.splitlines() if ln.startswith("- ")]
    improvement = pd.read_parquet(report / "data" / "improvement.parquet")
    untested = int((~diffs_table(report)["in_family"]).sum()
                   + (~improvement[["iqm_in_family", "mean_in_family"]]).to_numpy().sum())
    # 2 tasks x 4 metrics (Welch; Gehan for steps) + IQM and mean (permutation); P(improvement) is descriptive.
    # Untested: too few seeds, no variation, or (Tarone) a discrete test whose best possible p cannot pass
    assert bullets[0].startswith(f"- This report tests {10 - untested} comparison(s)"), bullets[0]
    bullets = bullets[1:]
    assert any("IQM" in b for b in bullets)
    [conflict] = [b for b in bullets if "Gradient conflict in `shared`" in b]
    # the pair's conflict fraction beside both tasks' own noise baselines (the same-task pairs' share < 0: 0.25 in
    # every seed), not their average, and 0.5 (independent directions) as the reference
    assert "CartPole-v1–Acrobot-v1: " in conflict and "vs CartPole-v1 0.250, Acrobot-v1 0.250" in conflict, conflict
    assert "against 0.5 for independent random directions" in conflict, conflict
    assert any("Aggregate mean" in b for b in bullets)  # the mean beside the IQM
    for b in bullets:
        assert re.search(r"n = \d+", b)
        assert "95% CI" in b or b.startswith("- Env steps to threshold"), b  # censored times: Gehan, no interval
    # Each comparison's verdict is the one its test gives after Holm's correction: 'higher' / 'lower' only when
    # the corrected p is below 0.05 (and the CI excludes 0 on that side), 'suggestive' when only the raw p is,
    # 'no clear difference' otherwise; and it is the table's row.
    diffs = pd.read_parquet(report / "data" / "differences.parquet").set_index(["task", "metric"])
    labels = {"final_return": "Final return on", "final_discounted": "Final discounted return (γ",
              "auc": "Area under the learning curve", "steps_to_threshold": "Env steps to threshold on"}
    verdicts = []
    for (task, metric), row in diffs.iterrows():
        [b] = [b for b in bullets if b.startswith(f"- {labels[metric]}") and f" on {task}" in b]
        if metric == "steps_to_threshold" and row["untested"] == "unattainable":  # Tarone: left out, said why
            assert "cannot reach significance" in b and "Tarone" in b and not row["in_family"], b
            assert f"its p {pvalue(row['p'])}, uncorrected" in b and math.isnan(row["p_holm"]), b  # its p kept
            verdicts.append("untested")
            continue
        if metric == "steps_to_threshold":  # censored times: Gehan's test, no interval
            assert "Gehan" in b and f"p = {row['p']:.3f}" in b or "not informative" in b, b
            verdicts.append("suggestive" if "suggestive only" in b else "none" if "no clear difference" in b
                            else "faster" if "faster than" in b else "slower")
            expected = (("slower" if row["diff"] > 0 else "faster") if row["p_holm"] < 0.05
                        else "suggestive" if row["p"] < 0.05 else "none")
            assert verdicts[-1] == expected, b
            continue
        verdicts.append(_verdict(b))
        assert verdicts[-1] == _expected(row["p"], row["p_holm"], row["lo"], row["hi"], row["diff"]), b
        lo, hi = (_number(x) for x in re.search(r"95% CI \[([^,]+), ([^\]]+)\]", b).groups())
        shown = dict(rel=0.01, abs=0.01 * max(abs(row["lo"]), abs(row["hi"])) + 5e-4)  # both ends share digits
        assert (lo, hi) == (pytest.approx(row["lo"], **shown), pytest.approx(row["hi"], **shown)), b
    # the synthetic study has these kinds (its 'lower' was steps to threshold under Welch; with Gehan's rank test
    # the smallest exact p at 5 vs 5 seeds, 2/252, was suggestive only after Holm over 10 tests; it cannot pass
    # alpha / K, so Tarone's rule leaves those tests out)
    assert {"higher", "none", "untested"} <= set(verdicts)
    improvement = pd.read_parquet(report / "data" / "improvement.parquet").iloc[0]
    for b in bullets:
        if b.startswith("- Aggregate ") and ": not tested, " in b:  # Tarone: best p 2/252 above 0.05/K
            kind = "iqm" if "IQM" in b else "mean"
            assert not improvement[f"{kind}_in_family"] and math.isnan(improvement[f"{kind}_p_holm"]), b
            assert "Tarone" in b and f"0.05/{improvement['tarone_k']}" in b, b
            assert f"its p {pvalue(improvement[f'{kind}_p'])}, uncorrected" in b, b  # its own p kept
        elif b.startswith("- Aggregate "):
            kind = "iqm" if "IQM" in b else "mean"
            lo, hi = improvement[f"{kind}_diff_lo"], improvement[f"{kind}_diff_hi"]
            assert _verdict(b) == _expected(improvement[f"{kind}_p"], improvement[f"{kind}_p_holm"], lo, hi,
                                            improvement[f"{kind}_diff"]), b
        elif b.startswith("- Probability"):
            assert f": {improvement['poi']:.3f} (95% CI" in b, b


def _number(text: str) -> float:
    """A number as the report prints it: '-1.9k' is -1900."""
    text = text.strip().replace(",", "")
    return float(text[:-1]) * 1000 if text.endswith("k") else float(text)


def diffs_table(report: Path) -> pd.DataFrame:
    return pd.read_parquet(report / "data" / "differences.parquet")


def _expected(p: float, p_holm: float, lo: float, hi: float, diff: float) -> str:
    """The verdict a comparison's numbers call for."""
    if p_holm < 0.05 and not lo <= 0.0 <= hi:
        return "higher" if diff > 0 else "lower"
    return "suggestive" if p < 0.05 else "none"


def _verdict(bullet: str) -> str:
    if "no clear difference between" in bullet or "not estimable" in bullet:
        return "none"
    if ": suggestive only, " in bullet:
        return "suggestive"
    found = re.search(r"`shared` is (higher|lower) than `independent` by", bullet)
    assert found, bullet
    return found.group(1)


def test_data_files_exist(report: Path):
    for stem in ("per_task", "per_seed", "curves", "aggregates", "improvement", "cost", "normalization",
                 "conflict_summary", "conflict_pairs", "conflict_curve", "grad_tasks_summary", "cka", "cells",
                 "differences", "grad_probe", "methods", "ranges", "affinity", "affinity_curve"):
        assert (report / "data" / f"{stem}.parquet").is_file()
        assert (report / "data" / f"{stem}.csv").is_file()
    assert not list(report.rglob("*.tmp"))


@pytest.mark.slow
def test_rerun_gives_identical_tables(report: Path):
    def snapshot() -> dict[str, bytes]:
        files = [*sorted((report / "data").glob("*.csv")), report / "results.md", report / "report.md"]
        return {p.name: p.read_bytes() for p in files}

    first = snapshot()
    frames = {p.name: pd.read_parquet(p) for p in (report / "data").glob("*.parquet")}
    build_report(report.parent, reps=REPS)
    assert snapshot() == first
    for name, df in frames.items():
        pd.testing.assert_frame_equal(pd.read_parquet(report / "data" / name), df)


def test_missing_optional_files_are_noted(tmp_path: Path):
    study = make_study(tmp_path, drop=("cka.parquet", "grad_pairs.parquet", "grad_tasks.parquet"))
    md = (build_report(study, reps=50) / "report.md").read_text()
    assert "no cka.parquet" in md and "no grad_pairs.parquet" in md
    assert "No gradient-pair data" in md and "No representation-similarity data" in md


def test_bad_column_raises_naming_file_and_column(tmp_path: Path):
    study = make_study(tmp_path)
    path = study / "cells" / "shared" / "grad_pairs.parquet"
    pd.read_parquet(path).drop(columns="cosine").to_parquet(path)
    with pytest.raises(ValueError, match=r"grad_pairs\.parquet: missing column\(s\) 'cosine'"):
        load_study(study)


@pytest.mark.slow
def test_a_cell_without_updates_reports_no_updates(tmp_path):
    """A budget that ends before learning starts leaves an empty gradient table (with its schema) and no pair
    table; the report says "no updates" where its gradient diagnostics would be, and still builds."""
    from mtdqn.rundir import GRAD_TASK_SCHEMA, table_frame

    root = make_study(tmp_path / "study")
    for variant in ("independent", "shared"):
        cell = root / "cells" / variant
        table_frame([], GRAD_TASK_SCHEMA).to_parquet(cell / "grad_tasks.parquet")
        (cell / "grad_pairs.parquet").unlink(missing_ok=True)
    assert pd.read_parquet(root / "cells" / "shared" / "grad_tasks.parquet")["step"].dtype == "int64"
    md = (build_report(root, reps=REPS) / "report.md").read_text()
    why = md.split("## Why", 1)[1].split("\n## ", 1)[0]
    assert "No updates: `independent`, `shared` made no gradient update" in why
    assert "### Per-task gradient norm" not in why and "### Gradient conflict summary" not in why
    assert "no grad_pairs.parquet" not in md  # not a missing file: there was nothing to write
    notes = md.split("## Notes", 1)[1]
    assert "Variant `shared` made no gradient update" in notes and "untrained network" in notes


def test_an_older_empty_gradient_table_still_loads(tmp_path):
    """Runs made before the fixed schemas wrote an empty grad_tasks table with object columns."""
    root = make_study(tmp_path / "study")
    pd.DataFrame(columns=["step", "seed", "task", "grad_norm", "weight", "loss"]).to_parquet(
        root / "cells" / "shared" / "grad_tasks.parquet")
    assert load_study(root).cells["shared"].grad_tasks.empty
