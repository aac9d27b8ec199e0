"""Time per gradient update of every strategy, relative to ``sum``.

Times the compiled :func:`mtdqn.train.step.update` alone (sample a mixed-task
batch, per-task gradients through one vmap, combine, optimizer step) for two
task sets with the default network and DQN settings: 3 classic-control tasks
and 4 MinAtar games.  The replay is filled with a few random steps once; each variant gets a copy.
Strategies are timed in interleaved rounds and the median round is reported,
so a busy machine slows all of them alike.  Prints a Markdown table::

    python benchmarks/strategies.py > benchmarks/results/strategies.md
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import jax
import jax.numpy as jnp

from mtdqn.config import TrainConfig
from mtdqn.strategies import REGISTRY
from mtdqn.train.agent import TrainState, make_agent
from mtdqn.train.loop import init_state
from mtdqn.train.step import env_step, update
from mtdqn.value_norm import popart_init

TASK_SETS = {  # name -> (tasks, updates per timed round)
    "classic control (3 tasks)": (("CartPole-v1", "Acrobot-v1", "MountainCar-v0"), 200),
    "MinAtar (4 games)": (("Breakout-MinAtar", "Asterix-MinAtar", "Freeway-MinAtar", "SpaceInvaders-MinAtar"), 20),
}
VARIANTS = [(name, "none") for name in sorted(REGISTRY, key=lambda n: (n != "sum", n))] + [("sum", "popart")]


def filled_state(tasks: tuple[str, ...], fill_iters: int) -> TrainState:
    """A state of the plain ``sum`` agent after ``fill_iters`` random vector steps."""
    agent = make_agent(TrainConfig(tasks=tasks))
    state = init_state(agent, jax.random.PRNGKey(0))
    fill = jax.jit(lambda s, k: env_step(agent, s, k, jnp.float32(1.0))[0])
    for i in range(fill_iters):
        state = fill(state, jax.random.PRNGKey(i))
    return state


def compiled_update(tasks: tuple[str, ...], strategy: str, value_norm: str, base: TrainState):
    """(jitted update, its own copy of ``base`` with this variant's strategy and value-norm state)."""
    agent = make_agent(TrainConfig(tasks=tasks, strategy=strategy, value_norm=value_norm))
    state = base.replace(
        strategy_state=agent.strategy.init(agent.num_tasks),
        value_norm=popart_init(agent.num_tasks) if value_norm == "popart" else (),
    )
    state = jax.tree.map(jnp.copy, state)  # own buffers: update donates its state
    step = jax.jit(lambda s, k: update(agent, s, k), donate_argnums=(0,))
    return step, state


def time_calls(step, state, keys: jax.Array) -> tuple[float, object]:
    """Seconds per call over ``len(keys)`` calls; returns the state to keep buffers alive."""
    jax.block_until_ready(state)
    t0 = time.perf_counter()
    for k in keys:
        state, _ = step(state, k)
    jax.block_until_ready(state)
    return (time.perf_counter() - t0) / len(keys), state


def bench(tasks: tuple[str, ...], calls: int, rounds: int, fill_iters: int) -> dict[str, float]:
    """Median seconds per update of every variant, timed in interleaved rounds after one discarded round."""
    base = filled_state(tasks, fill_iters)
    runs = {}
    for strategy, value_norm in VARIANTS:
        step, state = compiled_update(tasks, strategy, value_norm, base)
        runs[(strategy, value_norm)] = [step, state, []]
    keys = jax.random.split(jax.random.PRNGKey(2), calls)
    for run in runs.values():  # compile and warm up
        _, run[1] = time_calls(run[0], run[1], keys)
    for _ in range(rounds):
        for run in runs.values():
            seconds, run[1] = time_calls(run[0], run[1], keys)
            run[2].append(seconds)
    return {variant: statistics.median(run[2]) for variant, run in runs.items()}


def label(strategy: str, value_norm: str) -> str:
    return strategy if value_norm == "none" else f"{strategy} + --value-norm {value_norm}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls-scale", type=float, default=1.0, help="scale the updates per timed round")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds; the median is reported")
    parser.add_argument("--fill-iters", type=int, default=30, help="random vector steps before timing (x10 envs)")
    args = parser.parse_args()
    calls = {name: max(1, round(n * args.calls_scale)) for name, (_, n) in TASK_SETS.items()}
    results = {name: bench(tasks, calls[name], args.rounds, args.fill_iters) for name, (tasks, _) in TASK_SETS.items()}
    device = jax.devices()[0]
    print("# Time per update, relative to `sum`\n")
    print(f"`python benchmarks/strategies.py` — jax {jax.__version__} on {device.platform} "
          f"({device.device_kind}; {platform.processor() or platform.machine()}), default network and DQN config "
          f"(batch 128 per task), median of {args.rounds} interleaved rounds of compiled `update` calls "
          f"({', '.join(f'{n}: {c} per round' for n, c in calls.items())}).\n")
    header = "| strategy | " + " | ".join(f"{n}: ms/update | x sum" for n in TASK_SETS) + " |"
    print(header)
    print("|" + "---|" * (1 + 2 * len(TASK_SETS)))
    for variant in VARIANTS:
        cells = []
        for name in TASK_SETS:
            t, base = results[name][variant], results[name][("sum", "none")]
            cells.append(f"{1e3 * t:.2f} | {t / base:.2f}")
        print(f"| {label(*variant)} | " + " | ".join(cells) + " |")
    worst = max(r[v] / r[("sum", "none")] for r in results.values() for v in VARIANTS)
    print(f"\nGoal: every strategy within 1.5x of `sum`. Slowest ratio measured: {worst:.2f}x.")


if __name__ == "__main__":
    main()
