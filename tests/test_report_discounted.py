"""The discounted final score in study reports: its feasible range, its tables, the headline a study asks for.

Synthetic study directories (tests/test_report.py's make_study), no training.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mtdqn.analysis import build_report, load_study, ranges
from mtdqn.analysis.fmt import detectable
from mtdqn.errors import ConfigError

from synthetic_study import DISCOUNTED_BOUNDS, GAMMA, REPS, SEEDS, TASKS, make_study


def _geometric(gamma: float, n: int) -> float:
    return sum(gamma ** k for k in range(n))


# ---------------------------------------------------------------- ranges


def test_undiscounted_bounds_are_the_tasks_stated_ones():
    assert ranges.RETURN_BOUNDS["CartPole-v1"] == (0.0, 500.0)
    assert ranges.RETURN_BOUNDS["Acrobot-v1"] == (-500.0, 0.0)
    assert ranges.RETURN_BOUNDS["MountainCar-v0"] == (-200.0, 0.0)
    assert ranges.RETURN_BOUNDS["CarOnHill-v0"] == (-1.0, 1.0)
    assert ranges.RETURN_BOUNDS["InvertedPendulumDiscrete-v0"] == (-1.0, 0.0)
    assert ranges.RETURN_BOUNDS["Breakout-MinAtar"] == (0.0, math.inf)
    assert ranges.return_bounds("CarOnHill-v0:gamma=0.95") == (-1.0, 1.0)  # options do not change it


def test_discounted_bounds_hand_computed():
    lo, hi = ranges.discounted_bounds("CartPole-v1", 0.99)
    assert lo == 0.0 and hi == pytest.approx(_geometric(0.99, 500)) and hi == pytest.approx(99.3430, abs=1e-4)
    assert ranges.discounted_bounds("MountainCar-v0", 0.99)[0] == pytest.approx(-_geometric(0.99, 200))
    assert ranges.discounted_bounds("Acrobot-v1", 0.95)[0] == pytest.approx(-_geometric(0.95, 500))
    assert ranges.discounted_bounds("gym:CartPole-v1:gamma=0.9", 0.9)[1] == pytest.approx(_geometric(0.9, 500))
    # one terminal reward: discounting only shrinks it toward 0
    assert ranges.discounted_bounds("CarOnHill-v0:gamma=0.95", 0.95) == (-1.0, 1.0)
    assert ranges.discounted_bounds("InvertedPendulumDiscrete-v0", 0.95) == (-1.0, 0.0)
    assert ranges.discounted_bounds("Breakout-MinAtar", 0.99) == (0.0, math.inf)
    assert ranges.discounted_bounds("CartPole-v1", 1.0) == (0.0, 500.0)
    for unknown in (("NoSuchTask-v0", 0.99), ("CartPole-v1", float("nan")), ("CartPole-v1", 1.5)):
        assert ranges.discounted_bounds(*unknown) == ranges.UNBOUNDED


def test_discounted_bounds_contain_every_episode_and_are_reached():
    rng = np.random.default_rng(0)
    for task, shape in ranges.REWARDS.items():
        if math.isinf(shape.rewarded_steps):
            continue
        n = int(shape.rewarded_steps)
        lo_r, hi_r = shape.reward
        for gamma in (0.9, 0.95, 0.99, 1.0):
            lo, hi = ranges.discounted_bounds(task, gamma)
            for _ in range(200):
                length = int(rng.integers(1, 3 * n + 2))  # a terminal-reward task runs longer than one step
                rewards = np.zeros(length)
                slots = rng.choice(length, size=min(n, length), replace=False)
                rewards[slots] = rng.uniform(lo_r, hi_r, size=slots.size)
                g = float(np.sum(gamma ** np.arange(length) * rewards))
                assert lo - 1e-9 <= g <= hi + 1e-9, (task, gamma, g)
            # the ends are attained: the extreme reward on each of the first n steps
            for r, end in ((lo_r, lo), (hi_r, hi)):
                assert float(np.sum(gamma ** np.arange(n) * r)) == pytest.approx(end)


def test_rewarded_steps_are_the_environments_time_limits():
    from mtdqn.tasks.registry import parse_task

    for task in ("CartPole-v1", "Acrobot-v1", "MountainCar-v0"):  # a reward on every step
        assert ranges.REWARDS[task].rewarded_steps == parse_task(task).max_episode_steps
    for task in ("CarOnHill-v0", "InvertedPendulumDiscrete-v0"):  # one terminal reward
        assert ranges.REWARDS[task].rewarded_steps == 1


# ---------------------------------------------------------------- the report


@pytest.fixture(scope="module")
def default(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """5 seeds, evaluations, no headline in study.json (leads with the undiscounted return)."""
    return build_report(make_study(tmp_path_factory.mktemp("default"), evals=True), reps=REPS)


@pytest.fixture(scope="module")
def headline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """As `default`, with study.json's headline = "discounted" (what the deramo preset writes)."""
    return build_report(make_study(tmp_path_factory.mktemp("headline"), evals=True, headline="discounted"),
                        reps=REPS)


