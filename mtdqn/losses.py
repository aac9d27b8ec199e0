"""TD targets and TD losses, written once for every task and variant; and the policy-distillation losses.

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

__all__ = ["masked_q", "td_target", "td_error_loss", "q_taken", "distill_ce", "distill_kl"]

_NEG = -1e9  # logit of a padded action in the distillation losses: finite, so 0 * log p stays 0, never NaN


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


# Policy distillation (Rusu et al. 2016, "Policy Distillation", arXiv:1511.06295): the student's Q-values are
# logits of a policy fitted to the teacher's.  Both losses take one task's (batch, actions) Q-values and its
# (actions,) mask; the teacher's side carries no gradient.


def _masked_logits(q: jax.Array, action_mask: jax.Array) -> jax.Array:
    return jnp.where(action_mask, q, _NEG)


def distill_ce(q_student: jax.Array, q_teacher: jax.Array, action_mask: jax.Array) -> jax.Array:
    """Mean cross-entropy of softmax(q_student) on the teacher's greedy action (Rusu et al.'s NLL loss)."""
    a_star = jnp.argmax(masked_q(jax.lax.stop_gradient(q_teacher), action_mask), axis=-1)  # (batch,)
    log_p = jax.nn.log_softmax(_masked_logits(q_student, action_mask), axis=-1)
    return -jnp.mean(jnp.take_along_axis(log_p, a_star[:, None], axis=-1)[:, 0])


def distill_kl(q_student: jax.Array, q_teacher: jax.Array, action_mask: jax.Array, temperature: float) -> jax.Array:
    """Mean KL(softmax(q_teacher / T) || softmax(q_student)) over the batch (Rusu et al.'s KL loss).

    The teacher's padded actions are -inf, not the student's finite -1e9: q / T is unbounded (Q-values of -100
    at T = 1e-8 are -1e10), and a padded action above the real ones took the teacher's probability, zeroing
    the task's loss and gradient.  Where ``action_mask`` is False the term is 0 (it has no gradient: the
    teacher's side is constant)."""
    log_p_t = jax.nn.log_softmax(masked_q(jax.lax.stop_gradient(q_teacher) / temperature, action_mask), -1)
    log_p_s = jax.nn.log_softmax(_masked_logits(q_student, action_mask), axis=-1)
    kl = jnp.sum(jnp.where(action_mask, jnp.exp(log_p_t) * (log_p_t - log_p_s), 0.0), axis=-1)
    return jnp.mean(kl)
