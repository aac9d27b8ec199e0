"""Every script in examples/ runs, on a tiny budget (its ``main`` with a small network and few steps)."""

from __future__ import annotations

import runpy
from functools import partial
from pathlib import Path

import numpy as np
import pytest
from synthetic_study import REPS

import mtdqn
from mtdqn.analysis import build_report
from mtdqn.tasks import custom

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
# 1,000 env steps per task in two windows, updates from step 200 on
TINY = dict(steps=1000, log_every=500, hidden=(16,), adapter_width=8, learning_starts=200, buffer_size=1000,
            batch_size=16)
# Greedy episodes per evaluation: study_tables' study evaluates 5 and register_your_env calls run.evaluate(episodes=5).
# An evaluation program is compiled per count, so the runs evaluated with 5 too share theirs (with 2: ~3 s more).
EPISODES = 5


def _main(name: str, monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLES))  # examples import each other, as when run from their folder
    return runpy.run_path(str(EXAMPLES / f"{name}.py"), run_name=name)["main"]


def test_every_example_is_tested():
    tested = {"train_and_compare", "register_your_env", "study_tables", "finetune_best_cell"}
    assert {p.stem for p in EXAMPLES.glob("*.py")} == tested


@pytest.mark.slow
def test_train_and_compare(tmp_path, monkeypatch):
    table = _main("train_and_compare", monkeypatch)(tmp_path, seeds=1, eval_episodes=EPISODES, **TINY)
    assert list(table.columns) == ["independent", "shared"]
    assert list(table.index) == ["Acrobot-v1", "CartPole-v1"] and table.notna().all().all()


@pytest.mark.slow
def test_register_your_env(tmp_path, monkeypatch):
    try:
        q = _main("register_your_env", monkeypatch)(tmp_path, eval_episodes=EPISODES, **TINY)
    finally:
        custom.REGISTERED.pop("MyChain-v0", None)
    assert q.shape == (3, 2) and np.isfinite(q).all()


@pytest.fixture(scope="module")
def example_study(tmp_path_factory) -> tuple[Path, Path]:
    """The study_tables example run once: (its study directory, its figure); the fine-tuning example opens it.
    Its report's bootstrap intervals take REPS resamples, as the report's own tests do (tests/synthetic_study.py),
    not 2,000 (~4 s of CPU): no interval is read here, and the IQM that picks the best cell is a point estimate."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setattr("mtdqn.analysis.build_report", partial(build_report, reps=REPS))
        study = tmp_path_factory.mktemp("examples") / "study"
        return study, _main("study_tables", monkeypatch)(study, seeds=1, **TINY)


@pytest.mark.slow
def test_study_tables(example_study):
    """The figure is a readable PNG with a panel per task side by side (two, each 4 × 3 inches: about twice as
    wide as tall; one panel would be 1.3 times), not merely a non-empty file."""
    from PIL import Image

    with Image.open(example_study[1]) as image:
        assert image.format == "PNG" and image.width > 1.8 * image.height, image.size


@pytest.mark.slow
def test_finetune_best_cell(example_study, tmp_path, monkeypatch, capsys):
    run = _main("finetune_best_cell", monkeypatch)(tmp_path, seeds=1, study_dir=example_study[0], **TINY)
    returns = run.summary["final_eval"]["MountainCar-v0"]  # one greedy mean return per seed, in its range
    assert run.tasks == ("MountainCar-v0",) and len(returns) == 1 and -200 <= returns[0] <= 0, returns
    study = mtdqn.open_study(example_study[0])  # the best cell printed is the shared cell of highest IQM
    iqm = study.table("aggregates").query("metric == 'IQM'").set_index("variant")["value"]
    shared = [v for v, cell in study.cells.items() if cell.config.network.sharing != "independent"]
    assert f"best cell: {iqm[shared].idxmax()}\n" in capsys.readouterr().out
