"""Issue 22's six repaired tests, each run against a deliberate break of what it guards: every break must fail it.

    .venv/bin/python tests/deliberate_breaks.py   # ~1 min; prints CAUGHT or MISSED per break, exit 1 if any is missed

Each test runs first unbroken (it must pass); then the break edits one source file in place, the test runs
again and must fail an assertion (exit code 1, "1 failed"), and the file is restored, also when interrupted.
It refuses to start on a file with uncommitted changes, so a restore can never lose work; do not run other
jobs from this checkout meanwhile (they would import the broken module).  Not collected by pytest (no test_
prefix): it is a check of the tests, run by hand.
"""
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[1])
BREAKS = [
    ("classic extra tasks: no update ever runs", "mtdqn/train/step.py",
     "    due = (t >= agent.derived.learning_starts_iters) & (t % agent.derived.train_every_iters == 0)",
     "    due = jnp.bool_(False) & (t >= agent.derived.learning_starts_iters)",
     "tests/test_classic_extra_tasks.py::test_trains_through_the_compiled_loop"),
    ("checkpoint: DWA's state empty (the old test passed vacuously on an empty list)", "mtdqn/strategies/dwa.py",
     "        return DWAState(ones, jnp.zeros_like(ones), jnp.int32(0), ones, ones, jnp.int32(0))",
     "        return ()",
     "tests/test_checkpoint.py::test_stateful_strategies_round_trip"),
    ("mid-run write failure: OSError no longer turned into one line", "mtdqn/cli/entry.py",
     "    except OSError as exc:  # disk full or a folder that became unwritable mid-run",
     "    except MemoryError as exc:  # disk full or a folder that became unwritable mid-run",
     "tests/test_bad_inputs.py::test_write_failure_mid_run_is_one_line"),
    ("report verdicts: 'higher' and 'lower' swapped", "mtdqn/analysis/findings.py",
     '    word = "higher" if diff.value > 0.0 else "lower"',
     '    word = "lower" if diff.value > 0.0 else "higher"',
     "tests/test_report.py::test_findings_carry_numbers_and_seed_counts"),
    ("report at 5 seeds: intervals withheld (MIN_SEEDS 8)", "mtdqn/analysis/stats.py",
     None, None, "tests/test_report_stats.py::test_five_seeds_have_no_smoke_test_note"),
    ("study cells: the study's eval_every dropped", "mtdqn/studies/spec.py",
     "reference=reference, thresholds=thresholds, options=options, run_options=run_options,",
     "reference=reference, thresholds=thresholds, options=options, run_options=RunOptions(),",
     "tests/test_periodic_eval.py::test_study_cells_evaluate_during_training"),
]
env = {**os.environ, "JAX_DISABLE_MOST_OPTIMIZATIONS": "1", "JAX_PLATFORMS": "cpu"}


def run(test: str) -> tuple[int, str]:
    """(pytest's exit code, its summary line) for one test, as `make test-fast` runs it."""
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:xdist", test], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=600)
    last = [ln for ln in r.stdout.splitlines() if " passed" in ln or " failed" in ln or " error" in ln][-1:]
    return r.returncode, last[0] if last else r.stdout[-300:]


dirty = subprocess.run(["git", "status", "--porcelain", "--", *{b[1] for b in BREAKS}], cwd=ROOT,
                       capture_output=True, text=True, check=True).stdout.strip()
if dirty:
    sys.exit(f"error: uncommitted changes in a file a break edits; commit or stash them first:\n{dirty}")
missed = 0
for what, path, old, new, test in BREAKS:
    code, line = run(test)  # unbroken, it passes: a failure below is the break's
    if code != 0:
        sys.exit(f"error: {test} fails unbroken ({line}): fix it before checking what it catches")
    p = Path(ROOT) / path
    text = p.read_bytes()
    if old is None:  # MIN_SEEDS
        m = re.search(rb"^MIN_SEEDS(: int)? = (\d+)", text, re.M)
        old_b, new_b = m.group(0), m.group(0).replace(m.group(2), str(int(m.group(2)) + 3).encode())
    else:
        old_b, new_b = old.encode(), new.encode()
    if text.count(old_b) != 1:
        sys.exit(f"error: {path} no longer holds the text this break edits ({old_b[:60]!r}...): update BREAKS")
    try:
        p.write_bytes(text.replace(old_b, new_b))
        code, line = run(test)
    finally:
        p.write_bytes(text)
    caught = code == 1 and "1 failed" in line  # a failed assertion, not a collection error (exit 2, 4, ...)
    print(f"{'CAUGHT' if caught else 'MISSED'}  {what}: {test} -> {line}", flush=True)
    missed += not caught
sys.exit(1 if missed else 0)
