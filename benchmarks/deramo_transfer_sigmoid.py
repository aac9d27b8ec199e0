"""`mtdqn study deramo-transfer` with the paper's sigmoid features: does our relu explain the frozen gap?

D'Eramo et al.'s multi-task network ends its shared layers in a sigmoid
(``dqn/networks.py`` of carloderamo/shared, the ``features`` argument); the
`deramo` presets use relu there (``--feature-activation relu``, our default).
A frozen trunk is where that choice would show most, so this runs the
transfer preset's pretraining and its paper variants (scratch, frozen,
unfreeze-at-k) with ``feature_activation = "sigmoid"`` everywhere, and prints
its transfer table beside the relu study's, when that one is on disk.

    python benchmarks/deramo_transfer_sigmoid.py                 # ~11 min of 2 cores (10 seeds)
    python benchmarks/deramo_transfer_sigmoid.py --seeds 5 --steps 20000
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=None)
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--out", type=Path, default=Path("runs/study-deramo-transfer-sigmoid"))
    ap.add_argument("--relu-study", type=Path, default=Path("runs/study-deramo-transfer"))
    args = ap.parse_args()

    from mtdqn.devices import unroll_cpu_threefry, use_cpu_cores

    use_cpu_cores()  # one device per core, as `mtdqn study deramo-transfer` runs
    unroll_cpu_threefry()
    from mtdqn.studies.presets import deramo_transfer_preset
    from mtdqn.studies.transfer import run_transfer_study

    spec = deramo_transfer_preset(args.seeds, args.steps)
    spec = dataclasses.replace(spec, name="deramo-transfer-sigmoid", variants=("scratch", "frozen", "unfreeze-at-k"),
                               options={**spec.options, "feature_activation": "sigmoid"})
    result = run_transfer_study(spec, args.out)
    print((result.out_dir / "transfer.md").read_text())
    relu = args.relu_study / "transfer.md"
    if relu.is_file():
        print(f"relu features ({relu}):\n")
        print(relu.read_text())


if __name__ == "__main__":
    main()
