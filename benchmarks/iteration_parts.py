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
    python benchmarks/iteration_parts.py --ablate [--rounds 2]
    python benchmarks/iteration_parts.py --matmuls [--rounds 3]

``--ablate`` measures each part *inside the compiled loop* by removing it: the regression guard's rows
(``benchmarks/throughput.py``'s ``GUARD_ROWS``: CartPole one seed, and CartPole+Acrobot+MountainCar four
seeds over the devices ``cpu_plan`` gives them, two on a 2-core machine: the work a study cell does) are
timed whole and then with one part replaced by a stand-in that does no work (:data:`ABLATIONS`), each in its
own process; the time a part costs is the whole chunk's time minus the ablated one's.  XLA drops what no
output needs, so a stand-in removes the part and what only it used, and parts overlap: the update holds the
sample, the targets, the Gram and the optimizer; a zero Gram also removes the norms and cosines computed from
it, and so does dropping the per-iteration metrics (the default ``sum`` strategy ignores the Gram); the TD
targets' row also drops the gathers of the next observations, rewards and terminations; the Adam row also
the linear learning-rate schedule; without the replay write every sample reads slot 0 (a cache advantage its
row includes).  So the rows do not add up to the whole.

``--matmuls`` splits the same rows into the matmuls and everything else: each row timed with the table's
network (a 120-84 MLP) and with a hollow one (8-8: the same ops at ~2% of the FLOPs), alternated in rounds,
the best of each.  The difference estimates the matmuls' time, and the hollow row's time all the rest (its
tiny matmuls included; XLA may fuse a few small ops otherwise at these widths, so read it as an estimate).
Beside it: XLA's FLOPs per iteration, the matmuls' GFLOP/s against a float32 matmul peak measured in the same
run (512x512, every core, in its own process) scaled to the cores the row runs on (one per device), and the
ceiling: the row's env-steps/s if everything but the matmuls took no time.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
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

    import throughput

    from mtdqn.train import step
    from mtdqn.train.agent import make_agent
    from mtdqn.train.loop import init_state, make_trainer, seed_keys

    agent = make_agent(throughput.table_config(tasks, 1, "shared", 3, iters, 0))
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


# ---------------------------------------------------------------- ablations inside the compiled loop

def _ablate_rows() -> dict[str, tuple[tuple[str, ...], int]]:
    """The regression guard's rows (``throughput.GUARD_ROWS``): the one-seed loop and a study cell's work."""
    import throughput

    return {f"{'+'.join(t.split('-')[0] for t in tasks)}, {seeds} seed{'s' if seeds > 1 else ''}": (tasks, seeds)
            for tasks, seeds, _sharing, _devices, _preset in throughput.GUARD_ROWS}


def _no_env_step(task_set, env_states, actions, key):
    """Stand-in for :func:`mtdqn.tasks.step_envs`: the envs stay where they are, no reward, no episode end."""
    import jax.numpy as jnp

    from mtdqn.tasks import EnvStep

    obs = _no_env_step.obs  # the last observations, set by the patched env_step
    no = jnp.zeros(actions.shape, bool)
    return env_states, EnvStep(obs=obs, next_obs=obs, reward=jnp.zeros(actions.shape, jnp.float32), terminated=no,
                               done=no)


