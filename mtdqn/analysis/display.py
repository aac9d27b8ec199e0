"""Turn tidy numeric tables into display tables (formatted strings, readable headers).

Kept apart from the numbers: `report/data/` stores the tidy frames, the
Markdown/HTML show these. Every estimate is shown with its CI and seed count,
or, below 5 seeds, with the seeds' own values instead of a CI.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .fmt import detectable, estimate, gamma, interval, num, pvalue, steps, values
from .findings import ALPHA
from .stats import MIN_SEEDS

__all__ = [
    "cells", "per_task", "metric_name", "ranges", "differences", "normalization", "aggregates", "improvement", "cost",
    "conflict_summary", "conflict_pairs", "grad_summary", "cka", "probe", "affinity_unit", "affinity",
]


def _frame(rows: list[dict], columns: list[str]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=columns)


def cells(df: pd.DataFrame) -> pd.DataFrame:
    rows = [{"variant": r.variant, "status": r.status.upper() if r.status != "ok" else "ok",
             "seeds": r.n_seeds if r.n_seeds else "—", "error": r.error or "—"} for r in df.itertuples()]
    return _frame(rows, ["variant", "status", "seeds", "error"])


def _steps(r) -> str:
    """The median's value, or, where half the seeds or more never reached the threshold, the most it is known
    to exceed ('>200k', as censored per-seed values are shown)."""
    if math.isfinite(r.steps_median):
        return steps(r.steps_median)
    above = getattr(r, "steps_median_above", float("nan"))
    return f">{steps(above)}" if math.isfinite(above) else "not reached"


def _seed_values(per_seed: pd.DataFrame, variant: str, task: str, column: str) -> str:
    g = per_seed[(per_seed["variant"] == variant) & (per_seed["task"] == task)]
    return values(g[column].to_numpy())


FINAL = "final return (mean [95% CI])"
DISCOUNTED = "final discounted return (mean [95% CI])"


def per_task(df: pd.DataFrame, per_seed: pd.DataFrame, headline: str = "final_return") -> pd.DataFrame:
    """Grouped by task (study order), variants in study order within a task, for side-by-side reading.

    Both final scores, the `headline` one (a per_seed column) first; γ is each task's discount.
    """
    if len(df):
        order = {t: i for i, t in enumerate(pd.unique(df["task"]))}
        df = df.sort_values("task", key=lambda c: c.map(order), kind="stable")
    rows = [{"task": r.task, "variant": r.variant, "γ": gamma(r.gamma),
             "n seeds": r.n if r.final_n == r.n else f"{r.n} ({r.final_n} with a final score)",
             FINAL: estimate(r.final_mean, r.final_lo, r.final_hi,
                             _seed_values(per_seed, r.variant, r.task, "final_return")),
             DISCOUNTED: estimate(r.disc_mean, r.disc_lo, r.disc_hi,
                                  _seed_values(per_seed, r.variant, r.task, "final_discounted")),
             "AUC (mean [95% CI])": estimate(r.auc_mean, r.auc_lo, r.auc_hi,
                                             _seed_values(per_seed, r.variant, r.task, "auc")),
             "threshold": num(r.threshold), "steps to threshold (median)": _steps(r),
             "seeds reached": f"{r.reached}/{r.n}"} for r in df.itertuples()]
    finals = [DISCOUNTED, FINAL] if headline == "final_discounted" else [FINAL, DISCOUNTED]
    cols = ["task", "variant", "n seeds", "γ", *finals, "AUC (mean [95% CI])", "threshold",
            "steps to threshold (median)", "seeds reached"]
    return _frame(rows, cols)


_METRIC_NAMES = {"final_return": "final return", "final_discounted": "final discounted return", "auc": "AUC",
                 "steps_to_threshold": "steps to threshold"}


def metric_name(metric: str, g: float = float("nan")) -> str:
    """A per-task metric's name in the tables; the discounted return with its γ."""
    return f"{_METRIC_NAMES[metric]} (γ {gamma(g)})" if metric == "final_discounted" else _METRIC_NAMES[metric]


