"""Reproduce the classic-control part of D'Eramo et al., ICLR 2020, with the study runner.

"Sharing Knowledge in Multi-Task Deep Reinforcement Learning" (D'Eramo,
Tateo, Bonarini, Restelli, Peters; ICLR 2020, https://openreview.net/forum?id=rkgpv2VFvr)
compares single-task DQN with multi-task DQN whose hidden layers are shared
and whose input and output layers are per task, and finds the multi-task
agent at least as good as the single-task one on every classic-control task.
Here: gymnax's CartPole-v1, Acrobot-v1 and MountainCar-v0 (the paper also
used Car-On-Hill and Inverted-Pendulum, which gymnax does not have), variants
``independent`` (one full network per task: the single-task baseline) and
``shared`` (per-task input adapter and Q head around one shared trunk: the
paper's architecture), the same env steps per task, >= 10 seeds.

    python benchmarks/deramo_classic.py --seeds 10 --steps 100000 [--ray-address local]

It runs (or resumes) the study, writes its report under the study folder,
then prints a Markdown table (mean and 95% t-interval over seeds, and the
shared - independent difference with a Welch 95% interval) and writes it to
``benchmarks/results/deramo_classic.md``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd

from mtdqn.analysis import diff_ci, mean_ci
from mtdqn.studies import build_spec, run_study
from mtdqn.studies.presets import CLASSIC_OPTIONS

TASKS = ["CartPole-v1", "Acrobot-v1", "MountainCar-v0"]


def spec(seeds: int, steps: int):
    """Independent vs shared hidden layers, everything else equal."""
    return build_spec({"name": "deramo-classic", "tasks": TASKS, "steps": steps, "seeds": seeds,
                       "options": dict(CLASSIC_OPTIONS), "variants": {"shared": {"sharing": "shared"}}},
                      "benchmarks/deramo_classic.py", "deramo-classic")


def _fmt(e) -> str:
    return f"{e.value:.1f} [{e.lo:.1f}, {e.hi:.1f}]"


def _verdict(e) -> str:
    if not (e.lo == e.lo and e.hi == e.hi):  # NaN interval
        return "n/a"
    if e.lo > 0:
        return "multi-task better"
    if e.hi < 0:
        return "multi-task worse"
    return "no clear difference"


def table(study_dir: Path) -> str:
    """Per task and metric: independent, shared, difference (shared - independent) with 95% CIs."""
    per_seed = pd.read_parquet(study_dir / "report" / "data" / "per_seed.parquet")
    lines = ["| task | metric | independent (single-task) | shared (multi-task) | shared − independent | n seeds | verdict |",
             "|---|---|---|---|---|---|---|"]
    for task in TASKS:
        for metric, label in (("final_return", "final greedy return"), ("auc", "mean training return (AUC)")):
            ind = per_seed[(per_seed.variant == "independent") & (per_seed.task == task)][metric].to_numpy()
            sh = per_seed[(per_seed.variant == "shared") & (per_seed.task == task)][metric].to_numpy()
            d = diff_ci(sh, ind)
            lines.append(f"| {task} | {label} | {_fmt(mean_ci(ind))} | {_fmt(mean_ci(sh))} | {_fmt(d)} | "
                         f"{len(ind)} / {len(sh)} | {_verdict(d)} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--steps", type=int, default=100_000, help="env steps per task")
    parser.add_argument("--out", type=Path, default=None, help="study folder (default runs/study-deramo-classic-<steps>)")
    parser.add_argument("--ray-address", default=None)
    parser.add_argument("--md", type=Path, default=Path(__file__).parent / "results" / "deramo_classic.md")
    args = parser.parse_args()
    s = spec(args.seeds, args.steps)
    out = args.out or Path("runs") / f"study-deramo-classic-{args.steps}"
    t0 = time.perf_counter()
    result = run_study(s, out, ray_address=args.ray_address)
    wall = time.perf_counter() - t0
    failed = [v for v, summ in result.summaries.items() if summ.get("status") != "ok"]
    body = table(out) if not failed else f"cells failed: {failed}; see {result.report}"
    text = (f"# D'Eramo et al. 2020, classic control: single-task vs multi-task DQN (shared hidden layers)\n\n"
            f"{args.seeds} seeds per variant, {args.steps:,} env steps per task, options {CLASSIC_OPTIONS}; "
            f"mean [95% t-interval] over seeds, difference with a Welch 95% interval. Paper's finding: "
            f"multi-task ≥ single-task on every task.\n\n{body}\n\n"
            f"Wall time of this invocation: {wall:.0f} s (cells already finished are not re-run). "
            f"Full report: {result.report}\n")
    args.md.parent.mkdir(parents=True, exist_ok=True)
    args.md.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
