"""Fixed-step Runge-Kutta integration for the JAX-native classic-control tasks.

mushroom-rl integrates Car-On-Hill and the LSPI pendulum with scipy's adaptive
``odeint`` (LSODA) over each 0.1 s control step.  Adaptive step control has no
fixed shape to compile, so here every control step takes a fixed number of
classic fourth-order Runge-Kutta sub-steps instead; the control input is held
constant over the control step (zero-order hold), as in both papers.

Car-On-Hill's hill changes formula at p = 0 and its curvature jumps there, so
the acceleration is discontinuous across p = 0.  Plain RK4 loses its order at
such a jump (10 sub-steps: speed error up to 3e-2 per 0.1 s step; 100 sub-steps
still 4e-3).  :func:`rk4_switched` therefore finds where a sub-step crosses
the switching surface and integrates each side with its own formula, which
brings 10 sub-steps to ~3e-6 (float32 level).  tests/test_classic_extra_tasks.py
checks both integrators against ``odeint`` on the same equations.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

__all__ = ["rk4_step", "rk4", "rk4_switched"]

NEWTON_ITERATIONS = 3  # refinements of a crossing time; the cubic's root converges in 2-3 from the secant


def rk4_step(derivative: Callable[[jax.Array], jax.Array], y: jax.Array, h: jax.Array | float) -> jax.Array:
    """One classic RK4 step of size ``h`` for the autonomous ``dy/dt = derivative(y)``."""
    k1 = derivative(y)
    k2 = derivative(y + 0.5 * h * k1)
    k3 = derivative(y + 0.5 * h * k2)
    k4 = derivative(y + h * k3)
    return y + (h / 6.0) * (k1 + 2.0 * k2 + 2.0 * k3 + k4)


def rk4(derivative: Callable[[jax.Array], jax.Array], y: jax.Array, dt: float, substeps: int) -> jax.Array:
    """Integrate a smooth ``dy/dt = derivative(y)`` over ``dt`` with ``substeps`` RK4 steps."""
    h = dt / substeps
    return jax.lax.fori_loop(0, substeps, lambda _, y: rk4_step(derivative, y, h), y)


def hermite_crossing(p0: jax.Array, v0: jax.Array, p1: jax.Array, v1: jax.Array, h: float) -> jax.Array:
    """Time in [0, h] where the cubic Hermite interpolant of p (values p0, p1, slopes v0, v1) is zero.

    Newton's method on the cubic, started from the secant's root; the cubic is
    fourth-order accurate, like the RK4 step that produced (p1, v1).
    """
    tau = jnp.clip(h * p0 / jnp.where(p0 == p1, 1.0, p0 - p1), 0.0, h)
    for _ in range(NEWTON_ITERATIONS):
        x = tau / h
        value = (2 * x**3 - 3 * x**2 + 1) * p0 + (x**3 - 2 * x**2 + x) * h * v0 \
            + (3 * x**2 - 2 * x**3) * p1 + (x**3 - x**2) * h * v1
        slope = (6 * x**2 - 6 * x) / h * p0 + (3 * x**2 - 4 * x + 1) * v0 \
            + (6 * x - 6 * x**2) / h * p1 + (3 * x**2 - 2 * x) * v1
        tau = jnp.clip(tau - value / jnp.where(jnp.abs(slope) > 1e-9, slope, 1e-9), 0.0, h)
    return tau


def rk4_switched(
    derivative: Callable[[jax.Array, jax.Array], jax.Array], y: jax.Array, dt: float, substeps: int
) -> jax.Array:
    """Like :func:`rk4` for a right-hand side that switches formula where ``y[0]`` changes sign.

    ``derivative(y, negative)`` evaluates the formula of the side ``negative``
    (``y[0] < 0``) at any ``y``, extended smoothly past the surface.  A sub-step
    that ends on the other side is redone in two parts: up to the crossing time
    (:func:`hermite_crossing`) with the starting side's formula, then the rest
    with the other side's.  A sub-step that crosses twice is not split; that
    needs |y[0]| tiny with its rate near zero, where the jump hardly matters.
    """
    h = dt / substeps

    def one_substep(_: int, y: jax.Array) -> jax.Array:
        negative = y[0] < 0.0
        this_side = lambda z: derivative(z, negative)  # noqa: E731
        y_end = rk4_step(this_side, y, h)
        crossed = (y_end[0] < 0.0) != negative
        tau = hermite_crossing(y[0], this_side(y)[0], y_end[0], this_side(y_end)[0], h)
        y_cross = rk4_step(this_side, y, tau)
        y_split = rk4_step(lambda z: derivative(z, ~negative), y_cross, h - tau)
        return jnp.where(crossed, y_split, y_end)

    return jax.lax.fori_loop(0, substeps, one_substep, y)
