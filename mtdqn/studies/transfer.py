"""The transfer study (`mtdqn study transfer`): pretrain on all tasks but one, then learn the held-out task
from scratch, on the frozen trunk, on the whole trunk, with the trunk unfrozen after k steps, and with LoRA.

After D'Eramo et al. 2020 ("Sharing knowledge in multi-task deep reinforcement
learning", ICLR), whose transfer table (Acrobot held out) compares a frozen
trunk, one unfrozen at epoch 10, and learning from scratch.  Layout::

    STUDY/pretrain/            the pretraining run (a cell: skipped when finished, resumed when killed)
    STUDY/study.json           the held-out task's study (reference: scratch), read by `mtdqn report`
    STUDY/cells/<variant>/     one run per variant; the fine-tuned ones start from STUDY/pretrain
    STUDY/transfer.md, .json   jumpstart, area under the greedy curve, final return (mtdqn.analysis.transfer)
    STUDY/report/              the ordinary report of the held-out study

Every cell is an ordinary cell of :mod:`mtdqn.studies.runner` (``run_cell``):
a fine-tuned cell's config carries its source (the pretraining cell's
directory and config hash), and ``train`` grafts it when the cell starts.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from mtdqn.config import NetworkConfig, TrainConfig
from mtdqn.budget import check_train_budget
from mtdqn.errors import CellsFailed, ConfigError, count
from mtdqn.io import held, write_json
from mtdqn.rundir import RUN_SUMMARY, STUDY_CELLS, STUDY_RECORD
from mtdqn.runoptions import RunOptions
from mtdqn.studies.cell import (CellConfig, cell_status, check_devices, check_out_dir, read_summary,
                                resumable_from, run_cell, skip_finished)
from mtdqn.studies.runner import (StudyResult, budget_text, build, preset_advice, progress_printer, run_local,
                                  study_record, warn_of_rounded_budgets)
from mtdqn.studies.spec import (RUN_OPTION_KEYS, StudySpec, agent_error, apply_options, build_spec, default_threshold,
                                variant_config)

__all__ = ["VARIANTS", "TransferSpec", "held_out_spec", "transfer_cells", "run_transfer_study"]

VARIANTS = ("scratch", "frozen", "unfrozen", "unfreeze-at-k", "lora")


@dataclass(frozen=True)
class TransferSpec:
    """A transfer study: the pretraining tasks, the held-out one, budgets and the fine-tuning variants."""

    name: str
    pretrain_tasks: tuple[str, ...]
    target: str
    steps: int
    """Env steps per task, of the pretraining and of each held-out run."""
    seeds: int
    run_options: RunOptions
    """How every run is driven; its ``eval_every`` sets the greedy evaluations the curve's jumpstart and area
    are read from.  ``keep_best`` applies to the pretraining alone: the trunk grafted is then its best
    evaluation's (per seed, the highest sum of the tasks' discounted returns, as D'Eramo et al.'s
    --save-shared) instead of its last parameters."""
    unfreeze_at: int
    """unfreeze-at-k: env step of the held-out task at which the trunk starts to train."""
    lora_rank: int = 8
    options: dict[str, Any] = field(default_factory=dict)
    """Flat train options (as in a study file) for every run."""
    variants: tuple[str, ...] = VARIANTS
    seed: int = 0


def held_out_spec(spec: TransferSpec) -> StudySpec:
    """The held-out task's study (validated as a study file is), one variant per fine-tuning."""
    unknown = [v for v in spec.variants if v not in VARIANTS]
    if unknown or not spec.variants:
        raise ConfigError(f"transfer study: unknown variant {unknown[0] if unknown else '(none)'}; valid: "
                          f"{', '.join(VARIANTS)}")
    if spec.target in spec.pretrain_tasks:
        raise ConfigError(f"transfer study: {spec.target} is held out, so it cannot also be pretrained on")
    raw = {"name": spec.name, "tasks": [spec.target], "steps": spec.steps, "seeds": spec.seeds, "seed": spec.seed,
           **{key: getattr(spec.run_options, key) for key in RUN_OPTION_KEYS}, "include_reference": False,
           "reference": spec.variants[0], "options": dict(spec.options), "variants": {v: {} for v in spec.variants}}
    study = build_spec(raw, f"transfer study {spec.name}", spec.name)  # budgets and seeds checked here
    if not 0 < spec.unfreeze_at < spec.steps:
        raise ConfigError(f"transfer study: unfreeze_at {spec.unfreeze_at} must be inside the {spec.steps} steps")
    return study


def _variant(name: str, spec: TransferSpec) -> dict[str, Any]:
    return {"scratch": {}, "frozen": {"freeze": "trunk"}, "unfrozen": {"freeze": "none"},
            "unfreeze-at-k": {"freeze": f"trunk-until:{spec.unfreeze_at}"},
            "lora": {"lora_rank": spec.lora_rank}}[name]


