"""How far CAGrad's compiled dual solver lands from the exact direction.

The exact direction is the official CAGrad code's: scipy's SLSQP on the dual
``min_x x.G.b + c ||g0|| ||g_x||`` over the simplex (float64, started from the
mean and from each vertex, the best kept), then ``d = g0 + c ||g0|| / ||g_x|| g_x``.
mtdqn's :func:`mtdqn.strategies.cagrad.cagrad_coefficients` (float32, jitted)
solves the same dual.  On a fixed set of problems (2-4 tasks with a pair at
cosines -0.5 to -0.995 and norm ratios 0.8-3, plus 2-7 random tasks spread over
~100x in norm, half with a conflicting pair) the script prints the relative
direction error ``||d - d_exact|| / ||d_exact||`` (median, 90th percentile,
worst) and how often the solver's step makes some task worse to first order
(``min_i g_i . d < 0``) where the exact step improves every task: what CAGrad
exists to avoid.  The direction matters, not the objective: near a cancelling
pair a small error in the dual turns the step a lot.

    python benchmarks/cagrad_solver.py                 # the defaults (CAGradOptions)
    python benchmarks/cagrad_solver.py --steps 200     # another solver length

Run with ``PYTHONPATH`` at a worktree of another revision to measure that
revision's solver with its own defaults (the script only imports the function
and the options).
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np
from scipy.optimize import minimize

from mtdqn.strategies.cagrad import CAGradOptions, cagrad_coefficients


def exact_direction(rows: np.ndarray, c: float) -> np.ndarray:
    """The official CAGrad direction for task gradients ``rows`` (tasks, params), by SLSQP in float64."""
    num_tasks = rows.shape[0]
    gram = rows @ rows.T
    mean = np.ones(num_tasks) / num_tasks
    radius = c * np.sqrt(mean @ gram @ mean)

    def objective(x: np.ndarray) -> float:
        return x @ gram @ mean + radius * np.sqrt(max(x @ gram @ x, 0.0) + 1e-30)

    best = None
    for start in [mean, *np.eye(num_tasks)]:
        found = minimize(objective, start, bounds=[(0.0, 1.0)] * num_tasks,
                         constraints={"type": "eq", "fun": lambda x: 1.0 - x.sum()},
                         options={"ftol": 1e-15, "maxiter": 1000})
        if best is None or found.fun < best.fun:
            best = found
    g_x = best.x @ rows
    return rows.mean(0) + radius / np.linalg.norm(g_x) * g_x


def problems(seed: int = 0, params: int = 50) -> list[np.ndarray]:
    """The fixed test set: (tasks, params) gradient rows."""
    rng = np.random.default_rng(seed)

    def unit() -> np.ndarray:
        x = rng.normal(size=params)
        return x / np.linalg.norm(x)

    out = []
    for num_tasks in (2, 3, 4):
        for cosine in (-0.5, -0.8, -0.9, -0.97, -0.995):
            for ratio in (0.8, 1.0, 3.0):
                for _ in range(4):
                    u, v = unit(), unit()
                    v -= (v @ u) * u
                    v /= np.linalg.norm(v)
                    rows = [u, ratio * (cosine * u + np.sqrt(1 - cosine ** 2) * v)]
                    rows += [rng.uniform(0.5, 3.0) * unit() for _ in range(num_tasks - 2)]
                    out.append(np.stack(rows))
    for trial in range(30):
        num_tasks = int(rng.integers(2, 8))
        rows = rng.normal(size=(num_tasks, params)) * rng.uniform(0.1, 10.0, size=(num_tasks, 1))
        if trial % 2:
            rows[1] = -0.8 * rows[0] + 0.2 * rng.normal(size=params)
        out.append(rows)
    return out


def main() -> None:
    defaults = CAGradOptions()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--c", type=float, default=defaults.c)
    parser.add_argument("--steps", type=int, default=defaults.steps)
    parser.add_argument("--step-size", type=float, default=defaults.step_size)
    args = parser.parse_args()
    solve = jax.jit(lambda gram: cagrad_coefficients(gram, args.c, args.steps, args.step_size))
    errors, worse = [], 0
    rows_set = problems()
    for rows in rows_set:
        exact = exact_direction(rows, args.c)
        coefficients = np.asarray(solve(jnp.asarray(rows @ rows.T, jnp.float32)), np.float64)
        found = coefficients @ rows
        errors.append(np.linalg.norm(found - exact) / np.linalg.norm(exact))
        worse += int((rows @ found).min() < 0 <= (rows @ exact).min())
    print(f"CAGrad dual solver, c={args.c}, steps={args.steps}, step_size={args.step_size}, "
          f"{len(rows_set)} problems, against SLSQP (float64)\n")
    print("| direction error: median | 90th percentile | worst | steps making a task worse where the exact one "
          "improves all |")
    print("|---|---|---|---|")
    print(f"| {np.median(errors):.2g} | {np.percentile(errors, 90):.2g} | {max(errors):.2g} | {worse} |")


if __name__ == "__main__":
    main()
