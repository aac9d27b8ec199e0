"""The throughput targets side by side: PureJaxRL's ``dqn.py`` against ours, rounds alternated in one run.

PureJaxRL's code cannot be committed here, so this script takes a checkout of it (``--dqn``: its
``purejaxrl/dqn.py``, written for commit 31756b1) and the Python of an environment it runs in (``--python``:
the project's jax, jaxlib, gymnax, flax, optax and chex, plus flashbax 0.1.3 and six), and runs a copy with the
edits any jax 0.10 / gymnax 1.0 environment needs, made in a temporary folder and checked to apply
(:data:`EDITS`): no ``import wandb``; ``jax.tree_map`` → ``jax.tree_util.tree_map``; gymnax 1.0's six-value
``step`` in both places it is unpacked (``done = terminated | truncated``); and its ``QNetwork``'s two widths
read from the environment (``--matmuls``: the 8-8 rows).

Each round: the float32 matmul peak (``throughput.matmul_peak_gflops``, every core), then PureJaxRL one seed,
ours one seed of CartPole, PureJaxRL four seeds vmapped, ours 3 classic tasks × 4 seeds (the regression
guard's two rows, ``benchmarks/throughput.py``'s ``GUARD_ROWS``, each measured as
``benchmarks/iteration_parts.py`` measures them: their own process, started as ``mtdqn train`` starts JAX).
PureJaxRL's side is its own CartPole config with ``NUM_SEEDS`` 1 or 4, ``jax.jit(jax.vmap(make_train(config)))``
lowered and compiled first, then the best of 3 runs of 500k steps per seed, compile excluded, as it comes (not
pinned to a core); its last 1,000 iterations' mean return is printed, so a broken edit shows.

The targets (issue 28): one seed ≥ 1.4× PureJaxRL's one seed; the study row ≥ 2.5× PureJaxRL's four vmapped
seeds and ≥ 65% of the round's matmul peak.

    python benchmarks/purejaxrl.py --dqn ~/purejaxrl/purejaxrl/dqn.py --python ~/pj-venv/bin/python
    python benchmarks/purejaxrl.py --dqn ... --python ... --rounds 3 --matmuls
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

WIDTHS_ENV = "PUREJAXRL_WIDTHS"
EDITS = (
    ("no wandb", "import wandb\n", ""),
    ("jax.tree_map is gone from jax 0.10", "jax.tree_map(", "jax.tree_util.tree_map("),
    ("gymnax 1.0's step at init",
     "_obs, _, _reward, _done, _ = env.step(rng, _env_state, _action, env_params)",
     "_obs, _, _reward, _term, _trunc, _ = env.step(rng, _env_state, _action, env_params)\n"
     "        _done = _term | _trunc"),
    ("gymnax 1.0's step in the loop",
     'obs, env_state, reward, done, info = vmap_step(config["NUM_ENVS"])(\n                rng_s, env_state, action\n'
     "            )",
     'obs, env_state, reward, terminated, truncated, info = vmap_step(config["NUM_ENVS"])(\n'
     "                rng_s, env_state, action\n            )\n            done = terminated | truncated"),
    ("the first width", "nn.Dense(120)", "nn.Dense(_WIDTHS[0])"),
    ("the second width", "nn.Dense(84)", "nn.Dense(_WIDTHS[1])"),
    ("the widths read", "\nclass QNetwork",
     f"\n_WIDTHS = [int(w) for w in os.environ.get({WIDTHS_ENV!r}, '120,84').split(',')]\n\n\nclass QNetwork"),
)
"""(why, PureJaxRL's text at 31756b1, its replacement): each must occur in the file given."""

RUNNER = '''
import json, sys, time
import jax
import dqn

seeds = int(sys.argv[1])
config = {"NUM_ENVS": 10, "BUFFER_SIZE": 10000, "BUFFER_BATCH_SIZE": 128, "TOTAL_TIMESTEPS": 5e5,
          "EPSILON_START": 1.0, "EPSILON_FINISH": 0.05, "EPSILON_ANNEAL_TIME": 25e4, "TARGET_UPDATE_INTERVAL": 500,
          "LR": 2.5e-4, "LEARNING_STARTS": 10000, "TRAINING_INTERVAL": 10, "LR_LINEAR_DECAY": False, "GAMMA": 0.99,
          "TAU": 1.0, "ENV_NAME": "CartPole-v1", "SEED": 0, "NUM_SEEDS": seeds, "WANDB_MODE": "disabled"}
rngs = jax.random.split(jax.random.PRNGKey(config["SEED"]), seeds)
compiled = jax.jit(jax.vmap(dqn.make_train(config))).lower(rngs).compile()
best = float("inf")
for _ in range(3):
    t = time.perf_counter()
    out = jax.block_until_ready(compiled(rngs))
    best = min(best, time.perf_counter() - t)
ret = float(out["metrics"]["returns"][..., -1000:].mean())
print(json.dumps({"steps_per_s": seeds * config["TOTAL_TIMESTEPS"] / best, "last_return": ret}))
'''
"""PureJaxRL's own ``main`` with ``NUM_SEEDS`` from argv, timed: compile first, then the best of 3 runs."""


def patched(source: str) -> str:
    """PureJaxRL's ``dqn.py`` with :data:`EDITS`; a SystemExit naming the edit that found nothing to change."""
    if "def make_train" not in source:  # another file altogether (the first edit's line named no such thing)
        raise SystemExit("error: --dqn: not PureJaxRL's purejaxrl/dqn.py (it defines no make_train)")
    for why, old, new in EDITS:
        if old not in source:
            raise SystemExit(f"error: --dqn: {why}: {old.splitlines()[0].strip()!r} is not in this dqn.py "
                             "(written for PureJaxRL at 31756b1)")
        source = source.replace(old, new)
    return source


def purejaxrl_row(python: str, folder: Path, seeds: int, widths: str) -> dict:
    """PureJaxRL's env-steps/s (all seeds) and last return, in its own process."""
    out = subprocess.run([python, "run.py", str(seeds)], cwd=folder, capture_output=True, text=True,
                         env={**os.environ, WIDTHS_ENV: widths})
    if out.returncode != 0:
        tail = (out.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise SystemExit(f"error: PureJaxRL's dqn.py failed under --python {python}: {tail}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/ is not a package
    import iteration_parts

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dqn", required=True, help="PureJaxRL's purejaxrl/dqn.py (commit 31756b1)")
    parser.add_argument("--python", required=True, help="the Python of an environment PureJaxRL's dqn.py runs in")
    parser.add_argument("--rounds", type=int, default=3, help="alternated rounds (default 3)")
    parser.add_argument("--iters", type=int, default=2000, help="our rows: iterations per timed chunk")
    parser.add_argument("--matmuls", action="store_true",
                        help="also each side with 8-8 layers, the same ops at 2%% of the FLOPs: the matmuls' time")
    args = parser.parse_args()
    if args.rounds < 1 or args.iters < 1:
        raise SystemExit("error: --rounds and --iters must be positive integers")
    dqn = Path(args.dqn).expanduser()
    if not dqn.is_file():
        raise SystemExit(f"error: --dqn {args.dqn}: " + ("a folder: give its purejaxrl/dqn.py" if dqn.is_dir() else
                                                           "no such file"))
    found = shutil.which(args.python)
    if found is None:
        raise SystemExit(f"error: --python {args.python}: no such program")
    python = os.path.abspath(found)  # PureJaxRL runs in a temporary folder; not resolved: a venv's python is a link
    source = patched(dqn.read_text())
    sides = dict(zip(("one", "study"), iteration_parts._ablate_rows().values()))  # PureJaxRL: the same seeds
    networks = (("120,84", "none"), ("8,8", iteration_parts.HOLLOW)) if args.matmuls else (("120,84", "none"),)
    with tempfile.TemporaryDirectory(prefix="mtdqn-purejaxrl-") as tmp:
        folder = Path(tmp)
        (folder / "dqn.py").write_text(source)
        (folder / "run.py").write_text(RUNNER)
        rows = []
        for r in range(1, args.rounds + 1):
            peak = iteration_parts._peak_gflops()
            print(f"round {r}: matmul peak {peak:.1f} GFLOP/s", file=sys.stderr, flush=True)
            for widths, part in networks:
                got = {"round": r, "peak": peak, "widths": widths}
                for side, (tasks, seeds) in sides.items():
                    pj = purejaxrl_row(python, folder, seeds, widths)
                    ours = iteration_parts._ablated_in_subprocess(tasks, seeds, part, args.iters)
                    got[side] = {"purejaxrl": pj, "ours": ours}
                    print(f"round {r}, {widths}: PureJaxRL {seeds} seed(s) {pj['steps_per_s']:,.0f} "
                          f"(last return {pj['last_return']:.1f}), ours {ours['tasks']} × {ours['seeds']} "
                          f"{ours['steps_per_s']:,.0f} env-steps/s", file=sys.stderr, flush=True)
                rows.append(got)
    print_table(rows)


def print_table(rows: list[dict]) -> None:
    """The rounds' Markdown table; with --matmuls, the 8-8 rows and each side's µs per iteration after it."""
    print("| round | network | PureJaxRL, 1 seed | ours, CartPole 1 seed | ratio (target ≥ 1.4) "
          "| PureJaxRL, 4 seeds vmapped | ours, 3 tasks × 4 seeds | ratio (target ≥ 2.5) "
          "| ours, 3 tasks × 4 seeds: GFLOP/s of the round's peak (target ≥ 65%) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for got in rows:
        one, study = got["one"], got["study"]
        r1 = one["ours"]["steps_per_s"] / one["purejaxrl"]["steps_per_s"]
        r4 = study["ours"]["steps_per_s"] / study["purejaxrl"]["steps_per_s"]
        gf = study["ours"]["gflops"]
        share = f"{gf:.1f} of {got['peak']:.0f}: {gf / got['peak']:.1%}" if got["widths"] == "120,84" else "—"
        print(f"| {got['round']} | {got['widths'].replace(',', '-')} | {one['purejaxrl']['steps_per_s']:,.0f} "
              f"| {one['ours']['steps_per_s']:,.0f} | {r1:.3f} | {study['purejaxrl']['steps_per_s']:,.0f} "
              f"| {study['ours']['steps_per_s']:,.0f} | {r4:.3f} | {share} |")
    if len({got["widths"] for got in rows}) < 2:
        return
    print()
    print("µs per iteration (one seed: 10 env steps; PureJaxRL's 4 seeds: 40; ours, 3 tasks × 4 seeds: 120), "
          "120-84 / 8-8 / their difference, the matmuls' time:")
    for side, steps in (("one", (10, 10)), ("study", (40, 120))):
        for who, n in zip(("purejaxrl", "ours"), steps):
            us = {got["widths"]: [n / g[side][who]["steps_per_s"] * 1e6 for g in rows if g["widths"] == got["widths"]]
                  for got in rows}
            full, hollow = min(us["120,84"]), min(us["8,8"])
            print(f"- {side}, {who}: {full:.0f} / {hollow:.0f} / {full - hollow:.0f} (the best of each)")


if __name__ == "__main__":
    main()
