"""The numbers of the groups study: predicted and realized scores of task partitions, and how well they agree.

Read from the stored study only (study.json's plan, the joint run's
``affinity.parquet`` and ``grad_pairs.parquet``, each group cell's
``summary.json``), never from training code.

- **Predictors** (per seed of the joint run, then averaged over seeds): the
  lookahead affinity Z_{i->j} (the mean of its logging windows, as
  :func:`mtdqn.analysis.why.affinity_table`) and, as the baseline it is
  compared with, the gradient cosine of each task pair on the shared
  parameters (symmetric: Z_{i->j} and Z_{j->i} are the same cosine).  Either
  matrix scores a partition by TAG's criterion
  (:func:`mtdqn.analysis.groups.partition_score`).
- **Realized**: a partition's score for a task, per seed, is the final score
  (summary.json's ``final_score``: the undiscounted greedy return) of the group
  cell holding that task; its aggregate, per seed, the mean over tasks of the
  score normalized by the task's fixed anchors (:mod:`mtdqn.analysis.anchors`;
  tasks without usable anchors are left out of it).
- **Agreement**: Spearman's rank correlation between the predicted and the
  realized scores of the distinct trained partitions (for one task: of the
  distinct groups the trained partitions put it in), with a percentile
  bootstrap over seeds: the joint run's seeds (the prediction) and the trained
  cells' seeds (the realization) resampled independently.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps

from . import anchors, ranges, stats
from .groups import ROLES, Partition
from mtdqn.io import read_parquet

__all__ = ["PREDICTORS", "roles", "seed_matrix", "seed_mean", "predictor_matrices", "cell_finals", "realized_scores",
           "normalized_mean", "normalized_bounds", "points", "spearman_rows", "spearman", "score_weights",
           "rank_agreement"]

PREDICTORS = ("affinity", "cosine")


def roles(plan: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(role, its plan entry) in the order of :data:`~mtdqn.analysis.groups.ROLES` (a JSON object has none)."""
    return [(role, plan["partitions"][role]) for role in ROLES if role in plan["partitions"]]


def seed_matrix(table: pd.DataFrame, tasks: tuple[str, ...], a: str, b: str, value: str,
                symmetric: bool) -> np.ndarray:
    """(seeds, tasks, tasks): per seed (ascending), each pair's ``value`` averaged over its logging windows;
    row ``a``'s task, column ``b``'s; ``symmetric`` fills both orders from either (a cosine); an unmeasured
    pair is NaN, the diagonal of a symmetric matrix 1 (a task's cosine with itself: it plays no part)."""
    idx = {t: k for k, t in enumerate(tasks)}
    seeds = sorted(int(s) for s in table["seed"].unique())
    z = np.full((len(seeds), len(tasks), len(tasks)), np.nan)
    means = table.dropna(subset=[value]).groupby(["seed", a, b])[value].mean()
    for (seed, i, j), v in means.items():
        s, r, c = seeds.index(int(seed)), idx[str(i)], idx[str(j)]
        z[s, r, c] = v
        if symmetric:
            z[s, c, r] = v
    if symmetric:
        z[:, np.arange(len(tasks)), np.arange(len(tasks))] = 1.0
    return z


def seed_mean(matrices: np.ndarray | None) -> np.ndarray | None:
    """(T, T): the mean over seeds of each pair measured in any seed; None when a pair has no value at all."""
    if matrices is None or not np.isfinite(matrices).any(axis=0).all():
        return None
    return np.nanmean(matrices, axis=0)


def predictor_matrices(joint_dir: Path, tasks: tuple[str, ...]) -> dict[str, np.ndarray | None]:
    """{"affinity": (seeds, T, T) or None, "cosine": (seeds, T, T) or None} of the joint run's cell directory
    (None: its table is absent, e.g. a run without --affinity-every)."""
    out: dict[str, np.ndarray | None] = {p: None for p in PREDICTORS}
    af, gp = Path(joint_dir) / "affinity.parquet", Path(joint_dir) / "grad_pairs.parquet"
    if af.is_file():
        out["affinity"] = seed_matrix(read_parquet(af), tasks, "task_i", "task_j", "value", symmetric=False)
    if gp.is_file():
        out["cosine"] = seed_matrix(read_parquet(gp), tasks, "task_a", "task_b", "cosine", symmetric=True)
    return out


