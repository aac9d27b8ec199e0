"""Everything static about one run, built once from its config.

:class:`Agent` bundles the derived integers, the task set, the architecture,
the optimizer and the strategy.  Compiled functions close over it; nothing in
it is traced.  :class:`TrainState` is the dynamic part: exactly what a
checkpoint must hold to act and to continue.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from mtdqn.config import Derived, TrainConfig, clips_task_by_task, config_hash, derive
from mtdqn.devices import padded_seeds, population_layout, seed_devices
from mtdqn.errors import ConfigError, InsufficientResources, count
from mtdqn.finetune import count_trainable, is_finetuned, partitioned_optimizer
from mtdqn.networks import Architecture, count_params, make_architecture, param_shapes
from mtdqn.replay import Replay
from mtdqn.strategies import Strategy, make_strategy
from mtdqn.tasknames import split_spec
from mtdqn.tasks import TaskSet, custom, make_task_set, obs_dtype
from mtdqn.train.hypers import Hypers, hypers_of

__all__ = ["Agent", "TrainState", "make_agent", "clear_agent_cache", "policy_agent", "make_optimizer", "learning_rate",
           "state_bytes"]


@struct.dataclass
class TrainState:
    """The whole dynamic state of one seed's run (a pytree; vmapped over seeds)."""

    params: Any
    target_params: Any
    opt_state: Any
    strategy_state: Any
    value_norm: Any  # per-task value-normalization statistics (empty when off)
    replay: Replay
    env_states: tuple[Any, ...]
    obs: jax.Array  # (tasks, envs, *obs_shape)
    ep_return: jax.Array  # (tasks, envs) unscaled return of the running episode
    ep_length: jax.Array  # (tasks, envs)
    key: jax.Array
    iteration: jax.Array  # vector steps taken
    updates: jax.Array  # gradient updates taken


@dataclass(frozen=True, eq=False)
class Agent:
    cfg: TrainConfig
    derived: Derived
    task_set: TaskSet
    arch: Architecture
    optimizer: optax.GradientTransformation
    strategy: Strategy

    @property
    def num_tasks(self) -> int:
        return len(self.task_set)

    @property
    def action_mask(self) -> jax.Array:
        return jnp.asarray(self.task_set.action_mask())

    @property
    def reward_scales(self) -> jax.Array:
        return jnp.asarray([t.reward_scale for t in self.task_set.tasks], jnp.float32)

    @property
    def gammas(self) -> tuple[float, ...]:
        """Each task's discount factor: its spec's ``gamma=`` option, else ``--gamma``."""
        return tuple(t.discount(self.cfg.dqn.gamma) for t in self.task_set.tasks)

    @property
    def seeds(self) -> list[int]:
        return [self.cfg.seed + i for i in range(self.cfg.seeds)]

    @property
    def hypers(self) -> Hypers:
        """The config's traced hyperparameters (:mod:`mtdqn.train.hypers`), one seed's."""
        return hypers_of(self.cfg)

    def optimizer_at(self, hp: Hypers) -> optax.GradientTransformation:
        """The run's optimizer with ``hp``'s rate and schedule length (traced values in the compiled loop): the
        same chain, so the same state layout, as :attr:`optimizer`, which initializes it."""
        return make_optimizer(self.cfg, self.derived, self.arch, hp.lr, hp.lr_decay_updates)


def make_optimizer(cfg: TrainConfig, derived: Derived, arch: Architecture | None = None,
                   lr: jax.Array | float | None = None,
                   decay_updates: jax.Array | int | None = None) -> optax.GradientTransformation:
    """adam / adamw / sgd with optional weight decay, lr decay and global-norm clipping.

    ``lr``: the base rate (None: ``--lr``); ``decay_updates``: the updates a
    linear schedule decays it over (None: the run's ``total_updates``).  Traced
    values give the same chain and state layout as numbers, since optax keeps a
    constant rate as a plain multiplier and a schedule's count either way; so
    runs that differ only in ``--steps`` or ``--lr`` share one compiled program.
    A fine-tuned run (``cfg.finetune`` set; ``arch`` needed) gets one such
    optimizer per parameter label (frozen, trunk, ...: :mod:`mtdqn.finetune`).
    """
    base_lr = cfg.dqn.lr if lr is None else lr
    decay = derived.total_updates if decay_updates is None else decay_updates
    if is_finetuned(cfg.finetune):
        if arch is None:
            raise ValueError("a fine-tuned run's optimizer needs its architecture")
        return partitioned_optimizer(cfg.finetune, arch, derived, cfg.num_envs, base_lr,
                                     lambda rate: _optimizer(cfg, rate, decay))
    return _optimizer(cfg, base_lr, decay)


