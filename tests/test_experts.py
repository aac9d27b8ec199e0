"""Mixtures of expert trunks (``--sharing moe:K`` / ``moore:K``): Gram–Schmidt, mixing, what is shared, training."""

from __future__ import annotations

import dataclasses
import re
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import IMAGE, VECTOR

from mtdqn.config import NetworkConfig
from mtdqn.errors import ConfigError
from mtdqn.networks import (
    count_params, describe_architecture, init_params, make_architecture, q_values, split_shared, torso_features,
)
from mtdqn.networks.experts import orthonormalize
from mtdqn.networks.model import _trunk, expert_outputs
from mtdqn.tasks import make_task_set
from mtdqn.train.agent import describe, make_agent
from mtdqn.train.loop import make_population_trainer, make_trainer, population_keys, seed_keys

VECTOR_TASKS = make_task_set(VECTOR.tasks)
IMAGE_TASKS = make_task_set(IMAGE.tasks)


def _arch(sharing: str, image: bool = False):
    cfg = IMAGE if image else VECTOR
    return make_architecture(IMAGE_TASKS if image else VECTOR_TASKS, dataclasses.replace(cfg.network, sharing=sharing))


def _gram(basis: np.ndarray) -> np.ndarray:
    """(experts, samples, features) -> each sample's Gram matrix over the experts (samples, experts, experts)."""
    return np.einsum("isf,jsf->sij", basis, basis)


def test_orthonormalize_gives_orthonormal_outputs_spanning_the_same_space():
    """Per sample, the K outputs become orthonormal, and they are the Q of the QR decomposition (numpy's, signs
    fixed so R's diagonal is positive: Gram–Schmidt's), so each expert adds the direction it brings."""
    v = jax.random.normal(jax.random.PRNGKey(0), (4, 6, 16))  # (experts, samples, features)
    basis = np.asarray(orthonormalize(v))
    np.testing.assert_allclose(_gram(basis), np.broadcast_to(np.eye(4), (6, 4, 4)), atol=1e-5)
    for s in range(6):
        q, r = np.linalg.qr(np.asarray(v[:, s]).T)  # (features, experts)
        np.testing.assert_allclose(basis[:, s], (q * np.sign(np.diag(r))).T, atol=1e-5)


def test_coinciding_experts_give_finite_gradients_and_a_zero_direction():
    """Two equal experts: the second adds no direction, so its basis vector is zero (not 0/0 = NaN as an
    unguarded division would give), the rest stay orthonormal, and every gradient is finite."""
    v = jax.random.normal(jax.random.PRNGKey(1), (3, 5, 8))
    v = v.at[1].set(v[0])
    basis = np.asarray(orthonormalize(v))
    np.testing.assert_array_equal(basis[1], 0.0)
    kept = basis[[0, 2]]
    np.testing.assert_allclose(_gram(kept), np.broadcast_to(np.eye(2), (5, 2, 2)), atol=1e-5)
    probe = jax.random.normal(jax.random.PRNGKey(2), v.shape)
    grad = jax.jit(jax.grad(lambda x: jnp.sum(orthonormalize(x) * probe)))(v)
    assert np.isfinite(np.asarray(grad)).all() and np.abs(np.asarray(grad)).max() > 0


def test_a_tiny_expert_output_has_finite_gradients():
    """An expert's output of norm 1e-13 (or 1e-14) passed the old floor of 1e-30 on its squared norm, and the
    normalization's derivative, 0.5 |w|^-3, overflowed float32: an infinite gradient, then NaN parameters."""
    v = jax.random.normal(jax.random.PRNGKey(3), (2, 4, 128))
    probe = jax.random.normal(jax.random.PRNGKey(4), v.shape)
    for scale in (1e-10, 1e-13, 1e-14):
        tiny = v.at[0].multiply(scale / jnp.linalg.norm(v[0], axis=-1, keepdims=True))
        grad = np.asarray(jax.jit(jax.grad(lambda x: jnp.sum(orthonormalize(x) * probe)))(tiny))
        assert np.isfinite(grad).all(), scale
        basis = np.asarray(orthonormalize(tiny))
        assert np.isfinite(basis).all()
        np.testing.assert_allclose(np.linalg.norm(basis[1], axis=-1), 1.0, rtol=1e-5)  # the other expert: unit


