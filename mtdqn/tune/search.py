"""The search: Optuna asks for a trial, the trial trains as an ordinary run, Optuna is told its score.

A tune directory holds::

    tune.json          the spec as run (a rerun must be the same search)
    tune.db            Optuna's storage (SQLite; --storage URL for another database)
    trials/trial-0007/ each trial's run directory: report, evaluate and load_agent work on it
    batches/batch-0004 batch = K: the checkpoint of trials trained as one program (mtdqn.tune.batches)
    confirm/           --confirm N: the best configuration with N fresh seeds
    report/            tune.md and its figures (mtdqn.tune.report)

Resuming: a tune directory belongs to one `mtdqn tune` process at a time, so
on start every trial the storage still calls running was left by a killed
process.  It is continued under its own number with the parameters it was
given, its run resumed from the run's latest checkpoint (the spec checkpoints
at every evaluation), and finished ones are never rerun.  ``trials`` (or
``--n-trials``) is the total the directory should hold, so a rerun only adds
what is missing.

Pruning: after each greedy evaluation during training the trial reports the
objective so far (:func:`mtdqn.tune.objective.objective_so_far`) at that env
step; when the pruner (median or ASHA) says so the run stops there
(:data:`mtdqn.runoptions.OnEval` raises).  Its directory is then an
unfinished run, resumable with `mtdqn train --resume`.  A trial trained in
a batch trains on with its batch (:mod:`mtdqn.tune.batches`).

Here: a trial and its outcome, and the search loop on Ray (:func:`drive`);
the local search is :func:`mtdqn.tune.batches.run_batched_search`.
"""

from __future__ import annotations

import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import optuna

from mtdqn.config import TrainConfig, config_diff, config_hash, hash_change
from mtdqn.errors import ConfigError, TrainingDiverged, count
from mtdqn.io import machine_write_error, read_json, write_json
from mtdqn.results import Run
from mtdqn.rundir import RunDir
from mtdqn.runoptions import OnEval, RunOptions
from mtdqn.tune.objective import objective_of_run, objective_so_far, reduce
from mtdqn.tune.spec import TuneSpec

__all__ = ["Outcome", "default_storage", "open_storage", "TUNE_RECORD", "SEARCH_ID", "FOLDER", "read_search_id",
           "own_storage_search", "check_storage_holds_this_search", "open_search", "ask", "live_trial", "trial_params",
           "execute", "record_options", "report_and_prune", "failure", "scored", "train_or_resume", "trial_dir",
           "check_reusable", "drive", "tell", "outcome_line", "running_trials", "finished_count", "best_trial",
           "confirm_dir", "confirmed_trial", "confirm_best", "check_same_search", "write_record", "FINISHED"]

FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.FAIL)


@dataclass(frozen=True)
class Outcome:
    """How a trial ended: its state, its score (complete trials) and a one-line note (pruned or failed)."""

    state: optuna.trial.TrialState
    value: float | None = None
    note: str = ""


def default_storage(out: Path) -> str:
    return f"sqlite:///{(out / 'tune.db').absolute()}"


def storage_url(url: str | None, out: Path) -> str | None:
    """``--storage`` as a search records it: a relative SQLite path made absolute (it followed the current
    directory: the same command run from another one made a second database, unsaid); the folder's own tune.db
    named explicitly is the default, None (it was refused as 'another storage')."""
    if url is None:
        return None
    relative = re.match(r"(?i)(sqlite(?:\+\w+)?:///)([^/?].*)$", url)  # sqlite[+driver]:///PATH[?query], PATH relative
    if relative and not relative.group(2).startswith((":memory:", "file:")):
        url = relative.group(1) + str(Path(relative.group(2)).absolute())
    return None if url == default_storage(out) else url


def open_storage(url: str, tries: int = 5) -> optuna.storages.BaseStorage:
    """Optuna's storage at ``url``; a URL that cannot be opened is one line.  Two searches creating one new
    database at once race to make its tables (one read "table studies already exists", exit 2 as bad input):
    the loser opens what the winner made."""
    for attempt in range(tries):
        try:
            return optuna.storages.RDBStorage(url)
        except Exception as exc:  # sqlalchemy's ArgumentError, OperationalError, a missing driver (ImportError)...
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            if "already exists" in first and attempt + 1 < tries:
                time.sleep(0.2 * (attempt + 1))
                continue
            raise ConfigError(f"--storage {url}: cannot open: {first}") from None
    raise AssertionError("unreachable")