def _findings(md: str) -> list[str]:
    section = md.split("## Findings\n", 1)[1].split("\n## ", 1)[0]
    return [ln for ln in section.splitlines() if ln.startswith("- ")]


def _header(md: str, title: str) -> list[str]:
    block = md.split(f"### {title}\n", 1)[1]
    line = next(ln for ln in block.splitlines() if ln.startswith("|"))
    return [c.strip() for c in line.strip("|").split("|")]


@pytest.mark.slow
def test_every_output_carries_the_discounted_score_and_gamma(default: Path):
    for name in ("report.md", "report.html", "results.md"):
        text = (default / name).read_text()
        assert "final discounted return" in text and "γ" in text, name
        assert "CartPole-v1 0.99, Acrobot-v1 0.95" in text, name  # each task's gamma stated
    per_task = pd.read_csv(default / "data" / "per_task.csv")
    assert {"gamma", "disc_mean", "disc_lo", "disc_hi"} <= set(per_task.columns)
    assert {"gamma", "final_discounted"} <= set(pd.read_csv(default / "data" / "per_seed.csv").columns)
    assert len(pd.read_csv(default / "data" / "ranges.csv")) == len(TASKS)


def test_discounted_means_intervals_and_differences_use_the_discounted_range(default: Path):
    study = load_study(default.parent)
    per_task = pd.read_parquet(default / "data" / "per_task.parquet")
    for r in per_task.itertuples():
        stored = study.cells[r.variant].summary["final_eval_discounted"][r.task]
        assert r.gamma == GAMMA[r.task] and r.disc_mean == pytest.approx(np.mean(stored))
        lo, hi = DISCOUNTED_BOUNDS[r.task]
        assert lo <= r.disc_lo <= r.disc_mean <= r.disc_hi <= hi  # 5 seeds: an interval, inside the range
    diffs = pd.read_parquet(default / "data" / "differences.parquet")
    disc = diffs[diffs["metric"] == "final_discounted"]
    assert len(disc) == len(TASKS)
    for r in disc.itertuples():
        lo, hi = DISCOUNTED_BOUNDS[r.task]
        assert r.gamma == GAMMA[r.task] and r.max_diff == pytest.approx(hi - lo)  # not the undiscounted 500
        assert -(hi - lo) <= r.lo <= r.diff <= r.hi <= hi - lo
        x = study.cells["shared"].summary["final_eval_discounted"][r.task]
        y = study.cells["independent"].summary["final_eval_discounted"][r.task]
        assert r.diff == pytest.approx(np.mean(x) - np.mean(y))
    assert diffs[diffs["metric"] != "final_discounted"]["gamma"].isna().all()


@pytest.mark.slow
def test_the_default_report_leads_with_the_undiscounted_return(default: Path):
    md = (default / "report.md").read_text()
    cols = _header(md, "Per-task results")
    assert cols.index("final return (mean [95% CI])") < cols.index("final discounted return (mean [95% CI])")
    assert _findings(md)[1].startswith("- Aggregate IQM")
    assert "Headline metric" not in md


