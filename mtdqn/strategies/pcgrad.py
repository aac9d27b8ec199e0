"""``pcgrad``: projecting conflicting gradients (Yu et al. 2020).

Yu, Kumar, Gupta, Levine, Hausman, Finn, "Gradient Surgery for Multi-Task
Learning", NeurIPS 2020.

For every task i, in a random order of the other tasks j: if the (already
projected) g_i^PC conflicts with the original g_j (negative dot product),
remove its component along g_j: ``g_i^PC -= (g_i^PC . g_j) / ||g_j||^2 g_j``.
The update is ``sum_i g_i^PC``.  Each task draws its own order from the
explicit ``key``, so the method is deterministic given the key.

Every g_i^PC stays a linear combination ``sum_k C_ik g_k`` of the original
gradients, and every quantity the projections need is an entry of
``C @ Gram``; so the surgery runs on the (tasks, tasks) coefficient matrix C
and the gradients are touched once, by the final weighted sum.  This is
exactly the paper's procedure, at the cost of one Gram matrix.  The reported
weight of task k is its total coefficient ``sum_i C_ik`` (1 when nothing conflicts).

Static weights (``--task-weights``) scale each g_i before the surgery.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from mtdqn.strategies.base import Rule, StrategySpec, coefficient_strategy, register


@dataclass(frozen=True)
class PCGradOptions:
    pass


def pcgrad_coefficients(gram: jax.Array, key: jax.Array) -> jax.Array:
    """Coefficient matrix C (tasks, tasks) with g_i^PC = sum_k C_ik g_k, from the Gram matrix."""
    num_tasks = gram.shape[0]
    orders = jax.vmap(lambda k: jax.random.permutation(k, num_tasks))(jax.random.split(key, num_tasks))
    rows = jnp.arange(num_tasks)
    coef = jnp.eye(num_tasks, dtype=gram.dtype)
    for step in range(num_tasks):  # static and small: unrolled
        j = orders[:, step]  # (tasks,) the task each g_i^PC is checked against now
        dots = jnp.sum(coef * gram[:, j].T, axis=1)  # (tasks,) g_i^PC . g_j
        sq_norm = gram[j, j]
        project = (dots < 0) & (j != rows) & (sq_norm > 0)
        shift = jnp.where(project, dots / jnp.where(project, sq_norm, 1.0), 0.0)
        coef = coef - shift[:, None] * jax.nn.one_hot(j, num_tasks, dtype=gram.dtype)
    return coef


def build(options: PCGradOptions) -> Rule:
    def coefficients(gram, key, weights, options):
        gram = gram * weights[:, None] * weights[None, :]  # of w_i g_i
        return weights * jnp.sum(pcgrad_coefficients(gram, key), axis=0)

    return coefficient_strategy(coefficients)


register(
    StrategySpec(
        "pcgrad",
        "gradient surgery: project away conflicting components, random task order",
        "Yu et al. 2020, Gradient Surgery for Multi-Task Learning, NeurIPS",
        PCGradOptions,
        build,
        min_tasks=2,
    )
)
