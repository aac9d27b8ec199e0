"""Linear CKA: how similar two networks' (or two tasks') trunk features are.

A run's diagnostics (:mod:`mtdqn.diagnostics`) compute it between tasks'
trunk features, trained, at initialization and against shuffled states, and
write the rows the report reads back.  Plain numpy, so that it can be checked
against hand-computed values without JAX and stays the one definition the
diagnostics and the tests share.  Kornblith et al., 2019, "Similarity of
Neural Network Representations Revisited"; its range, [0, 1], is
:data:`mtdqn.analysis.ranges.CKA`.
"""

from __future__ import annotations

import numpy as np

__all__ = ["linear_cka"]


def linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear CKA between two feature matrices of shape (examples, features).

    Kornblith et al., 2019, "Similarity of Neural Network Representations
    Revisited", eq. for linear kernels: ||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F)
    on column-centred features. Invariant to orthogonal transforms and isotropic
    scaling, not to arbitrary invertible maps, which is what makes it a useful
    similarity for trunk features. Feature counts may differ.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[0] != y.shape[0]:
        raise ValueError(f"linear_cka: need (n, d1) and (n, d2), got {x.shape} and {y.shape}")
    x = x - x.mean(axis=0, keepdims=True)
    y = y - y.mean(axis=0, keepdims=True)
    cross = np.linalg.norm(y.T @ x, ord="fro") ** 2
    norm = np.linalg.norm(x.T @ x, ord="fro") * np.linalg.norm(y.T @ y, ord="fro")
    if norm == 0.0:
        return float("nan")
    return float(cross / norm)
