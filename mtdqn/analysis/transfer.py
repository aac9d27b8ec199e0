"""The transfer table of a transfer study: jumpstart, area under the greedy curve and final return per variant.

Read from the cells' run directories only (``evals.parquet``, ``summary.json``),
never from training code.  Per seed:

- **jumpstart**: the greedy return at the first evaluation during training
  (the first row block of ``evals.parquet``), the same step for every variant;
- **AUC**: the area under the greedy curve (every evaluation, the final one
  included) divided by its step span, i.e. the mean greedy return over
  training (:func:`mtdqn.analysis.curves.auc`);
- **final**: the run's ``final_score`` (its summary's definition: the end of training's evaluations), and
  the same of the discounted return, D'Eramo et al.'s metric.

Each is reported as the mean over seeds with a 95% percentile-bootstrap
interval kept inside the return's feasible range (the discounted one's at the
task's gamma, the summary's ``task_gamma``, stored beside it in transfer.json)
(:func:`mtdqn.analysis.stats.bootstrap_mean`, :mod:`mtdqn.analysis.ranges`),
and with fewer than ``MIN_SEEDS`` seeds the seeds themselves instead; every
per-seed value is in transfer.json.  A second table gives each variant's
difference from the first one (the reference, ``scratch`` in the presets),
seeds resampled independently (:func:`mtdqn.analysis.stats.bootstrap_diff`):
whether a way of transferring helps, and by how much.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from mtdqn.analysis.fmt import estimate, num, values
from mtdqn.analysis.curves import auc
from mtdqn.analysis.ranges import Bounds, discounted_bounds, return_bounds
from mtdqn.analysis.stats import MIN_SEEDS, bootstrap_diff, bootstrap_mean
from mtdqn.io import read_parquet
from mtdqn.rundir import RUN_SUMMARY, STUDY_CELLS

__all__ = ["seed_metrics", "transfer_table", "differences", "grafted_trunk", "write_transfer_table"]

METRICS = ("jumpstart", "auc", "final", "final_discounted")


def seed_metrics(evals: pd.DataFrame, summary: dict[str, Any], task: str) -> dict[str, dict[int, float]]:
    """{metric: {seed: value}} of one cell for ``task`` (see the module)."""
    rows = evals[evals["task"] == task]
    first = rows["step"].min()
    out: dict[str, dict[int, float]] = {m: {} for m in METRICS}
    for seed, mine in rows.groupby("seed"):
        mine = mine.sort_values("step")
        out["jumpstart"][int(seed)] = float(mine[mine["step"] == first]["return_mean"].iloc[0])
        out["auc"][int(seed)] = auc(mine["step"], mine["return_mean"])
    for s, seed in enumerate(summary["seeds"]):
        out["final"][int(seed)] = float(summary["final_score"][task][s])
        out["final_discounted"][int(seed)] = float(summary["final_score_discounted"][task][s])
    return out


def transfer_table(study_dir: Path, variants: list[str], task: str) -> dict[str, Any]:
    """{variant: {metric: {"mean", "lo", "hi", "n", "per_seed"}}} over the finished cells of ``variants``."""
    table: dict[str, Any] = {}
    for variant in variants:
        cell = Path(study_dir) / STUDY_CELLS / variant
        summary_path = cell / RUN_SUMMARY
        if not summary_path.is_file() or json.loads(summary_path.read_text()).get("status") != "ok":
            table[variant] = None  # failed or missing: listed as such
            continue
        summary = json.loads(summary_path.read_text())
        per_seed = seed_metrics(read_parquet(cell / "evals.parquet"), summary, task)
        gamma = summary.get("task_gamma", {}).get(task, float("nan"))
        table[variant] = {m: _estimate(v, _bounds(m, task, gamma)) for m, v in per_seed.items()}
        table[variant]["final_discounted"]["gamma"] = gamma
    return table


def grafted_trunk(study_dir: Path) -> tuple[dict[str, int] | None, str]:
    """({seed: env step} of the pretraining parameters the cells start from, or None when they are its last or
    unknown; the sentence the table states it with)."""
    path = Path(study_dir) / "pretrain" / "summary.json"
    summary = json.loads(path.read_text()) if path.is_file() else {}
    if summary.get("status") != "ok":
        return None, "unknown: no finished pretraining in this study folder."
    for key, how in (("keep_best", "the pretraining's evaluation with the highest sum of the tasks' discounted "
                                   "returns (--keep-best)"),
                     ("early_stop", "the pretraining's best evaluation, restored by early stopping")):
        if key in summary:
            steps = {seed: int(step) for seed, step in summary[key]["best_step"].items()}
            return steps, (f"per seed, {how}, at step {', '.join(f'{v:,}' for v in steps.values())} "
                           f"(seeds {', '.join(steps)}).")
    return None, "the pretraining's last parameters."


def _bounds(metric: str, task: str, gamma: float = float("nan")) -> Bounds:
    """The metric's feasible range; the discounted return's at ``gamma`` (unbounded when it is not known)."""
    return discounted_bounds(task, gamma) if metric == "final_discounted" else return_bounds(task)


def _gamma(row: dict[str, Any], ref: dict[str, Any]) -> float:
    """The gamma both sides discounted with, or NaN when it differs or was not recorded."""
    a, b = row["final_discounted"].get("gamma"), ref["final_discounted"].get("gamma")
    return a if a == b and a is not None else float("nan")


def differences(table: dict[str, Any], task: str) -> dict[str, Any]:
    """{variant: {metric: {"mean", "lo", "hi", "n"}}}: each finished variant minus the first (the reference)."""
    reference, *others = table
    ref = table[reference]
    out: dict[str, Any] = {}
    for variant in others:
        row = table[variant]
        if row is None or ref is None:
            continue
        out[variant] = {m: dict(zip(("mean", "lo", "hi", "n"), bootstrap_diff(
            list(row[m]["per_seed"].values()), list(ref[m]["per_seed"].values()),
            _bounds(m, task, _gamma(row, ref)))))
            for m in METRICS}
    return out


def _estimate(per_seed: dict[int, float], bounds: Bounds) -> dict[str, Any]:
    est = bootstrap_mean(list(per_seed.values()), bounds)
    return {"mean": est.value, "lo": est.lo, "hi": est.hi, "n": est.n, "per_seed": per_seed}


def _cell(e: dict[str, Any]) -> str:
    """mean [lo, hi], or below MIN_SEEDS the mean and the seeds themselves (the report's format)."""
    return estimate(e["mean"], e["lo"], e["hi"], values(e["per_seed"].values()))


def _diff_cell(e: dict[str, Any]) -> str:
    ends = [v for v in (e["lo"], e["hi"]) if math.isfinite(v)]
    scale = max(abs(v) for v in (e["mean"], *ends))  # one precision for the difference and its interval
    sign = lambda v: ("+" if v > 0 else "") + num(v, scale)  # noqa: E731
    return sign(e["mean"]) + (f" [{sign(e['lo'])}, {sign(e['hi'])}]" if len(ends) == 2 else "")


def write_transfer_table(study_dir: Path, variants: list[str], task: str) -> Path:
    """transfer.json and transfer.md in ``study_dir``; returns the markdown's path."""
    from mtdqn.io import atomic_write, write_json

    table = transfer_table(study_dir, variants, task)
    diffs = differences(table, task)
    ref = table[variants[0]]
    g = ref["final_discounted"].get("gamma") if ref else None
    gamma = f", γ {g:g}" if isinstance(g, (int, float)) and math.isfinite(g) else ""  # older runs: none recorded
    kept, grafted = grafted_trunk(study_dir)
    write_json(Path(study_dir) / "transfer.json", {"task": task, "variants": table, "reference": variants[0],
                                                    "differences": diffs, "grafted_steps": kept})
    lines = [f"# Transfer to {task}", "",
             f"Mean over seeds [95% bootstrap interval, within the return's range] (below {MIN_SEEDS} seeds: the "
             "seeds); per-seed values in transfer.json. Jumpstart: greedy return at the first evaluation; AUC: mean "
             "greedy return over training; final: the run's final score (undiscounted and discounted).", "",
             f"Grafted trunk: {grafted}", "",
             f"| variant | seeds | jumpstart | AUC | final | final (discounted{gamma}) |", "|---|---|---|---|---|---|"]
    for variant, row in table.items():
        if row is None:
            lines.append(f"| {variant} | – | failed or missing | | | |")
            continue
        lines.append(f"| {variant} | {row['final']['n']} | " + " | ".join(_cell(row[m]) for m in METRICS) + " |")
    if diffs:
        lines += ["", f"Difference from `{variants[0]}`: variant mean minus {variants[0]}'s [95% bootstrap interval, "
                  f"seeds resampled independently] (below {MIN_SEEDS} seeds: no interval). An interval that excludes "
                  "0 is a clear difference; > 0 is better.", "",
                  f"| variant − {variants[0]} | seeds | jumpstart | AUC | final | final (discounted{gamma}) |",
                  "|---|---|---|---|---|---|"]
        for variant, row in diffs.items():
            lines.append(f"| {variant} | {row['final']['n']} | " + " | ".join(_diff_cell(row[m]) for m in METRICS)
                         + " |")
    path = Path(study_dir) / "transfer.md"
    atomic_write(path, lambda p: Path(p).write_text("\n".join(lines) + "\n"))
    return path
