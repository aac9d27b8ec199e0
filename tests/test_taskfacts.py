"""The one table of per-task facts agrees with the environments, and stays JAX-free."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mtdqn.analysis import anchors, ranges
from mtdqn.studies.spec import default_threshold
from mtdqn.taskfacts import FACTS, facts
from mtdqn.tasks.registry import TASKS, parse_task


@pytest.mark.parametrize("task", list(FACTS))
def test_facts_match_the_environment(task):
    f = FACTS[task]
    t = parse_task(task)  # builds the environment
    assert TASKS[task] == f.kind == t.kind
    assert len(t.obs_shape) == (1 if f.kind == "vector" else 3)
    lo, hi = ranges.return_bounds(task)
    if f.threshold is not None:
        assert lo < f.threshold < hi  # a level some policy reaches and another does not
    if f.anchors is not None:
        assert lo <= f.anchors.random < f.anchors.reference <= hi
    if f.rewards.rewarded_steps not in (1, float("inf")):
        assert f.rewards.rewarded_steps == t.max_episode_steps  # rewarded every step up to the time limit


def test_every_reader_sees_the_same_row():
    """Options and the gym: prefix do not change a task's facts, for any reader."""
    for spec in ("CartPole-v1:reward_scale=100", "gym:CartPole-v1", "CartPole-v1:gamma=0.9"):
        assert facts(spec) is FACTS["CartPole-v1"]
        assert default_threshold(spec) == FACTS["CartPole-v1"].threshold
        assert anchors.lookup(spec) == FACTS["CartPole-v1"].anchors
        assert ranges.return_bounds(spec) == (0.0, 500.0)
    assert facts("MyEnv-v0") is None and default_threshold("MyEnv-v0") is None


def test_anchors_apply_only_to_the_spec_they_were_measured_for():
    """max_steps scales a MiniGrid task's success reward (the default MemoryS11's random return is 0.19, at
    max_steps=100 0.024): that spec gets no anchors, and a note saying why, so it stays out of aggregates."""
    task = "MiniGrid-MemoryS11-v0:max_steps=100"
    assert anchors.lookup(task) is None
    assert anchors.usable(task, None) == ("no fixed anchors for its options (the anchors are measured without "
                                          "max_steps, which changes its returns); left out of aggregates")
    assert anchors.lookup("gym:MiniGrid-MemoryS11-v0:obs=image") == FACTS["MiniGrid-MemoryS11-v0"].anchors
    published = "Breakout-MinAtar:sticky=0.1,actions=full,max_steps=10000"
    assert anchors.return_options(published) == ["sticky", "actions", "max_steps"]
    assert anchors.usable(published, None).startswith("no fixed anchors (no citable reference score)")
    # a threshold is a chosen level, not a measurement: it stays (the minatar preset's games rely on it)
    assert default_threshold(task) == 0.5 and default_threshold(published) == 10.0


@pytest.mark.slow
def test_the_table_and_the_analysis_import_no_jax():
    code = "import sys, mtdqn.taskfacts, mtdqn.analysis; assert 'jax' not in sys.modules, 'jax imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
