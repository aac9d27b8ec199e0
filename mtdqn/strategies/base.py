"""The strategy contract and registry.

A strategy turns per-task gradients on the *shared* parameters into the one
gradient the optimizer applies.  It is a pure pair::

    init(num_tasks) -> state
    combine(task_grads, gram, task_losses, state, key, hp=None) -> (grads, state, metrics)

``task_grads`` is a pytree whose leaves have a leading task axis ``(tasks, ...)``:
the gradients of the *unweighted* task losses on the shared parameters only,
with the leaves that do not train at this update (frozen layers, LoRA's frozen
weights, ``trunk-until``'s trunk before it opens) zeroed by the caller
(:func:`mtdqn.train.step.trainable_shared`), so they count in nothing;
``gram`` is their Gram matrix ``(tasks, tasks)`` (:func:`task_gram`), computed
once per update by the caller, which also reports cosines from it;
``task_losses`` is ``(tasks,)``.  ``hp`` (:class:`StrategyHypers`) holds the
numbers a run may sweep: the static ``--task-weights`` w_i (traced in runs that
set them, literals else: :func:`mtdqn.train.step.loss_weights`) and the
options of ``--strategy-args`` that are real numbers (CAGrad's ``c``, DWA's
``temperature``, ...), traced values of the compiled loop, so that one program
trains every member of a sweep; None: the values the strategy was built with.
Integer options (solver steps, window lengths) stay in the program.
``metrics["weights"]`` (tasks,) is the coefficient the strategy
applied to each task's gradient, for the report.  Per-task parameters (heads,
adapters) never reach a strategy: each gets w_i times its own task's gradient.

Every strategy here returns a linear combination sum_i c_i g_i whose
coefficients depend on the gradients only through their Gram matrix
(:func:`task_gram`), so none of them needs the (tasks, params) matrix.

Each strategy lives in its own module with its paper, its options dataclass
and a ``register(...)`` call; adding one touches that one file (and the import
list in ``strategies/__init__.py``).  A module builds a :class:`Rule` from its
options: the pair above with ``combine`` given the weights and the options
themselves (their real numbers possibly traced) in place of ``hp``;
:func:`make_strategy` turns it into the :class:`Strategy` the loop calls.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from mtdqn.errors import ConfigError, check_float32

__all__ = [
    "SCOPE",
    "Strategy",
    "StrategyHypers",
    "Rule",
    "StrategySpec",
    "REGISTRY",
    "register",
    "make_strategy",
    "parse_strategy_args",
    "real_options",
    "traced_options",
    "check_swept_options",
    "tree_weighted_sum", "coefficient_strategy",
    "task_gram",
    "gram_norms",
]

Grads = Any

SCOPE = ("Every strategy combines the per-task gradients of the shared parameters only; per-task parameters "
         "(input adapters and Q heads) always get their own task's gradient times the static --task-weights. So "
         "the learned weights of gradnorm, uncertainty and dwa scale each task's gradient on the shared trunk, "
         "not each task's whole loss as in their papers (where heads are scaled too); uncertainty's "
         "log-variances are still learned on the paper's objective exp(-s_i) L_i + s_i.")
"""What a strategy's weights scale, exactly: printed by `mtdqn strategies` and recorded in every run's summary."""


class StrategyHypers(NamedTuple):
    """A strategy's numbers that may differ between the members of a sweep: traced values in the compiled loop
    (:class:`mtdqn.train.hypers.Hypers` holds them), so a sweep over them is one program."""

    weights: jax.Array  # (tasks,) the static loss weights w_i (--task-weights)
    numbers: dict[str, jax.Array]  # () each: the options of --strategy-args that are real numbers, by name


class Strategy(NamedTuple):
    """What the loop calls: ``combine(task_grads, gram, task_losses, state, key, hp=None)`` (module docstring)."""

    init: Callable[[int], Any]
    combine: Callable[..., tuple[Grads, Any, dict[str, jax.Array]]]
    loss_rates: bool = False
    """Its ``task_losses`` are read as training rates (:attr:`StrategySpec.loss_rates`)."""


class Rule(NamedTuple):
    """What a strategy module builds: ``combine(task_grads, gram, task_losses, state, key, weights, options)``,
    ``weights`` (tasks,) the static loss weights and ``options`` the module's options dataclass, its real numbers
    possibly traced (read them from here, not from the options ``build`` got, or a sweep cannot vary them)."""

    init: Callable[[int], Any]
    combine: Callable[..., tuple[Grads, Any, dict[str, jax.Array]]]


@dataclass(frozen=True)
class StrategySpec:
    name: str
    summary: str
    citation: str
    options: type  # frozen dataclass of the strategy's options, with defaults
    build: Callable[[Any], Rule]  # options (checked here: one-line ConfigError) -> Rule
    min_tasks: int = 1
    as_sum: Callable[[Any], tuple[int, str]] | None = None
    """options -> (updates during which the rule weighs the tasks as ``sum`` does, why): a budget of no more
    updates trains ``sum`` under the strategy's name (dwa: until two windows complete).  None: it acts at once."""
    loss_rates: bool = False
    """The rule reads ratios of a task's losses over time as its training rate (gradnorm: L_i(t) / L_i(0); dwa:
    L_i(t-1) / L_i(t-2)).  Under ``--value-norm popart`` the loop then gives it each task's loss in reward units
    (sigma_i^2 times the normalized loss: :func:`mtdqn.train.step.strategy_losses`), whose ratios PopArt's moving
    statistics do not change; a rule that weighs the loss it trains (uncertainty) gets that loss itself."""


