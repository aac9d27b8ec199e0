"""MiniGrid's world in JAX: cells, the agent's egocentric view, and one step of the seven actions.

Everything here follows the ``minigrid`` package (3.2.0), file by file:

- a cell is MiniGrid's own encoding, ``(object, colour, state)`` ids from
  ``minigrid/core/constants.py`` (``WorldObj.encode``); an empty cell is
  ``(1, 0, 0)`` and a cell outside the view mask ``(0, 0, 0)``;
- the grid is one fixed ``(GRID, GRID, 3)`` uint8 array indexed ``[x, y]``,
  the task's ``width x height`` in its top-left corner and walls around it.
  MiniGrid's ``Grid.slice`` reads every cell outside the grid as a grey wall,
  so the padding is seen exactly as the package sees the outside;
- :func:`observe` is ``MiniGridEnv.gen_obs``: the 7x7 view in front of the
  agent, rotated so the agent sits at ``[3, 6]`` facing "up", occluded by
  ``Grid.process_vis`` (skipped when the env sets ``see_through_walls``),
  with the carried object (or an empty cell) at the agent's own place;
- :func:`act` is ``MiniGridEnv.step`` for actions 0-6 (left, right, forward,
  pickup, drop, toggle, done) with ``Door.toggle`` (a locked door opens only
  for a key of its colour), the carrying rules (pick up only with empty
  hands, drop only onto an empty cell), goal (reward ``1 - 0.9 t/max_steps``)
  and lava ending the episode.  Boxes (``Box.toggle``) are not modelled: none
  of our tasks has one.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct
from gymnax.environments import environment

__all__ = [
    "GRID", "VIEW", "UNSEEN", "EMPTY", "WALL", "FLOOR", "DOOR", "KEY", "BALL", "BOX", "GOAL", "LAVA",
    "COLORS", "OPEN", "CLOSED", "LOCKED", "EnvState", "EnvParams", "cell", "base_grid", "observe", "act",
    "success_reward",
]

GRID = 12  # the padded grid: RedBlueDoors-6x6 is 12 wide, MemoryS11 11 high; MultiRoom is placed inside (layouts.py)
VIEW = 7  # MiniGridEnv(agent_view_size=7), every task's default

# minigrid/core/constants.py: OBJECT_TO_IDX, COLOR_TO_IDX, STATE_TO_IDX
UNSEEN, EMPTY, WALL, FLOOR, DOOR, KEY, BALL, BOX, GOAL, LAVA = range(10)
COLORS = {"red": 0, "green": 1, "blue": 2, "purple": 3, "yellow": 4, "grey": 5}
OPEN, CLOSED, LOCKED = 0, 1, 2
LEFT, RIGHT, FORWARD, PICKUP, DROP, TOGGLE, DONE = range(7)  # minigrid/core/actions.py

DIR_TO_VEC = jnp.array([[1, 0], [0, 1], [-1, 0], [0, -1]], jnp.int32)  # right, down, left, up


def cell(obj: int, color: int = 0, state: int = 0) -> jax.Array:
    """One cell's (object, colour, state) ids, as ``WorldObj.encode`` gives them."""
    return jnp.array([obj, color, state], jnp.uint8)


WALL_CELL = (WALL, COLORS["grey"], 0)
EMPTY_CELL = (EMPTY, 0, 0)


@struct.dataclass
class EnvState(environment.EnvState):
    """A MiniGrid state: ``time`` is MiniGrid's ``step_count``.

    ``marks`` holds two cells a task's reward rule reads: RedBlueDoors' red and
    blue door, Memory's success and failure cell (``(-1, -1)`` where unused).
    """

    grid: jax.Array  # (GRID, GRID, 3) uint8, [x, y]
    pos: jax.Array  # (2,) int32, (x, y)
    dir: jax.Array  # int32, 0 right, 1 down, 2 left, 3 up
    carrying: jax.Array  # (2,) int32, (object, colour); object 0: hands empty
    marks: jax.Array  # (2, 2) int32
    time: jax.Array


@struct.dataclass
class EnvParams(environment.EnvParams):
    max_steps_in_episode: int = 100  # MiniGridEnv.max_steps; each task sets its own default


