"""Keep a study's results in the repository: each finished cell's tables and summary, without its checkpoints.

    python benchmarks/keep_study.py STUDY_DIR DEST [--cells shared,moe]

A MiniGrid study cell is ~1 GB with its checkpoints (the replay buffer) and TensorBoard files, and a few
hundred kB without them.  This copies what ``mtdqn report`` and ``benchmarks/minigrid_table.py`` read (the
cell's config, summary and Parquet tables) of every finished cell (one with a ``summary.json``) into
``DEST/cells/<cell>/``, and the study's record ``study.json`` into ``DEST``; ``mtdqn report DEST`` then
rebuilds the report from the repository alone.  Unfinished cells are listed and left out; a cell already in
DEST is replaced whole.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

KEPT = ("config.json", "summary.json", "metrics.parquet", "evals.parquet", "grad_probe.parquet",
        "grad_tasks.parquet", "grad_pairs.parquet", "cka.parquet", "experts.parquet")
"""What a report reads of a cell (experts.parquet: mixture cells only); checkpoints and tb/ are left behind."""


def keep_cell(cell: Path, dest: Path) -> list[str]:
    """Copy ``cell``'s kept files into ``dest`` (replaced whole, through a temporary folder); their names."""
    names = [name for name in KEPT if (cell / name).is_file()]
    partial = dest.with_name(dest.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    for name in names:
        shutil.copy2(cell / name, partial / name)
    shutil.rmtree(dest, ignore_errors=True)
    partial.rename(dest)
    return names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study", type=Path, help="a study directory (mtdqn study ... --out STUDY_DIR)")
    parser.add_argument("dest", type=Path, help="where to keep it, e.g. benchmarks/results/minigrid_mt3_cpu")
    parser.add_argument("--cells", default="", help="comma-separated cells to keep (default: every finished one)")
    args = parser.parse_args()
    if not (args.study / "study.json").is_file() or not (args.study / "cells").is_dir():
        sys.exit(f"error: {args.study} is not a study directory (no study.json and cells/)")
    cells = sorted(p for p in (args.study / "cells").iterdir() if p.is_dir())
    if args.cells:
        wanted = args.cells.split(",")
        unknown = sorted(set(wanted) - {c.name for c in cells})
        if unknown:
            sys.exit(f"error: no cell {', '.join(unknown)} in {args.study} (it has {', '.join(c.name for c in cells)})")
        cells = [c for c in cells if c.name in wanted]
    finished = [c for c in cells if (c / "summary.json").is_file()]
    for cell in finished:
        names = keep_cell(cell, args.dest / "cells" / cell.name)
        print(f"kept {cell.name}: {', '.join(names)}")
    args.dest.mkdir(parents=True, exist_ok=True)
    shutil.copy2(args.study / "study.json", args.dest / "study.json")
    left = [c.name for c in cells if c not in finished]
    if left:
        print(f"not finished, left out: {', '.join(left)}")


if __name__ == "__main__":
    main()
