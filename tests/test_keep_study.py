"""benchmarks/keep_study.py: a study's finished cells kept without their checkpoints (no training)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _keep(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "benchmarks" / "keep_study.py"), *args],
                          capture_output=True, text=True)


def _study(root: Path) -> Path:
    root.mkdir()
    (root / "study.json").write_text('{"name": "s"}')
    for cell, finished in (("shared", True), ("moe", False)):
        path = root / "cells" / cell
        (path / "checkpoints" / "iter_000001").mkdir(parents=True)
        (path / "tb").mkdir()
        for name in ("config.json", "metrics.parquet", "evals.parquet", "metrics.csv"):
            (path / name).write_text(f"{cell} {name}")
        if finished:
            (path / "summary.json").write_text("{}")
    return root


def test_finished_cells_are_kept_without_checkpoints_and_unfinished_ones_are_named(tmp_path):
    study, dest = _study(tmp_path / "study"), tmp_path / "kept"
    (dest / "cells" / "shared").mkdir(parents=True)
    (dest / "cells" / "shared" / "stale.parquet").write_text("from an earlier keep")  # replaced whole
    done = _keep(str(study), str(dest))
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (dest / "cells").iterdir()) == ["shared"]
    assert sorted(p.name for p in (dest / "cells" / "shared").iterdir()) == [
        "config.json", "evals.parquet", "metrics.parquet", "summary.json"]
    assert (dest / "cells" / "shared" / "metrics.parquet").read_text() == "shared metrics.parquet"
    assert (dest / "study.json").read_text() == '{"name": "s"}'
    assert "not finished, left out: moe" in done.stdout


def test_not_a_study_and_an_unknown_cell_are_one_line_errors_that_write_nothing(tmp_path):
    study, dest = _study(tmp_path / "study"), tmp_path / "kept"
    for args, message in (([str(tmp_path), str(dest)], "is not a study directory"),
                          ([str(study), str(dest), "--cells", "shared,nope"], "no cell nope in")):
        done = _keep(*args)
        assert done.returncode != 0 and message in done.stderr and len(done.stderr.strip().splitlines()) == 1
        assert not dest.exists()
