"""diagnostics.cka_rows: one compiled program for every seed, the trained and the initial network."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import VECTOR

from mtdqn.analysis.stats import linear_cka
from mtdqn.diagnostics import cka_rows
from mtdqn.networks import torso_features
from mtdqn.train.agent import make_agent
from mtdqn.train.loop import make_trainer, seed_keys


def _state_with_probe_states(trainer, n: int):
    """A fresh state whose replay holds ``n`` random observations per task and seed (no training)."""
    state = jax.jit(trainer.init)(seed_keys(trainer.agent.seeds))
    obs = state.replay.data.obs
    noise = jax.random.normal(jax.random.PRNGKey(7), obs.shape, obs.dtype)
    data = state.replay.data.replace(obs=noise)
    return state.replace(replay=state.replay.replace(data=data, size=jnp.full_like(state.replay.size, n)))


@pytest.mark.slow
def test_cka_at_init_is_the_initial_networks_and_each_seed_its_own():
    trainer = make_trainer(make_agent(VECTOR))
    state = _state_with_probe_states(trainer, n=40)
    rows = cka_rows(trainer, state, probe_per_task=32)
    arch, names = trainer.agent.arch, trainer.agent.task_set.names
    assert len(rows) == len(VECTOR.tasks) * (len(VECTOR.tasks) - 1) // 2 * VECTOR.seeds
    for s, seed in enumerate(trainer.agent.seeds):
        params = jax.tree.map(lambda x: x[s], state.params)
        probe = state.replay.data.obs[s, :, :32].reshape(-1, *state.replay.data.obs.shape[3:])
        feats = np.asarray(torso_features(arch, params, jnp.broadcast_to(probe, (arch.num_tasks, *probe.shape))))
        for a, b in itertools.combinations(range(len(names)), 2):
            row = next(r for r in rows if r["seed"] == seed and (r["task_a"], r["task_b"]) == (names[a], names[b]))
            # A fresh state's parameters are the network at initialization: both columns are its CKA.
            assert row["cka_init"] == row["cka"] and row["cka_own_init"] == row["cka_own"]
            assert np.isclose(row["cka"], linear_cka(feats[a], feats[b]), rtol=1e-5, atol=1e-6)
            # on each task's own states: rows [t * 32, (t + 1) * 32) of the probe are task t's
            own = np.mean([linear_cka(feats[a, t * 32:(t + 1) * 32], feats[b, t * 32:(t + 1) * 32]) for t in (a, b)])
            assert np.isclose(row["cka_own"], own, rtol=1e-5, atol=1e-6) and not np.isclose(row["cka_own"], row["cka"])
    assert len({r["cka"] for r in rows}) == len(rows)  # seeds differ: each row is its seed's own network
