"""Linear CKA: how similar two networks' (or two tasks') trunk features are.

A run's diagnostics (:mod:`mtdqn.diagnostics`) compute it between tasks'
trunk features, trained, at initialization and against shuffled states, and
write the rows the report reads back.  Plain numpy, so that it can be checked
against hand-computed values without JAX and stays the one definition the
diagnostics and the tests share.  Kornblith et al., 2019, "Similarity of
Neural Network Representations Revisited"; its range, [-1, 1] (debiased; the
biased estimator's [0, 1]), is :data:`mtdqn.analysis.ranges.CKA`.

**Debiased by default.**  Kornblith et al.'s estimator, ||YᵀX||²_F /
(||XᵀX||_F ||YᵀY||_F) on column-centred features, is biased upward on few
states, by an amount set by how each side's variance is spread: two
independent isotropic random 128-feature matrices read ~0.5 on 128 states,
two whose singular values fall as k^-1.5 ~0.01 (near its floor, ~1/(n-1)).  Trained features and the same
network at initialization spread theirs differently, as do two variants, so
a difference of two such CKAs (the report's change from initialization, its
contrast with `independent`) mixed their bias into it.  Song et al. 2012's
unbiased HSIC estimator in its place (as Nguyen, Raghu & Kornblith 2021, and
Kornblith's reference code's ``debiased=True``) reads ~0 for unrelated
features whatever their spectrum.  It is an inner product of U-centred Gram
matrices (Székely & Rizzo 2014), so the ratio stays in [-1, 1]; slightly
negative values are unrelated features' noise.
"""

from __future__ import annotations

import numpy as np

__all__ = ["linear_cka", "ESTIMATOR"]

ESTIMATOR = "debiased"
"""What :func:`linear_cka` computes by default, as cka.parquet's ``estimator`` column records it (runs recorded
before the column used the biased estimator)."""


def linear_cka(x: np.ndarray, y: np.ndarray, *, debiased: bool = True) -> float:
    """Linear CKA between two feature matrices of shape (examples, features): HSIC(K, L) / sqrt(HSIC(K, K)
    HSIC(L, L)) with K = XXᵀ, L = YYᵀ on column-centred features; HSIC Song et al.'s unbiased estimator, or with
    ``debiased=False`` Kornblith et al.'s biased one (module docstring).  Invariant to orthogonal transforms
    and isotropic scaling, not to arbitrary invertible maps, which is what makes it a useful similarity for
    trunk features.  Feature counts may differ; NaN where a side has no variance (or, debiased, under 4
    examples)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[0] != y.shape[0]:
        raise ValueError(f"linear_cka: need (n, d1) and (n, d2), got {x.shape} and {y.shape}")
    x = x - x.mean(axis=0, keepdims=True)
    y = y - y.mean(axis=0, keepdims=True)
    if not debiased:
        cross = np.linalg.norm(y.T @ x, ord="fro") ** 2
        norm = np.linalg.norm(x.T @ x, ord="fro") * np.linalg.norm(y.T @ y, ord="fro")
        return float(cross / norm) if norm > 0.0 else float("nan")
    if x.shape[0] < 4:
        return float("nan")
    k, l = x @ x.T, y @ y.T
    norm = _hsic_unbiased(k, k) * _hsic_unbiased(l, l)
    return float(_hsic_unbiased(k, l) / np.sqrt(norm)) if norm > 0.0 else float("nan")


def _hsic_unbiased(k: np.ndarray, l: np.ndarray) -> float:
    """Song et al. 2012's unbiased HSIC of two (n, n) Gram matrices, their diagonals set to 0 (K̃, L̃):
    [tr(K̃L̃) + 1ᵀK̃1 1ᵀL̃1 / ((n-1)(n-2)) - 2/(n-2) 1ᵀK̃L̃1] / (n(n-3)); O(n²): tr(K̃L̃) is the elementwise sum
    of K̃ ∘ L̃ (symmetric matrices), 1ᵀK̃L̃1 the product of their row sums."""
    n = k.shape[0]
    k, l = k - np.diag(np.diag(k)), l - np.diag(np.diag(l))
    rows_k, rows_l = k.sum(axis=1), l.sum(axis=1)
    total = (k * l).sum() + rows_k.sum() * rows_l.sum() / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * rows_k @ rows_l
    return float(total / (n * (n - 3)))
