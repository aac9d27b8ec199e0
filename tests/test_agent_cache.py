"""One agent per config per process (mtdqn.train.agent.make_agent): the same config gives the same agent, so
the programs keyed by it compile once; a name registered again, a different config or a cleared cache build
afresh; the memory check is not cached."""

from __future__ import annotations

import dataclasses

import pytest
from helpers import TINY

import mtdqn
import mtdqn.train.agent
from mtdqn.errors import InsufficientResources
from mtdqn.train.agent import clear_agent_cache, make_agent
from mtdqn.train.chunks import make_runner


def test_the_same_config_is_the_same_agent_and_runner():
    agent = make_agent(TINY)
    assert make_agent(dataclasses.replace(TINY)) is agent  # equal configs, not only the same object
    assert make_agent(dataclasses.replace(TINY, seed=TINY.seed + 1)) is not agent
    assert make_runner(agent, 0)[1] is make_runner(agent, 0)[1]
    clear_agent_cache()
    assert make_agent(TINY) is not agent


def test_a_name_registered_again_builds_a_new_agent():
    from test_custom_env import Chain, make_chain

    mtdqn.register_task("CacheChain-v0", Chain)
    cfg = dataclasses.replace(TINY, tasks=("CacheChain-v0",))
    first = make_agent(cfg)
    assert make_agent(cfg) is first
    mtdqn.register_task("CacheChain-v0", make_chain)  # a notebook cell run again: maybe another environment
    assert make_agent(cfg) is not first


def test_the_memory_check_runs_for_a_cached_agent(monkeypatch):
    make_agent(TINY)
    monkeypatch.setattr(mtdqn.train.agent, "available_host_memory", lambda: 1)
    with pytest.raises(InsufficientResources):
        make_agent(TINY)


@pytest.mark.slow
def test_a_config_trained_again_in_this_process_is_not_compiled_again(tiny_run, tiny_run_final_eval_only):
    """The session's two runs of helpers.TINY (conftest): whichever trained second found the first's program."""
    seconds = [run.summary["compile_s"] for run in (tiny_run, tiny_run_final_eval_only)]
    assert min(seconds) < 0.05, seconds
