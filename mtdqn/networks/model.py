"""The multi-task Q-network: per-task input adapters, a trunk, Q heads.

Parameters are always the tree ``{"adapters", "torso", "heads"}``; the torso is
``{"layer_0", "layer_1", ...}``.  A part is either *shared* (one set of weights
used by every task) or *per task* (the same tree with a leading task axis).
Which parts are shared is the whole difference between the sharing variants,
so it lives in one place, :func:`make_architecture`, and everything else
(freezing, gradient strategies, parameter counts) asks :func:`shared_mask`.

Shapes: observations enter as ``(tasks, batch, *obs_shape)`` padded to the task
set's common shape; Q-values leave as ``(tasks, batch, max_actions)``.

Per-task adapters: vector tasks get ``Dense(obs_i -> adapter_width) + relu``;
image (MinAtar) tasks get a 1x1 convolution from their 4-10 channels to
``adapter_channels``, so every game keeps its own channel semantics (padding
channels instead would make channel 0 mean "paddle" in one game and "player"
in another to the same shared filters).  Zero-padded input features meet
zero-gradient weight rows, so padding never changes a task's function.

Low-rank updates (LoRA, Hu et al. 2021, arXiv:2106.09685): with
``lora_rank`` r > 0 every shared dense trunk layer also carries factors
``lora_a`` (in, r) and ``lora_b`` (r, out) beside its ``kernel`` and is applied
with the kernel ``W + A B``.  ``B`` starts at zero, so a network fine-tuned
this way starts as exactly the pretrained one; :mod:`mtdqn.finetune` freezes
``W`` and trains the factors.

Dropout (Srivastava et al. 2014) is an argument of the forward pass, not a
layer: ``Dropout(rate, key)`` zeroes each trunk layer's outputs with
probability ``rate`` and scales the rest by 1/(1 - rate) (inverted dropout, so
the expected activation is the network's own).  Only the update's online
forward pass gets one (``train/step.py``); acting, TD targets, evaluation and
a deployed agent always run the whole network, so parameters trained with
dropout act and load exactly like any others.

Initialization (``NetworkConfig.init``): ``lecun``, flax's defaults (LeCun-normal
kernels, zero biases), or ``deramo``, the scheme of D'Eramo et al. 2020's
``GymNetwork`` (github.com/carloderamo/shared, ``dqn/networks.py`` l.122-146):
``nn.init.xavier_uniform_`` with ``calculate_gain('relu')`` (sqrt 2) on the
input layers and the shared layers, ``calculate_gain('linear')`` (1) on the Q
heads, and PyTorch's default ``nn.Linear`` biases, uniform in
+-1/sqrt(fan_in).  Xavier-uniform draws from +-gain * sqrt(6 / (fan_in +
fan_out)); fans count a conv kernel's receptive field as PyTorch does.  Here
every layer with a linear output (the heads, the image tasks' 1x1 adapters)
gets gain 1 and every other gain sqrt 2 (the paper's sigmoid feature layer
too), and a per-task adapter's fan_in is its task's own input width (the
paper's ``nn.Linear(n_input[i], 80)``), not the padded one.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import flax.linen as nn
from flax import struct
import jax
import jax.numpy as jnp
import numpy as np

from mtdqn.config import NetworkConfig
from mtdqn.errors import ConfigError
from mtdqn.networks.conv import PatchConv, extract_patches
from mtdqn.tasks.registry import TaskSet

__all__ = [
    "Architecture",
    "make_architecture",
    "parse_sharing",
    "init_params",
    "torso_features",
    "q_values",
    "one_task_q_values",
    "shared_mask",
    "split_shared",
    "merge_shared",
    "count_params",
    "lora_layers",
    "describe_architecture",
    "Dropout",
]

Params = dict[str, Any]
CONV_KERNEL = 3  # the image trunk's k x k kernels (VALID, stride 1), as in Young & Tian's MinAtar DQN


_ACTIVATIONS = {"relu": nn.relu, "sigmoid": nn.sigmoid, "linear": lambda y: y}


@dataclass(frozen=True)
class Layer:
    kind: str  # "dense" | "conv" | "flatten_dense"
    features: int
    activation: str = "relu"  # a key of _ACTIVATIONS

    def module(self) -> nn.Module:
        if self.kind == "conv":  # nn.Conv's parameters, computed as patches @ kernel (see conv.py)
            return PatchConv(self.features, kernel_size=(CONV_KERNEL, CONV_KERNEL))
        return nn.Dense(self.features)


@dataclass(frozen=True)
class Architecture:
    """Static description of the network; hashable, closed over by compiled code."""

    num_tasks: int
    obs_shape: tuple[int, ...]
    num_actions: int
    adapter: Layer
    torso: tuple[Layer, ...]
    torso_shared: tuple[bool, ...]
    adapter_shared: bool
    head_shared: bool
    conditioned: bool
    sharing: str
    lora_rank: int = 0  # rank of the low-rank updates of the shared dense trunk layers (0: none)
    init: str = "lecun"  # the initialization scheme (see the module)
    input_dims: tuple[int, ...] = ()  # per task, the width of its own observation's last axis (before padding)


@struct.dataclass
class Dropout:
    """Dropout of one forward pass: the rate (static: from the config, not a traced value, so ``jit`` and
    ``vmap`` can carry a Dropout) and the key it draws its masks from."""

    rate: float = struct.field(pytree_node=False)
    key: jax.Array


def _drop(x: jax.Array, dropout: Dropout, layer: int) -> jax.Array:
    """Inverted dropout of trunk layer ``layer``'s output; each layer its own mask (the key folded with it)."""
    keep = jax.random.bernoulli(jax.random.fold_in(dropout.key, layer), 1.0 - dropout.rate, x.shape)
    return jnp.where(keep, x / (1.0 - dropout.rate), 0.0)


