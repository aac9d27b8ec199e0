"""The diagnostics of a mixture of experts: mixing weights, their entropy, the experts' cosine, experts.parquet."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from helpers import TINY

from mtdqn.diagnostics import expert_probe
from mtdqn.networks.experts import expert_cosines, mixing_weights, orthonormalize, weight_entropy
from mtdqn.rundir import EXPERT_SCHEMA
from mtdqn.train.agent import make_agent
from mtdqn.train.loop import make_trainer


def test_each_tasks_weights_are_a_distribution_over_the_experts():
    logits = jax.random.normal(jax.random.PRNGKey(0), (5, 4)) * 10.0
    w = np.asarray(mixing_weights(logits))
    assert (w >= 0).all()
    np.testing.assert_allclose(w.sum(axis=-1), 1.0, rtol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("k", [2, 3, 7])
def test_entropy_is_log_k_for_the_even_mixture_and_zero_for_one_expert(k):
    even = mixing_weights(jnp.zeros((2, k)))
    one = mixing_weights(jnp.asarray([[0.0] * (k - 1) + [200.0]]))  # exp(-200) underflows: an exact one-hot
    np.testing.assert_allclose(np.asarray(weight_entropy(even)), np.log(k), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(weight_entropy(one)), 0.0, atol=1e-12)
    w = np.asarray([[0.5, 0.25, 0.25]])
    np.testing.assert_allclose(np.asarray(weight_entropy(jnp.asarray(w))), 1.5 * np.log(2), rtol=1e-6)


def _cosines(*experts: np.ndarray) -> np.ndarray:
    """expert_cosines of experts each given as (batch, features), one task: (experts,)."""
    return np.asarray(expert_cosines(jnp.asarray(np.stack(experts)[:, None], jnp.float32)))[0]


@pytest.mark.slow
def test_cosine_of_identical_experts_is_one_and_of_orthogonal_or_opposite_ones_zero_or_minus_one():
    v = np.asarray(jax.random.normal(jax.random.PRNGKey(1), (6, 8)))
    np.testing.assert_allclose(_cosines(v, 3.0 * v, v), 1.0, rtol=1e-5)  # scale does not matter
    e0, e1 = np.eye(8)[[0]].repeat(6, 0), np.eye(8)[[1]].repeat(6, 0)
    np.testing.assert_allclose(_cosines(e0, e1), 0.0, atol=1e-7)
    np.testing.assert_allclose(_cosines(v, -v), -1.0, rtol=1e-5)
    # expert 0 with the others: (1 + 0) / 2; expert 1 with 0 and 2: (1 + 0) / 2; expert 2 with both: 0
    np.testing.assert_allclose(_cosines(e0, e0, e1), [0.5, 0.5, 0.0], atol=1e-7)


def test_cosine_averages_over_each_tasks_samples_and_a_zero_expert_counts_as_orthogonal():
    a = np.asarray([[1.0, 0.0], [1.0, 0.0]])
    b = np.asarray([[1.0, 0.0], [0.0, 1.0]])  # the same as a on sample 0, orthogonal on sample 1
    np.testing.assert_allclose(_cosines(a, b), 0.5, rtol=1e-6)
    got = _cosines(a, np.zeros_like(a))
    np.testing.assert_array_equal(got, 0.0)


@pytest.mark.slow
def test_orthonormalized_experts_have_cosine_zero_where_the_raw_ones_are_alike():
    """MOORE's basis by construction: ~0 after Gram–Schmidt, even for experts that nearly coincide."""
    base = jax.random.normal(jax.random.PRNGKey(2), (1, 2, 5, 16))  # (experts, tasks, batch, features)
    raw = base + 0.05 * jax.random.normal(jax.random.PRNGKey(3), (3, 2, 5, 16))
    assert np.asarray(expert_cosines(raw)).min() > 0.9
    np.testing.assert_allclose(np.asarray(expert_cosines(orthonormalize(raw))), 0.0, atol=1e-5)


def test_no_expert_probe_without_experts():
    assert expert_probe(make_trainer(make_agent(TINY))) is None


@pytest.fixture(scope="module")
def moe_run(tmp_path_factory):
    """helpers.TINY (2 tasks, 2 seeds, 4 chunks of 500 steps) with two experts."""
    from mtdqn.train.run import train

    cfg = dataclasses.replace(TINY, network=dataclasses.replace(TINY.network, sharing="moe:2"))
    return train(cfg, tmp_path_factory.mktemp("moe_run"), progress=False, eval_episodes=2)


