"""The {"adapters", "torso", "heads"} contract and the sharing variants."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mtdqn.config import NetworkConfig
from mtdqn.errors import ConfigError
from mtdqn.networks import (Dropout, count_params, init_params, make_architecture, merge_shared, q_values, split_shared,
                            torso_features)
from mtdqn.tasks import make_task_set

VECTOR = make_task_set(["CartPole-v1", "Acrobot-v1"])
IMAGE_TASKS = ("Breakout-MinAtar", "Freeway-MinAtar")
IMAGE = make_task_set(IMAGE_TASKS)


def _small_image_net(sharing: str) -> NetworkConfig:
    """A small image trunk, channels all different (6 -> 5, dense 8, adapter 4) so a swapped axis cannot pass;
    the tests using it share its shapes, so its parameters' initializers compile once per sharing."""
    return NetworkConfig(sharing=sharing, conv_channels=(6, 5), conv_dense=8, adapter_channels=4)


# Fresh parameters in one compiled program per architecture: op by op, an initialization compiles ~40 small
# programs (the default init's bits are checked op by op, as they were recorded, in
# test_default_init_is_bit_identical_to_before).
_init = jax.jit(init_params, static_argnums=0)
_q = jax.jit(q_values, static_argnums=0)  # the same for a forward pass (~20 programs op by op)


def _net(task_set, sharing):
    arch = make_architecture(task_set, NetworkConfig(sharing=sharing))
    return arch, _init(arch, jax.random.PRNGKey(0))


def _abstract_net(task_set, sharing):
    """As :func:`_net`, the parameters' shapes and tree only (traced, nothing compiled or run): what the shape,
    tree and count tests read; computing the numbers op by op cost ~50 small compiles per network."""
    arch = make_architecture(task_set, NetworkConfig(sharing=sharing))
    return arch, jax.eval_shape(lambda: init_params(arch, jax.random.PRNGKey(0)))


@pytest.mark.parametrize("task_set", [VECTOR, IMAGE], ids=["vector", "image"])
@pytest.mark.parametrize("sharing", ["independent", "shared", "partial:1", "conditioned"])
def test_shapes_and_tree_contract(task_set, sharing):
    arch, params = _abstract_net(task_set, sharing)
    assert set(params) == {"adapters", "torso", "heads"}
    q = jax.eval_shape(lambda p: q_values(arch, p, jnp.zeros((len(task_set), 5, *task_set.obs_shape))), params)
    assert q.shape == (len(task_set), 5, task_set.num_actions)
    shared, per_task = split_shared(arch, params)
    assert jax.tree.structure(merge_shared(shared, per_task)) == jax.tree.structure(params)


def test_shared_counts_follow_the_variant():
    counts = {s: count_params(*_abstract_net(VECTOR, s))
              for s in ["independent", "shared", "partial:1", "conditioned"]}
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
    base = _q(arch, params, obs)
    bumped = jax.tree.map(lambda x: x.at[1].add(1.0), params)  # change only task 1's weights
    out = _q(arch, bumped, obs)
    np.testing.assert_allclose(out[0], base[0])
    assert not np.allclose(out[1], base[1])


def test_zero_padded_features_do_not_matter():
    arch, params = _net(VECTOR, "shared")
    obs = jax.random.normal(jax.random.PRNGKey(2), (2, 4, 6)).at[0, :, 4:].set(0.0)
    garbage_rows = jax.tree.map(lambda x: x, params)
    garbage_rows["adapters"]["kernel"] = garbage_rows["adapters"]["kernel"].at[0, 4:].set(123.0)
    np.testing.assert_allclose(_q(arch, params, obs)[0], _q(arch, garbage_rows, obs)[0])


@pytest.mark.parametrize("sharing", ["partial:9", "partial:x", "everything", "shared:2"])
def test_bad_sharing_is_rejected(sharing):
    with pytest.raises(ConfigError):
        make_architecture(VECTOR, NetworkConfig(sharing=sharing))


