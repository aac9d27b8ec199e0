"""Runs that start from a trained run's network: `mtdqn finetune` and `mtdqn extend`.

They build the run's config (the source's network shape and a
:class:`~mtdqn.config.FinetuneConfig`), check it against the source and call
:func:`mtdqn.train.run.train`, which grafts the source's weights onto the
fresh state (:mod:`mtdqn.graft`) and trains as any run does, so
``evaluate``, ``--resume``, ``report`` and ``load_agent`` work on the new run.
``extend`` is a fine-tune on the source's tasks plus new ones with its heads
kept; the summary's ``transfer`` entry then holds the old tasks' forgetting.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from mtdqn.config import TrainConfig
from mtdqn.errors import ConfigError
from mtdqn.tasknames import find_task
from mtdqn.graft import Source, check_transfer, finetune_config, load_source
from mtdqn.train.run import RunResult, train

__all__ = ["transfer_config", "finetune", "extend"]


def _check_out(source: Source, out: Path) -> None:
    if Path(out).absolute().resolve() == source.path.absolute().resolve():
        raise ConfigError(f"--out {out} is the source run: fine-tuning writes a new run directory")


def finetune(base: TrainConfig, source_dir: Path | str, out: Path, *, freeze: str = "none", trunk_lr: float = 0.0,
             lora_rank: int | None = None, keep_heads: bool = False, **train_options: Any) -> RunResult:
    """Fine-tune ``source_dir``'s trunk on ``base.tasks`` into the new run directory ``out``.

    ``lora_rank``: None for no LoRA, else a rank > 0.  ``train_options``:
    :func:`mtdqn.train.run.train`'s (force, progress, extra_summary, announce
    and the run options, :class:`mtdqn.runoptions.RunOptions`' fields).  The source run is only read.
    """
    return _finetune(base, load_source(source_dir), out, freeze=freeze, trunk_lr=trunk_lr, lora_rank=lora_rank,
                     keep_heads=keep_heads, **train_options)


def transfer_config(base: TrainConfig, source: Source, freeze: str = "none", trunk_lr: float = 0.0,
                    lora_rank: int | None = None, keep_heads: bool = False) -> TrainConfig:
    """The checked config of a fine-tuning of ``source`` (``lora_rank`` None: no LoRA)."""
    if lora_rank is not None and lora_rank <= 0:
        raise ConfigError(f"--lora must be a rank > 0, got {lora_rank}")
    cfg = finetune_config(base, source.path, source.cfg, freeze, trunk_lr, lora_rank or 0, keep_heads)
    check_transfer(cfg, source)
    return cfg


def _finetune(base: TrainConfig, source: Source, out: Path, *, freeze: str, trunk_lr: float = 0.0,
              lora_rank: int | None = None, keep_heads: bool, **train_options: Any) -> RunResult:
    cfg = transfer_config(base, source, freeze, trunk_lr, lora_rank, keep_heads)
    _check_out(source, out)
    # train() grafts the source onto the fresh state, announces what it trains (agent.describe) and warns of a
    # budget or cadence its windows round, as `mtdqn train` does
    return train(cfg, out, warn_rounding=True, **train_options)


def extend(base: TrainConfig, source_dir: Path | str, add_tasks: tuple[str, ...], out: Path, *,
           freeze: str = "none", **options: Any) -> RunResult:
    """Continue ``source_dir``'s agent on its tasks plus ``add_tasks``, its heads kept (continual learning)."""
    source = load_source(source_dir)
    if base.tasks != TrainConfig().tasks:
        raise ConfigError(f"extend trains {source.path}'s tasks plus --add-tasks; drop --tasks")
    if not add_tasks:
        raise ConfigError("--add-tasks needs at least one task")
    present = [t for t in add_tasks if find_task(source.cfg.tasks, t) is not None]  # however either is spelled
    if present:
        raise ConfigError(f"task {present[0]} is already one of {source.path}'s tasks "
                          f"({', '.join(source.cfg.tasks)})")
    base = dataclasses.replace(base, tasks=(*source.cfg.tasks, *add_tasks))
    extra = {**(options.pop("extra_summary", None) or {}),
             "extend": {"old_tasks": list(source.cfg.tasks), "new_tasks": list(add_tasks)}}
    return _finetune(base, source, out, freeze=freeze, keep_heads=True, extra_summary=extra, **options)
