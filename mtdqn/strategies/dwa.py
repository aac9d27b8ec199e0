"""``dwa``: dynamic weight average (Liu et al. 2019) over windows of updates.

Liu, Johns, Davison, "End-to-End Multi-Task Learning with Attention", CVPR 2019.

The weight of task k is ``K * softmax_k(r_k / temperature)`` with
``r_k = L_k(t-1) / L_k(t-2)``, the ratio of its mean loss over the last two
completed windows: a task whose loss falls slowly (or rises) gets more weight.
The paper's windows are epochs; a DQN has none, so a window is ``window``
consecutive updates.  Weights are 1 until two windows have completed and stay
constant within a window.  They are positive and sum to K by construction.

Static weights (``--task-weights``) multiply the dynamic ones: the applied
coefficient is w_k * lambda_k.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp

from mtdqn.errors import ConfigError
from mtdqn.strategies.base import Rule, StrategySpec, register, tree_weighted_sum


@dataclass(frozen=True)
class DWAOptions:
    temperature: float = 2.0
    """Softmax temperature T (the paper's 2); larger is closer to equal weights."""
    window: int = 1000
    """Updates per loss-averaging window (the paper's epoch)."""


class DWAState(NamedTuple):
    weights: jax.Array  # (tasks,) lambda_k for the current window
    loss_sum: jax.Array  # (tasks,) losses summed over the current window
    count: jax.Array  # () updates in the current window
    last: jax.Array  # (tasks,) mean loss of the last completed window
    before_last: jax.Array  # (tasks,) mean loss of the window before it
    completed: jax.Array  # () completed windows


def build(options: DWAOptions) -> Rule:
    if not options.temperature > 0 or options.window < 1:
        raise ConfigError(f"strategy dwa: needs temperature > 0 and window >= 1; got {options}")

    def init(num_tasks: int) -> DWAState:
        ones = jnp.ones((num_tasks,), jnp.float32)
        return DWAState(ones, jnp.zeros_like(ones), jnp.int32(0), ones, ones, jnp.int32(0))

    def combine(task_grads, gram, task_losses, state: DWAState, key, task_weights, options):
        num_tasks = task_weights.shape[0]
        applied = task_weights * state.weights
        grads = tree_weighted_sum(task_grads, applied)
        loss_sum = state.loss_sum + jax.lax.stop_gradient(task_losses).astype(jnp.float32)
        count = state.count + 1
        close = count >= options.window
        mean = loss_sum / options.window
        last = jnp.where(close, mean, state.last)
        before_last = jnp.where(close, state.last, state.before_last)
        completed = state.completed + close.astype(jnp.int32)
        ratio = last / jnp.maximum(before_last, 1e-12)
        # times the reciprocal, as XLA compiles a division by a constant: the numbers of a temperature that was
        # one are those of the same temperature traced (a sweep's)
        dynamic = num_tasks * jax.nn.softmax(ratio * (1.0 / jnp.asarray(options.temperature, jnp.float32)))
        weights = jnp.where(close & (completed >= 2), dynamic, state.weights)
        new_state = DWAState(
            weights, jnp.where(close, 0.0, loss_sum), jnp.where(close, 0, count), last, before_last, completed
        )
        return grads, new_state, {"weights": applied}

    return Rule(init, combine)


register(
    StrategySpec(
        "dwa",
        "weights K*softmax(loss ratio of the last two windows / temperature)",
        "Liu et al. 2019, End-to-End Multi-Task Learning with Attention, CVPR",
        DWAOptions,
        build,
        min_tasks=2,
        loss_rates=True,
        as_sum=lambda o: (2 * o.window, f"its weights are 1 until two windows of {o.window:,} updates complete "
                                        "(--strategy-args window=N)"),
    )
)
