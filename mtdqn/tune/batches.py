"""Batches of trials in one compiled program: a tune spec's ``batch = K``.

The search asks K trials at once (TPE's constant liar counts the ones not yet
told as bad, so they are not drawn in one spot).  Trials that differ only in
numbers the compiled loop traces (:data:`mtdqn.sweepspec.SWEEPABLE`) share a
program: each such group trains as one population
(:func:`mtdqn.train.sweep.train_population`, what `--sweep` runs), so each
trial computes exactly what it would alone, and K trials cost about one
compile and one pass over the cores instead of K.  A group of one trains as
an ordinary trial (:func:`mtdqn.tune.search.execute`).

A batch's trials stay ordinary run directories (``trials/trial-0007/``); the
population's checkpoint, what resumes them together, is in
``batches/batch-0004/`` (named after its first trial).  Each trial is stored
with its batch's name, so a killed tune finds the batches it left running in
Optuna's storage and resumes each from its checkpoint.

Pruning: every trial reports its evaluations as it would alone.  A program
cannot drop one member, so a pruned trial trains on with its batch (its run
directory is complete; Optuna holds it as pruned at the step the pruner
stopped it); the batch stops when every trial in it is pruned.  A trial
whose numbers diverge stops its whole batch (the population's check of a
chunk, as a `--sweep`'s), and every trial of it is told failed with that line.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Callable

import optuna

from mtdqn.results import Run
from mtdqn.rundir import RunDir
from mtdqn.sweepspec import SWEEPABLE
from mtdqn.tune.search import (
    Outcome, check_reusable, execute, failure, finished_count, live_trial, outcome_line, record_options,
    report_and_prune, running_trials, scored, tell, trial_dir, trial_params, ask,
)
from mtdqn.tune.spec import TuneSpec

__all__ = ["BATCH_ATTR", "batch_dir", "program_key", "partition", "run_batched_search"]

BATCH_ATTR = "batch"
"""The user attribute naming a trial's batch (``batch-0004``); trials trained alone have none."""

Announce = Callable[[str], None]


def batch_dir(out: Path, first: int) -> Path:
    """Where the population of the batch whose first trial is ``first`` keeps its checkpoint."""
    return out / "batches" / f"batch-{first:04d}"


def program_key(spec: TuneSpec, params: dict[str, Any]) -> tuple:
    """What decides a trial's program: its searched values other than traced numbers, and whether it has
    dropout (a rate of 0 leaves dropout out of the program: :data:`mtdqn.sweepspec.SWEEPABLE`)."""
    structural = tuple((name, repr(value)) for name, value in sorted(params.items()) if name not in SWEEPABLE)
    return structural + (spec.config(params).dqn.dropout > 0,)


def partition(spec: TuneSpec, trials: list[optuna.Trial]) -> list[list[optuna.Trial]]:
    """``trials`` grouped by their program (:func:`program_key`), in the order they were asked."""
    groups: dict[tuple, list[optuna.Trial]] = {}
    for trial in trials:
        groups.setdefault(program_key(spec, trial_params(spec, trial)), []).append(trial)
    return list(groups.values())


def run_batched_search(spec: TuneSpec, study: optuna.Study, out: Path, trials: int, progress: bool,
                       announce: Announce) -> None:
    """The search with ``spec.batch`` trials asked at a time, each group sharing a program trained as one:
    first what a killed tune left running (whole batches, and trials trained alone), until ``trials`` have
    finished."""
    resumed: set[int] = set()
    for frozen in running_trials(study):
        if frozen.number in resumed:
            continue
        name = frozen.user_attrs.get(BATCH_ATTR)
        if name is None:
            announce(f"trial {frozen.number}: resuming")
            _alone(spec, study, out, frozen.number, set(frozen.intermediate_values), progress, announce)
            continue
        numbers = sorted(t.number for t in study.get_trials(deepcopy=False) if t.user_attrs.get(BATCH_ATTR) == name)
        announce(f"{name} (trials {', '.join(map(str, numbers))}): resuming")
        _batch(spec, study, out, numbers, progress, announce)
        resumed.update(numbers)
    while (finished := finished_count(study)) < trials:
        asked = [ask(spec, study) for _ in range(min(spec.batch, trials - finished))]
        for group in partition(spec, asked):
            numbers = [t.number for t in group]
            if len(numbers) == 1:
                announce(f"trial {numbers[0]}: started")
                _alone(spec, study, out, numbers[0], set(), progress, announce)
            else:
                announce(f"{batch_dir(out, numbers[0]).name} (trials {', '.join(map(str, numbers))}): started, "
                         "one program")
                _batch(spec, study, out, numbers, progress, announce)


