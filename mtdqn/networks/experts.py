"""Mixtures of expert trunks: ``--sharing moe:K`` and ``--sharing moore:K``.

K expert trunks, each shaped like the ``shared`` trunk and shared by every
task, compute K representations of each sample; each task mixes them with its
own learned weights, a softmax over per-task logits (the task id picks a row
of a ``(tasks, K)`` table: MOORE's ``_task_encoder``, a bias-free Linear of the
one-hot task id, is the same lookup).  ``moore`` first makes the K
representations of each sample orthonormal by Gram–Schmidt over the expert
axis, so the experts cannot collapse onto one another (Hendawy, Peters and
D'Eramo, "Multi-Task Reinforcement Learning with Mixture of Orthogonal
Experts", ICLR 2024).

Following MOORE's code (github.com/AhmedMagdyHendawy/MOORE,
``moore/utils/mixture_layers.py``: ``OrthogonalLayer1D``; the mixture in
``moore/utils/networks_ppo.py``: ``MiniGridPPOMixtureMHNetwork``): the experts'
last layer is linear, the representations are orthonormalized, weighted per
task, and only then does the trunk's activation apply ("only activation after
weighting the features").  ``moe`` is the same network without the
orthonormalization (MOORE's ``orthogonal=False``), so the two differ by it and by
``moore``'s scaling of the orthonormal outputs (below).

Where we differ from that code, and why:

- The weights are a softmax of the per-task logits (a convex combination,
  readable as "how much task i uses expert k"), where MOORE's are the raw
  linear outputs, free in sign and scale (randomly initialized).  The logits
  start at zero: every task starts from the even mixture.  With the ReLU
  after the mixing (MOORE's MiniGrid network applies tanh, which is odd, so
  its head can absorb a negative weight), a task cannot flip an expert's
  representation or weigh it above 1: ``moore`` is a variant of MOORE, not
  its network.
- ``moore``'s orthonormal outputs are scaled by sqrt(features) before the
  mixing: orthogonal still, with the per-unit scale of an ordinary layer's
  output (unit RMS) instead of unit norm over the 128 features, which a Q
  head would have to undo with weights ~sqrt(128) times larger.  Measured on
  CartPole-v1 + Acrobot-v1, 20,000 steps, 2 seeds (``mtdqn train --sharing
  moore:2 --seeds 2 --steps 20000``), the last window's training returns:
  unit norm 32 / -500 (Acrobot never solved), scaled 221 / -311; ``moe:2``
  243 / -347, ``shared`` 277 / -356.
- Modified Gram–Schmidt (each projection subtracted from the running
  residual) where MOORE's is classical (all projections from the original
  vector); they agree in exact arithmetic and the modified one keeps
  orthogonality better in float32.
- A residual that is numerically zero.  MOORE divides by its norm with no
  guard, so an expert in the span of the previous ones (say two coinciding
  experts) gives 0/0 = NaN outputs and gradients.  An eps in the norm,
  ``w / (|w| + eps)``, would keep them finite but let gradients grow to
  1/eps and leave a rounding-noise direction in the basis.  Here a residual
  whose squared norm is below ``(RESIDUAL_TOL * |v|)^2`` (v: that expert's
  output, so the test is scale-free) contributes the zero vector, with zero
  gradient through its normalization (the "double where", so neither branch
  computes 1/0); every kept direction is normalized exactly.  The basis is
  then orthonormal vectors plus zero vectors, and every gradient is finite,
  bounded by about 1/(RESIDUAL_TOL |v|) (large for a tiny output).  Outputs whose
  squared norm is below RESIDUAL_FLOOR count as zero: below ~3e-26 the
  normalization's own derivative, 0.5 |w|^-3, overflows float32 (an output of
  norm 1e-13 gave an infinite gradient with a floor of 1e-30).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["RESIDUAL_TOL", "RESIDUAL_FLOOR", "RMS_EPS", "orthonormalize", "mixing_weights", "mix_experts", "unit_rms",
           "weight_entropy", "expert_cosines"]

RESIDUAL_TOL = 1e-3
"""An expert's residual shorter than this fraction of its own output counts as inside the previous experts'
span (float32 Gram–Schmidt leaves ~1e-7 relative residue for a coinciding expert)."""


RESIDUAL_FLOOR = 1e-20
"""The squared norm below which a residual is zero whatever its expert's scale (see the module)."""


