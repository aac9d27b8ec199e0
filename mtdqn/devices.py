"""Spreading seeds over local devices: every CPU core does work.

XLA:CPU runs one program on one core (its small matmuls are not split across
threads), so a run that vmaps all seeds on one device leaves the other cores
idle.  JAX can present each core as a CPU device; sharding the seed axis over
them runs the seeds in parallel with no communication at all (seeds never
interact).  On a 2-core machine this doubles a multi-seed run's throughput
(README, performance).  On GPUs the same code spreads seeds over the GPUs.

Numbers depend on the layout in float rounding: a seed vmapped beside others
on one device and the same seed on its own device do not compute bit-identical
values (XLA compiles different batch sizes differently).  The layout is
therefore chosen by a rule of the seed count and the local device count only,
recorded in the run directory, and kept on resume.
"""

from __future__ import annotations

import os
import re

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from mtdqn.errors import ConfigError

__all__ = ["use_cpu_cores", "seed_devices", "seed_sharding"]


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))  # honours taskset / container CPU sets
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def use_cpu_cores(count: int | None = None) -> bool:
    """Present ``count`` (default: every usable core) CPU devices to JAX; True if it took effect.

    Must run before JAX's first computation in the process (the CLI, a Ray
    worker and the benchmarks call it first thing).  A device count the user
    chose (``XLA_FLAGS=--xla_force_host_platform_device_count``) or set
    earlier is left alone, and so is a process whose backend already started.
    """
    if re.search(r"xla_force_host_platform_device_count", os.environ.get("XLA_FLAGS", "")):
        return False
    if jax.config.jax_num_cpu_devices != -1:  # already chosen in this process
        return False
    try:
        jax.config.update("jax_num_cpu_devices", count or _usable_cores())
    except RuntimeError:  # backends already initialized: keep what this process has
        return False
    return True


def seed_devices(num_seeds: int, requested: int = 0) -> int:
    """How many local devices the seed axis is split over.

    ``requested`` 0 means as many as possible: the largest divisor of
    ``num_seeds`` not above the local device count (equal shards keep one
    compiled program).  An explicit count must divide the seeds and exist here.
    """
    available = jax.local_device_count()
    if requested < 0:
        raise ConfigError(f"--devices must be >= 0 (0: as many as divide the seeds), got {requested}")
    if requested == 0:
        return max(d for d in range(1, min(available, num_seeds) + 1) if num_seeds % d == 0)
    if requested > available:
        raise ConfigError(f"--devices {requested}: only {available} local device(s) here")
    if num_seeds % requested:
        raise ConfigError(f"--devices {requested} must divide the number of seeds ({num_seeds})")
    return requested


def seed_sharding(devices: int) -> NamedSharding:
    """Leading (seed) axis split over the first ``devices`` local devices; other axes whole."""
    mesh = Mesh(np.array(jax.local_devices()[:devices]), ("seed",))
    return NamedSharding(mesh, PartitionSpec("seed"))