def cell_finals(cell_dir: Path) -> dict[str, np.ndarray] | None:
    """{task: (seeds,) final scores} of a finished cell, seeds in its summary's order; None unless it finished
    ok (failed or not run)."""
    path = Path(cell_dir) / "summary.json"
    summary = json.loads(path.read_text()) if path.is_file() else {}
    if summary.get("status") != "ok":
        return None
    key = "final_score" if "final_score" in summary else "final_eval"
    return {task: np.asarray(v, dtype=np.float64) for task, v in summary[key].items()}


def realized_scores(study_dir: Path, plan: dict[str, Any]) -> dict[str, dict[str, np.ndarray | None]]:
    """{role: {task: (seeds,) realized scores, or None where the task's group cell did not finish}}."""
    out: dict[str, dict[str, np.ndarray | None]] = {}
    for role, entry in roles(plan):
        out[role] = {}
        for group in entry["groups"]:
            finals = cell_finals(Path(study_dir) / group["cell"])
            for task in group["tasks"]:
                out[role][task] = None if finals is None else finals[task]
    return out


def normalized_mean(per_task: dict[str, np.ndarray | None]) -> np.ndarray | None:
    """(seeds,): per seed, the mean over tasks with usable anchors of (score - random) / (reference - random);
    None when a task's score is missing or no task has anchors."""
    if any(v is None for v in per_task.values()):
        return None
    cols = [anchors.normalize(v, a.random, a.reference) for t, v in per_task.items()
            if not anchors.usable(t, a := anchors.lookup(t))]
    return np.mean(np.stack(cols), axis=0) if cols else None


def normalized_bounds(tasks: tuple[str, ...]) -> tuple[float, float]:
    """The range :func:`normalized_mean` can take: each task's return range normalized by its anchors, averaged
    over the same tasks (an interval over seeds stays inside it: groups.md's aggregate read [-0.080, 0.286]
    where no policy scores below -0.024)."""
    lows, highs = [], []
    for task in tasks:
        a = anchors.lookup(task)
        if anchors.usable(task, a):
            continue
        ends = sorted(float(anchors.normalize(x, a.random, a.reference)) for x in ranges.return_bounds(task))
        lows.append(ends[0])
        highs.append(ends[1])
    return (float(np.mean(lows)), float(np.mean(highs))) if lows else ranges.UNBOUNDED


def points(plan: dict[str, Any], tasks: tuple[str, ...], task: str | None) -> list[tuple[str, Partition]]:
    """(role, partition) of the distinct trained partitions, the first role naming each; for a ``task``, of the
    distinct groups the partitions put it in (two partitions that give it one group are one point)."""
    seen, out = set(), []
    for role, entry in roles(plan):
        partition = tuple(tuple(tasks.index(t) for t in g["tasks"]) for g in entry["groups"])
        key = partition if task is None else next(g for g in partition if tasks.index(task) in g)
        if key not in seen:
            seen.add(key)
            out.append((role, partition))
    return out


