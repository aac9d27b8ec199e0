"""Training throughput: env-steps/s, compile time and achieved GFLOP/s.

Prints a Markdown table: tasks x seeds x sharing -> aggregate and per-task
env-steps/s, compile seconds, achieved GFLOP/s (XLA's own FLOP count of the
compiled chunk divided by its wall time) beside a float32 matmul peak.

Each row runs in its own process, started the way `mtdqn train` starts JAX
for that run (`mtdqn.devices.cpu_plan`): the seeds split over as many CPU
devices as divide them, and XLA's thread pool sized for the network (one
thread per device for MLPs, every core for MinAtar's convolutions).  The
`devices` column says over how many devices the seeds were split; rows with
devices = 1 and several seeds are the same seeds vmapped on one device.  Rates
count real seeds only (a 3-seed row on 2 devices also trains a dummy seed).

Hyperparameters are PureJaxRL's CartPole DQN (10 envs, batch 128, one update
per 10 env steps, a hard target copy every 50 updates -- its TARGET_UPDATE_INTERVAL
of 500 counts env steps --, lr 2.5e-4) and its network shape:
the per-task adapter is Dense(obs -> 120) and the trunk Dense(84), so with one
task the network is exactly PureJaxRL's 120-84 MLP.

    python benchmarks/throughput.py            # full table
    python benchmarks/throughput.py --quick    # two rows, for a smoke check
    python benchmarks/throughput.py --minatar  # only the image rows (4 MinAtar games, conv trunk; Seaquest)
    python benchmarks/throughput.py --minigrid # the minigrid-mt7 preset's own settings: 1 seed, and 2 seeds on 2 cores
    python benchmarks/throughput.py --games    # env stepping alone, per MinAtar game (no network)
    python benchmarks/throughput.py --seaquest # training rows Seaquest+Breakout and SpaceInvaders+Breakout
    python benchmarks/throughput.py --against v0.1.0 [--rounds 5]   # the regression guard (below)
    python benchmarks/throughput.py --affinity # CartPole+Acrobot, 4 seeds: --affinity-every 0 (off), 100 and 1
    python benchmarks/throughput.py --experts [--minatar] [--iters 500] [--rounds 2]   # experts vs shared (below)

**Experts** (``--experts``): ``shared``, ``moe:3`` and ``moore:3`` on the classic set (with ``--minatar``, on
the four MinAtar games), one seed, each row its own process, the rows interleaved ``--rounds`` times and
each keeping its best.  It prints the time per update (one update per iteration in these settings, so it
includes that iteration's acting and env steps, where the network runs too) relative to ``shared``'s, beside
the target of issue 20: at most K x 1.2, since each expert is a whole trunk.

**The regression guard** (``--against REV``): each row measured for the working tree and for git revision
REV (checked out in a temporary worktree) in alternated rounds within one run (tree then REV, REV then
tree, ...), each measurement in its own process with that tree's ``mtdqn`` on the path.  It prints, per
row, both rates and the ratio tree / REV: the median over rounds with its min-max spread.  Read the ratio,
not the rates: both sides saw the same machine at nearly the same moment, so a ratio whose spread stays
above 1 is a gain and one below 1 a loss, while the absolute rates move with the machine's load (±2× here).
Its rows: 1-seed CartPole, and 3 classic tasks x 4 seeds (a study's work).

The Seaquest row is what `mtdqn train --tasks Seaquest-MinAtar,Breakout-MinAtar` trains, with the
settings above; the `minatar preset` row trains the `minatar` study preset's settings and games (published
MinAtar: sticky actions, six actions; 4 envs per game, an update of 128 per game every vector step, replay
100k); the `minigrid-mt7 preset` rows train the `minigrid-mt7` preset's seven tasks with its settings (16 envs
per task, an update of 128 per task every vector step, 10-step returns, replay 100k; issue 19's target:
>= 5,000 env-steps/s on the 2 cores).  `--games` steps each game's 10 envs (vmapped) with random actions inside one jitted
`lax.scan`, as the training loop steps them, and prints µs per vector step; its last row is gymnax's own
Seaquest, which `Seaquest-MinAtar` replaced (mtdqn/tasks/seaquest.py).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # mtdqn is imported inside functions: --against runs them on another revision's checkout
    from mtdqn.config import TrainConfig

CLASSIC = ("CartPole-v1", "Acrobot-v1", "MountainCar-v0")
MINATAR = ("Breakout-MinAtar", "Asterix-MinAtar", "Freeway-MinAtar", "SpaceInvaders-MinAtar")
SEAQUEST = ("Seaquest-MinAtar", "Breakout-MinAtar")
SPACE_INVADERS = ("SpaceInvaders-MinAtar", "Breakout-MinAtar")  # Seaquest's pair with another game, to compare
GAMES = (*MINATAR, "Seaquest-MinAtar")


def matmul_peak_gflops(n: int = 512, reps: int = 20) -> float:
    """Best-of float32 matmul GFLOP/s on this machine (every core), the yardstick for the table."""
    import jax
    import jax.numpy as jnp

    a = jax.random.normal(jax.random.PRNGKey(0), (n, n))
    f = jax.jit(lambda x: jax.lax.fori_loop(0, reps, lambda _, y: jnp.tanh(y @ a), x))
    f(a).block_until_ready()
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        f(a).block_until_ready()
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 * reps / best / 1e9


def table_config(tasks: tuple[str, ...], seeds: int, sharing: str, chunks: int, iters: int,
                  affinity_every: int) -> TrainConfig:
    """The table's settings, PureJaxRL's CartPole DQN: 10 envs per task, an update of 128 per task every vector
    step (10 env steps), from the first step, a hard target copy every 50 updates (PureJaxRL's
    ``TARGET_UPDATE_INTERVAL`` 500 counts env steps, 10 per update)."""
    from mtdqn.config import DQNConfig, NetworkConfig, TrainConfig

    image = tasks[0].endswith("MinAtar")
    return TrainConfig(
        tasks=tasks, seeds=seeds, steps=iters * 10 * (chunks + 1), log_every=iters * 10, num_envs=10,
        network=NetworkConfig(sharing=sharing, adapter_width=120, hidden=(84,)),
        dqn=DQNConfig(lr=2.5e-4, batch_size=128, train_every=10, target_update_every=50, tau=1.0,
                      learning_starts=0, buffer_size=10_000 if not image else 20_000),
        affinity_every=affinity_every,
    )


def preset_config(preset: str, seeds: int, sharing: str, chunks: int, iters: int) -> TrainConfig:
    """A study preset's variant config, its tasks included, cut to ``chunks + 1`` chunks of ``iters``
    vector steps that all update."""
    from mtdqn.studies.presets import resolve_spec
    from mtdqn.studies.spec import variant_config

    cfg = variant_config(resolve_spec(preset, {"seeds": seeds}), sharing)
    return dataclasses.replace(cfg, steps=iters * cfg.num_envs * (chunks + 1), log_every=iters * cfg.num_envs,
                               dqn=dataclasses.replace(cfg.dqn, learning_starts=0))


def measure(tasks: tuple[str, ...], seeds: int, sharing: str, devices: int = 0, chunks: int = 3,
            iters: int = 2000, preset: bool | str = False, affinity_every: int = 0) -> dict:
    """Compile one chunk, warm up once, then time ``chunks`` chunks and keep the fastest.

    ``affinity_every``: --affinity-every of the run (0: off), the lookahead affinity measured in the loop.

    ``preset``: a study preset's settings and tasks instead of the table's and ``tasks`` (True: ``minatar``:
    4 envs per game, an update of 128 per game every vector step, replay 100k; or a preset's name, e.g.
    ``minigrid-mt7``).  Call in a fresh process: JAX is started here, after the device plan.
    """
    preset = "minatar" if preset is True else preset
    if preset:
        cfg = preset_config(preset, seeds, sharing, chunks, iters)
    else:
        cfg = table_config(tasks, seeds, sharing, chunks, iters, affinity_every)
    tasks = cfg.tasks

    from mtdqn.devices import cpu_plan, unroll_cpu_threefry, use_cpu_cores

    use_cpu_cores(*cpu_plan(seeds, tasks, devices))  # before JAX starts: it reads the threads' flags once

    unroll_cpu_threefry()  # as `mtdqn train` does
    from mtdqn.train.agent import make_agent
    from mtdqn.train.loop import make_trainer

    trainer = make_trainer(make_agent(cfg), devices)
    t = time_chunks(trainer, chunks, iters)
    elapsed, compile_s = t["chunk_s"], t["compile_s"]
    # XLA's cost analysis counts a while-loop body once: FLOPs of one iteration (of one device's program).
    flops_per_iter = (t["compiled"].cost_analysis() or {}).get("flops", float("nan")) * trainer.devices
    steps = iters * cfg.num_envs * len(tasks) * seeds
    return {
        "tasks": f"{preset} preset ({len(tasks)} tasks)" if preset else "+".join(t.split("-")[0] for t in tasks),
        "seeds": seeds,
        "sharing": sharing,
        "affinity_every": affinity_every,
        "devices": trainer.devices,
        "threads": sum("Eigen" in open(f"/proc/self/task/{t}/comm").read() for t in os.listdir("/proc/self/task"))
        if os.path.isdir("/proc/self/task") else None,
        "steps_per_s": steps / elapsed,
        "per_task": steps / elapsed / len(tasks) / seeds,
        "compile_s": compile_s,
        "gflops": flops_per_iter * iters / elapsed / 1e9,
        "ms_per_iter": elapsed / iters * 1e3,
    }


def time_chunks(trainer: Any, chunks: int, iters: int) -> dict[str, Any]:
    """Compile ``trainer``'s chunk (``compile_s``), run it once to warm up, then time ``chunks`` chunks of
    ``iters`` vector steps and keep the fastest (``chunk_s``: the machine's other load only ever slows a chunk
    down); also the ``compiled`` program and the ``state`` after the last chunk.  JAX must be started."""
    import jax
    import jax.numpy as jnp

    from mtdqn.train.loop import seed_keys

    state = trainer.init(seed_keys(trainer.agent.seeds))
    t0 = time.perf_counter()
    compiled = trainer.chunk.lower(state, trainer.hypers, jnp.int32(0)).compile()
    compile_s = time.perf_counter() - t0
    state, m = compiled(state, trainer.hypers, jnp.int32(0))
    jax.block_until_ready(m)
    elapsed = float("inf")
    for c in range(1, chunks + 1):
        t0 = time.perf_counter()
        state, m = compiled(state, trainer.hypers, jnp.int32(c * iters))
        jax.block_until_ready(m)
        elapsed = min(elapsed, time.perf_counter() - t0)
    return {"chunk_s": elapsed, "compile_s": compile_s, "compiled": compiled, "state": state}


def game_step_us(name: str, num_envs: int = 10, steps: int = 2_000, gymnax_own: bool = False) -> float:
    """µs per vector step of ``num_envs`` envs of one MinAtar game, random actions, in a jitted scan;
    ``gymnax_own``: gymnax's game of that name instead of the task's."""
    import gymnax
    import jax

    from mtdqn.tasks import parse_task

    env, params = gymnax.make(name) if gymnax_own else parse_task(name).make()

    def run(key):
        _, state = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(key, num_envs), params)

        def body(state, k):
            k_act, k_env = jax.random.split(k)
            action = jax.random.randint(k_act, (num_envs,), 0, env.num_actions)
            obs, state, reward, *_ = jax.vmap(env.step, in_axes=(0, 0, 0, None))(
                jax.random.split(k_env, num_envs), state, action, params)
            return state, reward.sum() + obs.sum()

        return jax.lax.scan(body, state, jax.random.split(key, steps))[1].sum()

    run = jax.jit(run)
    run(jax.random.PRNGKey(0)).block_until_ready()
    best = float("inf")
    for seed in range(1, 4):
        t0 = time.perf_counter()
        run(jax.random.PRNGKey(seed)).block_until_ready()
        best = min(best, time.perf_counter() - t0)
    return best / steps * 1e6


def _row_in_subprocess(tasks: tuple[str, ...], seeds: int, sharing: str, devices: int, iters: int,
                       preset: bool | str = False, affinity_every: int = 0) -> dict:
    spec = json.dumps({"tasks": tasks, "seeds": seeds, "sharing": sharing, "devices": devices, "iters": iters,
                       "preset": preset, "affinity_every": affinity_every})
    out = subprocess.run([sys.executable, __file__, "--row", spec], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


GUARD_ROWS = ((("CartPole-v1",), 1, "shared", 0, False), (CLASSIC, 4, "shared", 0, False))
"""The regression guard's rows: the one-seed loop, and the work a study cell does."""
MINIGRID_GUARD_ROWS = (((), 1, "shared", 0, "minigrid-mt7"),)
"""With ``--minigrid``: the minigrid-mt7 preset's own settings, one seed (its env steps are much of the work)."""


