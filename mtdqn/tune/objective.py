"""What a tune maximizes: one of the report's metrics, as a (seeds, tasks) matrix of per-seed scores reduced to
one number.

- ``final``: each seed's final score per task (summary.json's ``final_score``: the mean of the last greedy
  evaluations, :func:`mtdqn.rundir.final_scores`), averaged over seeds and tasks.  Raw returns: tasks of
  different scales weigh by their scale (use ``iqm`` across such tasks).
- ``auc``: the area under each seed's greedy-evaluation curve divided by its span (the report's AUC,
  :func:`mtdqn.analysis.curves.auc`: the mean greedy return over training), averaged over seeds and tasks.
- ``iqm``: the interquartile mean over (seed, task) of the final scores normalized against each task's fixed
  anchors (:mod:`mtdqn.analysis.anchors`; 0 random, 1 reference), the report's aggregate (rliable's IQM).

During training the pruner sees the same metric of the evaluations so far, the latest evaluation standing in for
the final score.  Per seed (:func:`per_seed`) the same reduction over tasks gives the seeds' spread behind a
trial's score.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from rliable import metrics as rlm

from mtdqn.analysis import curves, stats
from mtdqn.analysis.anchors import lookup, normalize
from mtdqn.analysis.ranges import Bounds, return_bounds

__all__ = ["score_matrix", "reduce", "per_seed", "objective_of_run", "objective_so_far", "objective_bounds",
           "seed_interval", "DESCRIPTIONS"]

DESCRIPTIONS = {
    "final": "final score (mean of the last greedy evaluations), mean over seeds and tasks",
    "auc": "area under the greedy-evaluation curve (mean greedy return over training), mean over seeds and tasks",
    "iqm": "IQM over seeds and tasks of the final score normalized by fixed anchors (0 random, 1 reference)",
}


def score_matrix(objective: str, evals: pd.DataFrame, tasks: tuple[str, ...], seeds: list[int],
                 final: dict[str, list[float]] | None = None) -> np.ndarray:
    """(seeds, tasks) per-seed scores of ``evals`` (evals.parquet's rows); ``final``: summary.json's
    ``final_score`` of a finished run (else the latest evaluation stands in for it)."""
    out = np.full((len(seeds), len(tasks)), np.nan)
    for j, task in enumerate(tasks):
        for i, seed in enumerate(seeds):
            rows = evals[(evals["task"] == task) & (evals["seed"] == seed)].sort_values("step", kind="stable")
            if objective == "auc":
                out[i, j] = curves.auc(rows["step"].to_numpy(), rows["return_mean"].to_numpy())
            elif final is not None:
                out[i, j] = final[task][i]
            elif len(rows):
                out[i, j] = float(rows["return_mean"].iloc[-1])
        if objective == "iqm":
            anchors = lookup(task)
            out[:, j] = normalize(out[:, j], anchors.random, anchors.reference)
    return out


def reduce(objective: str, matrix: np.ndarray) -> float:
    """One number of a (seeds, tasks) score matrix: the IQM for ``iqm``, else the mean."""
    matrix = np.asarray(matrix, dtype=np.float64)
    if not np.isfinite(matrix).all():
        return float("nan")
    return float(rlm.aggregate_iqm(matrix)) if objective == "iqm" else float(matrix.mean())


def per_seed(objective: str, matrix: np.ndarray) -> list[float]:
    """Each seed's score: the same reduction over its tasks only."""
    return [reduce(objective, row[None, :]) for row in np.asarray(matrix, dtype=np.float64)]


def objective_so_far(objective: str, rows: list[dict[str, Any]], tasks: tuple[str, ...], seeds: list[int]) -> float:
    """The objective of the evaluations during training so far (what the pruner sees at each of them)."""
    return reduce(objective, score_matrix(objective, pd.DataFrame(rows), tasks, seeds))


def objective_of_run(objective: str, evals: pd.DataFrame, summary: dict[str, Any]) -> np.ndarray:
    """The (seeds, tasks) score matrix of a finished run (its evaluations and summary.json)."""
    return score_matrix(objective, evals, tuple(summary["tasks"]), list(summary["seeds"]), summary["final_score"])


def objective_bounds(objective: str, tasks: tuple[str, ...]) -> Bounds:
    """The range of the objective over ``tasks``: for ``iqm`` the tasks' return ranges normalized by their anchors
    (an IQM lies within its values' extremes), else the mean of the tasks' return ranges (a mean over tasks of
    returns, or of mean returns over training for ``auc``); unbounded where a task's range is unknown."""
    if objective == "iqm":
        normalized = [tuple(normalize(np.asarray(return_bounds(t)), lookup(t).random, lookup(t).reference))
                      for t in tasks]
        return float(min(lo for lo, _ in normalized)), float(max(hi for _, hi in normalized))
    ranges = np.asarray([return_bounds(t) for t in tasks], dtype=np.float64)
    return float(ranges[:, 0].mean()), float(ranges[:, 1].mean())


def seed_interval(objective: str, matrix: np.ndarray, bounds: Bounds, *, reps: int = 2000, seed: int = 0,
                  confidence: float = 0.95) -> stats.Estimate:
    """The objective of a (seeds, tasks) matrix (:func:`reduce`: pooled over seeds and tasks, the number a trial
    is ranked by) with a percentile bootstrap interval of that same statistic over seeds (whole rows resampled:
    a seed's tasks train together), clipped to ``bounds``; no interval below :data:`stats.MIN_SEEDS` seeds.

    Not a t interval on the per-seed scores: for ``iqm`` their mean is not the pooled IQM reported."""
    matrix = np.asarray(matrix, dtype=np.float64)
    value, n = reduce(objective, matrix), len(matrix)
    if n < stats.MIN_SEEDS:
        return stats.clip(stats.Estimate(value, float("nan"), float("nan"), n), bounds)
    rows = np.random.default_rng(seed).integers(0, n, size=(reps, n))
    resampled = np.array([reduce(objective, matrix[r]) for r in rows])
    tail = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(resampled, [tail, 1.0 - tail])
    return stats.clip(stats.Estimate(value, float(lo), float(hi), n), bounds)
