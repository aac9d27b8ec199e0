"""What one greedy evaluation costs beside the training it interrupts, for a study preset's variant.

On the H200 lent on 2026-12-04 (benchmarks/results/minigrid_mt5.md) an MT5 `independent` cell trained
20k env steps per task in ~8 s and then spent ~17-34 s in each evaluation (TensorBoard's event times: 16
episodes per task, a scan of 720 steps), while on this 2-core CPU an evaluation costs ~3% of the training
between two.  This prints both sides for one configuration, on whatever backend JAX picks, so the next GPU
session can check that ratio in seconds instead of a study:

    python benchmarks/eval_cost.py                          # minigrid-mt5, independent, 2 seeds
    python benchmarks/eval_cost.py --preset minigrid-mt5 --variant shared --seeds 10

Training is timed as ``benchmarks/throughput.py`` times it (the preset's variant cut to chunks that all
update; compile excluded, best of ``--chunks``); the evaluation is ``evaluate_params`` as a run calls it
during training (the preset's episodes, greedy, its second call: compile excluded), best of 3.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/: throughput's preset config


def measure(preset: str, variant: str, seeds: int, iters: int, chunks: int) -> dict[str, float]:
    """Seconds of training per ``eval_every`` env steps and seconds per evaluation; call in a fresh process."""
    import throughput

    from mtdqn.devices import cpu_plan, unroll_cpu_threefry, use_cpu_cores
    from mtdqn.studies.presets import resolve_spec

    spec = resolve_spec(preset, {"seeds": seeds})
    cfg = throughput._preset_config(preset, seeds, variant, chunks, iters)
    use_cpu_cores(*cpu_plan(seeds, cfg.tasks, 0))  # as `mtdqn train` starts JAX
    unroll_cpu_threefry()
    import jax
    import jax.numpy as jnp

    from mtdqn.evaluate import evaluate_params
    from mtdqn.train.agent import make_agent
    from mtdqn.train.loop import make_trainer, seed_keys

    trainer = make_trainer(make_agent(cfg), 0)
    state = trainer.init(seed_keys(trainer.agent.seeds))
    compiled = trainer.chunk.lower(state, trainer.hypers, jnp.int32(0)).compile()
    state, m = compiled(state, trainer.hypers, jnp.int32(0))
    jax.block_until_ready(m)
    chunk_s = float("inf")
    for c in range(1, chunks + 1):
        t0 = time.perf_counter()
        state, m = compiled(state, trainer.hypers, jnp.int32(c * iters))
        jax.block_until_ready(m)
        chunk_s = min(chunk_s, time.perf_counter() - t0)
    episodes = spec.run_options.eval_episodes
    t0 = time.perf_counter()
    evaluate_params(trainer.agent, state.params, 0, episodes, step=0)  # compiles
    eval_compile_s = time.perf_counter() - t0
    eval_s = float("inf")
    for step in (1, 2, 3):
        t0 = time.perf_counter()
        evaluate_params(trainer.agent, state.params, 0, episodes, step=step)
        eval_s = min(eval_s, time.perf_counter() - t0)
    train_s = chunk_s / (iters * cfg.num_envs) * spec.run_options.eval_every
    return {"backend": jax.default_backend(), "train_s": train_s, "eval_s": eval_s,
            "eval_compile_s": eval_compile_s, "eval_every": spec.run_options.eval_every, "episodes": episodes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="minigrid-mt5")
    parser.add_argument("--variant", default="independent")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--iters", type=int, default=100, help="vector steps per timed training chunk")
    parser.add_argument("--chunks", type=int, default=2)
    args = parser.parse_args()
    r = measure(args.preset, args.variant, args.seeds, args.iters, args.chunks)
    print(f"| preset | variant | seeds | backend | training per eval_every ({r['eval_every']:,} steps per task) | "
          f"one evaluation ({r['episodes']} episodes per task) | evaluation / training | evaluation's compile |")
    print("|---|---|---|---|---|---|---|---|")
    print(f"| {args.preset} | {args.variant} | {args.seeds} | {r['backend']} | {r['train_s']:.1f} s | "
          f"{r['eval_s']:.2f} s | {r['eval_s'] / r['train_s']:.2f} | {r['eval_compile_s']:.1f} s |")


if __name__ == "__main__":
    main()
