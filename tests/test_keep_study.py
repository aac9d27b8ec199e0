"""benchmarks/keep_study.py: a study's finished cells kept without their checkpoints (no training)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("keep_study", ROOT / "benchmarks" / "keep_study.py")
keep_study = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(keep_study)


@pytest.fixture
def keep(monkeypatch, capsys):
    """Run the script's main on ``args``: its exit code, stdout and stderr."""
    def run(*args: str) -> SimpleNamespace:
        monkeypatch.setattr(sys, "argv", ["keep_study.py", *args])
        code = 0
        try:
            keep_study.main()
        except SystemExit as exc:
            code = 0 if exc.code is None else exc.code
        out = capsys.readouterr()
        return SimpleNamespace(returncode=code, stdout=out.out, stderr=out.err)

    return run


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


def test_finished_cells_are_kept_without_checkpoints_and_unfinished_ones_are_named(tmp_path, keep):
    study, dest = _study(tmp_path / "study"), tmp_path / "kept"
    (dest / "cells" / "shared").mkdir(parents=True)
    (dest / "cells" / "shared" / "stale.parquet").write_text("from an earlier keep")  # replaced whole
    done = keep(str(study), str(dest))
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (dest / "cells").iterdir()) == ["shared"]
    assert sorted(p.name for p in (dest / "cells" / "shared").iterdir()) == [
        "config.json", "evals.parquet", "metrics.parquet", "summary.json"]
    assert (dest / "cells" / "shared" / "metrics.parquet").read_text() == "shared metrics.parquet"
    assert (dest / "study.json").read_text() == '{"name": "s"}'
    assert "not finished, left out: moe" in done.stdout


def test_a_transfer_studys_pretraining_run_is_kept_beside_its_cells(tmp_path, keep):
    study, dest = _study(tmp_path / "study"), tmp_path / "kept"
    (study / "pretrain" / "checkpoints").mkdir(parents=True)
    for name in ("config.json", "summary.json", "metrics.parquet"):
        (study / "pretrain" / name).write_text(name)
    assert keep(str(study), str(dest)).returncode == 0
    assert sorted(p.name for p in (dest / "pretrain").iterdir()) == ["config.json", "metrics.parquet", "summary.json"]


def test_bad_requests_are_one_line_errors_that_write_nothing(tmp_path, keep):
    """Not a study; an unknown cell; only unfinished cells; DEST the study itself or inside it (that once
    deleted the cells' checkpoints it was copying from)."""
    study, dest = _study(tmp_path / "study"), tmp_path / "kept"
    before = sorted(str(p) for p in study.rglob("*"))
    for args, message in (([str(tmp_path), str(dest)], "is not a study directory"),
                          ([str(study), str(dest), "--cells", "shared,nope"], "no cell nope in"),
                          ([str(study), str(dest), "--cells", "moe"], "no finished cell to keep"),
                          ([str(study), str(study)], "must not contain each other"),
                          ([str(study), str(study / "cells")], "must not contain each other")):
        done = keep(*args)
        assert done.returncode == 2 and message in done.stderr and len(done.stderr.strip().splitlines()) == 1, args
        assert not dest.exists()
    assert sorted(str(p) for p in study.rglob("*")) == before