def _row_with(root: str | None, tasks: tuple[str, ...], seeds: int, sharing: str, devices: int,
              iters: int, preset: bool | str = False) -> dict:
    """One row in a fresh process whose ``mtdqn`` is the one under ``root`` (None: this working tree)."""
    env = dict(os.environ)
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root or here, env.get("PYTHONPATH")]))
    spec = json.dumps({"tasks": tasks, "seeds": seeds, "sharing": sharing, "devices": devices, "iters": iters,
                       "preset": preset})
    out = subprocess.run([sys.executable, __file__, "--row", spec], check=False, capture_output=True, text=True,
                         env=env)
    if out.returncode != 0:
        last = (out.stderr.strip().splitlines() or ["no output"])[-1]
        raise SystemExit(f"error: measuring {_label(tasks, preset)} under {root or 'the working tree'} failed: {last}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _label(tasks: tuple[str, ...], preset: bool | str) -> str:
    return preset if isinstance(preset, str) else "+".join(t.split("-")[0] for t in tasks)


def against(rev: str, rounds: int, iters: int, rows: tuple = GUARD_ROWS) -> None:
    """The regression guard: each of ``rows`` for the working tree and ``rev``, alternated, with ratios."""
    import statistics
    import tempfile

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    resolved = subprocess.run(["git", "-C", repo, "rev-parse", "--verify", f"{rev}^{{commit}}"],
                              capture_output=True, text=True)
    if resolved.returncode != 0:
        print(f"error: --against {rev!r} is not a git revision of {repo}", file=sys.stderr)
        raise SystemExit(2)  # bad input, as argparse's own refusals
    commit = resolved.stdout.strip()
    with tempfile.TemporaryDirectory(prefix="mtdqn-against-") as tmp:
        other = os.path.join(tmp, "tree")
        subprocess.run(["git", "-C", repo, "worktree", "add", "--detach", other, commit], check=True,
                       capture_output=True)
        try:
            print(f"working tree vs {rev} ({commit[:10]}), {rounds} alternated rounds, {iters} iterations "
                  "per timed chunk; ratio = tree / rev (median [min, max] over rounds)")
            print()
            print("| tasks | seeds | tree env-steps/s (median) | rev env-steps/s (median) | ratio tree/rev |")
            print("|---|---|---|---|---|")
            for tasks, seeds, sharing, devices, preset in rows:
                mine, theirs = [], []
                for r in range(rounds):
                    order = ((None, mine), (other, theirs)) if r % 2 == 0 else ((other, theirs), (None, mine))
                    for root, out in order:
                        out.append(_row_with(root, tasks, seeds, sharing, devices, iters, preset)["steps_per_s"])
                ratios = [a / b for a, b in zip(mine, theirs)]
                print(f"| {_label(tasks, preset)} | {seeds} | {statistics.median(mine):,.0f} "
                      f"| {statistics.median(theirs):,.0f} | {statistics.median(ratios):.3f} "
                      f"[{min(ratios):.3f}, {max(ratios):.3f}] |", flush=True)
        finally:
            subprocess.run(["git", "-C", repo, "worktree", "remove", "--force", other], capture_output=True)


AFFINITY_TASKS = ("CartPole-v1", "Acrobot-v1")


def affinity_table(seeds: int = 4, repeats: int = 2) -> None:
    """Throughput of the compiled loop with the lookahead affinity off and measured every 100 updates and every
    update (one update per vector step here), each row its own process as `mtdqn train` runs it; rows are
    interleaved ``repeats`` times and each setting keeps its best, so other load on the machine hits all alike."""
    settings = (0, 100, 1)
    best: dict[int, dict] = {}
    for _ in range(repeats):
        for every in settings:
            r = _row_in_subprocess(AFFINITY_TASKS, seeds, "shared", 0, iters=2000, affinity_every=every)
            if every not in best or r["steps_per_s"] > best[every]["steps_per_s"]:
                best[every] = r
    import jax

    print(f"device: {jax.devices()[0].platform}, {os.cpu_count()} cores, jax {jax.__version__}; "
          f"{'+'.join(AFFINITY_TASKS)}, {seeds} seeds, shared, one update per vector step")
    print()
    print("| --affinity-every | measurements per update | env-steps/s (all tasks, seeds) | cost vs off | compile s |")
    print("|---|---|---|---|---|")
    off = best[0]["steps_per_s"]
    for every in settings:
        r = best[every]
        share = "0" if every == 0 else f"1/{every}"
        cost = "—" if every == 0 else f"{100 * (off / r['steps_per_s'] - 1):+.1f}% time"
        print(f"| {every or '0 (off)'} | {share} | {r['steps_per_s']:,.0f} | {cost} | {r['compile_s']:.1f} |",
              flush=True)


EXPERT_SHARINGS = ("shared", "moe:3", "moore:3")
EXPERT_TARGET = 1.2
"""Issue 20's target: a mixture of K experts takes at most K x this the time per update of ``shared``."""


def _experts_in(sharing: str) -> int:
    """K of ``moe:K`` / ``moore:K``; 1 for a single trunk."""
    name, _, k = sharing.partition(":")
    return int(k) if name in ("moe", "moore") else 1


def experts_table(minatar: bool, iters: int, rounds: int) -> None:
    """``shared``, ``moe:3`` and ``moore:3`` on one task set, 1 seed: time per update relative to ``shared`` and
    the K x 1.2 target; rows interleaved ``rounds`` times, each keeping its best (the fastest run is the one the
    machine's other load slowed least)."""
    tasks = MINATAR if minatar else CLASSIC
    best: dict[str, dict] = {}
    for _ in range(rounds):
        for sharing in EXPERT_SHARINGS:
            r = _row_in_subprocess(tasks, 1, sharing, 0, iters=iters)
            if sharing not in best or r["ms_per_iter"] < best[sharing]["ms_per_iter"]:
                best[sharing] = r
    import jax

    print(f"device: {jax.devices()[0].platform}, {os.cpu_count()} cores, jax {jax.__version__}; "
          f"{'+'.join(t.split('-')[0] for t in tasks)}, 1 seed, {iters} iterations per timed chunk (one update "
          f"each), best of {rounds} round(s) x 3 chunks")
    print()
    print("| sharing | env-steps/s (all tasks) | ms per update | vs shared | target (K x 1.2) | within target "
          "| compile s |")
    print("|---|---|---|---|---|---|---|")
    base = best["shared"]["ms_per_iter"]
    for sharing in EXPERT_SHARINGS:
        r, k = best[sharing], _experts_in(sharing)
        ratio = r["ms_per_iter"] / base
        target = "—" if k == 1 else f"≤ {k * EXPERT_TARGET:.1f}"
        within = "—" if k == 1 else ("yes" if ratio <= k * EXPERT_TARGET else "no")
        print(f"| {sharing} | {r['steps_per_s']:,.0f} | {r['ms_per_iter']:.2f} | {ratio:.2f}x | {target} | {within} "
              f"| {r['compile_s']:.1f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="only the two headline rows")
    parser.add_argument("--minatar", action="store_true", help="only the MinAtar (conv trunk) rows")
    parser.add_argument("--minigrid", action="store_true",
                        help="only the minigrid-mt7 preset's settings (1 seed; 2 seeds on 2 devices); with "
                             "--against, its one-seed row side by side")
    parser.add_argument("--games", action="store_true", help="only env stepping per MinAtar game")
    parser.add_argument("--seaquest", action="store_true",
                        help="only the training rows Seaquest+Breakout and SpaceInvaders+Breakout")
    parser.add_argument("--against", metavar="REV",
                        help="regression guard: the working tree vs this git revision, side by side")
    parser.add_argument("--rounds", type=int, default=3, help="--against: alternated rounds (default 3)")
    parser.add_argument("--iters", type=int, default=None,
                        help="--against, --experts: iterations per timed chunk (default 2000; --experts --minatar 100)")
    parser.add_argument("--affinity", action="store_true",
                        help="only the cost of --affinity-every: CartPole+Acrobot, 4 seeds, off / 100 / 1")
    parser.add_argument("--experts", action="store_true",
                        help="only shared vs moe:3 vs moore:3 (classic; MinAtar with --minatar), time per update "
                             "relative to shared; --iters sets the timed chunk (default 2000, MinAtar 100)")
    parser.add_argument("--row", help=argparse.SUPPRESS)  # internal: measure one row in this process, print JSON
    args = parser.parse_args()
    if args.rounds < 1 or (args.iters is not None and args.iters < 1):
        parser.error("--rounds and --iters must be at least 1")
    if args.against:
        if args.minigrid:  # MiniGrid's updates are conv updates: shorter chunks, as in its table rows
            against(args.against, args.rounds, args.iters or 100, MINIGRID_GUARD_ROWS)
        else:
            against(args.against, args.rounds, args.iters or 2000)
        return
    if args.experts:
        experts_table(args.minatar, args.iters or (100 if args.minatar else 2000), args.rounds)
        return
    if args.row:
        row = json.loads(args.row)
        print(json.dumps(measure(tuple(row["tasks"]), row["seeds"], row["sharing"], row["devices"],
                                 iters=row["iters"], preset=row.get("preset", False),
                                 affinity_every=row.get("affinity_every", 0))))
        return
    if args.affinity:
        affinity_table()
        return
    if args.games:
        from mtdqn.devices import use_cpu_cores

        use_cpu_cores()
        print("| game | µs per vector step of 10 envs | env-steps/s |")
        print("|---|---|---|")
        for name in GAMES:
            us = game_step_us(name)
            print(f"| {name} | {us:,.0f} | {10e6 / us:,.0f} |", flush=True)
        us = game_step_us("Seaquest-MinAtar", gymnax_own=True)
        print(f"| gymnax's Seaquest-MinAtar | {us:,.0f} | {10e6 / us:,.0f} |", flush=True)
        return
    image_rows = [(MINATAR, 1, "shared", 0), (MINATAR, 1, "independent", 0),
                  (MINATAR, 1, "moe:3", 0), (MINATAR, 1, "moore:3", 0),
                  (MINATAR, 2, "shared", 1), (MINATAR, 2, "shared", 0), (SEAQUEST, 1, "shared", 0),
                  ("minatar preset", 1, "shared", 0)]
    rows = [(("CartPole-v1",), 1, "shared", 0), (CLASSIC, 1, "shared", 0)]
    minigrid_rows = [("minigrid-mt7 preset", 1, "shared", 0), ("minigrid-mt7 preset", 2, "shared", 0)]
    if args.minatar:
        rows = image_rows
    elif args.minigrid:
        rows = minigrid_rows
    elif args.seaquest:
        rows = [(SEAQUEST, 1, "shared", 0), (SPACE_INVADERS, 1, "shared", 0)]
    elif not args.quick:
        rows += [
            (CLASSIC, 1, "independent", 0), (CLASSIC, 1, "moe:3", 0), (CLASSIC, 1, "moore:3", 0),
            (("CartPole-v1",), 2, "shared", 1), (("CartPole-v1",), 2, "shared", 0),
            (CLASSIC, 3, "shared", 1), (CLASSIC, 3, "shared", 0),  # 0: 2 + 2 with a dummy seed on 2 cores
            (CLASSIC, 4, "shared", 1), (CLASSIC, 4, "shared", 0),
            *image_rows, *minigrid_rows,
        ]
    from mtdqn.devices import use_cpu_cores

    use_cpu_cores()
    import jax

    peak = matmul_peak_gflops()
    print(f"device: {jax.devices()[0].platform}, {os.cpu_count()} cores, jax {jax.__version__}; "
          f"matmul peak {peak:.1f} GFLOP/s (float32, 512x512, all cores)")
    print()
    print("| tasks | seeds | sharing | devices | XLA threads | env-steps/s (all tasks, seeds) "
          "| env-steps/s per task and seed | compile s | GFLOP/s | % of matmul peak |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for tasks, seeds, sharing, devices in rows:
        # MinAtar's conv updates take ~25 ms each on a 2-core CPU: shorter chunks keep the run to minutes.
        if tasks == "minatar preset":  # the `minatar` study preset's own settings and (published) games
            r = _row_in_subprocess(MINATAR, seeds, sharing, devices, iters=100, preset=True)
        elif tasks == "minigrid-mt7 preset":  # its tasks come from the preset
            r = _row_in_subprocess((), seeds, sharing, devices, iters=100, preset="minigrid-mt7")
        else:
            r = _row_in_subprocess(tasks, seeds, sharing, devices,
                                   iters=100 if tasks[0].endswith("MinAtar") else 2000)
        print(f"| {r['tasks']} | {r['seeds']} | {r['sharing']} | {r['devices']} | {r['threads']} "
              f"| {r['steps_per_s']:,.0f} | {r['per_task']:,.0f} "
              f"| {r['compile_s']:.1f} | {r['gflops']:.2f} | {100 * r['gflops'] / peak:.1f}% |", flush=True)


if __name__ == "__main__":
    main()
