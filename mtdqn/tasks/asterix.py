"""Asterix-MinAtar: gymnax's game with MinAtar's spawn.

Young & Tian's ``minatar/environments/asterix.py`` (package ``minatar`` 1.0.15, ``_spawn_entity``) spawns an
enemy or a treasure, when the spawn timer is up, into a row chosen uniformly among the free ones of its 8, and
spawns nothing when every row is taken.  gymnax 1.0.1's port (``gymnax/environments/minatar/asterix.py``,
``while_sample_slots``) walks a random order of the rows but increments its index before the first check, so the
first row of the order is never tried (with one row free it is found 7 times in 8), and when it finds none free
it writes an empty row over the last row of the order: a live enemy or treasure vanishes.  That shows only
near full difficulty, where a spawn comes every frame and the rows are nearly all taken (gymnax ~6.6 entities on
screen there against MinAtar's 7.2, a review's measurement), but that is where a trained agent lives: the
difficulty ramps every ~100 frames from the start.

Everything else is gymnax's game (its player, entities, timers and observation: checked against the package
step by step, with the spawn's random draws aligned, in ``tests/test_minatar.py``).

Random draws per spawn, from the step's key (:func:`spawn_draws`): split in three, the direction
(``bernoulli``: from the left, moving right, as MinAtar's ``lr``), treasure or enemy (``uniform < 1/3``) and the
row (``randint`` over the free rows, the k-th free row taken).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from gymnax.environments.minatar.asterix import EnvParams, EnvState, MinAsterix, step_agent, step_entities, step_timers

__all__ = ["Asterix", "spawn_draws"]


def spawn_draws(key: jax.Array, free: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(moves right, is gold, row) of a spawn with ``free`` (8,) the rows without an entity; the row is the k-th
    free one, k uniform over their number (any row where none is free: the spawn is then skipped)."""
    k_lr, k_gold, k_row = jax.random.split(key, 3)
    right = jax.random.bernoulli(k_lr)
    gold = jax.random.uniform(k_gold) < 1.0 / 3.0
    k = jax.random.randint(k_row, (), 0, jnp.maximum(free.sum(), 1))
    row = jnp.argmax(jnp.cumsum(free) > k)  # the first row where the count of free rows passes k
    return right, gold, row


def spawn(key: jax.Array, entities: jax.Array) -> jax.Array:
    """``entities`` (8, 5: x, y, moves right, gold, alive) with a new one in a free row, unchanged if none is."""
    free = entities[:, 4] == 0
    right, gold, row = spawn_draws(key, free)
    x = jnp.where(right, 0, 9)
    entity = jnp.stack([x, row + 1, right, gold, 1]).astype(entities.dtype)
    return jnp.where(free.any(), entities.at[row].set(entity), entities)


class Asterix(MinAsterix):
    """gymnax's ``MinAsterix`` whose spawn is MinAtar's (module docstring)."""

    def step_env(self, key: jax.Array, state: EnvState, action: Any, params: EnvParams):
        spawn_now = state.spawn_timer == 0
        state = state.replace(entities=jnp.where(spawn_now, spawn(key, state.entities), state.entities),
                              spawn_timer=jnp.where(spawn_now, state.spawn_speed, state.spawn_timer))
        state = step_agent(state, self.action_set[action])
        state, reward, done = step_entities(state)
        state = step_timers(state, params)
        state = state.replace(time=state.time + 1, terminal=done)
        done = self.is_terminal(state, params)
        info = {"discount": self.discount(state, params)}
        return (jax.lax.stop_gradient(self.get_obs(state)), jax.lax.stop_gradient(state), reward.astype(jnp.float32),
                done, info)
