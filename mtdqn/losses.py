"""TD targets and TD losses, written once for every task and variant.

Names follow rlax: ``q_tm1`` Q-values at the transition's start, ``a_tm1`` the
action taken, ``r_t`` the reward, ``d_t`` the discount (0 at termination,
gamma otherwise), ``q_t`` Q-values at the next state.  A truncated episode
(time limit) keeps ``d_t = gamma``: the state was not terminal, so the target
bootstraps from the observation before the environment's auto-reset.

Padded actions (a task with fewer actions than the widest one) are masked with
``-inf`` before every max/argmax, so they are never chosen and never
bootstrapped from.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["masked_q", "td_target", "td_error_loss", "q_taken"]


def masked_q(q: jax.Array, action_mask: jax.Array) -> jax.Array:
    """Q-values with padded actions set to -inf; ``action_mask`` broadcasts over q's batch axis."""
    return jnp.where(action_mask, q, -jnp.inf)


def td_target(
    r_t: jax.Array,
    d_t: jax.Array,
    q_t_target: jax.Array,
    q_t_online: jax.Array,
    action_mask: jax.Array,
    double: bool,
) -> jax.Array:
    """Bootstrapped target (batch,): r + d * Q_target(s', a*), a* greedy under the mask.

    ``double=False``: a* = argmax Q_target (DQN); ``double=True``: a* = argmax Q_online
    (double DQN, van Hasselt et al. 2016).
    """
    chooser = q_t_online if double else q_t_target
    a_star = jnp.argmax(masked_q(chooser, action_mask), axis=-1)  # (batch,)
    v_t = jnp.take_along_axis(q_t_target, a_star[:, None], axis=-1)[:, 0]
    return r_t + d_t * jax.lax.stop_gradient(v_t)


def q_taken(q_tm1: jax.Array, a_tm1: jax.Array) -> jax.Array:
    """Q(s, a) for the actions taken: (batch, actions), (batch,) -> (batch,)."""
    return jnp.take_along_axis(q_tm1, a_tm1[:, None].astype(jnp.int32), axis=-1)[:, 0]


def td_error_loss(q_sa: jax.Array, target: jax.Array, kind: str) -> jax.Array:
    """Mean TD loss over the batch: Huber (delta = 1) or half squared error."""
    err = q_sa - target
    if kind == "huber":
        abs_err = jnp.abs(err)
        return jnp.mean(jnp.where(abs_err <= 1.0, 0.5 * err**2, abs_err - 0.5))
    if kind == "mse":
        return jnp.mean(0.5 * err**2)
    raise ValueError(f"unknown loss {kind!r}; valid: huber, mse")