def _diff_interval(r, show) -> str:
    """The interval cell of a difference row, or why it has none."""
    if math.isfinite(r.lo) and math.isfinite(r.hi):
        return f"[{show(r.lo)}, {show(r.hi)}]"
    why = getattr(r, "untested", "")
    if why == "uninformative":
        return "not informative at this budget (no seed of either reached it)"
    if why == "one_seed":
        return f"not tested ({r.deviating}/{r.n + r.n_reference} seeds differ from the rest)"
    if why == "unattainable":
        return (f"not tested (smallest possible p {pvalue(r.p_min)} > {ALPHA:g}/{int(r.tarone_k)}: cannot pass "
                "Tarone's level)")
    if getattr(r, "test", "") == "gehan":
        return f"— (censored: reached {r.reached}/{r.n} vs {r.reached_reference}/{r.n_reference}; Gehan test)"
    if not r.estimable:
        return "not estimable (no variation)"
    return f"— (n < {MIN_SEEDS})" if min(r.n, r.n_reference) < MIN_SEEDS else "— (no spread within either variant)"


def _detectable_cell(r, show) -> str:
    why = getattr(r, "untested", "")
    if why == "one_seed":
        return "n/a (rests on one seed)"
    if why in ("uninformative", "unattainable") or getattr(r, "test", "") == "gehan":
        return "n/a (censored times)"
    return detectable(r.mde, r.max_diff, show, min(r.n, r.n_reference))


def _effect_cell(r) -> str:
    """The row's standardized effect: Hedges' g for a Welch comparison, Gehan's concordance c for steps to
    threshold tested as censored times (``test`` 'gehan')."""
    if not math.isfinite(r.effect):
        return "n/a"
    if getattr(r, "test", "") != "gehan":
        return f"g {r.effect:+.2f}"
    lo, hi = getattr(r, "effect_lo", float("nan")), getattr(r, "effect_hi", float("nan"))
    return f"c {r.effect:+.2f} [{lo:+.2f}, {hi:+.2f}]" if math.isfinite(lo) else f"c {r.effect:+.2f}"


def differences(df: pd.DataFrame) -> pd.DataFrame:
    """Difference to the reference per task and metric, its interval (or the seeds) and the detectable size at
    Holm's first-step level, the strictest a finding may need (`mde_alpha`)."""
    rows = []
    for r in df.itertuples():
        show = steps if r.metric == "steps_to_threshold" else num
        rows.append({"task": r.task, "metric": metric_name(r.metric, r.gamma),
                     "variant − reference": f"{r.variant} − {r.reference}", "difference": show(r.diff),
                     "95% CI (Welch t)": _diff_interval(r, show), "p": pvalue(r.p), "p (Holm)": pvalue(r.p_holm),
                     "effect (g; steps: c)": _effect_cell(r),
                     "per seed (variant | reference)": f"{r.values} | {r.values_reference}",
                     "detectable difference (power 0.8, Holm's first-step α)": _detectable_cell(r, show),
                     "n seeds": f"{r.n} vs {r.n_reference}"})
    return _frame(rows, ["task", "metric", "variant − reference", "difference", "95% CI (Welch t)", "p", "p (Holm)",
                         "effect (g; steps: c)", "per seed (variant | reference)",
                         "detectable difference (power 0.8, Holm's first-step α)", "n seeds"])


def _range(lo: float, hi: float) -> str:
    """'[lo, hi]' with one precision for both ends; an infinite end as ∞."""
    finite = [abs(x) for x in (lo, hi) if math.isfinite(x)]
    if not finite:
        return "unbounded"
    end = lambda x: num(x, max(finite)) if math.isfinite(x) else ("∞" if x > 0 else "−∞")  # noqa: E731
    return f"[{end(lo)}, {end(hi)}]"


