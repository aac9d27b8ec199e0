"""The network's static description: which layers, and which of them the tasks share.

Parameters are always the tree ``{"adapters", "torso", "heads"}``
(:mod:`mtdqn.networks.params`); the torso is ``{"layer_0", "layer_1", ...}``.
A part is either *shared* (one set of weights used by every task) or *per
task* (the same tree with a leading task axis).  Which parts are shared is the
whole difference between the sharing variants, so it lives in one place,
:func:`make_architecture`, and everything else (freezing, gradient strategies,
parameter counts) asks :func:`mtdqn.networks.params.shared_mask`.

Shapes: observations enter as ``(tasks, batch, *obs_shape)`` padded to the task
set's common shape; Q-values leave as ``(tasks, batch, max_actions)``.

Per-task adapters: vector tasks get ``Dense(obs_i -> adapter_width) + relu``;
image (MinAtar) tasks get a 1x1 convolution from their 4-10 channels to
``adapter_channels``, so every game keeps its own channel semantics (padding
channels instead would make channel 0 mean "paddle" in one game and "player"
in another to the same shared filters).  Zero-padded input features meet
zero-gradient weight rows, so padding never changes a task's function.

Mixtures of experts (``moe:K``, ``moore:K``; :mod:`mtdqn.networks.experts`):
the torso is K expert trunks, every layer shared by all tasks and carrying a
leading expert axis, and a per-task part ``"mixing"`` holds each task's
logits over the experts (tasks, K).  Adapters and heads stay per task.  So
the gradient strategies combine the tasks' gradients on the experts, and each
task's mixing weights follow its own gradient, like its head.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import flax.linen as nn

from mtdqn.config import NetworkConfig
from mtdqn.errors import ConfigError
from mtdqn.networks.conv import PatchConv

if TYPE_CHECKING:  # an annotation only: importing the tasks imports gymnax, which starts JAX (planned first)
    from mtdqn.tasks.registry import TaskSet

__all__ = ["ACTIVATIONS", "CONV_KERNEL", "SHARING", "Layer", "Architecture", "parse_sharing", "make_architecture",
           "describe_architecture"]

CONV_KERNEL = 3  # the image trunk's k x k kernels (VALID, stride 1), as in Young & Tian's MinAtar DQN

ACTIVATIONS = {"relu": nn.relu, "sigmoid": nn.sigmoid, "linear": lambda y: y}


@dataclass(frozen=True)
class Layer:
    kind: str  # "dense" | "conv" | "flatten_dense"
    features: int
    activation: str = "relu"  # a key of ACTIVATIONS

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
    init: str = "lecun"  # the initialization scheme (mtdqn.networks.model)
    input_dims: tuple[int, ...] = ()  # per task, the width of its own observation's last axis (before padding)
    experts: int = 0  # K expert trunks mixed per task (moe:K, moore:K); 0: one trunk
    orthogonal: bool = False  # the experts' outputs orthonormalized before the mixing (moore:K)
    unit_rms: bool = False  # the last trunk layer's output (each expert's) scaled to unit RMS per sample

    @property
    def head(self) -> Layer:
        """The Q head: a linear Dense to the task set's (padded) action count."""
        return Layer("dense", self.num_actions, activation="linear")


SHARING = "independent, shared, partial:K, conditioned, moe:K, moore:K"


def trunk_layers(kind: str, cfg: NetworkConfig) -> tuple[Layer, ...]:
    """The trunk's layers for tasks of ``kind`` (image: conv, conv, fully connected; vector: ``cfg.hidden``), the
    last one's activation ``cfg.feature_activation`` (what the heads read): what ``partial:K`` counts."""
    if kind == "image":
        c1, c2 = cfg.conv_channels
        torso = (Layer("conv", c1), Layer("conv", c2), Layer("flatten_dense", cfg.conv_dense))
    else:
        torso = tuple(Layer("dense", w) for w in cfg.hidden)
    return (*torso[:-1], dataclasses.replace(torso[-1], activation=cfg.feature_activation))


def parse_sharing(sharing: str, num_layers: int) -> tuple[str, int]:
    """(variant, K): K is the number of shared trunk layers, except for ``moe:K`` / ``moore:K``, where it is the
    number of experts (each a whole shared trunk).  Validates K: against the trunk depth for ``partial``, at
    least 2 experts (one has nothing to mix, or to orthogonalize)."""
    name, _, arg = sharing.partition(":")
    if name in ("independent", "shared", "conditioned") and not arg:
        return name, {"independent": 0}.get(name, num_layers)
    if name in ("partial", "moe", "moore"):
        try:
            k = int(arg)
        except ValueError:
            raise ConfigError(f"--sharing {name}:K needs an integer K, got {sharing!r}") from None
        if name == "partial" and not 0 <= k <= num_layers:
            raise ConfigError(f"--sharing partial:K needs 0 <= K <= {num_layers} (trunk layers), got {k}")
        if name != "partial" and k < 2:
            raise ConfigError(f"--sharing {name}:K needs K >= 2 experts, got {k}")
        return name, k
    close = difflib.get_close_matches(name, ["independent", "shared", "partial", "conditioned", "moe", "moore"], n=1)
    meant = f"did you mean {close[0] + (':' + arg if arg else '')!r}? " if close else ""  # sharde: shared
    raise ConfigError(f"unknown --sharing {sharing!r}; {meant}valid: {SHARING}")


