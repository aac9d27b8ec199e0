"""Why no DQN variant solves RedBlueDoors-6x6: the view that opens the blue door cannot show the red one.

Every cell of the MT3 and MT5 studies (seven variants, 10 seeds each) ends RedBlueDoors at a greedy return of 0,
while a uniformly random policy scores 0.06.  Issue 19 asks to find out why before tuning.  The task: open the
red door (left wall), then the blue one (right wall); opening the blue one while the red one is closed ends
the episode at reward 0.
This script measures two facts behind that:

1. **The observation aliases the one decision that matters.**  Toggling the blue door takes facing it from the
   cell to its left; the red door is then behind the agent, outside MiniGrid's 7x7 forward view.  For each of
   ``--layouts`` layouts, the agent is put there and the observation compared with the red door open and
   closed, in our JAX task (:mod:`mtdqn.tasks.minigrid`) and in the ``minigrid`` package's (the control: facing
   the red door, the view does show whether it is open).  Identical views mean that a
   memoryless Q-network sees one state where "toggle" is worth the success reward (red open) or a 0 with
   termination (red closed), and its value there is the behaviour policy's mixture of the two.
2. **What training did** (with ``STUDY``, a study directory whose cells hold RedBlueDoors): the training
   episodes' mean length and return while epsilon decays and after, per variant over its seeds.  Near random,
   most episodes end at a door (the blue one opened with the red one closed, mostly); once epsilon is low
   they run to the 720-step time limit: the agent learned to open neither door.

    PYTHONPATH=$PWD python benchmarks/minigrid_aliasing.py [STUDY] [--layouts 200]

Needs the ``minigrid`` package (a test dependency) for the package's half of (1).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TASK = "MiniGrid-RedBlueDoors-6x6-v0"
RIGHT, LEFT = 0, 2  # MiniGrid's agent_dir: 0 right, 1 down, 2 left, 3 up


def ours_aliased(layouts: int) -> tuple[int, int]:
    """Of ``layouts`` resets of our task: (layouts where facing the blue door shows nothing of the red one,
    layouts where facing the red door shows whether it is open: the control, that the view encodes a door's
    state where it sees it)."""
    import jax
    import jax.numpy as jnp

    from mtdqn.tasks.minigrid.core import OPEN
    from mtdqn.tasks.minigrid.env import SPECS, MiniGrid

    env = MiniGrid(SPECS[TASK])
    reset, observe = jax.jit(env.reset_env), jax.jit(env.get_obs)
    aliased = control = 0
    for k in range(layouts):
        _, state = reset(jax.random.PRNGKey(k), env.default_params)
        red, blue = np.asarray(state.marks)  # (x, y) of the red and the blue door
        red_open = state.replace(grid=state.grid.at[red[0], red[1], 2].set(OPEN))

        def view(s, door: np.ndarray, direction: int, step: int) -> np.ndarray:  # facing ``door`` from beside it
            pos = jnp.asarray(door - np.array([step, 0]), jnp.int32)
            return np.asarray(observe(s.replace(pos=pos, dir=jnp.int32(direction))))

        aliased += bool(np.array_equal(view(state, blue, RIGHT, 1), view(red_open, blue, RIGHT, 1)))
        control += not np.array_equal(view(state, red, LEFT, -1), view(red_open, red, LEFT, -1))
    return aliased, control


def package_aliased(layouts: int) -> tuple[int, int]:
    """The same two counts in the ``minigrid`` package's own task (its ``ImgObsWrapper`` view, ``gen_obs``)."""
    from minigrid.core.world_object import Door
    from minigrid.envs import RedBlueDoorEnv

    env = RedBlueDoorEnv(size=6)  # what gymnasium.make(TASK) wraps
    aliased = control = 0
    for seed in range(layouts):
        env.reset(seed=seed)
        doors = {c.color: (x, y) for x in range(env.width) for y in range(env.height)
                 if isinstance(c := env.grid.get(x, y), Door)}

        def views(door: tuple[int, int], direction: int, step: int) -> tuple[np.ndarray, np.ndarray]:
            """The view facing ``door`` from beside it, with the red door closed, then open (and closed again)."""
            env.agent_pos, env.agent_dir = (door[0] - step, door[1]), direction
            red = env.grid.get(*doors["red"])
            red.is_open = False
            closed = env.gen_obs()["image"].copy()
            red.is_open = True
            opened = env.gen_obs()["image"].copy()
            red.is_open = False
            return closed, opened

        aliased += bool(np.array_equal(*views(doors["blue"], RIGHT, 1)))
        control += not np.array_equal(*views(doors["red"], LEFT, -1))
    env.close()
    return aliased, control


