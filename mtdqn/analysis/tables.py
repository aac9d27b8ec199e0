"""Performance tables: per-seed results, per-task summaries, curves, aggregates, cost.

Each function turns a loaded `Study` (or an earlier table) into one tidy
dataframe; the report renders them and also stores them under `report/data/`.
Rows come out in study order (variants, then tasks) so reruns are identical.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from . import aggregate, stats
from .load import Study

__all__ = [
    "cells_table",
    "smoothed_curves",
    "curves_table",
    "per_seed_table",
    "per_task_table",
    "final_difference_table",
    "normalization_table",
    "normalized_scores",
    "aggregate_tables",
    "cost_table",
]


def cells_table(study: Study) -> pd.DataFrame:
    """Status of every variant listed in study.json, failed ones with their error."""
    rows = [
        {"variant": v, "status": c.status, "n_seeds": len(c.summary.get("seeds", [])), "error": c.error or ""}
        for v, c in study.cells.items()
    ]
    return pd.DataFrame(rows, columns=["variant", "status", "n_seeds", "error"])


def smoothed_curves(study: Study, window: int) -> pd.DataFrame:
    """Per-seed learning curves smoothed with a trailing moving average of `window` logs.

    NaN windows (no episode ended) are dropped per seed before smoothing.
    Columns: variant, task, seed, step, smoothed_return.
    """
    frames = []
    for v in study.ok_variants:
        m = study.cells[v].metrics
        if m is None:
            continue
        for task in study.tasks:
            mt = m[m["task"] == task].sort_values(["seed", "step"], kind="stable")
            for seed, g in mt.groupby("seed", sort=True):
                g = g[np.isfinite(g["episode_return"].to_numpy(dtype=np.float64))]
                frames.append(pd.DataFrame({
                    "variant": v, "task": task, "seed": int(seed),
                    "step": g["step"].to_numpy(dtype=np.int64),
                    "smoothed_return": stats.moving_average(g["episode_return"].to_numpy(), window),
                }))
    cols = ["variant", "task", "seed", "step", "smoothed_return"]
    return pd.concat(frames, ignore_index=True)[cols] if frames else pd.DataFrame(columns=cols)


def curves_table(smoothed: pd.DataFrame) -> pd.DataFrame:
    """Mean and 95% t-interval over seeds of the smoothed curves at each logged step.

    `n` is the number of seeds with a value at that step.
    """
    rows = []
    for (v, task, step), g in smoothed.groupby(["variant", "task", "step"], sort=False):
        e = stats.mean_ci(g["smoothed_return"].to_numpy())
        rows.append({"variant": v, "task": task, "step": int(step), "mean": e.value, "lo": e.lo, "hi": e.hi, "n": e.n})
    df = pd.DataFrame(rows, columns=["variant", "task", "step", "mean", "lo", "hi", "n"])
    return df.sort_values(["variant", "task", "step"], kind="stable", key=_study_order(smoothed)).reset_index(drop=True)


def _study_order(df: pd.DataFrame):
    """Sort key keeping first-appearance order of string columns (= study order)."""
    def key(col: pd.Series) -> pd.Series:
        if not pd.api.types.is_numeric_dtype(col):
            order = {name: i for i, name in enumerate(pd.unique(df[col.name]))}
            return col.map(order)
        return col
    return key


def per_seed_table(study: Study, smoothed: pd.DataFrame) -> pd.DataFrame:
    """One row per (variant, task, seed): final greedy return, AUC, steps to threshold.

    AUC uses the raw (unsmoothed, NaN-dropped) curve; steps-to-threshold the
    smoothed one so a single lucky window does not count.
    """
    rows = []
    for v in study.ok_variants:
        cell = study.cells[v]
        m = cell.metrics
        for task in study.tasks:
            threshold = float(cell.summary["thresholds"][task])
            for seed, final in zip(cell.summary["seeds"], cell.summary["final_eval"][task]):
                area, reach = float("nan"), float("nan")
                if m is not None:
                    raw = m[(m["task"] == task) & (m["seed"] == seed)].sort_values("step")
                    area = stats.auc(raw["step"].to_numpy(), raw["episode_return"].to_numpy())
                    sm = smoothed[(smoothed["variant"] == v) & (smoothed["task"] == task) & (smoothed["seed"] == seed)]
                    reach = stats.steps_to_threshold(sm["step"].to_numpy(), sm["smoothed_return"].to_numpy(), threshold)
                rows.append({"variant": v, "task": task, "seed": int(seed), "final_return": float(final),
                             "auc": area, "threshold": threshold, "steps_to_threshold": reach})
    cols = ["variant", "task", "seed", "final_return", "auc", "threshold", "steps_to_threshold"]
    return pd.DataFrame(rows, columns=cols)


def _median_steps(steps: np.ndarray) -> float:
    """Median over all seeds with unreached seeds counted as never (NaN if the median is unreached)."""
    s = np.where(np.isnan(steps), np.inf, steps)
    med = float(np.median(s)) if s.size else float("nan")
    return med if np.isfinite(med) else float("nan")


def per_task_table(per_seed: pd.DataFrame) -> pd.DataFrame:
    """Per (variant, task): final return and AUC mean with 95% t-CI; steps-to-threshold median."""
    rows = []
    for (v, task), g in per_seed.groupby(["variant", "task"], sort=False):
        fin = stats.mean_ci(g["final_return"].to_numpy())
        area = stats.mean_ci(g["auc"].to_numpy())
        steps = g["steps_to_threshold"].to_numpy(dtype=np.float64)
        rows.append({
            "variant": v, "task": task, "n": int(len(g)),
            "final_mean": fin.value, "final_lo": fin.lo, "final_hi": fin.hi,
            "auc_mean": area.value, "auc_lo": area.lo, "auc_hi": area.hi, "auc_n": area.n,
            "threshold": float(g["threshold"].iloc[0]),
            "steps_median": _median_steps(steps), "reached": int(np.isfinite(steps).sum()),
        })
    return pd.DataFrame(rows)


def final_difference_table(per_seed: pd.DataFrame, reference: str) -> pd.DataFrame:
    """Per task: mean final return of each variant minus the reference, Welch 95% CI."""
    rows = []
    ref = per_seed[per_seed["variant"] == reference]
    for (v, task), g in per_seed[per_seed["variant"] != reference].groupby(["variant", "task"], sort=False):
        r = ref[ref["task"] == task]["final_return"].to_numpy()
        e = stats.diff_ci(g["final_return"].to_numpy(), r)
        rows.append({"variant": v, "reference": reference, "task": task, "diff": e.value, "lo": e.lo, "hi": e.hi,
                     "n": int(len(g)), "n_reference": int(len(r))})
    return pd.DataFrame(rows, columns=["variant", "reference", "task", "diff", "lo", "hi", "n", "n_reference"])


def normalization_table(study: Study, rel_tol: float = 1e-6) -> pd.DataFrame:
    """Per task: random and reference returns, the denominator, and whether the task is used.

    A task is skipped in aggregates when reference - random is ~0 (within
    `rel_tol` of the returns' scale) or negative: the score would explode or flip.
    """
    ref = study.cells[study.reference]
    rows = []
    for task in study.tasks:
        if not ref.ok:
            rows.append({"task": task, "random_return": np.nan, "reference_mean": np.nan, "n_reference": 0,
                         "denominator": np.nan, "used": False,
                         "note": f"reference `{study.reference}` is {ref.status}; no normalization"})
            continue
        rnd = float(ref.summary["random_return"][task])
        ref_mean = float(np.mean(ref.summary["final_eval"][task]))
        denom = ref_mean - rnd
        tol = rel_tol * max(1.0, abs(ref_mean), abs(rnd))
        note = ""
        if not np.isfinite(denom) or abs(denom) <= tol:
            note = "reference - random is ~0; skipped in aggregates"
        elif denom < 0:
            note = "reference is below random; skipped in aggregates"
        rows.append({"task": task, "random_return": rnd, "reference_mean": ref_mean,
                     "n_reference": len(ref.summary["final_eval"][task]), "denominator": denom,
                     "used": note == "", "note": note})
    return pd.DataFrame(rows)


def normalized_scores(study: Study, norm: pd.DataFrame) -> dict[str, np.ndarray]:
    """{variant: (seeds, used tasks) normalized final returns} for ok variants."""
    used = norm[norm["used"]]
    out = {}
    for v in study.ok_variants:
        fe = study.cells[v].summary["final_eval"]
        cols = [stats.normalize(np.asarray(fe[r.task], dtype=np.float64), r.random_return, r.reference_mean)
                for r in used.itertuples()]
        out[v] = np.stack(cols, axis=1) if cols else np.zeros((len(study.cells[v].summary["seeds"]), 0))
    return out


def aggregate_tables(
    scores: dict[str, np.ndarray], reference: str, reps: int, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(IQM/mean per variant, improvement over reference) via rliable; empty if no task is usable."""
    agg_rows, imp_rows = [], []
    for v, s in scores.items():
        if s.shape[1] == 0:
            continue
        for metric, e in aggregate.aggregate_intervals(s, reps, seed).items():
            agg_rows.append({"variant": v, "metric": metric, "value": e.value, "lo": e.lo, "hi": e.hi,
                             "n_seeds": e.n, "n_tasks": int(s.shape[1])})
        if v == reference or reference not in scores:
            continue
        ref = scores[reference]
        poi = aggregate.probability_of_improvement(s, ref, reps, seed)
        diff = aggregate.iqm_difference(s, ref, reps, seed)
        imp_rows.append({"variant": v, "reference": reference, "poi": poi.value, "poi_lo": poi.lo, "poi_hi": poi.hi,
                         "iqm_diff": diff.value, "iqm_diff_lo": diff.lo, "iqm_diff_hi": diff.hi,
                         "n": int(len(s)), "n_reference": int(len(ref)), "n_tasks": int(s.shape[1])})
    agg = pd.DataFrame(agg_rows, columns=["variant", "metric", "value", "lo", "hi", "n_seeds", "n_tasks"])
    imp = pd.DataFrame(imp_rows, columns=["variant", "reference", "poi", "poi_lo", "poi_hi", "iqm_diff",
                                          "iqm_diff_lo", "iqm_diff_hi", "n", "n_reference", "n_tasks"])
    return agg, imp


def cost_table(study: Study) -> pd.DataFrame:
    """Parameters and throughput of each ok cell (one vmapped run of all its seeds)."""
    keys = ["params_total", "params_shared", "wall_time_s", "compile_s", "env_steps_per_s"]
    rows = [{"variant": v, "n_seeds": len(study.cells[v].summary["seeds"]),
             **{k: study.cells[v].summary[k] for k in keys}} for v in study.ok_variants]
    return pd.DataFrame(rows, columns=["variant", "n_seeds", *keys])
