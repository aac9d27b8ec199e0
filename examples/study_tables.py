"""Run a small study from Python, then read its tables into pandas and plot from them.

    python examples/study_tables.py

A study trains each variant (here: one network per task, and a shared trunk) over the same seeds, then
builds a report whose every number comes from tidy tables: ``study.tables`` holds them (per_seed,
per_task, differences, curves, aggregates, conflict_summary, cka, ...).  Rerunning skips finished cells.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import mtdqn  # noqa: E402

TASKS = ["CartPole-v1", "Acrobot-v1"]


def run_study(out: Path, steps: int, seeds: int, **options: Any) -> mtdqn.Study:
    """The study: the independent reference and a shared trunk (``options``: train options of both)."""
    window = options.get("log_every")  # evaluations run between logging windows: ten of them, in whole windows
    every = max(1, round(steps / 10 / window)) * window if window else max(steps // 10, 1)
    return mtdqn.study({"name": "example", "tasks": TASKS, "steps": steps, "seeds": seeds,
                        "eval_every": every, "eval_episodes": 5, "options": options,
                        "variants": {"shared": {"sharing": "shared"}}}, out=out, progress=False)


def main(out: Path = Path("runs/examples/study"), steps: int = 100_000, seeds: int = 5, **options: Any) -> Path:
    """Run (or reopen) the study, print its per-task table and plot its greedy-return curves; returns the PNG."""
    study = run_study(out, steps, seeds, **options)
    per_task = study.table("per_task")  # one row per variant and task: final return with its interval
    print(per_task[["variant", "task", "final_mean", "final_lo", "final_hi", "n"]].to_string(index=False))
    curves = study.table("curves")  # mean greedy return over seeds per step, with its interval
    fig, axes = plt.subplots(1, len(study.tasks), figsize=(4 * len(study.tasks), 3))
    for ax, task in zip(axes, study.tasks):
        for variant, c in curves[curves.task == task].groupby("variant"):
            ax.plot(c.step, c["mean"], label=variant)
            ax.fill_between(c.step, c.lo, c.hi, alpha=0.2)
        ax.set(title=task, xlabel="env steps per task", ylabel="greedy return")
    axes[0].legend()
    path = study.path / "curves.png"
    fig.savefig(path, dpi=80, bbox_inches="tight")
    print(f"figure: {path}\nreport: {study.report_path}")
    return path


if __name__ == "__main__":
    main()