def parse_sharing(sharing: str, num_layers: int) -> tuple[str, int]:
    """``'partial:K'`` -> ('partial', K); validates K against the trunk depth."""
    name, _, arg = sharing.partition(":")
    if name in ("independent", "shared", "conditioned") and not arg:
        return name, {"independent": 0}.get(name, num_layers)
    if name == "partial":
        try:
            k = int(arg)
        except ValueError:
            raise ConfigError(f"--sharing partial:K needs an integer K, got {sharing!r}") from None
        if not 0 <= k <= num_layers:
            raise ConfigError(f"--sharing partial:K needs 0 <= K <= {num_layers} (trunk layers), got {k}")
        return name, k
    raise ConfigError(f"unknown --sharing {sharing!r}; valid: independent, shared, partial:K, conditioned")


def make_architecture(task_set: TaskSet, cfg: NetworkConfig, lora_rank: int = 0) -> Architecture:
    """Choose layers from the observation kind and sharing from ``cfg.sharing``; ``lora_rank``: see the module."""
    if task_set.kind == "image":
        c1, c2 = cfg.conv_channels
        height, width = task_set.obs_shape[:2]
        if min(height, width) - 2 * (CONV_KERNEL - 1) < 1:
            raise ConfigError(
                f"the trunk's two {CONV_KERNEL}x{CONV_KERNEL} convolutions need observations of at least "
                f"{2 * CONV_KERNEL - 1}x{2 * CONV_KERNEL - 1}, got {height}x{width} ({', '.join(task_set.names)})"
            )
        adapter = Layer("dense", cfg.adapter_channels, activation="linear")
        torso = (Layer("conv", c1), Layer("conv", c2), Layer("flatten_dense", cfg.conv_dense))
    else:
        adapter = Layer("dense", cfg.adapter_width)
        torso = tuple(Layer("dense", w) for w in cfg.hidden)
    torso = (*torso[:-1], dataclasses.replace(torso[-1], activation=cfg.feature_activation))  # what heads read
    name, k = parse_sharing(cfg.sharing, len(torso))
    conditioned = name == "conditioned"
    return Architecture(
        num_tasks=len(task_set),
        obs_shape=task_set.obs_shape,
        num_actions=task_set.num_actions,
        adapter=adapter,
        torso=torso,
        torso_shared=tuple(i < k for i in range(len(torso))),
        adapter_shared=conditioned,
        head_shared=conditioned,
        conditioned=conditioned,
        sharing=cfg.sharing,
        lora_rank=lora_rank,
        init=cfg.init,
        input_dims=tuple(t.obs_shape[-1] for t in task_set.tasks),
    )


def lora_layers(arch: Architecture) -> tuple[bool, ...]:
    """Which trunk layers carry low-rank factors: the shared dense ones, when ``arch.lora_rank`` > 0."""
    return tuple(arch.lora_rank > 0 and shared and layer.kind != "conv"
                 for layer, shared in zip(arch.torso, arch.torso_shared))


