"""Our JAX MiniGrid tasks against the ``minigrid`` package (3.2.0), the test oracle.

- Steps: from states reached in the package by random play (step count set at
  random, so truncation and the reward's time decay are covered), every one
  of the 7 actions gives the same observation, reward, terminated and
  truncated in both; the states are converted into ours by :func:`to_state`.
- Layouts: our generator's layouts against the package's over many resets.
- A shortest plan (breadth-first search over the package's states) reaches
  the goal in both after the same number of steps with the same reward.
"""

from __future__ import annotations

import collections
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mtdqn.tasks.minigrid import SPECS, EnvState, MiniGrid
from mtdqn.tasks.minigrid.core import GRID

gym = pytest.importorskip("gymnasium")
minigrid = pytest.importorskip("minigrid")  # registers the MiniGrid-* ids
from minigrid.core.world_object import Door  # noqa: E402

WALL_CELL = np.array([2, 5, 0], np.uint8)
ACTIONS = 7


def make_reference(name: str):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return gym.make(name).unwrapped


def _offset(u) -> tuple[int, int]:
    """Where the package's grid sits in ours: MultiRoom's rooms are moved to the corner (layouts.py)."""
    return (0, 0)


def to_state(u) -> dict[str, np.ndarray]:
    """The package env's state (grid, agent, carrying, step count) as our EnvState's arrays."""
    ox, oy = _offset(u)
    enc = u.grid.encode()  # (width, height, 3), None -> (1, 0, 0)
    grid = np.broadcast_to(WALL_CELL, (GRID, GRID, 3)).copy()
    w, h = enc.shape[0] - ox, enc.shape[1] - oy
    assert w <= GRID and h <= GRID, (w, h)
    grid[:w, :h] = enc[ox:, oy:]
    marks = np.full((2, 2), -1, np.int32)
    if hasattr(u, "red_door"):
        marks[:] = [_find_door(u, "red"), _find_door(u, "blue")]
    if hasattr(u, "success_pos"):
        marks[:] = [u.success_pos, u.failure_pos]
    carrying = np.zeros(2, np.int32) if u.carrying is None else np.array(u.carrying.encode()[:2], np.int32)
    return {"grid": grid, "pos": np.array(u.agent_pos, np.int32) - [ox, oy], "dir": np.int32(u.agent_dir),
            "carrying": carrying, "marks": marks, "time": np.int32(u.step_count)}


def _find_door(u, color: str) -> tuple[int, int]:
    for i, obj in enumerate(u.grid.grid):
        if isinstance(obj, Door) and obj.color == color:
            return i % u.grid.width, i // u.grid.width
    raise AssertionError(f"no {color} door")


def snapshot(u) -> tuple:
    """What a step can change, cheap to restore (a deepcopy of the env costs ~1 ms)."""
    doors = [(o, o.is_open, o.is_locked) for o in u.grid.grid if isinstance(o, Door)]
    return list(u.grid.grid), doors, tuple(u.agent_pos), u.agent_dir, u.carrying, u.step_count


def restore(u, snap: tuple) -> None:
    cells, doors, pos, direction, carrying, count = snap
    u.grid.grid = list(cells)
    for door, is_open, is_locked in doors:
        door.is_open, door.is_locked = is_open, is_locked
    u.agent_pos, u.agent_dir, u.carrying, u.step_count = pos, direction, carrying, count


def stack(states: list[dict[str, np.ndarray]]) -> EnvState:
    return EnvState(**{k: jnp.asarray(np.stack([s[k] for s in states])) for k in states[0]})


def _key(u) -> tuple:
    """A package state up to its step count, for the search."""
    cells = tuple((i, o.type, o.color, getattr(o, "is_open", 0), getattr(o, "is_locked", 0))
                  for i, o in enumerate(u.grid.grid) if o is not None and o.type != "wall")
    held = None if u.carrying is None else (u.carrying.type, u.carrying.color)
    return tuple(u.agent_pos), u.agent_dir, held, cells


