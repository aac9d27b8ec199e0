"""Bisect the GPU evaluation's slow policy side (benchmarks/results/minigrid_mt5.md, "taken apart").

On a lent H200 one MT5 evaluation scan step took ~11.7 ms, of which the environments 0.18 ms; the same
network's forward pass inside a training iteration costs far less.  This times pieces of the policy, each
vmapped over the seeds as the evaluation is, in a ``lax.scan`` of ``--horizon`` steps, plus the forward
pass jitted alone, so that the piece which is slow inside the loop shows itself:

    python3 benchmarks/gpu_policy_bisect.py --seeds 10 --horizon 200 > $OUT/bisect.txt

First found (lent H200, 2026-12-04 18:2x UTC, JAX 0.11.2; benchmarks/results/minigrid_mt5_gpu/bisect_h200_1.txt
and _2.txt): ``act`` on observations passed in, 0.04 ms per step; the same with the environments reset *inside
the same program* (as eval_cost.py's "policy alone" did), 85.8 ms per step.  ``evaluate_params`` has since
compiled its reset apart (same episodes, same returns; the CPU's speed within noise); the two "evaluation" rows
are the next GPU's check:
the evaluation in one program as it was against the same episodes as it runs now.

Prints a table: piece, ms per scan step (best of ``--repeats``), first call's seconds (compile included).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="minigrid-mt5")
    parser.add_argument("--variant", default="shared")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--horizon", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--only", default="", help="comma-separated piece names (default: all)")
    args = parser.parse_args()

    import throughput
    from eval_cost import best_of

    from mtdqn.devices import unroll_cpu_threefry

    unroll_cpu_threefry()
    import jax
    import jax.numpy as jnp
    import numpy as np

    from mtdqn.networks.model import _adapter_and_first_conv, _inputs, q_values, torso_features
    from mtdqn.tasks import reset_envs
    from mtdqn.train.agent import make_agent
    from mtdqn.train.loop import make_trainer, seed_keys
    from mtdqn.train.step import act

    cfg = throughput.preset_config(args.preset, args.seeds, args.variant, 1, 1)
    trainer = make_trainer(make_agent(cfg), 0)
    agent = trainer.agent
    params = trainer.init(seed_keys(agent.seeds)).params
    arch = agent.arch
    episodes = 16
    keys = jax.random.split(jax.random.PRNGKey(0), args.seeds)
    obs0 = jax.vmap(lambda k: reset_envs(agent.task_set, k, episodes)[0])(keys)  # (seeds, tasks, envs, ...)
    print(f"JAX {jax.__version__}, {jax.devices()}; obs {obs0.shape} {obs0.dtype}; horizon {args.horizon}")

    def rolled(piece: Callable[[Any, Any, Any], Any], cast: bool = False) -> Callable[..., Any]:
        """A scan whose carry holds observations that move each step (the piece cannot be hoisted)."""
        def one_seed(p, obs, key):
            obs = obs.astype(jnp.float32) if cast else obs

            def body(carry, k):
                o, total = carry
                return (jnp.roll(o, 1, axis=1), total + piece(p, o, k).sum().astype(jnp.float32)), None
            return jax.lax.scan(body, (obs, jnp.float32(0)), jax.random.split(key, args.horizon))[0][1]
        return jax.jit(jax.vmap(one_seed))

    def stacked(piece: Callable[[Any, Any, Any], Any]) -> Callable[..., Any]:
        """The observations as the scan's xs (precomputed), nothing carried but a sum."""
        def one_seed(p, obs, key):
            xs = jnp.stack([jnp.roll(obs, i, axis=1) for i in range(8)])
            xs = jnp.tile(xs, (args.horizon // 8, *([1] * obs.ndim)))

            def body(total, o):
                return total + piece(p, o, key).sum().astype(jnp.float32), None
            return jax.lax.scan(body, jnp.float32(0), xs)[0]
        return jax.jit(jax.vmap(one_seed))

    eps = jnp.float32(0.0)

    def traced_eps(inside_reset: bool, barrier: bool = False) -> Callable[..., Any]:
        """``act`` with epsilon an argument (as the evaluation passes it), observations from outside or from a
        reset inside the same program (as eval_cost.py's "policy alone")."""
        def one_seed(p, obs, key, e):
            if inside_reset:
                obs = reset_envs(agent.task_set, key, episodes)[0]
                if barrier:  # XLA may not move or fuse anything across it
                    obs = jax.lax.optimization_barrier(obs)

            def body(carry, k):
                o, total = carry
                return (jnp.roll(o, 1, axis=1), total + act(agent, p, o, k, e).sum()), None
            return jax.lax.scan(body, (obs, jnp.int32(0)), jax.random.split(key, args.horizon))[0][1]
        return jax.jit(jax.vmap(one_seed, in_axes=(0, 0, 0, None)))

    from mtdqn.evaluate import evaluate_params, rollout_returns

    horizon = max(task.max_episode_steps for task in agent.task_set.tasks)
    eval_one = jax.jit(jax.vmap(lambda p, k, e: rollout_returns(agent, p, k, episodes, e), in_axes=(0, 0, None)))
    def eval_two(p, k, e):  # evaluate_params as users run it: keys from seed 0 are ``keys``, the same episodes
        return evaluate_params(agent, p, 0, episodes, float(e))

    pieces: dict[str, tuple[Callable[..., Any], tuple[Any, ...], int]] = {
        "act (argmax, random draws), rolled uint8 obs": (rolled(lambda p, o, k: act(agent, p, o, k, eps)),
                                                         (params, obs0, keys), args.horizon),
        "evaluation, one program (as before dc33529)": (eval_one, (params, keys, eps), horizon),
        "evaluation, the reset a program of its own (as evaluate_params)": (eval_two, (params, keys, eps), horizon),
        "act, epsilon traced": (traced_eps(False), (params, obs0, keys, eps), args.horizon),
        "act, epsilon traced, reset in the program": (traced_eps(True), (params, obs0, keys, eps), args.horizon),
        "act, epsilon traced, reset in the program behind an optimization barrier": (
            traced_eps(True, barrier=True), (params, obs0, keys, eps), args.horizon),
        "q_values, rolled uint8 obs": (rolled(lambda p, o, k: q_values(arch, p, o)), (params, obs0, keys),
                                       args.horizon),
        "q_values, rolled float32 obs": (rolled(lambda p, o, k: q_values(arch, p, o), cast=True),
                                         (params, obs0, keys), args.horizon),
        "q_values, obs as scan xs": (stacked(lambda p, o, k: q_values(arch, p, o)), (params, obs0, keys),
                                     args.horizon // 8 * 8),
        "torso_features, rolled uint8 obs": (rolled(lambda p, o, k: torso_features(arch, p, o)),
                                             (params, obs0, keys), args.horizon),
        "adapter + first conv, rolled uint8 obs": (
            rolled(lambda p, o, k: _adapter_and_first_conv(arch, p, _inputs(arch, o, None))), (params, obs0, keys),
            args.horizon),
        "q_values, one seed (no seed vmap), rolled": (
            rolled(lambda p, o, k: q_values(arch, p, o)), (jax.tree.map(lambda x: x[:1], params), obs0[:1], keys[:1]),
            args.horizon),
        "q_values jitted alone (one call, no loop)": (jax.jit(jax.vmap(lambda p, o: q_values(arch, p, o))),
                                                      (params, obs0), 1),
    }
    one, two = eval_one(params, keys, eps), eval_two(params, keys, eps)
    same = all(bool((np.asarray(a) == b).all()) for a, b in zip(one, two))
    print(f"the two evaluations' returns identical: {same}")
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    print("| piece | ms per step | first call s |\n|---|---|---|")
    for name, (fn, fargs, steps) in pieces.items():
        if only and not any(o in name for o in only):
            continue
        first, best = best_of(fn, *fargs, repeats=args.repeats)
        print(f"| {name} | {best / steps * 1e3:.3f} | {first:.1f} |", flush=True)


if __name__ == "__main__":
    main()
