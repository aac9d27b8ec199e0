"""The parameter tree's contract: ``{"adapters", "torso": {"layer_i"}, "heads"}``, each part shared or per task.

Mixtures of experts add a per-task ``"mixing"`` part (each task's logits over
the experts); their torso layers are shared and carry a leading expert axis.

A per-task part carries a leading task axis; a shared one does not.
Freezing (:mod:`mtdqn.finetune`), the gradient strategies (per-task gradients
are taken on the shared parts only: ``train/step.py``) and parameter counts
all split the tree here, by :func:`shared_mask`.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from mtdqn.networks.architecture import Architecture

__all__ = ["shared_mask", "split_shared", "merge_shared", "count_params"]

Params = dict[str, Any]


def shared_mask(arch: Architecture) -> dict[str, Any]:
    """Which top-level parts are shared: {"adapters": bool, "torso": {layer: bool}, "heads": bool}, and
    "mixing": False (per task) for a mixture of experts."""
    mask = {
        "adapters": arch.adapter_shared,
        "torso": {f"layer_{i}": s for i, s in enumerate(arch.torso_shared)},
        "heads": arch.head_shared,
    }
    return {**mask, "mixing": False} if arch.experts else mask


def split_shared(arch: Architecture, params: Params) -> tuple[Params, Params]:
    """(shared parts, per-task parts) as two dicts with the same key layout."""
    mask = shared_mask(arch)
    shared: Params = {"torso": {}}
    per_task: Params = {"torso": {}}
    for part in (p for p in mask if p != "torso"):
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
