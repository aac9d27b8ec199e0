"""Test setup: CPU only, strict rank promotion, a persistent compilation cache.

JAX compiles dominate the suite's time, so compiled programs are cached on
disk between runs (``.jax_cache/``, ignored by git) and configs are shared
across tests through session fixtures.
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ["JAX_PLATFORMS"] = "cpu"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import jax  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")
# Two CPU devices, as the CLI gives a 2-core machine: multi-seed tests run their seeds sharded over both.
jax.config.update("jax_num_cpu_devices", 2)
jax.config.update("jax_compilation_cache_dir", str(Path(__file__).resolve().parent.parent / ".jax_cache"))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


# ---------------------------------------------------------------- trained runs shared by the whole session
# Each is trained once per test run (per xdist worker) and only read by tests: a test that changes a run
# copies it first.  They train helpers.TINY, so the suite compiles that training program once.

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """helpers.TINY trained with greedy evaluations every 1,000 steps (2 episodes each)."""
    from helpers import TINY

    from mtdqn.train.run import train

    return train(TINY, tmp_path_factory.mktemp("tiny_run"), progress=False, eval_episodes=2, eval_every=1000)


@pytest.fixture(scope="session")
def tiny_run_final_eval_only(tmp_path_factory):
    """helpers.TINY trained again, with only the final evaluation: evaluations never touch training, so its
    parameters and metrics are tiny_run's, bit for bit."""
    from helpers import TINY

    from mtdqn.train.run import train

    return train(TINY, tmp_path_factory.mktemp("tiny_final_only"), progress=False, eval_episodes=2)
