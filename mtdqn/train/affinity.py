"""Lookahead inter-task affinity: how much a step on one task's loss lowers another's.

TAG (Fifty et al., NeurIPS 2021, "Efficiently Identifying Task Groupings for
Multi-Task Learning", https://arxiv.org/abs/2109.04617):

    Z_{i->j} = 1 - L_j(theta_s - eta * grad_{theta_s} L_i, theta_j) / L_j(theta_s, theta_j)

Z > 0: task i's step alone would lower task j's loss (i helps j); Z < 0: it
would raise it.  Z <= 1 always (a loss is never negative), and for a small
enough step Z_{i->i} > 0 (a gradient step lowers its own loss).  Only the
shared parameters theta_s move; each task keeps its own (adapters, heads).

The lookahead is TAG's plain SGD step theta_s - eta * g_i, with eta the run's
``--lr``, also when the run trains with Adam (whose actual step is not
eta * g): the measure compares tasks through their gradients on one minibatch,
not through the optimizer's moments.  For a small step Z_{i->j} ~ eta *
<g_i, g_j> / L_j, so its size follows eta and the loss scale.  eta is the
base rate, not a --lr-schedule's decayed one: with the decayed rate every
measurement was weighted by it in the average over training (the first half
of a linear schedule carried 78% of the weight), which could choose another
partition than equal weights do; TAG's own code divides each measurement by
its rate.  (Dividing by a rate near 0 would magnify float32 rounding instead.)
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

from mtdqn.config import Derived, first_update_iteration

__all__ = ["lookahead_affinity", "measures_affinity"]


def lookahead_affinity(task_losses: Callable[[Any], jax.Array], shared: Any, task_grads: Any,
                       lr: jax.Array | float) -> jax.Array:
    """Z (tasks i, tasks j): ``task_losses(shared)`` gives every task's loss (tasks,) with these shared
    parameters (each task's own parameters, batch and targets fixed inside it); ``task_grads`` are the
    per-task gradients on ``shared`` (a leading task axis on every leaf); ``lr`` is eta.

    Costs one ``task_losses`` call per task (its lookahead parameters) plus one at ``shared``.  A task
    whose loss is exactly 0 at ``shared`` has Z = 0 in its column (no loss to lower; the ratio is undefined).
    """
    base = task_losses(shared)  # (tasks j,): L_j(theta_s, theta_j)

    def after_step_on(grad: Any) -> jax.Array:
        return task_losses(jax.tree.map(lambda s, g: s - lr * g, shared, grad))  # (tasks j,)

    # axis_size: a network without shared parameters has no gradient leaves (nothing moves: Z = 0)
    looked = jax.vmap(after_step_on, axis_size=base.shape[0])(task_grads)  # (tasks i, tasks j)
    has_loss = base > 0
    return jnp.where(has_loss[None, :], 1.0 - looked / jnp.where(has_loss, base, 1.0)[None, :], 0.0)


def measures_affinity(derived: Derived, every: int, t: jax.Array | int) -> jax.Array | bool:
    """Whether the update due at iteration ``t`` measures the affinity: the first update and every
    ``every``-th after it (0: none).

    A function of the iteration index alone, which the compiled loop passes
    un-batched: under ``vmap`` over seeds a ``lax.cond`` on it stays a real
    branch, so updates that do not measure pay nothing.  The update count is
    the same for every seed (updates happen on a fixed schedule of ``t``).
    """
    if every == 0:
        return False
    k = (t - first_update_iteration(derived)) // derived.train_every_iters  # this update's index: 0, 1, ...
    return k % every == 0
