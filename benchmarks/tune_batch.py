"""`mtdqn tune` with trials batched into one program against one trial at a time: wall time (issue 24).

The same search twice, each a fresh `mtdqn tune` process: a random sampler
(so both draw the same trials), no pruner (every trial trains to the end),
8 trials over lr and eps_fraction on CartPole-v1 + Acrobot-v1, 2 seeds per
trial.  Once with ``batch = 8`` (the 8 trials as one population), once with
``batch = 1``.  One trial at a time already compiles once (the trials differ
only in traced numbers, so they share a program): what batching saves is the
passes over the cores.  The script also checks that every trial's metrics
are the same in both (a batched trial computes exactly its run alone).

    python benchmarks/tune_batch.py                  # the README's row (20k steps per task)
    python benchmarks/tune_batch.py --steps 5000

Prints a Markdown table.  Timing is wall time on whatever else the machine is
running: the load average at the start and end is printed with it.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent

SPEC = """name = "bench"
tasks = ["CartPole-v1", "Acrobot-v1"]
steps = {steps}
seeds = 2
trials = {trials}
objective = "final"
pruner = "none"
sampler = "random"
eval_every = {eval_every}
batch = {batch}

[space]
lr = {{log = [1e-4, 3e-3]}}
eps_fraction = {{float = [0.05, 0.5]}}
"""


def _tune(spec: Path, out: Path) -> float:
    """Run `mtdqn tune SPEC --out OUT` in a fresh process; its wall time in seconds."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "mtdqn.cli", "tune", str(spec), "--out", str(out), "--progress", "False"],
                   check=True, env=env, stdout=subprocess.DEVNULL, cwd=ROOT)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20000, help="env steps per task of every trial")
    parser.add_argument("--trials", type=int, default=8)
    args = parser.parse_args()
    load_before = os.getloadavg()
    wall = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for batch in (args.trials, 1):
            spec = tmp / f"batch{batch}.toml"
            spec.write_text(SPEC.format(steps=args.steps, trials=args.trials, eval_every=max(args.steps // 4, 1),
                                        batch=batch))
            wall[batch] = _tune(spec, tmp / f"out{batch}")
        same = all(pd.read_parquet(tmp / f"out{args.trials}" / "trials" / f"trial-{n:04d}" / "metrics.parquet").equals(
            pd.read_parquet(tmp / "out1" / "trials" / f"trial-{n:04d}" / "metrics.parquet")) for n in range(args.trials))
    print(f"{args.trials} trials x 2 seeds, CartPole-v1 + Acrobot-v1, {args.steps:,} env steps per task; "
          f"load average {load_before[0]:.2f} -> {os.getloadavg()[0]:.2f}\n")
    print("| tune | wall s | speed-up |\n|---|---|---|")
    print(f"| batch = {args.trials} (one program) | {wall[args.trials]:.0f} | {wall[1] / wall[args.trials]:.2f}x |")
    print(f"| batch = 1 (one trial at a time) | {wall[1]:.0f} | 1x |")
    print(f"\nevery trial's metrics identical in both: {same}")


if __name__ == "__main__":
    main()
