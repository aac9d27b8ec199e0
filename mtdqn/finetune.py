"""What a fine-tuned run trains: freeze specs, parameter labels and the partitioned optimizer.

The pretrained trunk is the set of *shared* torso layers (``shared_mask``):
the part of the ``{"adapters", "torso", "heads"}`` tree a run's tasks had in
common.  Every leaf gets one label, and ``optax.multi_transform`` gives each
label its own optimizer:

``train``        adapters, heads, per-task torso layers, LoRA factors: the run's optimizer at ``--lr``
``trunk``        pretrained trunk layers that train: the same optimizer at ``--trunk-lr`` (default ``--lr``)
``frozen``       ``optax.set_to_zero()``: the update is exactly 0, so the weights stay bit-identical, and so
                 does the target network's copy (the update step sets it to the online one: a Polyak mix
                 tau * w + (1 - tau) * w would drift from w in the last bits)
``trunk_later``  ``trunk-until:STEPS``: the ``trunk`` optimizer whose update is multiplied by 0 until the
                 update that follows env step STEPS (a step function of optax's update count, inside the
                 compiled loop), by 1 after.  Adam's moments see the trunk's gradients all along, so the
                 trunk does not restart with empty moments (zeroing the gradients instead would make its
                 first steps ~3x too large).

What a strategy and the gradient diagnostics see follows the same labels
(:func:`trains_now`): only the shared leaves an update moves at that step,
``frozen`` leaves and ``trunk_later`` ones before the unfreeze zeroed.

Each label's optimizer is built by the run's own ``make_optimizer`` recipe,
so clipping (``--max-grad-norm``) applies per label, and the linear lr decay
counts from the run's first update for every label.  This module is pure (no
run directories); :mod:`mtdqn.graft` loads the source run and grafts it.

Called, ``mtdqn.finetune(source, tasks=..., ...)`` is :func:`mtdqn.api.finetune` (see :mod:`mtdqn.callables`).
"""

from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from mtdqn.callables import callable_as_api
from mtdqn.config import Derived, FinetuneConfig, updates_before_iteration
from mtdqn.errors import ConfigError, MtdqnWarning, count, warn_user
from mtdqn.networks import Architecture, lora_layers, shared_mask

__all__ = ["Freeze", "parse_freeze", "trunk_layers", "is_finetuned", "param_labels", "partitioned_optimizer", "updates_before",
           "unfreeze_update", "trains_now", "count_trainable", "transfer_summary"]

LABELS = ("train", "trunk", "frozen", "trunk_later")


class Freeze(NamedTuple):
    kind: str  # "none" | "trunk" | "bottom" | "trunk-until"
    value: int = 0  # bottom: K layers; trunk-until: env steps per task


def parse_freeze(spec: str) -> Freeze:
    """``none | trunk | bottom:K | trunk-until:STEPS`` -> :class:`Freeze`; a one-line error otherwise."""
    name, colon, arg = spec.partition(":")
    if name in ("none", "trunk") and not colon:
        return Freeze(name)
    if name in ("bottom", "trunk-until") and colon:
        letter = "K" if name == "bottom" else "STEPS"  # as the help writes them
        try:
            value = int(arg.replace("_", ""))
        except ValueError:
            raise ConfigError(f"--freeze {spec}: {name}:{letter} needs an integer {letter}") from None
        if value <= 0:
            raise ConfigError(f"--freeze {spec}: {letter} must be > 0")
        return Freeze(name, value)
    raise ConfigError(f"unknown --freeze {spec!r}; valid: none, trunk, bottom:K, trunk-until:STEPS")


def trunk_layers(arch: Architecture) -> list[str]:
    """Names of the pretrained trunk layers (the shared torso layers), bottom first."""
    return [name for name, shared in shared_mask(arch)["torso"].items() if shared]


def _trunk_label(freeze: Freeze, position: int) -> str:
    if freeze.kind == "trunk" or (freeze.kind == "bottom" and position < freeze.value):
        return "frozen"
    return "trunk_later" if freeze.kind == "trunk-until" else "trunk"


def is_finetuned(ft: FinetuneConfig) -> bool:
    """Whether a run's parameters carry labels (any fine-tuning setting given): the partitioned optimizer
    and the frozen parameters' target copy both follow this one test."""
    return ft != FinetuneConfig()