def ranges(df: pd.DataFrame) -> pd.DataFrame:
    """The feasible range of each task's return, undiscounted and discounted, and how it is derived."""
    rows = [{"task": r.task, "γ": gamma(r.gamma), "return range": _range(r.return_lo, r.return_hi),
             "discounted return range": _range(r.discounted_lo, r.discounted_hi), "derived from": r.derivation}
            for r in df.itertuples()]
    return _frame(rows, ["task", "γ", "return range", "discounted return range", "derived from"])


def normalization(df: pd.DataFrame) -> pd.DataFrame:
    rows = [{"task": r.task, "random anchor": num(r.random_return), "reference anchor": num(r.reference_return),
             "random return measured in this study": num(r.study_random_return),
             "used in aggregates": "yes" if r.used else "no", "source": r.source or "—", "note": r.note or "—"}
            for r in df.itertuples()]
    return _frame(rows, ["task", "random anchor", "reference anchor", "random return measured in this study",
                         "used in aggregates", "source", "note"])


def aggregates(df: pd.DataFrame) -> pd.DataFrame:
    rows = [{"variant": r.variant, "metric": r.metric, "normalized score": num(r.value),
             "95% CI (percentile bootstrap)": interval(r.lo, r.hi) if math.isfinite(r.lo) else "— (n < 5)",
             "n seeds": r.n_seeds, "n tasks": r.n_tasks}
            for r in df.itertuples()]
    return _frame(rows, ["variant", "metric", "normalized score", "95% CI (percentile bootstrap)", "n seeds", "n tasks"])


def improvement(df: pd.DataFrame) -> pd.DataFrame:
    rows = [{"variant": r.variant, "reference": r.reference, "P(variant > reference)": num(r.poi),
             "P 95% CI (percentile bootstrap)": interval(r.poi_lo, r.poi_hi), "IQM difference": num(r.iqm_diff),
             "IQM diff 95% CI (percentile bootstrap)": interval(r.iqm_diff_lo, r.iqm_diff_hi), "mean difference": num(r.mean_diff),
             "mean diff 95% CI (percentile bootstrap)": interval(r.mean_diff_lo, r.mean_diff_hi),
             "p IQM | mean (Holm)": f"{pvalue(getattr(r, 'iqm_p_holm', None))} | {pvalue(getattr(r, 'mean_p_holm', None))}",
             "n seeds": f"{r.n} vs {r.n_reference}", "n tasks": r.n_tasks} for r in df.itertuples()]
    return _frame(rows, ["variant", "reference", "P(variant > reference)", "P 95% CI (percentile bootstrap)", "IQM difference",
                         "IQM diff 95% CI (percentile bootstrap)", "mean difference", "mean diff 95% CI (percentile bootstrap)", "p IQM | mean (Holm)", "n seeds",
                         "n tasks"])


def cost(df: pd.DataFrame) -> pd.DataFrame:
    rows = [{"variant": r.variant, "n seeds (one vmapped run)": r.n_seeds, "params total": f"{int(r.params_total):,}",
             "params shared": f"{int(r.params_shared):,}", "wall time s": num(r.wall_time_s),
             "compile s": num(r.compile_s), "evaluations during training s": num(r.eval_s),
             "env steps/s": num(r.env_steps_per_s)} for r in df.itertuples()]
    return _frame(rows, ["variant", "n seeds (one vmapped run)", "params total", "params shared", "wall time s",
                         "compile s", "evaluations during training s", "env steps/s"])


def _est(mean: float, lo: float, hi: float, n: int) -> str:
    """'mean [lo, hi]', or the mean with why it has no interval: too few seeds, or no spread over them."""
    if math.isfinite(lo):
        return estimate(mean, lo, hi)
    return f"{num(mean)} (no CI, n < {MIN_SEEDS})" if n < MIN_SEEDS else f"{num(mean)} (no CI: no spread over seeds)"


