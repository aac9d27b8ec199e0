"""Which stored numbers a study's final scores are: the summary keys, each task's discount, the headline.

Every variant of a study is scored under one definition (:func:`final_score_key`),
and its discounted final score under the matching one (:func:`discounted_key`);
the report leads with the final score the study asks for (:func:`headline_metric`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from . import ranges
from .load import Study

__all__ = ["final_score_key", "final_scores", "discounted_key", "discounted_scores", "headline_metric",
           "metric_order", "task_gamma", "ranges_table", "discount_notes", "missing_final_notes"]


def final_score_key(study: Study) -> str:
    """The one summary key every variant's final score comes from: ``final_score`` (the mean of the last
    evaluations, see :func:`mtdqn.rundir.final_scores`) when every ok cell stored it, else ``final_eval``
    (the end-of-training evaluation), so no two variants are scored by different definitions."""
    ok = [study.cells[v].summary for v in study.ok_variants]
    return "final_score" if ok and all("final_score" in s for s in ok) else "final_eval"


def final_scores(study: Study, variant: str, task: str) -> list[float]:
    """Per-seed final scores of ``task`` in ``variant``'s cell, under the study's one key."""
    return [float(x) for x in study.cells[variant].summary[final_score_key(study)][task]]


def discounted_key(study: Study) -> str | None:
    """The summary key of the discounted final score under the same definition as :func:`final_score_key`
    (``final_score_discounted`` or ``final_eval_discounted``: the discounted return of the same greedy
    episodes), or None when an ok cell did not store it (runs older than the discounted evaluation)."""
    key = final_score_key(study) + "_discounted"
    ok = [study.cells[v].summary for v in study.ok_variants]
    return key if ok and all(key in s for s in ok) else None


def headline_metric(study: Study) -> str:
    """The per-seed column the report leads with: ``final_discounted`` when the study asks for it
    (``Study.headline``) and every ok cell stored it, else ``final_return``."""
    return "final_discounted" if study.headline == "discounted" and discounted_key(study) else "final_return"


def metric_order(headline: str) -> tuple[str, ...]:
    """The per-task metrics in the order the report shows and compares them: the headline final score first."""
    finals = ("final_discounted", "final_return") if headline == "final_discounted" else \
        ("final_return", "final_discounted")
    return (*finals, "auc", "steps_to_threshold")


def task_gamma(study: Study, variant: str, task: str) -> float:
    """The discount ``variant``'s run used for ``task`` (its TD targets and discounted return: the task's own
    ``gamma=`` or the run's ``--gamma``), from summary.json's ``task_gamma``; NaN when not recorded."""
    g = study.cells[variant].summary.get("task_gamma", {}).get(task)
    return float(g) if isinstance(g, (int, float)) and not isinstance(g, bool) else float("nan")


def discounted_scores(study: Study, variant: str, task: str) -> list[float]:
    """Per-seed discounted final scores (NaN each when the study has none, see :func:`discounted_key`)."""
    key = discounted_key(study)
    n = len(study.cells[variant].summary["seeds"])
    return [float(x) for x in study.cells[variant].summary[key][task]] if key else [float("nan")] * n


def ranges_table(study: Study) -> pd.DataFrame:
    """Per task and discount in use: the feasible range of the undiscounted and of the discounted return, and
    how it is derived (:mod:`mtdqn.analysis.ranges`)."""
    rows = []
    for task in study.tasks:
        gammas = sorted({g for v in study.ok_variants if np.isfinite(g := task_gamma(study, v, task))})
        for g in gammas or [float("nan")]:  # NaN: no run recorded its gamma
            (lo, hi), (dlo, dhi) = ranges.return_bounds(task), ranges.discounted_bounds(task, g)
            rows.append({"task": task, "gamma": g, "return_lo": lo, "return_hi": hi, "discounted_lo": dlo,
                         "discounted_hi": dhi, "derivation": ranges.describe_bounds(task)})
    return pd.DataFrame(rows, columns=["task", "gamma", "return_lo", "return_hi", "discounted_lo", "discounted_hi",
                                       "derivation"])


def discount_notes(study: Study) -> list[str]:
    """What the report cannot say about discounted returns: none stored, or a task discounted differently
    by two variants (their discounted returns are then not compared)."""
    if not study.ok_variants:
        return []
    if discounted_key(study) is None:
        return ["No discounted final score in every ok cell (runs older than the discounted evaluation): the "
                "discounted columns are n/a" + (" and the report leads with the undiscounted return instead"
                                                 if study.headline == "discounted" else "") + "."]
    out = []
    for task in study.tasks:
        by = {v: task_gamma(study, v, task) for v in study.ok_variants}
        if len({g for g in by.values() if np.isfinite(g)}) > 1:
            out.append(f"Task {task} is discounted differently by the variants "
                       f"({', '.join(f'`{v}` {g:g}' for v, g in by.items())}): its discounted returns are not "
                       "compared across variants.")
    return out


def missing_final_notes(study: Study, aggregated: tuple[str, ...]) -> list[str]:
    """The seeds without a final score on a task (NaN: an evaluation episode that never ended, see
    ``mtdqn.evaluate.UnfinishedEpisodesWarning``, or a hand-edited summary), per variant and task: each is left
    out of the task's final-score statistics (their seed counts say so), and out of the aggregates over the tasks
    in ``aggregated`` (a run counts there only with a score on every one of them)."""
    out = []
    for v in study.ok_variants:
        seeds = study.cells[v].summary["seeds"]
        for task in study.tasks:
            missing = [str(s) for s, x in zip(seeds, final_scores(study, v, task)) if not np.isfinite(x)]
            if missing:
                where = (" and of the aggregates, where a run counts only with a score on every task"
                         if task in aggregated else "")
                out.append(f"`{v}` has no final score on {task} for seed{'s' if len(missing) > 1 else ''} "
                           f"{', '.join(missing)} (NaN: an evaluation episode that never ended): left out of that "
                           f"task's final-score statistics{where}.")
    return out
