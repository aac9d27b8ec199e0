"""benchmarks/device_study.py (studies on a lent GPU, some variants per process) and the MT5 cell it brought
back: no training here."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from mtdqn.errors import ConfigError
from mtdqn.studies import cell_configs, cell_status, resolve_spec

ROOT = Path(__file__).resolve().parents[1]
MT5 = ROOT / "benchmarks" / "results" / "minigrid_mt5.toml"


def _bench():
    spec = importlib.util.spec_from_file_location("device_study", ROOT / "benchmarks" / "device_study.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow  # validates the study file's seven variants (builds each agent): ~2.5 s
def test_only_keeps_the_named_variants_in_the_study_order_and_refuses_unknown_ones():
    bench = _bench()
    spec = resolve_spec(str(MT5), {})
    assert list(bench._only(spec, "moe, independent").variants) == ["independent", "moe"]
    assert bench._only(spec, "").variants == spec.variants
    with pytest.raises(ConfigError, match=r"--variants: \['nope'\] not in minigrid-mt5's variants"):
        bench._only(spec, "moe,nope")


@pytest.mark.slow  # validates the study file (builds each agent): ~2 s
def test_a_bad_pair_or_variant_is_one_line_and_exit_2(tmp_path, capsys, monkeypatch):
    """The script's main() in this process (as `python benchmarks/device_study.py ...` runs it: argparse's
    exit 2 and the one-line ConfigError), three bad command lines; nothing written."""
    bench = _bench()
    (tmp_path / "file").write_text("")
    for args in ([f"{MT5}={tmp_path / 'a'}", "--variants", "nope"], [str(MT5)], [f"{MT5}={tmp_path / 'file'}"]):
        monkeypatch.setattr(sys, "argv", ["device_study.py", *args])
        with pytest.raises(SystemExit) as exit_:
            bench.main()
        assert exit_.value.code == 2, args
        err = capsys.readouterr().err
        assert "Traceback" not in err and err.strip().splitlines()[-1].startswith(("error:", "device_study.py: error"))
    assert not (tmp_path / "a").exists()  # nothing written


def test_the_kept_gpu_cell_counts_as_done_for_the_study_file():
    """benchmarks/results/minigrid_mt5_gpu/cells/independent is the file's `independent` cell: a run of the file
    into a directory holding it skips it (its config hash, thresholds and run options match)."""
    spec = resolve_spec(str(MT5), {})
    cell = next(c for c in cell_configs(spec) if c.variant == "independent")
    assert cell_status(cell, ROOT / "benchmarks" / "results" / "minigrid_mt5_gpu" / "cells" / "independent") == "done"
    shared = next(c for c in cell_configs(spec) if c.variant == "shared")
    with pytest.raises(ConfigError):  # another variant's config is a conflict, not a finished cell
        cell_status(shared, ROOT / "benchmarks" / "results" / "minigrid_mt5_gpu" / "cells" / "independent")


@pytest.mark.slow  # validates the study file's seven variants (builds each agent): ~2.5 s
def test_the_kept_cpu_cells_count_as_done_for_the_study_file():
    """benchmarks/results/minigrid_mt5_cpu/cells/ (trained from a copy of the file with checkpoints every 20k)
    are the file's cells: a GPU session given them trains only the rest."""
    spec = resolve_spec(str(MT5), {})
    kept = ROOT / "benchmarks" / "results" / "minigrid_mt5_cpu" / "cells"
    names = sorted(p.name for p in kept.iterdir())
    assert names == ["moe", "moore", "shared", "shared+pcgrad", "shared+rms", "shared+unit-norm"]
    cells = {c.variant: c for c in cell_configs(spec)}
    assert set(names) <= set(cells), f"{names} not all among the file's variants {sorted(cells)}"
    for name in names:
        assert cell_status(cells[name], kept / name) == "done", name
