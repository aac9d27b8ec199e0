"""A population sweep against separate runs: wall time, compiles included (issue 24; target >= 4x).

16 learning rates x 2 seeds on CartPole-v1 + Acrobot-v1: once as one
`mtdqn train --sweep lr=...` (one process, one compiled program), once as 16
separate `mtdqn train --lr ...` processes one after another, each with every
cost a user pays (interpreter and JAX start, compile, training, the final
evaluation and probes).  Both sides write ordinary run directories; the
script also checks that a member's greedy returns equal its run alone's
(the numbers are the same by construction: ``tests/test_sweep.py``).

    python benchmarks/sweep.py --steps 2000          # the README's small-budget row
    python benchmarks/sweep.py --steps 20000 --lrs 8  # a longer, smaller one

Prints a Markdown table.  Timing is wall time on whatever else the machine is
running: the load average at the start and end is printed with it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def _mtdqn(args: list[str]) -> float:
    """Run `mtdqn ARGS` in a fresh process; its wall time in seconds."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "mtdqn.cli", *args, "--progress", "False"], check=True, env=env,
                   stdout=subprocess.DEVNULL, cwd=ROOT)
    return time.perf_counter() - t0


def _final_eval(run: Path) -> dict:
    return json.loads((run / "summary.json").read_text())["final_eval"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000, help="env steps per task of every run")
    parser.add_argument("--lrs", type=int, default=16, help="learning rates, log-spaced in [1e-4, 3e-3]")
    parser.add_argument("--seeds", type=int, default=2)
    args = parser.parse_args()
    lrs = [float(f"{x:.3g}") for x in np.geomspace(1e-4, 3e-3, args.lrs)]
    common = ["train", "--tasks", "CartPole-v1,Acrobot-v1", "--steps", str(args.steps), "--seeds", str(args.seeds),
              "--log-every", str(max(args.steps // 4, 4)), "--learning-starts", str(args.steps // 5),
              "--eval-episodes", "5"]
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        sweep_s = _mtdqn([*common, "--sweep", "lr=" + ",".join(map(str, lrs)), "--out", str(out / "sweep")])
        alone_s = [_mtdqn([*common, "--lr", str(lr), "--out", str(out / f"alone-{i}")]) for i, lr in enumerate(lrs)]
        same = all(_final_eval(out / "sweep" / f"lr={lr:g}") == _final_eval(out / f"alone-{i}")
                   for i, lr in enumerate(lrs))
    load_after = os.getloadavg()
    print(f"| {args.lrs} lrs x {args.seeds} seeds, {args.steps:,} steps/task | wall time (s) |")
    print("|---|---|")
    print(f"| one `mtdqn train --sweep` | {sweep_s:.1f} |")
    print(f"| {args.lrs} separate `mtdqn train` | {sum(alone_s):.1f} (each {min(alone_s):.1f}-{max(alone_s):.1f}) |")
    print(f"| speed-up | **{sum(alone_s) / sweep_s:.1f}x** |")
    print(f"\nmembers' final greedy returns equal their runs alone: {same}; "
          f"load average {load_before[0]:.1f} at the start, {load_after[0]:.1f} at the end "
          f"({os.cpu_count()} CPUs)")


if __name__ == "__main__":
    main()
