"""Each task's layout generator, ``_gen_grid`` of its ``minigrid`` env, drawn from the same distribution.

The package draws with numpy and rejection sampling (``place_obj`` retries a
random cell of a rectangle until it is empty and not the agent's); a uniform
draw over the cells that pass is the same distribution, and that is what
:func:`_uniform_cell` does.  Each generator returns ``(grid, pos, dir, marks)``
(see :class:`~mtdqn.tasks.minigrid.core.EnvState`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from mtdqn.tasks.minigrid.core import (
    BALL, CLOSED, COLORS, DOOR, EMPTY, GOAL, GRID, KEY, LAVA, LOCKED, WALL, base_grid, cell,
)

__all__ = ["doorkey", "lavagap", "distshift", "simple_crossing", "red_blue_doors", "multiroom", "memory"]

_XS, _YS = jnp.meshgrid(jnp.arange(GRID), jnp.arange(GRID), indexing="ij")
_NO_MARKS = jnp.full((2, 2), -1, jnp.int32)


def _rect(x0, y0, w, h) -> jax.Array:
    """(GRID, GRID) bool: the cells of the rectangle with top-left (x0, y0) and size w x h."""
    return (_XS >= x0) & (_XS < x0 + w) & (_YS >= y0) & (_YS < y0 + h)


def _wall_rect(grid: jax.Array, x0, y0, w, h) -> jax.Array:
    """``Grid.wall_rect``: the border of the rectangle becomes wall."""
    border = _rect(x0, y0, w, h) & ~_rect(x0 + 1, y0 + 1, w - 2, h - 2)
    return jnp.where(border[..., None], cell(WALL, COLORS["grey"]), grid)


def _uniform_cell(key: jax.Array, allowed: jax.Array) -> jax.Array:
    """(x, y) drawn uniformly from the True cells of ``allowed`` (GRID, GRID): ``place_obj``'s rejection sampling."""
    flat = jax.random.categorical(key, jnp.where(allowed.reshape(-1), 0.0, -jnp.inf))
    return jnp.stack([flat // GRID, flat % GRID]).astype(jnp.int32)


def _free(grid: jax.Array) -> jax.Array:
    return grid[..., 0] == EMPTY


def _put(grid: jax.Array, xy: jax.Array, value: jax.Array) -> jax.Array:
    return grid.at[xy[0], xy[1]].set(value)


def doorkey(key: jax.Array, size: int):
    """``DoorKeyEnv._gen_grid``: a wall at a random column, a locked yellow door in it, the key and agent left of it."""
    k_split, k_agent, k_dir, k_door, k_key = jax.random.split(key, 5)
    grid = _wall_rect(base_grid(size, size), 0, 0, size, size)
    grid = _put(grid, jnp.array([size - 2, size - 2]), cell(GOAL, COLORS["green"]))
    split = jax.random.randint(k_split, (), 2, size - 2)
    grid = jnp.where(((_XS == split) & (_YS < size))[..., None], cell(WALL, COLORS["grey"]), grid)
    left = _rect(0, 0, split, size) & _free(grid)
    pos = _uniform_cell(k_agent, left)
    direction = jax.random.randint(k_dir, (), 0, 4)
    door_y = jax.random.randint(k_door, (), 1, size - 2)
    grid = _put(grid, jnp.stack([split, door_y]), cell(DOOR, COLORS["yellow"], LOCKED))
    not_agent = ~((_XS == pos[0]) & (_YS == pos[1]))
    key_pos = _uniform_cell(k_key, left & not_agent)
    grid = _put(grid, key_pos, cell(KEY, COLORS["yellow"]))
    return grid, pos, direction, _NO_MARKS


def lavagap(key: jax.Array, size: int):
    """``LavaGapEnv._gen_grid``: a lava column with one gap between the agent (1, 1) and the goal."""
    k_x, k_y = jax.random.split(key)
    grid = _wall_rect(base_grid(size, size), 0, 0, size, size)
    grid = _put(grid, jnp.array([size - 2, size - 2]), cell(GOAL, COLORS["green"]))
    gap_x = jax.random.randint(k_x, (), 2, size - 2)
    gap_y = jax.random.randint(k_y, (), 1, size - 1)
    column = (_XS == gap_x) & (_YS >= 1) & (_YS < size - 1) & (_YS != gap_y)
    grid = jnp.where(column[..., None], cell(LAVA, COLORS["red"]), grid)
    return grid, jnp.array([1, 1], jnp.int32), jnp.int32(0), _NO_MARKS


def distshift(key: jax.Array, width: int, height: int, strip2_row: int):
    """``DistShiftEnv._gen_grid``: two lava strips, a fixed start (1, 1) facing right; nothing random."""
    del key
    grid = _wall_rect(base_grid(width, height), 0, 0, width, height)
    grid = _put(grid, jnp.array([width - 2, 1]), cell(GOAL, COLORS["green"]))
    strips = (_XS >= 3) & (_XS < width - 3) & ((_YS == 1) | (_YS == strip2_row))
    grid = jnp.where(strips[..., None], cell(LAVA, COLORS["red"]), grid)
    return grid, jnp.array([1, 1], jnp.int32), jnp.int32(0), _NO_MARKS
