"""Where a training iteration's time goes: env step, update, the whole compiled chunk.

Prints a Markdown table of microseconds per iteration for one seed with the
throughput benchmark's settings (PureJaxRL's CartPole DQN: 10 envs per task,
batch 128 per task, a 120-84 MLP for vectors and the conv trunk for MinAtar,
an update every iteration).  Each piece is compiled on its own as a
``lax.scan`` of 2,000 iterations (200 for the 4 MinAtar games) from a filled
replay; the best of 3 runs counts.  "update jitted alone" is one update
compiled outside any loop (its state donated, best of 20 calls): XLA:CPU can
compile the same op very differently inside a loop body, and the gap between
it and the whole iteration is what the loop costs.  Each task set runs in its own process, started as
``mtdqn train`` starts JAX (one device; one XLA pool thread for MLPs, one per
core for convolutions).

    python benchmarks/iteration_parts.py
    python benchmarks/iteration_parts.py --sets minatar
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

TASK_SETS = {
    "classic": (("CartPole-v1",), ("CartPole-v1", "Acrobot-v1", "MountainCar-v0")),
    "minatar": (("Breakout-MinAtar", "Asterix-MinAtar", "Freeway-MinAtar", "SpaceInvaders-MinAtar"),),
}


def measure(tasks: tuple[str, ...]) -> dict[str, float]:
    """Microseconds per iteration of each piece, for one seed of ``tasks``; call in a fresh process."""
    image = tasks[0].endswith("-MinAtar")
    iters = 200 if image else 2000
    from mtdqn.devices import cpu_plan, unroll_cpu_threefry, use_cpu_cores

    use_cpu_cores(*cpu_plan(1, tasks, 0))

    unroll_cpu_threefry()  # as `mtdqn train` does
    import jax
    import jax.numpy as jnp

    from mtdqn.config import DQNConfig, NetworkConfig, TrainConfig
    from mtdqn.train import step
    from mtdqn.train.agent import make_agent
    from mtdqn.train.loop import init_state, make_trainer, seed_keys

    cfg = TrainConfig(
        tasks=tasks, seeds=1, steps=iters * 10 * 4, log_every=iters * 10, num_envs=10,
        network=NetworkConfig(adapter_width=120, hidden=(84,)),
        dqn=DQNConfig(lr=2.5e-4, batch_size=128, train_every=10, target_update_every=500, tau=1.0, learning_starts=0,
                      buffer_size=10_000 if not image else 20_000),
    )
    agent = make_agent(cfg)
    trainer = make_trainer(agent)

    def env_only(s, _):
        key, k_env = jax.random.split(s.key)
        s, stats = step.env_step(agent, s.replace(key=key), k_env, jnp.float32(0.5))
        return s, stats["episodes"]

    def update_only(s, _):
        key, k_update = jax.random.split(s.key)
        s, metrics = step.update(agent, s.replace(key=key), k_update)
        return s, metrics["loss"]

    def best_of(fn, arg, per: int, reps: int = 3) -> float:
        compiled = jax.jit(fn).lower(arg).compile()
        jax.block_until_ready(compiled(arg))
        best = float("inf")
        for _ in range(reps):
            t0 = time.perf_counter()
            jax.block_until_ready(compiled(arg))
            best = min(best, time.perf_counter() - t0)
        return best / per * 1e6

    def update_alone(s, reps: int = 20) -> float:
        """One update per call, its state donated and threaded through (no copy of the replay per call)."""
        compiled = jax.jit(lambda s: update_only(s, None), donate_argnums=0).lower(s).compile()
        s = jax.tree.map(jnp.copy, s)  # the caller's state stays valid
        s, loss = compiled(s)
        jax.block_until_ready(loss)
        best = float("inf")
        for _ in range(reps):
            t0 = time.perf_counter()
            s, loss = compiled(s)
            jax.block_until_ready(loss)
            best = min(best, time.perf_counter() - t0)
        return best * 1e6

    def scan(body):
        return lambda s: jax.lax.scan(body, s, jnp.arange(iters, dtype=jnp.int32))

    state = jax.jit(lambda k: init_state(agent, k))(jax.random.PRNGKey(0))
    for _ in range(-(-1000 // iters)):  # at least 10k transitions per task to sample from
        state, _ = jax.jit(scan(env_only))(state)
    out = {
        "env": best_of(scan(env_only), state, iters),
        "update": best_of(scan(update_only), state, iters),
        "update_alone": update_alone(state),
    }
    chunk_state = trainer.init(seed_keys([0]))
    chunk = trainer.chunk.lower(chunk_state, trainer.hypers, jnp.int32(0)).compile()
    chunk_state, m = chunk(chunk_state, trainer.hypers, jnp.int32(0))
    jax.block_until_ready(m)
    best = float("inf")
    for c in range(1, 4):
        t0 = time.perf_counter()
        chunk_state, m = chunk(chunk_state, trainer.hypers, jnp.int32(c * agent.derived.iters_per_chunk))
        jax.block_until_ready(m)
        best = min(best, time.perf_counter() - t0)
    out["whole"] = best / agent.derived.iters_per_chunk * 1e6
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default="classic,minatar", help="task sets to measure: classic, minatar")
    parser.add_argument("--tasks", help=argparse.SUPPRESS)  # internal: measure one task set, print JSON
    args = parser.parse_args()
    if args.tasks:
        print(json.dumps(measure(tuple(args.tasks.split(",")))))
        return
    cols = {}
    for tasks in (t for name in args.sets.split(",") for t in TASK_SETS[name]):
        out = subprocess.run([sys.executable, __file__, "--tasks", ",".join(tasks)], check=True,
                             capture_output=True, text=True)
        cols["+".join(t.split("-")[0] for t in tasks)] = json.loads(out.stdout.strip().splitlines()[-1])
    print("| µs per iteration | " + " | ".join(cols) + " |")
    print("|---|" + "---|" * len(cols))
    labels = {"env": "act + env step + replay write", "update": "update (sample, targets, per-task gradients, "
              "Adam, diagnostics)", "update_alone": "update jitted alone (no loop)",
              "whole": "whole iteration (`run_chunk`)"}
    for key, label in labels.items():
        print(f"| {label} | " + " | ".join(f"{c[key]:.0f}" for c in cols.values()) + " |")


if __name__ == "__main__":
    main()
