"""Frozen configuration for one training run, and the values derived from it.

Configs are never mutated: ``dataclasses.replace`` makes a new one, and every
derived quantity (iterations, chunk sizes, the strategy to use) comes from
:func:`derive`.  The CLI is generated from these dataclasses by tyro, so the
docstring under each field is its ``--help`` text.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import tyro

from mtdqn.errors import ConfigError, RoundedScheduleWarning, check_float32, count, warn_user
from mtdqn.taskfacts import changed_environments, env_revisions

__all__ = [
    "FinetuneConfig",
    "NetworkConfig",
    "DQNConfig",
    "TrainConfig",
    "Derived",
    "derive",
    "every_chunks", "cadence_as_run",
    "validate",
    "check_new_run",
    "first_update_iteration",
    "rounded_schedule", "warn_of_rounding",
    "updates_before_iteration",
    "config_to_dict",
    "config_from_dict",
    "config_hash",
    "flatten_config",
    "config_diff",
    "MAX_SEED",
]


INT32_MAX = 2**31 - 1  # iteration and update counters of the compiled loop are int32
MAX_SEED = 2**62
"""The largest --seed: keys take a 64-bit integer, and seed + i (each seed) and seed + an evaluation stream's
offset must fit in one (10^20 raised OverflowError from JAX after the run's folder was made)."""

Init = Literal["lecun", "deramo"]
"""The network's initialization schemes (``NetworkConfig.init``; drawn in :mod:`mtdqn.networks.model`)."""


@dataclass(frozen=True)
class NetworkConfig:
    """Shape of the Q-network and which parts of it the tasks share."""

    sharing: str = "shared"
    """independent | shared | partial:K | conditioned | moe:K | moore:K. `independent`: every task
    its own full network (the baseline); `shared`: one trunk, a Q head per task;
    `partial:K`: the first K trunk layers shared, the rest per task;
    `conditioned`: everything shared, the task's one-hot id fed in;
    `moe:K`: K shared expert trunks, mixed by each task's learned softmax weights;
    `moore:K`: the same with the experts' outputs orthonormalized first (MOORE, Hendawy et al. 2024); K >= 2."""
    hidden: tuple[int, ...] = (128, 128)
    """Widths of the MLP trunk for vector observations."""
    adapter_width: int = 64
    """Width of the per-task input adapter (vector tasks: Dense to this width)."""
    conv_channels: tuple[int, int] = (16, 32)
    """Channels of the two 3x3 convolutions of the image trunk."""
    conv_dense: int = 128
    """Width of the fully connected layer after the convolutions."""
    adapter_channels: int = 16
    """Image tasks: output channels of the per-task 1x1 conv adapter."""
    feature_activation: Literal["relu", "sigmoid"] = "relu"
    """Activation of the trunk's last layer, the features every head reads: relu like the rest, or sigmoid
    (D'Eramo et al. 2020's multi-task network)."""
    feature_norm: Literal["none", "rms"] = "none"
    """rms: scale each sample's output of the trunk's last layer to unit RMS before its activation (for moe:K,
    each expert's output before the mixing), as moore:K's Gram–Schmidt basis is (moore:K always, so refused
    there).  The ablation that separates MOORE's normalization from its orthogonality."""
    init: Init = "lecun"
    """Initial weights: lecun (LeCun-normal kernels, zero biases: flax's defaults) or deramo (D'Eramo et al.
    2020's GymNetwork, PyTorch's scheme: Xavier-uniform kernels with the relu gain, gain 1 on linear layers such
    as the Q heads, biases uniform in +-1/sqrt(fan_in), fan_in counting a task's own inputs, not the padding)."""


@dataclass(frozen=True)
class DQNConfig:
    """DQN hyperparameters.

    Defaults were chosen on CartPole-v1 + Acrobot-v1 (see the README's learning
    section): Polyak-averaged target, linear lr decay, 4 env steps per update; the
    squared-error loss on classic control and MinAtar (``benchmarks/default_sweep.py``).
    PureJaxRL's CartPole settings are what ``benchmarks/throughput.py`` uses.
    """

    gamma: float = 0.99
    """Discount factor in (0, 1] of every task without its own (task option gamma=, e.g. CarOnHill-v0:gamma=0.95)."""
    lr: float = 5e-4
    """Learning rate."""
    lr_schedule: Literal["constant", "linear"] = "linear"
    """constant, or linear decay to 0 over the run's updates (settles DQN's late oscillations)."""
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    """Optimizer."""
    weight_decay: float = 0.0
    """Weight decay (adamw, sgd)."""
    dropout: float = 0.0
    """Dropout rate in [0, 1) on every trunk layer's outputs in the loss's online forward pass only (acting,
    TD targets and evaluation use the whole network); 0: none."""
    max_grad_norm: float = 0.0
    """Clip the combined gradient to this global L2 norm (task by task for networks that share nothing, so that
    one task's gradient does not shrink another's update); 0 disables clipping."""
    batch_size: int = 128
    """Transitions sampled from EACH task's replay per update."""
    buffer_size: int = 50_000
    """Replay capacity per task, in transitions."""
    learning_starts: int = 5_000
    """Env steps per task before the first update."""
    train_every: int = 4
    """Env steps per task between updates; a multiple of --num-envs (4 envs: one update per vector step)."""
    target_update_every: int = 1
    """Updates between target-network updates (above 1: a hard copy, --tau 1)."""
    tau: float = 0.005
    """Target update rate: 1.0 is a hard copy, < 1 Polyak averaging (then only with --target-update-every 1)."""
    eps_start: float = 1.0
    """Initial exploration rate."""
    eps_end: float = 0.02
    """Final exploration rate."""
    eps_fraction: float = 0.2
    """Fraction of the run over which epsilon decays linearly."""
    loss: Literal["huber", "mse"] = "mse"
    """TD loss: half the squared error (our design's, and what measured best: benchmarks/default_sweep.py) or
    Huber (delta 1)."""
    double: bool = False
    """Double DQN: online network picks the next action, target evaluates it."""
    n_step: int = 1
    """Steps of reward in each TD target (n-step returns, as Rainbow, Dopamine and DQN Zoo's ``n``): r_t + ... +
    gamma^(n-1) r_(t+n-1) + gamma^n max Q(s_(t+n)); the window stops at the episode's end (bootstrapping after a
    truncation, not after a termination) and, for an env's newest n-1 transitions, at the last one written (an
    m-step target, gamma^m, where Dopamine and DQN Zoo sample only complete windows: (n-1) x num_envs of the
    replay's filled slots, ~7% of MiniGrid's 2,000 at the first update, 0.14% of a full 100k).  1: the 1-step
    target."""


@dataclass(frozen=True)
class FinetuneConfig:
    """Where a fine-tuned run's network came from and which of its parameters train (``mtdqn finetune``).

    A field of :class:`TrainConfig` that :func:`config_to_dict` leaves out
    while it has its default (an ordinary run): the dicts, and so the config
    hashes, of every run made before fine-tuning existed stay what they were,
    so their checkpoints still verify and their study cells are still found
    finished.  The pretrained weights themselves are grafted onto the fresh
    state once, when the run starts (:mod:`mtdqn.finetune`); a resumed run
    reads them from its own checkpoint, so ``source`` is provenance only.
    """

    source: str = ""
    """The run directory the trunk was loaded from ("": not a fine-tuned run)."""
    source_config_hash: str = ""
    """That run's config hash."""
    freeze: str = "none"
    """none | trunk | bottom:K | trunk-until:STEPS: which pretrained trunk layers get no updates (trunk-until:
    the whole trunk until env step STEPS per task)."""
    trunk_lr: float = 0.0
    """Learning rate of the pretrained trunk layers that train (0: --lr, the rate of everything else)."""
    lora_rank: int = 0
    """Rank of trained low-rank updates W + A B of the frozen trunk's dense layers (0: no LoRA)."""
    keep_heads: bool = False
    """Tasks the source run trained keep their adapters and heads from it (others start fresh)."""


@dataclass(frozen=True)
class TrainConfig:
    """One multi-task DQN run: tasks, budget, seeds, network, DQN and strategy."""

    tasks: tuple[str, ...] = ("CartPole-v1", "Acrobot-v1")
    """Task specs, e.g. CartPole-v1 or CartPole-v1:reward_scale=100 (comma- or space-separated)."""
    steps: int = 100_000
    """Env steps per task (rounded up to whole logging windows)."""
    seeds: int = 1
    """Number of seeds, trained together in one compiled program (vmapped, split over local devices)."""
    seed: int = 0
    """First seed; the run uses seed, seed+1, ..., seed+seeds-1."""
    num_envs: int = 4
    """Parallel environments per task."""
    log_every: int = 10_000
    """Env steps per task between metric rows (one compiled chunk each)."""
    task_weights: tuple[float, ...] | None = None
    """Static loss weights w_i, one per task (default all 1)."""
    strategy: str = "auto"
    """Gradient strategy (see `mtdqn strategies`); auto = sum (of the losses, weighted by --task-weights)."""
    strategy_args: str = ""
    """Strategy options as k=v,k=v."""
    value_norm: Literal["none", "popart"] = "none"
    """Per-task value normalization of TD targets."""
    affinity_every: int = 0
    """Gradient updates between measurements of the lookahead inter-task affinity Z_{i->j} (TAG, Fifty et al.
    2021) on the update's own minibatch, written to affinity.parquet; 0: never (each measurement costs one
    forward pass per task for each task's lookahead parameters: benchmarks/throughput.py --affinity)."""
    network: NetworkConfig = field(default_factory=NetworkConfig)
    dqn: DQNConfig = field(default_factory=DQNConfig)
    finetune: Annotated[FinetuneConfig, tyro.conf.Suppress] = field(default_factory=FinetuneConfig)
    """Fine-tuning from a pretrained run: set by `mtdqn finetune` / `extend` (their own flags), not a train flag."""


@dataclass(frozen=True)
class Derived:
    """Integers the compiled loop needs, computed once from a config."""

    num_tasks: int
    iters_per_chunk: int
    num_chunks: int
    total_iters: int
    env_steps: int
    learning_starts_iters: int
    train_every_iters: int
    eps_decay_iters: int
    task_weights: tuple[float, ...]
    strategy: str
    total_updates: int


def validate(cfg: TrainConfig) -> None:
    """Reject nonsense before anything is compiled or written."""
    positive = {
        "steps": cfg.steps,
        "seeds": cfg.seeds,
        "num_envs": cfg.num_envs,
        "log_every": cfg.log_every,
        "batch_size": cfg.dqn.batch_size,
        "buffer_size": cfg.dqn.buffer_size,
        "train_every": cfg.dqn.train_every,
        "target_update_every": cfg.dqn.target_update_every,
        "n_step": cfg.dqn.n_step,
        "adapter_width": cfg.network.adapter_width,
        "conv_dense": cfg.network.conv_dense,
        "adapter_channels": cfg.network.adapter_channels,
    }
    for name, value in positive.items():
        if value <= 0:
            raise ConfigError(f"--{name.replace('_', '-')} must be > 0, got {value}")
    if not 0 <= cfg.seed <= MAX_SEED:  # a key takes a 64-bit integer; its evaluation streams add up to 10^5
        raise ConfigError(f"--seed must be in [0, {MAX_SEED:,}], got {cfg.seed}")
    if cfg.affinity_every < 0:
        raise ConfigError(f"--affinity-every must be >= 0 (0: never), got {cfg.affinity_every}")
    for name, widths in (("hidden", cfg.network.hidden), ("conv_channels", cfg.network.conv_channels)):
        if not widths or any(w <= 0 for w in widths):
            raise ConfigError(f"--{name.replace('_', '-')} must be positive widths, got {widths}")
    d = cfg.dqn
    if not (math.isfinite(d.lr) and d.lr > 0):
        raise ConfigError(f"--lr must be a finite number > 0, got {d.lr}")
    if not (math.isfinite(d.gamma) and 0.0 <= d.gamma <= 1.0):  # 0: runs made when [0, 1) was the rule
        raise ConfigError(f"--gamma must be in (0, 1], got {d.gamma}")
    if not 0.0 < d.tau <= 1.0:
        raise ConfigError(f"--tau must be in (0, 1], got {d.tau}")
    for flag, value in (("--weight-decay", d.weight_decay), ("--max-grad-norm", d.max_grad_norm)):
        if not (math.isfinite(value) and value >= 0):  # NaN passed `< 0`: the run trained, then no command took it
            raise ConfigError(f"{flag} must be a finite number >= 0 (0: off), got {value}")
    if d.learning_starts < 0:
        raise ConfigError(f"--learning-starts must be >= 0, got {d.learning_starts}")
    if cfg.network.feature_norm not in ("none", "rms"):
        raise ConfigError(f"--feature-norm must be none or rms, got {cfg.network.feature_norm!r}")
    if cfg.network.feature_norm == "rms" and cfg.network.sharing.startswith("moore:"):
        raise ConfigError("--feature-norm rms with --sharing moore:K changes nothing: moore's experts are scaled to "
                          "unit RMS already")
    if cfg.network.init not in typing.get_args(Init):
        raise ConfigError(f"--init must be one of {', '.join(typing.get_args(Init))}, got {cfg.network.init!r}")
    if not (math.isfinite(d.dropout) and 0.0 <= d.dropout < 1.0):
        raise ConfigError(f"--dropout must be in [0, 1), got {d.dropout}")
    for name, value in (("eps_start", d.eps_start), ("eps_end", d.eps_end), ("eps_fraction", d.eps_fraction)):
        if not 0.0 <= value <= 1.0:
            raise ConfigError(f"--{name.replace('_', '-')} must be in [0, 1], got {value}")
    if not cfg.tasks:
        raise ConfigError("--tasks needs at least one task")
    if cfg.task_weights is not None:
        if len(cfg.task_weights) != len(cfg.tasks):
            raise ConfigError(
                f"--task-weights has {count(len(cfg.task_weights), 'value')} for {count(len(cfg.tasks), 'task')}"
            )
        if any(not math.isfinite(w) or w < 0 for w in cfg.task_weights) or sum(cfg.task_weights) <= 0:
            raise ConfigError(f"--task-weights must be finite, >= 0 and not all 0, got {cfg.task_weights}")
    if d.batch_size > d.buffer_size:
        raise ConfigError(f"--batch-size {d.batch_size} exceeds --buffer-size {d.buffer_size}")


def first_update_iteration(derived: Derived) -> int:
    """The first iteration that updates: t >= learning_starts_iters with t % train_every_iters == 0."""
    return _first_update(derived.learning_starts_iters, derived.train_every_iters)


def _first_update(learning_starts_iters: int, train_every_iters: int) -> int:
    return math.ceil(learning_starts_iters / train_every_iters) * train_every_iters


def updates_before_iteration(derived: Derived, stop: int) -> int:
    """Gradient updates the loop takes in iterations t < ``stop`` (the run's total: ``stop = total_iters``)."""
    return _updates_before(first_update_iteration(derived), stop, derived.train_every_iters)


def _updates_before(first: int, stop: int, every: int) -> int:
    return max(0, math.ceil((stop - first) / every))


MAX_N_STEP = 100
"""The longest n-step window a new run takes (:func:`check_new_run`)."""


def shares_nothing(sharing: str) -> bool:
    """``independent``, or ``partial:0`` (no trunk layer shared): each task its own network, no shared parameter
    for a strategy to combine gradients on or an affinity to measure."""
    name, _, k = sharing.partition(":")
    try:  # K as the network's parser reads it (int(): "-0" and "+0" are 0); a bad K is its to refuse
        return name == "independent" or (name == "partial" and int(k) == 0)
    except ValueError:
        return False


def check_new_run(cfg: TrainConfig) -> None:
    """Rules for runs started from now on, on top of :func:`validate`.

    Runs written by older versions may break them and must still evaluate and
    resume as they were made, so these are checked where a run or a study
    starts, not when a stored config is read back.
    """
    validate(cfg)
    d = cfg.dqn
    for flag, value in (("--lr", d.lr), ("--gamma", d.gamma), ("--tau", d.tau), ("--weight-decay", d.weight_decay),
                        ("--max-grad-norm", d.max_grad_norm), *(("--task-weights", w) for w in cfg.task_weights or ())):
        check_float32(flag, value)  # the loop's float32: 1e40 is inf, 1e-50 is 0
    if d.gamma == 0.0:
        raise ConfigError(f"--gamma must be in (0, 1], got {d.gamma}")
    if d.weight_decay > 0 and d.optimizer == "adam":  # older runs trained so, ignoring it: they still load
        raise ConfigError("--weight-decay needs --optimizer adamw or sgd (adam would ignore it)")
    if d.target_update_every > 1 and d.tau < 1.0:
        raise ConfigError(
            f"--target-update-every {d.target_update_every} with --tau {d.tau}: a Polyak step of {d.tau} only every "
            f"{d.target_update_every} updates leaves the target far behind (with 1000 and 0.005 it is never "
            f"refreshed in practice); use --tau 1 (a hard copy every {d.target_update_every} updates) or "
            "--target-update-every 1 (Polyak averaging every update)"
        )
    if shares_nothing(cfg.network.sharing):
        idle = [f"--strategy {cfg.strategy}"] if cfg.strategy not in ("sum", "auto") else []
        idle += [f"--affinity-every {cfg.affinity_every}"] if cfg.affinity_every else []
        if idle:
            raise ConfigError(f"{' and '.join(idle)} with --sharing {cfg.network.sharing} changes nothing: strategies "
                              "combine, and affinity measures, the tasks' gradients on shared parameters, and "
                              f"{cfg.network.sharing} networks share none; drop it, or share a trunk")
    if d.n_step > MAX_N_STEP:
        raise ConfigError(f"--n-step {d.n_step} is above {MAX_N_STEP}: each window step is unrolled in the compiled "
                          "update (100 added 8 s of compile to CartPole; 500 ran for minutes at several GB), and "
                          "published n-step agents use 3 to 20")
    if d.train_every % cfg.num_envs != 0:  # one iteration steps every env once: updates come per whole iteration
        raise ConfigError(f"--train-every {d.train_every} is not a multiple of --num-envs {cfg.num_envs}: an update "
                          f"can only follow a whole vector step of {cfg.num_envs} env steps per task; use "
                          f"--train-every {max(cfg.num_envs, round(d.train_every / cfg.num_envs) * cfg.num_envs)}")


def every_chunks(env_steps: int, steps_per_chunk: int) -> int:
    """An every-N-env-steps run option (``eval_every``, ``checkpoint_every``) as whole chunks (logging windows of
    ``steps_per_chunk``), at least one; 0 stays 0 (never).  The run's schedule rounds by it, and a search's note
    of what its trials run says so by it."""
    return max(1, round(env_steps / steps_per_chunk)) if env_steps else 0


def cadence_as_run(env_steps: int, steps_per_chunk: int) -> int:
    """An every-N-env-steps run option as the loop runs it, in env steps: :func:`every_chunks` whole windows."""
    return every_chunks(env_steps, steps_per_chunk) * steps_per_chunk


def rounded_schedule(cfg: TrainConfig, eval_every: int, checkpoint_every: int = 0) -> tuple[list[str], int]:
    """What a run of ``cfg`` rounds to whole logging windows (``log_every``, in whole vector steps), each as
    "steps 100 trains 10,000", "evaluations every 5,000 run every 10,000" or "checkpoints every 1,500 are
    written every 1,000" (empty where it runs ``steps`` and the cadences as asked), and the window in env steps
    per task.  A run's warning and a search's note say it, so that neither leaves a budget or a cadence
    believed that did not run."""
    d = derive(cfg)
    window = d.iters_per_chunk * cfg.num_envs
    every, saved = cadence_as_run(eval_every, window), cadence_as_run(checkpoint_every, window)
    saved_rounded = saved != checkpoint_every and checkpoint_every != eval_every  # at the evaluations: said with them
    return ([f"steps {cfg.steps:,} trains {d.env_steps:,}"] if d.env_steps != cfg.steps else []) + \
        ([f"evaluations every {eval_every:,} run every {every:,}"] if every != eval_every else []) + \
        ([f"checkpoints every {checkpoint_every:,} are written every {saved:,}"] if saved_rounded else []), window


def warn_of_rounding(cfg: TrainConfig, eval_every: int, checkpoint_every: int = 0) -> None:
    """A new run's budget or cadences rounded to whole logging windows, warned (RoundedScheduleWarning):
    ``--steps 2000`` trained 10,000 env steps (the default windows) with nothing said but the progress bar's
    count.  Said by the ``train`` command and its sweeps; a search's note covers its trials, and a study's
    warning its cells, a transfer or groups study's too (:func:`mtdqn.studies.runner.warn_of_rounded_budgets`)."""
    parts, window = rounded_schedule(cfg, eval_every, checkpoint_every)
    if parts:
        warn_user(f"{' and '.join(parts)} env steps per task (whole --log-every windows of "
                  f"{window:,}); to run them as asked, give multiples of the window, "
                  f"or a --log-every that divides them and is a multiple of --num-envs ({cfg.num_envs})",
                  RoundedScheduleWarning)


def derive(cfg: TrainConfig) -> Derived:
    """Turn env-step budgets into loop iterations (one iteration = one vector step)."""
    validate(cfg)
    iters_per_chunk = max(1, math.ceil(cfg.log_every / cfg.num_envs))
    num_chunks = max(1, math.ceil(cfg.steps / (iters_per_chunk * cfg.num_envs)))
    total_iters = num_chunks * iters_per_chunk
    if total_iters > INT32_MAX:  # the compiled loop counts iterations and updates in int32
        raise ConfigError(f"--steps {cfg.steps:,} with --num-envs {cfg.num_envs} needs {total_iters:,} vector steps; "
                          f"the step counters hold at most {INT32_MAX:,}")
    strategy = cfg.strategy
    if strategy == "auto":
        strategy = "sum"
    weights = cfg.task_weights if cfg.task_weights is not None else (1.0,) * len(cfg.tasks)
    learning_starts_iters = math.ceil(cfg.dqn.learning_starts / cfg.num_envs)
    # New runs have a whole multiple (check_new_run); runs made before that rule keep their rounding.
    train_every_iters = max(1, round(cfg.dqn.train_every / cfg.num_envs))
    # the updates the loop takes (updates_before_iteration at the end), counted from the first update's
    # iteration: from learning_starts_iters (before 2026-12-06), one too many where that is not a multiple of
    # train_every_iters, which a run made before then with --lr-schedule linear decayed its rate over
    updates = _updates_before(_first_update(learning_starts_iters, train_every_iters), total_iters, train_every_iters)
    return Derived(
        num_tasks=len(cfg.tasks),
        iters_per_chunk=iters_per_chunk,
        num_chunks=num_chunks,
        total_iters=total_iters,
        env_steps=total_iters * cfg.num_envs,
        learning_starts_iters=learning_starts_iters,
        train_every_iters=train_every_iters,
        eps_decay_iters=max(1, int(cfg.dqn.eps_fraction * total_iters)),
        task_weights=tuple(float(w) for w in weights),
        strategy=strategy,
        total_updates=max(1, updates),
    )


# Sections and fields (dotted paths) added after runs were recorded: written only when they differ from their
# default, so the dict and hash of a config that does not use them are exactly those the older code wrote.
_OMITTED_AT_DEFAULT: dict[str, Any] = {"finetune": FinetuneConfig(), "dqn.dropout": 0.0, "dqn.n_step": 1,
                                       "network.feature_activation": "relu", "network.feature_norm": "none",
                                       "network.init": "lecun",
                                       "affinity_every": 0}


def config_to_dict(cfg: TrainConfig, *, every_key: bool = False) -> dict[str, Any]:
    """JSON-ready dict (tuples become lists); the entries of ``_OMITTED_AT_DEFAULT`` only when set (what a run's
    config.json and hash hold), or with ``every_key`` always (the defaults a report compares with)."""
    data = dataclasses.asdict(cfg)
    for path, default in {} if every_key else _OMITTED_AT_DEFAULT.items():
        *parents, key = path.split(".")
        value, section = cfg, data
        for name in parents:
            value, section = getattr(value, name), section[name]
        if getattr(value, key) == default:
            del section[key]
    return json.loads(json.dumps(data))


def _tuplify(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def config_from_dict(data: dict[str, Any]) -> TrainConfig:
    """Inverse of :func:`config_to_dict`; unknown keys are an error, not ignored."""

    def build(cls: type, values: dict[str, Any], where: str) -> Any:
        names = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(names))
        if unknown:
            raise ConfigError(f"unknown config key {where}{unknown[0]!r}; valid: {', '.join(names)}")
        kwargs = {}
        hints = typing.get_type_hints(cls)
        for key, value in values.items():
            if key not in ("network", "dqn", "finetune") and not json_fits(value, hints[key]):
                raise ConfigError(f"config key {where}{key} must be {_type_name(hints[key])}, got {value!r}")
            if key == "network":
                kwargs[key] = build(NetworkConfig, value, "network.")
            elif key == "dqn":
                kwargs[key] = build(DQNConfig, value, "dqn.")
            elif key == "finetune":
                kwargs[key] = build(FinetuneConfig, value, "finetune.")
            else:
                kwargs[key] = _tuplify(value)
        return cls(**kwargs)

    return build(TrainConfig, data, "")


def json_fits(value: Any, hint: Any) -> bool:
    """Whether a JSON value read back fits a type hint (lists stand for tuples; an int for a float; a bool is
    no number): a config field's, or a stored record's (``study.json``)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(json_fits(value, a) for a in args)
    if origin is tuple and (len(args) == 2 and args[1] is Ellipsis):
        return isinstance(value, (list, tuple)) and all(json_fits(v, args[0]) for v in value)
    if origin is tuple:  # a fixed length
        return isinstance(value, (list, tuple)) and len(value) == len(args) and all(map(json_fits, value, args))
    if origin is typing.Literal:
        return value in args
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint) if isinstance(hint, type) else True


def _type_name(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in args)
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        return f"a list of {_type_name(args[0])}"
    if origin is tuple:
        return f"a list of {len(args)} ({', '.join(map(_type_name, args))})"
    if origin is typing.Literal:
        return "one of " + ", ".join(map(repr, args))
    return "null" if hint is type(None) else getattr(hint, "__name__", str(hint))


def config_hash(cfg: TrainConfig) -> str:
    """Stable short hash of the full config (what makes two runs comparable), and of its tasks' environment
    revisions (:data:`mtdqn.taskfacts.ENV_REVISIONS`) and its training's (:func:`training_revisions`) where one
    changed (no other config's hash moves)."""
    revisions, rules = env_revisions(cfg.tasks), training_revisions(cfg)
    blob = json.dumps({**config_to_dict(cfg), **({"env_revisions": revisions} if revisions else {}),
                       **({"training_revisions": rules} if rules else {})}, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


_TRAINING_REVISIONS = {
    "max_grad_norm": ("task by task", "--max-grad-norm clips task by task for networks that share nothing (since "
                                      "2026-12-07; the whole tree's norm before)"),
}
"""What this code trains differently from before for an unchanged config: {rule: (its value, its words)}."""


def clips_task_by_task(cfg: TrainConfig) -> bool:
    """Whether ``--max-grad-norm`` clips each task's gradient by its own norm: networks that share nothing, of
    several tasks (one task's norm is the whole tree's)."""
    return cfg.dqn.max_grad_norm > 0 and shares_nothing(cfg.network.sharing) and len(cfg.tasks) > 1


def training_revisions(cfg: TrainConfig) -> dict[str, str]:
    """The rules of :data:`_TRAINING_REVISIONS` that apply to ``cfg`` (part of its hash: a run or study cell made
    under the old rule is refused, not resumed or reused beside new ones)."""
    return {"max_grad_norm": _TRAINING_REVISIONS["max_grad_norm"][0]} if clips_task_by_task(cfg) else {}


def hash_change(cfg: TrainConfig) -> str:
    """What moved this code's config hash of ``cfg`` from earlier code's, in words (an environment changed under
    its name, or how the config trains), for a record whose hash is not this code's; '' for nothing: then the
    record is of another config."""
    envs, rules = changed_environments(cfg.tasks), changed_training(cfg)
    return "; ".join(([f"a change of an environment: {envs}"] if envs else []) +
                     ([f"a change of how it trains: {rules}"] if rules else []))


def changed_training(cfg: TrainConfig) -> str:
    """The training revisions of ``cfg`` in words, for a record whose config hash is not this code's; ''
    for none."""
    return "; ".join(_TRAINING_REVISIONS[rule][1] for rule in training_revisions(cfg))


def flatten_config(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"dqn": {"lr": x}} -> {"dqn.lr": x}."""
    out: dict[str, Any] = {}
    for key, value in d.items():
        if isinstance(value, dict):
            out.update(flatten_config(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def config_diff(old: dict[str, Any], new: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """(dotted key, old value, new value) for every key whose value differs between two config dicts."""
    a, b = flatten_config(old), flatten_config(new)
    return [(k, a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
