"""``uncertainty``: homoscedastic uncertainty weighting (Kendall et al. 2018).

Kendall, Gal, Cipolla, "Multi-Task Learning Using Uncertainty to Weigh Losses
for Scene Geometry and Semantics", CVPR 2018.

Each task has a learned log-variance s_i = log sigma_i^2 and the total loss is
``sum_i exp(-s_i) L_i + s_i``.  The network's shared gradient is therefore
``sum_i exp(-s_i) g_i``; the s_i take their own Adam step on the same
objective (its gradient is ``1 - exp(-s_i) L_i``, so s_i tracks log L_i and a
task with large TD errors is down-weighted).  s_i is clipped to
``[-clip, clip]`` so the weights stay finite even when a loss is exactly 0.

Static weights (``--task-weights``) multiply the learned ones: the applied
coefficient is w_i * exp(-s_i).  Heads keep w_i g_i (heads never reach a
strategy); with Adam a slowly varying per-task scale of a head's gradient
changes little.  With one task the method still does something well defined
(it learns a loss scale), so it does not demand two tasks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from mtdqn.errors import ConfigError
from mtdqn.strategies.base import Rule, StrategySpec, register, tree_weighted_sum


@dataclass(frozen=True)
class UncertaintyOptions:
    lr: float = 1e-3
    """Adam learning rate of the log-variances s_i."""
    clip: float = 10.0
    """s_i is kept in [-clip, clip]."""


class UncertaintyState(NamedTuple):
    log_var: jax.Array  # (tasks,) s_i
    opt_state: Any  # Adam state of s


def build(options: UncertaintyOptions) -> Rule:
    if not options.lr > 0 or not options.clip > 0:
        raise ConfigError(f"strategy uncertainty: needs lr > 0 and clip > 0; got {options}")

    def init(num_tasks: int) -> UncertaintyState:
        log_var = jnp.zeros((num_tasks,), jnp.float32)
        return UncertaintyState(log_var, optax.adam(options.lr).init(log_var))

    def combine(task_grads, gram, task_losses, state: UncertaintyState, key, task_weights, options):
        adam = optax.adam(options.lr)  # the rate may be traced; Adam's state does not depend on it
        applied = task_weights * jnp.exp(-state.log_var)
        grads = tree_weighted_sum(task_grads, applied)
        losses = jax.lax.stop_gradient(task_losses).astype(jnp.float32)

        def objective(s: jax.Array) -> jax.Array:
            return jnp.sum(jnp.exp(-s) * losses + s)

        updates, opt_state = adam.update(jax.grad(objective)(state.log_var), state.opt_state)
        log_var = jnp.clip(state.log_var + updates, -options.clip, options.clip)
        return grads, UncertaintyState(log_var, opt_state), {"weights": applied}

    return Rule(init, combine)


register(
    StrategySpec(
        "uncertainty",
        "learned weights exp(-s_i) from homoscedastic uncertainty, loss exp(-s_i) L_i + s_i",
        "Kendall et al. 2018, Multi-Task Learning Using Uncertainty to Weigh Losses, CVPR",
        UncertaintyOptions,
        build,
    )
)
