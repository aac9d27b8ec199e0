"""Performance tables: per-seed results, per-task summaries, curves, aggregates, cost.

Each function turns a loaded `Study` (or an earlier table) into one tidy
dataframe; the report renders them and also stores them under `report/data/`.
Rows come out in study order (variants, then tasks) so reruns are identical.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from . import aggregate, anchors, fmt, ranges, stats
from .load import Study
from .scores import discounted_scores, final_scores, task_gamma

__all__ = [
    "cells_table",
    "curve_source",
    "eval_curves",
    "smoothed_curves",
    "curves_table",
    "per_seed_table",
    "per_task_table",
    "difference_table",
    "correct_for_multiplicity",
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


def curve_source(study: Study) -> str:
    """"evaluation" when every ok variant stored greedy evaluations during training, else "training".

    One source for all variants, so AUC and steps-to-threshold compare like with like;
    runs made before periodic evaluation existed (or with only the final evaluation)
    fall back to epsilon-greedy training returns.
    """
    cells = [study.cells[v] for v in study.ok_variants]
    # a curve needs two points: a run with only the end-of-training evaluation has no greedy curve
    has = [c.evals is not None and c.evals["step"].nunique() >= 2 for c in cells]
    return "evaluation" if cells and all(has) else "training"


def eval_curves(study: Study) -> pd.DataFrame:
    """Per-seed greedy-evaluation curves: variant, task, seed, step, value (mean return of K greedy episodes)."""
    frames = []
    for v in study.ok_variants:
        ev = study.cells[v].evals
        if ev is None or not len(ev):
            continue
        for task in study.tasks:
            g = ev[ev["task"] == task].sort_values(["seed", "step"], kind="stable")
            frames.append(pd.DataFrame({"variant": v, "task": task, "seed": g["seed"].to_numpy(dtype=np.int64),
                                        "step": g["step"].to_numpy(dtype=np.int64),
                                        "value": g["return_mean"].to_numpy(dtype=np.float64)}))
    cols = ["variant", "task", "seed", "step", "value"]
    return pd.concat(frames, ignore_index=True)[cols] if frames else pd.DataFrame(columns=cols)


def smoothed_curves(study: Study, window: int) -> pd.DataFrame:
    """Per-seed training-return curves smoothed with a trailing moving average of `window` logs.

    NaN windows (no episode ended) are dropped per seed before smoothing.
    Columns: variant, task, seed, step, value.
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
                    "value": stats.moving_average(g["episode_return"].to_numpy(), window),
                }))
    cols = ["variant", "task", "seed", "step", "value"]
    return pd.concat(frames, ignore_index=True)[cols] if frames else pd.DataFrame(columns=cols)


def curves_table(per_seed_curves: pd.DataFrame, reps: int, seed: int) -> pd.DataFrame:
    """Mean over seeds at each step with a Student-t band clipped to the task's return range.

    `n` is the number of seeds with a value at that step; below `stats.MIN_SEEDS`
    the band is NaN (the figure then shows the seeds' own lines only).
    """
    rows = []
    for (v, task, step), g in per_seed_curves.groupby(["variant", "task", "step"], sort=False):
        e = stats.t_mean(g["value"].to_numpy(), ranges.return_bounds(task))
        rows.append({"variant": v, "task": task, "step": int(step), "mean": e.value, "lo": e.lo, "hi": e.hi, "n": e.n})
    df = pd.DataFrame(rows, columns=["variant", "task", "step", "mean", "lo", "hi", "n"])
    if not len(df):
        return df
    return df.sort_values(["variant", "task", "step"], kind="stable",
                          key=_study_order(per_seed_curves)).reset_index(drop=True)


def _study_order(df: pd.DataFrame):
    """Sort key keeping first-appearance order of string columns (= study order)."""
    def key(col: pd.Series) -> pd.Series:
        if not pd.api.types.is_numeric_dtype(col):
            order = {name: i for i, name in enumerate(pd.unique(df[col.name]))}
            return col.map(order)
        return col
    return key


def trailing_mean(curves: pd.DataFrame, k: int) -> pd.DataFrame:
    """Per-seed curves with each value replaced by the mean of its last ``k`` points (fewer at the start):
    steps to threshold then need a sustained level, not one lucky evaluation of K episodes."""
    if not len(curves) or k <= 1:
        return curves
    out = curves.copy()
    out["value"] = (out.groupby(["variant", "task", "seed"], sort=False)["value"]
                    .transform(lambda v: v.rolling(k, min_periods=1).mean()))
    return out


