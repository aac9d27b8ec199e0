"""The multi-task Q-network's forward pass and initialization.

The network is described by an :class:`~mtdqn.networks.architecture.Architecture`
(which layers, which shared); its parameters follow the tree contract of
:mod:`mtdqn.networks.params`.  Observations enter as
``(tasks, batch, *obs_shape)``; Q-values leave as ``(tasks, batch, max_actions)``.

A mixture of experts (``moe:K``, ``moore:K``) runs the trunk once per expert
(``vmap`` over the torso's expert axis) and mixes the K outputs per task
(:mod:`mtdqn.networks.experts`); everything before the trunk and after it is
the one-trunk network's.

Dropout (Srivastava et al. 2014) is an argument of the forward pass, not a
layer: ``Dropout.at_rate(rate, key)`` zeroes each trunk layer's outputs with
probability ``rate`` and scales the rest by 1/(1 - rate) (inverted dropout, so
the expected activation is the network's own).  The rate may be traced (a
sweep's members each their own); whether a pass has dropout at all is whether
it gets a Dropout, and at rate 0 one keeps every unit and scales by exactly
1.  Only the update's online forward pass gets one (``train/step.py``); acting, TD targets, evaluation and
a deployed agent always run the whole network, so parameters trained with
dropout act and load exactly like any others.

Initialization (``NetworkConfig.init``): ``lecun``, flax's defaults (LeCun-normal
kernels, zero biases), or ``deramo``, the scheme of D'Eramo et al. 2020's
``GymNetwork`` (github.com/carloderamo/shared, ``dqn/networks.py`` l.122-153):
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
import functools
from typing import Any

from flax import struct
import jax
import jax.numpy as jnp
import numpy as np

from mtdqn.networks.architecture import ACTIVATIONS, Architecture, Layer
from mtdqn.networks.conv import extract_patches
from mtdqn.networks.experts import mix_experts, unit_rms
from mtdqn.networks.lora import fold_lora, init_lora, lora_layers
from mtdqn.networks.params import merge_shared

__all__ = ["Dropout", "init_params", "torso_features", "expert_outputs", "q_values", "one_task_q_values"]

Params = dict[str, Any]


@struct.dataclass(kw_only=True)
class Dropout:
    """Dropout of one forward pass: the probability ``keep`` = 1 - rate that a unit is kept (a number, or a
    traced value) and the key it draws its masks from.  Keyword-only: ``Dropout(0.25, key)`` once meant the
    rate, and now fails rather than keep a quarter of the units."""

    keep: jax.Array | float
    key: jax.Array

    @classmethod
    def at_rate(cls, rate: float, key: jax.Array) -> "Dropout":
        return cls(keep=1.0 - rate, key=key)


def _drop(x: jax.Array, dropout: Dropout, layer: int) -> jax.Array:
    """Inverted dropout of trunk layer ``layer``'s output; each layer its own mask (the key folded with it).

    Scaled by the reciprocal of ``keep``, as XLA compiles a division by a constant: a traced rate computes
    what the same rate compiled in did.  At keep 1 every unit stays (the uniform draws are < 1) and the scale
    is exactly 1: the whole network's numbers."""
    kept = jax.random.bernoulli(jax.random.fold_in(dropout.key, layer), dropout.keep, x.shape)
    return jnp.where(kept, x * (1.0 / jnp.asarray(dropout.keep, jnp.float32)), 0.0)


def _apply(layer: Layer, params: Params, x: jax.Array, shared: bool) -> jax.Array:
    """Apply one layer to ``x`` of shape (tasks, batch, ...)."""
    module = layer.module()
    params = fold_lora(params)
    if layer.kind == "flatten_dense":
        x = x.reshape(x.shape[0], x.shape[1], -1)
    if shared:
        lead = x.shape[:2]
        flat = x.reshape(lead[0] * lead[1], *x.shape[2:])
        y = module.apply({"params": params}, flat)
        y = y.reshape(*lead, *y.shape[1:])
    else:
        y = jax.vmap(lambda p, xi: module.apply({"params": p}, xi))(params, x)
    return ACTIVATIONS[layer.activation](y)


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
    return ACTIVATIONS[arch.torso[0].activation](y + bias[:, None, None, None, :])


def _trunk(arch: Architecture, params: Params, x: jax.Array, layers: tuple[Layer, ...], dropout: Dropout | None,
           drop_last: bool = True) -> jax.Array:
    """The adapters, then the torso's ``layers`` (``arch.torso``, or an expert's), each followed by dropout
    (the last one only when ``drop_last``): (tasks, batch, *obs) -> (tasks, batch, features)."""
    if _folds_adapter(arch):
        x, first = _adapter_and_first_conv(arch, params, x), 1
    else:
        x, first = _apply(arch.adapter, params["adapters"], x, arch.adapter_shared), 0
    for i, (layer, shared) in enumerate(zip(layers, arch.torso_shared)):
        if i >= first:
            x = _apply(layer, params["torso"][f"layer_{i}"], x, shared)
        if dropout is not None and (drop_last or i < len(layers) - 1):
            x = _drop(x, dropout, i)
    return x


def _linear_last(arch: Architecture) -> tuple[Layer, ...]:
    """The torso with its last layer linear: what is mixed, or scaled to unit RMS, before the activation."""
    return (*arch.torso[:-1], dataclasses.replace(arch.torso[-1], activation="linear"))


