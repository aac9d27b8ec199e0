"""End-of-run probes (mtdqn.diagnostics), gradient rows only for windows with updates and no experts table without
experts, on a tiny trained run; a run without probes trains the same numbers."""

from __future__ import annotations

import jax
import numpy as np
import pandas as pd
import pytest
from helpers import TINY

from mtdqn.diagnostics import PROBE_KEY, PROBE_PAIRS, minibatch_cosines

pytestmark = pytest.mark.slow  # every test reads the session's trained run


@pytest.fixture(scope="module")
def run(tiny_run):
    """helpers.TINY, trained once per session (conftest.py): learning starts at 600 env steps, so the first
    logging window (to 500) has no update and the second straddles the start."""
    return tiny_run


@pytest.fixture(scope="module")
def cosines():
    """minibatch_cosines of helpers.TINY's agent, compiled once: run eagerly, each of its ops compiles apart."""
    from mtdqn.train.agent import make_agent

    agent = make_agent(TINY)
    return jax.jit(lambda state, key_a, key_b: minibatch_cosines(agent, state, key_a, key_b))


def test_no_gradient_rows_for_windows_without_an_update(run):
    gt = pd.read_parquet(run.out_dir / "grad_tasks.parquet")
    gp = pd.read_parquet(run.out_dir / "grad_pairs.parquet")
    assert sorted(gt["step"].unique()) == [1000, 1500, 2000] and sorted(gp["step"].unique()) == [1000, 1500, 2000]
    # `sum` applies weight 1 to every update; a window straddling learning_starts averages its updates only
    assert (gt["weight"] == 1.0).all() and (gt["grad_norm"] > 0).all()
    assert len(pd.read_parquet(run.out_dir / "metrics.parquet")) == 4 * 2 * 2  # metrics keep every window


def test_gradient_probe_rows_and_their_null(run):
    probe = pd.read_parquet(run.out_dir / "grad_probe.parquet")
    # probed at the evaluation during training (1,000) and at the end (2,000): the null on the curve's schedule
    assert sorted(probe["step"].unique()) == [1000, 2000]
    assert not probe[probe["step"] == 1000][["cosine"]].equals(probe[probe["step"] == 2000][["cosine"]])
    probe = probe[probe["step"] == 2000]
    same = probe[probe["task_a"] == probe["task_b"]]
    between = probe[probe["task_a"] != probe["task_b"]]
    assert len(same) == 2 * 2 and len(between) == 2 * 1  # seeds x tasks, seeds x pairs
    assert probe["cosine"].between(-1.0, 1.0).all()
    # two independent minibatches of one task do not give the same gradient: the null carries real noise
    assert (same["cosine"] < 0.99).all()


def test_probe_negative_share_is_the_conflict_noise_baseline(run, cosines):
    """`negative` is the share of the PROBE_PAIRS minibatch pairs whose cosine is below 0, pair by pair."""
    from mtdqn.train.agent import make_agent
    from mtdqn.train.loop import seed_keys

    agent = make_agent(TINY)
    probe = pd.read_parquet(run.out_dir / "grad_probe.parquet")
    probe = probe[probe["step"] == 2000]  # the final state's
    state = jax.tree.map(lambda x: x[0], run.state.replace(env_states=()))
    pairs = jax.random.split(jax.random.fold_in(seed_keys(agent.seeds)[0], PROBE_KEY), (PROBE_PAIRS, 2))
    same = np.stack([np.asarray(cosines(state, k[0], k[1])[0]) for k in pairs])
    first = probe[(probe["seed"] == agent.seeds[0]) & (probe["task_a"] == probe["task_b"])]
    for i, task in enumerate(agent.task_set.names):
        row = first[first["task_a"] == task].iloc[0]
        assert row["negative"] == pytest.approx(float((same[:, i] < 0).mean()))
        assert row["cosine"] == pytest.approx(float(same[:, i].mean()), abs=1e-5)
    assert probe["negative"].between(0.0, 1.0).all()


def test_minibatch_cosines_of_one_minibatch_twice_is_one(run, cosines):
    state = jax.tree.map(lambda x: x[0], run.state.replace(env_states=()))
    key = jax.random.fold_in(jax.random.PRNGKey(0), PROBE_KEY)
    same, between = cosines(state, key, key)
    np.testing.assert_allclose(np.asarray(same), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.diag(np.asarray(between)), 1.0, atol=1e-5)
    other, _ = cosines(state, key, jax.random.fold_in(key, 1))
    assert (np.asarray(other) < 0.99).all()


