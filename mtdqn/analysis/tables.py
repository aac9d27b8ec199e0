"""Performance tables: per-seed results, per-task summaries, curves, aggregates, cost.

Each function turns a loaded `Study` (or an earlier table) into one tidy
dataframe; the report renders them and also stores them under `report/data/`.
Rows come out in study order (variants, then tasks) so reruns are identical.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from mtdqn.errors import count

from . import aggregate, anchors, fmt, permutation, ranges, stats
from .curves import auc, moving_average, steps_to_threshold
from .load import Cell, Study
from .scores import discounted_scores, final_scores, task_gamma

__all__ = [
    "cells_table",
    "untested_reason",
    "curve_source", "has_eval_curve", "near_random",
    "eval_curves",
    "smoothed_curves",
    "curves_table",
    "per_seed_table",
    "per_task_table",
    "difference_table",
    "NEAR_RANDOM",
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


def has_eval_curve(cell: Cell) -> bool:
    """Whether the cell stored a greedy-evaluation curve: two evaluations or more (a run with only the
    end-of-training evaluation has none)."""
    return cell.evals is not None and cell.evals["step"].nunique() >= 2


def curve_source(study: Study) -> str:
    """"evaluation" when every ok variant stored greedy evaluations during training, else "training".

    One source for all variants, so AUC and steps-to-threshold compare like with like;
    runs made before periodic evaluation existed (or with only the final evaluation)
    fall back to epsilon-greedy training returns.
    """
    cells = [study.cells[v] for v in study.ok_variants]
    return "evaluation" if cells and all(has_eval_curve(c) for c in cells) else "training"


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
                    "value": moving_average(g["episode_return"].to_numpy(), window),
                }))
    cols = ["variant", "task", "seed", "step", "value"]
    return pd.concat(frames, ignore_index=True)[cols] if frames else pd.DataFrame(columns=cols)


MAX_WINDOW_SHARE = 0.2
"""The training-return moving average spans at most this share of a run's logging windows (at least one)."""


def capped_window(study: Study, window: int) -> int:
    """`window` logging windows, capped at MAX_WINDOW_SHARE of the longest run's windows (at least 1): over 6
    windows a window of 5 would be nearly a cumulative mean."""
    counts = [int(m.groupby(["task", "seed"]).size().max()) for v in study.ok_variants
              if (m := study.cells[v].metrics) is not None and len(m)]
    if not counts:
        return window
    return max(1, min(window, int(MAX_WINDOW_SHARE * max(counts))))


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
    """Per-seed curves with each value replaced by the mean of its last ``k`` points, NaN before the ``k``-th
    (a curve of fewer than ``k``: of all its points, from its last on): steps to threshold then need a
    sustained level, not one lucky evaluation of K episodes (a window of fewer at the start let a seed's first
    evaluation alone, 157.8 then ~9, count as reaching 100)."""
    if not len(curves) or k <= 1:
        return curves
    out = curves.copy()
    out["value"] = (out.groupby(["variant", "task", "seed"], sort=False)["value"]
                    .transform(lambda v: v.rolling(k, min_periods=min(k, len(v))).mean()))
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
                area = auc(steps, values) if len(c) else float("nan")
                r = reach_curves[(reach_curves["variant"] == v) & (reach_curves["task"] == task)
                                 & (reach_curves["seed"] == seed)]
                reach = (steps_to_threshold(r["step"].to_numpy(), r["value"].to_numpy(), threshold)
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


def _median_lower_bound(steps: np.ndarray, budget: float) -> float:
    """Where the median is unreached (:func:`_median_steps` NaN): the most it is known to exceed, the median with
    unreached seeds counted as the budget (the budget itself once more than half never reached it)."""
    return float(np.median(np.where(np.isnan(steps), budget, steps))) if steps.size else float("nan")


def per_task_table(per_seed: pd.DataFrame, reps: int, seed: int, budget: float = float("nan")) -> pd.DataFrame:
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
            "variant": v, "task": task, "n": int(len(g)), "final_n": fin.n,  # seeds with a final score (NaN: none)
            "final_mean": fin.value, "final_lo": fin.lo, "final_hi": fin.hi,
            "gamma": gamma, "disc_mean": disc.value, "disc_lo": disc.lo, "disc_hi": disc.hi,
            "auc_mean": area.value, "auc_lo": area.lo, "auc_hi": area.hi, "auc_n": area.n,
            "threshold": float(g["threshold"].iloc[0]),
            "steps_median": _median_steps(steps), "reached": int(np.isfinite(steps).sum()),
            "steps_median_above": _median_lower_bound(steps, budget),
        })
    return pd.DataFrame(rows)


