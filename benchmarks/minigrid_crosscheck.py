"""Cross-check of our JAX MiniGrid tasks against the ``minigrid`` package: one trained agent, both versions.

Issue 19 asks that the Gymnasium host path (``gym:MiniGrid-...-v0:obs=image``,
the package's own environments stepped in Python) serve as a check of our JAX
versions (:mod:`mtdqn.tasks.minigrid`): the same agent should get the same
returns within noise.  This takes a run trained on our tasks, builds the same
network for the package's tasks (same observation, same 7 actions, so the
same parameters fit), and evaluates the run's latest checkpoint greedily on
both, ``--episodes`` first episodes per task and seed.  Layouts differ between
the two (each draws its own from the same distribution), so the comparison
is of return distributions: per task, a Welch test of the mean over all
seeds' episodes, and the difference with its 95% interval.

    PYTHONPATH=$PWD python benchmarks/minigrid_crosscheck.py RUN [--episodes 200]

Needs the ``minigrid`` package (a test dependency).  Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mtdqn.evaluate import EvalStream, eval_seed, evaluate_params  # noqa: E402
from mtdqn.train.agent import make_agent  # noqa: E402

GREEDY_EPS = 0.0


def _trained_params(run: Path):
    """The run's config and its latest checkpoint's parameters (seeds first), as `mtdqn evaluate` reads them."""
    import jax

    from mtdqn.checkpoint import load_checkpoint, verify_checkpoint
    from mtdqn.rundir import RunDir
    from mtdqn.train.chunks import make_runner
    from mtdqn.train.loop import seed_keys

    run_dir = RunDir(run)
    cfg = run_dir.config()
    agent = make_agent(cfg)
    meta = verify_checkpoint(run_dir.path, cfg)
    trainer, _ = make_runner(agent, 0)
    state, _ = load_checkpoint(run_dir.path, cfg, jax.eval_shape(trainer.init, seed_keys(agent.seeds)), meta)
    return cfg, agent, state.params


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="a run directory trained on MiniGrid-...-v0 tasks (ours)")
    parser.add_argument("--episodes", type=int, default=200, help="greedy first episodes per task and seed")
    args = parser.parse_args()

    cfg, ours, params = _trained_params(args.run)
    if not all(t.startswith("MiniGrid-") for t in cfg.tasks):
        raise SystemExit(f"error: {args.run} was not trained on our MiniGrid tasks only ({', '.join(cfg.tasks)})")
    host_cfg = dataclasses.replace(cfg, tasks=tuple(f"gym:{t}:obs=image" for t in cfg.tasks))
    package = make_agent(host_cfg)
    seed = eval_seed(cfg.seed, EvalStream.EVALUATE_COMMAND)

    t0 = time.perf_counter()
    jax_returns = evaluate_params(ours, params, seed, args.episodes, GREEDY_EPS).total  # (seeds, tasks, episodes)
    t1 = time.perf_counter()
    host_returns = evaluate_params(package, params, seed, args.episodes, GREEDY_EPS).total
    t2 = time.perf_counter()

    print(f"run {args.run}: {len(ours.seeds)} seeds, {args.episodes} greedy episodes per task and seed "
          f"(ours {t1 - t0:.0f} s, the package's on the host {t2 - t1:.0f} s)\n")
    print("| task | ours: mean return (per seed) | package: mean return (per seed) | difference [95% CI] | Welch p |")
    print("|---|---|---|---|---|")
    for i, task in enumerate(cfg.tasks):
        a, b = np.asarray(jax_returns[:, i]), np.asarray(host_returns[:, i])
        per_seed = lambda x: ", ".join(f"{v:.3f}" for v in x.mean(axis=1))  # noqa: E731
        if np.ptp(a) == 0 and np.ptp(b) == 0:  # e.g. a task the agent never solves: nothing to test
            compared = f"not estimable (no variation: every episode {a.flat[0]:.3f} and {b.flat[0]:.3f}) | —"
        else:
            test = stats.ttest_ind(a.ravel(), b.ravel(), equal_var=False)
            ci = test.confidence_interval(0.95)
            compared = f"{a.mean() - b.mean():+.3f} [{ci.low:+.3f}, {ci.high:+.3f}] | {test.pvalue:.2f}"
        print(f"| {task} | {a.mean():.3f} ({per_seed(a)}) | {b.mean():.3f} ({per_seed(b)}) | {compared} |")


if __name__ == "__main__":
    main()
