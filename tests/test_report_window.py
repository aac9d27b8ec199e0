"""The final score beside the end-of-training evaluation alone (mtdqn/analysis/sensitivity.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mtdqn.analysis import build_report
from mtdqn.analysis.load import load_study
from mtdqn.analysis.sensitivity import final_window_table, unsettled_tasks, window_disagreements
from synthetic_study import REPS, make_study


def _score_over(study: Path, window: list[int], final_of) -> None:
    """Give every ok cell a final score over ``window`` (summary.json, as train/summary.py writes it):
    ``final_of(task, seed index, end-of-training value)``."""
    for cell in (study / "cells").iterdir():
        path = cell / "summary.json"
        summary = json.loads(path.read_text())
        if summary["status"] != "ok":
            continue
        summary["final_score"] = {t: [final_of(t, i, x) for i, x in enumerate(xs)]
                                  for t, xs in summary["final_eval"].items()}
        summary["final_score_steps"] = window
        path.write_text(json.dumps(summary))


def test_one_evaluation_per_final_score_gives_no_table(tmp_path):
    study = make_study(tmp_path / "s", evals=True)
    assert final_window_table(load_study(study)).empty  # final_eval alone: the two are the same numbers
    _score_over(study, [10_000], lambda t, i, x: x)
    assert final_window_table(load_study(study)).empty


@pytest.mark.slow
def test_a_window_that_spans_learning_is_named(tmp_path):
    """The referee's Acrobot: half the seeds still near the bottom at the window's first evaluation."""
    study = make_study(tmp_path / "s", evals=True)
    # the final score averages the last evaluation with one where every other seed was still at -500
    _score_over(study, [9_000, 10_000], lambda t, i, x: (x + -500.0) / 2 if t == "Acrobot-v1" and i % 2 else x)
    table = final_window_table(load_study(study))
    row = table.set_index(["variant", "task"]).loc[("independent", "Acrobot-v1")]
    assert row["window"] == "9,000, 10,000" and row["n"] == 5
    finals = json.loads((study / "cells" / "independent" / "summary.json").read_text())
    assert row["last_mean"] == pytest.approx(np.mean(finals["final_eval"]["Acrobot-v1"]))
    assert row["final_mean"] == pytest.approx(np.mean(finals["final_score"]["Acrobot-v1"]))
    assert np.isnan(row["final_diff"]) and not np.isnan(table.set_index(["variant", "task"])
                                                         .loc[("shared", "Acrobot-v1"), "last_diff"])
    assert unsettled_tasks(table) == ["Acrobot-v1"]  # CartPole's scores are the last evaluation's: settled
    md = (build_report(study, reps=REPS) / "report.md").read_text()
    assert "### Final score against the end-of-training evaluation alone" in md
    assert "On Acrobot-v1 a final-score interval is over 2× as wide" in md and "collapsing and recovering" in md


def test_comparisons_that_read_differently_are_listed():
    import pandas as pd

    rows = [{"variant": "shared", "task": "A", "final_diff_lo": -5.0, "final_diff_hi": 20.0, "last_diff_lo": 1.0,
             "last_diff_hi": 9.0},
            {"variant": "pcgrad", "task": "A", "final_diff_lo": 2.0, "final_diff_hi": 4.0, "last_diff_lo": 1.0,
             "last_diff_hi": 3.0},
            {"variant": "moe", "task": "A", "final_diff_lo": 2.0, "final_diff_hi": 4.0, "last_diff_lo": -3.0,
             "last_diff_hi": -1.0},
            {"variant": "moore", "task": "A", "final_diff_lo": -5.0, "final_diff_hi": 30.0, "last_diff_lo": -20.4,
             "last_diff_hi": 0.2}]  # a second referee's pcgrad on Acrobot: +12.7 vs -10.1, no interval excludes 0
    for r, (f, last) in zip(rows, ((7.5, 5.0), (3.0, 2.0), (3.0, -2.0), (12.7, -10.1))):
        r.update(final_diff=f, last_diff=last)
    assert window_disagreements(pd.DataFrame(rows)) == ["shared on A", "moe on A", "moore on A"]


def test_only_the_reference_reads_reference():
    """A variant whose difference cannot be taken (the reference failed) shows n/a, not 'reference'."""
    import pandas as pd

    from mtdqn.analysis.sensitivity import WINDOW_COLUMNS, window_display

    nan = float("nan")
    row = dict.fromkeys(WINDOW_COLUMNS, nan) | {"task": "A", "window": "1, 2", "n": 5, "final_mean": 1.0,
                                                 "last_mean": 1.0, "final_values": "", "last_values": ""}
    table = pd.DataFrame([row | {"variant": "independent"}, row | {"variant": "shared"}], columns=WINDOW_COLUMNS)
    shown = window_display(table, "independent")["difference to the reference: final score"].tolist()
    assert shown == ["reference", "n/a"]


def test_below_five_seeds_the_seeds_values_stand_in_for_intervals(tmp_path):
    """The report's rule everywhere: no interval from 2 seeds, the seeds themselves instead."""
    from mtdqn.analysis.sensitivity import window_display

    study = make_study(tmp_path / "s", evals=True, seeds=[0, 1])
    _score_over(study, [9_000, 10_000], lambda t, i, x: x - 10.0 * i)
    shown = window_display(final_window_table(load_study(study)), "independent")
    assert shown["final score (mean [95% CI])"].str.contains(r"\(seeds: ").all()
    assert not shown["final score (mean [95% CI])"].str.contains(r"\[").any()


def test_a_difference_resting_on_one_seed_has_no_interval(tmp_path):
    """As in the difference table: every other seed of both sides gave one value, so Welch's interval would
    describe the design (|t| = 1 whatever the deviation), not an effect; the point difference stays."""
    study = make_study(tmp_path / "s", evals=True)
    for cell in (study / "cells").iterdir():
        path = cell / "summary.json"
        summary = json.loads(path.read_text())
        if summary["status"] != "ok":
            continue
        n = len(summary["final_eval"]["CartPole-v1"])
        lone = 100.0 if cell.name == "shared" else 500.0  # shared: one seed of all fell; the rest sit at 500
        summary["final_eval"]["CartPole-v1"] = [lone] + [500.0] * (n - 1)
        summary["final_score"] = {t: [x - 1.0 * i for i, x in enumerate(xs)] for t, xs in summary["final_eval"].items()}
        summary["final_score_steps"] = [9_000, 10_000]
        path.write_text(json.dumps(summary))
    row = final_window_table(load_study(study)).set_index(["variant", "task"]).loc[("shared", "CartPole-v1")]
    assert row["last_diff"] == pytest.approx(-400.0 / row["n"])
    assert np.isnan(row["last_diff_lo"]) and np.isnan(row["last_diff_hi"])
    assert np.isfinite(row["final_diff_lo"])  # the window's scores vary across seeds: an interval