REGISTRY: dict[str, StrategySpec] = {}


def register(spec: StrategySpec) -> StrategySpec:
    REGISTRY[spec.name] = spec
    return spec


def _convert(raw: str, typ: Any, key: str, name: str) -> Any:
    typ = {"float": float, "int": int, "bool": bool, "str": str}.get(typ, typ) if isinstance(typ, str) else typ
    try:
        if typ is bool:
            if raw.lower() not in ("true", "false", "1", "0"):
                raise ValueError
            return raw.lower() in ("true", "1")
        value = typ(raw)
    except ValueError:
        raise ConfigError(f"strategy {name}: option {key} must be {typ.__name__}, got {raw!r}") from None
    if typ is float and not math.isfinite(value):  # nan passes every `c >= 0`, and inf is no radius or clip
        raise ConfigError(f"strategy {name}: option {key} must be a finite number, got {raw!r}")
    if typ is float:
        check_float32(f"strategy {name}: option {key}", value)  # a traced float32 (StrategyHypers)
    return value


def parse_strategy_args(name: str, args: str) -> Any:
    """Parse ``k=v,k=v`` into the strategy's options dataclass; unknown keys are errors."""
    spec = REGISTRY[name]
    fields = {f.name: f for f in dataclasses.fields(spec.options)}
    values: dict[str, Any] = {}
    for item in filter(None, (a.strip() for a in args.split(","))):
        key, eq, raw = item.partition("=")
        key = key.strip().replace("-", "_")
        valid = ", ".join(fields) or "none"
        if key not in fields:
            raise ConfigError(f"strategy {name}: unknown option {item!r}; valid options: {valid}")
        if not eq:
            raise ConfigError(f"strategy {name}: option {key} needs a value ({key}=VALUE); valid options: {valid}")
        if key in values:
            raise ConfigError(f"strategy {name}: option {key} is given twice in {args!r}; give it once")
        values[key] = _convert(raw.strip(), fields[key].type, key, name)
    return spec.options(**values)


def updates_as_sum(name: str, args: str) -> tuple[int, str]:
    """(updates, why) during which strategy ``name`` with ``args`` trains as ``sum`` (:attr:`StrategySpec.as_sum`);
    (0, "") for a strategy that acts from its first update, or for a name not registered (refused, with the
    names there are, where the strategy is built)."""
    spec = REGISTRY.get(name)
    return spec.as_sum(parse_strategy_args(name, args)) if spec is not None and spec.as_sum else (0, "")


def real_options(options: Any) -> dict[str, float]:
    """The options that are real numbers (fields typed ``float``), by name: what a run passes as traced values
    (:class:`StrategyHypers`), so what a sweep may vary; integers (steps, windows) stay in the program."""
    return {f.name: getattr(options, f.name) for f in dataclasses.fields(options) if f.type in (float, "float")}


def traced_options(name: str) -> tuple[str, ...]:
    """The names of strategy ``name``'s real-valued options (:func:`real_options`)."""
    return tuple(real_options(REGISTRY[name].options()))


