"""The local search, with trials batched into one compiled program: a tune spec's ``batch = K``.

The search asks K trials at once (TPE's constant liar counts the ones not yet
told as bad, so they are not drawn in one spot).  Trials that differ only in
numbers the compiled loop traces (:data:`mtdqn.sweepspec.SWEEPABLE`) share a
program: each such group trains as one population
(:func:`mtdqn.train.sweep.train_population`, what `--sweep` runs), so each
trial computes exactly what it would alone, and K trials cost about one
pass over the cores instead of K.  A trial whose values no run accepts, and a
group of one, train alone (:func:`mtdqn.tune.search.execute`), as every trial
does with ``batch = 1``.

A batch's trials stay ordinary run directories (``trials/trial-0007/``); the
population's checkpoint, what resumes them together, is in
``batches/batch-0004/`` (named after its first trial).  Each trial is stored
with its batch's name, so a killed tune (rerun with any ``batch``) finds the
batches it left running in Optuna's storage and resumes each from its
checkpoint; a batch stopped before the kill (all pruned, or failed) is not
trained again, its trials told as their siblings were.

Pruning: every trial reports its evaluations as it would alone.  A program
cannot drop one member, so a pruned trial trains on with its batch (its run
directory is complete; Optuna holds it as pruned at the step the pruner
stopped it, stored with the trial so that a kill does not undo it); the batch
stops when every trial in it is pruned, its trials' runs then unfinished and
resumable only with the batch.  A batch that diverges (one trial's numbers
going non-finite stops the population, as it stops a `--sweep`) or does not
fit in memory is trained again trial by trial, so that only the trial at
fault fails.
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path
from typing import Any, Callable

import optuna

from mtdqn.config import TrainConfig
from mtdqn.budget import check_train_budget
from mtdqn.errors import (ConfigError, DamagedRun, FewUpdatesWarning, InsufficientDisk, InsufficientResources,
                          TrainingDiverged, Unwritable)
from mtdqn.io import machine_write_error
from mtdqn.results import Run
from mtdqn.rundir import RunDir
from mtdqn.runoptions import RunOptions
from mtdqn.studies.spec import agent_error
from mtdqn.sweepspec import SWEEPABLE
from mtdqn.tune.search import (
    Outcome, ask, check_reusable, execute, failure, finished_count, live_trial, outcome_line, record_options,
    report_and_prune, running_trials, scored, tell, trial_dir, trial_params,
)
from mtdqn.tune.spec import TuneSpec

__all__ = ["BATCH_ATTR", "PRUNED_AT_ATTR", "FAILED_ATTR", "batch_dir", "program_key", "partition", "running_batches",
           "run_batched_search"]

BATCH_ATTR = "batch"
"""The user attribute naming a trial's batch (``batch-0004``); trials trained alone have none (or "")."""
PRUNED_AT_ATTR = "pruned_at"
"""The user attribute holding the env step the pruner stopped a batched trial at (it trains on with its batch)."""
FAILED_ATTR = "batch_failed"
"""The user attribute holding why a batch failed, set on its trials the pruner had not stopped before any is told
(a tune killed while telling them tells the rest the same on its rerun)."""

Announce = Callable[[str], None]
RUNNING = optuna.trial.TrialState.RUNNING
PRUNED = optuna.trial.TrialState.PRUNED
FAIL = optuna.trial.TrialState.FAIL


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


def running_batches(study: optuna.Study) -> list[str]:
    """The batches a killed batched tune left with trials still running."""
    return sorted({name for t in running_trials(study) if (name := t.user_attrs.get(BATCH_ATTR))})


