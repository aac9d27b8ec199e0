"""An evaluation of long episodes: blocks until every episode has ended against one scan of the horizon.

``mtdqn/evaluate.py`` rolls out one scan of the longest task's cut-off, and past ``LONG_HORIZON`` steps blocks of
``BLOCK_STEPS`` until every episode has ended.  This times both on two long-horizon settings, untrained policies
(greedy and uniform random), seeds vmapped as a run evaluates them: the ``minatar`` preset's games
(``sticky=0.1,actions=full,max_steps=10000``) and MiniGrid's MultiRoom with ``max_steps=100000``.  Each row: the
fastest of ``--repeats`` calls after a first (compile included) call, and the mean return per task.

    python benchmarks/eval_horizon.py [--seeds 2] [--episodes 10] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time

SETTINGS = {
    "minatar preset": tuple(f"{game}-MinAtar:sticky=0.1,actions=full,max_steps=10000"
                            for game in ("Breakout", "SpaceInvaders")),
    "MultiRoom 100k": ("MiniGrid-MultiRoom-N2-S4-v0:max_steps=100000",),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from mtdqn.devices import unroll_cpu_threefry, use_cpu_cores

    use_cpu_cores(args.seeds)
    unroll_cpu_threefry()
    import jax
    import numpy as np

    import mtdqn.evaluate as evaluate
    from mtdqn.config import DQNConfig, TrainConfig
    from mtdqn.train.agent import make_agent
    from mtdqn.train.loop import init_state

    print(f"{'setting':16s} {'policy':7s} {'path':7s} {'s per evaluation':>16s}  mean return per task")
    for name, tasks in SETTINGS.items():
        cfg = TrainConfig(tasks=tasks, steps=1000, seeds=args.seeds, num_envs=2, log_every=500,
                          dqn=DQNConfig(learning_starts=100, buffer_size=200, batch_size=8))
        agent = make_agent(cfg)
        params = jax.vmap(lambda k: init_state(agent, k).params)(jax.random.split(jax.random.PRNGKey(0), args.seeds))
        for policy, eps in (("greedy", 0.0), ("random", 1.0)):
            for path, long_horizon in (("blocks", evaluate.LONG_HORIZON), ("1 scan", 10**9)):
                default, evaluate.LONG_HORIZON = evaluate.LONG_HORIZON, long_horizon
                jax.clear_caches()  # the horizon is read when the rollout is traced: trace it again
                try:
                    times = []
                    for _ in range(1 + args.repeats):
                        start = time.perf_counter()
                        got = jax.block_until_ready(evaluate.evaluate_params(agent, params, 7, args.episodes, eps))
                        times.append(time.perf_counter() - start)
                finally:
                    evaluate.LONG_HORIZON = default
                means = np.asarray(got.total).mean(axis=(0, 2)).round(2).tolist()
                print(f"{name:16s} {policy:7s} {path:7s} {min(times[1:]):16.3f}  {means}")


if __name__ == "__main__":
    main()