def _patch(name: str) -> None:
    """Replace one part of the iteration by a stand-in that does no work (before the trainer is traced); for
    :data:`HOLLOW`, the network by an 8-8 one, whose matmuls do ~no arithmetic."""
    import jax
    import jax.numpy as jnp
    import optax

    from mtdqn.train import loop, step

    if name == "env step":
        env_step = step.env_step

        def patched(agent, state, key, eps):
            _no_env_step.obs = state.obs
            return env_step(agent, state, key, eps)
        step.step_envs, step.env_step = _no_env_step, patched
    elif name == "acting (Q forward, epsilon-greedy)":
        step.act = lambda agent, params, obs, key, eps: jnp.zeros(obs.shape[:2], jnp.int32)
    elif name == "replay write":
        step.replay_add = lambda replay, transition: replay
    elif name == "replay sample (gather)":
        step.replay_sample = lambda replay, key, n: jax.tree.map(lambda buf: buf[:, :n], replay.data)
    elif name == "TD targets (target-network forward)":
        step.td_targets = lambda agent, state, batch, d_t=None: jnp.zeros(batch.reward.shape, jnp.float32)
    elif name == "Gram of task gradients + diagnostics":
        step.task_gram = lambda g, num_tasks: jnp.zeros((num_tasks, num_tasks), jnp.float32)
    elif name == "Adam (vs plain SGD)":
        from mtdqn.train import agent as agent_module

        agent_module._optimizer = lambda cfg, lr, decay: optax.sgd(lr)
    elif name == "target network update":
        update = step.update

        def keep_target(agent, state, key, measure=False, hp=None):  # the mix's result unused: XLA drops it
            new_state, metrics = update(agent, state, key, measure, hp)
            return new_state.replace(target_params=state.target_params), metrics
        step.update = keep_target
    elif name == "per-iteration metrics (logging)":
        summarize = loop.summarize_chunk
        loop.summarize_chunk = lambda per_iter: {"episodes": summarize(per_iter)["episodes"]}
    elif name == HOLLOW:
        import throughput

        table_config = throughput.table_config

        def hollow_config(*args, **kwargs):
            cfg = table_config(*args, **kwargs)
            return dataclasses.replace(cfg, network=dataclasses.replace(cfg.network, adapter_width=8, hidden=(8,)))
        throughput.table_config = hollow_config
    elif name == "the whole update":
        step.update = lambda agent, state, key, measure=False, hp=None: (state, step.empty_update_metrics(agent))
    elif name != "none":
        raise SystemExit(f"error: unknown part {name!r}")


HOLLOW = "the matmuls (an 8-8 network)"
"""``--matmuls``' stand-in: the same program with 8-wide layers, so its matmuls do ~no arithmetic."""
ABLATIONS = ("env step", "acting (Q forward, epsilon-greedy)", "replay write", "replay sample (gather)",
             "TD targets (target-network forward)", "Gram of task gradients + diagnostics", "Adam (vs plain SGD)",
             "target network update", "per-iteration metrics (logging)", "the whole update")


def ablated(spec: dict) -> dict:
    """One row's whole-chunk throughput with ``spec['part']`` removed; call in a fresh process."""
    import throughput
    from mtdqn.devices import cpu_plan, use_cpu_cores

    tasks, seeds = tuple(spec["tasks"]), spec["seeds"]
    use_cpu_cores(*cpu_plan(seeds, tasks, 0))  # as throughput.measure, before anything starts JAX
    _patch(spec["part"])
    return throughput.measure(tasks, seeds, "shared", 0, chunks=3, iters=spec["iters"])


def _ablated_in_subprocess(tasks: tuple[str, ...], seeds: int, part: str, iters: int) -> dict:
    """:func:`ablated`'s row (``part`` removed; "none": whole) measured in a fresh process."""
    spec = json.dumps({"tasks": tasks, "seeds": seeds, "part": part, "iters": iters})
    out = subprocess.run([sys.executable, __file__, "--ablated", spec], check=True, capture_output=True, text=True,
                         env=_bench_env())
    return json.loads(out.stdout.strip().splitlines()[-1])


def ablation_table(rounds: int, iters: int) -> None:
    """µs per iteration of each row whole and without each part, the best of ``rounds`` alternated rounds."""
    rows = _ablate_rows()
    us: dict[str, dict[str, float]] = {row: {} for row in rows}
    for r in range(rounds):
        for row, (tasks, seeds) in rows.items():
            for part in ("none", *ABLATIONS):
                ms = _ablated_in_subprocess(tasks, seeds, part, iters)["ms_per_iter"]
                us[row][part] = min(us[row].get(part, float("inf")), ms * 1e3)
                print(f"round {r + 1}: {row}, without {part}: {ms * 1e3:.0f} µs per iteration", file=sys.stderr,
                      flush=True)
    print("| part removed (stand-in that does no work) | " + " | ".join(f"{row}: µs saved (share)" for row in us)
          + " |")
    print("|---|" + "---|" * len(us))
    for part in ABLATIONS:
        cells = [f"{t['none'] - t[part]:.0f} ({(t['none'] - t[part]) / t['none']:.0%})" for t in us.values()]
        print(f"| {part} | " + " | ".join(cells) + " |")
    print("| **whole iteration** (µs) | " + " | ".join(f"{t['none']:.0f}" for t in us.values()) + " |")


def _peak_gflops() -> float:
    """The float32 matmul peak of every core (``throughput.matmul_peak_gflops``), in a process of its own."""
    code = ("import throughput; from mtdqn.devices import use_cpu_cores; use_cpu_cores(); "
            "print(throughput.matmul_peak_gflops())")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True,
                         env=_bench_env())
    return float(out.stdout.strip().splitlines()[-1])


