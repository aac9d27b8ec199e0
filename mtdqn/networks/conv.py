"""A VALID, stride-1 convolution written as patch extraction and one matmul.

Why not ``flax.linen.Conv``: inside the compiled training loop (the body of a
``lax.scan``) XLA:CPU runs ``conv_general_dilated`` about 10x slower than the
same convolution jitted alone, and per-task gradients taken under ``vmap``
turn the shared kernel's gradient into a *grouped* convolution
(``feature_group_count`` = tasks), slower still.  Written as the ``kh * kw``
shifted slices of the input concatenated on the channel axis followed by one
``dot``, the forward pass, the input gradient (pads and adds) and the kernel
gradient (a batched ``dot`` under ``vmap``) are all plain matmuls and
element-wise ops, which XLA:CPU runs at matmul speed inside loops too
(README, performance: the MinAtar rows).

The parameters are exactly ``nn.Conv``'s: ``{"kernel": (kh, kw, in, out),
"bias": (out,)}``, initialized the same way (LeCun normal, zeros), so
checkpoints, parameter counts, freezing and every gradient strategy see the
same tree.  ``tests/test_networks.py`` checks equality with ``nn.Conv``.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

__all__ = ["PatchConv", "extract_patches"]


def extract_patches(x: jax.Array, kernel_size: tuple[int, int]) -> jax.Array:
    """(..., H, W, C) -> (..., H-kh+1, W-kw+1, kh*kw*C), patches ordered (dy, dx, c).

    The order matches ``kernel.reshape(kh * kw * C, out)`` for a kernel laid
    out (kh, kw, C, out), so a VALID convolution is ``patches @ kernel``.
    """
    kh, kw = kernel_size
    h, w = x.shape[-3] - kh + 1, x.shape[-2] - kw + 1
    if h <= 0 or w <= 0:
        raise ValueError(f"kernel {kh}x{kw} is larger than the {x.shape[-3]}x{x.shape[-2]} input")
    shifted = [x[..., dy:dy + h, dx:dx + w, :] for dy in range(kh) for dx in range(kw)]
    return jnp.concatenate(shifted, axis=-1)


class PatchConv(nn.Module):
    """``nn.Conv(features, kernel_size, padding="VALID")`` as patches @ kernel; same parameters."""

    features: int
    kernel_size: tuple[int, int] = (3, 3)
    kernel_init: Any = nn.initializers.lecun_normal()
    bias_init: Any = nn.initializers.zeros_init()

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kh, kw = self.kernel_size
        channels = x.shape[-1]
        kernel = self.param("kernel", self.kernel_init, (kh, kw, channels, self.features))
        bias = self.param("bias", self.bias_init, (self.features,))
        patches = extract_patches(x, self.kernel_size)  # (..., H', W', kh*kw*C)
        y = jnp.dot(patches, kernel.reshape(kh * kw * channels, self.features))  # (..., H', W', features)
        return y + bias.reshape((1,) * (y.ndim - 1) + bias.shape)  # explicit rank: tests raise on promotion