def conflict_summary(df: pd.DataFrame) -> pd.DataFrame:
    """Per variant: the between-task cosine and conflict fraction over training, beside the same-task null and
    noise baseline over the same steps, averaged over the non-degenerate tasks only (those left out named)."""
    rows = [{"variant": r.variant, "task pairs": r.n_pairs,
             "mean cosine over training": _est(r.cosine_mean, r.cosine_lo, r.cosine_hi, r.n),
             "conflict fraction (0.5: independent directions)":
                 _est(r.conflict_fraction, r.conflict_lo, r.conflict_hi, r.n),
             "noise baseline: same-task pairs with cosine < 0 (mean over non-degenerate tasks, same steps)":
                 num(getattr(r, "noise_conflict", float("nan"))),
             "same-task null cosine (mean over non-degenerate tasks, same steps)": num(r.null_cosine),
             "degenerate tasks left out": getattr(r, "degenerate", "") or "none",
             "steps compared": getattr(r, "steps", "") or "—", "n seeds": r.n}
            for r in df.itertuples()]
    return _frame(rows, ["variant", "task pairs", "mean cosine over training",
                         "conflict fraction (0.5: independent directions)",
                         "noise baseline: same-task pairs with cosine < 0 (mean over non-degenerate tasks, same steps)",
                         "same-task null cosine (mean over non-degenerate tasks, same steps)",
                         "degenerate tasks left out", "steps compared", "n seeds"])


def _pair_table(df: pd.DataFrame, label: str) -> pd.DataFrame:
    rows = [{"variant": r.variant, "task pair": f"{r.task_a} / {r.task_b}",
             f"{label} (mean [95% CI])": _est(r.mean, r.lo, r.hi, r.n), "n seeds": r.n} for r in df.itertuples()]
    return _frame(rows, ["variant", "task pair", f"{label} (mean [95% CI])", "n seeds"])


def _baseline(share: float, degenerate: bool, null: float) -> str:
    return f"degenerate (null {num(null)})" if degenerate else num(share)


def conflict_pairs(df: pd.DataFrame) -> pd.DataFrame:
    """Each pair's cosine and conflict fraction beside both tasks' own same-task nulls and noise baselines, over
    the same steps (older runs: the nulls at the end)."""
    if "conflict" not in df:  # tables from before the time-matched baseline
        out = _pair_table(df, "cosine over training")
        if "null_a" in df:
            out.insert(3, "same-task nulls at the end (first / second task)",
                       [f"{num(a)} / {num(b)}" for a, b in zip(df["null_a"], df["null_b"])])
        return out
    rows = [{"variant": r.variant, "task pair": f"{r.task_a} / {r.task_b}",
             "between-task cosine (mean [95% CI])": _est(r.mean, r.lo, r.hi, r.n),
             "same-task null cosine (first / second task)": f"{num(r.null_a)} / {num(r.null_b)}",
             "conflict fraction (mean [95% CI])": _est(r.conflict, r.conflict_lo, r.conflict_hi, r.n),
             "noise baseline: same-task share < 0 (first / second task)":
                 f"{_baseline(r.noise_a, r.degenerate_a, r.null_a)} / {_baseline(r.noise_b, r.degenerate_b, r.null_b)}",
             "steps compared": r.steps, "n seeds": r.n} for r in df.itertuples()]
    return _frame(rows, ["variant", "task pair", "between-task cosine (mean [95% CI])",
                         "same-task null cosine (first / second task)", "conflict fraction (mean [95% CI])",
                         "noise baseline: same-task share < 0 (first / second task)", "steps compared", "n seeds"])


