"""Seaquest-MinAtar written against gymnax's Environment API, with entity buffers sized by MinAtar's rules.

The game is Young & Tian's (2019) ``minatar/environments/seaquest.py`` (package ``minatar`` 1.0.15), rule for
rule and in its order: spawn, the player's action, friendly bullets, divers, enemy subs (they shoot), enemy
bullets, enemy fish, timers and oxygen.  It is checked against that package step by step with the spawns'
random draws aligned (``tests/test_seaquest.py``), terminal observations included.  gymnax's Seaquest keeps
every entity list in a 100-row buffer and compares 100x100 matrices; this one steps ~10x faster (README,
*MinAtar as published*).

**How big each list can get** (MinAtar's constants: enemy spawn interval S = 20 falling by one per surfacing to
1, move interval m = 5 falling by one every other surfacing to 2, divers every 30 steps moving every 6, a shot
every 5 steps, a sub's shot every 11):

- *Friendly bullets: 2.*  A bullet moves one cell per step from the sub's column, so it is in the list at the
  end of at most 9 steps; the shot timer allows one shot per 5 steps, so at most 2 are alive, and when the
  player fires at most 1 is (the one fired 10 steps ago has left).
- *Divers: 2.*  A diver spawned at step s first moves at s + 5, then every 6 steps, and leaves on its 10th
  move (at s + 59 at the latest); one spawns every 30 steps, so the list holds at most 2, the new one counted.
- *Enemies (fish and subs together): 31, buffer 32.*  An enemy spawned with move interval m first moves
  after m steps, then every m + 1 (or sooner once m falls), and leaves on its 10th move, so it is in the list
  at the spawn point of at most 10 m + 10 steps (60 for m = 5).  Spawns are S apart, with S and m both set
  by the number k of surfacings so far: S = max(1, 20 - k), m = max(2, 5 - k // 2).  The largest number of
  spawns still in the list at one spawn point, over every schedule of surfacings, is 31
  (:func:`enemy_bound`, an exhaustive search over that schedule; e.g. 29 spawns one step apart at m = 2 and
  2 older ones).  The lane rule (no spawn against an enemy moving the other way in its lane) only removes
  spawns.  Fish and subs share one buffer, each row tagged; a list's order is the order of spawning
  (:attr:`EnvState.e_seq`), which is all MinAtar's order-dependent rules look at.
- *Enemy bullets: no bound needed.*  They interact with nothing but the player, so two boolean 10x10 grids
  (moving right, moving left) hold them exactly; a shift moves them.  (Their count is at most the enemies'
  anyway: a sub first shoots 10 steps after spawning and a bullet lives at most 9 steps.)

Tests run random episodes of the ``minatar`` package and check that no list ever exceeds these bounds.
Every rule the lists need runs on vectors of the buffer's length: no KxK matrix.

One MinAtar quirk is kept: surfacing with 6 divers pays the oxygen bonus, sets the count to 0 and then
subtracts 1, so the count goes to -1 and the next surfacings cost nothing.  Surfacing with no diver ends
the episode without refilling the oxygen gauge (gymnax's Seaquest refills it first: one cell differs in
that terminal observation).

Random draws per step: one ``uniform(key, (5,))``: [enemy from the left (< 1/2), enemy is a sub (< 1/3),
the enemy's lane (1 + floor(8 u)), diver from the left (< 1/2), the diver's lane].  The cut-off is gymnax's:
``max_steps_in_episode`` 1,000, a truncation.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct
from gymnax.environments import environment, spaces

__all__ = ["Seaquest", "EnvState", "EnvParams", "enemy_bound", "MAX_ENEMIES", "MAX_F_BULLETS", "MAX_DIVERS"]

MAX_F_BULLETS = 2
MAX_DIVERS = 2
MAX_ENEMIES = 32  # >= enemy_bound() = 31

_MAX_OXYGEN = 200
_INIT_SPAWN = 20
_DIVER_SPAWN = 30
_INIT_MOVE = 5
_SHOT_COOL_DOWN = 5
_ENEMY_SHOT = 10
_DIVER_MOVE = 5
_COLS = jnp.arange(10)


def enemy_bound() -> int:
    """The most enemies in MinAtar's lists at one spawn point (the new one counted), over every schedule of
    surfacings: spawn s is still listed at step t when t - s <= 10 m(s) + 9; spawns are S(k) apart."""

    def spacing(k: int) -> int:
        return max(1, _INIT_SPAWN - k)

    def lifetime(k: int) -> int:
        return 10 * max(2, _INIT_MOVE - k // 2) + 9

    @functools.lru_cache(maxsize=None)
    def most(age: int, k: int) -> int:  # spawns listed from one `age` steps back (with ramp count k) backwards
        if age > lifetime(0):
            return 0
        return int(age <= lifetime(k)) + max(most(age + spacing(j), j) for j in range(k + 1))

    return max(most(0, k) for k in range(_INIT_SPAWN))


@struct.dataclass
class EnvState(environment.EnvState):
    sub_x: jax.Array
    sub_y: jax.Array
    sub_or: jax.Array  # True: facing right
    oxygen: jax.Array
    diver_count: jax.Array  # divers on board (MinAtar lets it reach -1 after a full rescue)
    f_bullets: jax.Array  # (MAX_F_BULLETS, 3) x, y, right; rows in list order
    f_alive: jax.Array  # (MAX_F_BULLETS,)
    divers: jax.Array  # (MAX_DIVERS, 4) x, y, right, move timer; rows in list order
    d_alive: jax.Array  # (MAX_DIVERS,)
    enemies: jax.Array  # (MAX_ENEMIES, 5) x, y, right, move timer, shot timer
    e_alive: jax.Array  # (MAX_ENEMIES,)
    e_sub: jax.Array  # (MAX_ENEMIES,) True: a sub, False: a fish
    e_seq: jax.Array  # (MAX_ENEMIES,) spawn number: each list's order
    e_next: jax.Array  # the next spawn number
    bullets_right: jax.Array  # (10, 10) bool [y, x]: enemy bullets moving right
    bullets_left: jax.Array  # (10, 10) bool
    e_spawn_speed: jax.Array
    e_spawn_timer: jax.Array
    d_spawn_timer: jax.Array
    move_speed: jax.Array
    ramp_index: jax.Array
    shot_timer: jax.Array
    surface: jax.Array
    terminal: jax.Array
    time: jax.Array


@struct.dataclass
class EnvParams(environment.EnvParams):
    ramping: bool = True  # MinAtar's Env(ramping=True)
    max_steps_in_episode: int = 1000  # gymnax's cut-off (a truncation); MinAtar has none


def _i32(x: Any) -> jax.Array:
    return jnp.asarray(x, jnp.int32)


def _step_dir(right: jax.Array) -> jax.Array:
    return jnp.where(right, 1, -1)


def _compact(alive: jax.Array, rows: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Two-row list: drop a dead first row (the second moves up), keeping the order."""
    shift = ~alive[0]
    rows = jnp.where(shift, jnp.stack([rows[1], rows[0]]), rows)
    return jnp.where(shift, jnp.stack([alive[1], False]), alive), rows


