"""benchmarks/pairwise_affinity.py's analysis, on a study folder written by hand (no training): the gain of
task i from partner j is read against Z_{j->i} as the library stores it (affinity.parquet: ``task_i`` steps,
``task_j``'s loss is measured)."""

from __future__ import annotations

import importlib.util
import itertools
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mtdqn.analysis import ranges
from mtdqn.studies.groups import group_name

ROOT = Path(__file__).resolve().parents[1]
TASKS = ("CartPole-v1", "Acrobot-v1", "MountainCar-v0")
RANDOM = {"CartPole-v1": 20.0, "Acrobot-v1": -90.0, "MountainCar-v0": -80.0}
# Z[j, i]: how much a step on j's loss lowers i's.  Asymmetric, so reading Z_{i->j} instead orders the pairs
# differently (Spearman +0.6 against the gains below, not +1).
Z = np.array([[0.0, 0.3, -0.2], [0.1, 0.0, 0.4], [-0.5, 0.2, 0.0]])
SEEDS = 6


def _bench():
    spec = importlib.util.spec_from_file_location("pairwise_affinity", ROOT / "benchmarks" / "pairwise_affinity.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _gap(task: str) -> float:
    return ranges.discounted_bounds(task, 0.99)[1] - RANDOM[task]


def _summary(cell: Path, scores: dict[str, np.ndarray]) -> None:
    cell.mkdir(parents=True)
    (cell / "summary.json").write_text(json.dumps({
        "status": "ok", "wall_time_s": 1.0, "final_eval_discounted": {t: v.tolist() for t, v in scores.items()},
        "random_return_discounted": {t: RANDOM[t] for t in scores}, "task_gamma": {t: 0.99 for t in scores}}))


def _affinity(cell: Path, tasks: tuple[str, ...], z: np.ndarray) -> None:
    """affinity.parquet with Z[a, b] stored as the library stores Z_{a->b}, and a constant gradient cosine."""
    rows = [{"step": step, "seed": s, "task_i": tasks[a], "task_j": tasks[b], "value": z[a, b]}
            for step in (100, 200) for s in range(SEEDS) for a, b in itertools.permutations(range(len(tasks)), 2)]
    pd.DataFrame(rows).to_parquet(cell / "affinity.parquet")
    pd.DataFrame([{"step": 100, "seed": s, "task_a": tasks[a], "task_b": tasks[b], "cosine": 0.5}
                  for s in range(SEEDS) for a, b in itertools.combinations(range(len(tasks)), 2)]
                 ).to_parquet(cell / "grad_pairs.parquet")


def _study(tmp_path: Path, sign: float, unfinished: tuple[str, str] | None = None) -> Path:
    """Gain of i from j = sign * Z[j, i] of i's gap, plus seed noise of 1% of it."""
    rng = np.random.default_rng(0)
    study = tmp_path / "study"
    folders = ["cells/joint", *[f"groups/{group_name((t,))}" for t in TASKS],
               *[f"groups/{group_name(p)}" for p in itertools.combinations(TASKS, 2)]]
    study.mkdir()
    (study / "study.json").write_text(json.dumps({"tasks": list(TASKS), "seeds": list(range(SEEDS)),
                                                  "steps": 1000, "pairwise": folders}))
    _summary(study / "cells" / "joint", {t: np.zeros(SEEDS) for t in TASKS})
    _affinity(study / "cells" / "joint", TASKS, Z)
    base = {t: -50.0 + rng.normal(0, 0.01 * _gap(t), SEEDS) for t in TASKS}
    for t in TASKS:
        _summary(study / "groups" / group_name((t,)), {t: base[t]})
    for a, b in itertools.combinations(range(3), 2):
        pair = (TASKS[a], TASKS[b])
        if pair == unfinished:
            continue
        scores = {TASKS[i]: base[TASKS[i]].mean() + sign * Z[j, i] * _gap(TASKS[i])
                  + rng.normal(0, 0.01 * _gap(TASKS[i]), SEEDS) for i, j in ((a, b), (b, a))}
        cell = study / "groups" / group_name(pair)
        _summary(cell, scores)
        _affinity(cell, pair, Z[np.ix_([a, b], [a, b])])
    return study


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_z_from_partner_to_task_orders_the_gains_and_a_constant_cosine_says_nothing(tmp_path, sign):
    bench = _bench()
    table, raw = bench.pair_rows(_study(tmp_path, sign))
    corr = bench.correlations(table, raw, reps=300).set_index("predictor")
    for name in ("affinity_joint", "affinity_pair"):
        row = corr.loc[bench.PREDICTORS[name]]
        assert row["spearman"] == pytest.approx(sign) and row["pearson"] == pytest.approx(sign, abs=0.01), name
        assert (row["spearman_lo"] if sign > 0 else -row["spearman_hi"]) > 0.5, name  # seed noise is small
    gains = table.set_index(["task", "partner"])["gain"]
    assert gains["Acrobot-v1", "MountainCar-v0"] == pytest.approx(sign * Z[2, 1], abs=0.02)  # normalized by the gap
    cosine = corr.loc[bench.PREDICTORS["cosine_joint"]]
    assert np.isnan(cosine["spearman"]) and np.isnan(cosine["pearson"])


def test_an_unfinished_pair_is_left_out_and_no_finished_pair_is_a_clear_error(tmp_path):
    bench = _bench()
    table, raw = bench.pair_rows(_study(tmp_path, 1.0, unfinished=("CartPole-v1", "MountainCar-v0")))
    assert len(table) == 4 and set(bench.correlations(table, raw, reps=50)["pairs"]) == {4}
    text, _ = bench.markdown(tmp_path / "study", None)
    assert "2 of 3 pairs" not in text and "(2 of 10 pairs)" in text and "4 ordered pairs" in text
    for pair in itertools.combinations(TASKS, 2):
        (tmp_path / "study" / "groups" / group_name(pair) / "summary.json").unlink(missing_ok=True)
    with pytest.raises(SystemExit, match="no pair's run has finished"):
        bench.pair_rows(tmp_path / "study")