@pytest.mark.slow
def test_patch_conv_equals_flax_conv():
    """Same parameters (tree, shapes, initial values) and the same outputs as nn.Conv(VALID)."""
    import flax.linen as nn

    from mtdqn.networks.conv import PatchConv

    x = jax.random.normal(jax.random.PRNGKey(3), (2, 3, 10, 10, 5))  # extra leading axes are batch axes
    ours, ref = PatchConv(16, (3, 3)), nn.Conv(16, (3, 3), padding="VALID")
    p_ours, p_ref = ours.init(jax.random.PRNGKey(4), x), ref.init(jax.random.PRNGKey(4), x)
    assert jax.tree.structure(p_ours) == jax.tree.structure(p_ref)
    jax.tree.map(np.testing.assert_array_equal, p_ours, p_ref)
    p = jax.tree.map(lambda a: a + jax.random.normal(jax.random.PRNGKey(5), a.shape), p_ref)  # nonzero bias too
    y = ours.apply(p, x)
    assert y.shape == (2, 3, 8, 8, 16)
    np.testing.assert_allclose(y, ref.apply(p, x), rtol=1e-5, atol=1e-5)
    grads = [jax.grad(lambda q, m=m: jnp.sum(jnp.sin(m.apply(q, x))))(p) for m in (ours, ref)]
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4), *grads)


@pytest.mark.slow
@pytest.mark.parametrize("sharing", ["independent", "shared", "partial:1", "conditioned"])
def test_per_task_conv_gradients_are_matmuls_not_grouped_convolutions(sharing):
    """The update's per-task gradients on the conv trunk lower to dots (no convolution at all)."""
    from mtdqn.config import DQNConfig, TrainConfig
    from mtdqn.train import step
    from mtdqn.train.agent import make_agent
    from mtdqn.train.loop import init_state

    cfg = TrainConfig(tasks=IMAGE_TASKS, steps=100, log_every=100, network=_small_image_net(sharing),
                      dqn=DQNConfig(batch_size=8, buffer_size=16))
    agent = make_agent(cfg)
    key = jax.random.PRNGKey(0)
    state = jax.eval_shape(lambda: init_state(agent, key))  # lowering needs the shapes only: nothing runs
    hlo = jax.jit(lambda s, k: step.update(agent, s, k)).lower(state, key).as_text()
    assert "convolution" not in hlo
    assert "dot_general" in hlo


def test_kernel_larger_than_the_observation_is_rejected():
    from dataclasses import replace

    tiny = replace(IMAGE, obs_shape=(4, 4, 7))  # two VALID 3x3 convs need at least 5x5
    with pytest.raises(ConfigError, match="need observations of at least 5x5, got 4x4"):
        make_architecture(tiny, NetworkConfig())


@pytest.mark.slow
@pytest.mark.parametrize("sharing", ["independent", "shared", "partial:1", "conditioned"])
def test_folded_adapter_conv_equals_the_adapter_then_the_conv(sharing):
    """The image trunk's linear adapter composed into its first conv computes the same features, and the same
    gradients, as applying the two layers one after the other."""
    from mtdqn.networks import model

    arch = make_architecture(IMAGE, _small_image_net(sharing))
    obs = jax.random.uniform(jax.random.PRNGKey(5), (arch.num_tasks, 3, *arch.obs_shape))

    def unfolded(p):
        x = model._apply(arch.adapter, p["adapters"], model._inputs(arch, obs, None), arch.adapter_shared)
        for i, (layer, shared) in enumerate(zip(arch.torso, arch.torso_shared)):
            x = model._apply(layer, p["torso"][f"layer_{i}"], x, shared)
        return x

    def features_and_grads(features, params):
        """The features at ``params`` and the gradient of their sum of squares."""
        grads, x = jax.grad(lambda p: (jnp.sum(features(p) ** 2), features(p)), has_aux=True)(params)
        return x, grads

    @jax.jit  # one program, not four: the initialization, its perturbation and both ways
    def both_ways(key):
        params = jax.tree.map(  # biases too
            lambda x: x + 0.1 * jax.random.normal(jax.random.PRNGKey(4), x.shape), init_params(arch, key))
        return features_and_grads(lambda p: torso_features(arch, p, obs), params), features_and_grads(unfolded, params)

    assert model._folds_adapter(arch)
    (x_folded, g_folded), (x_plain, g_plain) = both_ways(jax.random.PRNGKey(3))
    np.testing.assert_allclose(x_folded, x_plain, rtol=1e-4, atol=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4), g_folded, g_plain)


