"""Why a mixture of experts helps or not: each task's mixing weights, their entropy, and expert collapse.

Read from ``experts.parquet`` (:data:`mtdqn.rundir.EXPERT_SCHEMA`; runs with
``--sharing moe:K`` or ``moore:K`` only), one row per logging window, seed,
task and expert.  Three questions:

- *Which experts does each task use?*  Its softmax mixing weights over
  training (they start even: every logit at zero).
- *Do the tasks specialize?*  The entropy of a task's weights, shown as a
  share of its maximum log K: 1 is the even mixture, 0 one expert alone.
- *Have the experts collapsed?*  The mean pairwise cosine between the
  experts' representations on the task's observations: near 1, K experts
  compute one thing (``moe`` can drift there; MOORE's Gram–Schmidt prevents
  it, so ``moore``'s mixed representations read ~0 by construction, and its
  experts' own outputs before the orthonormalization stand beside them).

Every summary is a per-seed quantity first (the mean over tasks and experts
where it spans them), then the mean over seeds with a Student-t 95% CI
clipped to its range (none below :data:`~mtdqn.analysis.stats.MIN_SEEDS` seeds).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from . import ranges, stats
from .load import Study

__all__ = ["mixing_curve_table", "experts_curve_table", "experts_summary_table", "ALL_TASKS"]

_EST = ["mean", "lo", "hi", "n"]
ALL_TASKS = "all tasks"
"""The ``task`` of a summary row over every task (per seed the mean over tasks)."""
QUANTITIES = ("entropy_share", "cosine", "cosine_raw")
"""The curve table's quantities: entropy / log K, the mean pairwise cosine of the mixed representations, and of
the experts' outputs before Gram–Schmidt."""


def _est_row(values: np.ndarray, bounds: ranges.Bounds) -> dict[str, float]:
    return dict(zip(_EST, stats.t_mean(values, bounds)))


def _expert_frames(study: Study) -> list[tuple[str, pd.DataFrame]]:
    """(variant, experts.parquet rows with ``entropy_share``) for ok variants that trained a mixture of experts."""
    out = []
    for v in study.ok_variants:
        ex = study.cells[v].experts
        if ex is None or not len(ex):
            continue
        k = int(ex["expert"].nunique())
        out.append((v, ex.assign(entropy_share=ex["entropy"].astype(np.float64) / np.log(k))))
    return out


def _per_task(ex: pd.DataFrame) -> pd.DataFrame:
    """One row per (step, seed, task): the entropy (the same on the task's rows) and its share of log K, and the
    cosines averaged over the task's experts (the mean pairwise cosine)."""
    return ex.groupby(["step", "seed", "task"], sort=True)[[*QUANTITIES, "entropy"]].mean().reset_index()


def _bounds(quantity: str) -> ranges.Bounds:
    return ranges.FRACTION if quantity == "entropy_share" else ranges.COSINE


def mixing_curve_table(study: Study) -> pd.DataFrame:
    """Per variant, task, expert and step: the task's mixing weight on the expert, mean and 95% CI over seeds."""
    rows = []
    for v, ex in _expert_frames(study):
        for task in study.tasks:
            for (expert, step), g in ex[ex["task"] == task].groupby(["expert", "step"], sort=True):
                rows.append({"variant": v, "task": task, "expert": int(expert), "step": int(step),
                             **_est_row(g["weight"].to_numpy(np.float64), ranges.FRACTION)})
    return pd.DataFrame(rows, columns=["variant", "task", "expert", "step", *_EST])


def experts_curve_table(study: Study) -> pd.DataFrame:
    """Per variant, quantity (:data:`QUANTITIES`) and step: per seed the mean over tasks, then the mean and 95% CI
    over seeds."""
    rows = []
    for v, ex in _expert_frames(study):
        by_seed = _per_task(ex).groupby(["step", "seed"], sort=True)[list(QUANTITIES)].mean().reset_index()
        for q in QUANTITIES:
            for step, g in by_seed.groupby("step", sort=True):
                rows.append({"variant": v, "quantity": q, "step": int(step),
                             **_est_row(g[q].to_numpy(np.float64), _bounds(q))})
    return pd.DataFrame(rows, columns=["variant", "quantity", "step", *_EST])


def experts_summary_table(study: Study) -> pd.DataFrame:
    """Per variant, at the end of training (each run's last step): the number of experts, the weights' entropy
    (nats, with log K, and as a share of it) and the mean pairwise cosine between the experts (mixed and raw),
    over every task (:data:`ALL_TASKS`, per seed the mean over tasks) and per task; mean and 95% CI over seeds."""
    rows = []
    for v, ex in _expert_frames(study):
        k = int(ex["expert"].nunique())
        last = _per_task(ex[ex["step"] == ex["step"].max()])
        groups = [(ALL_TASKS, last.groupby("seed")[[*QUANTITIES, "entropy"]].mean())]
        groups += [(t, last[last["task"] == t].set_index("seed")) for t in study.tasks if (last["task"] == t).any()]
        for task, per_seed in groups:
            entropy = stats.t_mean(per_seed["entropy"].to_numpy(np.float64), (0.0, float(np.log(k))))
            row = {"variant": v, "task": task, "experts": k, "step": int(ex["step"].max()), "log_k": float(np.log(k)),
                   "entropy_mean": entropy.value, "entropy_lo": entropy.lo, "entropy_hi": entropy.hi}
            for q in QUANTITIES:
                e = stats.t_mean(per_seed[q].to_numpy(np.float64), _bounds(q))
                row |= {f"{q}_mean": e.value, f"{q}_lo": e.lo, f"{q}_hi": e.hi}
            rows.append({**row, "n": entropy.n})
    return pd.DataFrame(rows, columns=_SUMMARY_COLUMNS)


_SUMMARY_COLUMNS = ["variant", "task", "experts", "step", "log_k", "entropy_mean", "entropy_lo", "entropy_hi",
                    *(f"{q}_{s}" for q in QUANTITIES for s in ("mean", "lo", "hi")), "n"]
