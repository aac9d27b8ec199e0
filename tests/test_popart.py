"""PopArt: output-preserving rescaling, statistics that track targets, a short training run."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mtdqn.config import DQNConfig, NetworkConfig, TrainConfig
from mtdqn.errors import ConfigError
from mtdqn.networks import init_params, make_architecture
from mtdqn.networks import q_values as network_q
from mtdqn.tasks import make_task_set
from mtdqn.train.agent import make_agent
from mtdqn.train.loop import make_trainer, seed_keys
from mtdqn.train.step import act
from mtdqn.value_norm import (
    PopArtStats,
    normalize,
    popart_init,
    popart_step,
    rescale_heads,
    sigma,
    unnormalize,
    update_stats,
)

TASKS = ("CartPole-v1:reward_scale=100", "Acrobot-v1")
NET = NetworkConfig(hidden=(16, 16), adapter_width=8)


@pytest.fixture(scope="module")
def net():
    arch = make_architecture(make_task_set(TASKS), NET)
    params = init_params(arch, jax.random.PRNGKey(0))
    obs = jax.random.normal(jax.random.PRNGKey(1), (2, 32, *arch.obs_shape))
    return arch, params, obs


def stats(mean, std) -> PopArtStats:
    mean, std = jnp.asarray(mean, jnp.float32), jnp.asarray(std, jnp.float32)
    return PopArtStats(mean, std**2 + mean**2)


def test_sigma_and_normalize_roundtrip():
    s = stats([5.0, -300.0], [2.0, 40.0])
    np.testing.assert_allclose(sigma(s), [2.0, 40.0], rtol=1e-5)
    y = jnp.asarray([[1.0, 9.0], [-340.0, -260.0]])
    np.testing.assert_allclose(normalize(s, y), [[-2.0, 2.0], [-1.0, 1.0]], rtol=1e-5)
    np.testing.assert_allclose(unnormalize(s, normalize(s, y)), y, rtol=1e-6)
    np.testing.assert_allclose(sigma(popart_init(3)), 1.0)


@pytest.mark.parametrize("new_mean,new_std", [([100.0, -50.0], [30.0, 5.0]), ([0.0, 0.0], [1e-3, 1e4])])
def test_rescale_preserves_unnormalized_q(net, new_mean, new_std):
    arch, params, obs = net
    old, new = stats([3.0, -1.0], [2.0, 0.5]), stats(new_mean, new_std)
    before = unnormalize(old, network_q(arch, params, obs))
    rescaled = {**params, "heads": rescale_heads(params["heads"], old, new)}
    after = unnormalize(new, network_q(arch, rescaled, obs))
    np.testing.assert_allclose(after, before, rtol=1e-5, atol=1e-5 * float(np.abs(before).max()))
    assert not np.allclose(network_q(arch, rescaled, obs), network_q(arch, params, obs))
    key = jax.random.PRNGKey(2)  # greedy actions need no statistics
    np.testing.assert_array_equal(act_of(arch, params, obs, key), act_of(arch, rescaled, obs, key))


def act_of(arch, params, obs, key):
    agent = make_agent(TrainConfig(tasks=TASKS, network=NET))
    return act(agent, params, obs, key, jnp.float32(0.0))


def test_popart_step_preserves_online_and_target_q_and_normalizes_targets(net):
    arch, params, obs = net
    target_params = init_params(arch, jax.random.PRNGKey(5))
    old = stats([0.0, 0.0], [1.0, 1.0])
    targets = jnp.stack([jnp.linspace(500.0, 900.0, 32), jnp.linspace(-20.0, -10.0, 32)])
    new, p2, t2, y = popart_step(old, params, target_params, targets, beta=0.5)
    for before, after in ((params, p2), (target_params, t2)):
        q0 = unnormalize(old, network_q(arch, before, obs))
        np.testing.assert_allclose(unnormalize(new, network_q(arch, after, obs)), q0, rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(unnormalize(new, y), targets, rtol=1e-5)
    assert float(jnp.abs(y).max()) < float(jnp.abs(targets).max()) / 10  # targets got much smaller
    assert p2["torso"] is params["torso"]  # only the heads change


def test_stats_track_a_shifting_target():
    s = popart_init(2)
    rng = np.random.default_rng(0)
    update = jax.jit(lambda s, y: update_stats(s, y, beta=0.01))
    for mean, std in (((10.0, -1.0), (1.0, 0.1)), ((1000.0, 5.0), (100.0, 2.0)), ((-50.0, 0.0), (5.0, 1.0))):
        for _ in range(1500):
            y = rng.normal(mean, std, size=(64, 2)).T.astype(np.float32)
            s = update(s, jnp.asarray(y))
        np.testing.assert_allclose(s.mean, mean, rtol=0.05, atol=0.05)
        np.testing.assert_allclose(sigma(s), std, rtol=0.1)


def test_popart_needs_per_task_heads():
    with pytest.raises(ConfigError, match="per-task heads"):
        make_agent(TrainConfig(tasks=TASKS, value_norm="popart", network=NetworkConfig(sharing="conditioned")))


@pytest.mark.slow
def test_short_popart_training_run_stays_finite():
    cfg = TrainConfig(
        tasks=TASKS, steps=4000, log_every=2000, num_envs=4, value_norm="popart", network=NET,
        dqn=DQNConfig(batch_size=32, buffer_size=1000, learning_starts=400, train_every=4, target_update_every=50, tau=1.0),
    )
    trainer = make_trainer(make_agent(cfg))
    state = trainer.init(seed_keys([0]))
    for chunk in range(trainer.agent.derived.num_chunks):
        state, m = trainer.run_chunk(state, jnp.int32(chunk * trainer.agent.derived.iters_per_chunk))
        for name in ("loss", "q_mean", "grad_norm", "cosine"):
            assert np.isfinite(m[name]).all(), name
    s = state.value_norm
    assert np.isfinite(s.mean).all() and np.isfinite(s.second).all()
    scale = np.asarray(sigma(jax.tree.map(lambda x: x[0], s)))
    assert scale[0] > 3 * scale[1]  # CartPole's x100 targets have a much larger spread than Acrobot's
    assert np.isfinite(jax.tree.leaves(state.params)[0]).all()
    assert int(state.updates[0]) == 900


@pytest.mark.parametrize("strategy", ["gradnorm", "dwa"])
def test_training_rates_read_the_loss_in_reward_units(strategy):
    """gradnorm's L_i(t) / L_i(0) and dwa's window ratios are training rates: under PopArt they read sigma_i^2
    times the normalized loss, so two states whose Q-values are the same but whose statistics differ (sigma 1
    against 10, the heads rescaled to match) give them the same losses.  Was: the normalized loss, 100x apart
    here, so a task whose sigma grew read as a task that learned (a review: identical TD errors moved gradnorm's
    weights to 0.10 / 1.90)."""
    from mtdqn.train import step
    from mtdqn.train.loop import init_state

    cfg = TrainConfig(tasks=TASKS, network=NET, value_norm="popart", strategy=strategy,
                      dqn=DQNConfig(batch_size=16, buffer_size=64, loss="mse"))
    agent = make_agent(cfg)
    state = jax.jit(lambda k: init_state(agent, k))(jax.random.PRNGKey(0))
    fill = jax.jit(lambda s, k: step.env_step(agent, s, k, jnp.float32(1.0))[0])
    for i in range(4):
        state = fill(state, jax.random.PRNGKey(i))
    wide = PopArtStats(state.value_norm.mean, state.value_norm.second * 100.0)  # mu 0: sigma 1 -> 10
    scaled = state.replace(
        value_norm=wide,
        params={**state.params, "heads": rescale_heads(state.params["heads"], state.value_norm, wide)},
        target_params={**state.target_params,
                       "heads": rescale_heads(state.target_params["heads"], state.value_norm, wide)})
    update = jax.jit(lambda s: step.update(agent, s, jax.random.PRNGKey(7)))
    (a, metrics_a), (b, metrics_b) = update(state), update(scaled)
    assert not np.allclose(metrics_a["loss"], metrics_b["loss"], rtol=0.5)  # the trained losses: ~100x apart
    np.testing.assert_allclose(b.strategy_state.loss_sum, a.strategy_state.loss_sum, rtol=1e-3)
