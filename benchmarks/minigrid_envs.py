"""Env-only stepping of MiniGrid task sets (issue 19 item 2): env-steps/s, no agent.

Steps every task's vectorized envs with uniformly random actions inside one
jitted ``lax.scan``, as the training loop steps them
(:func:`mtdqn.tasks.envs.step_envs`, auto-reset included), on one CPU core: the
process pins itself to one core before JAX starts (as ``taskset -c 0`` does), so
XLA's pool has one thread there.  Prints one Markdown row per task set: tasks,
envs per task, env-steps/s (all tasks together), compile seconds.

Why pinned: unpinned, this scan's speed is bimodal on the 2-core machine.  On
2026-12-05, 14 unpinned runs (XLA's pool at its default two threads: the
benchmark then set ``XLA_FLAGS``, whose ``intra_op_parallelism_threads=1`` is no
XLA flag, and a call of ``use_cpu_cores`` that came after JAX had started and so
did nothing) read 741k-780k env-steps/s (six) or 491k-514k (eight); pinned,
739k-776k every time (four with ``taskset -c 0``), with a niced study beside
them or stopped.  Why the unpinned runs split was not found.

    python benchmarks/minigrid_envs.py                 # MT7, 16 envs per task
    python benchmarks/minigrid_envs.py --tasks MiniGrid-DoorKey-6x6-v0 --envs 64
"""

from __future__ import annotations

import argparse
import os
import time

if hasattr(os, "sched_setaffinity"):  # one core, before JAX starts: its CPU pool is sized by the cores allowed
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from mtdqn.tasks import make_task_set, reset_envs, step_envs  # noqa: E402

MT7 = ("MiniGrid-LavaGapS7-v0", "MiniGrid-RedBlueDoors-6x6-v0", "MiniGrid-MemoryS11-v0", "MiniGrid-DoorKey-6x6-v0",
       "MiniGrid-DistShift1-v0", "MiniGrid-SimpleCrossingS9N2-v0", "MiniGrid-MultiRoom-N2-S4-v0")


def measure(tasks: tuple[str, ...], envs: int, steps: int, repeats: int) -> tuple[float, float]:
    """(env-steps/s over all tasks, best of ``repeats`` scans of ``steps`` vector steps; compile seconds)."""
    task_set = make_task_set(tasks)

    def run(states, key):
        def body(carry, _):
            states, key = carry
            key, k_act, k_env = jax.random.split(key, 3)
            actions = jax.random.randint(k_act, (len(task_set), envs), 0, task_set.num_actions)
            states, out = step_envs(task_set, states, actions, k_env)
            return (states, key), out.reward.sum()
        (states, key), rewards = jax.lax.scan(body, (states, key), None, length=steps)
        return states, key, rewards.sum()

    _, states = reset_envs(task_set, jax.random.key(0), envs)
    run = jax.jit(run)
    start = time.perf_counter()
    compiled = run.lower(states, jax.random.key(1)).compile()
    compile_s = time.perf_counter() - start
    key, best = jax.random.key(1), float("inf")
    states, key, total = compiled(states, key)  # warm-up
    jnp.asarray(total).block_until_ready()
    for _ in range(repeats):
        start = time.perf_counter()
        states, key, total = compiled(states, key)
        jnp.asarray(total).block_until_ready()
        best = min(best, time.perf_counter() - start)
    return len(tasks) * envs * steps / best, compile_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", default=",".join(MT7), help="comma-separated MiniGrid ids (default: MT7)")
    parser.add_argument("--envs", type=int, default=16, help="envs per task")
    parser.add_argument("--steps", type=int, default=1000, help="vector steps per timed scan")
    parser.add_argument("--repeats", type=int, default=3, help="timed scans; the best is reported")
    args = parser.parse_args()
    tasks = tuple(t for t in args.tasks.split(",") if t)
    rate, compile_s = measure(tasks, args.envs, args.steps, args.repeats)
    print("| tasks | envs/task | env-steps/s (1 core) | compile s |")
    print("|---|---|---|---|")
    print(f"| {len(tasks)} ({', '.join(t.removeprefix('MiniGrid-').removesuffix('-v0') for t in tasks)}) "
          f"| {args.envs} | {rate:,.0f} | {compile_s:.1f} |")


if __name__ == "__main__":
    main()
