"""Run study files one after another within a time limit, printing a line per finished cell: for a lent GPU.

A GPU session here is minutes long and its machine goes back afterwards, so this runs the studies in order,
cell by cell, and leaves each finished cell complete on disk (its own summary.json) for the caller to pack;
no report is built there (build it where the results land: ``mtdqn report STUDY_DIR``).  On the machine:

    python3 benchmarks/device_study.py benchmarks/results/minigrid_mt5.toml=/tmp/mt5 \
        benchmarks/results/minigrid_mt7.toml=/tmp/mt7

It is the ordinary study runner (:func:`mtdqn.studies.run_study`), so a cell trained here is the cell
``mtdqn study`` trains, on whatever backend JAX picks (the report records it).  Each cell prints its
wall time, and each study the env steps per second over the cells it trained.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console


def _pair(text: str) -> tuple[str, Path]:
    spec, sep, out = text.partition("=")
    if not sep or not spec or not out:
        raise argparse.ArgumentTypeError(f"expected STUDY.toml=OUT_DIR, got {text!r}")
    return spec, Path(out)


def _only(spec: Any, variants: str) -> Any:
    """``spec`` with only the named variants, in its order (all of them for an empty list); unknown names are
    refused."""
    from mtdqn.errors import ConfigError

    names = [v.strip() for v in variants.split(",") if v.strip()]
    if variants.strip() and not names:
        raise ConfigError(f"--variants {variants!r}: no variant named (leave it out for all of them)")
    unknown = [v for v in names if v not in spec.variants]
    if unknown:
        raise ConfigError(f"--variants: {unknown} not in {spec.name}'s variants {list(spec.variants)}")
    kept = {v: options for v, options in spec.variants.items() if v in names}  # the study's order
    return dataclasses.replace(spec, variants=kept) if names else spec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("studies", nargs="+", type=_pair, help="STUDY.toml=OUT_DIR, run in this order")
    parser.add_argument("--variants", default="", help="comma-separated: train only these variants of each study "
                        "(several processes can share one GPU, each its own variants and OUT_DIRs; copy their "
                        "cells/ and one study.json into one study directory, then `mtdqn study STUDY.toml --out "
                        "DIR` finds every cell done and writes the report)")
    args = parser.parse_args()

    import jax

    from mtdqn.devices import unroll_cpu_threefry
    from mtdqn.errors import ConfigError
    from mtdqn.studies import cell_configs, cell_status, resolve_spec, run_study
    from mtdqn.studies.cell import check_out_dir

    unroll_cpu_threefry()  # only CPU programs change; a no-op on a GPU backend
    console = Console(highlight=False, soft_wrap=True)
    console.print(f"JAX {jax.__version__}, backend {jax.default_backend()}: {jax.devices()}")
    try:  # every study file, output folder and finished cell checked before anything is written
        specs = [(_only(resolve_spec(spec_path, {}), args.variants), out) for spec_path, out in args.studies]
        todo = []
        for spec, out in specs:
            check_out_dir(out, spec.name)
            todo.append(sum(cell_status(c, out / "cells" / c.variant) != "done" for c in cell_configs(spec)))
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    for (spec, out), cells in zip(specs, todo):
        started = time.perf_counter()
        run_study(spec, out, progress=False, console=console, report=False)
        took = time.perf_counter() - started
        work = len(spec.tasks) * spec.steps * spec.seeds * cells  # the cells trained here, not those skipped
        console.print(f"{spec.name}: {cells} cells trained in {took:.0f} s ({work / took:,.0f} env steps/s "
                      "over them, compiles included)")


if __name__ == "__main__":
    main()
