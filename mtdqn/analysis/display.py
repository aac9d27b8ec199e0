"""Turn tidy numeric tables into display tables (formatted strings, readable headers).

Kept apart from the numbers: `report/data/` stores the tidy frames, the
Markdown/HTML show these. Every estimate is shown with its CI and seed count.
"""

from __future__ import annotations

import math

import pandas as pd

from .fmt import interval, num, plus_minus

__all__ = [
    "cells", "per_task", "final_diff", "normalization", "aggregates", "improvement", "cost",
    "conflict_summary", "conflict_pairs", "grad_summary", "cka",
]


def _frame(rows: list[dict], columns: list[str]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=columns)


def cells(df: pd.DataFrame) -> pd.DataFrame:
    rows = [{"variant": r.variant, "status": r.status.upper() if r.status != "ok" else "ok",
             "seeds": r.n_seeds if r.n_seeds else "—", "error": r.error or "—"} for r in df.itertuples()]
    return _frame(rows, ["variant", "status", "seeds", "error"])


def _steps(r) -> str:
    return "not reached" if not math.isfinite(r.steps_median) else f"{int(round(r.steps_median)):,}"


def per_task(df: pd.DataFrame) -> pd.DataFrame:
    """Grouped by task (study order), variants in study order within a task, for side-by-side reading."""
    if len(df):
        order = {t: i for i, t in enumerate(pd.unique(df["task"]))}
        df = df.sort_values("task", key=lambda c: c.map(order), kind="stable")
    rows = [{"task": r.task, "variant": r.variant, "n seeds": r.n,
             "final return (mean ± 95% CI)": plus_minus(r.final_mean, r.final_lo, r.final_hi),
             "AUC (mean ± 95% CI)": plus_minus(r.auc_mean, r.auc_lo, r.auc_hi),
             "threshold": num(r.threshold), "steps to threshold (median)": _steps(r),
             "seeds reached": f"{r.reached}/{r.n}"} for r in df.itertuples()]
    cols = ["task", "variant", "n seeds", "final return (mean ± 95% CI)", "AUC (mean ± 95% CI)", "threshold",
            "steps to threshold (median)", "seeds reached"]
    return _frame(rows, cols)


def final_diff(df: pd.DataFrame) -> pd.DataFrame:
    rows = [{"task": r.task, "variant − reference": f"{r.variant} − {r.reference}", "difference": num(r.diff),
             "95% CI (Welch)": interval(r.lo, r.hi), "n seeds": f"{r.n} vs {r.n_reference}"}
            for r in df.itertuples()]
    return _frame(rows, ["task", "variant − reference", "difference", "95% CI (Welch)", "n seeds"])


def normalization(df: pd.DataFrame) -> pd.DataFrame:
    rows = [{"task": r.task, "random return": num(r.random_return), "reference mean final": num(r.reference_mean),
             "n reference seeds": r.n_reference, "used in aggregates": "yes" if r.used else "no",
             "note": r.note or "—"} for r in df.itertuples()]
    return _frame(rows, ["task", "random return", "reference mean final", "n reference seeds",
                         "used in aggregates", "note"])


def aggregates(df: pd.DataFrame) -> pd.DataFrame:
    rows = [{"variant": r.variant, "metric": r.metric, "normalized score": num(r.value),
             "95% CI (bootstrap)": interval(r.lo, r.hi), "n seeds": r.n_seeds, "n tasks": r.n_tasks}
            for r in df.itertuples()]
    return _frame(rows, ["variant", "metric", "normalized score", "95% CI (bootstrap)", "n seeds", "n tasks"])


def improvement(df: pd.DataFrame) -> pd.DataFrame:
    rows = [{"variant": r.variant, "reference": r.reference, "P(variant > reference)": num(r.poi),
             "P 95% CI": interval(r.poi_lo, r.poi_hi), "IQM difference": num(r.iqm_diff),
             "IQM diff 95% CI": interval(r.iqm_diff_lo, r.iqm_diff_hi), "n seeds": f"{r.n} vs {r.n_reference}",
             "n tasks": r.n_tasks} for r in df.itertuples()]
    return _frame(rows, ["variant", "reference", "P(variant > reference)", "P 95% CI", "IQM difference",
                         "IQM diff 95% CI", "n seeds", "n tasks"])


def cost(df: pd.DataFrame) -> pd.DataFrame:
    rows = [{"variant": r.variant, "n seeds (one vmapped run)": r.n_seeds, "params total": f"{int(r.params_total):,}",
             "params shared": f"{int(r.params_shared):,}", "wall time s": num(r.wall_time_s),
             "compile s": num(r.compile_s), "env steps/s": num(r.env_steps_per_s)} for r in df.itertuples()]
    return _frame(rows, ["variant", "n seeds (one vmapped run)", "params total", "params shared", "wall time s",
                         "compile s", "env steps/s"])


def conflict_summary(df: pd.DataFrame) -> pd.DataFrame:
    rows = [{"variant": r.variant, "task pairs": r.n_pairs,
             "mean cosine (mean ± 95% CI)": plus_minus(r.cosine_mean, r.cosine_lo, r.cosine_hi),
             "conflict fraction (mean ± 95% CI)": plus_minus(r.conflict_fraction, r.conflict_lo, r.conflict_hi),
             "n seeds": r.n} for r in df.itertuples()]
    return _frame(rows, ["variant", "task pairs", "mean cosine (mean ± 95% CI)",
                         "conflict fraction (mean ± 95% CI)", "n seeds"])


def _pair_table(df: pd.DataFrame, label: str) -> pd.DataFrame:
    rows = [{"variant": r.variant, "task pair": f"{r.task_a} / {r.task_b}",
             f"{label} (mean ± 95% CI)": plus_minus(r.mean, r.lo, r.hi), "n seeds": r.n} for r in df.itertuples()]
    return _frame(rows, ["variant", "task pair", f"{label} (mean ± 95% CI)", "n seeds"])


def conflict_pairs(df: pd.DataFrame) -> pd.DataFrame:
    return _pair_table(df, "cosine over training")


def cka(df: pd.DataFrame) -> pd.DataFrame:
    return _pair_table(df, "linear CKA")


def grad_summary(df: pd.DataFrame) -> pd.DataFrame:
    rows = [{"variant": r.variant, "task": r.task,
             "grad norm (mean ± 95% CI)": plus_minus(r.grad_norm_mean, r.grad_norm_lo, r.grad_norm_hi),
             "applied weight (mean ± 95% CI)": plus_minus(r.weight_mean, r.weight_lo, r.weight_hi),
             "n seeds": r.n} for r in df.itertuples()]
    return _frame(rows, ["variant", "task", "grad norm (mean ± 95% CI)", "applied weight (mean ± 95% CI)",
                         "n seeds"])