def _bench_env() -> dict[str, str]:
    """The environment of a measuring subprocess: this folder (``throughput``) and the project on its path."""
    here = os.path.dirname(os.path.abspath(__file__))
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [here, os.path.dirname(here),
                                                                      os.environ.get("PYTHONPATH")]))}


def matmul_table(rounds: int, iters: int) -> None:
    """Each guard row with the table's network and a hollow one, alternated; the matmuls' time and ceiling."""
    rows = _ablate_rows()
    best: dict[str, dict[str, dict]] = {row: {} for row in rows}
    peak = 0.0
    for r in range(rounds):
        peak = max(peak, _peak_gflops())
        for row, (tasks, seeds) in rows.items():
            for part in ("none", HOLLOW):
                got = _ablated_in_subprocess(tasks, seeds, part, iters)
                if part not in best[row] or got["ms_per_iter"] < best[row][part]["ms_per_iter"]:
                    best[row][part] = got
                print(f"round {r + 1}: {row}, {'hollow' if part == HOLLOW else 'table'} network: "
                      f"{got['ms_per_iter'] * 1e3:.0f} µs per iteration", file=sys.stderr, flush=True)
    print(f"float32 matmul peak: {peak:.0f} GFLOP/s (512x512, every core; the best of {rounds} round(s))")
    print()
    print("| row | µs per iteration | with an 8-8 network | the matmuls: µs (share) | MFLOP per iteration "
          "| the matmuls' GFLOP/s (% of its cores' peak) | env-steps/s "
          "| ceiling: env-steps/s if all but the matmuls were free |")
    print("|---|---|---|---|---|---|---|---|")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    for row, got in best.items():
        whole, hollow = got["none"], got[HOLLOW]
        us, us_hollow = whole["ms_per_iter"] * 1e3, hollow["ms_per_iter"] * 1e3
        mm_us = us - us_hollow
        if mm_us <= 0:
            print(f"| {row} | {us:.0f} | {us_hollow:.0f} | not resolved (the hollow network ran as slowly) "
                  "| | | | |")
            continue
        mflop = whole["gflops"] * whole["ms_per_iter"]  # GFLOP/s x ms = MFLOP (per iteration, every device)
        mflop_hollow = hollow["gflops"] * hollow["ms_per_iter"]
        mm_gflops = (mflop - mflop_hollow) / mm_us * 1e3
        ceiling = whole["steps_per_s"] * us / mm_us
        cores_peak = peak * whole["devices"] / cores  # one core per device for MLPs (mtdqn.devices.cpu_plan)
        print(f"| {row} | {us:.0f} | {us_hollow:.0f} | {mm_us:.0f} ({mm_us / us:.0%}) | {mflop:.1f} "
              f"| {mm_gflops:.0f} ({mm_gflops / cores_peak:.0%}) | {whole['steps_per_s']:,.0f} | {ceiling:,.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default="classic,minatar", help="task sets to measure: classic, minatar")
    parser.add_argument("--ablate", action="store_true", help="each part's cost inside the loop, by removing it")
    parser.add_argument("--matmuls", action="store_true",
                        help="the matmuls' share of the loop: the table's network against an 8-8 one")
    parser.add_argument("--rounds", type=int, default=2,
                        help="--ablate, --matmuls: rounds, the best counts (default 2)")
    parser.add_argument("--iters", type=int, default=2000, help="--ablate, --matmuls: iterations per timed chunk")
    parser.add_argument("--tasks", help=argparse.SUPPRESS)  # internal: measure one task set, print JSON
    parser.add_argument("--ablated", help=argparse.SUPPRESS)  # internal: one ablated row, print JSON
    args = parser.parse_args()
    unknown = [name for name in args.sets.split(",") if name not in TASK_SETS]
    if unknown:
        parser.error(f"--sets: unknown task set {unknown[0]!r}; choose from {', '.join(TASK_SETS)}")
    if args.rounds < 1 or args.iters < 1:
        parser.error("--rounds and --iters must be at least 1")
    if args.tasks:
        print(json.dumps(measure(tuple(args.tasks.split(",")))))
        return
    if args.ablated:
        print(json.dumps(ablated(json.loads(args.ablated))))
        return
    if args.ablate:
        ablation_table(args.rounds, args.iters)
        return
    if args.matmuls:
        matmul_table(args.rounds, args.iters)
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