@pytest.mark.slow
@pytest.mark.parametrize("image", [False, True], ids=["vector", "image"])
def test_moore_network_with_two_equal_experts_has_finite_gradients(image):
    arch = _arch("moore:2", image)
    params = init_params(arch, jax.random.PRNGKey(0))
    params["torso"] = jax.tree.map(lambda x: x.at[1].set(x[0]), params["torso"])
    obs = jax.random.uniform(jax.random.PRNGKey(1), (arch.num_tasks, 3, *arch.obs_shape))
    grads = jax.jit(jax.grad(lambda p: jnp.sum(q_values(arch, p, obs) ** 2)))(params)
    assert all(np.isfinite(np.asarray(g)).all() for g in jax.tree.leaves(grads))


@pytest.mark.slow
@pytest.mark.parametrize("image", [False, True], ids=["vector", "image"])
def test_moore_experts_are_orthonormal_per_sample_in_the_network(image):
    arch = _arch("moore:3", image)
    params = init_params(arch, jax.random.PRNGKey(0))
    obs = jax.random.uniform(jax.random.PRNGKey(1), (arch.num_tasks, 4, *arch.obs_shape))
    x = obs.astype(jnp.float32)
    basis = np.asarray(jax.jit(lambda p: orthonormalize(expert_outputs(arch, p, x)))(params))  # (experts, tasks, batch, features)
    gram = _gram(basis.reshape(3, -1, basis.shape[-1]))
    np.testing.assert_allclose(gram, np.broadcast_to(np.eye(3), gram.shape), atol=1e-5)