def orthonormalize(outputs: jax.Array) -> jax.Array:
    """(experts, ..., features) -> the same shape, the experts' outputs for each sample (every index of ``...``)
    made orthonormal by modified Gram–Schmidt over the expert axis, in expert order (see the module for a
    residual that is numerically zero: it becomes the zero vector)."""
    basis: list[jax.Array] = []
    for v in outputs:
        w = v
        for b in basis:
            w = w - jnp.sum(w * b, axis=-1, keepdims=True) * b
        sq = jnp.sum(w * w, axis=-1, keepdims=True)
        keep = sq > jnp.maximum(RESIDUAL_TOL**2 * jnp.sum(v * v, axis=-1, keepdims=True), RESIDUAL_FLOOR)
        basis.append(jnp.where(keep, w * jax.lax.rsqrt(jnp.where(keep, sq, 1.0)), 0.0))
    return jnp.stack(basis)


def mixing_weights(logits: jax.Array) -> jax.Array:
    """Each task's weights over the experts (tasks, experts), from its logits: a softmax, rows summing to 1."""
    return jax.nn.softmax(logits, axis=-1)


def unit_rms(x: jax.Array) -> jax.Array:
    """``x`` scaled to unit root-mean-square over its last axis, per sample (``--feature-norm rms``): the
    scale MOORE's basis has, without its orthogonality.  RMS_EPS keeps a zero output's gradient finite."""
    return x * jax.lax.rsqrt(jnp.mean(jnp.square(x), axis=-1, keepdims=True) + RMS_EPS)


RMS_EPS = 1e-6
"""Added to the mean square in :func:`unit_rms`: negligible against features of unit scale."""


def mix_experts(outputs: jax.Array, logits: jax.Array, orthogonal: bool, normalize: bool = False) -> jax.Array:
    """Each task's representation (tasks, batch, features): the experts' outputs (experts, tasks, batch,
    features), orthonormalized per sample and scaled to unit RMS when ``orthogonal`` (``moore``; see the
    module), else each scaled to unit RMS when ``normalize`` (``--feature-norm rms``: the same scale, not
    orthogonal), weighted by the task's :func:`mixing_weights` of ``logits`` (tasks, experts)."""
    if orthogonal:
        basis = orthonormalize(outputs) * jnp.sqrt(outputs.shape[-1])
    else:
        basis = unit_rms(outputs) if normalize else outputs
    return jnp.einsum("tk,ktbf->tbf", mixing_weights(logits), basis)


def weight_entropy(weights: jax.Array) -> jax.Array:
    """Each task's expert specialization (tasks,): the entropy in nats of its weights (tasks, experts), with
    0 log 0 = 0.  log K for the even mixture every task starts from, 0 for a task that uses one expert alone."""
    return jnp.sum(jax.scipy.special.entr(weights), axis=-1)


def expert_cosines(outputs: jax.Array) -> jax.Array:
    """(tasks, experts): each expert's mean cosine with the other experts, over the samples of each task's
    observations, from the experts' representations ``outputs`` (experts, tasks, batch, features).  The mean
    over a task's experts is the mean pairwise cosine (each pair counted from both sides): near 1 when the
    experts have collapsed onto one direction, 0 for orthogonal ones (``moore``'s basis by construction).  A
    zero representation (a ``moore`` expert inside the others' span) has cosine 0 with every other."""
    k = outputs.shape[0]
    norms = jnp.linalg.norm(outputs, axis=-1, keepdims=True)
    unit = jnp.where(norms > 0, outputs / jnp.where(norms > 0, norms, 1.0), 0.0)
    gram = jnp.einsum("itbf,jtbf->tbij", unit, unit)  # (tasks, batch, experts, experts)
    off_diagonal = (1.0 - jnp.eye(k, dtype=gram.dtype))[None, None]
    others = jnp.sum(gram * off_diagonal, axis=-1) / (k - 1)  # (tasks, batch, experts)
    return others.mean(axis=1)
