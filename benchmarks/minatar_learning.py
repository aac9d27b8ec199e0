"""Does the conv trunk learn MinAtar?  The `shared` agent, its `independent` reference and published DQN.

Runs the `minatar` study preset (Young & Tian 2019's games as published, sticky actions 0.1 and all six
actions, and their DQN settings, see `mtdqn/studies/presets.py`) at a budget that fits about an hour per
variant on the project's 2-core CPU, then prints the greedy returns per game (mean over seeds of 20
greedy episodes each) beside a uniformly random policy and beside published DQN.
The study directory it writes is an ordinary study: `mtdqn report OUT`
rebuilds its report.

    python benchmarks/minatar_learning.py                      # 400k frames per game, 1 seed
    python benchmarks/minatar_learning.py --steps 100000 --out runs/minatar-short

Published DQN (the `published DQN` columns) is read by eye off the DQN curves of MinAtar's learning-curve
figure (github.com/kenjyoung/MinAtar, README "Results", img/learning_curves.gif, updated 2020-02-14 to match
the paper, arXiv:1903.03176): *training* returns, a moving average over 100 episodes, the mean of 30 seeds,
with sticky actions 0.1, the full action set, no episode cut-off, 5M frames.  The 5M readings are Asterix
~17, Breakout ~10, Freeway ~50, Seaquest ~20, SpaceInvaders ~43; readings are good to about a tenth of a
gridline, and where a curve is steep (Asterix near 1M, Freeway near 0.4M, SpaceInvaders at 0.1M) a nearby
frame count reads very differently.  Their Seaquest curve predates MinAtar v1.0.11's oxygen-bar fix.
Ours are *greedy* returns of the final parameters, theirs training returns under epsilon 0.1, so the
columns compare only roughly.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

# frames -> DQN return read off Young & Tian's learning curves (see the docstring), per game.
PUBLISHED_DQN: dict[str, dict[int, float]] = {
    "Asterix-MinAtar": {100_000: 0.6, 250_000: 0.8, 500_000: 1.0, 1_000_000: 7.0, 2_000_000: 14.0, 5_000_000: 17.0},
    "Breakout-MinAtar": {100_000: 5.0, 250_000: 7.5, 500_000: 8.5, 1_000_000: 9.5, 2_000_000: 10.0, 5_000_000: 10.0},
    "Freeway-MinAtar": {100_000: 5.5, 250_000: 5.5, 500_000: 38.0, 1_000_000: 48.0, 2_000_000: 51.0, 5_000_000: 50.0},
    "Seaquest-MinAtar": {100_000: 0.5, 250_000: 0.6, 500_000: 0.8, 1_000_000: 1.0, 2_000_000: 4.0, 5_000_000: 20.0},
    "SpaceInvaders-MinAtar": {100_000: 20.0, 250_000: 22.0, 500_000: 27.0, 1_000_000: 32.0,
                              2_000_000: 41.0, 5_000_000: 43.0},
}


def published_at(game: str, frames: int) -> tuple[int, float] | None:
    """(frames, return) of the latest reading at or before ``frames`` of published DQN on ``game``."""
    readings = [(f, r) for f, r in PUBLISHED_DQN.get(game.split(":")[0], {}).items() if f <= frames]
    return max(readings) if readings else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=400_000, help="env steps (frames) per game")
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("runs/minatar-learning"))
    args = parser.parse_args()

    from mtdqn.devices import cpu_plan, unroll_cpu_threefry, use_cpu_cores
    from mtdqn.studies.presets import PRESETS

    use_cpu_cores(*cpu_plan(args.seeds, PRESETS["minatar"]()["tasks"], 0))

    unroll_cpu_threefry()  # as `mtdqn train` does
    from mtdqn.studies import resolve_spec, run_study

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
    print(comparison_table(spec.tasks, args.steps, variants, random_return,
                           {v: result.summaries[v].get("final_eval", {}) for v in variants}))


def comparison_table(tasks, frames: int, variants: list[str], random_return: dict,
                     final_eval: dict[str, dict]) -> str:
    """Markdown: per game, random policy, ours (greedy, per variant), published DQN at our frames and at 5M."""
    import numpy as np

    lines = ["| game | random policy | " + " | ".join(f"{v} (greedy)" for v in variants)
             + " | published DQN at ≤ our frames (training) | published DQN at 5M (training) |",
             "|---|---|" + "---|" * len(variants) + "---|---|"]
    for task in tasks:
        cells = []
        for v in variants:
            scores = np.asarray(final_eval[v].get(task, [np.nan]), dtype=float)
            cells.append(f"{scores.mean():.1f}" + (f" ± {scores.std():.1f}" if scores.size > 1 else ""))
        matched = published_at(task, frames)
        at = f"≈ {matched[1]:g} (at {matched[0]:,})" if matched else "n/a (first reading at 100,000)"
        final = published_at(task, 5_000_000)
        lines.append(f"| {task.split(':')[0]} | {random_return.get(task, float('nan')):.1f} | " + " | ".join(cells)
                     + f" | {at} | ≈ {final[1]:g} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
