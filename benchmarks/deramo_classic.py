"""D'Eramo et al. (ICLR 2020) on our code: single-task vs multi-task DQN on their five classic tasks.

"Sharing Knowledge in Multi-Task Deep Reinforcement Learning" (D'Eramo,
Tateo, Bonarini, Restelli, Peters; ICLR 2020, https://openreview.net/forum?id=rkgpv2VFvr)
compares single-task DQN with a multi-task DQN whose hidden layers are shared
and whose input and output layers are per task, on Cart-Pole, Acrobot,
Mountain-Car, Car-On-Hill and the LSPI inverted pendulum, scoring each task
by its discounted return.  This script runs (or resumes) the preset
``mtdqn study deramo`` (protocol and sources: ``mtdqn/studies/presets.py``,
``_deramo``), then reads the stored cells' ``summary.json`` and prints a
Markdown table: per task, the paper's single -> multi numbers, a uniformly
random policy's discounted return (what a broken agent scores), our
``independent`` (single-task) and ``shared`` (multi-task) discounted greedy
returns with 95% percentile-bootstrap intervals over seeds computed inside
the returns' possible range (the report's rule), the shared - independent
difference with its bootstrap interval, and the undiscounted returns beside them.

    python benchmarks/deramo_classic.py                       # the preset: 10 seeds, 50,000 steps per task
    python benchmarks/deramo_classic.py --seeds 2 --steps 2000  # a smoke run
    python benchmarks/deramo_classic.py --table-only --out runs/study-deramo

It writes the table to ``benchmarks/results/deramo_classic.md``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from mtdqn.analysis import bootstrap_diff, bootstrap_mean, ranges
from mtdqn.tasknames import task_options

# Discounted returns, single-task -> multi-task: the authors' stored results behind the paper's figure
# (github.com/carloderamo/shared, branch prism at bbd46a3, results/dqn/dqn/noreg-sigmoid/scores.npy and
# results/dqn/multidqn/noreg-sigmoid/scores.npy, each 100 runs x 5 tasks x 51 epochs: the last epoch's mean over
# the 100 runs), which issue 13's quotes match.
PAPER_DISCOUNTED: dict[str, tuple[float, float] | None] = {
    "CartPole-v1": (63.0, 83.5),
    "Acrobot-v1": (-58.3, -56.2),
    "MountainCar-v0": (-81.0, -66.0),
    "CarOnHill-v0": (0.38, 0.38),
    "InvertedPendulumDiscrete-v0": (-0.006, -0.007),
}
def return_range(task: str, gamma: float | None) -> tuple[float, float]:
    """Smallest and largest return an episode of ``task`` can have; discounted with ``gamma`` unless None
    (derived from the task's rewards and time limit: :func:`mtdqn.analysis.ranges.discounted_bounds`)."""
    return ranges.discounted_bounds(task, 1.0 if gamma is None else gamma)


def _fmt(e, digits: int) -> str:
    if e.lo != e.lo:  # NaN: one seed
        return f"{e.value:.{digits}f}"
    return f"{e.value:.{digits}f} [{e.lo:.{digits}f}, {e.hi:.{digits}f}]"


def _verdict(e) -> str:
    if e.lo != e.lo or e.hi != e.hi:
        return "n/a"
    if e.lo > 0:
        return "multi-task better"
    if e.hi < 0:
        return "multi-task worse"
    return "no clear difference"


def read_cells(study_dir: Path) -> dict[str, dict[str, Any]]:
    """Variant -> summary.json of its cell, for the study's variants; a missing or failed cell is an error."""
    study = json.loads((study_dir / "study.json").read_text())
    cells = {}
    for variant in study["variants"]:
        path = study_dir / "cells" / variant / "summary.json"
        summary = json.loads(path.read_text()) if path.exists() else {}
        if summary.get("status") != "ok":
            raise SystemExit(f"error: {path}: cell not finished (status {summary.get('status')!r})")
        cells[variant] = summary
    return cells


def table(study_dir: Path, single: str = "independent", multi: str = "shared") -> str:
    """Per task: paper, ours single / multi (discounted, then undiscounted), the difference, the seed counts."""
    cells = read_cells(study_dir)
    a, b = cells[single], cells[multi]
    lines = ["| task (γ) | paper single → multi | random policy | independent (single-task) | shared (multi-task) | "
             "shared − independent | verdict | undiscounted: independent | undiscounted: shared | n seeds |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for spec in a["tasks"]:
        task, gamma = spec.partition(":")[0], a["task_gamma"][spec]
        digits = 2 if ranges.REWARDS[task].rewarded_steps == 1 else 1  # returns of +-1 or 0
        lo, hi = return_range(spec, gamma)  # the spec's own time limit (max_steps=1000) included
        max_steps = task_options(spec)[2].get("max_steps")
        limit = f", {max_steps:,} steps" if max_steps else ""
        ind, sh = (np.asarray(c["final_eval_discounted"][spec]) for c in (a, b))
        paper = PAPER_DISCOUNTED.get(task)
        paper_text = f"{paper[0]:g} → {paper[1]:g}" if paper else "not recorded"
        d = bootstrap_diff(sh, ind, (lo, hi))
        und = [_fmt(bootstrap_mean(c["final_eval"][spec], return_range(spec, None)), digits) for c in (a, b)]
        random = a["random_return_discounted"][spec]
        lines.append(f"| {task} ({gamma:g}{limit}) | {paper_text} | {random:.{digits + 1}f} | "
                     f"{_fmt(bootstrap_mean(ind, (lo, hi)), digits + 1)} | "
                     f"{_fmt(bootstrap_mean(sh, (lo, hi)), digits + 1)} | {_fmt(d, digits + 1)} | {_verdict(d)} | "
                     f"{und[0]} | {und[1]} | {len(ind)} / {len(sh)} |")
    return "\n".join(lines)


def describe(study_dir: Path) -> str:
    """One paragraph: budget, seeds, evaluation episodes, and each cell's training wall time."""
    study = json.loads((study_dir / "study.json").read_text())
    cells = read_cells(study_dir)
    walls = ", ".join(f"{v} {c['wall_time_s'] / 60:.1f} min" for v, c in cells.items())
    first = next(iter(cells.values()))
    return (f"{len(study['seeds'])} seeds per variant, {study['steps']:,} env steps per task, "
            f"{first['eval_episodes']} greedy episodes per task and seed at the end of training "
            f"(`final_eval_discounted`, `final_eval` in each cell's summary.json); mean [95% percentile-bootstrap interval over "
            f"seeds, computed inside the returns an episode can have], difference with its bootstrap interval. "
            f"Cells' own wall times (training + evaluation): {walls}.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=None, help="override the preset's 10 seeds")
    parser.add_argument("--steps", type=int, default=None, help="override the preset's 50,000 env steps per task")
    parser.add_argument("--out", type=Path, default=Path("runs") / "study-deramo", help="study folder")
    parser.add_argument("--ray-address", default=None)
    parser.add_argument("--table-only", action="store_true", help="only read the stored cells in --out")
    parser.add_argument("--md", type=Path, default=Path(__file__).parent / "results" / "deramo_classic.md")
    args = parser.parse_args()
    wall = None
    if not args.table_only:
        from mtdqn.studies import run_study
        from mtdqn.studies.presets import resolve_spec

        spec = resolve_spec("deramo", {"seeds": args.seeds, "steps": args.steps})
        t0 = time.perf_counter()
        run_study(spec, args.out, ray_address=args.ray_address)
        wall = time.perf_counter() - t0
    text = (f"# D'Eramo et al. 2020: single-task vs multi-task DQN, discounted returns\n\n"
            f"Study folder `{args.out}` (preset `mtdqn study deramo`). {describe(args.out)}\n\n"
            f"{table(args.out)}\n")
    if wall is not None:
        text += f"\nWall time of this invocation: {wall:.0f} s (cells already finished are not re-run).\n"
    args.md.parent.mkdir(parents=True, exist_ok=True)
    args.md.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