class Seaquest(environment.Environment[EnvState, EnvParams]):
    """MinAtar's Seaquest (all six actions ``n l u r d f``, its minimal set too), 10x10x10 float observations."""

    def __init__(self, use_minimal_action_set: bool = True):
        super().__init__()
        del use_minimal_action_set  # Seaquest's minimal action set is the full one
        self.obs_shape = (10, 10, 10)

    @property
    def default_params(self) -> EnvParams:
        return EnvParams()

    def reset_env(self, key: jax.Array, params: EnvParams) -> tuple[jax.Array, EnvState]:
        del key
        state = EnvState(
            sub_x=_i32(5), sub_y=_i32(0), sub_or=jnp.array(False), oxygen=_i32(_MAX_OXYGEN), diver_count=_i32(0),
            f_bullets=jnp.zeros((MAX_F_BULLETS, 3), jnp.int32), f_alive=jnp.zeros(MAX_F_BULLETS, bool),
            divers=jnp.zeros((MAX_DIVERS, 4), jnp.int32), d_alive=jnp.zeros(MAX_DIVERS, bool),
            enemies=jnp.zeros((MAX_ENEMIES, 5), jnp.int32), e_alive=jnp.zeros(MAX_ENEMIES, bool),
            e_sub=jnp.zeros(MAX_ENEMIES, bool), e_seq=jnp.zeros(MAX_ENEMIES, jnp.int32), e_next=_i32(0),
            bullets_right=jnp.zeros((10, 10), bool), bullets_left=jnp.zeros((10, 10), bool),
            e_spawn_speed=_i32(_INIT_SPAWN), e_spawn_timer=_i32(_INIT_SPAWN), d_spawn_timer=_i32(_DIVER_SPAWN),
            move_speed=_i32(_INIT_MOVE), ramp_index=_i32(0), shot_timer=_i32(0), surface=jnp.array(True),
            terminal=jnp.array(False), time=_i32(0),
        )
        return self.get_obs(state, params), state

    def step_env(self, key: jax.Array, state: EnvState, action: Any, params: EnvParams):
        u = jax.random.uniform(key, (5,))
        state = _spawn(state, u)
        state = _act(state, jnp.asarray(action, jnp.int32))
        state, reward = _friendly_bullets(state)
        state = _divers(state)
        state, r_subs, t_subs, shots = _enemies(state, subs=True)
        state, t_bullets = _enemy_bullets(state, *shots)
        state, r_fish, t_fish, _ = _enemies(state, subs=False)
        state, r_surface, t_timers = _timers(state, params)
        f_alive, f_bullets = _compact(state.f_alive, state.f_bullets)
        state = state.replace(f_alive=f_alive, f_bullets=f_bullets)
        terminal = t_subs | t_bullets | t_fish | t_timers
        state = state.replace(terminal=terminal, time=state.time + 1)
        reward = (reward + r_subs + r_fish + r_surface).astype(jnp.float32)
        return (jax.lax.stop_gradient(self.get_obs(state, params)), jax.lax.stop_gradient(state), reward, terminal,
                {"discount": self.discount(state, params)})

    def get_obs(self, state: EnvState, params: EnvParams | None = None, key: Any = None) -> jax.Array:
        """MinAtar's ``state()``: channels sub front, sub back, friendly bullet, trail, enemy bullet, fish, sub,
        oxygen gauge, diver gauge, diver; as float32."""
        del params, key
        e, d, f = state.enemies, state.divers, state.f_bullets
        # every drawn cell as one row: (x, y, channel, drawn?); off the board (a trail at x = -1) draws nothing
        x = jnp.concatenate([jnp.stack([state.sub_x, state.sub_x - _step_dir(state.sub_or)]), f[:, 0], e[:, 0],
                             e[:, 0] - _step_dir(e[:, 2] > 0), d[:, 0], d[:, 0] - _step_dir(d[:, 2] > 0)])
        y = jnp.concatenate([jnp.stack([state.sub_y, state.sub_y]), f[:, 1], e[:, 1], e[:, 1], d[:, 1], d[:, 1]])
        channel = jnp.concatenate([jnp.array([0, 1]), jnp.full(MAX_F_BULLETS, 2), jnp.where(state.e_sub, 6, 5),
                                   jnp.full(MAX_ENEMIES, 3), jnp.full(MAX_DIVERS, 9), jnp.full(MAX_DIVERS, 3)])
        drawn = jnp.concatenate([jnp.ones(2, bool), state.f_alive, state.e_alive, state.e_alive, state.d_alive,
                                 state.d_alive])
        cell = jnp.where(drawn & (x >= 0) & (x <= 9), (y * 10 + x) * 10 + channel, 1000)
        obs = jnp.zeros(1000, bool).at[cell].set(True, mode="drop").reshape(10, 10, 10)
        bottom = (_COLS == 9)[:, None]
        oxygen = bottom & (_COLS < jnp.maximum(state.oxygen, 0) * 10 // _MAX_OXYGEN)[None, :]
        gauge = bottom & ((_COLS >= 9 - state.diver_count) & (_COLS < 9))[None, :]
        bullets = state.bullets_right | state.bullets_left
        obs = obs.at[:, :, jnp.array([4, 7, 8])].set(jnp.stack([bullets, oxygen, gauge], axis=-1))
        return obs.astype(jnp.float32)

    def is_terminated(self, state: EnvState, params: EnvParams) -> jax.Array:
        return state.terminal

    @property
    def name(self) -> str:
        return "Seaquest-MinAtar"

    @property
    def num_actions(self) -> int:
        return 6

    def action_space(self, params: EnvParams | None = None) -> spaces.Discrete:
        return spaces.Discrete(6)

    def observation_space(self, params: EnvParams) -> spaces.Box:
        return spaces.Box(0, 1, self.obs_shape)


def _spawn(state: EnvState, u: jax.Array) -> EnvState:
    """MinAtar's ``_spawn_enemy`` and ``_spawn_diver`` when their timers are up."""
    right, is_sub, lane = u[0] < 0.5, u[1] < 1 / 3, 1 + jnp.floor(u[2] * 8).astype(jnp.int32)
    e = state.enemies
    blocked = jnp.any(state.e_alive & (e[:, 1] == lane) & ((e[:, 2] > 0) != right))
    spawn = (state.e_spawn_timer == 0) & ~blocked
    slot = jnp.argmin(state.e_alive)  # the first free row
    row = jnp.stack([jnp.where(right, 0, 9), lane, right.astype(jnp.int32), state.move_speed, _i32(_ENEMY_SHOT)])
    put = spawn & (jnp.arange(MAX_ENEMIES) == slot)
    state = state.replace(
        enemies=jnp.where(put[:, None], row[None, :], e), e_alive=state.e_alive | put,
        e_sub=jnp.where(put, is_sub, state.e_sub), e_seq=jnp.where(put, state.e_next, state.e_seq),
        e_next=state.e_next + spawn,
        e_spawn_timer=jnp.where(state.e_spawn_timer == 0, state.e_spawn_speed, state.e_spawn_timer),
    )
    d_right, d_lane = u[3] < 0.5, 1 + jnp.floor(u[4] * 8).astype(jnp.int32)
    d_spawn = state.d_spawn_timer == 0
    d_put = d_spawn & (jnp.arange(MAX_DIVERS) == jnp.sum(state.d_alive))  # appended after the live rows
    d_row = jnp.stack([jnp.where(d_right, 0, 9), d_lane, d_right.astype(jnp.int32), _i32(_DIVER_MOVE)])
    return state.replace(divers=jnp.where(d_put[:, None], d_row[None, :], state.divers), d_alive=state.d_alive | d_put,
                         d_spawn_timer=jnp.where(d_spawn, _DIVER_SPAWN, state.d_spawn_timer))


def _act(state: EnvState, action: jax.Array) -> EnvState:
    """Fire (``f``, when the shot timer allows) or move (``l u r d``); ``n`` and a blocked ``f`` do nothing."""
    fire = (action == 5) & (state.shot_timer == 0)
    put = fire & (jnp.arange(MAX_F_BULLETS) == jnp.sum(state.f_alive))
    row = jnp.stack([state.sub_x, state.sub_y, state.sub_or.astype(jnp.int32)])
    x = jnp.where(action == 1, jnp.maximum(state.sub_x - 1, 0),
                  jnp.where(action == 3, jnp.minimum(state.sub_x + 1, 9), state.sub_x))
    y = jnp.where(action == 2, jnp.maximum(state.sub_y - 1, 0),
                  jnp.where(action == 4, jnp.minimum(state.sub_y + 1, 8), state.sub_y))
    return state.replace(
        f_bullets=jnp.where(put[:, None], row[None, :], state.f_bullets), f_alive=state.f_alive | put,
        shot_timer=jnp.where(fire, _SHOT_COOL_DOWN, state.shot_timer), sub_x=x, sub_y=y,
        sub_or=jnp.where(action == 1, False, jnp.where(action == 3, True, state.sub_or)),
    )


def _first(mask: jax.Array, seq: jax.Array, newest: bool) -> jax.Array:
    """One-hot of the oldest (or newest) row of ``mask`` by spawn number; all False when ``mask`` is empty."""
    key = jnp.where(mask, seq if newest else -seq, jnp.iinfo(jnp.int32).min)
    return mask & (jnp.arange(mask.shape[0]) == jnp.argmax(key))


def _friendly_bullets(state: EnvState) -> tuple[EnvState, jax.Array]:
    """Each bullet, newest first, moves; off the board it goes, else it kills the first fish, else the first sub,
    in its cell."""
    b, alive = state.f_bullets, state.f_alive
    e, e_alive = state.enemies, state.e_alive
    reward = jnp.float32(0)
    bx = b[:, 0] + _step_dir(b[:, 2] > 0)
    for i in reversed(range(MAX_F_BULLETS)):
        live = alive[i] & (bx[i] >= 0) & (bx[i] <= 9)
        here = e_alive & (e[:, 0] == bx[i]) & (e[:, 1] == b[i, 1]) & live
        fish = _first(here & ~state.e_sub, state.e_seq, newest=False)
        sub = _first(here & state.e_sub, state.e_seq, newest=False) & ~jnp.any(fish)
        hit = fish | sub
        e_alive = e_alive & ~hit
        reward = reward + jnp.any(hit)
        alive = alive.at[i].set(live & ~jnp.any(hit))
    return state.replace(f_bullets=b.at[:, 0].set(bx), f_alive=alive, e_alive=e_alive), reward


def _divers(state: EnvState) -> EnvState:
    """Each diver, newest first: picked up in the sub's cell (fewer than 6 on board), else moves when its timer
    is up and is picked up if it moves into the sub's cell."""
    d, alive, count = state.divers, state.d_alive, state.diver_count
    rows = []
    for i in reversed(range(MAX_DIVERS)):
        x, y, right, timer = d[i, 0], d[i, 1], d[i, 2] > 0, d[i, 3]
        at_sub = (x == state.sub_x) & (y == state.sub_y) & (count < 6)
        moves = ~at_sub & (timer == 0)
        x = jnp.where(moves, x + _step_dir(right), x)
        left_board = moves & ((x < 0) | (x > 9))
        picked = at_sub | (moves & ~left_board & (x == state.sub_x) & (y == state.sub_y) & (count < 6))
        picked = picked & alive[i]
        count = count + picked
        alive = alive.at[i].set(alive[i] & ~picked & ~left_board)
        rows.append(jnp.stack([x, y, d[i, 2], jnp.where(moves, _DIVER_MOVE, jnp.maximum(timer - 1, 0))]))
    alive, d = _compact(alive, jnp.stack(rows[::-1]))
    return state.replace(divers=d, d_alive=alive, diver_count=count)


def _enemies(state: EnvState, subs: bool):
    """MinAtar's loop over the enemy subs (``subs``) or the fish: each, newest first, ends the game in the sub's
    cell, moves when its timer is up (leaving the board, or ending the game in the sub's cell, or taking the first
    friendly bullet in its new cell), and a sub shoots when its shot timer is up."""
    e, alive = state.enemies, state.e_alive
    mine = alive & (state.e_sub if subs else ~state.e_sub)
    x, y, right, timer, shot = e[:, 0], e[:, 1], e[:, 2] > 0, e[:, 3], e[:, 4]
    at_sub = lambda x: (x == state.sub_x) & (y == state.sub_y)  # noqa: E731
    terminal = jnp.any(mine & at_sub(x))
    moves = mine & (timer == 0)
    x = jnp.where(moves, x + _step_dir(right), x)
    left_board = moves & ((x < 0) | (x > 9))
    terminal = terminal | jnp.any(moves & ~left_board & at_sub(x))
    candidates = moves & ~left_board & ~at_sub(x)
    b, b_alive = state.f_bullets, state.f_alive
    taken = jnp.zeros_like(alive)
    for i in range(MAX_F_BULLETS):  # the newest enemy in a bullet's cell takes it, the next newest the next one
        taker = _first(candidates & ~taken & (x == b[i, 0]) & (y == b[i, 1]) & b_alive[i], state.e_seq, newest=True)
        b_alive = b_alive.at[i].set(b_alive[i] & ~jnp.any(taker))
        taken = taken | taker
    timer = jnp.where(moves, state.move_speed, jnp.where(mine, jnp.maximum(timer - 1, 0), timer))
    shots = None
    if subs:
        fires = mine & (shot == 0)
        shot = jnp.where(fires, _ENEMY_SHOT, jnp.where(mine, jnp.maximum(shot - 1, 0), shot))
        shots = (fires, x, y, right)
    enemies = jnp.stack([x, y, e[:, 2], timer, shot], axis=1)
    state = state.replace(enemies=enemies, e_alive=alive & ~left_board & ~taken, f_alive=b_alive)
    return state, jnp.sum(taken).astype(jnp.float32), terminal, shots


def _enemy_bullets(state: EnvState, fires: jax.Array, x: jax.Array, y: jax.Array, right: jax.Array):
    """The subs' new bullets join the rest; each ends the game in the sub's cell, moves, and ends it there too."""

    def grid(mask):  # (10, 10) [y, x]: the new bullets of ``mask``; those off the board (x = -1 or 10) vanish
        cell = jnp.where(mask & (x >= 0) & (x <= 9), y * 10 + x, 100)
        return jnp.zeros(100, bool).at[cell].set(True, mode="drop").reshape(10, 10)

    br = state.bullets_right | grid(fires & right)
    bl = state.bullets_left | grid(fires & ~right)
    at_sub = lambda g: g[state.sub_y, state.sub_x]  # noqa: E731
    terminal = at_sub(br) | at_sub(bl)
    br = jnp.pad(br[:, :-1], ((0, 0), (1, 0)))  # one column right, the last falls off
    bl = jnp.pad(bl[:, 1:], ((0, 0), (0, 1)))
    terminal = terminal | at_sub(br) | at_sub(bl)
    return state.replace(bullets_right=br, bullets_left=bl), terminal


def _timers(state: EnvState, params: EnvParams):
    """Timers tick; out of oxygen ends the game; below the surface oxygen falls; surfacing with no diver ends the
    game, else pays the full-rescue bonus, refills oxygen, drops a diver and ramps the difficulty up."""
    ends = state.oxygen <= 0
    under = state.sub_y > 0
    surfacing = ~under & ~state.surface
    ends = ends | (surfacing & (state.diver_count == 0))
    rescue = surfacing & (state.diver_count != 0)
    full = state.diver_count == 6
    reward = jnp.where(rescue & full, state.oxygen * 10 // _MAX_OXYGEN, 0).astype(jnp.float32)
    ramp = rescue & params.ramping & ((state.e_spawn_speed > 1) | (state.move_speed > 2))
    return state.replace(
        e_spawn_timer=state.e_spawn_timer - (state.e_spawn_timer > 0),
        d_spawn_timer=state.d_spawn_timer - (state.d_spawn_timer > 0),
        shot_timer=state.shot_timer - (state.shot_timer > 0),
        oxygen=jnp.where(under, state.oxygen - 1, jnp.where(rescue, _MAX_OXYGEN, state.oxygen)),
        surface=jnp.where(under, False, state.surface | rescue),
        diver_count=jnp.where(rescue, jnp.where(full, 0, state.diver_count) - 1, state.diver_count),
        move_speed=state.move_speed - (ramp & (state.move_speed > 2) & (state.ramp_index % 2 == 1)),
        e_spawn_speed=state.e_spawn_speed - (ramp & (state.e_spawn_speed > 1)),
        ramp_index=state.ramp_index + ramp,
    ), reward, ends
