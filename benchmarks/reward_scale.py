"""Does a task with 100x rewards dominate a shared agent, and do unit-norm / PopArt fix it?

CartPole-v1 with rewards scaled x100 and Acrobot-v1 unscaled train in one
shared agent (``--sharing shared``) at a fixed budget, all seeds vmapped in
one program, with ``sum``, ``unit-norm`` and ``sum`` + ``--value-norm popart``;
``sum`` on unscaled CartPole is the control.  Prints a Markdown table of the
final greedy returns per task (mean ± std over seeds, 10 episodes per seed;
returns are unscaled) and the mean ratio of the two tasks' gradient norms on
the shared parameters (CartPole / Acrobot, averaged over logging windows and
seeds; under PopArt these are gradients of the normalized losses)::

    python benchmarks/reward_scale.py > benchmarks/results/reward_scale.md
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from mtdqn.config import DQNConfig, TrainConfig
from mtdqn.train.run import train

SCALED = ("CartPole-v1:reward_scale=100", "Acrobot-v1")
RUNS = [  # (label, tasks, strategy, value_norm)
    ("sum, unscaled (control)", ("CartPole-v1", "Acrobot-v1"), "sum", "none"),
    ("sum", SCALED, "sum", "none"),
    ("unit-norm", SCALED, "unit-norm", "none"),
    ("sum + popart", SCALED, "sum", "popart"),
]


def run_one(tasks: tuple[str, ...], strategy: str, value_norm: str, args: argparse.Namespace) -> dict:
    """Train one configuration into a temporary directory; returns the numbers the table needs."""
    cfg = TrainConfig(tasks=tasks, steps=args.steps, seeds=args.seeds, seed=args.seed, strategy=strategy,
                      value_norm=value_norm, log_every=args.steps // 10, dqn=DQNConfig(loss=args.loss))
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        result = train(cfg, Path(tmp) / "run", progress=False)
        grads = pd.read_parquet(Path(tmp) / "run" / "grad_tasks.parquet")
        pairs = pd.read_parquet(Path(tmp) / "run" / "grad_pairs.parquet")
    norms = grads.pivot_table(index=["seed", "step"], columns="task", values="grad_norm")
    ratio = (norms[tasks[0]] / norms[tasks[1]]).groupby("seed").mean()  # per seed, over windows
    return {
        "returns": {task.split(":")[0]: np.asarray(v) for task, v in result.summary["final_eval"].items()},
        "grad_ratio": ratio.to_numpy(),
        "cosine": pairs.groupby("seed")["cosine"].mean().to_numpy(),
        "random": {task.split(":")[0]: v for task, v in result.summary["random_return"].items()},
        "wall_s": time.perf_counter() - t0,
    }


def pm(values: np.ndarray, digits: int = 1) -> str:
    return f"{np.mean(values):.{digits}f} ± {np.std(values):.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=150_000, help="env steps per task")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--loss", choices=("huber", "mse"), default="huber")
    args = parser.parse_args()
    rows = [(label, run_one(tasks, strategy, vn, args)) for label, tasks, strategy, vn in RUNS]
    print("# Reward-scale effect: CartPole-v1 x100 + Acrobot-v1 in one shared agent\n")
    print(f"`python benchmarks/reward_scale.py` — {args.steps:,} env steps per task, {args.seeds} seeds "
          f"(vmapped), default network (shared trunk, per-task heads) and DQN config, {args.loss} TD loss. "
          f"Greedy returns (unscaled) after training, mean ± std over seeds of each seed's 10-episode mean. "
          f"Grad-norm ratio: CartPole / Acrobot norm of the shared-parameter gradients, mean over logging "
          f"windows, then mean ± std over seeds.\n")
    print("| run | CartPole-v1 return | Acrobot-v1 return | grad-norm ratio CartPole/Acrobot | mean cosine | wall s |")
    print("|---|---|---|---|---|---|")
    for label, r in rows:
        print(f"| {label} | {pm(r['returns']['CartPole-v1'])} | {pm(r['returns']['Acrobot-v1'])} | "
              f"{pm(r['grad_ratio'], 2)} | {pm(r['cosine'], 3)} | {r['wall_s']:.0f} |")
    random = rows[0][1]["random"]
    print(f"\nUniform-random policy: CartPole-v1 {random['CartPole-v1']:.1f}, Acrobot-v1 {random['Acrobot-v1']:.1f}. "
          "Best possible: CartPole-v1 500; Acrobot-v1 about -60.")


if __name__ == "__main__":
    main()
