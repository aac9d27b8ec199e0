"""Train two network structures on the same tasks from Python and compare their greedy returns.

    python examples/train_and_compare.py          # ~10 minutes on 2 CPU cores

Both runs see the same tasks, budget and seeds; only ``sharing`` differs: one network per task (the
baseline) against one shared trunk with a head per task.  For a comparison with intervals, significance
and a report, run a study (``examples/study_tables.py``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

import mtdqn

TASKS = ["CartPole-v1", "Acrobot-v1"]


def main(out: Path = Path("runs/examples/compare"), steps: int = 100_000, seeds: int = 3,
         **options: Any) -> pd.DataFrame:
    """Train ``independent`` and ``shared`` (``options``: any other train option, e.g. a smaller network);
    returns the final greedy return per structure and task, the mean over seeds."""
    finals = {}
    for sharing in ("independent", "shared"):
        run = mtdqn.train(tasks=TASKS, steps=steps, seeds=seeds, out=out / sharing, sharing=sharing,
                          progress=False, force=True, **options)
        last = run.evals[run.evals.step == run.evals.step.max()]  # the end-of-training evaluation
        finals[sharing] = last.groupby("task").return_mean.mean()
    table = pd.DataFrame(finals)
    print(table.round(1).to_string())
    return table


if __name__ == "__main__":
    main()
