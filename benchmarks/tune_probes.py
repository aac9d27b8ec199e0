"""`mtdqn tune`'s trials without the gradient probe and CKA (their default) against with them: wall time.

The same search in fresh processes, alternated: 4 trials (a random sampler over
lr and batch size) on CartPole-v1 + Acrobot-v1, 2 seeds each, 5,000 env steps
per task, a greedy evaluation every 1,000 (the pruner's schedule; the gradient
probe runs at each), no pruner.  ``probes = false`` (a search's default since
2026-12-05) against ``probes = true``.  The trials' returns are the same either
way (the probes read the state and change no number: tests/test_diagnostics.py),
so the difference is the probes' compiling and running.

    python benchmarks/tune_probes.py [--rounds 2] [--steps 5000]

Prints a Markdown table: one row per run, in the order they ran.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

_ONE = """
import json, sys, time
import mtdqn
probes, out, steps = sys.argv[1] == "1", sys.argv[2], int(sys.argv[3])
table = {"name": "probes", "tasks": ["CartPole-v1", "Acrobot-v1"], "steps": steps, "seeds": 2, "trials": 4,
         "sampler": "random", "pruner": "none", "objective": "final", "eval_every": steps // 5, "eval_episodes": 5,
         "probes": probes, "options": {"log_every": steps // 10, "learning_starts": steps // 10,
                                       "buffer_size": steps},
         "space": {"lr": {"log": [1e-4, 1e-2]}, "batch_size": {"choice": [32, 64]}}}
start = time.perf_counter()
mtdqn.tune(table, out, n_trials=4, progress=False)
print(json.dumps({"wall": time.perf_counter() - start}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5000)
    args = parser.parse_args()
    print(f"load average at the start: {os.getloadavg()[0]:.2f}")
    print("| round | probes | wall s |\n|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for probes in (0, 1):
                out = os.path.join(tmp, f"tune-{r}-{probes}")
                done = subprocess.run([sys.executable, "-c", _ONE, str(probes), out, str(args.steps)],
                                      capture_output=True, text=True, check=True)
                wall = json.loads(done.stdout.strip().splitlines()[-1])["wall"]
                print(f"| {r + 1} | {'on' if probes else 'off'} | {wall:.1f} |", flush=True)
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