def run_batched_search(spec: TuneSpec, study: optuna.Study, out: Path, trials: int, progress: bool,
                       announce: Announce) -> None:
    """The local search: first what a killed tune left running (whole batches, and trials trained alone), then
    ``spec.batch`` new trials at a time, each group sharing a program trained as one, until ``trials`` have
    finished."""
    resumed: set[int] = set()
    for frozen in running_trials(study):
        if frozen.number in resumed:
            continue
        name = frozen.user_attrs.get(BATCH_ATTR)
        if not name and PRUNED_AT_ATTR in frozen.user_attrs:  # of a given-up batch, killed before it was told
            _tell(study, frozen.number, _pruned(int(frozen.user_attrs[PRUNED_AT_ATTR])), announce)
            continue
        if not name:
            announce(f"trial {frozen.number}: resuming")
            _alone(spec, study, out, frozen.number, set(frozen.intermediate_values), progress, announce)
            continue
        numbers = sorted(t.number for t in study.get_trials(deepcopy=False) if t.user_attrs.get(BATCH_ATTR) == name)
        announce(f"{name} (trials {', '.join(map(str, numbers))}): resuming")
        _batch(spec, study, out, numbers, progress, announce)
        resumed.update(numbers)
    while (finished := finished_count(study)) < trials:
        asked = [ask(spec, study) for _ in range(min(spec.batch, trials - finished))]
        batchable = [t for t in asked if not _fails_alone(spec.config(trial_params(spec, t)))]
        for group in [[t] for t in asked if t not in batchable] + partition(spec, batchable):
            numbers = [t.number for t in group]
            if len(numbers) == 1:
                announce(f"trial {numbers[0]}: started")
                _alone(spec, study, out, numbers[0], set(), progress, announce)
            else:
                announce(f"{batch_dir(out, numbers[0]).name} (trials {', '.join(map(str, numbers))}): started, "
                         "one program")
                _batch(spec, study, out, numbers, progress, announce)


def _fails_alone(cfg: TrainConfig) -> bool:
    """Whether a trial's run would refuse its config (a sampled value no run accepts, a budget with no update):
    such a trial trains alone, and fails there with the run's own line, not its batch with it."""
    if agent_error(cfg) is not None:
        return True
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FewUpdatesWarning)  # the run itself warns
            check_train_budget(cfg, strategy_rules=False)
    except ConfigError:
        return True
    return False


def _alone(spec: TuneSpec, study: optuna.Study, out: Path, number: int, reported: set[int], progress: bool,
           announce: Announce) -> None:
    """Train trial ``number`` alone (or resume it from its run's checkpoint) and tell Optuna how it ended."""
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
    frozen = {t.number: t for t in study.get_trials(deepcopy=False) if t.number in numbers}
    running = [n for n in numbers if frozen[n].state == RUNNING]
    told = [n for n in numbers if n not in running]
    if told and not all((trial_dir(out, n) / "summary.json").is_file() for n in numbers):
        # the batch had stopped (all pruned, or failed) and the tune was killed while telling its trials: each
        # is told what it was to be told, a pruned one its own step, one the batch's failure failed that failure
        like = frozen[told[0]]
        for n in running:
            attrs = frozen[n].user_attrs
            if PRUNED_AT_ATTR in attrs:
                outcome = _pruned(int(attrs[PRUNED_AT_ATTR]))
            elif FAILED_ATTR in attrs:
                outcome = Outcome(FAIL, note=attrs[FAILED_ATTR])
            else:  # a record from before FAILED_ATTR: as the first told
                outcome = Outcome(like.state, note=like.user_attrs.get("note", ""))
            _tell(study, n, outcome, announce)
        return
    live = {n: live_trial(study, n) for n in numbers}
    configs: dict[int, TrainConfig] = {}
    for n in numbers:
        params = trial_params(spec, live[n])
        configs[n] = spec.config(params)
        if n in running:
            record_options(live[n], params)
            live[n].set_user_attr(BATCH_ATTR, where.name)
        check_reusable(trial_dir(out, n), configs[n])
    reported = {n: set(frozen[n].intermediate_values) for n in numbers}
    pruned = {n: int(frozen[n].user_attrs[PRUNED_AT_ATTR]) for n in running if PRUNED_AT_ATTR in frozen[n].user_attrs}

    def on_eval(index: int, step: int, rows: list[dict[str, Any]]) -> None:
        n = numbers[index]
        if n in running and n not in pruned and report_and_prune(spec, live[n], reported[n], step, rows):
            pruned[n] = step
            live[n].set_user_attr(PRUNED_AT_ATTR, step)
        if all(n in pruned for n in running):
            raise optuna.TrialPruned("every trial of the batch pruned")

    try:
        _train(out, where, numbers, configs, on_eval, progress, spec.run_options)
    except optuna.TrialPruned:
        outcomes = {n: _pruned(pruned[n]) for n in running}
    except (InsufficientDisk, Unwritable, DamagedRun):  # no smaller program helps, or a record to put back: stop,
        raise  # the batch's checkpoint kept and its trials untold (a damaged trial record failed them all for good)
    except Exception as exc:
        if machine_write_error(exc):  # a write failed mid-run (disk full...): as a shortage found before training
            raise
        if isinstance(exc, (TrainingDiverged, InsufficientResources)) or out_of_device_memory(exc):
            # one trial's doing, or the batch's size: each alone
            announce(f"{where.name}: {' '.join(str(exc).split())}; its trials train alone")
            _each_alone(spec, study, out, where, running, pruned, reported, progress, announce)
            return
        failed = failure(exc)  # pruned trials stay pruned: the pruner stopped them before the batch failed
        outcomes = {n: _pruned(pruned[n]) if n in pruned else Outcome(failed.state, note=f"{where.name}: {failed.note}")
                    for n in running}
        for n in running:  # recorded before any is told: a kill while telling them leaves each its outcome
            if n not in pruned:
                live[n].set_user_attr(FAILED_ATTR, outcomes[n].note)
    else:
        outcomes = {n: Outcome(PRUNED, note=f"pruned at step {pruned[n]:,} (trained on to the end with its batch)")
                    if n in pruned else scored(spec, Run(trial_dir(out, n))) for n in running}
    for n in running:
        _tell(study, n, outcomes[n], announce)


