"""Keep a study's results in the repository: each finished cell's tables and summary, without its checkpoints.

    python benchmarks/keep_study.py STUDY_DIR DEST [--cells shared,moe]

A MiniGrid study cell is ~1 GB with its checkpoints (the replay buffer) and TensorBoard files, and a few
hundred kB without them.  This copies what a run writes apart from those (:data:`KEPT`: its config, summary,
evaluations and Parquet tables) of every finished cell (one with a ``summary.json``) into
``DEST/cells/<cell>/``, a transfer study's finished pretraining run into ``DEST/pretrain/``, and the study's
record ``study.json`` into ``DEST``; ``mtdqn report DEST`` then rebuilds the report from the repository alone.
Unfinished cells are named and left out.  A cell already in DEST is replaced whole (cells kept one at a time as
a long study finishes them accumulate); each is written beside its place and renamed into it, so a failed copy
leaves the one before.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from mtdqn.rundir import RUN_FILES

KEPT = tuple(name for name in RUN_FILES if name not in ("checkpoints", "tb", "metrics.csv"))
"""What a run writes, less its checkpoints, TensorBoard files and the CSV copy of metrics.parquet."""


def keep_run(run: Path, dest: Path) -> list[str]:
    """Copy ``run``'s kept files into ``dest`` (replaced whole, through ``dest``.partial); their names."""
    names = [name for name in KEPT if (run / name).is_file()]
    partial = dest.with_name(dest.name + ".partial")
    try:
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        for name in names:
            shutil.copy2(run / name, partial / name)
        shutil.rmtree(dest, ignore_errors=True)
        partial.rename(dest)
    except OSError as exc:
        shutil.rmtree(partial, ignore_errors=True)
        _fail(f"keeping {run} in {dest}: {exc.strerror or exc}", 1)
    return names


def _fail(message: str, code: int = 2) -> None:
    """One line on stderr and the CLI's exit codes: 2 for bad input, 1 for the machine (a failed copy)."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(code)


def _inside(a: Path, b: Path) -> bool:
    return a == b or b in a.parents


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study", type=Path, help="a study directory (mtdqn study ... --out STUDY_DIR)")
    parser.add_argument("dest", type=Path, help="where to keep it, e.g. benchmarks/results/minigrid_mt3_cpu")
    parser.add_argument("--cells", default="", help="comma-separated cells to keep (default: every finished one)")
    args = parser.parse_args()
    study, dest = args.study.resolve(), args.dest.resolve()
    if not (study / "study.json").is_file() or not (study / "cells").is_dir():
        _fail(f"{args.study} is not a study directory (no study.json and cells/)")
    if _inside(dest, study) or _inside(study, dest):
        _fail(f"{args.dest} and the study {args.study} must not contain each other")
    cells = sorted(p for p in (study / "cells").iterdir() if p.is_dir() and not p.name.endswith(".partial"))
    if args.cells:
        wanted = [name for name in args.cells.split(",") if name]
        unknown = [name for name in wanted if name not in {c.name for c in cells}]
        if unknown:
            _fail(f"no cell {', '.join(unknown)} in {args.study} (it has {', '.join(c.name for c in cells)})")
        cells = [c for c in cells if c.name in wanted]
    finished = [c for c in cells if (c / "summary.json").is_file()]
    if not finished:
        _fail(f"no finished cell to keep in {args.study} (a finished one has a summary.json)")
    runs = [(c, dest / "cells" / c.name) for c in finished]
    if (study / "pretrain" / "summary.json").is_file():  # a transfer study's pretraining run, its cells' source
        runs.insert(0, (study / "pretrain", dest / "pretrain"))
    for run, kept in runs:
        names = keep_run(run, kept)
        print(f"kept {run.relative_to(study)}: {', '.join(names)}")
    try:
        shutil.copy2(study / "study.json", dest / "study.json")
    except OSError as exc:
        _fail(f"keeping {study / 'study.json'}: {exc.strerror or exc}", 1)
    left = [c.name for c in cells if c not in finished]
    if left:
        print(f"not finished, left out: {', '.join(left)}")


if __name__ == "__main__":
    main()