def spearman_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman's rho of each row pair of ``x`` and ``y`` (rows, points): Pearson's correlation of average ranks
    (ties share their mean rank, as scipy's ``spearmanr``); NaN below 3 points or where a row is constant."""
    rx, ry = sps.rankdata(x, axis=-1), sps.rankdata(y, axis=-1)
    rx, ry = rx - rx.mean(-1, keepdims=True), ry - ry.mean(-1, keepdims=True)
    den = np.sqrt((rx ** 2).sum(-1) * (ry ** 2).sum(-1))
    ok = (den > 0) & (x.shape[-1] >= 3)
    return np.where(ok, (rx * ry).sum(-1) / np.where(ok, den, 1.0), np.nan)


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rho of two sequences (see :func:`spearman_rows`)."""
    return float(spearman_rows(np.asarray(x, np.float64)[None], np.asarray(y, np.float64)[None])[0])


def score_weights(partition: Partition, n: int, task: int | None) -> np.ndarray:
    """(n, n) W with (W * Z).sum() TAG's score of ``partition`` (:func:`~mtdqn.analysis.groups.partition_score`),
    or for a ``task`` its own share (:func:`~mtdqn.analysis.groups.task_scores`): the score is linear in Z, so
    a bootstrap scores thousands of resampled matrices in one product."""
    w = np.zeros((n, n))
    for group in partition:
        for i in group:
            mates = [j for j in group if j != i]
            if mates and task in (None, i):
                w[mates, i] = 1.0 / len(mates)
    return w


def rank_agreement(matrices: np.ndarray, per_seed: list[np.ndarray], scored: list[Partition], task: int | None, *,
                   reps: int = 2000, seed: int = 0) -> stats.Estimate:
    """Spearman's rho between predicted (from ``matrices``, the joint run's (seeds, T, T)) and realized
    (``per_seed``: each partition's (seeds,) realized scores, one seed count; NaN: a seed without a final score)
    scores of ``scored``, with a 95% percentile bootstrap over seeds (both sides resampled independently); each
    side's mean over the seeds with a value; no interval below :data:`~mtdqn.analysis.stats.MIN_SEEDS` seeds on
    either side.  ``n`` is the smaller seed count: the joint run's, or the fewest scored seeds of a partition."""
    weights = np.stack([score_weights(p, matrices.shape[1], task) for p in scored])  # (partitions, T, T)
    realized = np.stack(per_seed)  # (partitions, seeds)

    def finite_mean(x: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
        """The mean over ``axis`` of the finite entries, and their count (a mean over none reads 0)."""
        count = np.isfinite(x).sum(axis)
        return np.nansum(x, axis=axis) / np.maximum(count, 1), count

    def rhos(a: np.ndarray, b: np.ndarray) -> np.ndarray:  # a: (reps, joint seeds), b: (reps, cell seeds)
        z, z_count = finite_mean(matrices[a], 1)  # (reps, T, T): each pair's mean over its seeds
        real, real_count = finite_mean(realized[:, b], -1)  # (partitions, reps)
        rho = spearman_rows(np.einsum("ptu,rtu->rp", weights, z), real.T)
        return np.where((z_count > 0).all(axis=(1, 2)) & (real_count > 0).all(axis=0), rho, np.nan)

    n_joint, n_cells = matrices.shape[0], realized.shape[1]
    value = float(rhos(np.arange(n_joint)[None], np.arange(n_cells)[None])[0])
    n = min(n_joint, int(np.isfinite(realized).sum(1).min()))
    if n < stats.MIN_SEEDS or not np.isfinite(value):
        return stats.Estimate(value, float("nan"), float("nan"), n)
    rng = np.random.default_rng(seed)
    draws = rhos(rng.integers(0, n_joint, (reps, n_joint)), rng.integers(0, n_cells, (reps, n_cells)))
    draws = draws[np.isfinite(draws)]
    lo, hi = np.quantile(draws, [0.025, 0.975]) if draws.size else (float("nan"), float("nan"))
    return stats.Estimate(value, float(lo), float(hi), n)


def _quarter(step: pd.Series, last: int) -> np.ndarray:
    """Which quarter (0-3) of a run whose last logging window closes at env step ``last`` holds the window that
    closes at ``step``: the window ending exactly at a quarter's edge belongs to the quarter before it."""
    return np.clip(np.ceil(step.to_numpy() * 4 / max(last, 1)).astype(int) - 1, 0, 3)


def pull_table(study_dir: Path, plan: dict[str, Any]) -> pd.DataFrame:
    """What goes with a task's gain or loss in the joint run: per task and quarter of training (of the joint
    run's logged env steps; a window closing on an edge counts in the quarter before it), its ``share`` of the
    summed per-task gradient norms on the shared parameters (each logging window's share, averaged over windows
    and seeds), its TD ``loss``, and its training return in the joint run and alone (``return_joint``,
    ``return_alone``: the all-apart partition's cell, binned by the same edges; NaN where that cell is absent),
    and ``last_step``, the joint run's last logged env step (the quarters are of it).
    Empty without the joint run's gradient table (no shared parameter, or a run from before it)."""
    joint = Path(study_dir) / plan["joint"]
    grads, metrics = joint / "grad_tasks.parquet", joint / "metrics.parquet"
    if not (grads.is_file() and metrics.is_file()):
        return pd.DataFrame(columns=["task", "quarter", "share", "loss", "return_joint", "return_alone", "last_step"])
    g, m = read_parquet(grads), read_parquet(metrics)
    last = int(m["step"].max())
    g["share"] = g["grad_norm"] / g.groupby(["step", "seed"])["grad_norm"].transform("sum")
    g["quarter"] = _quarter(g["step"], last)
    out = g.groupby(["task", "quarter"])[["share", "loss"]].mean()
    m["quarter"] = _quarter(m["step"], last)
    out["return_joint"] = m.groupby(["task", "quarter"])["episode_return"].mean()
    alone = []
    for group in plan["partitions"].get("apart", {}).get("groups", []):
        f = Path(study_dir) / group["cell"] / "metrics.parquet"
        if f.is_file():
            a = read_parquet(f)
            a["quarter"] = _quarter(a["step"], last)
            alone.append(a.groupby(["task", "quarter"])["episode_return"].mean())
    out["return_alone"] = pd.concat(alone) if alone else np.nan
    out["last_step"] = last  # the quarters' span: what the run trained (the study's steps rounded up), not asked
    return out.reset_index()
