"""Population sweeps: numeric hyperparameters as traced values, many settings in one compiled program."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mtdqn.config import DQNConfig, NetworkConfig, TrainConfig
from mtdqn.devices import population_layout
from mtdqn.train.agent import make_agent
from mtdqn.train.loop import make_population_trainer, make_trainer, population_keys, seed_keys

SMALL = TrainConfig(
    tasks=("CartPole-v1", "Acrobot-v1"), steps=400, seeds=2, log_every=200, num_envs=4,
    network=NetworkConfig(hidden=(16,), adapter_width=8),
    dqn=DQNConfig(buffer_size=64, learning_starts=100, batch_size=8, eps_fraction=0.5),
)


def _with(cfg: TrainConfig, **dqn) -> TrainConfig:
    return dataclasses.replace(cfg, dqn=dataclasses.replace(cfg.dqn, **dqn))


def _train(trainer, keys, chunks: int):
    state = trainer.init(keys)
    n = trainer.agent.derived.iters_per_chunk
    for c in range(chunks):
        state, metrics = trainer.run_chunk(state, jnp.int32(c * n))
    return jax.tree.map(np.asarray, (state, metrics))


@pytest.mark.parametrize("seeds, devices", [(2, 0), (3, 0), (2, 1)])
def test_a_member_is_its_run_alone_bit_for_bit(seeds, devices):
    """Each member of a 3-member sweep (lr, gamma, tau, epsilon differ) ends with the state and metrics of the
    same setting trained alone with the same seeds: a block per device as alone, dummies where alone has them."""
    base = dataclasses.replace(SMALL, seeds=seeds)
    members = [_with(base, lr=1e-3), _with(base, lr=3e-4, gamma=0.9, tau=0.5),
               _with(base, eps_start=0.5, eps_end=0.1, eps_fraction=0.2)]
    agent = make_agent(base)
    population = make_population_trainer(agent, [make_agent(m).hypers for m in members], devices)
    layout = population.population
    pop_state, pop_metrics = _train(population, population_keys(agent.seeds, layout), 2)
    assert layout.members == 3 and layout.seeds == seeds
    for m, cfg in enumerate(members):
        alone = make_trainer(make_agent(cfg), devices)
        state, metrics = _train(alone, seed_keys(alone.agent.seeds), 2)
        mine = jax.tree.map(lambda x: x[layout.member_entries(m)], (pop_state, pop_metrics))
        for (path, a), b in zip(jax.tree_util.tree_leaves_with_path((state, metrics)), jax.tree.leaves(mine)):
            np.testing.assert_array_equal(a, b, err_msg=f"member {m}: {jax.tree_util.keystr(path)}")
    # the members did train differently: a member mixed up with another would fail above, and this says the
    # hyperparameters reached the loop at all
    first, second = (jax.tree.leaves(pop_state.params)[0][layout.member_entries(m)] for m in (0, 1))
    assert not np.array_equal(first, second)


@pytest.mark.parametrize("members, seeds, devices, expected", [
    (3, 2, 0, (2, 2, 1, 2, 6)),  # alone: 2 devices of 1 seed; 6 blocks over those 2 devices
    (3, 3, 0, (3, 4, 2, 2, 12)),  # alone: 2 devices of 2 (one dummy); 6 blocks
    (3, 1, 0, (1, 1, 1, 1, 3)),  # alone: 1 device; the 3 blocks take turns on it
    (2, 2, 1, (2, 2, 2, 1, 4)),  # alone on one device: both seeds one block
])
def test_population_layout(members, seeds, devices, expected):
    layout = population_layout(members, seeds, devices)
    assert (layout.seeds, layout.per_member, layout.block, layout.devices, layout.size) == expected
    assert layout.member_entries(members - 1).tolist() == [(members - 1) * layout.per_member + s
                                                           for s in range(seeds)]