def per_seed_table(study: Study, curves: pd.DataFrame, reach_curves: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per (variant, task, seed): final score (undiscounted, and discounted with the task's `gamma`: NaN
    when not recorded), AUC and steps to threshold of `curves`.

    `curves` are the per-seed curves of `curve_source` (greedy evaluation, or
    smoothed training return). AUC: normalized trapezoid, i.e. the mean return
    over training. Steps to threshold: the first logged step whose value in
    `reach_curves` (default `curves`; smoothed ones) reaches the threshold (NaN: never).
    """
    reach_curves = curves if reach_curves is None else reach_curves
    rows = []
    for v in study.ok_variants:
        cell = study.cells[v]
        for task in study.tasks:
            threshold = float(cell.summary["thresholds"][task])
            finals = final_scores(study, v, task)
            discounted = discounted_scores(study, v, task)
            gamma = task_gamma(study, v, task)
            for seed, final, disc in zip(cell.summary["seeds"], finals, discounted):
                c = curves[(curves["variant"] == v) & (curves["task"] == task) & (curves["seed"] == seed)]
                steps, values = c["step"].to_numpy(), c["value"].to_numpy()
                area = stats.auc(steps, values) if len(c) else float("nan")
                r = reach_curves[(reach_curves["variant"] == v) & (reach_curves["task"] == task)
                                 & (reach_curves["seed"] == seed)]
                reach = (stats.steps_to_threshold(r["step"].to_numpy(), r["value"].to_numpy(), threshold)
                         if len(r) else float("nan"))
                rows.append({"variant": v, "task": task, "seed": int(seed), "final_return": float(final),
                             "gamma": gamma, "final_discounted": disc,
                             "auc": area, "threshold": threshold, "steps_to_threshold": reach})
    cols = ["variant", "task", "seed", "final_return", "gamma", "final_discounted", "auc", "threshold",
            "steps_to_threshold"]
    return pd.DataFrame(rows, columns=cols)


def _median_steps(steps: np.ndarray) -> float:
    """Median over all seeds with unreached seeds counted as never (NaN if the median is unreached)."""
    s = np.where(np.isnan(steps), np.inf, steps)
    med = float(np.median(s)) if s.size else float("nan")
    return med if np.isfinite(med) else float("nan")


def per_task_table(per_seed: pd.DataFrame, reps: int, seed: int) -> pd.DataFrame:
    """Per (variant, task): final return, discounted final return and AUC, mean with a t-interval in the
    metric's range (the discounted one: the task's range at its `gamma`; none below `stats.MIN_SEEDS` seeds:
    see per_seed); steps-to-threshold median."""
    rows = []
    for (v, task), g in per_seed.groupby(["variant", "task"], sort=False):
        bounds = ranges.return_bounds(task)
        gamma = float(g["gamma"].iloc[0])
        fin = stats.t_mean(g["final_return"].to_numpy(), bounds)
        disc = stats.t_mean(g["final_discounted"].to_numpy(), ranges.discounted_bounds(task, gamma))
        area = stats.t_mean(g["auc"].to_numpy(), bounds)
        steps = g["steps_to_threshold"].to_numpy(dtype=np.float64)
        rows.append({
            "variant": v, "task": task, "n": int(len(g)),
            "final_mean": fin.value, "final_lo": fin.lo, "final_hi": fin.hi,
            "gamma": gamma, "disc_mean": disc.value, "disc_lo": disc.lo, "disc_hi": disc.hi,
            "auc_mean": area.value, "auc_lo": area.lo, "auc_hi": area.hi, "auc_n": area.n,
            "threshold": float(g["threshold"].iloc[0]),
            "steps_median": _median_steps(steps), "reached": int(np.isfinite(steps).sum()),
        })
    return pd.DataFrame(rows)


# metric column of per_seed -> (what it is, for the findings)
METRICS = {
    "final_return": "Final return",
    "final_discounted": "Final discounted return",
    "auc": "Area under the learning curve (mean return over training)",
    "steps_to_threshold": "Env steps to threshold",
}
DIFF_COLUMNS = ["variant", "reference", "task", "metric", "gamma", "diff", "lo", "hi", "p", "p_holm", "effect",
                "estimable", "mde", "max_diff", "n", "n_reference", "values", "values_reference"]


def _metric_values(g: pd.DataFrame, metric: str, budget: int) -> np.ndarray:
    """A metric's per-seed values; an unreached threshold counts as the whole budget (a lower bound)."""
    x = g[metric].to_numpy(dtype=np.float64)
    return np.where(np.isnan(x), float(budget), x) if metric == "steps_to_threshold" else x


