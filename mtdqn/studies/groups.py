"""The groups study (`mtdqn study groups`): which tasks should share a network, predicted from their lookahead
affinity during one joint run, then checked by training the prediction.

1. One joint `shared` run of every task (all seeds vmapped) measures the
   lookahead affinity Z_{i->j} (TAG, Fifty et al. 2021; :mod:`mtdqn.train.affinity`)
   and logs the gradient cosine.
2. Every partition of the tasks is scored by TAG's criterion from the
   affinity averaged over the joint run's seeds (:mod:`mtdqn.analysis.groups`);
   the best and the worst are picked.
3. The predicted best and worst partitions, all tasks together and all apart
   are trained with the study's seeds, each group its own `shared` agent (a
   group of one task: a single-task agent).  Partitions share their groups'
   cells (a group is trained once), and the all-together partition is the
   joint run itself: one `shared` agent on every task with the study's seeds
   (measuring the affinity leaves the parameters bit-identical).

Layout::

    STUDY/study.json          the joint run as a one-variant study (`joint`), so `mtdqn report STUDY` shows
                              its affinity matrix and curves; under "groups": the tasks, and once stage 2 has
                              chosen them, the partitions trained with each group's cell
    STUDY/cells/joint/        stage 1 (a cell: skipped when finished, resumed when killed)
    STUDY/groups/<group>/     stage 3: one cell per distinct group other than all tasks
    STUDY/groups.md, groups_data/   the groups report (:mod:`mtdqn.analysis.group_report`)
    STUDY/report/             the ordinary report of the joint run

Every cell is an ordinary cell of :mod:`mtdqn.studies.cell` (``run_cell``):
a rerun skips finished cells, and stage 2 is a function of the finished
joint run, so it picks the same partitions again.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from mtdqn.analysis.group_scores import predictor_matrices, seed_mean
from mtdqn.analysis.groups import MAX_TASKS, Partition, describe_partition, trained_partitions
from mtdqn.config import TrainConfig, derive
from mtdqn.errors import CellsFailed, ConfigError, count
from mtdqn.io import held, write_json
from mtdqn.rundir import STUDY_CELLS, STUDY_RECORD
from mtdqn.runoptions import RunOptions
from mtdqn.studies.cell import CellConfig, cell_status, check_devices, check_out_dir, read_summary, skip_finished
from mtdqn.studies.runner import (StudyResult, budget_text, build, build_groups, cell_configs, preset_advice,
                                  progress_printer, run_local, study_record, warn_of_rounded_budgets)
from mtdqn.studies.spec import RUN_OPTION_KEYS, StudySpec, apply_options, build_spec

__all__ = ["JOINT", "MEASUREMENTS", "GroupsSpec", "joint_study", "group_name", "group_cell", "plan_record",
           "choose_partitions",
           "run_groups_study"]

JOINT = "joint"
MEASUREMENTS = 100
"""Affinity measurements per joint run when the spec leaves ``affinity_every`` to the study: enough for a
mean over training, and at one update in ~100 the measurement costs nothing measurable
(benchmarks/results/affinity.md)."""


@dataclass(frozen=True)
class GroupsSpec:
    """A groups study: the tasks to group, budget, seeds and the train options of every run."""

    name: str
    tasks: tuple[str, ...]
    steps: int
    """Env steps per task, of the joint run and of every group's run."""
    seeds: int
    run_options: RunOptions = RunOptions()
    options: dict[str, Any] = field(default_factory=dict)
    """Flat train options (as in a study file) for every run."""
    affinity_every: int | None = None
    """Updates between affinity measurements in the joint run; None: about :data:`MEASUREMENTS` per run."""
    seed: int = 0


