"""One agent per config per process (mtdqn.train.agent.make_agent): the same config gives the same agent, so
the programs keyed by it compile once; another config (by its hash), a name registered again or removed, or a
cleared cache build afresh; the memory check is not cached.  Configs that differ only in how they train share
one compiled evaluation (mtdqn.train.agent.policy_agent)."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest
from helpers import TINY

import mtdqn
import mtdqn.train.agent
from mtdqn.errors import ConfigError, InsufficientResources
from mtdqn.evaluate import _rollout_all, evaluate_params
from mtdqn.networks import init_params
from mtdqn.tasks import custom
from mtdqn.train.agent import clear_agent_cache, make_agent, policy_agent
from mtdqn.train.chunks import make_runner
from mtdqn.train.run import train

OWN = dataclasses.replace(TINY, seed=TINY.seed + 40)  # no other test builds it: this file's order is its own


def test_the_same_config_is_the_same_agent_and_runner():
    agent = make_agent(OWN)
    assert make_agent(dataclasses.replace(OWN)) is agent  # equal configs, not only the same object
    assert make_agent(dataclasses.replace(OWN, seed=OWN.seed + 1)) is not agent
    assert make_runner(agent, 0)[1] is make_runner(agent, 0)[1]
    clear_agent_cache()
    assert make_agent(OWN) is not agent


def test_equal_configs_with_another_hash_are_other_agents():
    """tau=1 == tau=1.0 in Python, but the config's hash (what run folders and studies compare) differs: each
    run must record its own config, so each gets its own agent.  A list of tasks (unhashable) builds too."""
    one = dataclasses.replace(OWN, dqn=dataclasses.replace(OWN.dqn, tau=1))
    other = dataclasses.replace(OWN, dqn=dataclasses.replace(OWN.dqn, tau=1.0))
    assert one == other and make_agent(one) is not make_agent(other)
    assert make_agent(one).cfg.dqn.tau == 1 and isinstance(make_agent(one).cfg.dqn.tau, int)
    assert make_agent(dataclasses.replace(OWN, tasks=list(OWN.tasks))).task_set.names == tuple(OWN.tasks)


def test_a_name_registered_again_or_removed_builds_afresh():
    from chain_env import Chain, make_chain

    cfg = dataclasses.replace(OWN, tasks=("CacheChain-v0",))
    try:
        mtdqn.register_task("CacheChain-v0", Chain)
        first = make_agent(cfg)
        assert make_agent(cfg) is first
        mtdqn.register_task("CacheChain-v0", make_chain)  # a notebook cell run again: maybe another environment
        assert make_agent(cfg) is not first
    finally:
        custom.REGISTERED.pop("CacheChain-v0", None)
    with pytest.raises(ConfigError, match="CacheChain-v0"):
        make_agent(cfg)


def test_the_memory_check_runs_for_a_cached_agent(monkeypatch):
    make_agent(OWN)
    monkeypatch.setattr(mtdqn.train.agent, "available_host_memory", lambda: 1)
    with pytest.raises(InsufficientResources):
        make_agent(OWN)


@pytest.mark.slow
def test_a_config_trained_again_in_this_process_is_not_compiled_again(tmp_path):
    """The second run finds the first's program (a retrace and a compile take a second or more here)."""
    first = train(OWN, tmp_path / "first", progress=False, eval_episodes=2).summary["compile_s"]
    again = train(OWN, tmp_path / "again", progress=False, eval_episodes=2).summary["compile_s"]
    assert again < 0.3, (first, again)


def test_configs_that_train_differently_share_one_evaluation_program_and_its_numbers():
    """Another learning rate, batch size or strategy: the same policy rollout (the same network, tasks and
    discounts), compiled once; another network or discount: its own.  Evaluated alone (a cleared cache),
    a config gets the same returns as through the program another config compiled."""
    own = dataclasses.replace(OWN, seed=OWN.seed + 1)
    trains_otherwise = dataclasses.replace(own, strategy="pcgrad", dqn=dataclasses.replace(
        own.dqn, lr=3e-3, batch_size=16))
    first, second = make_agent(own), make_agent(trains_otherwise)
    assert first is not second and policy_agent(second) is policy_agent(first)
    for other in (dataclasses.replace(own, network=dataclasses.replace(own.network, hidden=(16, 16))),
                  dataclasses.replace(own, dqn=dataclasses.replace(own.dqn, gamma=0.9))):
        assert policy_agent(make_agent(other)) is not policy_agent(first)

    params = jax.vmap(lambda k: init_params(second.arch, k))(jax.random.split(jax.random.PRNGKey(3), 2))
    evaluate_params(first, params, seed=5, episodes=2)
    compiled = _rollout_all._cache_size()
    shared = evaluate_params(second, params, seed=5, episodes=2)
    assert _rollout_all._cache_size() == compiled  # served by the program the first evaluation compiled
    clear_agent_cache()
    alone = evaluate_params(make_agent(trains_otherwise), params, seed=5, episodes=2)
    assert _rollout_all._cache_size() == compiled + 1  # its own program, compiled for it alone
    np.testing.assert_array_equal(alone.total, shared.total)
    np.testing.assert_array_equal(alone.discounted, shared.discounted)