def _metric_bounds(metric: str, task: str, gamma: float, budget: int) -> ranges.Bounds:
    if metric == "steps_to_threshold":
        return (0.0, float(budget))
    return ranges.discounted_bounds(task, gamma) if metric == "final_discounted" else ranges.return_bounds(task)


def _comparable(metric: str, g: pd.DataFrame, r: pd.DataFrame) -> bool:
    """A discounted return is compared only when both sides stored it with the same (recorded) gamma."""
    if metric != "final_discounted":
        return True
    gammas = {float(x) for x in pd.concat([g["gamma"], r["gamma"]])}
    return (len(gammas) == 1 and all(np.isfinite(x) for x in gammas)
            and bool(np.isfinite(g[metric]).any() and np.isfinite(r[metric]).any()))


def difference_table(per_seed: pd.DataFrame, reference: str, budget: int, reps: int, seed: int,
                     metrics: tuple[str, ...] = tuple(METRICS)) -> pd.DataFrame:
    """Per variant, task and metric (in `metrics` order): mean difference to the reference, Welch CI and
    p-value (`p_holm` is filled by :func:`correct_for_multiplicity`), Hedges' g, smallest detectable one.

    `estimable` is False where every seed of both sides has one value (no variation: no interval, no test).
    Intervals lie within the metric's range (returns: the task's bounds, the discounted
    one's at the task's `gamma`; steps: [0, budget]) and are NaN below `stats.MIN_SEEDS`
    seeds; a discounted return is left out where it was not recorded or the two sides
    discount the task differently (see `discount_notes`); `mde` is
    `stats.min_detectable_difference` (power 0.8, alpha 0.05), `max_diff` the largest
    difference the metric's range allows (an `mde` above it: nothing is detectable). `values` /
    `values_reference` hold the per-seed values as text, for small n.
    """
    rows = []
    ref = per_seed[per_seed["variant"] == reference]
    for (v, task), g in per_seed[per_seed["variant"] != reference].groupby(["variant", "task"], sort=False):
        r = ref[ref["task"] == task]
        for metric in metrics:
            if not _comparable(metric, g, r):
                continue
            gamma = float(r["gamma"].iloc[0]) if metric == "final_discounted" else float("nan")
            bounds = _metric_bounds(metric, task, gamma, budget)
            x, y = _metric_values(g, metric, budget), _metric_values(r, metric, budget)
            e = stats.welch_diff(x, y, bounds)
            censored = budget if metric == "steps_to_threshold" else None
            rows.append({"variant": v, "reference": reference, "task": task, "metric": metric, "gamma": gamma,
                         "diff": e.value, "lo": e.lo, "hi": e.hi, "p": stats.welch_p(x, y), "p_holm": np.nan,
                         "effect": stats.hedges_g(x, y), "estimable": not stats.no_variation(x, y),
                         "mde": stats.min_detectable_difference(x, y),
                         "max_diff": ranges.difference_bounds(bounds)[1],
                         "n": int(len(x)), "n_reference": int(len(y)),
                         "values": fmt.values(g[metric].to_numpy(dtype=np.float64), censored=censored),
                         "values_reference": fmt.values(r[metric].to_numpy(dtype=np.float64), censored=censored)})
    return pd.DataFrame(rows, columns=DIFF_COLUMNS)