def _affinity_every(spec: GroupsSpec) -> int:
    if spec.affinity_every is not None:
        return spec.affinity_every
    base = apply_options(TrainConfig(tasks=spec.tasks, steps=spec.steps, seeds=spec.seeds), spec.options)
    return max(1, derive(base).total_updates // MEASUREMENTS)


def group_name(tasks: tuple[str, ...] | list[str]) -> str:
    """A group's folder name: its tasks joined by '+', characters a folder name should not hold as '_'."""
    return "+".join(re.sub(r"[^A-Za-z0-9_.-]", "_", t) for t in tasks)


def joint_study(spec: GroupsSpec) -> StudySpec:
    """The joint run as a one-variant study, validated as a study file is (tasks, budget, options); raises a
    one-line ConfigError for fewer than 2 tasks, more than :data:`MAX_TASKS`, or tasks one network cannot
    share (vector and image)."""
    source = f"groups study {spec.name!r}"
    if len(spec.tasks) < 2:
        raise ConfigError(f"{source}: tasks: grouping needs at least 2 tasks, got {len(spec.tasks)}")
    if len(spec.tasks) > MAX_TASKS:
        raise ConfigError(f"{source}: tasks: at most {MAX_TASKS} tasks (every partition of them is searched), "
                          f"got {len(spec.tasks)}")
    if len({group_name((t,)) for t in spec.tasks}) < len(spec.tasks):
        raise ConfigError(f"{source}: tasks: two tasks share a folder name ({', '.join(spec.tasks)}); list each "
                          "task once")
    raw = {"name": spec.name, "tasks": list(spec.tasks), "steps": spec.steps, "seeds": spec.seeds,
           "seed": spec.seed, **{key: getattr(spec.run_options, key) for key in RUN_OPTION_KEYS},
           "include_reference": False, "reference": JOINT, "options": dict(spec.options),
           "variants": {JOINT: {"sharing": "shared", "affinity_every": _affinity_every(spec)}}}
    return build_spec(raw, source, spec.name)


def group_cell(study: StudySpec, tasks: tuple[str, ...], devices: int = 0) -> CellConfig:
    """One group's cell: a `shared` agent on ``tasks`` with the study's budget, seeds and options."""
    base = TrainConfig(tasks=tasks, steps=study.steps, seeds=study.seeds, seed=study.seed)
    return CellConfig(group_name(tasks), apply_options(base, {**study.options, "sharing": "shared"}),
                      {t: study.thresholds[t] for t in tasks}, dataclasses.replace(study.run_options, devices=devices))


def _cell_path(group: tuple[str, ...], tasks: tuple[str, ...]) -> str:
    return f"{STUDY_CELLS}/{JOINT}" if len(group) == len(tasks) else f"groups/{group_name(group)}"


def plan_record(tasks: tuple[str, ...], chosen: dict[str, Partition], affinity_every: int) -> dict[str, Any]:
    """study.json's "groups": the tasks, the joint run, and per role its partition with each group's cell."""
    return {"tasks": list(tasks), "joint": f"{STUDY_CELLS}/{JOINT}", "affinity_every": affinity_every,
            "partitions": {role: {"partition": describe_partition(p, tasks),
                                  "groups": [{"tasks": [tasks[t] for t in g],
                                              "cell": _cell_path(tuple(tasks[t] for t in g), tasks)} for g in p]}
                           for role, p in chosen.items()}}


def choose_partitions(joint_dir: Path, tasks: tuple[str, ...]) -> dict[str, Partition]:
    """Stage 2: the partitions to train (:func:`~mtdqn.analysis.groups.trained_partitions`), from the finished
    joint run's affinity.parquet averaged per seed over training, then over seeds."""
    mean = seed_mean(predictor_matrices(joint_dir, tasks)["affinity"])
    if mean is None:
        raise ConfigError(f"{joint_dir}: the joint run has no affinity for every task pair (affinity.parquet); "
                          "delete that folder to redo it")
    return trained_partitions(mean)


def _group_cells(study: StudySpec, plan: dict[str, Any], out_dir: Path, devices: int) -> list[tuple[CellConfig, Path]]:
    """Stage 3's cells: each distinct group's, other than the joint run's, in the plan's order."""
    paths = {g["cell"]: tuple(g["tasks"]) for entry in plan["partitions"].values() for g in entry["groups"]}
    return [(group_cell(study, tasks, devices), out_dir / path) for path, tasks in paths.items()
            if path != plan["joint"]]


def _run(cells: list[tuple[CellConfig, Path]], statuses: list[str], console: Console, progress: bool) -> None:
    on_event = progress_printer(console, len(cells))
    for (cell, d), status in zip(cells, statuses):
        if status == "done":
            skip_finished(cell, d, on_event)
    run_local([(c, d) for (c, d), s in zip(cells, statuses) if s != "done"], on_event, progress)


def run_groups_study(spec: GroupsSpec, out_dir: Path, *, progress: bool = True, devices: int = 0,
                     console: Console | None = None, report: bool = True) -> StudyResult:
    """Run the joint run, choose the partitions, train their groups (finished cells skipped), then the groups
    report and the joint run's ordinary report.  Bad input and conflicting finished cells are one-line
    ConfigErrors before anything is written."""
    out_dir = Path(out_dir)
    console = console or Console(quiet=not progress)
    check_out_dir(out_dir, spec.name, "groups")
    check_devices(spec.seeds, devices)
    study = joint_study(spec)
    joint, joint_dir = cell_configs(study, devices)[0], out_dir / STUDY_CELLS / JOINT
    joint_status = cell_status(joint, joint_dir)
    every = joint.config.affinity_every
    record = {**study_record(study), "groups": plan_record(study.tasks, {}, every)}
    if joint_status == "done":  # a rerun: a conflicting group cell must stop it before anything is written
        record["groups"] = plan_record(study.tasks, choose_partitions(joint_dir, study.tasks), every)
        for cell, d in _group_cells(study, record["groups"], out_dir, devices):
            cell_status(cell, d)
    if joint_status != "done":  # the groups' cells have its budget; a rerun, its warning said
        warn_of_rounded_budgets(spec.name, [joint], preset_advice(joint.config.num_envs))
    with held(out_dir):  # one study per folder, from its first write (mtdqn.io.held)
        write_json(out_dir / STUDY_RECORD, record)
        console.print(f"groups study [bold]{spec.name}[/bold]: {', '.join(study.tasks)}; {count(spec.seeds, 'seed')}, "
                      f"{budget_text(spec.steps, [joint.config])} per task; the joint run measures the affinity every "
                      f"{every} updates → {out_dir}", soft_wrap=True)
        _run([(joint, joint_dir)], [joint_status], console, progress)
        summary = read_summary(joint_dir / "summary.json") or {}
        if summary.get("status") != "ok":
            raise CellsFailed(f"groups study {spec.name}: the joint run failed ({summary.get('error')}); see "
                              f"{joint_dir}")
        record["groups"] = plan_record(study.tasks, choose_partitions(joint_dir, study.tasks), every)
        write_json(out_dir / STUDY_RECORD, record)
        for role, entry in record["groups"]["partitions"].items():
            console.print(f"{role}: {entry['partition']}")
        cells = _group_cells(study, record["groups"], out_dir, devices)
        _run(cells, [cell_status(c, d) for c, d in cells], console, progress)
        build_groups(out_dir)
        summaries = {c.variant: read_summary(d / "summary.json") or {} for c, d in [(joint, joint_dir), *cells]}
        return StudyResult(out_dir, summaries, build(out_dir) if report else None)
