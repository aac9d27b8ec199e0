"""``cagrad``: conflict-averse gradient descent (Liu et al. 2021).

Liu, Liu, Jin, Stone, Liu, "Conflict-Averse Gradient Descent for Multi-task
Learning", NeurIPS 2021.

With the mean gradient g0 = (1/K) sum_i g_i, CAGrad solves the dual over the
task simplex ``min_x  g_x . g0 + c ||g0|| ||g_x||`` with g_x = sum_i x_i g_i,
then moves along ``d = g0 + (c ||g0|| / ||g_x||) g_x``: the direction within a
ball of radius c||g0|| around g0 that maximizes the worst task's improvement.
c = 0 gives the mean gradient exactly.  (The overall scale is the mean's, not
the sum's; Adam is nearly invariant to that.)

The dual only needs the Gram matrix of the task gradients.  It is solved with
a fixed number of projected-gradient steps (jit-able, no host solver), in
coordinates rescaled by the task gradients' norms.  Each step takes the best
of eight candidate steps, or stays put: steps of four sizes (``step_size``
times 1, 0.1, 0.01, 0.001) from the current point and from Nesterov's point
ahead of it, so the objective never rises (see :func:`cagrad_coefficients`).  The direction is what counts,
and near a cancelling pair it turns far more than the objective moves: the
solver before 2026-12-07 (50 steps of one size, 0.5) closed 91-98% of the
objective's gap where 3-4 tasks had a pair at cosine -0.97, with directions
10-50% off the exact one, and on ``benchmarks/cagrad_solver.py``'s 210 problems
(2-7 tasks, norms spread over ~100x, cosines down to -0.999) its 90th
percentile was 31% off, the worst 60%, and in 37 of them its step made a task
worse where the exact step improved every task.  This one, at the default
c = 0.5: median 2e-6 (float32), 90th percentile 2e-4, worst 2.6%, none making
a task worse, against the official code's SLSQP (float64).  A larger c is
harder on its worst problems: at c = 1 and 2 the 90th percentile stays under
0.1%, but the worst is 44% and 72% off and 2 and 1 problems get a step making
a task worse (the old solver: 65 and 127); raise ``steps`` there (c = 1, 200
steps: worst 27%, 1).
The reported weight of task i is its coefficient in d = sum_i (1/K + lambda x_i) g_i.

Static weights (``--task-weights``) scale each g_i before the method.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from mtdqn.errors import ConfigError
from mtdqn.strategies.base import Rule, StrategySpec, coefficient_strategy, register

_EPS = 1e-12
_STEP_FRACTIONS = (1.0, 0.1, 0.01, 0.001)  # of step_size: the sizes each solver step tries


@dataclass(frozen=True)
class CAGradOptions:
    c: float = 0.5
    """Radius of the ball around the mean gradient, relative to its norm (0 = mean gradient)."""
    steps: int = 50
    """Steps of the dual solver on the task simplex."""
    step_size: float = 1.0
    """The largest step size each step of the dual solver tries (in units of the largest task gradient's norm);
    it also tries a tenth, a hundredth and a thousandth of it, and keeps the best."""


def project_weighted_simplex(v: jax.Array, a: jax.Array) -> jax.Array:
    """Euclidean projection of v onto {z >= 0, a . z = 1} for a > 0 (sort-based, as Duchi et al. 2008)."""
    order = jnp.argsort(-v / a)
    v_s, a_s = v[order], a[order]
    theta = (jnp.cumsum(a_s * v_s) - 1.0) / jnp.cumsum(a_s * a_s)  # threshold if the top k stay positive
    k = jnp.sum(v_s / a_s > theta)  # >= 1 always
    return jnp.maximum(v - theta[k - 1] * a, 0.0)


def cagrad_coefficients(gram: jax.Array, c: jax.Array | float, steps: int,
                        step_size: jax.Array | float) -> jax.Array:
    """Coefficients (tasks,) with d = sum_i coef_i g_i, from the Gram matrix of the g_i.

    The dual is solved in z_i = x_i ||g_i|| / max_j ||g_j||, where g_x = sum_i z_i u_i
    over unit vectors u_i: the problem is then as well conditioned when one task's
    gradient is 100x another's as when they are equal.  ``c`` and ``step_size`` may be traced (a sweep's
    members' own); ``steps`` is the solver loop's length, part of the program.
    """
    num_tasks = gram.shape[0]
    norms = jnp.sqrt(jnp.maximum(jnp.diagonal(gram), 0.0))
    rel = jnp.maximum(norms / jnp.maximum(jnp.max(norms), 1e-30), 1e-6)  # (tasks,) in (0, 1]
    cos = gram / jnp.maximum(norms[:, None] * norms[None, :], 1e-30)  # <u_i, u_j>
    g0 = rel / num_tasks  # mean gradient in z coordinates (x = 1/K)
    radius = c * jnp.sqrt(jnp.maximum(g0 @ cos @ g0, 0.0))
    linear = cos @ g0
    sizes = step_size * jnp.asarray(_STEP_FRACTIONS)

    def objective(z: jax.Array) -> jax.Array:
        return z @ linear + radius * jnp.sqrt(jnp.maximum(z @ cos @ z, 0.0) + _EPS)

    def steps_from(point: jax.Array) -> jax.Array:
        """Projected-gradient steps of every size from ``point``: (sizes, tasks)."""
        cz = cos @ point
        grad = linear + radius * cz / jnp.sqrt(jnp.maximum(point @ cz, 0.0) + _EPS)
        return jax.vmap(lambda size: project_weighted_simplex(point - size * grad, 1.0 / rel))(sizes)

    def step(t, carry: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
        z, previous = carry
        ahead = project_weighted_simplex(z + t / (t + 3.0) * (z - previous), 1.0 / rel)  # Nesterov's point
        tried = jnp.concatenate([steps_from(z), steps_from(ahead), z[None]])  # or stay: it never rises
        return tried[jnp.argmin(jax.vmap(objective)(tried))], z

    z, _ = jax.lax.fori_loop(0, steps, step, (g0, g0))
    lam = radius / jnp.sqrt(jnp.maximum(z @ cos @ z, 0.0) + _EPS)  # c ||g0|| / ||g_x||
    return 1.0 / num_tasks + lam * z / rel


def build(options: CAGradOptions) -> Rule:
    if options.c < 0 or options.steps < 0 or not options.step_size > 0:
        raise ConfigError(f"strategy cagrad: needs c >= 0, steps >= 0, step_size > 0; got {options}")

    def coefficients(gram, key, weights, options):
        gram = gram * weights[:, None] * weights[None, :]  # of w_i g_i
        return weights * cagrad_coefficients(gram, options.c, options.steps, options.step_size)

    return coefficient_strategy(coefficients)


register(
    StrategySpec(
        "cagrad",
        "conflict-averse gradient: best worst-task step within c*||g0|| of the mean gradient",
        "Liu et al. 2021, Conflict-Averse Gradient Descent for Multi-task Learning, NeurIPS",
        CAGradOptions,
        build,
        min_tasks=2,
    )
)