def learning_rate(cfg: TrainConfig, base_lr: jax.Array | float, decay_updates: jax.Array | int) -> optax.Schedule:
    """--lr-schedule as a function of the count of updates already taken: the rate the optimizer applies."""
    if cfg.dqn.lr_schedule == "linear":
        return linear_decay(base_lr, decay_updates)
    return optax.constant_schedule(base_lr)


def linear_decay(base_lr: jax.Array | float, updates: jax.Array | int) -> optax.Schedule:
    """``optax.linear_schedule(base_lr, 0.0, transition_steps=updates)`` with ``updates`` allowed to be traced
    (optax checks ``transition_steps <= 0`` in Python, which a traced value cannot pass), so runs that differ
    only in ``--steps`` share a compiled program.

    Bit for bit the numbers a constant ``updates`` gave: XLA compiles ``count / constant`` as ``count *
    (1 / constant)``, so the reciprocal is taken here (a traced ``count / updates`` would round differently,
    changing every run's trajectory).  ``updates`` >= 1 (:func:`mtdqn.config.derive`).
    """
    def schedule(count: jax.Array) -> jax.Array:
        frac = 1 - jnp.clip(count, 0, updates) * (1.0 / jnp.asarray(updates, jnp.float32))  # float32, on the host too
        return (base_lr - 0.0) * (frac**1) + 0.0

    return schedule


def _optimizer(cfg: TrainConfig, base_lr: jax.Array | float,
               decay_updates: jax.Array | int) -> optax.GradientTransformation:
    d = cfg.dqn
    lr: float | optax.Schedule = base_lr  # a constant rate as a float: the optimizer's state stays as it was
    if d.lr_schedule == "linear":
        lr = learning_rate(cfg, base_lr, decay_updates)
    if d.optimizer == "adam":
        opt = optax.adam(lr)
    elif d.optimizer == "adamw":
        opt = optax.adamw(lr, weight_decay=d.weight_decay)
    elif d.optimizer == "sgd":
        opt = optax.chain(optax.add_decayed_weights(d.weight_decay), optax.sgd(lr))
    else:
        raise ConfigError(f"unknown --optimizer {d.optimizer!r}; valid: adam, adamw, sgd")
    if d.max_grad_norm > 0:
        clip = clip_by_task_norm(d.max_grad_norm, len(cfg.tasks)) if clips_task_by_task(cfg) else \
            optax.clip_by_global_norm(d.max_grad_norm)
        opt = optax.chain(clip, opt)
    return opt


def clip_by_task_norm(max_norm: float, num_tasks: int) -> optax.GradientTransformation:
    """``optax.clip_by_global_norm`` task by task, for a network that shares nothing (every leaf's leading axis
    its task's): each task's gradient clipped by its own norm over its leaves.  The whole tree's norm coupled
    the tasks of ``independent``, one task's large gradient shrinking every other's update, where its networks
    are meant to learn as apart.  Its state is optax's clip's (empty): a checkpoint restores either way."""

    def update(updates: Any, state: Any, params: Any = None) -> tuple[Any, Any]:
        del params
        leaves = jax.tree.leaves(updates)
        if any(x.shape[:1] != (num_tasks,) for x in leaves):
            raise ValueError(f"clip_by_task_norm: every leaf needs a leading axis of the {num_tasks} tasks")
        norm = jnp.sqrt(sum(jnp.sum(jnp.square(x).reshape(num_tasks, -1), axis=1) for x in leaves))  # (tasks,)
        scale = jnp.where(norm < max_norm, 1.0, max_norm / norm)
        return jax.tree.map(lambda x: x * scale.reshape(-1, *[1] * (x.ndim - 1)).astype(x.dtype), updates), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def make_agent(cfg: TrainConfig, devices: int | None = 0) -> Agent:
    """Validate and build the static parts; raises ConfigError on bad input.

    One config gets one Agent per process: configs with the same
    :func:`mtdqn.config.config_hash` (and the same registrations of the
    environments they name) get the agent built first, of the 16 built last.
    The programs jitted with the agent as a static argument
    (:mod:`mtdqn.evaluate`, :mod:`mtdqn.diagnostics`) and the training chunk
    (through :func:`mtdqn.train.chunks.make_runner`) are then traced and
    compiled once per process, not once per run of the same config: resuming,
    a notebook's rerun, the test suite (seconds per run on a CPU).  The memory
    check (:func:`check_memory`, with ``devices`` as ``--devices``) runs every
    time: it is about this machine now.  ``devices=None`` leaves it to the
    caller: one that lays out the seeds itself and checks then (``train``, a
    sweep), or one that only loads a trained agent's parameters (no replay).
    """
    try:
        key = (config_hash(cfg), _registrations(cfg))
    except (TypeError, ValueError):  # not JSON: _build_agent says what is wrong, or builds it uncached
        key = None
    agent = _cached(_BUILT, key, lambda: _build_agent(cfg))
    if devices is not None:
        check_memory(cfg, agent.task_set, agent.arch, devices=devices)
    return agent