def test_dropout_zeroes_or_rescales_each_trunk_output_and_rate_zero_is_the_whole_network():
    arch = make_architecture(VECTOR, NetworkConfig(hidden=(64,), adapter_width=8))  # one trunk layer
    params = _init(arch, jax.random.PRNGKey(0))
    obs = jax.random.normal(jax.random.PRNGKey(1), (2, 256, *arch.obs_shape))
    whole = np.asarray(torso_features(arch, params, obs))
    dropped = np.asarray(torso_features(arch, params, obs, dropout=Dropout.at_rate(0.25, jax.random.PRNGKey(2))))
    kept, live = dropped != 0, whole != 0
    np.testing.assert_allclose(dropped[kept], whole[kept] / 0.75, rtol=1e-6)  # inverted: kept units scaled up
    assert 0.22 < 1 - kept[live].mean() < 0.28  # a quarter of the live units dropped (~25k of them)
    again = torso_features(arch, params, obs, dropout=Dropout.at_rate(0.25, jax.random.PRNGKey(2)))
    np.testing.assert_array_equal(again, dropped)  # the masks are the key's
    at_zero = torso_features(arch, params, obs, dropout=Dropout.at_rate(0.0, jax.random.PRNGKey(2)))
    np.testing.assert_array_equal(at_zero, whole)  # rate 0 keeps every unit and scales by exactly 1


@pytest.mark.parametrize("rate", [0.1, 0.33, 0.5])
def test_dropout_at_a_traced_rate_computes_what_the_rate_compiled_in_did(rate):
    """A run's dropout rate is a traced value (``Hypers.dropout_keep``, so a sweep can vary it); jitted, the
    masks and scale are bit for bit those of the rate written as a constant, as dropout computed before
    (``1 - rate`` rounded once: at 0.33, 1 - float32(0.33) is another float32)."""
    from mtdqn.config import DQNConfig, TrainConfig
    from mtdqn.networks import model
    from mtdqn.train.hypers import hypers_of

    x = jax.random.normal(jax.random.PRNGKey(1), (4096,))
    key = jax.random.PRNGKey(2)
    layer_key = jax.random.fold_in(key, 3)  # what _drop draws layer 3's mask from

    @jax.jit
    def compiled_in(x: jax.Array) -> jax.Array:  # dropout as it was written: the rate a Python number
        return jnp.where(jax.random.bernoulli(layer_key, 1.0 - rate, x.shape), x / (1.0 - rate), 0.0)

    keep = hypers_of(TrainConfig(dqn=DQNConfig(dropout=rate))).dropout_keep
    traced = jax.jit(lambda x, keep: model._drop(x, Dropout(keep=keep, key=key), 3))(x, keep)
    np.testing.assert_array_equal(traced, compiled_in(x))
    assert 0 < np.mean(np.asarray(traced) == 0) < 1


