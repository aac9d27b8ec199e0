"""Per-task ring buffers: wrap-around, fill level, mixed-task sampling."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from mtdqn.replay import Transition, replay_add, replay_init, replay_sample


def _batch(value: float, tasks: int = 2, n: int = 3) -> Transition:
    obs = jnp.full((tasks, n, 4), value, jnp.float32) + jnp.arange(tasks, dtype=jnp.float32)[:, None, None] * 100
    return Transition(obs, jnp.zeros((tasks, n), jnp.int32), jnp.full((tasks, n), value),
                      obs + 1, jnp.zeros((tasks, n), bool))


def test_ring_buffer_wraps_and_caps_size():
    rb = replay_init(2, 5, (4,), jnp.float32)
    rb = replay_add(rb, _batch(1.0))
    assert int(rb.size) == 3 and int(rb.pos) == 3
    rb = replay_add(rb, _batch(2.0))
    assert int(rb.size) == 5 and int(rb.pos) == 1
    # slot 0 was overwritten by the wrap: values 2,1,1,2,2 for task 0
    np.testing.assert_allclose(rb.data.reward[0], [2.0, 1.0, 1.0, 2.0, 2.0])


def test_sample_keeps_tasks_apart_and_only_filled_slots():
    rb = replay_add(replay_init(2, 100, (4,), jnp.float32), _batch(7.0))
    batch = replay_sample(rb, jax.random.PRNGKey(0), 16)
    assert batch.obs.shape == (2, 16, 4)
    np.testing.assert_allclose(batch.obs[0], 7.0)  # task 0's data only
    np.testing.assert_allclose(batch.obs[1], 107.0)  # task 1's data only
    np.testing.assert_allclose(batch.next_obs - batch.obs, 1.0)
