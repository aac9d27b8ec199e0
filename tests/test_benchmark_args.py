"""The benchmark scripts' bad arguments: argparse's one line and exit 2, never a traceback (a walk-through's
`iteration_parts.py --sets nosuch` raised KeyError, `--ablate --rounds 0` printed a header and then one)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
SCRIPT = BENCHMARKS / "iteration_parts.py"


@pytest.mark.parametrize("argv, message", [(["--sets", "nosuch"], "--sets: unknown task set 'nosuch'"),
                                           (["--ablate", "--rounds", "0"], "--rounds and --iters must be at least 1")])
def test_iteration_parts_refuses_bad_arguments_in_one_line(argv, message):
    out = subprocess.run([sys.executable, str(SCRIPT), *argv], capture_output=True, text=True)
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.strip().splitlines()[-1] == f"iteration_parts.py: error: {message}" + (
        "; choose from classic, minatar" if "nosuch" in argv else "")
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize("argv, message", [
    (["--rounds", "0"], "throughput.py: error: --rounds and --iters must be at least 1"),
    (["--against", "no-such-rev"], "error: --against 'no-such-rev' is not a git revision")])
def test_throughput_refuses_bad_arguments_with_exit_2(argv, message):
    """They exited 1, an environment problem's status; bad input is 2, as argparse's own refusals."""
    out = subprocess.run([sys.executable, str(BENCHMARKS / "throughput.py"), *argv], capture_output=True, text=True)
    assert out.returncode == 2 and out.stderr.strip().splitlines()[-1].startswith(message), out.stderr


def test_paired_products_refuses_zero_rounds():
    out = subprocess.run([sys.executable, str(BENCHMARKS / "paired_products.py"), "--rounds", "0"],
                         capture_output=True, text=True)
    assert out.returncode == 2 and out.stdout == "" and "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines()[-1] == "paired_products.py: error: --rounds must be at least 1"
