"""``sum``: the multi-task loss L_total = sum_i w_i L_i (our design's default; w_i = 1 unless --task-weights).

Static weights are this strategy's whole job, so ``weighted`` (the name runs
with --task-weights were recorded under) is the same strategy registered
under a second name, not a second implementation.
"""

from __future__ import annotations

from dataclasses import dataclass

from mtdqn.strategies.base import Rule, StrategySpec, register, tree_weighted_sum


@dataclass(frozen=True)
class SumOptions:
    pass


def build(options: SumOptions) -> Rule:
    def init(num_tasks: int) -> tuple:
        return ()

    def combine(task_grads, gram, task_losses, state, key, weights, options):
        return tree_weighted_sum(task_grads, weights), state, {"weights": weights}

    return Rule(init, combine)


register(StrategySpec("sum", "sum of the task losses, weighted by --task-weights (default all 1)",
                      "Caruana 1997, Multitask Learning", SumOptions, build))
register(StrategySpec("weighted", "the same as sum (the name kept for runs that recorded it)",
                      "Caruana 1997, Multitask Learning", SumOptions, build))