def make_architecture(task_set: TaskSet, cfg: NetworkConfig, lora_rank: int = 0) -> Architecture:
    """Choose layers from the observation kind and sharing from ``cfg.sharing``; ``lora_rank``: see
    :mod:`mtdqn.networks.lora`."""
    if task_set.kind == "image":
        height, width = task_set.obs_shape[:2]
        if min(height, width) - 2 * (CONV_KERNEL - 1) < 1:
            raise ConfigError(
                f"the trunk's two {CONV_KERNEL}x{CONV_KERNEL} convolutions need observations of at least "
                f"{2 * CONV_KERNEL - 1}x{2 * CONV_KERNEL - 1}, got {height}x{width} ({', '.join(task_set.names)})"
            )
        adapter = Layer("dense", cfg.adapter_channels, activation="linear")
    else:
        adapter = Layer("dense", cfg.adapter_width)
    torso = trunk_layers(task_set.kind, cfg)
    name, k = parse_sharing(cfg.sharing, len(torso))
    conditioned = name == "conditioned"
    experts = k if name in ("moe", "moore") else 0
    return Architecture(
        num_tasks=len(task_set),
        obs_shape=task_set.obs_shape,
        num_actions=task_set.num_actions,
        adapter=adapter,
        torso=torso,
        torso_shared=tuple(experts > 0 or i < k for i in range(len(torso))),
        adapter_shared=conditioned,
        head_shared=conditioned,
        conditioned=conditioned,
        sharing=cfg.sharing,
        lora_rank=lora_rank,
        init=cfg.init,
        input_dims=tuple(t.obs_shape[-1] for t in task_set.tasks),
        experts=experts,
        orthogonal=name == "moore",
        unit_rms=cfg.feature_norm == "rms",
    )


def describe_architecture(arch: Architecture) -> list[str]:
    """The network as one line per part, input to output, saying what is shared (for the report's methods)."""
    def layer(x: Layer) -> str:
        name = {"dense": "Dense", "conv": f"Conv{CONV_KERNEL}x{CONV_KERNEL}", "flatten_dense": "Flatten+Dense"}[x.kind]
        return f"{name}({x.features}{'' if x.activation == 'linear' else ', ' + x.activation})"

    where = lambda shared: "shared by all tasks" if shared else "one per task"  # noqa: E731
    lines = [f"input: observations padded to {arch.obs_shape}"
             + (", with the task's one-hot id" if arch.conditioned else "")]
    lines.append(f"adapter: {layer(arch.adapter)}, {where(arch.adapter_shared)}")
    if arch.experts:
        lines += _describe_experts(arch, layer)
    else:
        for i, (x, shared) in enumerate(zip(arch.torso, arch.torso_shared)):
            last = i == len(arch.torso) - 1 and arch.unit_rms
            lines.append(f"trunk layer {i}: {layer(x)}, {where(shared)}"
                         + (", its output scaled to unit RMS per sample before the activation" if last else ""))
    lines.append(f"head: Dense({arch.num_actions}) Q-values (actions padded and masked), {where(arch.head_shared)}")
    lines.append(f"initial weights: {_INIT_TEXT[arch.init]}")
    return lines


def _describe_experts(arch: Architecture, layer: Callable[[Layer], str]) -> list[str]:
    *hidden, last = arch.torso
    lines = [f"trunk: {arch.experts} experts, each shared by all tasks, each:"]
    lines += [f"  layer {i}: {layer(x)}" for i, x in enumerate(hidden)]
    lines.append(f"  layer {len(hidden)}: {layer(dataclasses.replace(last, activation='linear'))}")
    how = ("orthonormalized per sample (Gram-Schmidt over the experts, scaled to unit RMS), then "
           if arch.orthogonal else "each scaled to unit RMS per sample, then " if arch.unit_rms else "")
    lines.append(f"mixing: the experts' outputs {how}weighted by each task's softmax weights (one set per task), "
                 f"then {last.activation}")
    return lines


_INIT_TEXT = {"lecun": "lecun (LeCun-normal kernels, zero biases)",
              "deramo": "deramo (D'Eramo et al.'s: Xavier-uniform kernels, gain sqrt 2, 1 on linear layers; "
                        "biases uniform in +-1/sqrt(fan_in))"}
