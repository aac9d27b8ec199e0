"""The report's mixture-of-experts diagnostics, on test_report's synthetic study (no JAX, no training)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_report import LOG_EVERY, REPS, SEEDS, STEPS, TASKS, _md_table_rows, make_study

from mtdqn.analysis import build_report
from mtdqn.rundir import EXPERT_SCHEMA, table_frame

COSINE = 0.6  # every expert's cosine with the other, plus 0.01 per seed


def _weight(task: str, seed: int, step: int) -> float:
    """Expert 0's weight: 1/2 at the start, moving to 0.9 (CartPole) or 0.1 (Acrobot), 0.01 more per seed."""
    sign = 1.0 if task == TASKS[0] else -1.0
    return 0.5 + sign * 0.4 * step / STEPS + 0.01 * seed


def _entropy(w: float) -> float:
    return float(-(w * np.log(w) + (1 - w) * np.log(1 - w)))


def _experts(seeds: list[int]) -> pd.DataFrame:
    rows = []
    for seed in seeds:
        for step in range(LOG_EVERY, STEPS + 1, LOG_EVERY):
            for task in TASKS:
                w = _weight(task, seed, step)
                for expert, weight in enumerate((w, 1 - w)):
                    rows.append({"step": step, "seed": seed, "task": task, "expert": expert, "weight": weight,
                                 "entropy": _entropy(w), "cosine": COSINE + 0.01 * seed,
                                 "cosine_raw": COSINE + 0.01 * seed})
    return table_frame(rows, EXPERT_SCHEMA)


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The synthetic study, its `shared` cell holding a two-expert mixture's experts.parquet."""
    study = make_study(tmp_path_factory.mktemp("study"))
    _experts(SEEDS).to_parquet(study / "cells" / "shared" / "experts.parquet")
    return build_report(study, reps=REPS)


@pytest.mark.slow
def test_end_of_training_entropy_and_cosine_per_seed_then_over_seeds(report: Path):
    table = pd.read_parquet(report / "data" / "experts.parquet")
    assert list(table["task"]) == ["all tasks", *TASKS] and set(table["variant"]) == {"shared"}
    assert (table["experts"] == 2).all() and (table["n"] == len(SEEDS)).all()
    per_task = {t: np.asarray([_entropy(_weight(t, s, STEPS)) for s in SEEDS]) for t in TASKS}
    everything = (per_task[TASKS[0]] + per_task[TASKS[1]]) / 2
    for task, values in (("all tasks", everything), *per_task.items()):
        r = table[table["task"] == task].iloc[0]
        assert r["entropy_mean"] == pytest.approx(values.mean(), rel=1e-5)
        assert r["entropy_share_mean"] == pytest.approx(values.mean() / np.log(2), rel=1e-5)
        half = 2.7764451 * values.std(ddof=1) / np.sqrt(len(SEEDS))  # t(0.975, 4)
        assert (r["entropy_lo"], r["entropy_hi"]) == pytest.approx((values.mean() - half, values.mean() + half),
                                                                  rel=1e-4)
        assert r["cosine_mean"] == pytest.approx(COSINE + 0.01 * np.mean(SEEDS), rel=1e-5)
    rows = _md_table_rows((report / "report.md").read_text(), "Mixture of experts at the end of training")
    assert len(rows) == 1 + len(TASKS)


def test_mixing_weights_and_expert_curves_over_training(report: Path):
    mixing = pd.read_parquet(report / "data" / "mixing_curve.parquet")
    assert len(mixing) == len(TASKS) * 2 * (STEPS // LOG_EVERY)
    first = mixing[(mixing["task"] == TASKS[0]) & (mixing["expert"] == 0) & (mixing["step"] == LOG_EVERY)]
    assert first["mean"].item() == pytest.approx(_weight(TASKS[0], 0, LOG_EVERY) + 0.01 * np.mean(SEEDS), rel=1e-5)
    curve = pd.read_parquet(report / "data" / "experts_curve.parquet")
    assert set(curve["quantity"]) == {"entropy_share", "cosine", "cosine_raw"}
    assert len(curve) == 3 * (STEPS // LOG_EVERY)
    for name in ("mixing_weights_shared", "experts_curves"):
        assert (report / "figures" / f"{name}.png").stat().st_size > 1000


@pytest.mark.slow
def test_a_study_without_experts_has_no_experts_section(tmp_path: Path):
    out = build_report(make_study(tmp_path / "study"), reps=REPS)
    assert "Mixture of experts" not in (out / "report.md").read_text()
    assert pd.read_parquet(out / "data" / "experts.parquet").empty
