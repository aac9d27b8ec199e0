"""``unit-norm``: our design's gradient normalization, g = sum_i w_i g_i / ||g_i||_2.

Each task's gradient on the shared parameters is scaled to unit global L2
norm (one norm over the whole shared tree per task) before the tasks are
added, so a task whose rewards are 100x larger cannot pull the trunk 100x
harder.  A task whose gradient is zero (or below ``eps``) contributes nothing
instead of dividing by zero.  Related to the normalization step of GradNorm
(Chen et al. 2018) without the learned rates; the design's own method.  The
reported weight of task i is the coefficient it got, w_i / ||g_i|| (0 for a
zero gradient).  With one task it is normalized gradient descent, so it does
not demand two tasks.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax.numpy as jnp

from mtdqn.errors import ConfigError
from mtdqn.strategies.base import Rule, StrategySpec, coefficient_strategy, gram_norms, register


@dataclass(frozen=True)
class UnitNormOptions:
    eps: float = 1e-12
    """Gradients with a smaller norm are treated as zero."""


def build(options: UnitNormOptions) -> Rule:
    if not options.eps > 0:
        raise ConfigError(f"strategy unit-norm: eps must be > 0, got {options.eps}")

    def coefficients(gram, key, weights, options):
        norms = gram_norms(gram)  # (tasks,)
        return jnp.where(norms > options.eps, weights / jnp.maximum(norms, options.eps), 0.0)

    return coefficient_strategy(coefficients)


register(
    StrategySpec(
        "unit-norm",
        "sum of unit-norm task gradients, w_i g_i / ||g_i||, on the shared parameters",
        "our design; cf. Chen et al. 2018, GradNorm, ICML",
        UnitNormOptions,
        build,
    )
)
