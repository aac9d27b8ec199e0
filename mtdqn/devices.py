"""Spreading seeds over local devices: every CPU core does work.

XLA:CPU runs one program on one core (its small matmuls are not split across
threads), so a run that vmaps all seeds on one device leaves the other cores
idle.  JAX can present each core as a CPU device; sharding the seed axis over
them runs the seeds in parallel with no communication at all (seeds never
interact).  On a 2-core machine this doubles a multi-seed run's throughput
(README, performance).  On GPUs the same code spreads seeds over the GPUs.

Two more CPU details.  XLA's CPU thread pool has a thread per core, and a
single device's program of small ops hops between those threads (and cores)
all the time.  For small MLPs one thread per device is ~30% faster; MinAtar's
convolutions instead gain from the pool's intra-op threads (2.4x on 2 cores).
:func:`cpu_plan` picks both counts for a run before JAX starts.  And JAX
lowers the Threefry hash behind every ``jax.random`` call to a rolled
five-step while loop on CPU (smaller programs, faster compiles); a training
iteration makes a dozen such calls, each a loop the CPU runtime steps through.
:func:`unroll_cpu_threefry` gives CPU the straight-line lowering GPUs get.

Numbers depend on the layout in float rounding: a seed vmapped beside others
on one device and the same seed on its own device do not compute bit-identical
values (XLA compiles different batch sizes differently).  The layout is
therefore chosen by a rule of the seed count and the local device count only,
recorded in the run directory, and kept on resume.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from mtdqn.errors import ConfigError, check_devices_asked

__all__ = [
    "use_cpu_cores", "cpu_plan", "seed_devices", "seed_layout", "padded_seeds", "seed_sharding", "over_seeds",
    "Population", "population_layout", "over_members", "unroll_cpu_threefry",
]


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))  # honours taskset / container CPU sets
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def cpu_plan(seeds: int, tasks: Sequence[str], requested: int = 0) -> tuple[int, int]:
    """(devices, threads) for a run, chosen before JAX starts.

    Devices: ``requested``, or as many cores as the seeds can use (:func:`seed_layout`).  Threads in
    XLA's pool: one per device for vector tasks; every core for image tasks (the task facts' kind: MinAtar,
    MiniGrid; and host ``gym:`` tasks), whose convolutions use the intra-op threads.
    """
    from mtdqn.taskfacts import facts  # JAX-free, as this must be

    cores = _usable_cores()
    devices = requested if requested > 0 else seed_layout(seeds, cores)
    conv = any(t.startswith("gym:") or getattr(facts(t), "kind", None) == "image" for t in tasks)
    return devices, max(devices, cores) if conv else devices


def _set_affinity_all_threads(cores: set[int]) -> None:
    for tid in os.listdir("/proc/self/task"):
        try:
            os.sched_setaffinity(int(tid), cores)
        except OSError:  # a thread that ended meanwhile
            pass


def use_cpu_cores(count: int | None = None, threads: int | None = None) -> bool:
    """Present ``count`` (default: every usable core) CPU devices to JAX; True if it took effect.

    ``threads`` below the core count starts XLA with that many pool threads
    (XLA sizes the pool by the cores the process may use when the backend
    starts, so the start happens with a narrowed CPU set, restored right after).
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
    if threads and hasattr(os, "sched_setaffinity") and os.path.isdir("/proc/self/task"):
        allowed = os.sched_getaffinity(0)
        if threads < len(allowed):
            os.sched_setaffinity(0, set(sorted(allowed)[:threads]))
            try:
                jax.devices()  # starts the backends, sizing XLA's CPU pool to the narrowed set
            finally:
                _set_affinity_all_threads(allowed)
    return True


def seed_devices(num_seeds: int, requested: int = 0) -> int:
    """How many local devices the seed axis is split over.

    ``requested`` 0 means as many as pay: the fewest devices that give the
    fewest seeds per device (:func:`seed_layout`).  An explicit count must
    exist here and not exceed the seeds.  A count that does not divide the
    seeds is filled up with dummy seeds (:func:`padded_seeds`).
    """
    available = jax.local_device_count()
    check_devices_asked(requested)
    if requested == 0:
        return seed_layout(num_seeds, available)
    if requested > available:
        raise ConfigError(f"--devices {requested}: only {available} local device(s) here")
    check_devices_asked(requested, num_seeds)
    return requested


