"""The MiniGrid study table of issue 19: per-task and aggregate normalized IQM, beside the published rerun of MOORE's.

    python benchmarks/minigrid_table.py STUDY_DIR      # a study whose report was written (mtdqn report STUDY_DIR)

Reads the report's tidy data (``report/data/per_seed.parquet``: each seed's final greedy return per task;
``normalization.parquet``: the fixed random/optimal anchors) and prints a markdown table:

* per task, the IQM over seeds of our normalized score, (x - random) / (optimal - random), with its 95%
  percentile-bootstrap interval (rliable, as the report's aggregates: ``mtdqn.analysis.aggregate``);
* the aggregate IQM over seeds x tasks in that normalization (the report's own figure), and in the rerun's,
  x / optimal (the rerun of Todorov et al. 2025 normalizes by the optimal return alone; MOORE's own code, Hendawy
  et al. 2024, reports the mean raw return over tasks);
* the published PPO numbers in the second normalization, from the rerun of MOORE's code at 400k env steps per
  task and 30 seeds (Todorov et al., TMLR 2025, Table 1), to read beside ours (a DQN at 200k steps, 10 seeds).

x / optimal counts what a random policy already scores (0.19 on MemoryS11), so it is always the higher of the
two; only it compares with the published numbers, and only loosely (another algorithm, budget and seed count).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from mtdqn.analysis.aggregate import aggregate_intervals
from mtdqn.studies.presets import MOORE_MT3, MOORE_MT5, MOORE_MT7

# Todorov et al. 2025, Table 1 (MOORE's code rerun, 400k steps per task, 30 seeds): IQM of return / optimal return,
# for MOORE's task sets only (another set of as many tasks is another benchmark)
PUBLISHED = {
    frozenset(MOORE_MT3): {"MTPPO (shared trunk)": 0.70, "MoE": 0.74, "MOORE": 0.78},
    frozenset(MOORE_MT5): {"MTPPO (shared trunk)": 0.65, "MoE": 0.77, "MOORE": 0.84},
    frozenset(MOORE_MT7): {"MTPPO (shared trunk)": 0.72, "MoE": 0.80, "MOORE": 0.87},
}
REPS, SEED = 2000, 0  # bootstrap resamples and the numpy seed around rliable (its intervals are reproducible)


def _estimate(scores: np.ndarray) -> str:
    e = aggregate_intervals(scores, REPS, SEED)["IQM"]
    return f"{e.value:.3f}" if np.isnan(e.lo) else f"{e.value:.3f} [{e.lo:.3f}, {e.hi:.3f}]"


def table(study: Path) -> str:
    data = study / "report" / "data"
    if not (data / "per_seed.parquet").is_file():
        raise SystemExit(f"error: {data / 'per_seed.parquet'} not found: run `mtdqn report {study}` first")
    per_seed = pd.read_parquet(data / "per_seed.parquet")
    anchors = pd.read_parquet(data / "normalization.parquet").set_index("task")
    tasks = list(dict.fromkeys(per_seed["task"]))
    if not all(t.startswith("MiniGrid-") for t in tasks):
        raise SystemExit(f"error: {study} is not a MiniGrid study (tasks: {', '.join(tasks)})")
    unanchored = [t for t in tasks if t not in anchors.index or not anchors.loc[t, "used"]]
    if unanchored:
        raise SystemExit(f"error: {unanchored[0]} has no normalization anchors in the report: nothing to normalize by")
    final = per_seed.pivot_table(index=["variant", "seed"], columns="task", values="final_return")[tasks]
    random, optimal = anchors.loc[tasks, "random_return"].to_numpy(), anchors.loc[tasks, "reference_return"].to_numpy()
    short = [t.removeprefix("MiniGrid-").removesuffix("-v0") for t in tasks]
    lines = ["| variant | " + " | ".join(short) + " | aggregate IQM | aggregate IQM, x / optimal |",
             "|---" * (len(tasks) + 3) + "|"]
    for variant in dict.fromkeys(per_seed["variant"]):
        x = final.loc[variant].to_numpy(np.float64)  # (seeds, tasks)
        ours = (x - random) / (optimal - random)
        cells = [_estimate(ours[:, [i]]) for i in range(len(tasks))]
        lines.append(f"| `{variant}` ({len(x)} seeds) | " + " | ".join(cells)
                     + f" | {_estimate(ours)} | {_estimate(x / optimal)} |")
    published = PUBLISHED.get(frozenset(tasks), {})
    for name, value in published.items():
        lines.append(f"| {name}, PPO, 400k steps, 30 seeds (Todorov et al. 2025, Table 1) | "
                     + " | ".join("—" for _ in tasks) + f" | — | {value:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("study", type=Path, help="a study directory whose report was written")
    print(table(parser.parse_args(argv).study))
    return 0


if __name__ == "__main__":
    sys.exit(main())