@pytest.mark.slow
def test_dropout_reaches_every_layer_of_the_image_trunk():
    arch = make_architecture(IMAGE, NetworkConfig())
    params = _init(arch, jax.random.PRNGKey(0))
    obs = (jax.random.uniform(jax.random.PRNGKey(1), (2, 8, *arch.obs_shape)) < 0.2).astype(jnp.float32)
    whole = np.asarray(_q(arch, params, obs))
    # params and obs arguments, not constants folded into the program (which compile slower)
    dropped = jax.jit(jax.vmap(lambda k, p, o, rate: q_values(arch, p, o, dropout=Dropout.at_rate(rate, k)),
                               in_axes=(0, None, None, None)), static_argnums=3)
    keys = jax.random.split(jax.random.PRNGKey(3), 200)
    draws = np.asarray(dropped(keys, params, obs, 0.1))  # one program: each pass differs, their mean near the whole
    assert draws.shape == (200, *whole.shape)
    assert not any(np.allclose(one, whole) for one in draws)
    mean = draws.mean(0)
    assert np.abs(mean - whole).mean() < 0.2 * np.abs(whole).mean() + 1e-3  # near the whole network on average


def test_sigmoid_features_change_only_the_trunks_last_layer():
    relu_arch = make_architecture(VECTOR, NetworkConfig(hidden=(16, 8), adapter_width=8))
    sig_arch = make_architecture(VECTOR, NetworkConfig(hidden=(16, 8), adapter_width=8, feature_activation="sigmoid"))
    assert [layer.activation for layer in sig_arch.torso] == ["relu", "sigmoid"]
    assert [layer.activation for layer in relu_arch.torso] == ["relu", "relu"]
    params = _init(sig_arch, jax.random.PRNGKey(0))  # the same parameters either way
    obs = jax.random.normal(jax.random.PRNGKey(1), (2, 32, *sig_arch.obs_shape))
    pre = torso_features(relu_arch, params, obs)  # relu(z) of the last layer; sigmoid(z) must agree where z > 0
    feats = torso_features(sig_arch, params, obs)
    assert float(feats.min()) > 0 and float(feats.max()) < 1
    positive = pre > 0
    np.testing.assert_allclose(feats[positive], jax.nn.sigmoid(pre[positive]), rtol=1e-5)
    image = make_architecture(IMAGE, NetworkConfig(feature_activation="sigmoid"))
    assert [layer.activation for layer in image.torso] == ["relu", "relu", "sigmoid"]


# sha256 (first 16 hex) of every leaf of init_params(arch, PRNGKey(3)) as float32 bytes, in tree order, computed
# by the code before --init existed (commit 842a0f0): the default scheme must not move a bit.
_LECUN_DIGESTS = {("vector", "shared"): "16c3fce6f9e4638f", ("vector", "independent"): "c9ac3e627eb2551a",
                  ("vector", "conditioned"): "cfc6ae37c84ee344", ("image", "shared"): "1e7329e33ceea16d",
                  ("image", "independent"): "1e20d5b8a1a0a53c", ("image", "conditioned"): "5d2b2cb130c119fd"}


@pytest.mark.slow
@pytest.mark.optimized  # the digests are of the optimized program's numbers
@pytest.mark.parametrize("kind,sharing", list(_LECUN_DIGESTS))
def test_default_init_is_bit_identical_to_before(kind, sharing):
    import hashlib

    task_set = {"vector": VECTOR, "image": IMAGE}[kind]
    arch = make_architecture(task_set, NetworkConfig(sharing=sharing), lora_rank=2 if sharing == "shared" else 0)
    assert arch.init == "lecun"
    digest = hashlib.sha256()
    for leaf in jax.tree.leaves(init_params(arch, jax.random.PRNGKey(3))):
        digest.update(np.asarray(leaf, np.float32).tobytes())
    assert digest.hexdigest()[:16] == _LECUN_DIGESTS[(kind, sharing)]


def _uniform(values, bound: float, rtol: float) -> None:
    """``values`` look like uniform(-bound, bound): inside it, reaching near it, centred, variance bound^2 / 3."""
    v = np.asarray(values, np.float64).ravel()
    assert np.abs(v).max() <= bound * (1 + 1e-6) and np.abs(v).max() > 0.9 * bound
    assert abs(v.mean()) < 4 * bound / np.sqrt(3 * v.size)
    np.testing.assert_allclose(v.var(), bound ** 2 / 3, rtol=rtol)


