"""``gradnorm``: GradNorm (Chen et al. 2018), learned task weights that balance gradient norms.

Chen, Badrinarayanan, Lee, Rabinovich, "GradNorm: Gradient Normalization for
Adaptive Loss Balancing in Deep Multitask Networks", ICML 2018.

Each task has a weight lambda_i.  With G_i = lambda_i ||g_i||, the mean G-bar
and the relative inverse training rate r_i = L~_i / mean_j L~_j, where
L~_i = L_i(t) / L_i(0), GradNorm moves the weights down the gradient of
``sum_i |G_i - stop_grad(G-bar * r_i ** alpha)|``: tasks that train slower
(larger loss ratio) get larger gradients.  After every step the weights are
kept positive and renormalized to sum to the number of tasks.

Adapted to DQN:

* **Norms on the whole shared tree.**  The paper takes G_i w.r.t. the last
  shared layer to save backward passes; we already hold every task's gradient
  on all shared parameters (one vmap), so ||g_i|| is the norm over all of them.
* **Steps, not epochs.**  L_i(0) is the mean loss over the first ``window``
  updates (a running mean until the window is full); weights are updated
  every update, by their own Adam step with learning rate ``lr``.
* **Static weights** (``--task-weights``) multiply the learned ones: the
  applied coefficient is w_i * lambda_i; the balancing uses the unweighted norms.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from mtdqn.errors import ConfigError
from mtdqn.strategies.base import Rule, StrategySpec, gram_norms, register, tree_weighted_sum

_FLOOR = 1e-3  # smallest weight before renormalization: weights stay positive


@dataclass(frozen=True)
class GradNormOptions:
    alpha: float = 1.5
    """Asymmetry: how strongly slower-training tasks are favoured (0 = equal norms)."""
    lr: float = 1e-3
    """Adam learning rate of the task weights."""
    window: int = 1000
    """Updates averaged into the initial losses L_i(0)."""


class GradNormState(NamedTuple):
    weights: jax.Array  # (tasks,) lambda_i, positive, summing to tasks
    opt_state: Any  # Adam state of the weights
    loss_sum: jax.Array  # (tasks,) sum of losses over the initial window
    loss_count: jax.Array  # () updates counted into loss_sum


def build(options: GradNormOptions) -> Rule:
    if options.alpha < 0 or not options.lr > 0 or options.window < 1:
        raise ConfigError(f"strategy gradnorm: needs alpha >= 0, lr > 0, window >= 1; got {options}")

    def init(num_tasks: int) -> GradNormState:
        weights = jnp.ones((num_tasks,), jnp.float32)
        zeros = jnp.zeros((num_tasks,), jnp.float32)
        return GradNormState(weights, optax.adam(options.lr).init(weights), zeros, jnp.float32(0.0))

    def combine(task_grads, gram, task_losses, state: GradNormState, key, task_weights, options):
        num_tasks = task_weights.shape[0]
        adam = optax.adam(options.lr)  # the rate may be traced; Adam's state does not depend on it
        norms = gram_norms(gram)  # (tasks,)
        applied = task_weights * state.weights
        grads = tree_weighted_sum(task_grads, applied)
        losses = jax.lax.stop_gradient(task_losses).astype(jnp.float32)
        in_window = state.loss_count < options.window
        loss_sum = state.loss_sum + jnp.where(in_window, losses, 0.0)
        loss_count = state.loss_count + in_window.astype(jnp.float32)
        ratio = losses / jnp.maximum(loss_sum / jnp.maximum(loss_count, 1.0), 1e-12)  # L~_i
        rate = ratio / jnp.maximum(jnp.mean(ratio), 1e-12)  # r_i
        target = jnp.mean(state.weights * norms) * rate**options.alpha

        def grad_loss(w: jax.Array) -> jax.Array:
            return jnp.sum(jnp.abs(w * norms - target))

        updates, opt_state = adam.update(jax.grad(grad_loss)(state.weights), state.opt_state)
        weights = jnp.maximum(state.weights + updates, _FLOOR)
        weights = num_tasks * weights / jnp.sum(weights)
        return grads, GradNormState(weights, opt_state, loss_sum, loss_count), {"weights": applied}

    return Rule(init, combine)


register(
    StrategySpec(
        "gradnorm",
        "learned weights balancing shared-gradient norms by relative training rate",
        "Chen et al. 2018, GradNorm, ICML",
        GradNormOptions,
        build,
        min_tasks=2,
        loss_rates=True,
    )
)
