"""Each task's layout generator, ``_gen_grid`` of its ``minigrid`` env, drawn from the same distribution.

The package draws with numpy and rejection sampling (``place_obj`` retries a
random cell of a rectangle until it is empty and not the agent's); a uniform
draw over the cells that pass is the same distribution, and that is what
:func:`_uniform_cell` does.  Each generator returns ``(grid, pos, dir, marks)``
(see :class:`~mtdqn.tasks.minigrid.core.EnvState`).

Every random number a layout needs comes from one ``jax.random.bits`` call
(:func:`_draws`; MultiRoom: one per room-placement attempt, and one for the
rest): gymnax's ``step`` computes a reset at every step (and keeps
it where an episode ended), and each ``jax.random.randint``, ``split`` or
``permutation`` call is its own threefry hash to compile and run.  One call
per layout made a MemoryS11 reset compile in 0.25 s instead of 1.0 s and run
in ~1/4 the time (16 envs, XLA:CPU).  An integer in [lo, hi) is a draw modulo
hi - lo: its bias, under (hi - lo) / 2**32, is far below what any test of the
layouts could see.
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


def _draws(key: jax.Array, n: int) -> jax.Array:
    """(n,) uint32 uniform draws from one threefry call: every random number one layout needs."""
    return jax.random.bits(key, (n,), jnp.uint32)


def _between(bits: jax.Array, lo, hi) -> jax.Array:
    """int32 in [lo, hi) from uniform uint32 ``bits`` (``randint``'s range; bias under (hi - lo) / 2**32)."""
    span = jnp.maximum(jnp.asarray(hi, jnp.int32) - lo, 1).astype(jnp.uint32)
    return (lo + (bits % span).astype(jnp.int32)).astype(jnp.int32)


def _shuffled(bits: jax.Array, values: jax.Array) -> jax.Array:
    """``values`` in a uniformly random order: sorted by one uint32 draw each (ties: probability ~n**2 / 2**33)."""
    return values[jnp.argsort(bits)]


def _uniform_cell(bits: jax.Array, allowed: jax.Array) -> jax.Array:
    """(x, y) drawn uniformly from the True cells of ``allowed`` (GRID, GRID): ``place_obj``'s rejection sampling."""
    running = jnp.cumsum(allowed.reshape(-1), dtype=jnp.int32)  # one draw, not a Gumbel per cell: resets run every step
    nth = _between(bits, 0, running[-1])
    flat = jnp.argmax(running > nth)
    return jnp.stack([flat // GRID, flat % GRID]).astype(jnp.int32)


def _free(grid: jax.Array) -> jax.Array:
    return grid[..., 0] == EMPTY


def _put(grid: jax.Array, xy: jax.Array, value: jax.Array) -> jax.Array:
    return grid.at[xy[0], xy[1]].set(value)


def doorkey(key: jax.Array, size: int):
    """``DoorKeyEnv._gen_grid``: a wall at a random column, a locked yellow door in it, the key and agent left of it."""
    b_split, b_agent, b_dir, b_door, b_key = _draws(key, 5)
    grid = _wall_rect(base_grid(size, size), 0, 0, size, size)
    grid = _put(grid, jnp.array([size - 2, size - 2]), cell(GOAL, COLORS["green"]))
    split = _between(b_split, 2, size - 2)
    grid = jnp.where(((_XS == split) & (_YS < size))[..., None], cell(WALL, COLORS["grey"]), grid)
    left = _rect(0, 0, split, size) & _free(grid)
    pos = _uniform_cell(b_agent, left)
    direction = _between(b_dir, 0, 4)
    door_y = _between(b_door, 1, size - 2)
    grid = _put(grid, jnp.stack([split, door_y]), cell(DOOR, COLORS["yellow"], LOCKED))
    not_agent = ~((_XS == pos[0]) & (_YS == pos[1]))
    key_pos = _uniform_cell(b_key, left & not_agent)
    grid = _put(grid, key_pos, cell(KEY, COLORS["yellow"]))
    return grid, pos, direction, _NO_MARKS


def lavagap(key: jax.Array, size: int):
    """``LavaGapEnv._gen_grid``: a lava column with one gap between the agent (1, 1) and the goal."""
    b_x, b_y = _draws(key, 2)
    grid = _wall_rect(base_grid(size, size), 0, 0, size, size)
    grid = _put(grid, jnp.array([size - 2, size - 2]), cell(GOAL, COLORS["green"]))
    gap_x = _between(b_x, 2, size - 2)
    gap_y = _between(b_y, 1, size - 1)
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


def simple_crossing(key: jax.Array, size: int, crossings: int):
    """``CrossingEnv._gen_grid`` with walls: ``crossings`` wall rivers, one opening each on a random path."""
    grid = _wall_rect(base_grid(size, size), 0, 0, size, size)
    grid = _put(grid, jnp.array([size - 2, size - 2]), cell(GOAL, COLORS["green"]))
    places = jnp.arange(2, size - 2, 2)  # rivers = [(v, i) for i in places] + [(h, j) for j in places]
    m = places.shape[0]
    bits = _draws(key, 2 * m + 3 * crossings)  # the rivers' order, the path's order, (i, j) of each opening
    b_rivers, b_path, b_open = bits[:2 * m], bits[2 * m:2 * m + crossings], bits[2 * m + crossings:]
    chosen = _shuffled(b_rivers, jnp.arange(2 * m))[:crossings]  # shuffle, keep the first ``crossings``
    vertical = jnp.any(chosen[None, :] == jnp.arange(m)[:, None], axis=1)  # (m,) a wall at x = places[p]
    horizontal = jnp.any(chosen[None, :] == m + jnp.arange(m)[:, None], axis=1)  # a wall at y = places[p]
    inner = (_XS >= 1) & (_XS < size - 1) & (_YS >= 1) & (_YS < size - 1)
    cols = jnp.any((_XS[..., None] == places[None, None, :]) & vertical[None, None, :], axis=-1)
    rows = jnp.any((_YS[..., None] == places[None, None, :]) & horizontal[None, None, :], axis=-1)
    grid = jnp.where((inner & (cols | rows))[..., None], cell(WALL, COLORS["grey"]), grid)
    # limits_v = [0] + sorted(rivers_v) + [size - 1], padded with size - 1 past the last river
    limits_v = jnp.concatenate([jnp.zeros(1, jnp.int32), jnp.sort(jnp.where(vertical, places, size - 1))])
    limits_h = jnp.concatenate([jnp.zeros(1, jnp.int32), jnp.sort(jnp.where(horizontal, places, size - 1))])
    limits_v = jnp.concatenate([limits_v, jnp.full(1, size - 1, jnp.int32)])
    limits_h = jnp.concatenate([limits_h, jnp.full(1, size - 1, jnp.int32)])
    n_v = jnp.sum(vertical)
    path = _shuffled(b_path, jnp.arange(crossings) < n_v)  # True: cross a vertical river (h)
    room_i = room_j = jnp.int32(0)
    for step in range(crossings):
        across = path[step]
        i = jnp.where(across, limits_v[room_i + 1],
                      _between(b_open[2 * step], limits_v[room_i] + 1, limits_v[room_i + 1]))
        j = jnp.where(across, _between(b_open[2 * step + 1], limits_h[room_j] + 1, limits_h[room_j + 1]),
                      limits_h[room_j + 1])
        grid = _put(grid, jnp.stack([i, j]), cell(EMPTY))
        room_i, room_j = room_i + across, room_j + ~across
    return grid, jnp.array([1, 1], jnp.int32), jnp.int32(0), _NO_MARKS


def red_blue_doors(key: jax.Array, size: int):
    """``RedBlueDoorEnv._gen_grid``: a room amid a 2*size x size grid, a red door left, a blue door right."""
    b_agent, b_dir, b_red, b_blue = _draws(key, 4)
    grid = _wall_rect(base_grid(2 * size, size), 0, 0, 2 * size, size)
    grid = _wall_rect(grid, size // 2, 0, size, size)
    pos = _uniform_cell(b_agent, _rect(size // 2, 0, size, size) & _free(grid))
    direction = _between(b_dir, 0, 4)
    red = jnp.stack([jnp.int32(size // 2), _between(b_red, 1, size - 1)])
    blue = jnp.stack([jnp.int32(size // 2 + size - 1), _between(b_blue, 1, size - 1)])
    grid = _put(grid, red, cell(DOOR, COLORS["red"], CLOSED))
    grid = _put(grid, blue, cell(DOOR, COLORS["blue"], CLOSED))
    return grid, pos, direction, jnp.stack([red, blue]).astype(jnp.int32)


def memory(key: jax.Array, size: int):
    """``MemoryEnv._gen_grid`` (fixed hallway length): a green key or ball to remember, both at the hallway's end."""
    b_x, b_start, b_pair = _draws(key, 3)
    grid = _wall_rect(base_grid(size, size), 0, 0, size, size)
    mid, upper, lower, end = size // 2, size // 2 - 2, size // 2 + 2, size - 3
    walls = ((_XS >= 1) & (_XS <= 4) & ((_YS == upper) | (_YS == lower)))  # start room
    walls |= (_XS == 4) & ((_YS == upper + 1) | (_YS == lower - 1))
    walls |= (_XS >= 5) & (_XS < end) & ((_YS == upper + 1) | (_YS == lower - 1))  # horizontal hallway
    walls |= ((_XS == end) & (_YS != mid) | (_XS == end + 2)) & (_YS < size)  # vertical hallway
    grid = jnp.where(walls[..., None], cell(WALL, COLORS["grey"]), grid)
    pos = jnp.stack([_between(b_x, 1, end + 1), jnp.int32(mid)])
    start_is_key = _between(b_start, 0, 2) == 0  # _rand_elem([Key, Ball])
    first_is_ball = _between(b_pair, 0, 2) == 0  # _rand_elem([[Ball, Key], [Key, Ball]])
    green_key, green_ball = cell(KEY, COLORS["green"]), cell(BALL, COLORS["green"])
    grid = _put(grid, jnp.array([1, mid - 1]), jnp.where(start_is_key, green_key, green_ball))
    pos0, pos1 = jnp.array([end + 1, mid - 2]), jnp.array([end + 1, mid + 2])
    grid = _put(grid, pos0, jnp.where(first_is_ball, green_ball, green_key))
    grid = _put(grid, pos1, jnp.where(first_is_ball, green_key, green_ball))
    near0, near1 = pos0 + jnp.array([0, 1]), pos1 - jnp.array([0, 1])
    first_matches = start_is_key != first_is_ball
    success = jnp.where(first_matches, near0, near1)
    failure = jnp.where(first_matches, near1, near0)
    return grid, pos.astype(jnp.int32), jnp.int32(0), jnp.stack([success, failure]).astype(jnp.int32)


MULTIROOM_GRID = 25  # MultiRoomEnv(width=25, height=25)
ROOM = 4  # MultiRoom-N2-S4: minSz = maxRoomSize = 4
_TRIES = 8  # _placeRoom: ``for i in range(0, 8)`` attempts at the next room


def _two_rooms(key: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``MultiRoomEnv._gen_grid``'s room placement for two 4x4 rooms: (room 1 top, room 2 top, door).

    The package draws room 1's corner (= its entry door) in [0, 23)^2 and, if
    it fits, up to 8 exits (a wall other than its entry wall, a cell on it) and
    room 2 behind each until one fits the 25x25 grid; with none, it starts
    again.  Drawing the 8 tries at once and taking the first that fits is the
    same distribution; the loop runs until an attempt succeeds.
    """
    def attempt(k):
        bits = _draws(k, 2 + 3 * _TRIES)
        b_top, (b_wall, b_off, b_shift) = bits[:2], bits[2:].reshape(3, _TRIES)
        top1 = _between(b_top, 0, MULTIROOM_GRID - 2)
        fits1 = (top1[0] + ROOM <= MULTIROOM_GRID) & (top1[1] + ROOM < MULTIROOM_GRID)
        wall = jnp.array([0, 1, 3])[_between(b_wall, 0, 3)]  # sorted({0,1,2,3} - {2})
        off = _between(b_off, 1, ROOM - 1)  # exit door's cell on the wall
        shift = _between(b_shift, 0, 2)  # rand_int(y - sizeY + 2, y) - (y - 2)
        right, south = wall == 0, wall == 1
        door_x = jnp.where(right, top1[0] + ROOM - 1, top1[0] + off)
        door_y = jnp.where(right, top1[1] + off, jnp.where(south, top1[1] + ROOM - 1, top1[1]))
        top2_x = jnp.where(right, door_x, door_x - 2 + shift)
        top2_y = jnp.where(right, door_y - 2 + shift, jnp.where(south, door_y, door_y - ROOM + 1))
        fits2 = ((top2_x >= 0) & (top2_y >= 0) & (top2_x + ROOM <= MULTIROOM_GRID)
                 & (top2_y + ROOM < MULTIROOM_GRID))
        first = jnp.argmax(fits2)
        top2 = jnp.stack([top2_x[first], top2_y[first]])
        door = jnp.stack([door_x[first], door_y[first]])
        return fits1 & jnp.any(fits2), top1, top2, door

    def not_done(carry):
        return ~carry[1]

    def again(carry):
        k, _, *_ = carry
        k, k_try = jax.random.split(k)
        ok, top1, top2, door = attempt(k_try)
        return k, ok, top1, top2, door

    zero = jnp.zeros(2, jnp.int32)
    _, _, top1, top2, door = jax.lax.while_loop(not_done, again, (key, jnp.asarray(False), zero, zero, zero))
    return top1, top2, door


def multiroom(key: jax.Array):
    """``MultiRoomEnv._gen_grid`` for MultiRoom-N2-S4: two 4x4 rooms joined by a closed door of a random colour.

    The package places the rooms in a 25x25 grid; we move them to the corner
    of ours (their bounding box starts at (0, 0)) and fill everything outside
    the rooms with wall.  Nothing outside the rooms can be seen from inside them
    (walls and the closed or open door bound every see-through cell), so the
    observations are the package's (tested).
    """
    k_rooms, k_rest = jax.random.split(key)
    b_color, b_agent, b_dir, b_goal = _draws(k_rest, 4)
    top1, top2, door = _two_rooms(k_rooms)
    corner = jnp.minimum(top1, top2)
    top1, top2, door = top1 - corner, top2 - corner, door - corner
    inner1 = _rect(top1[0] + 1, top1[1] + 1, ROOM - 2, ROOM - 2)
    inner2 = _rect(top2[0] + 1, top2[1] + 1, ROOM - 2, ROOM - 2)
    grid = jnp.where((inner1 | inner2)[..., None], cell(EMPTY), cell(WALL, COLORS["grey"]))
    grid = _put(grid, door, cell(DOOR, _between(b_color, 0, 6), CLOSED))
    pos = _uniform_cell(b_agent, inner1)
    direction = _between(b_dir, 0, 4)
    grid = _put(grid, _uniform_cell(b_goal, inner2), cell(GOAL, COLORS["green"]))
    return grid, pos, direction, _NO_MARKS