def expert_outputs(arch: Architecture, params: Params, x: jax.Array, dropout: Dropout | None = None) -> jax.Array:
    """Every expert's representation before the mixing (experts, tasks, batch, features) of inputs ``x``
    (``_inputs``): each expert is the trunk with its own slice of the torso's expert axis and its last layer
    linear (the activation comes after the mixing: :mod:`mtdqn.networks.experts`); dropout masks its own."""
    layers = _linear_last(arch)

    def expert(torso: Params, e: jax.Array) -> jax.Array:
        own = None if dropout is None else Dropout(keep=dropout.keep, key=jax.random.fold_in(dropout.key, e))
        return _trunk(arch, {**params, "torso": torso}, x, layers, own, drop_last=False)

    return jax.vmap(expert)(params["torso"], jnp.arange(arch.experts))


def torso_features(arch: Architecture, params: Params, obs: jax.Array, task_ids: jax.Array | None = None,
                   dropout: Dropout | None = None) -> jax.Array:
    """Trunk output (tasks, batch, features): the representation the heads read (``dropout``: see the module);
    for a mixture of experts, each task's mixture of the experts' outputs."""
    x = _inputs(arch, obs, task_ids)
    if not arch.experts and not arch.unit_rms:
        return _trunk(arch, params, x, arch.torso, dropout)
    if arch.experts:
        mixed = mix_experts(expert_outputs(arch, params, x, dropout), params["mixing"], arch.orthogonal,
                            arch.unit_rms)
    else:  # the last layer linear, scaled to unit RMS, then its activation (as a mixture's output is)
        mixed = unit_rms(_trunk(arch, params, x, _linear_last(arch), dropout, drop_last=False))
    x = ACTIVATIONS[arch.torso[-1].activation](mixed)
    if dropout is not None:
        x = _drop(x, dropout, len(arch.torso) - 1)
    return x


def q_values(arch: Architecture, params: Params, obs: jax.Array, task_ids: jax.Array | None = None,
             dropout: Dropout | None = None) -> jax.Array:
    """Q-values (tasks, batch, max_actions); padded actions are masked by the caller."""
    return _apply(arch.head, params["heads"], torso_features(arch, params, obs, task_ids, dropout), arch.head_shared)


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
    """Fresh parameters; per-task parts get independent initializations.  A mixture of experts: each expert
    initialized as the one trunk is (its own key), every task's mixing logits zero (the even mixture)."""
    k_adapter, k_torso, k_head = jax.random.split(key, 3)
    x = _inputs(arch, jnp.zeros((arch.num_tasks, 1, *arch.obs_shape), jnp.float32), None)
    adapters, x = _init_layer(arch.adapter, k_adapter, x, arch.adapter_shared, arch.num_tasks, arch.init,
                              arch.input_dims)
    if not arch.experts:
        torso, x = _init_torso(arch, k_torso, x)
        heads, _ = _init_layer(arch.head, k_head, x, arch.head_shared, arch.num_tasks, arch.init)
        return {"adapters": adapters, "torso": torso, "heads": heads}
    torso, x = jax.vmap(lambda k: _init_torso(arch, k, x))(jax.random.split(k_torso, arch.experts))
    heads, _ = _init_layer(arch.head, k_head, x[0], arch.head_shared, arch.num_tasks, arch.init)
    mixing = jnp.zeros((arch.num_tasks, arch.experts), jnp.float32)
    return {"adapters": adapters, "torso": torso, "heads": heads, "mixing": mixing}


def param_shapes(arch: Architecture) -> Params:
    """The shapes and dtypes of one seed's :func:`init_params` (a new tree of ``jax.ShapeDtypeStruct``), traced
    once per architecture in a process: the memory check, the banner, a fine-tuning's shape checks and a loaded
    agent's restore target (:func:`mtdqn.deploy.load_agent`) read them for every run, and tracing the
    initialization takes ~20-70 ms (a search's or a test suite's hundreds of configs share a few architectures)."""
    return jax.tree.map(lambda leaf: leaf, _traced_param_shapes(arch))


@functools.lru_cache(maxsize=64)
def _traced_param_shapes(arch: Architecture) -> Params:
    return jax.eval_shape(lambda k: init_params(arch, k), jax.random.PRNGKey(0))


def _init_torso(arch: Architecture, key: jax.Array, x: jax.Array) -> tuple[Params, jax.Array]:
    """The torso's layers (and LoRA factors) from ``key`` on the adapters' example output ``x``; returns them
    and the torso's example output (its shape is what the heads take)."""
    torso = {}
    for i, (layer, shared, k, lora) in enumerate(
        zip(arch.torso, arch.torso_shared, jax.random.split(key, len(arch.torso)), lora_layers(arch))
    ):
        torso[f"layer_{i}"], x = _init_layer(layer, k, x, shared, arch.num_tasks, arch.init)
        if lora:  # a key of its own (fold_in), so the layer's own init is the one it has without LoRA
            torso[f"layer_{i}"] = {**torso[f"layer_{i}"], **init_lora(torso[f"layer_{i}"]["kernel"],
                                                                      arch.lora_rank, jax.random.fold_in(k, 1))}
    return torso, x