def out_of_device_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is XLA out of an accelerator's memory (RESOURCE_EXHAUSTED): the CPU's memory is checked
    before training (:class:`~mtdqn.errors.InsufficientResources`), a GPU's is not; a smaller program may fit."""
    import jax  # the search's process has it loaded: a batch trains in it

    return isinstance(exc, jax.errors.JaxRuntimeError) and "RESOURCE_EXHAUSTED" in str(exc)


def _each_alone(spec: TuneSpec, study: optuna.Study, out: Path, where: Path, running: list[int],
                pruned: dict[int, int], reported: dict[int, set[int]], progress: bool, announce: Announce) -> None:
    """A batch given up on: its trials trained again one by one, no longer in a batch, so that a kill meanwhile
    resumes them alone.  Those the pruner had stopped are told so before any trains (told in their turn, a kill
    before it left them running, and the rerun trained them again from scratch, where the pruner could decide
    otherwise); a kill before that leaves them running with their ``pruned_at`` and no batch, which the rerun
    tells (:func:`run_batched_search`)."""
    for n in running:  # first: a trial still in the batch would be told as its told siblings were
        live_trial(study, n).set_user_attr(BATCH_ATTR, "")
    for n in running:
        if n in pruned:
            _tell(study, n, _pruned(pruned[n]), announce)
    for path in (where, *(trial_dir(out, n) for n in running)):
        if path.exists():
            shutil.rmtree(path)
    for n in running:
        if n not in pruned:
            _alone(spec, study, out, n, reported[n], progress, announce)


def _pruned(step: int) -> Outcome:
    """How a batched trial the pruner stopped at env step ``step`` ended (told when its batch stopped, failed or
    was given up on, or by a rerun after a kill while telling)."""
    return Outcome(PRUNED, note=f"pruned at step {step:,}")


def _tell(study: optuna.Study, number: int, outcome: Outcome, announce: Announce) -> None:
    tell(study, number, outcome)
    announce(outcome_line(number, outcome))


def _train(out: Path, where: Path, numbers: list[int], configs: dict[int, TrainConfig],
           on_eval: Callable[[int, int, list[dict[str, Any]]], None], progress: bool,
           run_options: RunOptions) -> None:
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
    train_population(configs[numbers[0]], members, where, {"tune_batch": numbers},
                     options=None if resume else run_options, resume=resume, progress=progress, on_eval=on_eval)