def affinity_unit(df: pd.DataFrame) -> int:
    """The power of ten (a multiple of 3, at most 0) the affinity matrix is shown in, so that its largest mean
    gets three digits: a lookahead step of a small learning rate gives Z of order 1e-3 or less."""
    means = [abs(float(x)) for x in df["mean"] if math.isfinite(float(x))]
    big = max(means, default=0.0)
    if big == 0.0 or big >= 0.1:
        return 0
    return -3 * math.ceil(-math.log10(big) / 3)


def _scaled(mean: float, lo: float, hi: float, n: int, unit: int) -> str:
    f = 10.0 ** -unit
    return _est(mean * f, lo * f, hi * f, n)


def affinity(df: pd.DataFrame, tasks: tuple[str, ...], unit: int = 0) -> pd.DataFrame:
    """Per variant the T x T matrix of Z_{i->j}: a row per task i whose step is taken, a column per task j whose
    loss it changes, each cell mean [95% CI] in units of 10^unit (:func:`affinity_unit`)."""
    scale = "" if unit == 0 else f" (×10^{unit})"
    rows = []
    for (v, i), g in df.groupby(["variant", "task_i"], sort=False):
        cells = {r.task_j: _scaled(r.mean, r.lo, r.hi, r.n, unit) for r in g.itertuples()}
        rows.append({"variant": v, f"step on ↓ / loss of →{scale}": i, **{j: cells.get(j, "n/a") for j in tasks},
                     "n seeds": int(g["n"].max())})
    return _frame(rows, ["variant", f"step on ↓ / loss of →{scale}", *tasks, "n seeds"])


def cka(df: pd.DataFrame) -> pd.DataFrame:
    """Each pair's CKA beside its two baselines: the network at initialization (and the change from it) and,
    where the study has one, the `independent` reference variant (the difference from it)."""
    out = _pair_table(df, "linear CKA")
    column = 3
    if "chance_mean" in df and np.isfinite(df["chance_mean"].to_numpy(dtype=float)).any():
        out.insert(column, "chance (pairing shuffled)", [num(x) for x in df["chance_mean"]])
        column += 1
    out.insert(column, "at initialization", [num(x) for x in df["init_mean"]])
    out.insert(column + 1, "change from initialization (mean [95% CI])",
               [_est(r.change_mean, r.change_lo, r.change_hi, r.n) for r in df.itertuples()])
    reference = next((r for r in df["reference"] if r), "")
    if reference:
        ref_method = next(((r.probe, r.estimator) for r in df.itertuples() if r.variant == reference), None)
        out.insert(column + 2, f"minus `{reference}` (mean [95% CI])",
                   ["reference" if r.variant == reference else
                    "not compared: another estimator or probe" if ref_method and (r.probe, r.estimator) != ref_method
                    else
                    _est(r.vs_reference_mean, r.vs_reference_lo, r.vs_reference_hi, r.vs_reference_n)
                    for r in df.itertuples()])
    return out


def probe(df: pd.DataFrame) -> pd.DataFrame:
    rows = [{"variant": r.variant, "comparison": r.kind,
             "tasks": r.task_a if r.task_a == r.task_b else f"{r.task_a} / {r.task_b}",
             "cosine (mean [95% CI])": _est(r.mean, r.lo, r.hi, r.n), "n seeds": r.n} for r in df.itertuples()]
    return _frame(rows, ["variant", "comparison", "tasks", "cosine (mean [95% CI])", "n seeds"])


def grad_summary(df: pd.DataFrame) -> pd.DataFrame:
    rows = [{"variant": r.variant, "task": r.task,
             "grad norm (mean [95% CI])": _est(r.grad_norm_mean, r.grad_norm_lo, r.grad_norm_hi, r.n),
             "applied weight (mean [95% CI])": _est(r.weight_mean, r.weight_lo, r.weight_hi, r.n),
             "n seeds": r.n} for r in df.itertuples()]
    return _frame(rows, ["variant", "task", "grad norm (mean [95% CI])", "applied weight (mean [95% CI])",
                         "n seeds"])
