"""Per-task ring buffers: wrap-around, fill level, mixed-task sampling; n-step windows against hand-computed ones."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mtdqn.replay import Transition, n_step_transitions, replay_add, replay_init, replay_sample

# Jitted, as the training loop calls them: one program per shape instead of one per operation.
add = jax.jit(replay_add)
n_step = jax.jit(n_step_transitions, static_argnums=(2, 3))


def _batch(value: float, tasks: int = 2, n: int = 3) -> Transition:
    obs = jnp.full((tasks, n, 4), value, jnp.float32) + jnp.arange(tasks, dtype=jnp.float32)[:, None, None] * 100
    return Transition(obs, jnp.zeros((tasks, n), jnp.int32), jnp.full((tasks, n), value),
                      obs + 1, jnp.zeros((tasks, n), bool))


@pytest.mark.slow
def test_ring_buffer_wraps_and_caps_size():
    rb = replay_init(2, 5, (4,), jnp.float32)
    rb = replay_add(rb, _batch(1.0))
    assert int(rb.size) == 3 and int(rb.pos) == 3
    rb = replay_add(rb, _batch(2.0))
    assert int(rb.size) == 5 and int(rb.pos) == 1
    # slot 0 was overwritten by the wrap: values 2,1,1,2,2 for task 0
    np.testing.assert_allclose(rb.data.reward[0], [2.0, 1.0, 1.0, 2.0, 2.0])


@pytest.mark.slow
def test_sample_keeps_tasks_apart_and_only_filled_slots():
    rb = replay_add(replay_init(2, 100, (4,), jnp.float32), _batch(7.0))
    batch = replay_sample(rb, jax.random.PRNGKey(0), 16)
    assert batch.obs.shape == (2, 16, 4)
    np.testing.assert_allclose(batch.obs[0], 7.0)  # task 0's data only
    np.testing.assert_allclose(batch.obs[1], 107.0)  # task 1's data only
    np.testing.assert_allclose(batch.next_obs - batch.obs, 1.0)


def _episodes(capacity: int, steps: int = 5) -> tuple:
    """Two tasks with two envs each, ``steps`` vector steps written; env 0's episode is truncated at step 1
    and env 1's terminates at step 2.  Reward of (step t, env e): 10 t + e + 1; observation: 100 t + e."""
    rb = replay_init(2, capacity, (1,), jnp.float32, with_done=True)
    for t in range(steps):
        obs = jnp.broadcast_to(jnp.asarray([100.0 * t, 100.0 * t + 1])[None, :, None], (2, 2, 1))
        reward = jnp.broadcast_to(jnp.asarray([10.0 * t + 1, 10.0 * t + 2]), (2, 2))
        terminated = jnp.broadcast_to(jnp.asarray([False, t == 2]), (2, 2))
        done = jnp.broadcast_to(jnp.asarray([t == 1, t == 2]), (2, 2))
        rb = add(rb, Transition(obs, jnp.zeros((2, 2), jnp.int32), reward, obs + 0.5, terminated, done))
    return rb


def _r(t: int, e: int) -> float:
    return 10.0 * t + e + 1


def test_n_step_transitions_by_hand():
    """n = 3 windows from hand-written episodes: within an episode, cut by a truncation (bootstraps), by a
    termination (does not), and by the newest transition written."""
    rb = _episodes(capacity=16)  # slot of (t, e): 2 t + e
    gammas = (0.9, 0.5)  # each task its own
    cases = [  # (t, e): (steps in the window, bootstrap observation's step)
        ((2, 0), 3, 4), ((0, 0), 2, 1), ((1, 0), 1, 1), ((1, 1), 2, 2), ((2, 1), 1, 2), ((3, 1), 2, 4),
        ((4, 0), 1, 4),
    ]
    idx = jnp.asarray([[2 * t + e for (t, e), _, _ in cases]] * 2)
    batch, d_t = n_step(rb, idx, 3, 2, jnp.asarray(gammas))
    for i, g in enumerate(gammas):
        for j, ((t, e), steps, last) in enumerate(cases):
            want_r = sum(g**k * _r(t + k, e) for k in range(steps))
            terminated = e == 1 and last == 2
            assert float(batch.reward[i, j]) == pytest.approx(want_r, rel=1e-6), ((t, e), i)
            assert float(d_t[i, j]) == pytest.approx(0.0 if terminated else g**steps, rel=1e-6), ((t, e), i)
            assert float(batch.next_obs[i, j, 0]) == 100.0 * last + e + 0.5
            assert float(batch.obs[i, j, 0]) == 100.0 * t + e
            assert bool(batch.terminated[i, j]) == terminated


def test_n_step_windows_read_across_the_ring_wrap():
    """Capacity 6, 5 vector steps of 2 envs: steps 2-4 are left, in slots 4, 5, 0, 1, 2, 3."""
    rb = _episodes(capacity=6)
    idx = jnp.asarray([[4, 5]] * 2)  # (t=2, e=0): steps 2, 3, 4 in slots 4, 0, 2; (t=2, e=1): terminates at once
    batch, d_t = n_step(rb, idx, 3, 2, jnp.asarray([0.9, 0.9]))
    np.testing.assert_allclose(batch.reward[0], [_r(2, 0) + 0.9 * _r(3, 0) + 0.81 * _r(4, 0), _r(2, 1)], rtol=1e-6)
    np.testing.assert_allclose(d_t[0], [0.9**3, 0.0], rtol=1e-6)
    np.testing.assert_allclose(batch.next_obs[0, :, 0], [400.5, 201.5])


def test_one_step_window_is_the_one_step_transition():
    rb = _episodes(capacity=16)
    idx = jnp.asarray([list(range(10))] * 2)
    batch, d_t = n_step(rb, idx, 1, 2, jnp.asarray([0.9, 0.5]))
    plain = jax.tree.map(lambda buf: jax.vmap(lambda b, i: b[i])(buf, idx), rb.data.replace(done=None))
    for field in ("obs", "action", "reward", "next_obs", "terminated"):
        np.testing.assert_array_equal(getattr(batch, field), getattr(plain, field))
    np.testing.assert_allclose(d_t, np.asarray([[0.9], [0.5]]) * (1 - np.asarray(plain.terminated, np.float32)))