# metric column of per_seed -> (what it is, for the findings)
METRICS = {
    "final_return": "Final return",
    "final_discounted": "Final discounted return",
    "auc": "Area under the learning curve (mean return over training)",
    "steps_to_threshold": "Env steps to threshold",
}
DIFF_COLUMNS = ["variant", "reference", "task", "metric", "gamma", "diff", "lo", "hi", "p", "p_min", "p_holm",
                "effect", "effect_lo", "effect_hi", "unordered", "estimable", "untested", "deviating", "test", "se",
                "dof", "p_perm", "p_perm_min", "p_holm_perm", "mde", "mde_alpha", "max_diff",
                "n", "n_reference", "reached", "reached_reference", "values", "values_reference", "near_random",
                "reference_mean"]
NEAR_RANDOM = 0.05
"""A task neither side learned: both mean final returns less than this share of the way from the task's random
anchor to its reference anchor (:mod:`mtdqn.analysis.anchors`; tasks without anchors, MinAtar's, are never
flagged).  Its final-return comparisons stay tested (dropping a test for its outcome would bias the family),
and their findings say that they are not about learning."""
UNTESTED = {
    "no_variation": "not estimable (no variation: every seed gave the same value)",
    "one_seed": "resting on a single seed (every other seed of both sides gave one value: Welch's t is then "
                "1 whatever the deviation, p 0.363 at 6 vs 6 seeds)",
    "uninformative": "not informative at this budget (steps to threshold: no seed of either side reached the "
                     "threshold)",
    "few_seeds": f"with fewer than {stats.MIN_SEEDS} seeds on a side (their seeds are quoted)",
    "unattainable": "that could not reach significance whatever the data (a discrete test whose smallest possible "
                    "p is above alpha / K, Tarone's level: left out, so they do not tighten the others' correction)",
}
"""Why a comparison is left out of the tests (``untested``), as the findings and tables word it."""


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


def untested_reason(x: np.ndarray, y: np.ndarray) -> str:
    """Why two groups of per-seed values get no Welch test or interval (a key of :data:`UNTESTED`), '' where
    they get one: no variation, fewer than MIN_SEEDS seeds on a side, or resting on one seed
    (:func:`stats.deviating_seeds`).  The difference table and the final-score window table both follow it."""
    if stats.no_variation(x, y):
        return "no_variation"
    if min(stats.finite_values(x).size, stats.finite_values(y).size) < stats.MIN_SEEDS:  # NaN: no value
        return "few_seeds"
    return "one_seed" if stats.deviating_seeds(x, y) == 1 else ""


def _welch_row(x: np.ndarray, y: np.ndarray, bounds: ranges.Bounds) -> dict:
    """Welch difference, test, Hedges' g and spread of two groups of per-seed values; a comparison resting on
    one seed (:func:`stats.deviating_seeds`) keeps only its point difference."""
    e = stats.welch_diff(x, y, bounds)
    deviating = stats.deviating_seeds(x, y)
    untested = untested_reason(x, y)
    if untested:
        return {"diff": e.value, "lo": np.nan, "hi": np.nan, "p": np.nan, "p_min": np.nan, "effect": np.nan,
                "untested": untested, "deviating": deviating, "test": "", "se": np.nan, "dof": np.nan,
                "p_perm": np.nan, "p_perm_min": np.nan}
    # the interval's and the test's: the detectable difference uses them too
    se, dof = stats.welch_se_dof(stats.finite_values(x), stats.finite_values(y))
    return {"diff": e.value, "lo": e.lo, "hi": e.hi, "p": stats.welch_p(x, y), "p_min": 0.0,  # continuous: any p
            "effect": stats.hedges_g(x, y), "untested": "", "deviating": deviating, "test": "welch", "se": se,
            "dof": dof, **_permutation_columns(x, y)}