@pytest.mark.slow
def test_a_discounted_headline_leads_every_output(headline: Path, default: Path):
    md = (headline / "report.md").read_text()
    for text in (md, (headline / "results.md").read_text()):
        cols = _header(text, "Per-task results")
        assert cols.index("final discounted return (mean [95% CI])") < cols.index("final return (mean [95% CI])")
    assert "Headline metric: the **discounted** final return" in md
    assert "Headline metric: the **discounted** final return" in (headline / "results.md").read_text()
    bullets = _findings(md)
    assert bullets[1].startswith("- Final discounted return (γ 0.99) on CartPole-v1")
    assert bullets[2].startswith("- Final discounted return (γ 0.95) on Acrobot-v1")
    assert bullets[3].startswith("- Aggregate IQM")  # the aggregate stays on the undiscounted anchors
    rows = [ln for ln in md.split("### Difference to the reference\n", 1)[1].splitlines() if ln.startswith("| ")][1:]
    assert "final discounted return (γ 0.99)" in rows[0] and "| final return |" in rows[1]
    assert "undiscounted final return whatever the headline" in md
    # the aggregates do not move with the headline
    agg = pd.read_parquet(headline / "data" / "aggregates.parquet")
    pd.testing.assert_frame_equal(agg, pd.read_parquet(default / "data" / "aggregates.parquet"))


@pytest.mark.slow
def test_discounted_key_follows_the_undiscounted_definition(tmp_path: Path):
    study = make_study(tmp_path)
    for variant in ("independent", "shared"):
        path = study / "cells" / variant / "summary.json"
        s = json.loads(path.read_text())
        s["final_score"] = s["final_eval"]
        s["final_score_discounted"] = {t: [7.0] * len(SEEDS) for t in TASKS}  # not final_eval_discounted
        path.write_text(json.dumps(s))
    per_seed = pd.read_parquet(build_report(study, reps=50) / "data" / "per_seed.parquet")
    assert (per_seed["final_discounted"] == 7.0).all()


@pytest.mark.slow
def test_older_runs_without_discounted_scores_say_so(tmp_path: Path):
    out = build_report(make_study(tmp_path, with_discounted=False, headline="discounted"), reps=50)
    md = (out / "report.md").read_text()
    assert "No discounted final score in every ok cell" in md and "leads with the undiscounted return" in md
    assert _header(md, "Per-task results").index("final return (mean [95% CI])") == 4  # leads: the headline fell back
    diffs = pd.read_parquet(out / "data" / "differences.parquet")
    assert "final_discounted" not in set(diffs["metric"])
    assert pd.read_parquet(out / "data" / "per_task.parquet")["disc_mean"].isna().all()


@pytest.mark.slow
def test_a_task_discounted_differently_by_two_variants_is_not_compared(tmp_path: Path):
    study = make_study(tmp_path)
    path = study / "cells" / "shared" / "summary.json"
    s = json.loads(path.read_text())
    s["task_gamma"]["CartPole-v1"] = 0.9
    path.write_text(json.dumps(s))
    out = build_report(study, reps=50)
    diffs = pd.read_parquet(out / "data" / "differences.parquet")
    assert set(diffs[diffs["metric"] == "final_discounted"]["task"]) == {"Acrobot-v1"}
    assert "Task CartPole-v1 is discounted differently by the variants" in (out / "report.md").read_text()
    assert set(pd.read_parquet(out / "data" / "ranges.parquet")["gamma"]) == {0.9, 0.99, 0.95}


def test_bad_headline_is_a_one_line_error(tmp_path: Path):
    study = make_study(tmp_path, headline="loss")
    with pytest.raises(ValueError, match=r"study\.json: 'headline' must be one of 'return', 'discounted'"):
        load_study(study)


# ---------------------------------------------------------------- small n (issue 23, 8b)


