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

from mtdqn.analysis.ranges import RETURN_BOUNDS
from mtdqn.tasks.minigrid import SPECS, EnvState, MiniGrid
from mtdqn.tasks.minigrid.core import GRID

gym = pytest.importorskip("gymnasium")
minigrid = pytest.importorskip("minigrid")  # registers the MiniGrid-* ids
from minigrid.core.world_object import Door  # noqa: E402

WALL_CELL = np.array([2, 5, 0], np.uint8)
EMPTY_CELL = (1, 0, 0)  # what the package's Grid.encode writes for an empty (None) cell
ACTIONS = 7


def make_reference(name: str):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return gym.make(name).unwrapped


def _rooms(u) -> np.ndarray | None:
    """MultiRoom: (rooms, 4) [top x, top y, size x, size y]; None for the other tasks."""
    if not getattr(u, "rooms", None):
        return None
    return np.array([[*r.top, *r.size] for r in u.rooms])


def encode(grid) -> np.ndarray:
    """``grid.encode()``, the package's whole-grid encoding (width, height, 3), from each object's own
    ``encode()`` as the package does, without its Python loop over every cell (~3x slower on MultiRoom's 25x25
    grid; test_reset_observation_matches_the_package checks the two agree)."""
    cells = [EMPTY_CELL if v is None else v.encode() for v in grid.grid]  # row-major: grid[y * width + x]
    return np.array(cells, np.uint8).reshape(grid.height, grid.width, 3).transpose(1, 0, 2)