def check_swept_options(name: str, keys: Sequence[str]) -> None:
    """A one-line ConfigError unless every option in ``keys`` (a sweep's ``strategy.KEY``) is a real-valued
    option of strategy ``name``: only those are traced; an integer one (solver steps, a window) is part of the
    program."""
    if name not in REGISTRY:
        raise ConfigError(f"unknown strategy {name!r}; valid: {', '.join(sorted(REGISTRY))}")
    traced = traced_options(name)
    every = [f.name for f in dataclasses.fields(REGISTRY[name].options)]
    for key in keys:
        if key not in traced:
            why = (f"strategy {name} has no option {key}" if key not in every else
                   f"{name}'s {key} is not a real number, so it is part of the program (compiled separately)")
            can = f"its real-valued options: {', '.join(traced)}" if traced else "it has no real-valued options"
            raise ConfigError(f"--sweep strategy.{key}: {why}; {can}")


def make_strategy(name: str, args: str, task_weights: tuple[float, ...]) -> Strategy:
    """Look up, configure and build a strategy; one-line errors for bad input.

    ``combine``'s ``hp`` None uses ``task_weights`` and ``args``' numbers as constants, exactly as the
    strategy computed before they could be traced."""
    if name not in REGISTRY:
        raise ConfigError(f"unknown strategy {name!r}; valid: {', '.join(sorted(REGISTRY))}")
    spec = REGISTRY[name]
    if len(task_weights) < spec.min_tasks:
        raise ConfigError(f"strategy {name} needs at least {spec.min_tasks} tasks, got {len(task_weights)}")
    options = parse_strategy_args(name, args)
    rule = spec.build(options)
    own = StrategyHypers(np.asarray(task_weights, np.float32), real_options(options))

    def combine(task_grads: Grads, gram: jax.Array, task_losses: jax.Array, state: Any, key: jax.Array,
                hp: StrategyHypers | None = None) -> tuple[Grads, Any, dict[str, jax.Array]]:
        hp = own if hp is None else hp
        return rule.combine(task_grads, gram, task_losses, state, key, jnp.asarray(hp.weights),
                            dataclasses.replace(options, **hp.numbers))

    return Strategy(rule.init, combine, spec.loss_rates)


def coefficient_strategy(coefficients: Callable[[jax.Array, jax.Array, jax.Array, Any], jax.Array]) -> Rule:
    """A stateless rule whose gradient is sum_i c_i g_i, with ``c = coefficients(gram, key, weights, options)``.

    Unit-norm, PCGrad and CAGrad all reduce to coefficients computed from the
    (tasks, tasks) Gram matrix, so none of them touches the (tasks, P) gradients twice.
    """

    def init(num_tasks: int) -> tuple:
        return ()

    def combine(task_grads, gram, task_losses, state, key, weights, options):
        coef = coefficients(gram, key, weights, options)
        return tree_weighted_sum(task_grads, coef), state, {"weights": coef}

    return Rule(init, combine)


def tree_weighted_sum(task_grads: Grads, weights: jax.Array) -> Grads:
    """Sum over the task axis with per-task weights: sum_i w_i g_i."""
    return jax.tree.map(lambda g: jnp.tensordot(weights.astype(g.dtype), g, axes=1), task_grads)


def task_gram(task_grads: Grads, num_tasks: int) -> jax.Array:
    """Gram matrix (tasks, tasks) of the flattened per-task gradients: G_ij = <g_i, g_j>.

    Summed leaf by leaf, so the (tasks, params) matrix is never materialized.
    Every strategy here returns sum_i c_i g_i for coefficients computed from
    this matrix alone (PCGrad and CAGrad included), which keeps their cost at
    one (T, P) x (P, T) product plus the weighted sum ``sum`` pays anyway.
    Computed at full float32 precision: PCGrad branches on the signs of its entries.
    """
    gram = jnp.zeros((num_tasks, num_tasks), jnp.float32)  # stays 0 without shared parameters
    for g in jax.tree.leaves(task_grads):
        flat = g.reshape(num_tasks, -1).astype(jnp.float32)
        gram = gram + jnp.matmul(flat, flat.T, precision=jax.lax.Precision.HIGHEST)
    return gram


def gram_norms(gram: jax.Array) -> jax.Array:
    """Per-task gradient norms (tasks,) from the Gram matrix's diagonal."""
    return jnp.sqrt(jnp.clip(jnp.diagonal(gram), 0.0))