def test_cka_beside_its_value_at_initialization(run):
    cka = pd.read_parquet(run.out_dir / "cka.parquet")
    assert {"cka", "cka_init"} <= set(cka) and len(cka) == 2
    assert cka["cka"].between(0.0, 1.0 + 1e-9).all() and cka["cka_init"].between(0.0, 1.0 + 1e-9).all()
    assert not np.allclose(cka["cka"], cka["cka_init"])  # training changed the features


def test_summary_records_architecture_and_strategy_scope(run):
    s = run.summary
    assert any(line.startswith("trunk layer 0: Dense(32, relu), shared by all tasks") for line in s["architecture"])
    assert any("head: Dense(3)" in line and "one per task" in line for line in s["architecture"])
    assert "shared parameters only" in s["strategy_scope"] and s["backend"].startswith("cpu")


def test_a_run_without_experts_writes_no_experts_table(run):
    """(The experts' own table: tests/test_experts_diagnostics.py; this reads the session's run, trained once.)"""
    assert not (run.out_dir / "experts.parquet").exists()


def test_a_run_without_probes_writes_none_and_trains_the_same(run, tmp_path):
    """--probes false: no gradient probe (during training or at the end), no CKA; the probes read the state
    and change nothing of the run (the same program: helpers.TINY's, compiled once per session)."""
    from mtdqn.runoptions import RunOptions
    from mtdqn.train.run import train

    without = train(TINY, tmp_path / "no-probes", RunOptions(eval_episodes=2, eval_every=1000, probes=False),
                    progress=False)
    for probe in ("grad_probe.parquet", "cka.parquet"):
        assert not (without.out_dir / probe).exists() and (run.out_dir / probe).is_file()
    for table in ("metrics.parquet", "evals.parquet", "grad_tasks.parquet"):
        pd.testing.assert_frame_equal(pd.read_parquet(without.out_dir / table), pd.read_parquet(run.out_dir / table))
    assert without.summary["final_eval"] == run.summary["final_eval"]


def test_minibatch_cosines_are_those_of_each_tasks_own_gradient(run, cosines):
    """The probe's cosines against each task's shared-parameter gradient taken by plain ``jax.grad`` of that
    task's loss through the whole network (not task_gradients' vmap over tasks, which the probe uses): a wrong
    loss, task slice or flattening would still give 1 for one minibatch twice."""
    import jax.numpy as jnp

    from mtdqn.losses import q_taken, td_error_loss
    from mtdqn.networks import q_values, split_shared
    from mtdqn.train.agent import make_agent
    from mtdqn.train.step import sample_batch, td_targets

    agent = make_agent(TINY)
    state = jax.tree.map(lambda x: x[0], run.state.replace(env_states=()))
    key_a, key_b = jax.random.split(jax.random.PRNGKey(7))

    @jax.jit  # one program: run eagerly, each op compiles apart
    def shared_grads(key):  # (tasks, shared parameters): task i's own loss, differentiated alone
        batch, d_t = sample_batch(agent, state, key)
        targets = td_targets(agent, state, batch, d_t)

        def loss(params, i):
            q = q_values(agent.arch, params, batch.obs)[i]
            return td_error_loss(q_taken(q, batch.action[i]), targets[i], agent.cfg.dqn.loss)

        rows = [jax.grad(loss)(state.params, i) for i in range(agent.num_tasks)]
        return jnp.stack([jnp.concatenate([jnp.ravel(x) for x in jax.tree.leaves(split_shared(agent.arch, g)[0])])
                          for g in rows])

    g1, g2 = np.asarray(shared_grads(key_a)), np.asarray(shared_grads(key_b))
    unit = lambda g: g / np.linalg.norm(g, axis=1, keepdims=True)  # noqa: E731
    same, between = cosines(state, key_a, key_b)
    np.testing.assert_allclose(np.asarray(same), np.sum(unit(g1) * unit(g2), axis=1), atol=1e-4)
    np.testing.assert_allclose(np.asarray(between), unit(g1) @ unit(g1).T, atol=1e-4)
    assert jnp.all(jnp.abs(jnp.asarray(same)) < 0.999)  # two minibatches: not the trivial 1