def _fold_lora(params: Params) -> Params:
    """A layer's parameters with its low-rank factors folded into the kernel: W + A B."""
    if "lora_a" not in params:
        return params
    return {"kernel": params["kernel"] + params["lora_a"] @ params["lora_b"], "bias": params["bias"]}


def _apply(layer: Layer, params: Params, x: jax.Array, shared: bool) -> jax.Array:
    """Apply one layer to ``x`` of shape (tasks, batch, ...)."""
    module = layer.module()
    params = _fold_lora(params)
    if layer.kind == "flatten_dense":
        x = x.reshape(x.shape[0], x.shape[1], -1)
    if shared:
        lead = x.shape[:2]
        flat = x.reshape(lead[0] * lead[1], *x.shape[2:])
        y = module.apply({"params": params}, flat)
        y = y.reshape(*lead, *y.shape[1:])
    else:
        y = jax.vmap(lambda p, xi: module.apply({"params": p}, xi))(params, x)
    return _ACTIVATIONS[layer.activation](y)


def _inputs(arch: Architecture, obs: jax.Array, task_ids: jax.Array | None) -> jax.Array:
    """Cast observations; conditioned networks get the one-hot task id appended.

    ``task_ids`` (leading axis of ``obs``) says which task each slice belongs
    to; by default slice i is task i.  Per-task gradient code passes a single id.
    """
    x = obs.astype(jnp.float32)
    if arch.conditioned:
        ids = jnp.arange(x.shape[0]) if task_ids is None else task_ids
        onehot = jax.nn.one_hot(ids, arch.num_tasks, dtype=jnp.float32)  # (slices, tasks)
        onehot = onehot.reshape(x.shape[0], *([1] * (x.ndim - 2)), arch.num_tasks)
        x = jnp.concatenate([x, jnp.broadcast_to(onehot, (*x.shape[:-1], arch.num_tasks))], axis=-1)
    return x


def _folds_adapter(arch: Architecture) -> bool:
    """Image trunks: the linear 1x1 adapter followed by the first 3x3 conv is one 3x3 conv per task."""
    return arch.adapter.kind == "dense" and arch.adapter.activation == "linear" and arch.torso[0].kind == "conv"


def _adapter_and_first_conv(arch: Architecture, params: Params, x: jax.Array) -> jax.Array:
    """relu(conv_K(adapter_A(x))) (tasks, batch, H', W', out) computed as one conv of x per task.

    The adapter is linear (``x @ A_i + a_i`` per pixel), so composing it into
    the kernel, K'_i[dy, dx] = A_i @ K[dy, dx] and bias b + sum a_i K, gives the
    same function (up to float rounding) with patches of the task's own
    channels (9 x C, C <= 10 for MinAtar) instead of the adapter's 16, and no
    adapter output or input gradient to move: the conv trunk's copies are what
    bounds its speed on CPU (README, performance).  Parameters are untouched.
    """
    tasks = x.shape[0]
    per_task = lambda tree, shared: jax.tree.map(  # noqa: E731  (a leading task axis on every leaf)
        lambda v: jnp.broadcast_to(v, (tasks, *v.shape)) if shared else v, tree)
    adapter = per_task(params["adapters"], arch.adapter_shared)
    conv = per_task(params["torso"]["layer_0"], arch.torso_shared[0])
    kernel = jnp.einsum("tca,tyxao->tyxco", adapter["kernel"], conv["kernel"])  # (tasks, kh, kw, C, out)
    bias = conv["bias"] + jnp.einsum("ta,tyxao->to", adapter["bias"], conv["kernel"])  # (tasks, out)
    kh, kw, channels, out = kernel.shape[1:]
    patches = extract_patches(x, (kh, kw))  # (tasks, batch, H', W', kh*kw*C)
    y = jnp.einsum("tbhwk,tko->tbhwo", patches, kernel.reshape(tasks, kh * kw * channels, out))
    return _ACTIVATIONS[arch.torso[0].activation](y + bias[:, None, None, None, :])


