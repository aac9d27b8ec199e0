"""Which TD loss should be the default?  Huber against squared error, as a new user would run them.

Two settings, each with both losses and otherwise the library's defaults:

- classic: `mtdqn train --tasks CartPole-v1,Acrobot-v1,MountainCar-v0 --seeds 2 --steps 300000`
  (the run a new user tries first; shared trunk, every DQN default);
- minatar: Breakout-MinAtar + SpaceInvaders-MinAtar, 50k frames per game, 2 seeds, with the
  MinAtar learning test's settings (tests/test_learning.py: a half-width conv trunk, lr 1e-3, ...).

Prints per setting, task and loss the final score (mean of the last 3 greedy evaluations of 10
episodes, per seed) and writes each run under --out, so `mtdqn evaluate` works on them.

    python benchmarks/default_sweep.py                 # both settings (~10 min of 2 idle cores)
    python benchmarks/default_sweep.py --only classic
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

CLASSIC = ("CartPole-v1", "Acrobot-v1", "MountainCar-v0")
MINATAR = ("Breakout-MinAtar", "SpaceInvaders-MinAtar")


def settings() -> dict:
    from mtdqn.config import DQNConfig, NetworkConfig, TrainConfig

    minatar = TrainConfig(
        tasks=MINATAR, steps=50_000, seeds=2, num_envs=4, log_every=12_500,
        network=NetworkConfig(conv_channels=(8, 16), conv_dense=64, adapter_channels=8),
        dqn=DQNConfig(lr=1e-3, lr_schedule="constant", train_every=4, batch_size=64, buffer_size=50_000,
                      learning_starts=2_000, eps_fraction=0.2, eps_end=0.05),
    )
    return {
        "classic": (TrainConfig(tasks=CLASSIC, seeds=2, steps=300_000), 25_000),
        "minatar": (minatar, 12_500),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("classic", "minatar"), default=None)
    parser.add_argument("--out", type=Path, default=Path("runs/default-sweep"))
    args = parser.parse_args()

    from mtdqn.devices import unroll_cpu_threefry, use_cpu_cores

    use_cpu_cores()
    unroll_cpu_threefry()  # as `mtdqn train` does
    import numpy as np

    from mtdqn.train.run import train

    rows = []
    for name, (base, eval_every) in settings().items():
        if args.only not in (None, name):
            continue
        for loss in ("huber", "mse"):
            cfg = dataclasses.replace(base, dqn=dataclasses.replace(base.dqn, loss=loss))
            start = time.perf_counter()
            out = args.out / f"{name}-{loss}"
            summary = train(cfg, out, force=True, progress=False, eval_every=eval_every, eval_episodes=10).summary
            took = time.perf_counter() - start
            for task in cfg.tasks:
                scores = np.asarray(summary["final_score"][task])
                rows.append((name, task, loss, scores, summary["random_return"][task], took))
            print(f"{name} {loss}: {took:.0f} s", flush=True)
    print()
    print("| setting | task | loss | final score per seed | mean | random policy |")
    print("|---|---|---|---|---|---|")
    for name, task, loss, scores, random_return, _ in rows:
        print(f"| {name} | {task} | {loss} | {', '.join(f'{s:.1f}' for s in scores)} | {scores.mean():.1f} "
              f"| {random_return:.1f} |")


if __name__ == "__main__":
    main()