@pytest.mark.parametrize("image", [False, True], ids=["vector", "image"])
def test_a_task_weighting_one_expert_computes_the_shared_trunk_with_that_experts_weights(image):
    """Each expert is the ``shared`` trunk (same layers, same parameter shapes): a task whose softmax puts
    all its weight on expert k has the features of the shared network whose trunk is expert k's."""
    moe, shared = _arch("moe:3", image), _arch("shared", image)
    params = init_params(moe, jax.random.PRNGKey(0))
    params["mixing"] = jnp.asarray([[0.0, 60.0, 0.0], [60.0, 0.0, 0.0]])  # task 0 -> expert 1, task 1 -> expert 0
    obs = jax.random.uniform(jax.random.PRNGKey(1), (moe.num_tasks, 3, *moe.obs_shape))
    got = np.asarray(jax.jit(partial(torso_features, moe))(params, obs))
    features = jax.jit(partial(torso_features, shared))  # one program for both experts' trunks
    for task, expert in ((0, 1), (1, 0)):
        one = {"adapters": params["adapters"], "heads": params["heads"],
               "torso": jax.tree.map(lambda x: x[expert], params["torso"])}
        want = np.asarray(features(one, obs))
        np.testing.assert_allclose(got[task], want[task], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("sharing", ["moe:2", "moore:3"])
def test_experts_are_shared_and_mixing_weights_are_per_task(sharing):
    """What the gradient strategies and the diagnostics take as shared: the experts (a leading expert axis on
    every torso leaf), not the mixing weights, which are per task like the heads; a task's Q-values depend on
    its own mixing weights only."""
    arch, one = _arch(sharing), _arch("shared")
    k = arch.experts
    params = init_params(arch, jax.random.PRNGKey(0))
    shared, per_task = split_shared(arch, params)
    assert set(shared) == {"torso"} and set(per_task) == {"adapters", "heads", "mixing", "torso"}
    assert per_task["torso"] == {} and per_task["mixing"].shape == (arch.num_tasks, k)
    one_shared = split_shared(one, init_params(one, jax.random.PRNGKey(0)))[0]["torso"]
    assert jax.tree.map(jnp.shape, shared["torso"]) == jax.tree.map(lambda x: (k, *x.shape), one_shared)
    total, n_shared = count_params(arch, params)
    one_total, one_n_shared = count_params(one, init_params(one, jax.random.PRNGKey(0)))
    assert n_shared == k * one_n_shared
    assert total == one_total + (k - 1) * one_n_shared + arch.num_tasks * k
    obs = jax.random.uniform(jax.random.PRNGKey(1), (arch.num_tasks, 3, *arch.obs_shape))
    jac = jax.jit(jax.jacobian(lambda m: q_values(arch, {**params, "mixing": m}, obs)))(params["mixing"])
    # (tasks, batch, actions, tasks, experts): task i's Q-values against task j's mixing logits
    by_task = np.abs(np.asarray(jac)).sum(axis=(1, 2, 4))
    assert by_task[0, 1] == 0 and by_task[1, 0] == 0 and by_task[0, 0] > 0 and by_task[1, 1] > 0


@pytest.mark.parametrize("sharing, message", [
    ("moe:0", "needs K >= 2 experts, got 0"), ("moore:1", "needs K >= 2 experts, got 1"),
    ("moe:x", "moe:K needs an integer K"), ("moore", "moore:K needs an integer K"),
])
def test_bad_expert_counts_are_one_line(sharing, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        make_architecture(VECTOR_TASKS, NetworkConfig(sharing=sharing))


@pytest.mark.parametrize("image", [False, True], ids=["vector", "image"])
@pytest.mark.parametrize("sharing", ["moe:2", "moore:2"])
def test_train_announces_the_parameter_counts(sharing, image):
    """What `mtdqn train` prints first (``describe``): the network's total and shared parameter counts."""
    cfg = IMAGE if image else VECTOR
    agent = make_agent(dataclasses.replace(cfg, network=dataclasses.replace(cfg.network, sharing=sharing)))
    total, shared = count_params(agent.arch, init_params(agent.arch, jax.random.PRNGKey(0)))
    assert shared > total / 2 and f"sharing={sharing}, " in describe(agent)
    assert describe(agent).endswith(f"seeds=[0, 1], parameters: {total:,} total, {shared:,} shared")


@pytest.mark.slow
@pytest.mark.parametrize("image", [False, True], ids=["CartPole", "MinAtar"])
@pytest.mark.parametrize("sharing", ["moe:2", "moore:2"])
def test_two_seeds_train_two_chunks_with_finite_losses(sharing, image):
    """The compiled loop, seeds vmapped, every update through pcgrad: losses finite, experts and each task's
    mixing weights moved."""
    cfg = IMAGE if image else VECTOR
    cfg = dataclasses.replace(cfg, strategy="pcgrad", steps=2 * cfg.log_every,
                              network=dataclasses.replace(cfg.network, sharing=sharing))
    trainer = make_trainer(make_agent(cfg))
    state = trainer.init(seed_keys(trainer.agent.seeds))
    start = jax.tree.map(np.asarray, state.params)  # run_chunk donates the state it is given
    for chunk in range(2):
        state, m = trainer.run_chunk(state, chunk * trainer.agent.derived.iters_per_chunk)
        assert np.asarray(m["updates"]).min() > 0 and np.isfinite(np.asarray(m["loss"])).all()
    for part in ("torso", "mixing"):
        moved = jax.tree.map(lambda a, b: np.abs(np.asarray(a) - b).max(), state.params[part], start[part])
        assert min(jax.tree.leaves(moved)) > 0


@pytest.mark.slow
def test_moores_training_program_keeps_its_reductions_out_of_the_library(monkeypatch):
    """:func:`mtdqn.train.loop.chunk_compiler_options`: ``moore``'s training program sends no ``reduce_sum``
    to YNNPACK (its Gram–Schmidt's dozens of small ones, README "Experts"), where jaxlib's defaults send a
    dozen; in each layout of the seeds (one device, seeds padded over two, a sweep's population) and in the
    host loop's update (gym: tasks).  Small reductions stay out of YNNPACK anyway (VECTOR's 16 samples of 32
    features: none either way), so the network here is larger.  One task: the Gram–Schmidt is per task and
    sample, so a second task sends no other reductions (with VECTOR's two, jaxlib's defaults sent 12-13 per
    layout, as with one: 12), and each of the six programs compiles ~15% faster.  `make test` runs it
    without XLA's optimizations; run by hand with them (as users compile), it passes too."""
    import mtdqn.train.loop as loop

    cfg = dataclasses.replace(VECTOR, tasks=("CartPole-v1",), seeds=1,
                              dqn=dataclasses.replace(VECTOR.dqn, batch_size=64, buffer_size=256),
                              network=dataclasses.replace(VECTOR.network, sharing="moore:2", hidden=(64,)))

    def training_program(layout: str) -> str:
        if layout == "host":  # gym: tasks: the host loop's update, compiled ahead of time by HostChunk.start
            from mtdqn.train.host_loop import make_host_trainer

            _, chunk = make_host_trainer(make_agent(dataclasses.replace(cfg, tasks=("gym:CartPole-v1",))))
            chunk.start(seed_keys([0]))
            chunk.close()
            return chunk.fns["learn"].as_text()
        if layout == "population":
            agent = make_agent(cfg)
            trainer = make_population_trainer(agent, [agent.hypers] * 2, devices=1)
            keys = population_keys([0], trainer.population)
        else:
            trainer = make_trainer(make_agent(dataclasses.replace(cfg, seeds=1 if layout == "one" else 3)))
            assert trainer.devices == (1 if layout == "one" else 2)  # 3 seeds: padded to 4 over two devices
            keys = seed_keys(trainer.agent.seeds)
        # Lowered for the state's shapes and layout (eval_shape keeps init's shardings): the program a run
        # compiles, without compiling and running init for it.
        return trainer.chunk.lower(jax.eval_shape(trainer.init, keys), trainer.hypers, 0).compile().as_text()

    def library_reductions(layout: str) -> int:
        return sum("__ynn_fusion" in ln and "/reduce_sum" in ln for ln in training_program(layout).splitlines())

    layouts = ("one", "padded", "population", "host")
    for layout in layouts:
        assert library_reductions(layout) == 0, layout
    import mtdqn.train.host_loop as host_loop

    # jaxlib's defaults send them, so the zeros above are the options' doing: shown on one jitted layout (the
    # others compile the same update; each sent 12-13 when all four were compiled twice, ~4 s more of the suite)
    # and on the host loop's ahead-of-time compile, a path of its own
    for module in (loop, host_loop):
        monkeypatch.setattr(module, "chunk_compiler_options", lambda *agents: None)
    for layout in ("one", "host"):
        assert library_reductions(layout) >= 10, layout


@pytest.mark.slow
def test_finetuning_from_experts_grafts_them_keeps_mixing_weights_and_refuses_lora(tmp_path):
    """An experts source transfers like a shared trunk: its experts (and, with keep_heads, each kept task's
    mixing weights with its head) are grafted; --lora, whose factors are per dense kernel, is refused."""
    from helpers import fake_run

    from mtdqn.graft import finetune_config, graft, load_source
    from mtdqn.transfer import finetune

    cfg = dataclasses.replace(VECTOR, network=dataclasses.replace(VECTOR.network, sharing="moe:2"))
    fake_run(tmp_path / "src", cfg)
    refused = re.escape("--lora is not supported on a mixture of experts (--sharing moe:2)")
    with pytest.raises(ConfigError, match=refused):
        finetune(dataclasses.replace(VECTOR, tasks=("CartPole-v1",), network=NetworkConfig()), tmp_path / "src",
                 tmp_path / "out", lora_rank=2)
    assert not (tmp_path / "out").exists()
    src = load_source(tmp_path / "src")
    base = dataclasses.replace(VECTOR, tasks=("Acrobot-v1", "MountainCar-v0"), network=NetworkConfig())
    agent = make_agent(finetune_config(base, src.path, src.cfg, keep_heads=True))
    state, record = graft(agent, src, 1, make_trainer(agent).init(seed_keys(agent.seeds)))
    assert record["kept_tasks"] == ["Acrobot-v1"]
    mine, theirs = jax.tree.map(np.asarray, state.params), jax.tree.map(np.asarray, src.net.params)
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(a.view(np.uint32), b.view(np.uint32)),
                 mine["torso"], theirs["torso"])
    np.testing.assert_array_equal(mine["mixing"][:, 0].view(np.uint32), theirs["mixing"][:, 1].view(np.uint32))
    np.testing.assert_array_equal(mine["mixing"][:, 1], 0.0)  # MountainCar: a new task, the even mixture


def _last_layer_scaled(params: dict, arch, factor: float, expert: int | None = None) -> dict:
    """``params`` with the last trunk layer's kernel and bias times ``factor`` (one expert's only, if given)."""
    last = f"layer_{len(arch.torso) - 1}"
    scaled = jax.tree.map(lambda x: x, params)
    layer = scaled["torso"][last]
    scale = (lambda x: x * factor) if expert is None else (lambda x: x.at[expert].multiply(factor))
    scaled["torso"] = {**scaled["torso"], last: jax.tree.map(scale, layer)}
    return scaled


@pytest.mark.parametrize("image", [False, True], ids=["vector", "image"])
@pytest.mark.parametrize("sharing, expert", [("shared", None), ("moe:2", 1)])
def test_feature_norm_rms_makes_the_features_blind_to_the_last_layers_scale(sharing, expert, image):
    """``--feature-norm rms`` (the ablation of MOORE's unit-RMS scale without its orthogonality): the last trunk
    layer's output, each expert's for a mixture, is scaled to unit RMS per sample, so tripling that layer
    (one expert's) changes no feature; without it, it does."""
    cfg = IMAGE if image else VECTOR
    tasks = IMAGE_TASKS if image else VECTOR_TASKS
    obs = jax.random.uniform(jax.random.PRNGKey(1), (2, 5, *tasks.obs_shape))
    for norm, blind in (("rms", True), ("none", False)):
        arch = make_architecture(tasks, dataclasses.replace(cfg.network, sharing=sharing, feature_norm=norm))
        assert arch.unit_rms == (norm == "rms")
        params = init_params(arch, jax.random.PRNGKey(0))
        features = jax.jit(partial(torso_features, arch))
        a = np.asarray(features(params, obs))
        b = np.asarray(features(_last_layer_scaled(params, arch, 3.0, expert), obs))
        assert np.isfinite(a).all() and (a > 0).any()
        if norm == "rms" and expert is None:  # relu of a unit-RMS vector: its pre-activation had mean square 1
            layers = (*arch.torso[:-1], dataclasses.replace(arch.torso[-1], activation="linear"))
            raw = np.asarray(_trunk(arch, params, obs.astype(jnp.float32), layers, None, drop_last=False))
            scaled = raw / np.sqrt((raw ** 2).mean(-1, keepdims=True))
            np.testing.assert_allclose(a, np.maximum(scaled, 0.0), rtol=1e-4, atol=1e-5)
        assert np.allclose(a, b, rtol=1e-4, atol=1e-5) == blind, (norm, np.abs(a - b).max())
    agent = make_agent(dataclasses.replace(cfg, network=dataclasses.replace(cfg.network, sharing=sharing,
                                                                           feature_norm="rms")))
    assert "(features at unit RMS)" in describe(agent)
    assert "unit RMS" in "\n".join(describe_architecture(agent.arch))  # the report's Methods say it too


def test_feature_norm_rms_on_moore_is_refused():
    from mtdqn.config import validate

    network = dataclasses.replace(VECTOR.network, sharing="moore:2", feature_norm="rms")
    cfg = dataclasses.replace(VECTOR, network=network)
    with pytest.raises(ConfigError, match="moore's experts are scaled to unit RMS already"):
        validate(cfg)