@pytest.mark.slow
def test_deramo_init_is_the_papers_pytorch_scheme():
    """GymNetwork (carloderamo/shared dqn/networks.py): xavier_uniform_ with gain sqrt 2 on the input and shared
    layers, 1 on the heads; nn.Linear's default biases uniform(+-1/sqrt(fan_in)), fan_in a task's own inputs."""
    width, relu = 512, np.sqrt(2.0)
    arch = make_architecture(VECTOR, NetworkConfig(hidden=(width, width), adapter_width=width, init="deramo",
                                                   feature_activation="sigmoid"))  # relu gain on it, as theirs
    params = _init(arch, jax.random.PRNGKey(0))
    for i, own in enumerate((4, 6)):  # CartPole's 4 inputs, Acrobot's 6 (the padding width)
        kernel = np.asarray(params["adapters"]["kernel"][i])  # (6, width)
        _uniform(kernel, relu * np.sqrt(6 / (own + width)), rtol=0.12)
        _uniform(params["adapters"]["bias"][i], 1 / np.sqrt(own), rtol=0.25)
    for name in ("layer_0", "layer_1"):
        _uniform(params["torso"][name]["kernel"], relu * np.sqrt(6 / (2 * width)), rtol=0.03)
        _uniform(params["torso"][name]["bias"], 1 / np.sqrt(width), rtol=0.25)
    for i in range(2):
        _uniform(params["heads"]["kernel"][i], np.sqrt(6 / (width + 3)), rtol=0.15)  # gain 1, 3 padded actions
        assert np.abs(np.asarray(params["heads"]["bias"][i])).max() <= 1 / np.sqrt(width)
    assert not np.allclose(params["heads"]["kernel"][0], params["heads"]["kernel"][1])  # each task its own draw
    again = _init(arch, jax.random.PRNGKey(0))
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(again)))
    lecun = _init(make_architecture(VECTOR, NetworkConfig(hidden=(width, width), adapter_width=width)),
                  jax.random.PRNGKey(0))
    assert float(np.abs(lecun["torso"]["layer_0"]["bias"]).max()) == 0.0  # lecun: zero biases
    # the sign of the two schemes' difference: lecun's std sqrt(1/512) vs Xavier-relu's sqrt(2/512)
    assert np.asarray(lecun["torso"]["layer_0"]["kernel"]).std() < 0.8 * np.asarray(
        params["torso"]["layer_0"]["kernel"]).std()


@pytest.mark.slow
def test_deramo_init_counts_a_conv_kernels_receptive_field():
    arch = make_architecture(IMAGE, NetworkConfig(init="deramo"))  # conv channels (16, 32), 3x3
    params = _init(arch, jax.random.PRNGKey(1))
    kernel = params["torso"]["layer_1"]["kernel"]  # (3, 3, 16, 32): fan_in 144, fan_out 288 (PyTorch's)
    assert kernel.shape == (3, 3, 16, 32)
    _uniform(kernel, np.sqrt(2.0) * np.sqrt(6 / (144 + 288)), rtol=0.1)
    assert np.abs(np.asarray(params["torso"]["layer_1"]["bias"])).max() <= 1 / 12
    for i, task in enumerate(IMAGE.tasks):  # the 1x1 adapters: linear outputs (gain 1), each game's own channels
        own = task.obs_shape[-1]
        bound = np.sqrt(6 / (own + 16))
        assert np.abs(np.asarray(params["adapters"]["kernel"][i])).max() <= bound * (1 + 1e-6)
        assert np.abs(np.asarray(params["adapters"]["bias"][i])).max() <= 1 / np.sqrt(own)


def test_init_is_validated_once():
    from mtdqn.config import TrainConfig, validate

    with pytest.raises(ConfigError, match="--init must be one of lecun, deramo, got 'xavier'"):
        validate(TrainConfig(network=NetworkConfig(init="xavier")))  # type: ignore[arg-type]