def shortest_plan(u, actions=(0, 1, 2, 3, 5)) -> list[int]:
    """Breadth-first search over the package's own states: the fewest actions to a positive reward.

    Drop and done are left out (no task needs them: it keeps the search small);
    observations are switched off while searching (they cost ~0.2 ms a step).
    """
    root = snapshot(u)
    u.gen_obs = lambda: {"image": None}
    try:
        frontier, seen = collections.deque([(root, [])]), {_key(u)}
        while frontier:
            snap, plan = frontier.popleft()
            for a in actions:
                restore(u, snap)
                _, reward, term, _, _ = u.step(a)
                if term and reward > 0:
                    return plan + [a]
                if not term and _key(u) not in seen:
                    seen.add(_key(u))
                    frontier.append((snapshot(u), plan + [a]))
        raise AssertionError("no plan reaches the goal")
    finally:
        del u.gen_obs
        restore(u, root)


def collect(name: str, n: int, seed: int):
    """``n`` states from play in the package, and every action's outcome from each.

    Each episode follows a shortest plan for a random number of steps (so keys
    get carried and doors opened), then acts at random.  Returns (states,
    obs (n, 7, 7, 7, 3), reward (n, 7), terminated (n, 7), truncated (n, 7)).
    """
    u = make_reference(name)
    rng = np.random.default_rng(seed)
    states, outs, plan = [], [], []

    def new_episode():
        u.reset(seed=int(rng.integers(2**31)))
        full = shortest_plan(u)
        return full[: int(rng.integers(0, len(full) + 1))]

    plan = new_episode()
    while len(states) < n:
        u.step_count = int(rng.integers(0, u.max_steps))  # any count is reachable by waiting
        snap = snapshot(u)
        states.append(to_state(u))
        row = []
        for a in range(ACTIONS):
            restore(u, snap)
            obs, reward, term, trunc, _ = u.step(a)
            row.append((obs["image"], reward, term, trunc))
        outs.append(row)
        restore(u, snap)
        u.step_count = 0
        _, _, term, _, _ = u.step(plan.pop(0) if plan else int(rng.integers(0, ACTIONS)))
        if term or (not plan and rng.random() < 0.05):
            plan = new_episode()
    obs, reward, term, trunc = (np.array([[r[i] for r in row] for row in outs]) for i in range(4))
    return stack(states), obs, reward, term, trunc


def jax_outcomes(env: MiniGrid, states: EnvState):
    """Every action from every state: (obs (n, 7, 7, 7, 3), reward, terminated, truncated (n, 7))."""
    params = env.default_params
    key = jax.random.key(0)

    def one(state, action):
        obs, nxt, reward, term, _ = env.step_env(key, state, action, params)
        return obs, reward, term, env.is_truncated(nxt, params)

    all_actions = jax.vmap(one, in_axes=(None, 0))
    return jax.jit(jax.vmap(all_actions, in_axes=(0, None)))(states, jnp.arange(ACTIONS))


DONE_TASKS = list(SPECS)


@pytest.mark.parametrize("name", DONE_TASKS)
def test_every_action_matches_the_package(name):
    states, obs, reward, term, trunc = collect(name, 1000, seed=1)
    j_obs, j_reward, j_term, j_trunc = jax_outcomes(MiniGrid(SPECS[name]), states)
    bad = np.argwhere(np.any(np.asarray(j_obs) != obs, axis=(2, 3, 4)))
    assert bad.size == 0, f"observation differs at (state, action) {bad[:5].tolist()}"
    np.testing.assert_allclose(np.asarray(j_reward), reward, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(j_term), term)
    np.testing.assert_array_equal(np.asarray(j_trunc), trunc)
    # the states are not trivial: every task ends somewhere, and the step count reaches the time limit
    assert term.any() and trunc.any()
    if name == "MiniGrid-DoorKey-6x6-v0":
        assert (np.asarray(states.carrying[:, 0]) > 0).mean() > 0.05  # a key in hand
        assert (reward > 0).any()


def test_reset_observation_matches_the_package():
    """The observation our env gives for a converted reset state is the package's reset observation."""
    for name in DONE_TASKS:
        u, env = make_reference(name), MiniGrid(SPECS[name])
        for seed in range(50):
            obs, _ = u.reset(seed=seed)
            np.testing.assert_array_equal(np.asarray(jax.vmap(env.get_obs)(stack([to_state(u)]))[0]), obs["image"])
