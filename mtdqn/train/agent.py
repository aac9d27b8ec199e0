"""Everything static about one run, built once from its config.

:class:`Agent` bundles the derived integers, the task set, the architecture,
the optimizer and the strategy.  Compiled functions close over it; nothing in
it is traced.  :class:`TrainState` is the dynamic part: exactly what a
checkpoint must hold to act and to continue.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from mtdqn.config import Derived, TrainConfig, derive
from mtdqn.errors import ConfigError
from mtdqn.networks import Architecture, make_architecture
from mtdqn.replay import Replay
from mtdqn.strategies import Strategy, make_strategy
from mtdqn.tasks import TaskSet, make_task_set

__all__ = ["Agent", "TrainState", "make_agent", "make_optimizer"]


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
    def task_weights(self) -> jax.Array:
        return jnp.asarray(self.derived.task_weights, jnp.float32)

    @property
    def seeds(self) -> list[int]:
        return [self.cfg.seed + i for i in range(self.cfg.seeds)]


def make_optimizer(cfg: TrainConfig, derived: Derived) -> optax.GradientTransformation:
    """adam / adamw / sgd with optional weight decay, lr decay and global-norm clipping."""
    d = cfg.dqn
    lr: float | optax.Schedule = d.lr
    if d.lr_schedule == "linear":
        lr = optax.linear_schedule(d.lr, 0.0, transition_steps=derived.total_updates)
    if d.optimizer == "adam":
        opt = optax.adam(lr)
    elif d.optimizer == "adamw":
        opt = optax.adamw(lr, weight_decay=d.weight_decay)
    elif d.optimizer == "sgd":
        opt = optax.chain(optax.add_decayed_weights(d.weight_decay), optax.sgd(lr))
    else:
        raise ConfigError(f"unknown --optimizer {d.optimizer!r}; valid: adam, adamw, sgd")
    if d.max_grad_norm > 0:
        opt = optax.chain(optax.clip_by_global_norm(d.max_grad_norm), opt)
    return opt


def make_agent(cfg: TrainConfig) -> Agent:
    """Validate and build the static parts; raises ConfigError on bad input."""
    derived = derive(cfg)
    task_set = make_task_set(cfg.tasks)
    arch = make_architecture(task_set, cfg.network)
    strategy = make_strategy(derived.strategy, cfg.strategy_args, derived.task_weights)
    if cfg.value_norm == "popart" and arch.head_shared:
        raise ConfigError("--value-norm popart needs per-task heads; it cannot be used with --sharing conditioned")
    if np.prod(task_set.obs_shape) * cfg.dqn.buffer_size * len(task_set) * 2 > 8e9:
        raise ConfigError(f"--buffer-size {cfg.dqn.buffer_size} would need more than 8 GB of replay per seed")
    return Agent(cfg, derived, task_set, arch, make_optimizer(cfg, derived), strategy)
