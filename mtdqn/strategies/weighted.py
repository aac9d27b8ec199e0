"""``weighted``: static task weights, L_total = sum_i w_i L_i, with ``--task-weights``."""

from __future__ import annotations

from dataclasses import dataclass

import jax.numpy as jnp

from mtdqn.strategies.base import Strategy, StrategySpec, register, tree_weighted_sum


@dataclass(frozen=True)
class WeightedOptions:
    pass


def build(options: WeightedOptions, task_weights: tuple[float, ...]) -> Strategy:
    weights = jnp.asarray(task_weights, jnp.float32)

    def init(num_tasks: int) -> tuple:
        return ()

    def combine(task_grads, task_losses, state, key):
        return tree_weighted_sum(task_grads, weights), state, {"weights": weights}

    return Strategy(init, combine)


register(
    StrategySpec(
        "weighted", "static weights w_i from --task-weights", "Caruana 1997, Multitask Learning", WeightedOptions, build
    )
)
