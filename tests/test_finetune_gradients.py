"""Frozen parameters stay out of the gradient strategies and the gradient diagnostics.

Under ``--freeze bottom:K``, ``--lora R`` and ``trunk-until`` before its
unfreeze, the strategy's coefficients, the Gram matrix and the logged
grad_norm / cosine / conflict are computed from the shared leaves that train
at that update, as if the frozen ones were not there.
"""

from __future__ import annotations

import dataclasses
from functools import partial

import jax
import numpy as np
import pytest

from helpers import filled_state
from mtdqn.config import DQNConfig, FinetuneConfig, NetworkConfig, TrainConfig
from mtdqn.finetune import unfreeze_update
from mtdqn.networks import split_shared
from mtdqn.replay import replay_sample
from mtdqn.strategies.base import task_gram
from mtdqn.train import step
from mtdqn.train.agent import make_agent

# sgd at lr 1: a parameter's change is minus the gradient the optimizer got, so the combined gradient is visible.
BASE = TrainConfig(
    tasks=("CartPole-v1", "Acrobot-v1"), steps=1000, log_every=1000, num_envs=4,
    network=NetworkConfig(hidden=(16, 16), adapter_width=8),
    dqn=DQNConfig(batch_size=32, buffer_size=256, learning_starts=0, optimizer="sgd", lr=1.0,
                  lr_schedule="constant"),
)


def _agent(strategy: str, **finetune) -> object:
    return make_agent(dataclasses.replace(BASE, strategy=strategy, finetune=FinetuneConfig(source="x", **finetune)))


@partial(jax.jit, static_argnums=0)
def _task_grads(agent, state, key):
    """(losses, per-task shared gradients, strategy key) of the update ``step.update(agent, state, key)`` takes.

    Compiled (one program per agent): run eagerly, its ~150 operations would each compile on first use."""
    k_sample, k_strategy, _ = jax.random.split(key, 3)
    batch = replay_sample(state.replay, k_sample, agent.cfg.dqn.batch_size)
    losses, _, g_shared, _ = step.task_gradients(agent, state.params, batch, step.td_targets(agent, state, batch))
    return losses, g_shared, k_strategy


def _combine(agent, *args):
    """``agent.strategy.combine(*args)``, compiled as _task_grads is."""
    return jax.jit(agent.strategy.combine)(*args)


def _diagnostics(gram):
    norms, cosine = step.grad_diagnostics(gram)
    return np.asarray(norms), np.asarray(cosine)