def torso_features(arch: Architecture, params: Params, obs: jax.Array, task_ids: jax.Array | None = None,
                   dropout: Dropout | None = None) -> jax.Array:
    """Trunk output (tasks, batch, features): the representation the tasks share (``dropout``: see the module)."""
    x = _inputs(arch, obs, task_ids)
    if _folds_adapter(arch):
        x, first = _adapter_and_first_conv(arch, params, x), 1
    else:
        x, first = _apply(arch.adapter, params["adapters"], x, arch.adapter_shared), 0
    for i, (layer, shared) in enumerate(zip(arch.torso, arch.torso_shared)):
        if i >= first:
            x = _apply(layer, params["torso"][f"layer_{i}"], x, shared)
        if dropout is not None and dropout.rate > 0:
            x = _drop(x, dropout, i)
    return x


def q_values(arch: Architecture, params: Params, obs: jax.Array, task_ids: jax.Array | None = None,
             dropout: Dropout | None = None) -> jax.Array:
    """Q-values (tasks, batch, max_actions); padded actions are masked by the caller."""
    head = Layer("dense", arch.num_actions, activation="linear")
    return _apply(head, params["heads"], torso_features(arch, params, obs, task_ids, dropout), arch.head_shared)


def one_task_q_values(arch: Architecture, shared: Params, task_params: Params, obs: jax.Array,
                      task_id: jax.Array, dropout: Dropout | None = None) -> jax.Array:
    """Q-values (batch, max_actions) of one task from the shared parts and that task's slice of the per-task
    parts (no task axis): how training takes each task's loss under ``vmap``, and how a deployed agent acts."""
    params = merge_shared(shared, jax.tree.map(lambda x: x[None], task_params))  # a task set of one
    return q_values(arch, params, obs[None], task_ids=task_id[None], dropout=dropout)[0]


def _init_layer(layer: Layer, key: jax.Array, x: jax.Array, shared: bool, num_tasks: int, scheme: str = "lecun",
                input_dims: tuple[int, ...] = ()) -> tuple[Params, jax.Array]:
    """Init one layer on example input ``x`` (tasks, 1, ...) with ``scheme``; returns params and output.
    ``input_dims``: per task, the inputs that are its own (a per-task adapter's; else all of them)."""
    module = layer.module()
    inp = x.reshape(x.shape[0], x.shape[1], -1) if layer.kind == "flatten_dense" else x
    if scheme == "deramo":
        abstract = jax.eval_shape(lambda: module.init(key, inp[0])["params"])
        if shared:
            params = _torch_xavier(layer, key, abstract)
        else:
            own = jnp.asarray(input_dims if input_dims else [abstract["kernel"].shape[-2]] * num_tasks)
            params = jax.vmap(lambda k, n: _torch_xavier(layer, k, abstract, n))(jax.random.split(key, num_tasks),
                                                                                  own)
    elif shared:
        params = module.init(key, inp[0])["params"]
    else:
        keys = jax.random.split(key, num_tasks)
        params = jax.vmap(lambda k, xi: module.init(k, xi)["params"])(keys, inp)
    return params, _apply(layer, params, x, shared)


def _torch_xavier(layer: Layer, key: jax.Array, abstract: Params, in_features: Any = None) -> Params:
    """The ``deramo`` scheme (see the module) for one layer of ``abstract``'s shapes; ``in_features``: the
    inputs that count in fan_in (default: the kernel's)."""
    shape = abstract["kernel"].shape  # (in, out) or (kh, kw, in, out)
    receptive = int(np.prod(shape[:-2]))
    fan_in = (shape[-2] if in_features is None else in_features) * receptive
    fan_out = shape[-1] * receptive
    gain = 1.0 if layer.activation == "linear" else float(np.sqrt(2.0))
    k_kernel, k_bias = jax.random.split(key)
    w_bound = gain * jnp.sqrt(6.0 / (fan_in + fan_out))
    b_bound = 1.0 / jnp.sqrt(jnp.asarray(fan_in, jnp.float32))
    return {"kernel": w_bound * jax.random.uniform(k_kernel, shape, jnp.float32, -1.0, 1.0),
            "bias": b_bound * jax.random.uniform(k_bias, abstract["bias"].shape, jnp.float32, -1.0, 1.0)}


