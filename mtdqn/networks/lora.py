"""Low-rank updates of the shared trunk (LoRA, Hu et al. 2021, arXiv:2106.09685).

With ``Architecture.lora_rank`` r > 0 every shared dense trunk layer also
carries factors ``lora_a`` (in, r) and ``lora_b`` (r, out) beside its
``kernel`` and is applied with the kernel ``W + A B``.  ``B`` starts at zero,
so a network fine-tuned this way starts as exactly the pretrained one;
:mod:`mtdqn.finetune` freezes ``W`` and trains the factors.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from mtdqn.networks.architecture import Architecture

__all__ = ["lora_layers", "fold_lora", "init_lora"]

Params = dict[str, Any]


def lora_layers(arch: Architecture) -> tuple[bool, ...]:
    """Which trunk layers carry low-rank factors: the shared dense ones, when ``arch.lora_rank`` > 0 (none of a
    mixture of experts': fine-tuning refuses ``--lora`` on one, :mod:`mtdqn.graft`)."""
    return tuple(arch.lora_rank > 0 and not arch.experts and shared and layer.kind != "conv"
                 for layer, shared in zip(arch.torso, arch.torso_shared))


def fold_lora(params: Params) -> Params:
    """A layer's parameters with its low-rank factors folded into the kernel: W + A B."""
    if "lora_a" not in params:
        return params
    return {"kernel": params["kernel"] + params["lora_a"] @ params["lora_b"], "bias": params["bias"]}


def init_lora(kernel: jax.Array, rank: int, key: jax.Array) -> Params:
    """A ~ N(0, 1/in) (in, r) and B = 0 (r, out): W + A B starts as W."""
    fan_in, fan_out = kernel.shape
    a = jax.random.normal(key, (fan_in, rank), kernel.dtype) / jnp.sqrt(jnp.asarray(fan_in, kernel.dtype))
    return {"lora_a": a, "lora_b": jnp.zeros((rank, fan_out), kernel.dtype)}
