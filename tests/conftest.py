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