def test_two_seeds_show_the_seeds_and_give_the_real_reason_for_no_detectable_difference(tmp_path: Path):
    out = build_report(make_study(tmp_path, seeds=[0, 1]), reps=50)
    md = (out / "report.md").read_text()
    block = md.split("### Per-task results", 1)[1].split("\n### ", 1)[0]
    rows = [ln for ln in block.splitlines() if ln.startswith("| CartPole-v1")]
    assert rows and all(ln.count("(seeds: ") == 3 for ln in rows)  # final, discounted final, AUC
    assert pd.read_parquet(out / "data" / "per_task.parquet")[["disc_lo", "disc_hi"]].isna().all().all()
    diff_block = md.split("### Difference to the reference", 1)[1].split("\n### ", 1)[0]
    diff_rows = [ln for ln in diff_block.splitlines() if ln.startswith("| ") and " − " in ln][1:]
    # the seeds do differ: n < 5, not a missing spread, is why no detectable difference is given
    assert diff_rows and all("n/a (n < 5 seeds" in ln and "no spread" not in ln for ln in diff_rows)


def test_detectable_states_each_reason():
    assert detectable(float("nan"), 500.0, n=2) == "n/a (n < 5 seeds: the seeds' values are shown instead)"
    assert detectable(float("nan"), 500.0, n=5) == "n/a (no spread observed)"
    assert detectable(float("nan"), 500.0) == "n/a (no spread observed)"
    assert detectable(12.5, 500.0, n=5) == "12.5"
    assert detectable(713.0, 500.0, n=10).startswith("none within the range")


# ---------------------------------------------------------------- the spec carries the headline


def test_spec_headline_is_validated_and_recorded():
    from mtdqn.studies.presets import PRESETS
    from mtdqn.studies.runner import study_record
    from mtdqn.studies.spec import StudySpec, build_spec

    assert PRESETS["deramo"]()["headline"] == "discounted"
    assert "headline" not in PRESETS["quick"]()
    with pytest.raises(ConfigError, match=r"^x\.toml: headline: expected one of 'return', 'discounted', got 'J'"):
        build_spec({"tasks": ["CartPole-v1"], "steps": 10_000, "seeds": 1, "headline": "J",
                    "variants": {"shared": {"sharing": "shared"}}}, "x.toml", "x")
    spec = StudySpec(name="s", tasks=("CartPole-v1",), steps=10_000, seeds=1, variants={"shared": {}},
                     headline="discounted")
    assert study_record(spec)["headline"] == "discounted"
    assert study_record(StudySpec(name="s", tasks=("CartPole-v1",), steps=1, seeds=1, variants={}))["headline"] \
        == "return"


def test_transfer_table_keeps_the_discounted_return_in_its_range_and_names_gamma(tmp_path: Path):
    from mtdqn.analysis.transfer import _bounds, write_transfer_table

    for variant, top in (("scratch", 60.0), ("frozen", 90.0)):
        cell = tmp_path / "cells" / variant
        cell.mkdir(parents=True)
        finals = [top + k for k in range(5)]
        (cell / "summary.json").write_text(json.dumps({
            "status": "ok", "seeds": list(range(5)), "final_score": {"CartPole-v1": [3 * f for f in finals]},
            "final_score_discounted": {"CartPole-v1": finals}, "task_gamma": {"CartPole-v1": 0.99}}))
        pd.DataFrame([{"step": step, "task": "CartPole-v1", "seed": seed, "return_mean": 100.0 + seed}
                      for step in (1000, 2000) for seed in range(5)]).to_parquet(cell / "evals.parquet")
    md = write_transfer_table(tmp_path, ["scratch", "frozen"], "CartPole-v1").read_text()
    assert "final (discounted, γ 0.99)" in md
    table = json.loads((tmp_path / "transfer.json").read_text())
    assert table["variants"]["frozen"]["final_discounted"]["gamma"] == 0.99
    lo, hi = ranges.discounted_bounds("CartPole-v1", 0.99)
    assert lo <= table["variants"]["frozen"]["final_discounted"]["lo"] <= table["variants"]["frozen"][
        "final_discounted"]["hi"] <= hi
    assert _bounds("final_discounted", "CartPole-v1", 0.99) == (lo, hi)
    assert _bounds("final_discounted", "CartPole-v1") == ranges.UNBOUNDED  # gamma not recorded