def param_labels(ft: FinetuneConfig, arch: Architecture, params: Any) -> Any:
    """One label per leaf of ``params`` (same tree): see the module's table."""
    freeze = parse_freeze(ft.freeze)
    trunk = trunk_layers(arch)
    lora = dict(zip(shared_mask(arch)["torso"], lora_layers(arch)))
    labels = jax.tree.map(lambda _: "train", params)
    for name in trunk:
        layer = params["torso"][name]
        if lora[name]:  # the pretrained W frozen, its low-rank factors trained
            labels["torso"][name] = {k: "train" if k.startswith("lora_") else "frozen" for k in layer}
        else:  # conv layers under LoRA are frozen like the rest of the pretrained trunk
            label = "frozen" if arch.lora_rank > 0 else _trunk_label(freeze, trunk.index(name))
            labels["torso"][name] = jax.tree.map(lambda _: label, layer)
    return labels


def updates_before(derived: Derived, num_envs: int, env_steps: int) -> int:
    """Gradient updates the loop takes before env step ``env_steps`` per task (the update count at that step)."""
    return updates_before_iteration(derived, math.ceil(env_steps / num_envs))  # iterations t < stop come before


def unfreeze_update(ft: FinetuneConfig, derived: Derived, num_envs: int) -> int:
    """The optimizer's update count from which ``trunk-until:STEPS``'s trunk trains (0 for any other freeze)."""
    freeze = parse_freeze(ft.freeze)
    return updates_before(derived, num_envs, freeze.value) if freeze.kind == "trunk-until" else 0


def trains_now(ft: FinetuneConfig, arch: Architecture, derived: Derived, num_envs: int, params: Any,
               updates: jax.Array) -> Any:
    """Per leaf of ``params``, whether the update with count ``updates`` (updates taken before it) moves it:
    False for ``frozen``, a traced bool for ``trunk_later`` (the optimizer's gate), True otherwise."""
    start = unfreeze_update(ft, derived, num_envs)
    open_ = {"train": True, "trunk": True, "frozen": False, "trunk_later": updates >= start}
    return jax.tree.map(lambda label: open_[label], param_labels(ft, arch, params))


def partitioned_optimizer(ft: FinetuneConfig, arch: Architecture, derived: Derived, num_envs: int, lr: Any,
                          make: Callable[[float], optax.GradientTransformation]) -> optax.GradientTransformation:
    """The run's optimizer (``make(lr)``) per label through ``optax.multi_transform``."""
    freeze = parse_freeze(ft.freeze)
    trunk_lr = ft.trunk_lr or lr
    transforms = {"train": make(lr), "trunk": make(trunk_lr), "frozen": optax.set_to_zero()}
    if freeze.kind == "trunk-until":
        start = unfreeze_update(ft, derived, num_envs)
        gate = optax.scale_by_schedule(lambda count: (count >= start).astype(jnp.float32))
        transforms["trunk_later"] = optax.chain(make(trunk_lr), gate)
    return optax.multi_transform(transforms, lambda params: param_labels(ft, arch, params))


def count_trainable(ft: FinetuneConfig, arch: Architecture, params: Any) -> tuple[int, int]:
    """(parameters that get updates at some point, all parameters) of one seed's network."""
    labels = jax.tree.leaves(param_labels(ft, arch, params))
    sizes = [int(np.prod(x.shape)) for x in jax.tree.leaves(params)]
    return sum(n for n, label in zip(sizes, labels) if label != "frozen"), sum(sizes)


def transfer_summary(start: dict[str, Any], summary: dict[str, Any]) -> dict[str, Any]:
    """The start record with, per task and seed, the greedy return's change from the start to the end and,
    for the tasks whose heads came from the source run, the forgetting (start minus end: > 0 is lost return).

    Both are differences on the same episodes; a run resumed to be evaluated again on another number of
    episodes than its start was (``--eval-episodes``) has neither, said in ``not_compared`` and warned (it
    subtracted a 7-episode mean from a 2-episode one)."""
    at_start, at_end = start.get("eval_episodes"), summary.get("eval_episodes")
    if at_start is not None and at_end is not None and at_start != at_end:
        why = (f"the start was evaluated on {count(at_start, 'episode')}, the end on {at_end:,}: no change from the "
               "start or forgetting (other episodes)")
        warn_user(why, MtdqnWarning)
        return {**start, "change_from_start": {}, "forgetting": {}, "not_compared": why}
    before = start.get("start_eval", {})
    change = {t: [b - a for a, b in zip(before[t], summary["final_eval"][t])] for t in before}
    kept = start.get("kept_tasks", [])
    forgetting = {t: [a - b for a, b in zip(before[t], summary["final_eval"][t])] for t in kept if t in before}
    return {**start, "change_from_start": change, "forgetting": forgetting}


callable_as_api(__name__)  # last: the module is complete before it becomes callable