def init_params(arch: Architecture, key: jax.Array) -> Params:
    """Fresh parameters; per-task parts get independent initializations."""
    k_adapter, k_torso, k_head = jax.random.split(key, 3)
    x = _inputs(arch, jnp.zeros((arch.num_tasks, 1, *arch.obs_shape), jnp.float32), None)
    adapters, x = _init_layer(arch.adapter, k_adapter, x, arch.adapter_shared, arch.num_tasks, arch.init,
                              arch.input_dims)
    torso = {}
    for i, (layer, shared, k, lora) in enumerate(
        zip(arch.torso, arch.torso_shared, jax.random.split(k_torso, len(arch.torso)), lora_layers(arch))
    ):
        torso[f"layer_{i}"], x = _init_layer(layer, k, x, shared, arch.num_tasks, arch.init)
        if lora:  # a key of its own (fold_in), so the layer's own init is the one it has without LoRA
            torso[f"layer_{i}"] = {**torso[f"layer_{i}"], **_init_lora(torso[f"layer_{i}"]["kernel"],
                                                                       arch.lora_rank, jax.random.fold_in(k, 1))}
    head = Layer("dense", arch.num_actions, activation="linear")
    heads, _ = _init_layer(head, k_head, x, arch.head_shared, arch.num_tasks, arch.init)
    return {"adapters": adapters, "torso": torso, "heads": heads}


def _init_lora(kernel: jax.Array, rank: int, key: jax.Array) -> Params:
    """A ~ N(0, 1/in) (in, r) and B = 0 (r, out): W + A B starts as W."""
    fan_in, fan_out = kernel.shape
    a = jax.random.normal(key, (fan_in, rank), kernel.dtype) / jnp.sqrt(jnp.asarray(fan_in, kernel.dtype))
    return {"lora_a": a, "lora_b": jnp.zeros((rank, fan_out), kernel.dtype)}


def shared_mask(arch: Architecture) -> dict[str, Any]:
    """Which top-level parts are shared: {"adapters": bool, "torso": {layer: bool}, "heads": bool}."""
    return {
        "adapters": arch.adapter_shared,
        "torso": {f"layer_{i}": s for i, s in enumerate(arch.torso_shared)},
        "heads": arch.head_shared,
    }


def split_shared(arch: Architecture, params: Params) -> tuple[Params, Params]:
    """(shared parts, per-task parts) as two dicts with the same key layout."""
    mask = shared_mask(arch)
    shared: Params = {"torso": {}}
    per_task: Params = {"torso": {}}
    for part in ("adapters", "heads"):
        (shared if mask[part] else per_task)[part] = params[part]
    for name, is_shared in mask["torso"].items():
        (shared if is_shared else per_task)["torso"][name] = params["torso"][name]
    return shared, per_task


def merge_shared(shared: Params, per_task: Params) -> Params:
    """Inverse of :func:`split_shared`."""
    merged = {**per_task, **{k: v for k, v in shared.items() if k != "torso"}}
    merged["torso"] = {**per_task.get("torso", {}), **shared.get("torso", {})}
    return dict(sorted(merged.items()))


def count_params(arch: Architecture, params: Params) -> tuple[int, int]:
    """(total, shared) parameter counts of one seed's network."""
    shared, per_task = split_shared(arch, params)
    n_shared = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(shared))
    n_task = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(per_task))
    return n_shared + n_task, n_shared


def describe_architecture(arch: Architecture) -> list[str]:
    """The network as one line per part, input to output, saying what is shared (for the report's methods)."""
    def layer(x: Layer) -> str:
        name = {"dense": "Dense", "conv": f"Conv{CONV_KERNEL}x{CONV_KERNEL}", "flatten_dense": "Flatten+Dense"}[x.kind]
        return f"{name}({x.features}{'' if x.activation == 'linear' else ', ' + x.activation})"

    where = lambda shared: "shared by all tasks" if shared else "one per task"  # noqa: E731
    lines = [f"input: observations padded to {arch.obs_shape}"
             + (", with the task's one-hot id" if arch.conditioned else "")]
    lines.append(f"adapter: {layer(arch.adapter)}, {where(arch.adapter_shared)}")
    for i, (x, shared) in enumerate(zip(arch.torso, arch.torso_shared)):
        lines.append(f"trunk layer {i}: {layer(x)}, {where(shared)}")
    lines.append(f"head: Dense({arch.num_actions}) Q-values (actions padded and masked), {where(arch.head_shared)}")
    lines.append(f"initial weights: {_INIT_TEXT[arch.init]}")
    return lines


_INIT_TEXT = {"lecun": "lecun (LeCun-normal kernels, zero biases)",
              "deramo": "deramo (D'Eramo et al.'s: Xavier-uniform kernels, gain sqrt 2, 1 on linear layers; "
                        "biases uniform in +-1/sqrt(fan_in))"}
