"""The teachers of a distillation and the student's run config built from them.

Teachers are read like any deployed agent (:func:`mtdqn.load_agent`: the
checkpoint verified, only its parameters restored), so a missing, damaged or
foreign checkpoint is the same one-line error as for `mtdqn act`, and nothing
is ever written into a teacher's directory.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax

from mtdqn.config import DQNConfig, TrainConfig
from mtdqn.deploy import load_agent
from mtdqn.distill.config import DistillConfig
from mtdqn.errors import ConfigError
from mtdqn.rundir import RunDir
from mtdqn.train.agent import Agent, make_agent

__all__ = ["Teacher", "load_teachers", "student_config", "teacher_slices"]


@dataclass(frozen=True, eq=False)
class Teacher:
    """One teacher run, reduced to the seed being distilled; hashable by identity, closed over by compiled code."""

    run_dir: Path
    agent: Agent  # the teacher's static parts: its task set and network (for act and step_envs)
    params: Any = dataclasses.field(repr=False)  # the distilled seed's parameters (no seed axis)
    value_norm: Any = dataclasses.field(repr=False)  # that seed's PopArt statistics, or None
    seed: int = 0

    @property
    def tasks(self) -> tuple[str, ...]:
        return self.agent.task_set.names


def _load_one(run_dir: Path, teacher_seed: int | None) -> Teacher:
    loaded = load_agent(run_dir)  # config.json, checkpoint record, sizes and checksums, then the params only
    cfg = RunDir(run_dir).config()  # its tasks checked by load_agent
    if loaded.task_set.backend != "gymnax":
        raise ConfigError(f"teacher {run_dir} has gym: tasks ({', '.join(loaded.tasks)}): their envs step on the "
                          "host, and distillation rolls the teachers out inside compiled code")
    seed = loaded.seeds[0] if teacher_seed is None else teacher_seed
    if seed not in loaded.seeds:
        raise ConfigError(f"--teacher-seed {seed} is not a seed of teacher {run_dir} "
                          f"(its seeds: {', '.join(map(str, loaded.seeds))})")
    s = loaded.seeds.index(seed)
    pick = lambda tree: None if tree is None else jax.tree.map(lambda x: x[s], tree)  # noqa: E731
    agent = make_agent(dataclasses.replace(cfg, seeds=1), devices=None)  # one seed's static parts, no replay
    return Teacher(Path(run_dir), agent, pick(loaded.params), pick(loaded.value_norm), seed)


def load_teachers(run_dirs: tuple[Path, ...] | list[Path], teacher_seed: int | None = None) -> tuple[Teacher, ...]:
    """Load and check the teachers: one observation kind, every task taught by exactly one teacher."""
    if not run_dirs:
        raise ConfigError("--teachers needs at least one teacher run directory")
    seen: dict[Path, Path] = {}
    for d in map(Path, run_dirs):
        if d.resolve() in seen:
            raise ConfigError(f"--teachers lists {seen[d.resolve()]} twice (as {d}); give each teacher once")
        seen[d.resolve()] = d
    teachers = tuple(_load_one(Path(d), teacher_seed) for d in run_dirs)
    kinds = {t.agent.task_set.kind for t in teachers}
    if len(kinds) > 1:
        which = ", ".join(f"{t.run_dir} ({t.agent.task_set.kind})" for t in teachers)
        raise ConfigError(f"teachers have different observation kinds: {which}; one student has one trunk "
                          "(MLP for vector tasks, conv for image tasks)")
    owner: dict[str, Path] = {}
    for t in teachers:
        for task in t.agent.task_set.tasks:
            if task.name in owner:
                raise ConfigError(f"task {task.name} is taught by two teachers: {owner[task.name]} and {t.run_dir}")
            owner[task.name] = t.run_dir
    return teachers


def student_config(teachers: tuple[Teacher, ...], cfg: DistillConfig) -> TrainConfig:
    """The student's run record: the union of the teachers' tasks (in teacher order) and the student's network.

    ``steps``, ``num_envs`` and ``log_every`` are the distillation's (its chunks
    are the record's chunks).  The DQN part only matters to tools that read
    any run: gamma is the first teacher's (discounted evaluations use it) and
    the replay is the smallest valid one, since a student has none.  Its
    ``learning_starts`` is the distillation's, so the student learns from the
    same iteration as any run would and the update budget is checked as a run's.
    """
    batch = DQNConfig().batch_size
    return TrainConfig(
        tasks=tuple(spec for t in teachers for spec in t.tasks), steps=cfg.steps, seeds=1, seed=cfg.seed,
        num_envs=cfg.num_envs, log_every=cfg.log_every, network=cfg.network,
        dqn=DQNConfig(gamma=teachers[0].agent.cfg.dqn.gamma, lr=cfg.lr, lr_schedule="constant", batch_size=batch,
                      buffer_size=batch, learning_starts=cfg.learning_starts, train_every=cfg.num_envs),
    )


def teacher_slices(teachers: tuple[Teacher, ...]) -> tuple[tuple[int, ...], ...]:
    """The student's task indices of each teacher's tasks (the student lists them in teacher order)."""
    out, start = [], 0
    for t in teachers:
        out.append(tuple(range(start, start + len(t.tasks))))
        start += len(t.tasks)
    return tuple(out)