def _sampler(spec: TuneSpec, stored: int) -> optuna.samplers.BaseSampler:
    """The spec's sampler, seeded from its sampler_seed and the number of trials the storage holds (``stored``).

    A rerun opens a new sampler: seeded from the spec's sampler_seed alone it would restart the same random stream
    and propose again the configurations of the first trials (all of a random search's, and TPE's startup
    ones).  With the count in the seed each session draws its own stream, and the search stays reproducible
    given where it was resumed."""
    seed = int(np.random.SeedSequence([spec.sampler_seed, stored]).generate_state(1)[0])
    if spec.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    # constant liar: trials still running (on Ray, or left by a killed tune) count as bad ones, so trials asked
    # while others run are not proposed in the same region
    return optuna.samplers.TPESampler(seed=seed, constant_liar=True)


def _pruner(spec: TuneSpec) -> optuna.pruners.BasePruner:
    """Median (a trial whose best score so far is below the median of earlier trials' at the same step, after
    two complete ones, from a third of its budget on: Optuna's rule, so an early high evaluation, warm-up's
    included, keeps a later collapse alive: lenient, never harsher) or ASHA (successive halving on the evaluation
    steps, from the first one at or after a third of the budget).

    The median's warm-up is rl-zoo3's (``n_warmup_steps`` a third of the evaluations): a DQN's first greedy
    evaluations mostly say how fast epsilon fell, so pruning on them picks the shortest exploration, not the
    best run.  (Without it, ``classic-shared`` pruned 4 of its first 8 trials at their first evaluation, 10k of
    100k steps, two of them with epsilon still above 0.4 there.)

    A trial reports at env steps ``eval_every, 2 * eval_every, ...``, so ASHA's rungs are put on evaluations:
    the first at the first evaluation past the warm-up (:func:`_first_rung`), each next one twice as far
    (``reduction_factor=2``), a trial going on past a rung only when it is in the top half of the trials that
    reached it.  Optuna's defaults do not fit these steps: ``min_resource="auto"`` is a hundredth of the first
    finished trial's last step, so the rungs (at 4x each with ``reduction_factor=4``) fall between evaluations,
    several are decided at one, and no trial is pruned before one has finished."""
    if spec.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=spec.steps // 3)
    if spec.pruner == "asha":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=_first_rung(spec), reduction_factor=2)
    return optuna.pruners.NopPruner()