def seed_layout(num_seeds: int, devices_available: int) -> int:
    """Devices for ``num_seeds``: the fewest that give the fewest seeds per device.

    Seeds per device decide the wall time (vmapped seeds cost about linearly
    on a CPU core): 3 seeds on 2 cores run as 2 + 2 (one dummy), 9 seeds on
    8 cores as 5 devices x 2 (one dummy) rather than 8 x 2 (seven).
    """
    per_device = -(-max(num_seeds, 1) // max(devices_available, 1))
    return -(-max(num_seeds, 1) // per_device)


def padded_seeds(num_seeds: int, devices: int) -> int:
    """Seeds the compiled program trains: the real ones plus dummies that fill the last device."""
    return -(-num_seeds // devices) * devices


def seed_sharding(devices: int) -> NamedSharding:
    """Leading (seed) axis split over the first ``devices`` local devices; other axes whole."""
    mesh = Mesh(np.array(jax.local_devices()[:devices]), ("seed",))
    return NamedSharding(mesh, PartitionSpec("seed"))


def over_seeds(init_one: Callable[[jax.Array], Any], chunk_one: Callable[[Any, Any, jax.Array], tuple[Any, Any]],
               num_seeds: int, devices: int = 0,
               compiler_options: dict[str, str] | None = None) -> tuple[Callable, Callable, int]:
    """Lay a per-seed ``init`` and ``chunk`` out over seeds and local devices: (init, run_chunk, devices).

    ``init(keys)`` takes one root key per seed; ``run_chunk(states, hypers, start)``
    donates and returns the states, with every metric's leading axis the seed
    (``hypers``: each seed's traced hyperparameters, seed axis first).
    The seed axis is split over ``devices`` (:func:`seed_devices`); seeds never
    interact, so there is no communication.  When the devices do not divide
    the seeds, the state lives whole on every device and each chunk pads it
    with dummy seeds (copies of the first seed's state and hyperparameters,
    every chunk: a seed's numbers never depend on its neighbours' values),
    runs the split program and gathers the real seeds back: one copy of the
    state per chunk, against a core that would otherwise sit idle.  (Dummies
    initialized inside the chunk, as until 2026-12-05, compiled the
    initialization into the training program: tests/test_sweep.py's SMALL with
    3 seeds, helpers.IMAGE with 3 and helpers.TINY with 5 compiled in 6.5,
    13.0 and 8.1 s instead of 5.3, 11.0 and 6.9, the real seeds' numbers the
    same bit for bit.)  ``compiler_options``: XLA's, for ``run_chunk``'s program
    (:func:`mtdqn.train.loop.chunk_compiler_options`).
    """
    n_devices = seed_devices(num_seeds, devices)
    n_padded = padded_seeds(num_seeds, n_devices)
    sharding = seed_sharding(n_devices)  # every state leaf and every metric has the seed axis first
    spread = jax.shard_map(
        _over_local_seeds(chunk_one, n_padded // n_devices), mesh=sharding.mesh,
        in_specs=(sharding.spec, sharding.spec, PartitionSpec()), out_specs=(sharding.spec, sharding.spec),
        check_vma=False,
    )
    init_seeds = jax.vmap(init_one)
    if n_padded == num_seeds:
        init = jax.jit(init_seeds, out_shardings=sharding)
        return init, jax.jit(spread, donate_argnums=(0,), out_shardings=(sharding, sharding),
                             compiler_options=compiler_options), n_devices

    whole = NamedSharding(sharding.mesh, PartitionSpec())

    def padded(tree: Any) -> Any:
        """``tree`` with the dummies appended along the seed axis: copies of its first seed."""
        return jax.tree.map(lambda x: jnp.concatenate([x, jnp.repeat(x[:1], n_padded - num_seeds, axis=0)]), tree)

    def padded_chunk(state: Any, hypers: Any, start: jax.Array) -> tuple[Any, Any]:
        full, full_hypers = padded(state), padded(hypers)
        full, metrics = spread(jax.lax.with_sharding_constraint(full, sharding),
                               jax.lax.with_sharding_constraint(full_hypers, sharding), start)
        return jax.tree.map(lambda x: x[:num_seeds], (full, metrics))

    init = jax.jit(init_seeds, out_shardings=whole)
    return init, jax.jit(padded_chunk, donate_argnums=(0,), out_shardings=(whole, whole),
                         compiler_options=compiler_options), n_devices


def _over_local_seeds(chunk: Callable, local_seeds: int) -> Callable:
    """``chunk`` for one device's block of seeds: vmapped, or squeezed when the block is one seed.

    A vmapped axis of size one is not free in XLA:CPU: the per-task batched
    matmuls of the update get a second batch dimension, and a 3-task
    iteration took ~640 us instead of ~520 us (README, performance).
    """
    if local_seeds > 1:
        return jax.vmap(chunk, in_axes=(0, 0, None))

    def one_seed(state: Any, hypers: Any, start: jax.Array) -> tuple[Any, Any]:
        out = chunk(*jax.tree.map(lambda x: x[0], (state, hypers)), start)
        return jax.tree.map(lambda x: x[None], out)

    return one_seed


class Population(NamedTuple):
    """Where a sweep's members live on the population axis of one compiled program (:func:`population_layout`).

    Member ``m``'s seed ``s`` is entry ``m * per_member + s``: each member
    padded with dummy seeds exactly as the same run alone pads them, so every
    block of ``block`` entries is one device's share of one member's run alone.
    """

    members: int
    seeds: int  # real seeds per member
    per_member: int  # entries per member: its seeds and the dummies its run alone would have
    block: int  # entries per block: a device's share of a run alone
    devices: int  # devices the blocks are split over
    size: int  # entries of the population axis: the members' and whole dummy blocks filling the last device

    def member_entries(self, member: int) -> np.ndarray:
        """Indices of member ``member``'s real seeds on the population axis."""
        return member * self.per_member + np.arange(self.seeds)


def population_layout(members: int, num_seeds: int, devices: int = 0) -> Population:
    """The population axis of ``members`` runs of ``num_seeds`` seeds each.

    A run alone splits its seeds over ``seed_devices(num_seeds, devices)``
    devices in blocks; the population keeps those blocks and those devices,
    so each member computes exactly as its run alone.  XLA rounds an op
    differently at another batch size (a member vmapped with the others) and
    even on a mesh of another size (measured on XLA:CPU), so neither is
    bit-identical; members therefore take turns within a device (``lax.scan``),
    which on a CPU costs ~10% against vmapping them (8 members on one core).
    """
    run_devices = seed_devices(num_seeds, devices)
    per_member = padded_seeds(num_seeds, run_devices)
    block = per_member // run_devices
    return Population(members, num_seeds, per_member, block, run_devices,
                      padded_seeds(members * run_devices, run_devices) * block)


def over_members(init_one: Callable[[jax.Array], Any], chunk_one: Callable[[Any, Any, jax.Array], tuple[Any, Any]],
                 layout: Population, compiler_options: dict[str, str] | None = None) -> tuple[Callable, Callable]:
    """:func:`over_seeds` for a population (``layout``): (init, run_chunk) over its whole axis, dummies included.

    Each device loops over its blocks, each block the program a device runs
    for one run alone; runs with one block per device run it as is.  The loop
    carries the whole state and writes each block back in place: ``lax.map``
    over the blocks built a second state beside the donated one (a sweep's
    peak at 2.4x its state, measured, where replay fills the host).
    """
    sharding = seed_sharding(layout.devices)
    blocks_per_device = layout.size // layout.devices // layout.block
    one_block = _over_local_seeds(chunk_one, layout.block)

    def local(state: Any, hypers: Any, start: jax.Array) -> tuple[Any, Any]:
        if blocks_per_device == 1:
            return one_block(state, hypers, start)
        blocked, blocked_hypers = jax.tree.map(lambda x: x.reshape(blocks_per_device, layout.block, *x.shape[1:]),
                                               (state, hypers))

        def run_block(carried: Any, i_hypers: tuple[jax.Array, Any]) -> tuple[Any, Any]:
            i, block_hypers = i_hypers
            new, metrics = one_block(jax.tree.map(lambda x: x[i], carried), block_hypers, start)
            return jax.tree.map(lambda x, n: x.at[i].set(n), carried, new), metrics

        out = jax.lax.scan(run_block, blocked, (jnp.arange(blocks_per_device), blocked_hypers))
        return jax.tree.map(lambda x: x.reshape(blocks_per_device * layout.block, *x.shape[2:]), out)

    spread = jax.shard_map(local, mesh=sharding.mesh, in_specs=(sharding.spec, sharding.spec, PartitionSpec()),
                           out_specs=(sharding.spec, sharding.spec), check_vma=False)
    init = jax.jit(jax.vmap(init_one), out_shardings=sharding)
    return init, jax.jit(spread, donate_argnums=(0,), out_shardings=(sharding, sharding),
                         compiler_options=compiler_options)


def unroll_cpu_threefry() -> bool:
    """Lower Threefry on CPU without its rolled loop; True if it took effect.

    Same hash, same bits (a test compares against a process that keeps the
    default); ~5-10% faster training iterations, at no extra compile.  Uses
    JAX internals, so an upgrade that moves them just leaves the default in
    place.  Affects programs compiled after the call.

    Two cases keep JAX's default (False): ``MTDQN_ROLLED_THREEFRY=1``, and
    XLA's optimizations turned off (``JAX_DISABLE_MOST_OPTIMIZATIONS=1``, the
    test suite's setting), where nothing simplifies the straight-line hash:
    a small training run then compiled 11.3 s instead of 7.8 s, and trained
    no faster (helpers.TINY, 2026-12-03).  Both are read from the
    environment, so subprocesses and Ray workers choose alike.
    """
    kept_rolled = os.environ.get("MTDQN_ROLLED_THREEFRY", "") in ("1", "true")
    if kept_rolled or jax.config.read("jax_disable_most_optimizations"):
        return False
    try:
        from jax._src.interpreters import mlir
        from jax._src.random import threefry2x32
    except ImportError:
        return False
    rule = getattr(threefry2x32, "_threefry2x32_lowering_rule", None)
    primitive = getattr(threefry2x32, "threefry2x32_p", None)
    if rule is None or primitive is None:
        return False
    mlir.register_lowering(primitive, rule, platform="cpu")
    return True