def policy_agent(agent: Agent) -> Agent:
    """The agent whose compiled policy rollouts serve ``agent``: the first one seen with the same network, tasks
    (and registrations of the environments they name) and discounts (16 such keys are kept, the most recently
    used).

    A greedy or random rollout (:mod:`mtdqn.evaluate`) reads nothing else of an agent, so configs that differ
    only in how they train (a search's trials, a study's cells of one network, the test suite's variations of
    one config) trace and compile their evaluations once per process instead of once per config: the same
    program, so the same numbers.
    """
    try:
        key = (agent.arch, agent.task_set, agent.gammas, _registrations(agent.cfg))
        hash(key)
    except TypeError:  # something unhashable: the agent serves itself
        return agent
    return _cached(_POLICIES, key, lambda: agent)


def _registrations(cfg: TrainConfig) -> tuple:
    """What each task's name is registered to (:func:`mtdqn.tasks.custom.registration`): part of every cache
    key, so a re-registered environment never meets a program compiled for the old one."""
    return tuple(custom.registration(split_spec(str(spec))[1]) for spec in cfg.tasks)


def _cached(cache: OrderedDict[tuple, Agent], key: tuple | None, build: Any) -> Agent:
    """``cache[key]``, built when missing and (re)inserted last; the 16 most recently used are kept."""
    agent = cache.pop(key, None) or build()
    if key is not None:
        cache[key] = agent
        while len(cache) > 16:
            cache.popitem(last=False)
    return agent


_BUILT: OrderedDict[tuple, Agent] = OrderedDict()  # make_agent's agents, least recently used first
_POLICIES: OrderedDict[tuple, Agent] = OrderedDict()  # policy_agent's, least recently used first


def clear_agent_cache() -> None:
    """Forget the agents :func:`make_agent` and :func:`policy_agent` hold (for code that changes how an agent is
    built, as a test's patch does): the next call builds anew.  What was compiled for the old agents is keyed
    by them, so it is never served to a new one; :func:`mtdqn.train.chunks.make_runner`'s cache (4 loops) and
    JAX's own drop it as they evict."""
    _BUILT.clear()
    _POLICIES.clear()


def _build_agent(cfg: TrainConfig) -> Agent:
    derived = derive(cfg)
    task_set = make_task_set(cfg.tasks)
    arch = make_architecture(task_set, cfg.network, cfg.finetune.lora_rank)
    strategy = make_strategy(derived.strategy, cfg.strategy_args, derived.task_weights)
    if cfg.value_norm == "popart" and arch.head_shared:
        raise ConfigError("--value-norm popart needs per-task heads; it cannot be used with --sharing conditioned")
    if np.prod(task_set.obs_shape) * cfg.dqn.buffer_size * len(task_set) * 2 > 8e9:
        raise ConfigError(f"--buffer-size {cfg.dqn.buffer_size} would need more than 8 GB of replay per seed")
    return Agent(cfg, derived, task_set, arch, make_optimizer(cfg, derived, arch), strategy)


def describe(agent: Agent) -> str:
    """One line: tasks, sharing, strategy, seeds and the parameter counts (total, shared) of one seed; for a
    run started from a trained one, where its trunk comes from and how many parameters it trains."""
    params = param_shapes(agent.arch)
    total, shared = count_params(agent.arch, params)
    norm = " (features at unit RMS)" if agent.arch.unit_rms else ""
    line = (f"mtdqn: {count(len(agent.cfg.tasks), 'task')}, sharing={agent.cfg.network.sharing}{norm}, "
            f"strategy={agent.derived.strategy}, seeds={agent.seeds}, parameters: {total:,} total, {shared:,} shared")
    ft = agent.cfg.finetune
    if not is_finetuned(ft):
        return line
    trainable, _ = count_trainable(ft, agent.arch, params)
    how = (f"LoRA rank {ft.lora_rank}, the trunk frozen" if ft.lora_rank else
           f"freeze={ft.freeze}" + (f", trunk lr {ft.trunk_lr:g}" if ft.trunk_lr else ""))
    return (f"{line}\nmtdqn: {', '.join(agent.cfg.tasks)} from {ft.source}'s trunk ({how}"
            f"{', heads kept' if ft.keep_heads else ''}): trains {trainable:,} of {total:,} parameters")


def state_bytes(state: Any) -> int:
    """Bytes of a (possibly abstract) state: what it takes in memory, and one checkpoint of it on disk."""
    return sum(int(x.size) * x.dtype.itemsize for x in jax.tree.leaves(state))