def _first_rung(spec: TuneSpec) -> int:
    """ASHA's first rung: the first evaluation at or after a third of the budget (the median pruner's warm-up),
    in env steps per task, as trials report."""
    return max(1, -(-(spec.steps // 3) // spec.eval_every)) * spec.eval_every


TUNE_RECORD = "tune.json"
"""A tune folder's record: the spec as run, its storage and the search's id (:func:`write_record`)."""
SEARCH_ID = "search_id"
"""tune.json's and the Optuna study's key for the search's id: a storage's study is the search of one folder."""
FOLDER = "folder"
"""The Optuna study's key for the folder its search was last run in (what a refusal names)."""


def _other_spec_error(spec: TuneSpec) -> ConfigError:
    """The refusal of a storage whose study of the spec's name was made by another spec."""
    return ConfigError(f"the storage holds a study {spec.name!r} of another spec; give the spec another name "
                       "(or another --storage)")


def read_search_id(out: Path) -> str | None:
    """The search id a tune folder's record holds; None for a folder without a readable one (new, made before
    ids, or gone)."""
    try:
        found = read_json(out / TUNE_RECORD).get(SEARCH_ID) if (out / TUNE_RECORD).is_file() else None
    except (ConfigError, OSError, AttributeError):  # a damaged record: check_same_search names it for its own
        return None
    return found if isinstance(found, str) else None


def check_storage_holds_this_search(storage: optuna.storages.BaseStorage, url: str, spec: TuneSpec, out: Path,
                                    search_id: str | None) -> None:
    """Before anything is written, a shared ``--storage`` whose study of the spec's name is another folder's
    search refused (``search_id``: this folder's, None for a new folder): a second folder on it took the
    first's trials as its own, listing them without their runs, resuming the first's killed trials into its
    own folder and confirming trials it has no run of.  A copy of a folder is another folder (the same id,
    while the folder the study names still holds it); a moved one is the same.  A study stored before searches
    had ids is this folder's if the folder holds a search (tune.json) or the study no trial yet; a study of
    another spec is refused too.  A storage without the study while the folder holds trials' runs (tune.db
    emptied, deleted or replaced) is refused: a new study there drew other trials into the old trials' folders
    and stuck on the first that differed.  (Read only: :func:`open_search` makes the study and stores the id.)"""
    stored = _stored_study(storage, spec)
    if stored is None:
        check_trials_have_their_study(None, url, spec, out)
        return
    study_id, attrs = stored
    owner, recorded = attrs.get(SEARCH_ID), attrs.get(FOLDER) or None
    here = recorded is not None and Path(recorded).resolve() == out.resolve()
    if owner is None:  # stored before searches had ids
        if (out / TUNE_RECORD).is_file() or not storage.get_all_trials(study_id, deepcopy=False):
            return
    elif owner == search_id and (recorded is None or here or read_search_id(Path(recorded)) != owner):
        return  # this folder's search, here or moved here
    where = f"--storage {url}: its study {spec.name!r}"
    if here:  # this path, made again: its tune.json, and the id, are gone
        raise ConfigError(f"{where} is the search {out} held before its {TUNE_RECORD} was removed; give this spec "
                          f"another name, or delete that study (optuna delete-study --study-name {spec.name} "
                          f"--storage {url})")
    copy = " (this folder is a copy of it)" if owner is not None and owner == search_id else ""
    raise ConfigError(f"{where} is the search of another tune folder{copy}, "
                      f"{recorded or 'one made before folders were recorded'}, where its trials' runs are; rerun "
                      "that folder, or give this spec another name (or another --storage)")


def own_storage_search(storage: optuna.storages.BaseStorage, spec: TuneSpec) -> str | None:
    """The search id a tune folder's own tune.db stores with the spec's study (None: no such study, or one
    stored before ids), read before anything is written: a study there of another spec is refused now, where
    :func:`open_search` refused it only after the folder's tune.json had been rewritten with the other spec (a
    folder whose tune.json was gone then refused both specs).  That database is the folder's alone, so its id is
    the folder's own where tune.json is gone."""
    stored = _stored_study(storage, spec)
    owner = None if stored is None else stored[1].get(SEARCH_ID)
    return owner if isinstance(owner, str) else None


def _stored_study(storage: optuna.storages.BaseStorage, spec: TuneSpec) -> tuple[int, dict[str, Any]] | None:
    """(id, user attributes) of the storage's study of the spec's name (None: no such study), read only; a study
    there made by another spec is refused."""
    try:
        study_id = storage.get_study_id_from_name(spec.name)
    except KeyError:
        return None
    attrs = storage.get_study_user_attrs(study_id)
    if attrs.get("spec") not in (None, _search(spec.record())):
        raise _other_spec_error(spec)
    return study_id, attrs


def check_trials_have_their_study(storage: optuna.storages.BaseStorage | None, url: str, spec: TuneSpec,
                                  out: Path) -> None:
    """A folder whose trials/ holds runs has its study in the storage (``storage`` None: one known to hold no
    study of the spec's name, or the folder's own tune.db, which does not exist): one emptied, deleted or
    replaced made a new study there, which drew other trials into the old trials' folders and stuck on the first
    that differed.  One line, nothing written."""
    runs = [p for p in (out / "trials").glob("trial-*") if RunDir(p).is_run()]
    if not runs:
        return
    try:
        if storage is not None:
            storage.get_study_id_from_name(spec.name)
            return
    except KeyError:
        pass
    raise ConfigError(f"storage {url} holds no study {spec.name!r}, while {out / 'trials'} holds "
                      f"{count(len(runs), 'trial run')}: the storage was emptied, deleted or replaced; put it back "
                      "(the runs stay), or give another --out")


def open_search(spec: TuneSpec, storage: optuna.storages.BaseStorage | str, search_id: str | None = None,
                folder: Path | None = None) -> optuna.Study:
    """The spec's Optuna study in ``storage`` (created on first use, loaded after); the spec is stored with it,
    and a study of that name made by another spec is refused.  ``search_id`` and ``folder``: the tune folder's,
    stored with a study that has none (:func:`check_storage_holds_this_search` reads them), the folder updated
    where the search has moved; a second folder that stored its id first (two new folders started at once on
    one storage) is refused here, read back after the write."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name=spec.name, storage=storage, direction="maximize",
                                pruner=_pruner(spec), load_if_exists=True)
    stored = study.user_attrs.get("spec")
    if stored is None:
        study.set_user_attr("spec", _search(spec.record()))
    elif stored != _search(spec.record()):
        raise _other_spec_error(spec)
    if search_id is not None:
        if SEARCH_ID not in study.user_attrs:
            study.set_user_attr(SEARCH_ID, search_id)
        if study.user_attrs[SEARCH_ID] != search_id:  # user_attrs reads the storage again
            raise ConfigError(f"the storage's study {spec.name!r} is the search of another tune folder, "
                              f"{study.user_attrs.get(FOLDER) or 'started at the same time'}; give this spec another "
                              "name (or another --storage)")
        if folder is not None and study.user_attrs.get(FOLDER) != str(Path(folder).absolute()):
            study.set_user_attr(FOLDER, str(Path(folder).absolute()))
    study.sampler = _sampler(spec, len(study.get_trials(deepcopy=False)))
    return study


def trial_dir(out: Path, number: int) -> Path:
    return out / "trials" / f"trial-{number:04d}"


def ask(spec: TuneSpec, study: optuna.Study) -> optuna.Trial:
    """A new trial with its parameters drawn now, by this process's sampler: trials asked before others finish
    (Ray's) each get their own, and whoever runs the trial only reads them back."""
    return study.ask(fixed_distributions=spec.distributions())


def live_trial(study: optuna.Study, number: int) -> optuna.Trial:
    """A trial of ``study`` that can report and be asked whether to prune (in another process than the one that
    asked for it, or after a kill).  Optuna has no public way to reopen a stored trial: its id is private."""
    return optuna.trial.Trial(study, study.get_trials(deepcopy=False)[number]._trial_id)


def trial_params(spec: TuneSpec, trial: optuna.Trial) -> dict[str, Any]:
    """The searched options' values of ``trial`` (drawn when it was asked)."""
    return {name: dim.suggest(trial, name) for name, dim in spec.space.items()}


def execute(spec: TuneSpec, trial: optuna.Trial, out: Path, progress: bool, reported: set[int] | None = None) -> Outcome:
    """Train one trial (a new run, or its interrupted run resumed from its checkpoint) and score it; ``reported``:
    the steps a resumed trial reported before it was interrupted."""
    params = trial_params(spec, trial)
    record_options(trial, params)
    reported = set(reported or ())

    def report(step: int, rows: list[dict[str, Any]]) -> None:
        if report_and_prune(spec, trial, reported, step, rows):
            raise optuna.TrialPruned(f"pruned at step {step:,}")

    return _outcome(spec, trial_dir(out, trial.number), params, report, progress)


def record_options(trial: optuna.Trial, params: dict[str, Any]) -> None:
    """The trial's options as its run takes them, stored with it (what the report and --confirm read)."""
    trial.set_user_attr("options", {k: list(v) if isinstance(v, tuple) else v for k, v in params.items()})


def report_and_prune(spec: TuneSpec, trial: optuna.Trial, reported: set[int], step: int,
                     rows: list[dict[str, Any]]) -> bool:
    """Report the objective of the evaluations so far at ``step`` (once: ``reported`` holds the steps already
    reported, before an interruption too) and return whether the pruner stops the trial there."""
    if step not in reported:
        trial.report(objective_so_far(spec.objective, rows, spec.tasks, list(range(spec.seeds))), step)
        reported.add(step)
    return trial.should_prune()


def _outcome(spec: TuneSpec, where: Path, params: dict[str, Any], report: OnEval, progress: bool) -> Outcome:
    try:
        run = train_or_resume(where, spec.config(params), spec.run_options, report, progress)
    except optuna.TrialPruned as exc:
        return Outcome(optuna.trial.TrialState.PRUNED, note=str(exc))
    except Exception as exc:
        if machine_write_error(exc):  # every later trial would fail the same way: stop, the trial left resumable
            raise
        return failure(exc)
    return scored(spec, run)


def failure(exc: Exception) -> Outcome:
    """A trial's training raised ``exc``: a failed trial with the one-line reason.

    Any exception but the machine refusing a write (:func:`~mtdqn.io.machine_write_error`, which stops the
    search) is told as a failure (a bug, a bad value...), else the trial would stay running and every rerun
    would resume it and crash again; the search goes on (as on Ray, where a worker dies)."""
    if isinstance(exc, (ConfigError, TrainingDiverged)):
        return Outcome(optuna.trial.TrialState.FAIL, note=" ".join(str(exc).split()))
    return Outcome(optuna.trial.TrialState.FAIL, note=f"{type(exc).__name__}: {' '.join(str(exc).split())}")


def scored(spec: TuneSpec, run: Run) -> Outcome:
    """A finished trial's outcome: complete with the spec's objective, or failed when it is NaN."""
    try:
        value = reduce(spec.objective, objective_of_run(spec.objective, run.evals, run.summary))
    except Exception as exc:
        return failure(exc)
    if value != value:  # NaN: no score to rank
        return Outcome(optuna.trial.TrialState.FAIL, note="objective is NaN")
    return Outcome(optuna.trial.TrialState.COMPLETE, value)


def train_or_resume(where: Path, cfg: TrainConfig, run_options: RunOptions, on_eval: OnEval | None,
                    progress: bool) -> Run:
    """The run of ``cfg`` in ``where``: read back when finished, resumed from its checkpoint when it has one
    (with the config and options it was started with), else started afresh."""
    from mtdqn.train.run import train  # JAX: imported when a trial trains, not when a spec is read

    if (where / "summary.json").is_file():
        return Run(where)
    if RunDir(where).checkpoint_id() is not None:
        return Run(train(RunDir(where).config(), where, resume=True, on_eval=on_eval, progress=progress).out_dir)
    if where.exists():  # killed before its first checkpoint: nothing of it can be continued
        shutil.rmtree(where)
    return Run(train(cfg, where, run_options, on_eval=on_eval, progress=progress).out_dir)


def check_reusable(where: Path, cfg: TrainConfig) -> None:
    """A run directory is read back or resumed only for the configuration it was made with (config.json's
    config hash).  Another one there means the storage and the trials directory come from different searches
    (a deleted tune.db, a copied directory): that is refused with one line rather than the run deleted and
    started afresh, since the run may be the only copy of results the storage no longer describes."""
    run = RunDir(where)
    if not run.is_run():
        return
    stored, wanted = run.require_run().get("config_hash"), config_hash(cfg)
    if stored != wanted:
        changed = hash_change(cfg)
        if changed:  # the same configuration, made by earlier code: not another search
            raise ConfigError(f"{where} holds a run made before {changed}; give another --out for a new search")
        raise ConfigError(f"{where} holds a run of another configuration (config hash {stored}, not {wanted}): "
                          "its storage and its trials come from different searches; give another --out")


def tell(study: optuna.Study, number: int, outcome: Outcome) -> None:
    """Optuna told how trial ``number`` ended (a score for a complete one only), its note stored with it."""
    if outcome.note:
        live_trial(study, number).set_user_attr("note", outcome.note)
    study.tell(number, outcome.value if outcome.state == optuna.trial.TrialState.COMPLETE else None,
               state=outcome.state)


def running_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """The trials the storage calls running: on start, those a killed tune left (a directory has one tune)."""
    return study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))


def finished_count(study: optuna.Study) -> int:
    """How many trials are complete, pruned or failed: what ``--n-trials`` counts."""
    return len(study.get_trials(deepcopy=False, states=FINISHED))


Announce = Callable[[str], None]


def outcome_line(number: int, outcome: Outcome) -> str:
    """One line of progress: the trial, how it ended, its score or why it has none ("trial 4: pruned at step
    500", where it read "pruned (pruned at step 500)")."""
    state = outcome.state.name.lower()
    if outcome.value is None and outcome.note.startswith(state):
        return f"trial {number}: {outcome.note}"
    what = f"score {outcome.value:.4g}" if outcome.value is not None else outcome.note
    return f"trial {number}: {state} ({what})"


Start = Callable[[int, list[int]], None]
Wait = Callable[[], tuple[int, Outcome]]


def drive(spec: TuneSpec, study: optuna.Study, out: Path, trials: int, width: int, start: Start, wait: Wait,
          announce: Announce) -> None:
    """The search loop on Ray (:mod:`mtdqn.tune.ray_trials`): the trials a killed tune left running first (each
    with the steps it reported), then new ones, at most ``width`` at once, until ``trials`` have finished.
    ``start(number, reported)`` launches a trial; ``wait()`` returns one that ended, which is told here.  Before
    a trial starts its run directory, if there is one, is checked to be that trial's (:func:`check_reusable`)."""
    def launch(number: int, reported: list[int]) -> None:
        check_reusable(trial_dir(out, number), spec.config(trial_params(spec, live_trial(study, number))))
        start(number, reported)

    pending = 0
    for frozen in running_trials(study):
        announce(f"trial {frozen.number}: resuming")
        launch(frozen.number, sorted(frozen.intermediate_values))
        pending += 1
    finished = finished_count(study)
    while pending or finished + pending < trials:
        while finished + pending < trials and pending < width:
            trial = ask(spec, study)
            announce(f"trial {trial.number}: started")
            launch(trial.number, [])
            pending += 1
        number, outcome = wait()
        tell(study, number, outcome)
        pending, finished = pending - 1, finished + 1
        announce(outcome_line(number, outcome))


def best_trial(study: optuna.Study) -> optuna.trial.FrozenTrial | None:
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    return max(complete, key=lambda t: (t.value, -t.number)) if complete else None


def confirm_dir(out: Path, number: int, seeds: int) -> Path:
    return out / "confirm" / f"trial-{number:04d}-seeds-{seeds}"


def confirmed_trial(path: Path) -> int | None:
    """The trial a confirmation directory (``confirm_dir``) retrained; None for a name it does not make."""
    found = re.fullmatch(r"trial-(\d+)-seeds-\d+", path.name)
    return int(found.group(1)) if found else None


def confirm_best(spec: TuneSpec, study: optuna.Study, out: Path, seeds: int, progress: bool) -> Path:
    """The best trial's configuration trained again with ``seeds`` fresh seeds (after the trials' own), as a run
    of its own: its score is not the maximum over trials, so it is not biased upward by the selection."""
    best = best_trial(study)
    if best is None:
        raise ConfigError(f"{out}: no complete trial to confirm yet")
    where = confirm_dir(out, best.number, seeds)
    cfg = spec.config(best.user_attrs["options"], seeds=seeds, seed=spec.seeds)
    check_reusable(where, cfg)
    train_or_resume(where, cfg, spec.run_options, None, progress)
    return where


def _search(record: dict[str, Any]) -> dict[str, Any]:
    """What makes two records the same search: everything but the trial count (``--n-trials`` may grow it), the
    batch size (how trials are trained, not what is searched: a batch resumes from its trials' record) and the
    search's id (the folder's, not the spec's)."""
    return {k: v for k, v in record.items() if k not in ("trials", "batch", SEARCH_ID)}


def check_same_search(out: Path, record: dict[str, Any]) -> None:
    """A directory holds one search: rerunning it with a different spec, or with another storage than the one
    its trials are in, is refused, not mixed in."""
    path = out / TUNE_RECORD
    if not path.is_file():
        return
    old = read_json(path)
    if storage_url(old.get("storage"), out) != record.get("storage"):  # a relative URL recorded before: as now
        where = old.get("storage") or "its own tune.db"
        raise ConfigError(f"{out} keeps its trials in {where}: give the same --storage (or another --out)")
    old = {**old, "storage": record.get("storage")}  # the same storage, however it was written (checked above)
    if _search(old) != _search(record):
        changed = config_diff(_search(old), _search(record))
        shown = "; ".join(f"{k} {_short(was)} there, {_short(now)} here" for k, was, now in changed[:3])
        more = f" (and {len(changed) - 3} more)" if len(changed) > 3 else ""
        name = " (a spec's name is its file's unless it sets name)" if any(k == "name" for k, _, _ in changed) else ""
        raise ConfigError(f"{out} holds another search: {shown}{more}{name}; give another --out, or the spec "
                          "it was made with")


def _short(value: Any) -> str:
    text = "absent" if value is None else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def write_record(out: Path, record: dict[str, Any]) -> None:
    write_json(out / TUNE_RECORD, record)
