"""The {"adapters", "torso", "heads"} contract and the sharing variants."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mtdqn.config import NetworkConfig
from mtdqn.errors import ConfigError
from mtdqn.networks import count_params, init_params, make_architecture, merge_shared, q_values, split_shared
from mtdqn.tasks import make_task_set

VECTOR = make_task_set(["CartPole-v1", "Acrobot-v1"])
IMAGE = make_task_set(["Breakout-MinAtar", "Freeway-MinAtar"])


def _net(task_set, sharing):
    arch = make_architecture(task_set, NetworkConfig(sharing=sharing))
    return arch, init_params(arch, jax.random.PRNGKey(0))


@pytest.mark.parametrize("task_set", [VECTOR, IMAGE], ids=["vector", "image"])
@pytest.mark.parametrize("sharing", ["independent", "shared", "partial:1", "conditioned"])
def test_shapes_and_tree_contract(task_set, sharing):
    arch, params = _net(task_set, sharing)
    assert set(params) == {"adapters", "torso", "heads"}
    q = q_values(arch, params, jnp.zeros((len(task_set), 5, *task_set.obs_shape)))
    assert q.shape == (len(task_set), 5, task_set.num_actions)
    shared, per_task = split_shared(arch, params)
    assert jax.tree.structure(merge_shared(shared, per_task)) == jax.tree.structure(params)


def test_shared_counts_follow_the_variant():
    counts = {s: count_params(*_net(VECTOR, s)) for s in ["independent", "shared", "partial:1", "conditioned"]}
    total_ind, shared_ind = counts["independent"]
    assert shared_ind == 0
    total_sh, shared_sh = counts["shared"]
    # hidden (128, 128) after a 64-wide adapter: 64*128+128 + 128*128+128 shared weights
    assert shared_sh == 64 * 128 + 128 + 128 * 128 + 128
    assert total_ind > total_sh > shared_sh
    assert counts["partial:1"][1] == 64 * 128 + 128
    assert counts["conditioned"][0] == counts["conditioned"][1]  # everything shared


def test_independent_tasks_do_not_share_outputs():
    arch, params = _net(VECTOR, "independent")
    obs = jax.random.normal(jax.random.PRNGKey(1), (2, 4, 6))
    base = q_values(arch, params, obs)
    bumped = jax.tree.map(lambda x: x.at[1].add(1.0), params)  # change only task 1's weights
    out = q_values(arch, bumped, obs)
    np.testing.assert_allclose(out[0], base[0])
    assert not np.allclose(out[1], base[1])


def test_zero_padded_features_do_not_matter():
    arch, params = _net(VECTOR, "shared")
    obs = jax.random.normal(jax.random.PRNGKey(2), (2, 4, 6)).at[0, :, 4:].set(0.0)
    garbage_rows = jax.tree.map(lambda x: x, params)
    garbage_rows["adapters"]["kernel"] = garbage_rows["adapters"]["kernel"].at[0, 4:].set(123.0)
    np.testing.assert_allclose(q_values(arch, params, obs)[0], q_values(arch, garbage_rows, obs)[0])


@pytest.mark.parametrize("sharing", ["partial:9", "partial:x", "everything", "shared:2"])
def test_bad_sharing_is_rejected(sharing):
    with pytest.raises(ConfigError):
        make_architecture(VECTOR, NetworkConfig(sharing=sharing))