def base_grid(width: int, height: int) -> jax.Array:
    """Empty ``width x height`` cells in the corner of the padded grid, walls elsewhere (``Grid.slice``'s outside)."""
    xs, ys = jnp.meshgrid(jnp.arange(GRID), jnp.arange(GRID), indexing="ij")
    inside = (xs < width) & (ys < height)
    return jnp.where(inside[..., None], jnp.array(EMPTY_CELL, jnp.uint8), jnp.array(WALL_CELL, jnp.uint8))


def _opaque(cells: jax.Array) -> jax.Array:
    """``not cell.see_behind()``: walls and doors that are not open."""
    obj, state = cells[..., 0], cells[..., 2]
    return (obj == WALL) | ((obj == DOOR) & (state != OPEN))


def _view_cells(grid: jax.Array, pos: jax.Array, direction: jax.Array) -> jax.Array:
    """The (7, 7, 3) view ``[vx, vy]`` of ``gen_obs_grid`` before occlusion: slice, then rotate.

    World cell of view cell (vx, vy): ``pos + (6 - vy) * d + (vx - 3) * r``
    with ``d`` the facing direction and ``r = (-d_y, d_x)`` its right
    (the inverse of ``MiniGridEnv.get_view_coords``).
    """
    d = DIR_TO_VEC[direction]
    r = jnp.stack([-d[1], d[0]])
    vx, vy = jnp.meshgrid(jnp.arange(VIEW), jnp.arange(VIEW), indexing="ij")  # (7, 7) each
    ahead, side = VIEW - 1 - vy, vx - VIEW // 2
    x = pos[0] + ahead * d[0] + side * r[0]
    y = pos[1] + ahead * d[1] + side * r[1]
    inside = (x >= 0) & (x < GRID) & (y >= 0) & (y < GRID)
    cells = grid[jnp.clip(x, 0, GRID - 1), jnp.clip(y, 0, GRID - 1)]
    return jnp.where(inside[..., None], cells, jnp.array(WALL_CELL, jnp.uint8))


