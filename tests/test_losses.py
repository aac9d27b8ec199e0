"""TD targets and losses against hand-computed numbers."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from mtdqn.losses import masked_q, q_taken, td_error_loss, td_target

MASK = jnp.array([True, True, False])  # third action is padding


def test_target_bootstraps_from_best_valid_action():
    q_t = jnp.array([[1.0, 2.0, 99.0], [3.0, -1.0, 99.0]])  # padded action has the largest value
    r = jnp.array([0.5, 1.0])
    d = jnp.array([0.9, 0.0])  # second transition terminated
    y = td_target(r, d, q_t, q_t, MASK, double=False)
    np.testing.assert_allclose(y, [0.5 + 0.9 * 2.0, 1.0])


def test_truncation_bootstraps_termination_does_not():
    q_t = jnp.array([[4.0, 1.0, 0.0], [4.0, 1.0, 0.0]])
    gamma = 0.99
    terminated = jnp.array([False, True])  # first: truncated by the time limit
    d = gamma * (1.0 - terminated.astype(jnp.float32))
    y = td_target(jnp.zeros(2), d, q_t, q_t, MASK, double=False)
    np.testing.assert_allclose(y, [gamma * 4.0, 0.0])


def test_double_dqn_uses_online_argmax_and_target_value():
    q_target = jnp.array([[1.0, 5.0, 0.0]])
    q_online = jnp.array([[2.0, 1.0, 7.0]])  # online prefers action 0 among valid ones
    y = td_target(jnp.array([0.0]), jnp.array([1.0]), q_target, q_online, MASK, double=True)
    np.testing.assert_allclose(y, [1.0])
    y_dqn = td_target(jnp.array([0.0]), jnp.array([1.0]), q_target, q_online, MASK, double=False)
    np.testing.assert_allclose(y_dqn, [5.0])


def test_huber_and_mse_by_hand():
    q_sa = jnp.array([0.0, 0.0, 0.0])
    target = jnp.array([0.5, 2.0, -3.0])
    # huber: 0.5*0.25, 2-0.5, 3-0.5 -> mean
    assert float(td_error_loss(q_sa, target, "huber")) == pytest.approx((0.125 + 1.5 + 2.5) / 3)
    assert float(td_error_loss(q_sa, target, "mse")) == pytest.approx(0.5 * (0.25 + 4 + 9) / 3)
    with pytest.raises(ValueError):
        td_error_loss(q_sa, target, "l1")


def test_q_taken_and_mask():
    q = jnp.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    np.testing.assert_allclose(q_taken(q, jnp.array([2, 0])), [3.0, 4.0])
    masked = masked_q(q, MASK)
    assert int(jnp.argmax(masked[0])) == 1
    assert bool(jnp.isneginf(masked[:, 2]).all())
