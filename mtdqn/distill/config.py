"""Options of `mtdqn distill`: the student's network, the data the teachers generate, the loss.

Like :class:`mtdqn.config.TrainConfig` a frozen dataclass whose field
docstrings are the ``--help`` text; :func:`validate_distill` rejects nonsense
before a teacher is loaded or anything is written.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from mtdqn.config import NetworkConfig
from mtdqn.errors import ConfigError

__all__ = ["DistillConfig", "validate_distill"]


@dataclass(frozen=True)
class DistillConfig:
    """Policy distillation (Rusu et al. 2016): a multi-task student learns the teachers' actions."""

    steps: int = 20_000
    """Env steps per task the teachers take to generate the student's data (rounded up to whole chunks);
    the student makes one update per vector step of all teachers."""
    num_envs: int = 4
    """Parallel environments per task the teachers act in."""
    log_every: int = 2_000
    """Env steps per task between progress updates (one compiled chunk each)."""
    seed: int = 0
    """Seed of the student's initialization, the teachers' rollouts and the minibatches."""
    teacher_seed: int | None = None
    """Which seed of each teacher run to distil (default: each run's first seed)."""
    teacher_epsilon: float = 0.05
    """Exploration of the teachers while they generate data: epsilon-greedy over the task's own actions."""
    buffer_size: int = 10_000
    """States (with the teacher's Q-values) kept per task; the oldest are overwritten."""
    learning_starts: int = 1_000
    """Env steps per task before the student's first update."""
    batch_size: int = 128
    """States sampled from EACH task's buffer per update."""
    lr: float = 1e-3
    """Adam learning rate of the student."""
    loss: Literal["ce", "kl"] = "ce"
    """ce: cross-entropy of the student's softmax(Q) on the teacher's greedy action (Rusu et al.'s NLL);
    kl: KL(softmax(Q_teacher / temperature) || softmax(Q_student))."""
    temperature: float = 0.01
    """Temperature of the teacher's softmax for --loss kl (Rusu et al. use 0.01: nearly the greedy action)."""
    eval_episodes: int = 20
    """Greedy episodes per task for the student-vs-teacher returns (the same episodes for both)."""
    holdout: int = 2_000
    """Held-out teacher states per task (a fresh rollout) for the student-vs-teacher action report."""
    network: NetworkConfig = field(default_factory=NetworkConfig)


def validate_distill(cfg: DistillConfig) -> None:
    """One-line ConfigError for nonsense options."""
    positive = {"steps": cfg.steps, "num_envs": cfg.num_envs, "log_every": cfg.log_every,
                "buffer_size": cfg.buffer_size, "batch_size": cfg.batch_size,
                "eval_episodes": cfg.eval_episodes, "holdout": cfg.holdout}
    for name, value in positive.items():
        if value <= 0:
            raise ConfigError(f"--{name.replace('_', '-')} must be > 0, got {value}")
    if cfg.seed < 0 or (cfg.teacher_seed is not None and cfg.teacher_seed < 0):
        raise ConfigError(f"--seed and --teacher-seed must be >= 0, got {cfg.seed} and {cfg.teacher_seed}")
    if cfg.learning_starts < 0:  # a budget without updates is refused with the student's run config
        raise ConfigError(f"--learning-starts must be >= 0, got {cfg.learning_starts}")
    if cfg.batch_size > cfg.buffer_size:
        raise ConfigError(f"--batch-size {cfg.batch_size} exceeds --buffer-size {cfg.buffer_size}")
    if not (math.isfinite(cfg.lr) and cfg.lr > 0):
        raise ConfigError(f"--lr must be a finite number > 0, got {cfg.lr}")
    if not (math.isfinite(cfg.temperature) and cfg.temperature > 0):
        raise ConfigError(f"--temperature must be a finite number > 0, got {cfg.temperature}")
    if not 0.0 <= cfg.teacher_epsilon <= 1.0:
        raise ConfigError(f"--teacher-epsilon must be in [0, 1], got {cfg.teacher_epsilon}")
    if cfg.loss not in ("ce", "kl"):
        raise ConfigError(f"unknown --loss {cfg.loss!r}; valid: ce, kl")
    if cfg.network.sharing == "conditioned":
        raise ConfigError("--sharing conditioned is not supported for a student: its evaluation runs each "
                          "teacher's tasks alone, which needs per-task adapters and heads")
