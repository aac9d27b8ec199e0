"""The lookahead inter-task affinity (TAG): the pure function on hand-made losses, its wiring into the update,
and `mtdqn train --affinity-every` writing affinity.parquet without changing what training computes."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from helpers import TINY, TINY_ARGV, filled_state

from mtdqn.checkpoint import load_checkpoint
from mtdqn.cli import main
from mtdqn.config import (DQNConfig, NetworkConfig, TrainConfig, config_from_dict, config_hash, config_to_dict, derive,
                          first_update_iteration)
from mtdqn.replay import replay_sample
from mtdqn.rundir import RunDir, Tables, write_tensorboard
from mtdqn.train import step
from mtdqn.train.affinity import lookahead_affinity, measures_affinity
from mtdqn.train.agent import make_agent
from mtdqn.train.chunks import make_runner
from mtdqn.train.loop import make_trainer, seed_keys

ETA = 0.1


def _quadratic_losses(centres: np.ndarray):
    """Task j's loss ||theta - c_j||^2 on shared parameters {"w": theta} (the task's own parameters: none)."""
    c = jnp.asarray(centres, jnp.float32)  # (tasks, dim)
    return lambda shared: jnp.sum((shared["w"][None, :] - c) ** 2, axis=1)


def _affinity(centres: np.ndarray, theta: np.ndarray, eta: float = ETA) -> np.ndarray:
    losses = _quadratic_losses(centres)
    shared = {"w": jnp.asarray(theta, jnp.float32)}
    grads = jax.vmap(lambda c: jax.grad(lambda s: jnp.sum((s["w"] - c) ** 2))(shared))(jnp.asarray(centres))
    return np.asarray(lookahead_affinity(losses, shared, grads, eta))


def test_a_step_towards_the_same_minimum_helps_and_away_from_it_hurts():
    """theta = 0, c_0 = (1, 0).  Task 0's step goes to (2 eta, 0).  With c_1 = (2, 0) (same direction) it lowers
    L_1 from 4 to (2 - 2 eta)^2: Z_{0->1} = 1 - (1 - eta)^2 > 0.  With c_1 = (-1, 0) (opposite) it raises L_1 from
    1 to (1 + 2 eta)^2: Z_{0->1} = 1 - (1 + 2 eta)^2 < 0.  Z_{0->0} = 1 - (1 - 2 eta)^2 in both."""
    theta = np.zeros(2)
    helps = _affinity(np.array([[1.0, 0.0], [2.0, 0.0]]), theta)
    hurts = _affinity(np.array([[1.0, 0.0], [-1.0, 0.0]]), theta)
    assert helps[0, 1] == pytest.approx(1 - (1 - ETA) ** 2, rel=1e-5) and helps[0, 1] > 0
    assert hurts[0, 1] == pytest.approx(1 - (1 + 2 * ETA) ** 2, rel=1e-5) and hurts[0, 1] < 0
    for z in (helps, hurts):
        assert z[0, 0] == pytest.approx(1 - (1 - 2 * ETA) ** 2, rel=1e-5)
    # Orthogonal tasks: c_1 = (0, 1); task 0's step moves theta along x only, L_1 = 1 + (2 eta)^2 grows by a
    # second-order amount: Z_{0->1} = -(2 eta)^2.
    orthogonal = _affinity(np.array([[1.0, 0.0], [0.0, 1.0]]), theta)
    assert orthogonal[0, 1] == pytest.approx(-(2 * ETA) ** 2, rel=1e-5)


def test_a_tasks_own_step_lowers_its_loss_only_when_small_enough():
    """Z_{i->i} = 1 - (1 - 2 eta)^2 on ||theta - c||^2: > 0 for 0 < eta < 1, < 0 past it (the step overshoots)."""
    centres, theta = np.array([[1.0, 0.0], [0.0, 3.0]]), np.zeros(2)
    for eta in (1e-4, 0.01, 0.5, 0.9):
        assert (np.diag(_affinity(centres, theta, eta)) > 0).all(), eta
    assert (np.diag(_affinity(centres, theta, 1.5)) < 0).all()


def test_a_task_without_loss_gets_zero_not_nan():
    z = _affinity(np.array([[1.0, 0.0], [0.0, 0.0]]), np.zeros(2))  # L_1(theta) = 0
    assert np.isfinite(z).all() and (z[:, 1] == 0).all() and z[0, 0] > 0


SMALL = TrainConfig(tasks=("CartPole-v1", "Acrobot-v1"), steps=1000, log_every=1000, num_envs=4,
                    network=NetworkConfig(hidden=(16,), adapter_width=8),
                    dqn=DQNConfig(batch_size=16, buffer_size=256, learning_starts=0))


@pytest.mark.slow
@pytest.mark.parametrize("sharing", ["shared", "independent"])
def test_the_updates_affinity_on_a_real_network(sharing):
    """On a DQN batch: the denominator is the loss the update takes, each task's own small step lowers its own
    loss (Z_{i->i} > 0), and without shared parameters nothing moves (Z = 0)."""
    agent = make_agent(dataclasses.replace(SMALL, network=dataclasses.replace(SMALL.network, sharing=sharing)))
    state = filled_state(agent)

    @jax.jit  # one program: run eagerly, each op compiles apart
    def measure(state):
        batch = replay_sample(state.replay, jax.random.PRNGKey(3), agent.cfg.dqn.batch_size)
        targets = step.td_targets(agent, state, batch)
        losses, _, g_shared, _ = step.task_gradients(agent, state.params, batch, targets)
        return losses, g_shared, step.task_affinity(agent, state.params, batch, targets, g_shared, jnp.float32(1e-3))

    losses, g_shared, z = measure(state)
    z = np.asarray(z)
    assert z.shape == (2, 2) and np.isfinite(z).all() and (np.asarray(losses) > 0).all()
    if sharing == "independent":
        assert (z == 0).all()
        return
    assert (np.diag(z) > 0).all()
    # first order: Z_{i->j} ~ eta <g_i, g_j> / L_j
    flat = np.stack([np.concatenate([np.ravel(x[i]) for x in jax.tree.leaves(g_shared)]) for i in range(2)])
    first_order = 1e-3 * (flat @ flat.T) / np.asarray(losses)[None, :]
    np.testing.assert_allclose(z, first_order, rtol=0.05, atol=1e-6)


@pytest.mark.slow
def test_the_lookahead_steps_at_lr_not_the_decayed_rate():
    """Under the default linear --lr-schedule the lookahead took the update's decayed rate, so the average over
    training weighted early measurements more (78% of the weight in the first half): at the last update the
    measurement is now a step of --lr, as at the first."""
    agent = make_agent(SMALL)
    assert agent.cfg.dqn.lr_schedule == "linear"
    state = filled_state(agent)
    late = state.replace(updates=jnp.asarray(agent.hypers.lr_decay_updates, state.updates.dtype) - 1)

    @jax.jit
    def both(state):
        batch = replay_sample(state.replay, jax.random.PRNGKey(3), agent.cfg.dqn.batch_size)
        targets = step.td_targets(agent, state, batch)
        _, _, g_shared, _ = step.task_gradients(agent, state.params, batch, targets)
        measured = step._affinity_metrics(agent, state, batch, targets, g_shared, jax.random.PRNGKey(0), True,
                                          agent.hypers)["affinity"]
        at_lr = step.task_affinity(agent, state.params, batch, targets, g_shared, agent.hypers.lr)
        return measured, at_lr

    measured, at_lr = both(late)
    np.testing.assert_array_equal(np.asarray(measured), np.asarray(at_lr))
    assert (np.diag(np.asarray(measured)) > 0).all()  # a step of --lr, not of a rate near 0


def test_measurements_are_the_first_update_and_every_nth_after():
    d = derive(TINY)
    first, every = first_update_iteration(d), d.train_every_iters
    updates = [t for t in range(d.total_iters) if t >= d.learning_starts_iters and t % every == 0]
    assert [k for k, t in enumerate(updates) if measures_affinity(d, 100, t)] == [0, 100, 200, 300]
    assert all(bool(measures_affinity(d, 1, t)) for t in updates) and updates[0] == first
    assert measures_affinity(d, 0, first) is False


def test_the_option_is_left_out_of_the_config_at_its_default():
    """Configs made before --affinity-every keep their dict and hash; a set one round-trips."""
    assert "affinity_every" not in config_to_dict(TINY)
    on = dataclasses.replace(TINY, affinity_every=100)
    assert config_to_dict(on)["affinity_every"] == 100 and config_from_dict(config_to_dict(on)) == on
    assert config_hash(on) != config_hash(TINY)


def test_affinity_rows_go_to_tensorboard():
    class Writer:
        def __init__(self):
            self.scalars = []

        def add_scalar(self, tag, value, step):
            self.scalars.append((tag, value, step))

    tables = Tables.empty()
    tables.affinity.append({"step": 500, "seed": 3, "task_i": "CartPole-v1", "task_j": "Acrobot-v1",
                            "value": np.float32(-0.25)})
    writer = Writer()
    write_tensorboard(writer, tables, 500)
    assert writer.scalars == [("affinity/CartPole-v1->Acrobot-v1/seed3", -0.25, 500)]


def _trained_params(cfg: TrainConfig):
    """The parameters ``cfg`` ends training with: its compiled loop (the one `mtdqn train` runs, make_runner's)
    over every chunk, without a run's evaluations, probes and files, which never touch the state: conftest's
    tiny_run's parameters for TINY, bit for bit.  In the optimized phase no other test reads tiny_run, so
    building it here compiled its evaluation, gradient probe and CKA only to be thrown away (~5 s)."""
    trainer, runner = make_runner(make_agent(cfg), 0)
    state, _ = runner.start(seed_keys(trainer.agent.seeds))
    for chunk in range(trainer.agent.derived.num_chunks):
        state, _ = runner(state, chunk * trainer.agent.derived.iters_per_chunk)
    return state.params


@pytest.mark.optimized  # the same numbers as TINY's training to 1e-5 after 350 updates: as users compile (conftest)
@pytest.mark.slow
def test_train_with_affinity_every_writes_the_table_and_trains_the_same(tmp_path):
    """TINY (350 updates, the first in the window ending at 1,000 steps) measured every 100 updates: updates 0,
    100, 200 and 300, in the windows ending at 1,000, 1,500 (two) and 2,000; every ordered pair per seed.  The
    measurement does not touch the state: the parameters are TINY's trained without it (tiny_run's)."""
    argv = [*TINY_ARGV[TINY_ARGV.index("--steps"):], "--tasks", ",".join(TINY.tasks), "--affinity-every", "100"]
    main(["train", *argv, "--out", str(tmp_path / "run"), "--progress", "False", "--eval-episodes", "2"])
    table = pd.read_parquet(tmp_path / "run" / "affinity.parquet")
    assert list(table.columns) == ["step", "seed", "task_i", "task_j", "value"] and table["value"].dtype == np.float32
    pairs = {(i, j) for i in TINY.tasks for j in TINY.tasks}
    for (s, seed), g in table.groupby(["step", "seed"]):
        assert set(zip(g["task_i"], g["task_j"])) == pairs and len(g) == 4
    assert sorted(set(table["step"])) == [1000, 1500, 2000] and sorted(set(table["seed"])) == [0, 1]
    assert np.isfinite(table["value"]).all() and (table["value"] <= 1).all()
    diagonal = table[table["task_i"] == table["task_j"]]
    assert (diagonal["value"] > 0).all()  # a task's own step at --lr lowers its loss
    cfg = RunDir(tmp_path / "run").config()
    trainer = make_trainer(make_agent(cfg))
    state, _ = load_checkpoint(tmp_path / "run", cfg, jax.eval_shape(trainer.init, seed_keys(trainer.agent.seeds)))
    for mine, theirs in zip(jax.tree.leaves(state.params), jax.tree.leaves(_trained_params(TINY))):
        np.testing.assert_allclose(np.asarray(mine), np.asarray(theirs), rtol=1e-5, atol=1e-7)