def state_bytes_per_seed(cfg: TrainConfig, task_set: TaskSet, arch: Architecture) -> int:
    """Bytes of one seed's TrainState: replay (obs and next obs, action, reward, flag) and 4 copies of the
    parameters (online, target, Adam's two moments); env states and metrics are small beside them."""
    obs_bytes = int(np.prod(task_set.obs_shape)) * jnp.dtype(obs_dtype(task_set)).itemsize
    replay = len(task_set) * cfg.dqn.buffer_size * (2 * obs_bytes + 4 + 4 + 1)
    params = state_bytes(param_shapes(arch))
    return replay + 4 * params


def available_host_memory() -> int | None:
    """Bytes the host can still give this process: MemAvailable, capped by a cgroup v2 limit; None if unknown."""
    found: list[int] = []
    try:
        with open("/proc/meminfo") as f:
            found += [int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:")]
    except OSError:
        pass
    try:
        limit, used = (open(f"/sys/fs/cgroup/memory.{n}").read().strip() for n in ("max", "current"))
        if limit != "max":
            found.append(int(limit) - int(used))
    except (OSError, ValueError):
        pass
    return min(found) if found else None


PROCESS_BYTES = 1_200_000_000
"""What a training process holds beside its state (JAX, XLA, the compiled program): 0.87-1.18 GB measured
with a tiny replay (CartPole, Acrobot; one to four sweep members)."""


def peak_state_copies(seeds: int, members: int = 1, devices: int = 0) -> float:
    """Copies of one real seed's state a CPU run's memory peaks at, per real seed (:func:`check_memory`).

    Measured with replay filling the state (CartPole, 4-16 M transitions, 2
    CPU devices): a run alone whose devices divide its seeds peaked at
    1.2-1.67x (orbax's copy while it saves a checkpoint), a sweep at
    1.78-1.97x: 2.  A run alone whose seeds the devices do not divide keeps
    its state whole on every device and pads it each chunk
    (:func:`mtdqn.devices.over_seeds`): 4.96x with 3 seeds on 2 devices,
    2 per device and one for the padding.  A sweep whose members have dummy
    seeds holds them too (:func:`mtdqn.devices.population_layout`) and saves
    its real seeds as one joined copy: 2.87x with 3 seeds a member on 2
    devices, 2.5 per entry of the population.
    """
    if members > 1:
        layout = population_layout(members, seeds, devices)
        return (2.0 if layout.size == members * seeds else 2.5) * layout.size / (members * seeds)
    n_devices = seed_devices(seeds, devices)
    return 2.0 if padded_seeds(seeds, n_devices) == seeds else 2.0 * n_devices + 1


def check_memory(cfg: TrainConfig, task_set: TaskSet, arch: Architecture, members: int = 1,
                 devices: int = 0) -> None:
    """Refuse a CPU run whose seeds cannot fit in host memory, before anything is allocated or written.

    The compiled program holds every seed's state at once, so 100 million
    seeds of CartPole would grow for minutes and then die; a clear error up
    front is kinder.  The estimate is the state times the copies of it the
    run's layout peaks at (:func:`peak_state_copies`) and the process's own
    (:data:`PROCESS_BYTES`): one copy, as until 2026-12-05, let a sweep pass
    that was then killed (2 tasks x 20 M transitions x 4 members: 9.1 GB of
    state; now estimated at 19.4 GB, it peaked at 18.9).  Accelerators keep the
    state in their own memory, which XLA reports itself when it runs out.
    MTDQN_SKIP_MEMORY_CHECK=1 skips the check.  ``members``: a sweep's
    settings, each with the seeds; ``devices``: as ``--devices`` (0: as many
    as the seeds can use).
    """
    if os.environ.get("MTDQN_SKIP_MEMORY_CHECK", "") in ("1", "true") or jax.default_backend() != "cpu":
        return
    available = available_host_memory()
    per_seed = state_bytes_per_seed(cfg, task_set, arch)
    copies = peak_state_copies(cfg.seeds, members, devices)
    needed = copies * members * cfg.seeds * per_seed + PROCESS_BYTES
    what = f"--seeds {cfg.seeds:,}" if members == 1 else f"--sweep's {members:,} settings x --seeds {cfg.seeds:,}"
    if available is not None and needed > available:
        n_devices = seed_devices(cfg.seeds, devices)
        uneven = (f", a multiple of {n_devices} or --devices 1 (seeds the devices do not divide keep a whole copy "
                  "on each)" if members == 1 and padded_seeds(cfg.seeds, n_devices) != cfg.seeds else "")
        raise InsufficientResources(
            f"{what} need about {needed / 1e9:,.1f} GB at their peak for replay and learner state "
            f"({copies:.3g} x {per_seed / 1e6:,.1f} MB per seed, and {PROCESS_BYTES / 1e9:.1f} GB for the process); "
            f"this machine has {available / 1e9:,.1f} GB "
            f"available: use fewer seeds{uneven} or a smaller --buffer-size (MTDQN_SKIP_MEMORY_CHECK=1 skips "
            "this check)"
        )