def _conflicting_key(agent, state, upper):
    """An update key whose two task gradients conflict on ``upper``'s leaves but not on all shared leaves, or
    the reverse: there PCGrad's coefficients on the upper layers alone differ from those on every leaf.  (The
    search is compiled once: run eagerly, each key's gradients would dispatch op by op.)"""

    @jax.jit
    def separates(state, key):
        _, g, _ = _task_grads(agent, state, key)
        return (task_gram(g, 2)[0, 1] < 0) != (task_gram(upper(g), 2)[0, 1] < 0)

    for i in range(200):
        key = jax.random.PRNGKey(1000 + i)
        if separates(state, key):
            return key
    raise AssertionError("no update key separates the two Gram matrices")


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["pcgrad", "unit-norm", "cagrad"])
def test_bottom_1_strategies_see_the_upper_layers_alone(strategy):
    agent = _agent(strategy, freeze="bottom:1")
    state = filled_state(agent)
    upper = lambda g: {"torso": {"layer_1": g["torso"]["layer_1"]}}  # noqa: E731  (layer_0 is frozen)
    key = _conflicting_key(agent, state, upper) if strategy == "pcgrad" else jax.random.PRNGKey(7)
    losses, g_shared, k_strategy = _task_grads(agent, state, key)
    gram = task_gram(upper(g_shared), agent.num_tasks)
    want, _, want_metrics = _combine(agent, upper(g_shared), gram, losses, state.strategy_state, k_strategy)
    every_leaf = _combine(agent, g_shared, task_gram(g_shared, 2), losses, state.strategy_state, k_strategy)
    assert not np.allclose(every_leaf[2]["weights"], want_metrics["weights"])  # the test tells the two apart

    new, metrics = jax.jit(lambda s, k: step.update(agent, s, k))(state, key)
    np.testing.assert_allclose(metrics["weight"], want_metrics["weights"], rtol=1e-6)
    applied = jax.tree.map(lambda a, b: a - b, state.params["torso"]["layer_1"], new.params["torso"]["layer_1"])
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), applied,
                 want["torso"]["layer_1"])  # sgd at lr 1: the step is the combined gradient
    jax.tree.map(np.testing.assert_array_equal, new.params["torso"]["layer_0"], state.params["torso"]["layer_0"])
    norms, cosine = _diagnostics(gram)
    np.testing.assert_allclose(metrics["grad_norm"], norms, rtol=1e-5)
    np.testing.assert_allclose(metrics["cosine"], cosine, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(metrics["conflict"], (cosine < 0).astype(np.float32))


@pytest.mark.slow
def test_lora_diagnostics_come_from_the_low_rank_factors_alone():
    agent = make_agent(dataclasses.replace(BASE, strategy="unit-norm",
                                           finetune=FinetuneConfig(source="x", lora_rank=2)))
    state = filled_state(agent)
    # B starts at 0 (the network starts as its source); a nonzero B gives A a gradient too.
    params = jax.tree.map(lambda x: x, state.params)
    for name in ("layer_0", "layer_1"):
        b = params["torso"][name]["lora_b"]
        params["torso"][name]["lora_b"] = 0.1 * jax.random.normal(jax.random.PRNGKey(3), b.shape, b.dtype)
    state = state.replace(params=params)
    key = jax.random.PRNGKey(5)
    losses, g_shared, k_strategy = _task_grads(agent, state, key)
    factors = {"torso": {n: {k: v for k, v in layer.items() if k.startswith("lora_")}
                         for n, layer in g_shared["torso"].items()}}
    assert len(jax.tree.leaves(factors)) == 4  # A and B of both trunk layers
    gram = task_gram(factors, agent.num_tasks)
    assert not np.allclose(gram, task_gram(g_shared, 2))  # the frozen W would dominate it
    _, metrics = jax.jit(lambda s, k: step.update(agent, s, k))(state, key)
    norms, cosine = _diagnostics(gram)
    np.testing.assert_allclose(metrics["grad_norm"], norms, rtol=1e-5)
    np.testing.assert_allclose(metrics["cosine"], cosine, rtol=1e-5, atol=1e-6)
    _, _, want = _combine(agent, factors, gram, losses, state.strategy_state, k_strategy)
    np.testing.assert_allclose(metrics["weight"], want["weights"], rtol=1e-5)


@pytest.mark.slow
def test_trunk_until_counts_as_frozen_until_it_opens():
    agent = _agent("unit-norm", freeze="trunk-until:24")  # a shared trunk only: nothing shared trains before
    start = unfreeze_update(agent.cfg.finetune, agent.derived, agent.cfg.num_envs)
    assert start == 6
    state = filled_state(agent)
    update = jax.jit(lambda s, k: step.update(agent, s, k))
    for i in range(start + 1):
        key = jax.random.PRNGKey(50 + i)
        _, g_shared, _ = _task_grads(agent, state, key)
        new, metrics = update(state, key)
        if i < start:  # the gate at 0: no trainable shared leaf, every g_i is 0
            np.testing.assert_array_equal(metrics["grad_norm"], 0.0)
            np.testing.assert_array_equal(metrics["cosine"], 0.0)
            np.testing.assert_array_equal(metrics["weight"], 0.0)  # unit-norm's guard: a zero gradient gets 0
            jax.tree.map(np.testing.assert_array_equal, new.params["torso"], state.params["torso"])
            # its target copy too (tau 0.005 every update: tau p + (1 - tau) p differed from p in ~5% of entries)
            jax.tree.map(np.testing.assert_array_equal, new.target_params["torso"], new.params["torso"])
        else:  # open: the whole trunk counts
            norms, _ = _diagnostics(task_gram(g_shared, agent.num_tasks))
            np.testing.assert_allclose(metrics["grad_norm"], norms, rtol=1e-5)
            assert not np.allclose(jax.tree.leaves(new.params["torso"])[0], jax.tree.leaves(state.params["torso"])[0])
        state = new


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["sum", "unit-norm"])
def test_trunk_until_adam_moments_see_the_trunk_before_it_opens(strategy):
    """unit-norm's coefficients came from the gated (zero) trunk, so its guard gave every task 0 and the moments
    stayed cold: steps of 2-6 times the rate after the trunk opened.  They are the strategy's on the whole
    gradients."""
    cfg = dataclasses.replace(BASE, strategy=strategy, dqn=dataclasses.replace(BASE.dqn, optimizer="adam", lr=1e-3),
                              finetune=FinetuneConfig(source="x", freeze="trunk-until:400"))
    agent = make_agent(cfg)
    state = filled_state(agent)
    new, metrics = jax.jit(lambda s, k: step.update(agent, s, k))(state, jax.random.PRNGKey(9))
    np.testing.assert_array_equal(metrics["grad_norm"], 0.0)  # the strategy and diagnostics: frozen
    jax.tree.map(np.testing.assert_array_equal, new.params["torso"], state.params["torso"])
    shape = state.params["torso"]["layer_1"]["kernel"].shape
    trunk_moments = [x for x in jax.tree.leaves(new.opt_state) if x.shape == shape]  # the trunk_later Adam's
    assert trunk_moments and all(np.abs(np.asarray(m)).sum() > 0 for m in trunk_moments)  # Adam's: warm


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["sum", "unit-norm", "pcgrad", "cagrad", "gradnorm", "uncertainty", "dwa"])
def test_every_shared_leaf_frozen_gives_zero_and_stays_finite(strategy):
    agent = _agent(strategy, freeze="trunk")
    state = filled_state(agent)
    assert split_shared(agent.arch, state.params)[0]["torso"]  # there are shared leaves, all frozen
    update = jax.jit(lambda s, k: step.update(agent, s, k))
    for i in range(3):
        new, metrics = update(state, jax.random.PRNGKey(70 + i))
        for name, value in metrics.items():
            assert np.all(np.isfinite(value)), name
        np.testing.assert_array_equal(metrics["grad_norm"], 0.0)
        np.testing.assert_array_equal(metrics["conflict"], 0.0)
        jax.tree.map(np.testing.assert_array_equal, new.params["torso"], state.params["torso"])
        assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(new.params))
        assert not np.allclose(new.params["heads"]["kernel"], state.params["heads"]["kernel"])  # heads train
        state = new