def _permutation_columns(x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """A Welch row's check by permutation (:func:`permutation_check`): the aggregates' permutation test of the
    mean over runs (:func:`aggregate.permutation_test`, one task), its p and smallest attainable p; NaN runs left
    out, as Welch's are.  Two-sided as the share of splits whose |mean gap| reaches the observed one (scipy's
    ``permutation_test`` with that statistic and ``alternative="greater"``, not its doubled smaller tail)."""
    test = aggregate.permutation_test(stats.finite_values(x)[:, None], stats.finite_values(y)[:, None], "mean")
    return {"p_perm": test.p, "p_perm_min": test.smallest}


def _censored_row(x: np.ndarray, y: np.ndarray, budget: int, reps: int, seed: int) -> dict:
    """Steps to threshold as censored times (NaN: not reached within `budget`): the difference of restricted
    means (unreached counted as the budget), Gehan's permutation test and, as its effect, Gehan's concordance
    with its bootstrap interval and tied/unordered share (no Welch interval or Hedges' g)."""
    rx, ry = np.where(np.isnan(x), float(budget), x), np.where(np.isnan(y), float(budget), y)
    untested = ("uninformative" if not (np.isfinite(x).any() or np.isfinite(y).any())
                else "few_seeds" if min(len(x), len(y)) < stats.MIN_SEEDS else "")
    test = permutation.NO_TEST if untested else permutation.gehan_permutation_test(x, y, budget)
    c = permutation.Concordance(np.nan, np.nan, np.nan, np.nan) if untested else \
        permutation.gehan_concordance_ci(x, y, budget, reps, seed)
    return {"diff": float(rx.mean() - ry.mean()), "lo": np.nan, "hi": np.nan, "p": test.p, "p_min": test.smallest,
            "effect": c.c, "effect_lo": c.lo, "effect_hi": c.hi, "unordered": c.unordered,
            "untested": untested, "deviating": stats.deviating_seeds(rx, ry), "test": "" if untested else "gehan",
            "se": np.nan, "dof": np.nan, "p_perm": np.nan, "p_perm_min": np.nan}


def difference_table(per_seed: pd.DataFrame, reference: str, budget: int, reps: int, seed: int,
                     metrics: tuple[str, ...] = tuple(METRICS)) -> pd.DataFrame:
    """Per variant, task and metric (in `metrics` order): mean difference to the reference, its interval,
    test and p-value (`p_holm` and `mde` are filled by :func:`correct_for_multiplicity`), Hedges' g.

    Returns and AUC: Welch's interval and test. Steps to threshold are right-censored times (a seed that
    never reached the threshold is censored at the budget, one that reached it at the last evaluation is
    not): the difference of restricted means (unreached counted as the budget) with Gehan's generalized
    Wilcoxon test by permutation (`test` "gehan"), no interval; `reached` / `reached_reference` count the
    seeds that reached it. `untested` says why a comparison has no test (:data:`UNTESTED`): every seed of
    both sides one value (`estimable` False), a comparison resting on one seed (`deviating`, the seeds off
    the common value, is 1), no seed of either side reaching the threshold, or too few seeds.
    Intervals lie within the metric's range (returns: the task's bounds, the discounted
    one's at the task's `gamma`); a discounted return is left out where it was not recorded or the two
    sides discount the task differently (see `discount_notes`); `se` / `dof` size the detectable
    difference, `max_diff` is the largest difference the metric's range allows. `values` /
    `values_reference` hold the per-seed values as text, for small n.
    """
    rows = []
    ref = per_seed[per_seed["variant"] == reference]
    for (v, task), g in per_seed[per_seed["variant"] != reference].groupby(["variant", "task"], sort=False):
        r = ref[ref["task"] == task]
        learned_neither = _near_random(task, g["final_return"], r["final_return"])
        for metric in metrics:
            if not _comparable(metric, g, r):
                continue
            gamma = float(r["gamma"].iloc[0]) if metric == "final_discounted" else float("nan")
            bounds = _metric_bounds(metric, task, gamma, budget)
            raw_x, raw_y = g[metric].to_numpy(dtype=np.float64), r[metric].to_numpy(dtype=np.float64)
            censored = metric == "steps_to_threshold"
            x, y = _metric_values(g, metric, budget), _metric_values(r, metric, budget)
            row = _censored_row(raw_x, raw_y, budget, reps, seed) if censored else _welch_row(x, y, bounds)
            row["estimable"] = not stats.no_variation(x, y)
            rows.append({"variant": v, "reference": reference, "task": task, "metric": metric, "gamma": gamma,
                         **row, "p_holm": np.nan, "mde": np.nan, "mde_alpha": np.nan,
                         "max_diff": ranges.difference_bounds(bounds)[1],
                         # seeds with a value (a final score is NaN where an evaluation episode never ended)
                         "n": int(np.isfinite(x).sum()), "n_reference": int(np.isfinite(y).sum()),
                         "reached": int(np.isfinite(raw_x).sum()) if censored else -1,
                         "reached_reference": int(np.isfinite(raw_y).sum()) if censored else -1,
                         **dict(zip(("values", "values_reference"),
                                    fmt.value_lists(raw_x, raw_y, censored=budget if censored else None))),
                         # the final returns' rows only: AUC and steps to threshold see learning that collapsed
                         "near_random": learned_neither and metric in ("final_return", "final_discounted"),
                         "reference_mean": float(np.mean(stats.finite_values(y))) if np.isfinite(y).any()
                         else np.nan})
    return pd.DataFrame(rows, columns=DIFF_COLUMNS)


def _near_random(task: str, final: pd.Series, final_reference: pd.Series) -> bool:
    """Whether neither side learned ``task`` (:func:`near_random` of their means over seeds)."""
    means = [x.to_numpy(dtype=np.float64) for x in (final, final_reference)]
    return near_random(task, [v[~np.isnan(v)].mean() if (~np.isnan(v)).any() else np.nan for v in means])


def near_random(task: str, means: Sequence[float]) -> bool:
    """Whether every one of ``means`` (a side's mean final return) is less than :data:`NEAR_RANDOM` of the way from
    the task's random anchor to its reference: nothing there learned it.  False for a task without usable anchors
    and where a mean is missing (NaN: no seed, unwarned).  The report's comparisons and groups.md say it."""
    a = anchors.lookup(task)
    if a is None or anchors.usable(task, a) or not len(means):
        return False
    level = (np.asarray(means, dtype=np.float64) - a.random) / (a.reference - a.random)
    return bool(np.isfinite(level).all() and level.max() < NEAR_RANDOM)


def in_family(table: pd.DataFrame, p: str) -> np.ndarray:
    """Which of ``table``'s tests (p column ``p``: ``p``, ``iqm_p``, ``mean_p``) are in the report's Holm family:
    its ``in_family`` column (``iqm_in_family``, ...), set by :func:`correct_for_multiplicity`; tables from before
    it, which set a left-out test's p to NaN: those with a p."""
    column = f"{p[:-1]}in_family"
    if column in table:
        return table[column].to_numpy(dtype=bool)
    return np.isfinite(table[p].to_numpy(dtype=np.float64))


def family_size(differences: pd.DataFrame, improvement: pd.DataFrame) -> int:
    """Tests in the report's Holm family: per task and metric, and the aggregate IQM and mean."""
    return int(in_family(differences, "p").sum() + in_family(improvement, "iqm_p").sum()
               + in_family(improvement, "mean_p").sum())


def holm_first_alpha(differences: pd.DataFrame, improvement: pd.DataFrame, alpha: float) -> float:
    """alpha / m, m the number of tests in the report's Holm family: the level the smallest p must pass."""
    m = family_size(differences, improvement)
    return alpha / m if m else alpha


def correct_for_multiplicity(differences: pd.DataFrame, improvement: pd.DataFrame, alpha: float = 0.05
                             ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Holm-Bonferroni over every test the report makes: per task and metric (Welch; Gehan for steps to
    threshold) and the aggregate IQM and mean differences (permutation), adding `p_holm` / `iqm_p_holm` /
    `mean_p_holm`; and each Welch row's detectable difference `mde` at `mde_alpha`, the level a finding's
    p must pass at Holm's first and strictest step, alpha / m (later steps are more lenient: an upper bound).

    One family for the whole report, so the family-wise error rate is `alpha` however many variants, tasks and
    metrics a study has; untested comparisons (too few seeds, no variation, resting on one seed, no seed
    reaching the threshold) are not in it, nor, by Tarone's rule (:func:`permutation.tarone_testable`), discrete
    tests whose smallest attainable p cannot pass the family's level: a Gehan row is then `untested`
    "unattainable".  Membership is the columns `in_family` / `iqm_in_family` / `mean_in_family` (:func:`in_family`);
    a left-out test keeps its p (uncorrected, it can still be below alpha: suggestive) and its smallest attainable
    p (`*_p_min`), and has no Holm p.
    """
    diff, imp = differences.copy(), improvement.copy()
    p_min = np.concatenate([_p_min(diff, "p"), _p_min(imp, "iqm_p"), _p_min(imp, "mean_p")])
    out = ~permutation.tarone_testable(p_min, alpha) & np.isfinite(p_min)
    n, k = len(diff), len(imp)
    diff["tarone_k"] = imp["tarone_k"] = permutation.tarone_k(p_min, alpha)  # left-out tests' best p > alpha / K
    diff.loc[out[:n], "untested"] = "unattainable"
    pvalues = np.concatenate([diff["p"].to_numpy(dtype=np.float64), imp["iqm_p"].to_numpy(dtype=np.float64),
                              imp["mean_p"].to_numpy(dtype=np.float64)])
    member = np.isfinite(pvalues) & ~out
    diff["in_family"], imp["iqm_in_family"], imp["mean_in_family"] = member[:n], member[n:n + k], member[n + k:]
    adjusted = stats.holm(np.where(member, pvalues, np.nan))
    diff["p_holm"] = adjusted[:n]
    # the same family with each Welch row's permutation p in place of Welch's: a check on Welch's tails
    welch = (diff["test"] == "welch").to_numpy()
    checked = pvalues.copy()
    checked[:n] = np.where(welch, diff.get("p_perm", np.nan), checked[:n])
    diff["p_holm_perm"] = np.where(welch, stats.holm(np.where(member, checked, np.nan))[:n], np.nan)
    imp["iqm_p_holm"], imp["mean_p_holm"] = adjusted[n:n + k], adjusted[n + k:]
    level = holm_first_alpha(diff, imp, alpha)
    diff["mde_alpha"] = level
    diff["mde"] = [stats.detectable_from_se(se, dof, alpha=level) if t == "welch" else np.nan
                   for se, dof, t in zip(diff["se"], diff["dof"], diff["test"])]
    return diff, imp


def permutation_check(diff: pd.DataFrame, alpha: float = 0.05) -> str:
    """One sentence of the Notes: whether the per-task findings stand with each Welch test replaced by the
    permutation test of the same difference of means, Holm's family otherwise the same (``p_holm_perm``; a
    statistician's review found MT3's one per-task finding rest on Welch's tail: permutation p 0.0012 against
    Welch's 0.0007, Holm 0.061 against 0.036).  A comparison whose permutation test cannot reach Holm's
    first-step level with its runs (5 vs 5 seeds: p >= 2/252; runs tied at one value) is not checked, and said
    so; '' where no Welch test was made or the table has no permutation p (tables from before it)."""
    if not {"p_holm_perm", "p_perm_min", "mde_alpha"} <= set(diff) or not (diff["test"] == "welch").any():
        return ""
    welch = diff[diff["test"] == "welch"]
    level = float(welch["mde_alpha"].iloc[0])
    reachable = welch[welch["p_perm_min"] <= level]
    unchecked = len(welch) - len(reachable)
    by_welch = set(reachable.index[reachable["p_holm"] < alpha])
    by_perm = set(reachable.index[reachable["p_holm_perm"] < alpha])
    exact = all(permutation.permutation_is_exact(int(a), int(b)) for a, b in welch[["n", "n_reference"]].to_numpy())
    test = permutation.permutation_wording(exact).replace("tests over runs", "test over runs")
    out = (f"Welch's tails, checked: with each per-task Welch test replaced by the {test} of the same difference of "
           "means (Holm's family otherwise the same; its null, that the two sides' runs are exchangeable, asks more "
           "than Welch's equal means with any spreads), ")
    if by_welch == by_perm:
        n = len(by_welch)
        out += (f"the same {count(n, 'per-task comparison')} {'survives' if n == 1 else 'survive'} the correction."
                if n else "no per-task comparison survives the correction with either test.")
    else:
        def listed(rows: set) -> str:
            return "; ".join(f"`{r.variant}` {METRICS[r.metric].lower()} on {r.task} (Holm p "
                             f"{fmt.pvalue(r.p_holm)} with Welch, {fmt.pvalue(r.p_holm_perm)} by permutation)"
                             for r in reachable.loc[sorted(rows)].itertuples())
        parts = []
        if by_welch - by_perm:
            parts.append(f"{len(by_welch - by_perm)} of Welch's {count(len(by_welch), 'per-task finding')} would "
                         "not survive: " + listed(by_welch - by_perm))
        if by_perm - by_welch:
            parts.append(f"{count(len(by_perm - by_welch), 'comparison')} Welch's test leaves short would survive: "
                         + listed(by_perm - by_welch))
        out += "; and ".join(parts) + ". These comparisons depend on the test chosen: read them with that caution."
    if unchecked:
        its = "its" if unchecked == 1 else "their"
        out += (f" {count(unchecked, 'per-task comparison')} could not be checked: with {its} runs (the seed "
                f"counts, the ties among values) the permutation test cannot reach Holm's first-step level "
                f"({level:.2g}).")
    return out


def _p_min(table: pd.DataFrame, p: str) -> np.ndarray:
    """Each test's smallest attainable p (column ``{p}_min``; tables from before it: 0, any p attainable), NaN
    where ``p`` is: no test."""
    values = table[p].to_numpy(dtype=np.float64)
    smallest = table[f"{p}_min"].to_numpy(dtype=np.float64) if f"{p}_min" in table else np.zeros_like(values)
    return np.where(np.isfinite(values), smallest, np.nan)


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
    """{variant: (runs, used tasks) normalized final scores} for ok variants: a run (seed) is a row only with a
    score on every used task (a final score is NaN where an evaluation episode never ended: the IQM, the mean and
    their permutation tests would read the NaN as a number; :func:`scores.missing_final_notes` says which)."""
    used = norm[norm["used"]]
    out = {}
    for v in study.ok_variants:
        cols = [anchors.normalize(np.asarray(final_scores(study, v, r.task), dtype=np.float64),
                                  r.random_return, r.reference_return) for r in used.itertuples()]
        matrix = np.stack(cols, axis=1) if cols else np.zeros((len(study.cells[v].summary["seeds"]), 0))
        out[v] = matrix[np.isfinite(matrix).all(axis=1)]
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
        iqm_test, mean_test = (aggregate.permutation_test(s, ref, stat, seed=seed) for stat in ("IQM", "mean"))
        imp_rows.append({"variant": v, "reference": reference, "poi": poi.value, "poi_lo": poi.lo, "poi_hi": poi.hi,
                         "iqm_diff": diff["IQM"].value, "iqm_diff_lo": diff["IQM"].lo, "iqm_diff_hi": diff["IQM"].hi,
                         "mean_diff": diff["mean"].value, "mean_diff_lo": diff["mean"].lo,
                         "mean_diff_hi": diff["mean"].hi,
                         "iqm_p": iqm_test.p, "mean_p": mean_test.p, "iqm_p_min": iqm_test.smallest,
                         "mean_p_min": mean_test.smallest,
                         "poi_ties": aggregate.poi_ties(s, ref),
                         "n": int(len(s)), "n_reference": int(len(ref)), "n_tasks": int(s.shape[1])})
    agg = pd.DataFrame(agg_rows, columns=["variant", "metric", "value", "lo", "hi", "n_seeds", "n_tasks"])
    imp = pd.DataFrame(imp_rows, columns=["variant", "reference", "poi", "poi_lo", "poi_hi", "iqm_diff",
                                          "iqm_diff_lo", "iqm_diff_hi", "mean_diff", "mean_diff_lo", "mean_diff_hi",
                                          "iqm_p", "mean_p", "iqm_p_min", "mean_p_min", "poi_ties", "n",
                                          "n_reference", "n_tasks"])
    return agg, imp


def cost_table(study: Study) -> pd.DataFrame:
    """Parameters and throughput of each ok cell (one vmapped run of all its seeds), with the seconds its
    evaluations during training took (``eval_s``; NaN for a cell from before summary.json recorded them)."""
    keys = ["params_total", "params_shared", "wall_time_s", "compile_s", "env_steps_per_s"]
    rows = [{"variant": v, "n_seeds": len(study.cells[v].summary["seeds"]),
             **{k: study.cells[v].summary[k] for k in keys},
             "eval_s": study.cells[v].summary.get("eval_s", float("nan"))} for v in study.ok_variants]
    return pd.DataFrame(rows, columns=["variant", "n_seeds", *keys, "eval_s"])