def to_state(u) -> dict[str, np.ndarray]:
    """The package env's state (grid, agent, carrying, step count) as our EnvState's arrays.

    MultiRoom's rooms are moved to our grid's corner and everything outside
    them is wall, as our generator lays them out (layouts.multiroom).
    """
    enc = encode(u.grid)  # (width, height, 3), None -> (1, 0, 0)
    grid = np.broadcast_to(WALL_CELL, (GRID, GRID, 3)).copy()
    rooms = _rooms(u)
    offset = np.zeros(2, int)
    if rooms is None:
        grid[: enc.shape[0], : enc.shape[1]] = enc
    else:
        offset = rooms[:, :2].min(axis=0)
        for x, y, w, h in rooms:
            grid[x - offset[0]: x + w - offset[0], y - offset[1]: y + h - offset[1]] = enc[x: x + w, y: y + h]
    marks = np.full((2, 2), -1, np.int32)
    if hasattr(u, "red_door"):
        marks[:] = [_find_door(u, "red"), _find_door(u, "blue")]
    if hasattr(u, "success_pos"):
        marks[:] = [u.success_pos, u.failure_pos]
    carrying = np.zeros(2, np.int32) if u.carrying is None else np.array(u.carrying.encode()[:2], np.int32)
    return {"grid": grid, "pos": (np.array(u.agent_pos) - offset).astype(np.int32), "dir": np.int32(u.agent_dir),
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
        u.gen_obs = lambda: {"image": None}  # the step that moves the episode on: its observation is not read
        _, _, term, _, _ = u.step(plan.pop(0) if plan else int(rng.integers(0, ACTIONS)))
        del u.gen_obs
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


@pytest.mark.slow
@pytest.mark.parametrize("name", DONE_TASKS)
def test_every_action_matches_the_package(name):
    states, obs, reward, term, trunc = collect(name, 1000, seed=1)
    j_obs, j_reward, j_term, j_trunc = jax_outcomes(MiniGrid(SPECS[name]), states)
    bad = np.argwhere(np.any(np.asarray(j_obs) != obs, axis=(2, 3, 4)))
    assert bad.size == 0, f"observation differs at (state, action) {bad[:5].tolist()}"
    np.testing.assert_allclose(np.asarray(j_reward), reward, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(j_term), term)
    np.testing.assert_array_equal(np.asarray(j_trunc), trunc)
    # the states are not trivial: some actions succeed, some end without reward, the time limit is reached
    failing = ("LavaGap", "DistShift", "RedBlueDoors", "Memory")  # lava, the blue door first, the wrong object
    assert (reward > 0).any() and trunc.any()
    assert (term & (reward == 0)).any() == any(task in name for task in failing)
    if name == "MiniGrid-DoorKey-6x6-v0":
        assert (np.asarray(states.carrying[:, 0]) > 0).mean() > 0.05  # a key in hand


@pytest.mark.parametrize("name", DONE_TASKS)
def test_reset_observation_matches_the_package(name, n=50):
    """The observation our env gives for a converted reset state is the package's reset observation."""
    u, env = make_reference(name), MiniGrid(SPECS[name])
    states, theirs = [], []
    for seed in range(n):
        obs, _ = u.reset(seed=seed)
        np.testing.assert_array_equal(encode(u.grid), u.grid.encode())  # to_state's encoding is the package's
        states.append(to_state(u))
        theirs.append(obs["image"])
    np.testing.assert_array_equal(np.asarray(jax.jit(jax.vmap(env.get_obs))(stack(states))), np.stack(theirs))


def _region(obj: np.ndarray, start: tuple[int, int]) -> int:
    """How many cells the agent's start reaches without crossing a wall or a door (4-neighbour flood fill)."""
    seen, todo = {start}, [start]
    while todo:
        x, y = todo.pop()
        for nxt in ((x + 1, y), (x - 1, y), (x, y + 1), (x, y - 1)):
            if nxt not in seen and 0 <= nxt[0] < obj.shape[0] and 0 <= nxt[1] < obj.shape[1] \
                    and obj[nxt] not in (2, 4):  # minigrid's OBJECT_TO_IDX: wall 2, door 4
                seen.add(nxt)
                todo.append(nxt)
    return len(seen)


def _features(s: dict[str, np.ndarray], name: str) -> list[tuple[str, object]]:
    """What a layout is made of, as (feature, value) items whose supports are small enough to cover.

    ``agent``: start cell and direction; ``objects``: every cell that is
    neither wall nor empty (doors with their colour and state, keys, balls,
    goal, lava); ``walls``: the wall cells, except for SimpleCrossing where the
    walls are read as which rivers there are and, per river, its opening;
    ``region``: the size of the room the agent starts in (walls and doors bound it), the one feature that
    reads the agent's start and the walls together (an agent started on the wrong side of DoorKey's wall
    passes the others).
    """
    grid = s["grid"]
    obj = grid[..., 0]
    start = (int(s["pos"][0]), int(s["pos"][1]))
    items = [("agent", (tuple(s["pos"]), int(s["dir"]))), ("marks", s["marks"].tobytes()),
             ("region", _region(obj, start))]
    others = np.argwhere((obj != 1) & (obj != 2))
    items.append(("objects", tuple((x, y, *grid[x, y]) for x, y in others)))
    walls = obj == 2
    if "Crossing" not in name:
        return items + [("walls", walls.tobytes())]
    inner = walls[1:8, 1:8]
    cols = [x + 1 for x in range(7) if inner[x].sum() >= 6]
    rows = [y + 1 for y in range(7) if inner[:, y].sum() >= 6]
    items.append(("rivers", (tuple(cols), tuple(rows))))
    items += [("opening", ("x", x, int(np.argmin(walls[x, 1:8])) + 1)) for x in cols]
    items += [("opening", ("y", y, int(np.argmin(walls[1:8, y])) + 1)) for y in rows]
    return items


def _frequencies(layouts: list[dict[str, np.ndarray]], name: str) -> dict[str, collections.Counter]:
    counts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for s in layouts:
        for feature, value in _features(s, name):
            counts[feature][value] += 1
    return counts


@pytest.mark.slow
@pytest.mark.parametrize("name", DONE_TASKS)
def test_layouts_are_the_packages(name, n=3000):
    """Our resets and the package's: the same values of every feature, at frequencies within sampling error."""
    u = make_reference(name)
    u.gen_obs = lambda: {"image": None}  # only the layout is read: no observation (over half of a reset's time)
    theirs = []
    for seed in range(n):
        u.reset(seed=seed)
        theirs.append(to_state(u))
    env = MiniGrid(SPECS[name])
    _, states = jax.jit(jax.vmap(env.reset, in_axes=(0, None)))(jax.random.split(jax.random.key(0), n),
                                                                  env.default_params)
    states = jax.tree.map(np.asarray, states)
    ours = [{k: getattr(states, k)[i] for k in ("grid", "pos", "dir", "marks")} for i in range(n)]
    a, b = _frequencies(ours, name), _frequencies(theirs, name)
    assert a.keys() == b.keys()
    for feature in a:
        only_ours = set(a[feature]) - set(b[feature])
        only_theirs = set(b[feature]) - set(a[feature])
        assert not only_ours, f"{feature}: we generate {len(only_ours)} values the package never did"
        assert not only_theirs, f"{feature}: {len(only_theirs)} of the package's values never generated"
        for value, count in b[feature].items():
            p, q = count / n, a[feature][value] / n
            # two-proportion z-test, pooled: the package's own frequency alone understates the spread whenever
            # its sample of a rare value came out low (3 of 3,000 where ~11 were expected failed the test once)
            pooled = (p + q) / 2
            se = np.sqrt(max(pooled * (1 - pooled), 1 / n) * 2 / n)
            assert abs(p - q) < 5 * se, f"{feature}={value!r}: package {p:.4f}, ours {q:.4f}"


@pytest.mark.slow
@pytest.mark.parametrize("name", DONE_TASKS)
def test_shortest_plan_reaches_the_goal_in_both(name, episodes=5):
    """A shortest plan found in the package reaches the goal in ours at the same step, with the same reward."""
    u, env = make_reference(name), MiniGrid(SPECS[name])
    step = jax.jit(env.step_env)
    params, key = env.default_params, jax.random.key(0)
    for seed in range(episodes):
        u.reset(seed=seed)
        plan = shortest_plan(u)
        state = jax.tree.map(jnp.asarray, EnvState(**to_state(u)))
        for t, action in enumerate(plan):
            obs, reward, term, _, _ = u.step(action)
            j_obs, state, j_reward, j_term, _ = step(key, state, action, params)
            np.testing.assert_array_equal(np.asarray(j_obs), obs["image"])
            assert bool(j_term) == term and term == (t == len(plan) - 1)
        assert reward > 0 and float(j_reward) == pytest.approx(reward, abs=1e-6)


@pytest.mark.slow
def test_registered_tasks_run_in_one_compiled_program():
    """`mtdqn tasks` lists the seven; a task set of them resets and steps together; max_steps= sets the limit."""
    from mtdqn.tasks import list_tasks, make_task_set, parse_task, reset_envs, step_envs

    assert set(SPECS) <= {t.name for t in list_tasks()}
    assert all(RETURN_BOUNDS[name] == (0.0, 1.0) for name in SPECS)  # the report's return ranges know them
    task = parse_task("MiniGrid-DoorKey-6x6-v0:max_steps=50")
    assert task.max_episode_steps == 50 and task.make()[1].max_steps_in_episode == 50
    assert parse_task("MiniGrid-DoorKey-6x6-v0").max_episode_steps == 360
    task_set = make_task_set(["MiniGrid-DoorKey-6x6-v0", "MiniGrid-MultiRoom-N2-S4-v0"])
    assert task_set.obs_shape == (7, 7, 3) and task_set.num_actions == 7

    @jax.jit
    def reset_and_step(key):
        obs, states = reset_envs(task_set, key, 4)
        _, out = step_envs(task_set, states, jnp.full((2, 4), 2), key)
        return obs, out.obs

    obs, next_obs = reset_and_step(jax.random.key(0))
    assert obs.shape == next_obs.shape == (2, 4, 7, 7, 3) and obs.dtype == jnp.uint8


# one task per reward rule ("goal", "redblue", "memory"): the step is the same code for all seven (32 s for all
# seven in the suite, 2026-12-04; these three ~14 s)
@pytest.mark.parametrize("name", ["MiniGrid-LavaGapS7-v0", "MiniGrid-RedBlueDoors-6x6-v0", "MiniGrid-MemoryS11-v0"])
def test_step_returns_what_gymnax_step_does(name, n=64, steps=12):
    """Our ``step`` (one observe over the stepped and the kept state) and gymnax's ``Environment.step``: the same
    outputs, through terminations, truncations (a time limit of 5) and the resets after them."""
    from gymnax.environments import environment

    env = MiniGrid(SPECS[name])
    params = env.default_params.replace(max_steps_in_episode=5)

    @jax.jit  # both in one program: ~10% less compile time than two
    def ours_and_theirs(keys, state, actions, params):
        return (jax.vmap(env.step, in_axes=(0, 0, 0, None))(keys, state, actions, params),
                jax.vmap(lambda k, s, a, p: environment.Environment.step(env, k, s, a, p),
                         in_axes=(0, 0, 0, None))(keys, state, actions, params))

    key = jax.random.key(7)
    _, state = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(key, n), params)
    ended = terminated = 0
    for t in range(steps):
        k_act, k_step = jax.random.split(jax.random.fold_in(key, t))
        actions = jax.random.randint(k_act, (n,), 0, 7)
        keys = jax.random.split(k_step, n)
        a, b = ours_and_theirs(keys, state, actions, params)
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
        ended += int(np.asarray(a[3] | a[4]).sum())
        terminated += int(np.asarray(a[3]).sum())
        state = a[1]
    assert ended > n  # every env ended at least once on average: the resets were compared too
    if "Memory" not in name:  # random play ends LavaGap (lava) and RedBlueDoors (a door) within 12 steps
        assert terminated > 0  # terminations as well as the time limit
