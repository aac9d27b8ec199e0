"""Does the conv trunk learn MinAtar?  The 4-game `shared` agent and its `independent` reference.

Runs the `minatar` study preset (Young & Tian 2019's DQN settings, see
`mtdqn/studies/presets.py`) at a budget that fits about an hour per variant
on the project's 2-core CPU, then prints the greedy returns per game (mean
over seeds of 20 greedy episodes each) beside a uniformly random policy.
The study directory it writes is an ordinary study: `mtdqn report OUT`
rebuilds its report.

    python benchmarks/minatar_learning.py                      # 400k frames per game, 1 seed
    python benchmarks/minatar_learning.py --steps 100000 --out runs/minatar-short

The MinAtar paper (arXiv:1903.03176) reports DQN as learning curves over 5M
frames, not as a table; compare the frames column with its Figure 2 (README,
"Learning on images").
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

TASKS = ("Breakout-MinAtar", "Asterix-MinAtar", "Freeway-MinAtar", "SpaceInvaders-MinAtar")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=400_000, help="env steps (frames) per game")
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("runs/minatar-learning"))
    args = parser.parse_args()

    from mtdqn.devices import cpu_plan, unroll_cpu_threefry, use_cpu_cores

    use_cpu_cores(*cpu_plan(args.seeds, TASKS, 0))

    unroll_cpu_threefry()  # as `mtdqn train` does
    import numpy as np

    from mtdqn.studies import resolve_spec, run_study
    from mtdqn.studies.presets import PRESETS

    # Young & Tian anneal epsilon over the first 100k frames, whatever the budget: the preset's fraction
    # (0.1 of 1M frames) is rescaled to this run's length.
    options = {**PRESETS["minatar"]()["options"], "eps_fraction": min(1.0, 100_000 / args.steps)}
    spec = resolve_spec("minatar", {"steps": args.steps, "seeds": args.seeds, "eval_episodes": 20,
                                    "options": options})
    start = time.perf_counter()
    result = run_study(spec, args.out, progress=True)
    hours = (time.perf_counter() - start) / 3600
    variants = list(result.summaries)
    random_return = next(iter(result.summaries.values())).get("random_return", {})
    print()
    print(f"{args.steps:,} frames per game, {args.seeds} seed(s), {hours:.2f} h in all; report: {result.report}")
    print()
    print("| game | random policy | " + " | ".join(variants) + " |")
    print("|---|---|" + "---|" * len(variants))
    for task in spec.tasks:
        cells = []
        for v in variants:
            scores = np.asarray(result.summaries[v].get("final_eval", {}).get(task, [np.nan]), dtype=float)
            cells.append(f"{scores.mean():.1f}" + (f" ± {scores.std():.1f}" if scores.size > 1 else ""))
        print(f"| {task} | {random_return.get(task, float('nan')):.1f} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
