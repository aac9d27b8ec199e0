"""What does --dropout do to DQN?  Acrobot-v1 on the `deramo` protocol with and without it, and why.

Two parts, each printed as a table:

- learning: `mtdqn train --tasks Acrobot-v1` with every setting of `mtdqn study deramo` (80-unit layers,
  Huber loss, hard target copy every 100 updates, ...), a greedy evaluation every 1,000 steps, at each
  --dropout rate: the final score (mean of the last 3 evaluations; undiscounted and discounted, gamma
  0.99) over seeds, and how many seeds end above -120 (the report's Acrobot threshold);
- noise: the same network fitted by Adam (3,000 steps, squared error) to fixed Q-like targets
  (offset + 10 tanh(x W), 3 actions, 512 inputs), with dropout in the fit as the update has it: the
  dropped network's loss at the end against the whole network's (what acting and targets use), at
  targets centred on 0 and on -50 (Acrobot's Q-values run from 0 to about -60).  Dropout's output noise
  grows with the size of the outputs, far more than the fitted whole network's error does.

    python benchmarks/dropout.py                  # ~8 min of 2 cores (10 seeds)
    python benchmarks/dropout.py --seeds 3 --rates 0 0.1
    python benchmarks/dropout.py --table-only     # the learning table again from the runs under --out
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np


def learning(rates: list[float], seeds: int, steps: int, out: Path, table_only: bool = False) -> list[tuple]:
    from mtdqn.config import TrainConfig
    from mtdqn.studies.presets import PRESETS
    from mtdqn.studies.spec import apply_options
    from mtdqn.train.run import train

    options = {**PRESETS["deramo"]()["options"], "hidden": (80, 80)}
    rows = []
    for rate in rates:
        cfg = apply_options(TrainConfig(tasks=("Acrobot-v1",), steps=steps, seeds=seeds), options)
        cfg = dataclasses.replace(cfg, dqn=dataclasses.replace(cfg.dqn, dropout=rate))
        run = out / f"dropout-{rate:g}"
        if table_only:
            summary = json.loads((run / "summary.json").read_text())
            wall = summary["wall_time_s"]
        else:
            start = time.perf_counter()
            summary = train(cfg, run, progress=False, force=True, eval_every=1_000, eval_episodes=10).summary
            wall = time.perf_counter() - start
        final = np.asarray(summary["final_score"]["Acrobot-v1"])
        disc = np.asarray(summary["final_score_discounted"]["Acrobot-v1"])
        rows.append((rate, final.mean(), final.std(), disc.mean(), disc.std(), int((final > -120).sum()),
                     final.size, wall))
    return rows


def noise(rates: list[float], offsets=(0.0, -50.0), updates: int = 3_000) -> list[tuple]:
    import jax
    import jax.numpy as jnp
    import optax

    from mtdqn.config import NetworkConfig
    from mtdqn.networks import Dropout, init_params, make_architecture, q_values
    from mtdqn.tasks import make_task_set

    arch = make_architecture(make_task_set(["Acrobot-v1"]), NetworkConfig(hidden=(80, 80), adapter_width=80))
    params0 = init_params(arch, jax.random.PRNGKey(0))
    obs = jax.random.normal(jax.random.PRNGKey(1), (1, 512, *arch.obs_shape))
    w = jax.random.normal(jax.random.PRNGKey(2), (arch.obs_shape[0], 3))
    opt = optax.adam(1e-3)
    rows = []
    for offset in offsets:
        y = offset + 10 * jnp.tanh(obs @ w)
        for rate in rates:
            def loss(p, k, rate=rate, y=y):
                q = q_values(arch, p, obs, dropout=Dropout.at_rate(rate, k) if rate else None)
                return jnp.mean((q - y) ** 2)

            @jax.jit
            def fit(p, keys, loss=loss):
                def body(carry, k):
                    p, s = carry
                    value, g = jax.value_and_grad(loss)(p, k)
                    u, s = opt.update(g, s, p)
                    return (optax.apply_updates(p, u), s), value
                (p, _), values = jax.lax.scan(body, (p, opt.init(p)), keys)
                return p, values[-100:].mean()

            p, dropped = fit(params0, jax.random.split(jax.random.PRNGKey(3), updates))
            whole = float(jnp.mean((q_values(arch, p, obs) - y) ** 2))
            rows.append((offset, rate, float(dropped), whole))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rates", type=float, nargs="+", default=[0.0, 0.01, 0.1])
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--steps", type=int, default=50_000)
    ap.add_argument("--out", type=Path, default=Path("runs/bench-dropout"))
    ap.add_argument("--only", choices=["learning", "noise"])
    ap.add_argument("--table-only", action="store_true", help="read the learning runs under --out, train nothing")
    args = ap.parse_args()
    if args.only != "noise":
        print(f"Acrobot-v1, deramo protocol, {args.steps:,} steps, greedy final score (mean of the last 3 "
              "evaluations)\n")
        print("| --dropout | final (mean ± std over seeds) | final, discounted | seeds above -120 | wall |")
        print("|---|---|---|---|---|")
        rows = learning(args.rates, args.seeds, args.steps, args.out, args.table_only)
        for rate, mean, std, disc, disc_std, above, n, wall in rows:
            print(f"| {rate:g} | {mean:.1f} ± {std:.1f} | {disc:.1f} ± {disc_std:.1f} | {above}/{n} | {wall:.0f} s |")
    if args.only != "learning" and not args.table_only:
        print("\nsupervised fit of Q-like targets, squared error over the last 100 of 3,000 Adam updates "
              "(dropped) and of the fitted whole network\n")
        print("| targets centred on | --dropout | dropped network's loss | whole network's loss |")
        print("|---|---|---|---|")
        for offset, rate, dropped, whole in noise(args.rates):
            print(f"| {offset:g} | {rate:g} | {dropped:.3g} | {whole:.3g} |")


if __name__ == "__main__":
    main()
