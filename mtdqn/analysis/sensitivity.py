"""How much the headline depends on its window: each final score beside the end-of-training evaluation alone.

A run's final score is the mean of its last greedy evaluations
(:func:`mtdqn.rundir.final_score_steps`): it smooths the swings of a greedy
policy, but where a task is still being learned inside that window it mixes a
mid-training policy into "final" (a referee's example: Acrobot at 50k and 60k
env steps, 7 of 18 seeds still near -500 at 50k and every seed within -76 to
-113 at 60k).  This table puts the end-of-training evaluation alone beside
it, per variant and task, with each one's difference to the reference, so a
reader sees where the two tell different stories.  Descriptive: it adds no
test to the report's family.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from . import ranges, stats
from .fmt import estimate, value_lists
from .load import Study
from .scores import final_score_key, final_scores
from .tables import untested_reason

__all__ = ["final_window_table", "window_disagreements", "unsettled_tasks", "window_display", "WINDOW_COLUMNS",
           "UNSETTLED_WIDTH"]

WINDOW_COLUMNS = ["variant", "task", "window", "n", "final_mean", "final_lo", "final_hi", "final_values",
                  "last_mean", "last_lo", "last_hi", "last_values", "final_diff", "final_diff_lo", "final_diff_hi",
                  "last_diff", "last_diff_lo", "last_diff_hi"]


def _window(study: Study, variant: str) -> list[int]:
    """The evaluation steps ``variant``'s final scores average (summary.json's ``final_score_steps``)."""
    return [int(s) for s in study.cells[variant].summary.get("final_score_steps", [])]


def final_window_table(study: Study) -> pd.DataFrame:
    """Per (variant, task): the final score and the end-of-training evaluation alone, each a mean over seeds with
    a t-interval in the task's range, and each one's Welch difference to the reference; empty when every ok
    variant's final score is one evaluation (then the two are the same numbers)."""
    ok = list(study.ok_variants)
    if final_score_key(study) != "final_score" or all(len(_window(study, v)) <= 1 for v in ok):
        return pd.DataFrame(columns=WINDOW_COLUMNS)
    ref = study.reference if study.reference in ok else None
    rows = []
    for v in ok:
        for task in study.tasks:
            bounds = ranges.return_bounds(task)
            final = np.asarray(final_scores(study, v, task), np.float64)
            last = np.asarray(study.cells[v].summary["final_eval"][task], np.float64)
            f, lst = stats.t_mean(final, bounds), stats.t_mean(last, bounds)
            row = {"variant": v, "task": task, "window": ", ".join(f"{s:,}" for s in _window(study, v)),
                   "n": int(np.isfinite(final).sum()), "final_mean": f.value, "final_lo": f.lo, "final_hi": f.hi,
                   "final_values": value_lists(final, last)[0], "last_mean": lst.value, "last_lo": lst.lo,
                   "last_hi": lst.hi, "last_values": value_lists(final, last)[1]}
            for key, mine, theirs in (("final", final, final_scores(study, ref, task) if ref else None),
                                      ("last", last, study.cells[ref].summary["final_eval"][task] if ref else None)):
                d = (_difference(mine, np.asarray(theirs, np.float64), bounds) if ref and v != ref
                     else stats.Estimate(float("nan"), float("nan"), float("nan"), 0))
                row |= {f"{key}_diff": d.value, f"{key}_diff_lo": d.lo, f"{key}_diff_hi": d.hi}
            rows.append(row)
    return pd.DataFrame(rows, columns=WINDOW_COLUMNS)


def _difference(x: np.ndarray, y: np.ndarray, bounds: ranges.Bounds) -> stats.Estimate:
    """Welch's difference, without its interval where the report's difference table gives none
    (:func:`tables.untested_reason`: a comparison resting on one seed, whose Welch interval describes the
    design, not an effect; no variation; too few seeds); a second referee saw one-seed rows here with
    intervals the difference table withheld."""
    d = stats.welch_diff(x, y, bounds)
    return stats.Estimate(d.value, float("nan"), float("nan"), d.n) if untested_reason(x, y) else d


def _excludes_zero(lo: float, hi: float) -> int:
    """+1 / -1 when a 95% interval lies above / below 0, 0 when it holds 0 or is missing."""
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return 0
    return 1 if lo > 0 else -1 if hi < 0 else 0


def window_disagreements(table: pd.DataFrame) -> list[str]:
    """(variant, task) pairs whose difference to the reference reads differently under the two scores: the
    interval excludes 0 under one and not under the other, the two exclude 0 on opposite sides, or the two
    point differences have opposite signs (a second referee: pcgrad on Acrobot +12.7 under the window, -10.1
    [-20.4, 0.2] alone, neither interval excluding 0)."""
    out = []
    for r in table.itertuples():
        a, b = _excludes_zero(r.final_diff_lo, r.final_diff_hi), _excludes_zero(r.last_diff_lo, r.last_diff_hi)
        flipped = np.isfinite(r.final_diff) and np.isfinite(r.last_diff) and r.final_diff * r.last_diff < 0
        if a != b or flipped:
            out.append(f"{r.variant} on {r.task}")
    return out


UNSETTLED_WIDTH = 2.0
"""A final score's interval this many times as wide as the last evaluation's: the window spans learning."""


def unsettled_tasks(table: pd.DataFrame) -> list[str]:
    """Tasks where some variant's final-score interval is over UNSETTLED_WIDTH times as wide as its
    end-of-training evaluation's: the seeds disagree far more across the window than at its end, so the greedy
    policy's level moved inside the window (still being learned, or collapsing and recovering: a second
    referee found Acrobot seeds at -81, -500, -94 on three evaluations in a row)."""
    width = lambda lo, hi: hi - lo if np.isfinite(lo) and np.isfinite(hi) else np.nan  # noqa: E731
    out = []
    for task, g in table.groupby("task", sort=False):
        ratios = [width(r.final_lo, r.final_hi) / width(r.last_lo, r.last_hi) for r in g.itertuples()
                  if width(r.last_lo, r.last_hi) > 0]
        if any(np.isfinite(x) and x > UNSETTLED_WIDTH for x in ratios):
            out.append(str(task))
    return out


def window_display(table: pd.DataFrame, reference: str) -> pd.DataFrame:
    """The table as the report shows it: estimates with their intervals (none below MIN_SEEDS seeds); the
    reference's own rows say so, and a difference with no reference to take it from (a failed reference) is
    n/a."""
    def diff(r, key: str) -> str:
        if r.variant == reference:
            return "reference"
        return estimate(getattr(r, f"{key}_diff"), getattr(r, f"{key}_diff_lo"), getattr(r, f"{key}_diff_hi"))

    rows = [{"task": r.task, "variant": r.variant, "n seeds": r.n, "evaluations averaged (env steps)": r.window,
             "final score (mean [95% CI])": estimate(r.final_mean, r.final_lo, r.final_hi, r.final_values),
             "end-of-training evaluation alone": estimate(r.last_mean, r.last_lo, r.last_hi, r.last_values),
             "difference to the reference: final score": diff(r, "final"),
             "difference: the last evaluation alone": diff(r, "last")}
            for r in table.sort_values("task", key=lambda c: c.map({t: i for i, t in enumerate(pd.unique(c))}),
                                       kind="stable").itertuples()]
    return pd.DataFrame(rows, columns=["task", "variant", "n seeds", "evaluations averaged (env steps)",
                                       "final score (mean [95% CI])", "end-of-training evaluation alone",
                                       "difference to the reference: final score",
                                       "difference: the last evaluation alone"])
