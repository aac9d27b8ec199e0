"""diagnostics.cka_rows: one compiled program for every seed, the trained and the initial network."""

from __future__ import annotations

import dataclasses
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import VECTOR

from mtdqn.analysis.cka import linear_cka
from mtdqn.diagnostics import cka_rows, probe_slots
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
        probe = state.replay.data.obs[s][:, probe_slots(40, 32, seed)].reshape(-1, *state.replay.data.obs.shape[3:])
        feats = np.asarray(torso_features(arch, params, jnp.broadcast_to(probe, (arch.num_tasks, *probe.shape))))
        for a, b in itertools.combinations(range(len(names)), 2):
            row = next(r for r in rows if r["seed"] == seed and (r["task_a"], r["task_b"]) == (names[a], names[b]))
            # A fresh state's parameters are the network at initialization: both columns are its CKA.
            assert row["cka_init"] == row["cka"]
            assert np.isclose(row["cka"], linear_cka(feats[a], feats[b]), rtol=1e-5, atol=1e-6)
    assert len({r["cka"] for r in rows}) == len(rows)  # seeds differ: each row is its seed's own network


@pytest.mark.slow
def test_cka_on_own_states_compares_two_tasks_on_each_ones_states():
    """Three tasks, so a slice of the probe taken for the wrong task would not average out: for tasks a and b,
    the mean of the CKA of a's and b's trunk features on a's states and on b's, each computed here from that
    task's replay observations alone."""
    cfg = dataclasses.replace(VECTOR, tasks=("CartPole-v1", "Acrobot-v1", "MountainCar-v0"))
    trainer = make_trainer(make_agent(cfg))
    state = _state_with_probe_states(trainer, n=40)
    rows = cka_rows(trainer, state, probe_per_task=32)
    arch, names = trainer.agent.arch, trainer.agent.task_set.names
    for s, seed in enumerate(trainer.agent.seeds):
        params = jax.tree.map(lambda x: x[s], state.params)

        def features(task: int, on: int) -> np.ndarray:  # task's trunk features on task on's own 32 states
            own = state.replay.data.obs[s, on][probe_slots(40, 32, seed)]
            return np.asarray(torso_features(arch, params, jnp.broadcast_to(own, (arch.num_tasks, *own.shape))))[task]

        for a, b in itertools.combinations(range(3), 2):
            row = next(r for r in rows if r["seed"] == seed and (r["task_a"], r["task_b"]) == (names[a], names[b]))
            expected = np.mean([linear_cka(features(a, t), features(b, t)) for t in (a, b)])
            assert np.isclose(row["cka_own"], expected, rtol=1e-5, atol=1e-6), (names[a], names[b])
            assert row["cka_own_init"] == row["cka_own"] and not np.isclose(row["cka_own"], row["cka"])
            # chance: the same features, b's states shuffled (the seed's own fixed permutation of the 32)
            rng = np.random.default_rng(seed)
            rng.permutation(32 * 3)  # the pooled probe's shuffle is drawn first
            own = rng.permutation(32)
            chance = np.mean([linear_cka(features(a, t), features(b, t)[own]) for t in (a, b)])
            assert np.isclose(row["cka_own_chance"], chance, rtol=1e-5, atol=1e-6)
            assert row["cka_own_chance"] < row["cka_own"]  # the same states give more alike features than shuffled
    assert len({r["cka"] for r in rows}) == len(rows)  # seeds differ: each row is its seed's own network


def test_the_probe_samples_the_whole_replay_the_same_way_each_time():
    """The probe took the replay's first slots: a few consecutive steps of a few environments (random play,
    or a point in training set by the budget once the ring wraps), not the states the replay holds."""
    slots = probe_slots(100_000, 128, seed=3)
    assert len(set(slots)) == 128 and np.all(np.diff(slots) > 0) and 0 <= slots[0] and slots[-1] < 100_000
    assert np.histogram(slots, bins=4, range=(0, 100_000))[0].min() >= 16  # every quarter of the ring
    assert np.array_equal(slots, probe_slots(100_000, 128, seed=3))
    assert not np.array_equal(slots, probe_slots(100_000, 128, seed=4))
    assert np.array_equal(probe_slots(40, 40, seed=0), np.arange(40))  # all of a small replay


def test_the_biased_chance_level_depends_on_the_spectrum_and_the_debiased_one_does_not():
    """What the report's CKA captions say: with the biased estimator, ~0.5 is two independent isotropic random
    128-feature matrices on 128 states; features whose variance lies in few directions (as trained ones: the
    reports measured chance 0.004-0.011) give far less with their pairing broken, so two CKAs of features spread
    differently (trained and at initialization, two variants) differ by their biases too.  The debiased
    estimator, the one runs record, gives ~0 for both."""
    rng = np.random.default_rng(0)
    iso = [(rng.normal(size=(128, 128)), rng.normal(size=(128, 128))) for _ in range(10)]
    assert np.mean([linear_cka(x, y, debiased=False) for x, y in iso]) == pytest.approx(0.5, abs=0.02)
    assert abs(np.mean([linear_cka(x, y) for x, y in iso])) < 0.01

    def concentrated() -> np.ndarray:  # singular values falling as k^-1.5, in a random basis
        basis = np.linalg.qr(rng.normal(size=(128, 128)))[0]
        return (rng.normal(size=(128, 128)) * np.arange(1, 129) ** -1.5) @ basis

    pairs = [(concentrated(), concentrated()) for _ in range(10)]
    assert np.mean([linear_cka(x, y, debiased=False) for x, y in pairs]) < 0.05
    assert abs(np.mean([linear_cka(x, y) for x, y in pairs])) < 0.01