def correct_for_multiplicity(differences: pd.DataFrame, improvement: pd.DataFrame
                             ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Holm-Bonferroni over every test the report makes: per task and metric (Welch) and the aggregate IQM
    and mean differences (permutation), adding `p_holm` / `iqm_p_holm` / `mean_p_holm`.

    One family for the whole report, so the family-wise error rate is 5% however many variants, tasks and
    metrics a study has; untested comparisons (too few seeds, no variation) are not in it.
    """
    diff, imp = differences.copy(), improvement.copy()
    pvalues = np.concatenate([diff["p"].to_numpy(dtype=np.float64), imp["iqm_p"].to_numpy(dtype=np.float64),
                              imp["mean_p"].to_numpy(dtype=np.float64)])
    adjusted = stats.holm(pvalues)
    n, k = len(diff), len(imp)
    diff["p_holm"] = adjusted[:n]
    imp["iqm_p_holm"], imp["mean_p_holm"] = adjusted[n:n + k], adjusted[n + k:]
    return diff, imp


def normalization_table(study: Study) -> pd.DataFrame:
    """Per task: the fixed anchors (`anchors.ANCHORS`), the study's own random return, and whether the task is used.

    The anchors never come from the study's seeds, so one variant's results
    cannot move another's normalized score. A task without anchors, or whose
    anchors are too close (`anchors.usable`), is left out of aggregates.
    """
    rows = []
    for task in study.tasks:
        a = anchors.lookup(task)
        measured = [float(study.cells[v].summary["random_return"][task]) for v in study.ok_variants]
        study_random = float(np.mean(measured)) if measured else float("nan")
        note = anchors.usable(task, a)
        rows.append({"task": task, "random_return": a.random if a else np.nan,
                     "reference_return": a.reference if a else np.nan,
                     "denominator": (a.reference - a.random) if a else np.nan,
                     "study_random_return": study_random, "source": a.source if a else "",
                     "used": note == "", "note": note})
    cols = ["task", "random_return", "reference_return", "denominator", "study_random_return", "source", "used",
            "note"]
    return pd.DataFrame(rows, columns=cols)


def normalized_scores(study: Study, norm: pd.DataFrame) -> dict[str, np.ndarray]:
    """{variant: (seeds, used tasks) normalized final scores} for ok variants."""
    used = norm[norm["used"]]
    out = {}
    for v in study.ok_variants:
        cols = [stats.normalize(np.asarray(final_scores(study, v, r.task), dtype=np.float64),
                                r.random_return, r.reference_return) for r in used.itertuples()]
        out[v] = np.stack(cols, axis=1) if cols else np.zeros((len(study.cells[v].summary["seeds"]), 0))
    return out


def aggregate_tables(
    scores: dict[str, np.ndarray], reference: str, reps: int, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(IQM/mean per variant, improvement over reference) via rliable; empty if no task is usable.

    Below `stats.MIN_SEEDS` seeds the point estimates stay and the intervals are NaN.
    """
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
                         "iqm_diff": diff["IQM"].value, "iqm_diff_lo": diff["IQM"].lo, "iqm_diff_hi": diff["IQM"].hi,
                         "mean_diff": diff["mean"].value, "mean_diff_lo": diff["mean"].lo,
                         "mean_diff_hi": diff["mean"].hi,
                         "iqm_p": aggregate.permutation_p(s, ref, "IQM", seed=seed),
                         "mean_p": aggregate.permutation_p(s, ref, "mean", seed=seed),
                         "poi_ties": aggregate.poi_ties(s, ref),
                         "n": int(len(s)), "n_reference": int(len(ref)), "n_tasks": int(s.shape[1])})
    agg = pd.DataFrame(agg_rows, columns=["variant", "metric", "value", "lo", "hi", "n_seeds", "n_tasks"])
    imp = pd.DataFrame(imp_rows, columns=["variant", "reference", "poi", "poi_lo", "poi_hi", "iqm_diff",
                                          "iqm_diff_lo", "iqm_diff_hi", "mean_diff", "mean_diff_lo", "mean_diff_hi",
                                          "iqm_p", "mean_p", "poi_ties", "n", "n_reference", "n_tasks"])
    return agg, imp


def cost_table(study: Study) -> pd.DataFrame:
    """Parameters and throughput of each ok cell (one vmapped run of all its seeds)."""
    keys = ["params_total", "params_shared", "wall_time_s", "compile_s", "env_steps_per_s"]
    rows = [{"variant": v, "n_seeds": len(study.cells[v].summary["seeds"]),
             **{k: study.cells[v].summary[k] for k in keys}} for v in study.ok_variants]
    return pd.DataFrame(rows, columns=["variant", "n_seeds", *keys])
