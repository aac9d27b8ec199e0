"""Normalization anchors of the MiniGrid tasks (issue 19): the random policy's return and the optimal return.

- Random: our own random-policy evaluation (epsilon 1.0, so the parameters do
  not matter) of our JAX tasks, ``--episodes`` first episodes per task, seed 0,
  as the other tasks' random anchors were measured (:mod:`mtdqn.taskfacts`).
- Optimal: the mean over ``--layouts`` of the package's own layouts (reset
  seeds 0, 1, ...) of ``1 - 0.9 * n / max_steps``, n the length of a shortest
  plan to the reward found by breadth-first search over the package's states
  (``shortest_plan`` of ``tests/test_minigrid.py``, which also checks that the
  plan reaches the goal in our tasks after the same number of steps).  The
  search sees the whole grid, so this is the return of an agent that knows the
  layout: the best any policy can get, what Todorov et al. 2025's rerun of MOORE's code normalizes by.

Prints one Markdown row per task: random mean ± std, optimal mean ± std, the
mean plan length.  Needs the ``minigrid`` package (a test dependency).

    PYTHONPATH=$PWD python benchmarks/minigrid_anchors.py                 # all seven, 1,000 / 200
    PYTHONPATH=$PWD python benchmarks/minigrid_anchors.py --tasks MiniGrid-DoorKey-6x6-v0 --layouts 20
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: tests.test_minigrid

from mtdqn.config import TrainConfig  # noqa: E402
from mtdqn.evaluate import evaluate_params  # noqa: E402
from mtdqn.tasks.minigrid import SPECS  # noqa: E402
from mtdqn.train.agent import make_agent  # noqa: E402
from mtdqn.train.loop import make_trainer, seed_keys  # noqa: E402
from tests.test_minigrid import make_reference, shortest_plan  # noqa: E402


def random_returns(task: str, episodes: int, seed: int = 0) -> np.ndarray:
    """First-episode returns (episodes,) of the uniform random policy in our JAX task."""
    agent = make_agent(TrainConfig(tasks=(task,), seeds=1))
    params = make_trainer(agent).init(seed_keys(agent.seeds)).params
    return evaluate_params(agent, params, seed, episodes, eps=1.0).total[0, 0]


def optimal_returns(task: str, layouts: int) -> tuple[np.ndarray, np.ndarray]:
    """(returns, plan lengths), each (layouts,): shortest plans in the package's layouts of reset seeds 0, 1, ..."""
    env = make_reference(task)
    lengths = []
    for seed in range(layouts):
        env.reset(seed=seed)
        lengths.append(len(shortest_plan(env)))
    n = np.asarray(lengths, np.float64)
    return 1.0 - 0.9 * n / SPECS[task].max_steps, n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", default=",".join(SPECS), help="comma-separated MiniGrid ids (default: all seven)")
    parser.add_argument("--episodes", type=int, default=1000, help="random-policy episodes per task")
    parser.add_argument("--layouts", type=int, default=200, help="layouts searched per task for the optimal return")
    args = parser.parse_args()
    print("| task | max_steps | random return | optimal return | shortest plan (steps) |")
    print("|---|---|---|---|---|")
    for task in filter(None, args.tasks.split(",")):
        rand = random_returns(task, args.episodes)
        best, n = optimal_returns(task, args.layouts)
        print(f"| {task} | {SPECS[task].max_steps} | {rand.mean():.4f} ± {rand.std():.4f} "
              f"| {best.mean():.4f} ± {best.std():.4f} | {n.mean():.1f} |", flush=True)


if __name__ == "__main__":
    main()