def _process_vis(see: jax.Array) -> jax.Array:
    """``Grid.process_vis`` on a 7x7 view (``see[i, j]``: cell i, j lets sight through), agent at (3, 6).

    Rows go from the agent's (j = 6) away from it.  In each row MiniGrid sweeps
    left to right (``m[i+1] |= m[i] & see[i]``), then right to left
    (``m[i-1] |= m[i] & see[i]``), and every visible see-through cell marks
    the cell above it and the one diagonally ahead of the sweep.  A sweep
    reaches cell i from a visible cell k when no opaque cell lies between
    them, so each sweep is one (7, 7) "reaches" matrix built from a running
    count of opaque cells instead of MiniGrid's cell-by-cell loop.  The rows
    are a ``lax.scan`` (the row above depends on this one), not a Python loop:
    its body is compiled once instead of seven times, the same cells.  Inside
    a training program that pays (the MiniGrid learning test ~14% faster, the
    ``minigrid-mt7`` preset ~4%: README, "Where it stands (2026-12-05
    afternoon)"); env-only stepping is no faster.
    """
    n = VIEW
    idx = jnp.arange(n)
    k, i = idx[:, None], idx[None, :]  # (7, 1), (1, 7): from cell k to cell i

    def one_row(row: jax.Array, s: jax.Array) -> tuple[jax.Array, jax.Array]:
        """(the cells this row marks in the row above, the row's visible cells) from the cells marked in it."""
        blocked = jnp.concatenate([jnp.zeros(1, jnp.int32), jnp.cumsum(~s, dtype=jnp.int32)])  # (8,) opaque in [0, i)
        rightward = (k <= i) & (blocked[i] == blocked[k])  # see[k .. i-1] all see-through
        swept_right = jnp.any(row[:, None] & rightward, axis=0)
        leftward = (k >= i) & (blocked[k + 1] == blocked[i + 1])  # see[i+1 .. k] all see-through
        swept = jnp.any(swept_right[:, None] & leftward, axis=0)
        lit_right = swept_right & s & (idx < n - 1)  # the left-to-right sweep visits cells 0 .. n-2
        lit_left = swept & s & (idx > 0)  # the right-to-left sweep visits cells n-1 .. 1
        none = jnp.zeros(1, bool)
        ahead_right = jnp.concatenate([none, lit_right[:-1]])  # the sweep's cell i marks i + 1 in the row above
        ahead_left = jnp.concatenate([lit_left[1:], none])  # ... and i - 1 going back
        return lit_right | lit_left | ahead_right | ahead_left, swept

    _, rows = jax.lax.scan(one_row, idx == n // 2, see.T[::-1])  # rows j = 6, 5, ..., 0: (7, 7) [6 - j, i]
    return rows[::-1].T  # (7, 7) [i, j]


def observe(state: EnvState, see_through_walls: bool) -> jax.Array:
    """``MiniGridEnv.gen_obs()["image"]``: (7, 7, 3) uint8 ``[vx, vy, (object, colour, state)]``."""
    cells = _view_cells(state.grid, state.pos, state.dir)
    if see_through_walls:
        visible = jnp.ones((VIEW, VIEW), bool)
    else:
        visible = _process_vis(~_opaque(cells))
    image = jnp.where(visible[..., None], cells, jnp.uint8(0))
    held = jnp.where(state.carrying[0] > 0,
                     jnp.stack([state.carrying[0], state.carrying[1], 0]).astype(jnp.uint8),
                     jnp.array(EMPTY_CELL, jnp.uint8))
    return image.at[VIEW // 2, VIEW - 1].set(held)


def success_reward(time: jax.Array, params: EnvParams) -> jax.Array:
    """``MiniGridEnv._reward``: ``1 - 0.9 * step_count / max_steps``."""
    return (1.0 - 0.9 * time / params.max_steps_in_episode).astype(jnp.float32)


def act(state: EnvState, action: jax.Array, params: EnvParams) -> tuple[EnvState, jax.Array, jax.Array]:
    """``MiniGridEnv.step`` without the observation: (next state, reward, terminated)."""
    time = state.time + 1
    fwd = state.pos + DIR_TO_VEC[state.dir]
    fx, fy = jnp.clip(fwd[0], 0, GRID - 1), jnp.clip(fwd[1], 0, GRID - 1)
    front = state.grid[fx, fy].astype(jnp.int32)
    obj, color, door_state = front[0], front[1], front[2]
    empty = obj == EMPTY  # MiniGrid's ``fwd_cell is None``
    overlap = empty | (obj == GOAL) | (obj == LAVA) | (obj == FLOOR) | ((obj == DOOR) & (door_state == OPEN))
    hands_empty = state.carrying[0] == 0

    direction = jnp.where(action == LEFT, (state.dir + 3) % 4, jnp.where(action == RIGHT, (state.dir + 1) % 4,
                                                                           state.dir))
    forward = action == FORWARD
    pos = jnp.where(forward & overlap, fwd, state.pos)
    goal = forward & (obj == GOAL)
    lava = forward & (obj == LAVA)

    pickup = (action == PICKUP) & ((obj == KEY) | (obj == BALL) | (obj == BOX)) & hands_empty
    drop = (action == DROP) & empty & ~hands_empty
    toggle = (action == TOGGLE) & (obj == DOOR)
    has_key = (state.carrying[0] == KEY) & (state.carrying[1] == color)
    new_door_state = jnp.where(door_state == LOCKED, jnp.where(has_key, OPEN, LOCKED),
                               jnp.where(door_state == OPEN, CLOSED, OPEN))

    new_front = jnp.where(pickup, jnp.array(EMPTY_CELL, jnp.int32), front)
    new_front = jnp.where(drop, jnp.stack([state.carrying[0], state.carrying[1], 0]), new_front)
    new_front = jnp.where(toggle, jnp.stack([obj, color, new_door_state]), new_front)
    grid = state.grid.at[fx, fy].set(new_front.astype(jnp.uint8))
    carrying = jnp.where(pickup, jnp.stack([obj, color]), jnp.where(drop, jnp.zeros(2, jnp.int32), state.carrying))

    reward = jnp.where(goal, success_reward(time, params), jnp.float32(0.0))
    next_state = state.replace(grid=grid, pos=pos, dir=direction, carrying=carrying, time=time)
    return next_state, reward, goal | lava
