"""What one greedy evaluation costs beside the training it interrupts, for a study preset's variant.

On the H200 lent on 2026-12-04 (benchmarks/results/minigrid_mt5.md) an MT5 `independent` cell trained
20k env steps per task in ~8 s and then spent ~17-34 s in each evaluation (TensorBoard's event times: 16
episodes per task, a scan of 720 steps), while on this 2-core CPU an evaluation costs ~3% of the training
between two.  This prints both sides for one configuration, on whatever backend JAX picks, so the next GPU
session can check that ratio in seconds instead of a study:

    python benchmarks/eval_cost.py                          # minigrid-mt5, independent, 2 seeds
    python benchmarks/eval_cost.py --preset minigrid-mt5 --variant shared --seeds 10
    python benchmarks/eval_cost.py --seeds 10 --no-train --parts   # the evaluation's scan taken apart

``--parts`` times two more scans of the evaluation's length beside it, seeds vmapped as there: the
environments alone (uniform random actions, no network) and the policy alone (``act`` on the first
observations, moved one env along at each step so the network cannot be hoisted out of the loop, with epsilon
a traced argument as in the evaluation), so a slow evaluation can be put down to one or the other.
``--no-train`` skips the training side (its compile is over a minute on a GPU).

Training is timed by ``benchmarks/throughput.py``'s ``time_chunks`` (the preset's variant cut to chunks that
all update; compile excluded, best of ``--chunks``); the evaluation is ``evaluate_params`` as a run calls it
during training (the preset's episodes, greedy; its first call includes the compile, then the best of
``--repeats``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/: throughput's preset config


def best_of(fn, *args, repeats: int = 3) -> tuple[float, float]:
    """(first call's seconds, compile included; the fastest of ``repeats`` later calls)."""
    import jax

    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    first = time.perf_counter() - t0
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        best = min(best, time.perf_counter() - t0)
    return first, best


def _part_scans(agent, params, episodes: int) -> dict[str, Any]:
    """Jitted scans of the evaluation's horizon, seeds vmapped: env steps alone, and greedy actions alone."""
    import jax
    import jax.numpy as jnp

    from mtdqn.tasks import reset_envs, step_envs
    from mtdqn.train.step import act

    horizon = max(task.max_episode_steps for task in agent.task_set.tasks)
    n_actions = jnp.asarray([t.num_actions for t in agent.task_set.tasks])[:, None]

    def envs_only(key):
        obs, states = reset_envs(agent.task_set, key, episodes)

        def body(states, k):
            k_act, k_env = jax.random.split(k)
            actions = jax.random.randint(k_act, obs.shape[:2], 0, n_actions)
            states, out = step_envs(agent.task_set, states, actions, k_env)
            return states, out.reward.sum() + out.obs.sum()  # the observations used: not eliminated
        return jax.lax.scan(body, states, jax.random.split(key, horizon))[1].sum()

    def policy_only(p, obs, key, eps):  # obs passed in (since 70533f7): with the reset in this program a
        # GPU ran its steps at 23.9 ms, and benchmarks/gpu_policy_bisect.py's like scan at 0.04 ms without it

        def body(carry, k):  # the observations move along the env axis: the network is not hoisted out
            obs, total = carry
            return (jnp.roll(obs, 1, axis=1), total + act(agent, p, obs, k, eps).sum()), None
        return jax.lax.scan(body, (obs, jnp.int32(0)), jax.random.split(key, horizon))[0][1]

    n_seeds = jax.tree.leaves(params)[0].shape[0]
    keys = jax.random.split(jax.random.PRNGKey(0), n_seeds)
    return {"environments alone": (jax.jit(jax.vmap(envs_only)), (keys,)),
            "policy alone": (jax.jit(jax.vmap(policy_only, in_axes=(0, 0, 0, None))),
                             (params, jax.jit(jax.vmap(lambda k: reset_envs(agent.task_set, k, episodes)[0]))(keys),
                              keys, jnp.float32(0.0)))}


def measure(preset: str, variant: str, seeds: int, iters: int, chunks: int, train: bool = True,
            parts: bool = False, repeats: int = 3) -> dict[str, Any]:
    """Seconds of training per ``eval_every`` env steps and seconds per evaluation; call in a fresh process."""
    import throughput

    from mtdqn.devices import cpu_plan, unroll_cpu_threefry, use_cpu_cores
    from mtdqn.studies.presets import resolve_spec

    spec = resolve_spec(preset, {"seeds": seeds})
    cfg = throughput.preset_config(preset, seeds, variant, chunks, iters)
    use_cpu_cores(*cpu_plan(seeds, cfg.tasks, 0))  # as `mtdqn train` starts JAX
    unroll_cpu_threefry()
    import jax

    from mtdqn.evaluate import evaluate_params
    from mtdqn.train.agent import make_agent
    from mtdqn.train.loop import make_trainer, seed_keys

    trainer = make_trainer(make_agent(cfg), 0)
    episodes = spec.run_options.eval_episodes
    result: dict[str, Any] = {"backend": jax.default_backend(), "eval_every": spec.run_options.eval_every,
                              "episodes": episodes, "train_s": float("nan"), "parts": {}}
    if train:
        timed = throughput.time_chunks(trainer, chunks, iters)
        state = timed["state"]
        result["train_s"] = timed["chunk_s"] / (iters * cfg.num_envs) * spec.run_options.eval_every
    else:
        state = trainer.init(seed_keys(trainer.agent.seeds))
    result["eval_compile_s"], result["eval_s"] = best_of(
        lambda: evaluate_params(trainer.agent, state.params, 0, episodes, step=0), repeats=repeats)
    if parts:
        for name, (fn, args) in _part_scans(trainer.agent, state.params, episodes).items():
            result["parts"][name] = best_of(fn, *args, repeats=repeats)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="minigrid-mt5")
    parser.add_argument("--variant", default="independent")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--iters", type=int, default=100, help="vector steps per timed training chunk")
    parser.add_argument("--chunks", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="timed calls of each evaluation scan (the best "
                        "is kept)")
    parser.add_argument("--no-train", action="store_true", help="skip the training side")
    parser.add_argument("--parts", action="store_true", help="also time the environments alone and the policy "
                        "alone over the evaluation's horizon")
    args = parser.parse_args()
    r = measure(args.preset, args.variant, args.seeds, args.iters, args.chunks, train=not args.no_train,
                parts=args.parts, repeats=args.repeats)
    print(f"| preset | variant | seeds | backend | training per eval_every ({r['eval_every']:,} steps per task) | "
          f"one evaluation ({r['episodes']} episodes per task) | evaluation / training | evaluation's compile |")
    print("|---|---|---|---|---|---|---|---|")
    print(f"| {args.preset} | {args.variant} | {args.seeds} | {r['backend']} | {r['train_s']:.1f} s | "
          f"{r['eval_s']:.2f} s | {r['eval_s'] / r['train_s']:.2f} | {r['eval_compile_s']:.1f} s |")
    if r["parts"]:
        print(f"\n| scan of the evaluation's horizon | seconds (best of {args.repeats}) | first call, compile "
              "included |")
        print("|---|---|---|")
        print(f"| the evaluation (policy + environments) | {r['eval_s']:.2f} | {r['eval_compile_s']:.1f} |")
        for name, (first, best) in r["parts"].items():
            print(f"| {name} | {best:.2f} | {first:.1f} |")

if __name__ == "__main__":
    main()
