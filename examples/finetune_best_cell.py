"""Fine-tune from a study's best cell: the variant with the highest normalized final score, on a new task.

    python examples/finetune_best_cell.py

The study (``examples/study_tables.py``; rerunning it skips finished cells) ranks its variants with a
shared trunk by the IQM of their normalized final scores (the report's ``aggregates`` table, against
fixed anchors per task).  The best cell's trunk is then loaded and frozen while MountainCar's adapter
and head learn on top of it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mtdqn

NETWORK = ("hidden", "adapter_width")  # network options: the fine-tuned run takes them from the source cell

from study_tables import run_study  # noqa: I001  (the example beside this one)


def best_variant(study: mtdqn.Study) -> str:
    """The variant with the highest IQM of normalized final scores among those with a shared trunk (one
    network per task has no trunk to transfer)."""
    sharing = [v for v, run in study.cells.items() if run.config.network.sharing != "independent"]
    iqm = study.table("aggregates").query("metric == 'IQM'").set_index("variant")["value"]
    return str(iqm[sharing].idxmax())


def main(out: Path = Path("runs/examples"), steps: int = 100_000, seeds: int = 5, study_dir: Path | None = None,
         **options: Any) -> mtdqn.Run:
    """Fine-tune from the best cell of the study in ``study_dir`` (an existing one, opened), or of the example
    study run here; returns the fine-tuned run."""
    study = mtdqn.open_study(study_dir) if study_dir else run_study(out / "study", steps, seeds, **options)
    best = best_variant(study)
    print(f"best cell: {best}")
    training = {k: v for k, v in options.items() if k not in NETWORK}  # the network's shape is the cell's
    run = mtdqn.finetune(study.cells[best].path, tasks=["MountainCar-v0"], out=out / f"finetune-{best}",
                         freeze="trunk", steps=steps, seeds=seeds, progress=False, force=True, **training)
    start, end = run.json("start")["start_eval"], run.summary["final_eval"]  # greedy returns per seed
    for task in end:
        print(f"{task}: {start[task]} at the start -> {end[task]} at the end")
    return run


if __name__ == "__main__":
    main()