@pytest.mark.slow
def test_a_moe_run_writes_experts_parquet_per_chunk_seed_task_and_expert(moe_run):
    frame = pd.read_parquet(moe_run.out_dir / "experts.parquet")
    assert dict(frame.dtypes.astype(str)) == EXPERT_SCHEMA
    assert len(frame) == 4 * 2 * 2 * 2  # chunks x seeds x tasks x experts
    assert sorted(frame["step"].unique()) == [500, 1000, 1500, 2000]
    assert set(frame["task"]) == set(TINY.tasks) and set(frame["seed"]) == {0, 1} and set(frame["expert"]) == {0, 1}
    per_task = frame.groupby(["step", "seed", "task"])
    np.testing.assert_allclose(per_task["weight"].sum(), 1.0, rtol=1e-5)
    w = frame["weight"].to_numpy(np.float64)
    entropy = (-w * np.log(w)).reshape(-1, 2).sum(axis=1)  # rows come expert by expert within a task
    np.testing.assert_allclose(frame["entropy"].to_numpy()[::2], entropy, rtol=1e-4)
    assert (per_task["entropy"].nunique() == 1).all()
    np.testing.assert_array_equal(frame["cosine"], frame["cosine_raw"])  # moe: no Gram–Schmidt
    assert frame["cosine"].between(-1, 1).all() and frame["cosine"].std() > 0
    # The mixing logits start at zero and move with training: the even mixture at first, not at the end.
    assert frame["entropy"].max() <= np.log(2) + 1e-6
    assert frame[frame["step"] == 2000]["entropy"].min() < np.log(2) - 1e-6


def _rows(steps: list[int]) -> list[dict]:
    return [{"step": step, "seed": seed, "task": task, "expert": e, "weight": np.float32(0.25 + 0.5 * e),
             "entropy": np.float32(0.5623), "cosine": np.float32(0.1 * (e + 1)), "cosine_raw": np.float32(0.3)}
            for step in steps for seed in (0, 1) for task in TINY.tasks for e in (0, 1)]


class _Writer:
    """A SummaryWriter that keeps each tag's last (value, step)."""

    def __init__(self):
        self.scalars = {}

    def add_scalar(self, tag, value, step):
        self.scalars[tag] = (value, step)


def test_tensorboard_gets_each_weight_and_each_tasks_entropy_and_mean_cosine():
    from mtdqn.rundir import Tables, write_tensorboard

    tables = Tables.empty()
    tables.experts.extend(_rows([500]))
    writer = _Writer()
    write_tensorboard(writer, tables, 500)
    assert writer.scalars["mixing_weight/Acrobot-v1/expert1/seed0"] == (pytest.approx(0.75), 500)
    assert writer.scalars["expert_entropy/CartPole-v1/seed1"] == (pytest.approx(0.5623), 500)
    assert writer.scalars["expert_cosine/CartPole-v1/seed1"] == (pytest.approx(0.15), 500)  # (0.1 + 0.2) / 2
    assert len(writer.scalars) == 2 * 2 * 2 + 2 * 2 * 2  # a weight per seed, task and expert; two per task


def test_a_resumed_run_keeps_the_expert_rows_up_to_its_checkpoint(tmp_path):
    from mtdqn.rundir import RunDir, Tables

    tables = Tables.empty()
    tables.experts.extend(_rows([500, 1000, 1500]))
    RunDir(tmp_path).write_tables(tables)
    kept = pd.DataFrame(RunDir(tmp_path).tables_until(1000).experts)
    assert sorted(kept["step"].unique()) == [500, 1000] and len(kept) == 2 * 8
    assert dict(kept.dtypes.astype(str)) == EXPERT_SCHEMA


def test_tensorboard_gets_each_tasks_gradient_norm_and_strategy_weight():
    """The README promises per-task gradient norms and strategy weights in TensorBoard (gradnorm's, dwa's
    weights are what one watches); only grad_tasks.parquet held them."""
    from mtdqn.rundir import Tables, write_tensorboard

    tables = Tables.empty()
    tables.grad_tasks.append({"step": 500, "seed": 1, "task": "Acrobot-v1", "grad_norm": 0.25, "weight": 1.5,
                              "loss": 0.1})
    writer = _Writer()
    write_tensorboard(writer, tables, 500)
    assert writer.scalars == {"grad_norm/Acrobot-v1/seed1": (0.25, 500),
                              "strategy_weight/Acrobot-v1/seed1": (1.5, 500)}