def transfer_cells(spec: TransferSpec, out_dir: Path, devices: int = 0) -> tuple[CellConfig, list[CellConfig]]:
    """The pretraining cell and the held-out task's cells (their sources: ``out_dir``/pretrain)."""
    from mtdqn.graft import finetune_config  # JAX: not imported to validate a study

    study = held_out_spec(spec)
    pretrain = apply_options(TrainConfig(tasks=spec.pretrain_tasks, steps=spec.steps, seeds=spec.seeds,
                                         seed=spec.seed), study.options)  # type-checked: lists made tuples
    thresholds = {t: default_threshold(t) for t in spec.pretrain_tasks if default_threshold(t) is not None}
    pre_cell = CellConfig("pretrain", pretrain, thresholds, dataclasses.replace(spec.run_options, devices=devices))
    held_out = dataclasses.replace(study.run_options, devices=devices)  # the study file's options: no keep_best
    cells = []
    for name in spec.variants:
        base = dataclasses.replace(variant_config(study, name), network=NetworkConfig())
        cfg = dataclasses.replace(base, network=pretrain.network) if name == "scratch" else \
            finetune_config(base, Path(out_dir) / "pretrain", pretrain, **_variant(name, spec))
        cells.append(CellConfig(name, cfg, dict(study.thresholds), held_out))
    return pre_cell, cells


def run_transfer_study(spec: TransferSpec, out_dir: Path, *, progress: bool = True, devices: int = 0,
                       console: Console | None = None, report: bool = True) -> StudyResult:
    """Pretrain (unless finished), run the held-out cells not yet finished, then the transfer table and report."""
    out_dir = Path(out_dir)
    console = console or Console(quiet=not progress)
    check_out_dir(out_dir, spec.name, "transfer")
    check_devices(spec.seeds, devices)
    study = held_out_spec(spec)
    pre_cell, cells = transfer_cells(spec, out_dir, devices)
    for cell in (pre_cell, *cells):  # every config a run could refuse, refused before anything is written
        error = agent_error(cell.config)
        if error:
            raise ConfigError(f"transfer study {spec.name}: {cell.variant}: {error}")
        try:
            check_train_budget(cell.config, starts=None)  # its learning start is the preset's
        except ConfigError as exc:
            raise ConfigError(f"transfer study {spec.name}: {cell.variant}: {exc}") from None
    pairs = [(cell, out_dir / STUDY_CELLS / cell.variant) for cell in cells]
    statuses = {cell.variant: cell_status(cell, d) for cell, d in pairs}
    pre_status = cell_status(pre_cell, out_dir / "pretrain")
    record = {**study_record(study), "transfer": {**dataclasses.asdict(spec), "pretrain": "pretrain"}}
    to_run = [c for c in cells if statuses[c.variant] != "done"] + ([pre_cell] if pre_status != "done" else [])
    warn_of_rounded_budgets(spec.name, to_run, preset_advice(pre_cell.config.num_envs))  # not a finished cell's
    with held(out_dir):  # one study per folder, from its first write (mtdqn.io.held)
        write_json(out_dir / STUDY_RECORD, record)
        console.print(f"transfer study [bold]{spec.name}[/bold]: pretrain on {', '.join(spec.pretrain_tasks)}, then "
                      f"{spec.target} × {count(len(cells), 'variant')} × {count(spec.seeds, 'seed')}, "
                      f"{budget_text(spec.steps, [c.config for c in (pre_cell, *cells)])} → {out_dir}",
                      soft_wrap=True)
        on_event = progress_printer(console, len(cells) + 1)
        if pre_status == "done":
            skip_finished(pre_cell, out_dir / "pretrain", on_event)
        else:
            at = resumable_from(pre_cell, out_dir / "pretrain")
            on_event("start", pre_cell, None) if at is None else on_event("resume", pre_cell, at)
            summary = run_cell(pre_cell, out_dir / "pretrain", progress=progress)
            on_event("done", pre_cell, summary)
            if summary.get("status") != "ok":
                raise CellsFailed(f"transfer study {spec.name}: pretraining failed ({summary.get('error')}); "
                                  f"see {out_dir / 'pretrain'}")
        for cell, d in pairs:
            if statuses[cell.variant] == "done":
                skip_finished(cell, d, on_event)
        run_local([(c, d) for c, d in pairs if statuses[c.variant] != "done"], on_event, progress)
        from mtdqn.analysis.transfer import write_transfer_table

        write_transfer_table(out_dir, list(spec.variants), spec.target)
        summaries = {cell.variant: (out_dir / STUDY_CELLS / cell.variant / RUN_SUMMARY) for cell in cells}
        return StudyResult(out_dir, {v: read_summary(p) or {} for v, p in summaries.items()},
                           build(out_dir) if report else None)
