"""benchmarks/minigrid_aliasing.py, the README's reason RedBlueDoors stays at 0: its counts and its table."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def aliasing():
    """benchmarks/minigrid_aliasing.py as a module (benchmarks/ is not a package)."""
    spec = importlib.util.spec_from_file_location("minigrid_aliasing", ROOT / "benchmarks" / "minigrid_aliasing.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow  # ~2 s: it compiles MiniGrid's reset and view
def test_the_blue_doors_view_hides_the_red_door_and_the_red_doors_view_shows_it(aliasing):
    """In ours and in the package's task alike; the control (facing the red door, the view differs) is what
    makes 'the same view' mean something: a view that encoded no door state would pass the first count too."""
    pytest.importorskip("minigrid")
    assert aliasing.ours_aliased(4) == (4, 4)
    assert aliasing.package_aliased(4) == (4, 4)


def test_the_training_table_splits_each_cell_by_epsilon_and_weights_windows_by_episodes(aliasing, tmp_path):
    cell = tmp_path / "cells" / "shared"
    cell.mkdir(parents=True)
    task = aliasing.TASK
    pd.DataFrame({
        "task": [task, task, task, task, "MiniGrid-MemoryS11-v0"], "seed": [0, 0, 1, 1, 0],
        "epsilon": [0.9, 0.1, 0.1, 0.1, 0.1], "episodes": [3, 1, 3, 0, 5],
        "episode_length": [100.0, 700.0, 500.0, float("nan"), 9.0],
        "episode_return": [0.3, 0.0, 0.2, float("nan"), 1.0],
        "q_mean": [0.5, 0.1, 0.3, 0.5, 9.0],  # a window where no episode ended: NaN means, a Q-value
    }).to_parquet(cell / "metrics.parquet")
    rows = aliasing.training_episodes(tmp_path).splitlines()[2:]
    assert rows == ["| `shared` | 2 | > 0.7 (near random) | 100 | 0.300 | 0.500 |",  # no window in 0.1-0.7: no row
                    "| `shared` | 2 | 0.1 (its end) | 550 | 0.150 | 0.300 |"]  # (700 * 1 + 500 * 3) / 4


@pytest.mark.slow  # 1-3 s: it compiles a scan of 720 random steps
def test_a_random_policys_episodes_end_in_exactly_one_way_and_only_successes_pay(aliasing):
    ends = aliasing.random_policy_endings(64)
    assert ends["success"] + ends["blue, red closed"] + ends["time limit"] == pytest.approx(1.0)
    assert 0 < ends["success"] < ends["blue, red closed"]  # near random the red door is mostly closed there
    assert 0 <= ends["time limit, red opened"] <= ends["time limit"]
    assert 0 < ends["return"] < ends["success"]  # a success pays 1 - 0.9 t / 720 < 1; nothing else pays
    assert 0 < ends["length"] <= 720
