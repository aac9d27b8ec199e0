"""Test setup: CPU only, strict rank promotion, a persistent compilation cache.

JAX compiles dominate the suite's time, so compiled programs are cached on
disk between runs (``.jax_cache/``, ignored by git) and configs are shared
across tests through session fixtures.
"""

from __future__ import annotations

import gc
import json
import os
from collections import Counter
from pathlib import Path

os.environ["JAX_PLATFORMS"] = "cpu"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# The persistent compilation cache, exported so that the processes tests start (the CLI, Ray workers) read and
# write the same one.  JAX_COMPILATION_CACHE_DIR (an empty folder) measures the suite as a fresh clone runs it.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(Path(__file__).resolve().parent.parent / ".jax_cache"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")  # every program: -14% cold

import jax  # noqa: E402

# make test's second phase and make test-fast compile without XLA's optimization passes (the Makefile sets
# JAX_DISABLE_MOST_OPTIMIZATIONS) and with XLA:CPU's older loop emitters, which compile the suite's programs
# ~2.5x faster (measured on helpers.TINY: its chunk 10.0 -> 4.0 s, its evaluation 5.5 -> 1.9 s; make test-fast
# 2 min 38 s -> 1 min 51 s).  And each program's machine code generated in one piece, not split into modules
# compiled on parallel threads: with two workers compiling on two cores, the threads only compete (helpers.TINY
# and helpers.IMAGE initialized, trained one chunk and evaluated, in two processes at once, alternated, three
# rounds: 8.7 -> 7.9 s of compiling per process, -10%).  Exported before the CPU backend starts, so the processes
# tests start use them too.  Tests of the bits users' programs compute are marked `optimized`: they run with
# none of them.
NO_OPT_XLA_FLAGS = "--xla_cpu_use_fusion_emitters=false --xla_cpu_parallel_codegen_split_count=1"
if jax.config.read("jax_disable_most_optimizations"):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {NO_OPT_XLA_FLAGS}".strip()
jax.config.update("jax_numpy_rank_promotion", "raise")
# Two CPU devices, as the CLI gives a 2-core machine: multi-seed tests run their seeds sharded over both.
jax.config.update("jax_num_cpu_devices", 2)
jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
jax.config.update("jax_persistent_cache_min_compile_time_secs",
                  float(os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"]))
# The Threefry lowering the CLI, the Python API and Ray workers install (the same bits, a different program):
# installed once here, every program a test compiles is the one those processes compile, whatever the order
# of tests in a worker, so the persistent cache serves them across tests, subprocesses and workers.  Under
# JAX_DISABLE_MOST_OPTIMIZATIONS (make test's second phase) it keeps JAX's rolled loop, there and in them.
from mtdqn.devices import unroll_cpu_threefry  # noqa: E402

unroll_cpu_threefry()


# ---------------------------------------------------------------- trained runs shared by the whole session
# Each is trained once per test run (per xdist worker) and only read by tests: a test that changes a run
# copies it first.  They train helpers.TINY, so the suite compiles that training program once.

import pytest  # noqa: E402
from xdist_order import hand_out_order  # noqa: E402


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """helpers.TINY trained with greedy evaluations every 1,000 steps (2 episodes each)."""
    from helpers import TINY

    from mtdqn.train.run import train

    return train(TINY, tmp_path_factory.mktemp("tiny_run"), progress=False, eval_episodes=2, eval_every=1000)


@pytest.fixture(scope="session")
def local_study(tmp_path_factory):
    """helpers.TINY_STUDY run by the local backend, report included: test_study reads (and copies) it, test_ray
    compares the same study run on Ray with it; the two modules are one xdist group, so it is trained once."""
    from helpers import spec_file

    from mtdqn.studies import load_spec, run_study

    tmp = tmp_path_factory.mktemp("local")
    out = tmp / "study"
    result = run_study(load_spec(spec_file(tmp)), out, progress=False)
    assert result.report == out / "report" / "report.html"
    return out


@pytest.fixture(scope="session")
def tiny_run_final_eval_only(tmp_path_factory):
    """helpers.TINY trained again, with only the final evaluation: evaluations never touch training, so its
    parameters and metrics are tiny_run's, bit for bit."""
    from helpers import TINY

    from mtdqn.train.run import train

    return train(TINY, tmp_path_factory.mktemp("tiny_final_only"), progress=False, eval_episodes=2)


# ---------------------------------------------------------------- scheduling under pytest-xdist
# `make test` runs `-n auto --dist loadgroup --no-loadscope-reorder`: a group is one worker's unit of work, and
# units are handed out in collection order.  Every test is grouped with its module (a module's fixtures are
# built once per run), except: the modules reading the session's trained runs form one group (trained once);
# in the modules of ONE_GROUP_PER_TEST, whose module fixtures cost little to build twice, each test is a
# group of its own (the workers share them); GROUP_OF_TEST names the group of some tests: the deramo
# learning test alone (its group is its own name), and the two tune tests that train test_tune.SMALL's
# programs together in file order, so the killed CLI search finds them in the compilation cache; and
# GROUP_OF_MODULE puts a module in another's group (one session fixture they both read).  Units go out in the
# order tests/xdist_order.py picks from their measured cost (group_costs.json, written by
# `tests/profile_summary.py FILE --write-costs` from a profiled `make test`): longest first (LPT), so no long
# unit starts last while the other worker idles, improved where xdist's habit of handing a worker two units at
# once would leave the workers uneven; groups it does not list keep their file order after the
# rest.  Without xdist the marks are inert.
SHARED_RUN_MODULES = {"test_training", "test_periodic_eval", "test_diagnostics"}
ONE_GROUP_PER_TEST = {"test_learning", "test_finetune", "test_tune"}
GROUP_OF_TEST = {
    "test_deramo::test_five_task_shared_agent_learns": "test_deramo::test_five_task_shared_agent_learns",
    **dict.fromkeys(("test_tune::test_search_report_confirm_and_rerun",
                     "test_tune::test_kill_9_resumes_without_redoing_finished_trials"), "test_tune-SMALL-trainers"),
    # test_sweep's bit-for-bit test of the padded layout (~32 s, no module fixture) goes apart from the module's
    # other optimized tests (~60 s, its CLI sweep fixture): as one unit they shared a worker with the MiniGrid
    # learning test and made the first phase's critical path (353 s against 281 s on the other worker).
    "test_sweep::test_a_member_is_its_run_alone_bit_for_bit": "test_sweep-bit-for-bit",
}
# test_ray compares a study run on its Ray cluster with test_study's local one (conftest.local_study): one group.
GROUP_OF_MODULE = {"test_ray": "test_study"}
COST: dict[str, dict[str, float]] = json.loads((Path(__file__).with_name("group_costs.json")).read_text())
PHASES = {"optimized": ("optimized",), "not optimized": ("rest",)}  # -m of make test's phases -> their costs


def group_cost(group: str, markexpr: str) -> float:
    """A group's measured seconds in the tests ``-m markexpr`` selects: one phase's (a group such as test_step
    has tests in both), or both phases' for any other selection."""
    return sum(COST[phase].get(group, 0) for phase in PHASES.get(markexpr, ("optimized", "rest")))


def xdist_group(item: pytest.Item) -> str:
    module, test = item.path.stem, f"{item.path.stem}::{item.name}"
    if test in GROUP_OF_TEST:
        return GROUP_OF_TEST[test]
    if module in ONE_GROUP_PER_TEST:
        return test
    return "tiny_run" if module in SHARED_RUN_MODULES else GROUP_OF_MODULE.get(module, module)


OPTIMIZED_TEXT = b"mark.optimized"  # what a test file holds to be collected by the optimized phase


def pytest_ignore_collect(collection_path, config):
    """`make test`'s first phase (``-m optimized``, by make or by hand) collects only the test files whose text
    holds ``mark.optimized``: each worker would otherwise import all ~60 test modules (and Ray, Optuna, ...) to
    deselect nearly all.  A test marked another way would then run in neither phase: the marker must be
    spelled ``mark.optimized`` in the test's file (pytest_collection_modifyitems refuses any other)."""
    if (config.getoption("markexpr") == "optimized" and collection_path.suffix == ".py"
            and collection_path.name.startswith("test_")):
        return OPTIMIZED_TEXT not in collection_path.read_bytes() or None
    return None


@pytest.hookimpl(wrapper=True)
def pytest_collection_modifyitems(config, items):
    """Before every other implementation (xdist's turns the group marks into node ids): the group marks.  After
    them all (pytest's -m and -k have deselected): the order the selected groups are handed out in, which
    tests/xdist_order.py picks for the run's workers from the groups' measured seconds, each test an equal
    share of its group's (the costs are per group)."""
    unspelled = sorted({str(item.path) for item in items if item.get_closest_marker("optimized")
                        and OPTIMIZED_TEXT not in item.path.read_bytes()})
    if unspelled:
        raise pytest.UsageError(f"{unspelled[0]} marks a test `optimized` without the text `mark.optimized`, "
                                "which the optimized phase's collection looks for (pytest_ignore_collect)")
    for item in items:
        item.add_marker(pytest.mark.xdist_group(xdist_group(item)))
    result = yield
    counts = Counter(xdist_group(item) for item in items)
    markexpr = config.getoption("markexpr")
    tests = {g: [group_cost(g, markexpr) / n] * n for g, n in counts.items()}
    rank = {g: i for i, g in enumerate(hand_out_order(tests, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", 1))))}
    items.sort(key=lambda item: rank[xdist_group(item)])  # stable: a group's tests keep their file order
    return result


# Python's cyclic garbage collector, as it comes (700, 10, 10), runs a young collection every 700 net allocations
# of tracked objects and a full one at most every 100th (once the long-lived objects have grown by a quarter), a
# full one walking every object alive.  Tracing and lowering a program allocate millions: these thresholds alone
# took helpers.TINY's chunk from 0.39 to 0.32 s of tracing and lowering and helpers.IMAGE's from 0.76 to 0.57 s
# (a /tmp script, a fresh process, mean of 3).  So every process of the suite collects rarely, and one that
# collects tests freezes what is alive after that (modules, their functions and constants) out of every collection.
# Measured with both (2026-12-05, tests marked `not optimized`, two workers, a warm compilation cache): 239 s
# against 263 and 255 s as it comes; each worker's peak memory the same (3.2-5.6 GB either way, by the groups
# it drew; full collections still ran: 3 per worker).
GC_THRESHOLDS = (50_000, 20, 50)
gc.set_threshold(*GC_THRESHOLDS)


def pytest_collection_finish(session):
    """`make test` runs the tests marked `optimized` with XLA's optimization passes and the rest without
    (JAX_DISABLE_MOST_OPTIMIZATIONS=1, the Makefile): one setting per process, never switched inside one.
    `make test-fast` is that second process alone, so an `optimized` test must also be `slow`."""
    unmarked = [item.nodeid for item in session.items
                if item.get_closest_marker("optimized") and not item.get_closest_marker("slow")]
    if unmarked:
        pytest.exit(f"{len(unmarked)} tests are marked `optimized` but not `slow` (e.g. {unmarked[0]}): "
                    "make test-fast runs without XLA's optimizations, so mark them `slow` too",
                    returncode=pytest.ExitCode.USAGE_ERROR)
    if jax.config.read("jax_disable_most_optimizations"):
        needs = [item.nodeid for item in session.items if item.get_closest_marker("optimized")]
        if needs:
            pytest.exit(f"{len(needs)} selected tests are marked `optimized` (e.g. {needs[0]}): they need XLA's "
                        "optimizations; unset JAX_DISABLE_MOST_OPTIMIZATIONS or add -m 'not optimized'",
                        returncode=pytest.ExitCode.USAGE_ERROR)
    gc.collect()
    gc.freeze()  # every collected test module imported: what is alive now lives as long as the process


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_node_collection_finished(node, ids):
    """Under --dist loadgroup a worker's test ids carry their group (``id@group``): xdist sends those units
    whole.  pytest 9.2 keeps structured node ids and no longer reads the ``_nodeid`` field xdist 3.8 writes the
    group into (pytest-xdist#1386), so xdist spreads a module's tests over the workers and builds its trained
    fixtures on each: refuse, do not run twice as slow in silence."""
    if node.config.getvalue("dist") == "loadgroup" and ids and not any("@" in i for i in ids):
        raise pytest.UsageError(f"pytest-xdist dropped the test groups ({ids[0]} has no @group): this pytest and "
                                "pytest-xdist do not work together (pytest-xdist#1386); install the versions "
                                "pyproject.toml pins")


# ---------------------------------------------------------------- where the suite's time goes (opt-in)
# MTDQN_TEST_PROFILE=FILE appends one JSON line per test phase: its wall time and the time JAX spent tracing,
# lowering and compiling (a persistent-cache hit counts as a compile, a short one) in this process, with the
# programs that took longest.  Subprocesses a test starts are not seen.  `python tests/profile_summary.py FILE`
# sums it per test file.
_PROFILE = os.environ.get("MTDQN_TEST_PROFILE")
if _PROFILE:
    import time
    from collections import defaultdict

    from jax import monitoring

    _EVENTS = {"/jax/core/compile/jaxpr_trace_duration": "trace",
               "/jax/core/compile/jaxpr_to_mlir_module_duration": "lower",
               "/jax/core/compile/backend_compile_duration": "compile"}
    _spent: dict = defaultdict(float)
    _programs: list = []

    def _on_duration(event: str, seconds: float, **kwargs) -> None:
        kind = _EVENTS.get(event)
        if kind:
            _spent[kind] += seconds
            _spent[kind + "_n"] += 1
            if kind == "compile" and seconds > 0.5:
                _programs.append((round(seconds, 2), kwargs.get("fun_name", "?")))

    monitoring.register_event_duration_secs_listener(_on_duration)

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(item, nextitem):
        _spent.clear()
        _programs.clear()
        start = time.perf_counter()
        yield
        row = {"test": item.nodeid, "wall": round(time.perf_counter() - start, 3), "pid": os.getpid(),
               "phase": "optimized" if item.get_closest_marker("optimized") else "rest",
               **{k: round(v, 3) for k, v in _spent.items()},
               "programs": sorted(_programs, reverse=True)[:8]}
        with open(_PROFILE, "a") as f:
            f.write(json.dumps(row) + "\n")
