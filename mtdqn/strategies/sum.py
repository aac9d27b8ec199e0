"""``sum``: the plain multi-task loss L_total = sum_i L_i (our design's default)."""

from __future__ import annotations

from dataclasses import dataclass

import jax.numpy as jnp

from mtdqn.errors import ConfigError
from mtdqn.strategies.base import Strategy, StrategySpec, register, tree_weighted_sum


@dataclass(frozen=True)
class SumOptions:
    pass


def build(options: SumOptions, task_weights: tuple[float, ...]) -> Strategy:
    if any(w != 1.0 for w in task_weights):
        raise ConfigError("--strategy sum ignores --task-weights; use --strategy weighted (the default when weights are given)")
    num_tasks = len(task_weights)
    ones = jnp.ones((num_tasks,), jnp.float32)

    def init(num_tasks: int) -> tuple:
        return ()

    def combine(task_grads, task_losses, state, key):
        return tree_weighted_sum(task_grads, ones), state, {"weights": ones}

    return Strategy(init, combine)


register(StrategySpec("sum", "sum of the task losses", "Caruana 1997, Multitask Learning", SumOptions, build))