def _alone(spec: TuneSpec, study: optuna.Study, out: Path, number: int, reported: set[int], progress: bool,
           announce: Announce) -> None:
    trial = live_trial(study, number)
    check_reusable(trial_dir(out, number), spec.config(trial_params(spec, trial)))
    outcome = execute(spec, trial, out, progress, reported)
    tell(study, number, outcome)
    announce(outcome_line(number, outcome))


def _batch(spec: TuneSpec, study: optuna.Study, out: Path, numbers: list[int], progress: bool,
           announce: Announce) -> None:
    """Train (or resume, or read back) the batch of trials ``numbers`` as one population and tell Optuna how
    each of those still running ended."""
    where = batch_dir(out, numbers[0])
    live = {n: live_trial(study, n) for n in numbers}
    frozen = {t.number: t for t in study.get_trials(deepcopy=False) if t.number in live}
    configs = {}
    for n in numbers:
        params = trial_params(spec, live[n])
        configs[n] = spec.config(params)
        record_options(live[n], params)
        live[n].set_user_attr(BATCH_ATTR, where.name)
        check_reusable(trial_dir(out, n), configs[n])
    reported = {n: set(frozen[n].intermediate_values) for n in numbers}
    pruned: dict[int, int] = {}  # trial -> the step the pruner stopped it at

    def on_eval(index: int, step: int, rows: list[dict[str, Any]]) -> None:
        n = numbers[index]
        if n not in pruned and report_and_prune(spec, live[n], reported[n], step, rows):
            pruned[n] = step
        if len(pruned) == len(numbers):
            raise optuna.TrialPruned("every trial of the batch pruned")

    try:
        _train(spec, out, where, numbers, configs, on_eval, progress)
        outcomes = {n: Outcome(optuna.trial.TrialState.PRUNED,
                               note=f"pruned at step {pruned[n]:,} (trained on to the end with its batch)")
                    if n in pruned else scored(spec, Run(trial_dir(out, n))) for n in numbers}
    except optuna.TrialPruned:
        outcomes = {n: Outcome(optuna.trial.TrialState.PRUNED, note=f"pruned at step {pruned[n]:,}") for n in numbers}
    except Exception as exc:
        failed = failure(exc)
        outcomes = {n: Outcome(failed.state, note=f"{where.name}: {failed.note}") for n in numbers}
    for n in numbers:
        if frozen[n].state == optuna.trial.TrialState.RUNNING:
            tell(study, n, outcomes[n])
            announce(outcome_line(n, outcomes[n]))


def _train(spec: TuneSpec, out: Path, where: Path, numbers: list[int], configs: dict[int, Any],
           on_eval: Callable[[int, int, list[dict[str, Any]]], None], progress: bool) -> None:
    """The batch's population: read back when every trial finished, resumed from its checkpoint when it has
    one, else started afresh (a batch killed before its first checkpoint has nothing to continue)."""
    from mtdqn.train.sweep import train_population  # JAX: imported when a batch trains, not when a spec is read

    dirs = [trial_dir(out, n) for n in numbers]
    if all((d / "summary.json").is_file() for d in dirs):
        return
    members = [(d, configs[n]) for d, n in zip(dirs, numbers)]
    resume = RunDir(where).checkpoint_id() is not None
    if not resume:
        for path in (where, *dirs):
            if path.exists():
                shutil.rmtree(path)
    train_population(configs[numbers[0]], members, where, {"trials": numbers}, resume=resume, progress=progress,
                     on_eval=on_eval, **({} if resume else spec.run_options()))