def random_policy_endings(episodes: int) -> dict[str, float]:
    """How a uniformly random policy's episodes end in our task (shares of ``episodes``): the blue door opened
    with the red one open (the success reward), the blue door opened with the red one closed (0, terminated),
    or the time limit; how many of the last had opened the red door on the way (a random policy also closes
    it again); and the mean length and return.  The first two are what ``toggle`` at the blue door leads to."""
    import jax
    import jax.numpy as jnp

    from mtdqn.tasks.minigrid.core import OPEN
    from mtdqn.tasks.minigrid.env import SPECS, MiniGrid

    env = MiniGrid(SPECS[TASK])
    params = env.default_params

    def red_open(state) -> jax.Array:
        red = state.marks[0]
        return state.grid[red[0], red[1], 2] == OPEN

    def episode(key: jax.Array) -> tuple[jax.Array, ...]:
        k_reset, k_act = jax.random.split(key)
        _, state = env.reset_env(k_reset, params)

        def step(carry, k):
            state, done, reward, length, red_seen = carry
            k_action, k_step = jax.random.split(k)
            _, next_state, r, terminated, _ = env.step_env(k_step, state, jax.random.randint(k_action, (), 0, 7),
                                                            params)
            live = ~done
            return (jax.tree.map(lambda a, b: jnp.where(live, a, b), next_state, state), done | terminated,
                    jnp.where(live, r, reward), length + live, red_seen | (live & red_open(next_state))), None

        start = (state, jnp.asarray(False), jnp.float32(0.0), jnp.int32(0), jnp.asarray(False))
        keys = jax.random.split(k_act, params.max_steps_in_episode)  # step_env adds no time limit: the scan is it
        (_, done, reward, length, red_seen), _ = jax.lax.scan(step, start, keys)
        return done, reward, length, red_seen

    outs = jax.jit(jax.vmap(episode))(jax.random.split(jax.random.PRNGKey(0), episodes))
    done, reward, length, red_seen = (np.asarray(x) for x in outs)
    return {"success": float(np.mean(done & (reward > 0))), "blue, red closed": float(np.mean(done & (reward == 0))),
            "time limit": float(np.mean(~done)), "time limit, red opened": float(np.mean(~done & red_seen)),
            "length": float(np.mean(length)), "return": float(np.mean(reward))}


def training_episodes(study: Path) -> str:
    """Per variant, the RedBlueDoors training episodes' mean length and return (over seeds and log windows)
    as epsilon decays: near random (above 0.7), on the way down, and at its end value (each cell's
    metrics.parquet)."""
    import pandas as pd

    rows = ["| variant | seeds | epsilon | mean episode length | mean episode return | mean Q |",
            "|---|---|---|---|---|---|"]
    for cell in sorted(p for p in (study / "cells").iterdir() if (p / "metrics.parquet").is_file()):
        m = pd.read_parquet(cell / "metrics.parquet")
        m = m[m.task == TASK]
        if m.empty:
            continue
        end = m.epsilon.min()
        phases = (("> 0.7 (near random)", m[m.epsilon > 0.7]),
                  (f"{end:g}-0.7", m[(m.epsilon <= 0.7) & (m.epsilon > end)]),
                  (f"{end:g} (its end)", m[m.epsilon == end]))
        for phase, part in phases:
            ended = part[part.episodes > 0]  # a window where no episode ended has no episode means (NaN)
            if ended.empty:
                continue
            rows.append(f"| `{cell.name}` | {m.seed.nunique()} | {phase} "
                        f"| {np.average(ended.episode_length, weights=ended.episodes):.0f} "
                        f"| {np.average(ended.episode_return, weights=ended.episodes):.3f} "
                        f"| {part.q_mean.mean():.3f} |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study", nargs="?", type=Path, help="a study directory with RedBlueDoors cells")
    parser.add_argument("--layouts", type=int, default=200, help="layouts to check in each implementation")
    parser.add_argument("--episodes", type=int, default=1000, help="episodes of the random policy")
    args = parser.parse_args()
    n = args.layouts
    (ours, ours_control), (package, package_control) = ours_aliased(n), package_aliased(n)
    print(f"Facing the blue door from the cell to its left, the observation is the same with the red door open or "
          f"closed in {ours}/{n} layouts of our task and {package}/{n} of the package's (the control: facing the "
          f"red door, it differs in {ours_control}/{n} and {package_control}/{n}).")
    ends = random_policy_endings(args.episodes)
    opened = ends["success"] + ends["blue, red closed"]
    print(f"\nA uniformly random policy, {args.episodes} episodes of our task: the blue door opened with the red one "
          f"open (success) {ends['success']:.1%}, with the red one closed (0) {ends['blue, red closed']:.1%}, time "
          f"limit {ends['time limit']:.1%} (of which the red door opened on the way "
          f"{ends['time limit, red opened']:.1%}); when the blue door is opened, the red one is open "
          f"{ends['success'] / opened:.0%} of the time; mean length {ends['length']:.0f} steps, mean return "
          f"{ends['return']:.3f}.")
    if args.study is not None:
        print(f"\nRedBlueDoors training episodes, {args.study}:\n\n{training_episodes(args.study)}")


if __name__ == "__main__":
    main()
