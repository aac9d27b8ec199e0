"""benchmarks/minigrid_table.py (issue 19's MiniGrid table) on a synthetic report's tidy data: no training."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
TASKS = ("MiniGrid-LavaGapS7-v0", "MiniGrid-MemoryS11-v0")
RANDOM, OPTIMAL = {TASKS[0]: 0.0, TASKS[1]: 0.2}, {TASKS[0]: 1.0, TASKS[1]: 0.9}


def _script():
    spec = importlib.util.spec_from_file_location("minigrid_table", ROOT / "benchmarks" / "minigrid_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _study(root: Path, finals: dict[str, list[float]], tasks: tuple[str, ...] = TASKS) -> Path:
    """A study directory holding only what the script reads: per_seed and normalization tables."""
    data = root / "report" / "data"
    data.mkdir(parents=True)
    rows = [{"variant": "v", "task": task, "seed": s, "final_return": x}
            for task in tasks for s, x in enumerate(finals[task])]
    pd.DataFrame(rows).to_parquet(data / "per_seed.parquet")
    pd.DataFrame({"task": list(tasks), "random_return": [RANDOM.get(t, 0.0) for t in tasks],
                  "reference_return": [OPTIMAL.get(t, 1.0) for t in tasks], "used": True}).to_parquet(
        data / "normalization.parquet")
    return root


def test_per_task_and_aggregate_iqm_in_both_normalizations(tmp_path):
    """Five seeds: a task's IQM is the mean of its middle three normalized scores (scipy's 25% trimmed mean),
    the aggregate trims the ten scores of both tasks; x / optimal differs from (x - random) / (optimal - random)
    only where the random return is not 0 (MemoryS11 here)."""
    finals = {TASKS[0]: [0.0, 0.2, 0.4, 0.6, 1.0], TASKS[1]: [0.2, 0.2, 0.55, 0.9, 0.9]}
    text = _script().table(_study(tmp_path, finals))
    row = next(line for line in text.splitlines() if line.startswith("| `v` (5 seeds)"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    lava, memory = (np.array(finals[t]) for t in TASKS)
    memory_norm = (memory - 0.2) / 0.7
    assert cells[1].startswith(f"{np.mean([0.2, 0.4, 0.6]):.3f} [")
    assert cells[2].startswith(f"{np.mean(np.sort(memory_norm)[1:4]):.3f} [")
    both = np.sort(np.concatenate([lava, memory_norm]))
    assert cells[3].startswith(f"{np.mean(both[2:8]):.3f} [")  # trim_mean(0.25) of 10 cuts 2 from each end
    both_optimal = np.sort(np.concatenate([lava, memory / 0.9]))
    assert cells[4].startswith(f"{np.mean(both_optimal[2:8]):.3f} [")
    assert cells[3] != cells[4]


def test_published_rows_match_the_task_count_and_bad_studies_are_one_line_errors(tmp_path):
    script = _script()
    text = script.table(_study(tmp_path / "a", {t: [0.5] * 5 for t in TASKS}))
    assert "published" not in text  # two tasks: no published set of that size
    five = ("MiniGrid-LavaGapS7-v0", "MiniGrid-RedBlueDoors-6x6-v0", "MiniGrid-MemoryS11-v0",
            "MiniGrid-DoorKey-6x6-v0", "MiniGrid-DistShift1-v0")
    text = script.table(_study(tmp_path / "b", {t: [0.5] * 5 for t in five}, five))
    assert ("| MOORE, PPO, 400k steps, 30 seeds (Todorov et al. 2025, Table 1) | — | — | — | — | — | — | 0.84 |"
            in text)
    other = (*five[:4], "MiniGrid-MultiRoom-N2-S4-v0")  # five tasks, not MOORE's MT5: nothing published
    assert "published" not in script.table(_study(tmp_path / "d", {t: [0.5] * 5 for t in other}, other))
    with pytest.raises(SystemExit, match=r"run `mtdqn report .*` first"):
        script.table(tmp_path / "empty")
    with pytest.raises(SystemExit, match="is not a MiniGrid study"):
        script.table(_study(tmp_path / "c", {"CartPole-v1": [100.0] * 5}, ("CartPole-v1",)))
