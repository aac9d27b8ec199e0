"""`mtdqn tune` from a checked spec to a tune directory: storage, trials (here or on Ray), confirmation, report.

Order matters for bad input: the spec is checked (its fixed options' values
here, where JAX may start: reading a spec stays JAX-free, the CPU plan is
made from it before JAX starts), then a directory that
holds another search (or keeps its trials in another storage) is refused,
and one another search is running in, then a storage URL given with
``--storage`` is opened, before the tune directory is created or anything
added to it.
"""

from __future__ import annotations

import itertools
import math
import uuid
import warnings
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import optuna

from mtdqn.config import TrainConfig
from mtdqn.budget import check_train_budget
from mtdqn import errors
from mtdqn.errors import (ConfigError, FewUpdatesWarning, InsufficientResources, RoundedScheduleWarning,
                          warn_user)
from mtdqn.io import check_not_other_kind, held
from mtdqn.tune.batches import run_batched_search, running_batches
from mtdqn.tune.report import build_tune_report, seed_scores
from mtdqn.tune.search import (
    SEARCH_ID, TUNE_RECORD, best_trial, check_same_search, check_storage_holds_this_search, confirm_best,
    check_trials_have_their_study, default_storage, finished_count, open_search, open_storage, own_storage_search,
    read_search_id, storage_url, write_record,
)
from mtdqn.studies.spec import agent_error
from mtdqn.tune.spec import TuneSpec, schedule_note

__all__ = ["TuneResult", "run_tune"]


@dataclass(frozen=True)
class TuneResult:
    """What a tune made: its directory, report, best trial (None without a complete one) and confirmation;
    ``failed``: each failed trial's number and reason."""

    out_dir: Path
    report: Path
    best_trial: int | None
    best_score: float | None
    best_options: dict[str, Any]
    confirm_dir: Path | None = None
    confirm_score: float | None = None
    failed: list[tuple[int, str]] = field(default_factory=list)


def check_fixed_options(spec: TuneSpec) -> None:
    """The fixed ``[options]`` values checked once, as a run checks them (a bad ``sharing`` would otherwise fail
    every trial): with the searched options at their defaults, so an error naming a searched option is left to
    the trials (the space may hold values that make it valid).  Fixed options this machine's memory cannot
    hold are InsufficientResources (the CLI's exit 1)."""
    error = agent_error(spec.config({}))
    if error is not None and not _names_searched(spec, error):
        machine = agent_error(spec.config({}), machine=False) is None
        raise (InsufficientResources if machine else ConfigError)(f"tune {spec.name}: [options]: {error}")
    error = budget_error(spec.config({})) if not set(spec.space) & BUDGET_OPTIONS else None  # else: the space's
    if error is not None:  # every trial failed it: refused here
        raise ConfigError(f"tune {spec.name}: steps = {spec.steps:,}: {error}")
    check_some_point_trains(spec)


BUDGET_OPTIONS = {"learning_starts", "train_every", "num_envs", "log_every"}
"""The options besides ``steps`` whether a budget makes an update depends on: searched, the space's points
decide (:func:`check_some_point_trains`)."""


def _names_searched(spec: TuneSpec, error: str) -> bool:
    """Whether ``error`` names an option of the space (which may hold values that make the run valid)."""
    return any(f"--{name.replace('_', '-')}" in error for name in spec.space)


def budget_error(cfg: TrainConfig) -> str | None:
    """Why ``cfg``'s budget makes no update (:func:`~mtdqn.budget.check_train_budget`), or None; its warning
    of few updates is the trial's to give."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FewUpdatesWarning)
        try:
            check_train_budget(cfg, strategy_rules=False)
        except ConfigError as exc:
            return str(exc)
    return None


SPACE_CHECKS = 64
"""Corners (at most) and as many random draws of the space :func:`check_some_point_trains` tries."""


def check_some_point_trains(spec: TuneSpec) -> None:
    """A space in which no configuration a run accepts can be found would fail its trials (the classic presets
    did: every --target-update-every in [10, 1000] beside the fixed Polyak --tau 0.005): one line before
    anything is written.  Tried in order, until one passes: the space's corners (each range at one of its
    ends, each choice; a random :data:`SPACE_CHECKS` of them when there are more), then as many draws from its
    prior (a rule need not be a threshold: --train-every must be a multiple of --num-envs, which both ends
    of [2, 6] miss and 4 meets).  What none of those passes is refused; a space whose valid part is too small
    to be hit is refused too, and should be narrowed.  Then each choice, the same way with that choice fixed:
    a choice no run accepts (a mistyped ``sharing``) would fail every trial that draws it."""
    rng = np.random.default_rng(spec.sampler_seed)
    _check_a_point_trains(spec, rng, {})
    for name, dim in spec.space.items():
        for choice in dim.choices:  # empty for ranges
            _check_a_point_trains(spec, rng, {name: choice})


def _check_a_point_trains(spec: TuneSpec, rng: np.random.Generator, fixed: dict[str, Any]) -> None:
    """:func:`check_some_point_trains`'s search, with the options in ``fixed`` held at their values."""
    dims = {name: dim for name, dim in spec.space.items() if name not in fixed}
    n_corners = math.prod(len(dim.ends()) for dim in dims.values())
    corners = (itertools.product(*(dim.ends() for dim in dims.values())) if n_corners <= SPACE_CHECKS else
               (tuple(dim.ends()[int(rng.integers(len(dim.ends())))] for dim in dims.values())
                for _ in range(SPACE_CHECKS)))
    n_draws = SPACE_CHECKS if dims else 0  # with every option fixed there is one point to check
    draws = (tuple(dim.draw(rng) for dim in dims.values()) for _ in range(n_draws))
    first, count = None, 0
    for values in itertools.chain(corners, draws):
        point = {**dict(zip(dims, values)), **fixed}
        error = agent_error(spec.config(point), machine=False) or budget_error(spec.config(point))
        if error is None:
            return
        count += 1
        first = first or (point, error)
    point, error = first
    at = ", ".join(f"{name} = {value}" for name, value in point.items())
    what = ("no configuration of [space] checked can train" if not fixed else
            f"{', '.join(f'{name} = {value}' for name, value in fixed.items())}: no configuration checked with it "
            "can train")
    raise ConfigError(f"tune {spec.name}: {what} ({count}: its corners and {n_draws} random draws), so the "
                      f"search would fail its trials; e.g. at {at}: {error}")


def _check_no_running_batches(spec: TuneSpec, out: Path, opened: optuna.storages.BaseStorage | None) -> None:
    """A killed batched tune's batches resume only together, in one program here: refused on Ray.  ``opened``:
    the --storage run_tune opened (None: the folder's own tune.db)."""
    if not (out / TUNE_RECORD).is_file() or (opened is None and not (out / "tune.db").is_file()):
        return  # a new search: nothing running (and no database made here before Ray is reached)
    try:
        study = optuna.load_study(study_name=spec.name, storage=default_storage(out) if opened is None else opened)
    except KeyError:  # killed before its study was made
        return
    left = running_batches(study)
    if left:
        raise ConfigError(f"{out}: {', '.join(left)} of a batched tune still hold(s) running trials, which "
                          "resume only together: rerun without --ray-address to finish them first")


def run_tune(spec: TuneSpec, out: Path, *, storage: str | None = None, trials: int | None = None,
             ray_address: str | None = None, confirm: int | None = None, command: str = "mtdqn tune SPEC",
             progress: bool = True, announce: Callable[[str], None] = lambda line: None) -> TuneResult:
    """Run the trials the tune directory ``out`` does not hold yet (``trials``: the total, default the spec's),
    then with ``confirm`` retrain the best configuration with that many fresh seeds, then write the report.
    Without a complete trial there is nothing to confirm: the report is written all the same, then every trial
    failed (the result's ``failed``: the CLI exits 3) or a ConfigError says so."""
    check_fixed_options(spec)
    if spec.batch > 1 and ray_address is not None:
        raise ConfigError(f"tune {spec.name}: batch = {spec.batch} trains a batch's trials here, in one program; on "
                          "Ray each trial is a task of its own: remove batch, or --ray-address")
    check_not_other_kind(out, TUNE_RECORD)  # a run's, a sweep's or a study's folder: trials were written into it
    search_id = read_search_id(out)  # None: a new folder, or one made before searches had ids
    storage = storage_url(storage, out)
    record = {**spec.record(), "storage": storage,  # None: the directory's own tune.db (moves with it)
              SEARCH_ID: search_id or uuid.uuid4().hex}
    check_same_search(out, record)  # before the storage is opened: opening may create a database
    if out.is_dir():  # nor may a search running there have it opened (the hold is taken, and kept, below)
        with held(out):
            pass
    opened = open_storage(storage) if storage is not None else None  # a bad URL fails before anything is written
    if opened is not None:  # a shared storage: its study of this name may be another folder's
        check_storage_holds_this_search(opened, storage, spec, out, search_id)
    else:  # the folder's own tune.db (opening a missing one would make it): its study, where trials have runs
        own = default_storage(out)
        own_db = open_storage(own) if (out / "tune.db").is_file() else None
        check_trials_have_their_study(own_db, own, spec, out)
        stored_id = own_storage_search(own_db, spec) if own_db is not None else None  # another spec's: refused
        if search_id is None and stored_id is not None:  # its tune.json gone: the folder's search all the same
            record[SEARCH_ID] = stored_id
    note = schedule_note(spec)
    if note:  # the trials round the budget or the cadence to whole logging windows
        warn_user(note, RoundedScheduleWarning)
    if ray_address is not None:
        from mtdqn.studies.ray_backend import RayBackend

        _check_no_running_batches(spec, out, opened)  # before Ray starts
    # Ray first: an unreachable cluster fails before anything is written (run_search_on_ray's own connection then
    # finds Ray started and uses it); then one search per folder: a second one's batches cleared and trained the
    # first's trials
    with ExitStack() as ray_session:
        if ray_address is not None:
            ray_session.enter_context(RayBackend(ray_address))
        with held(out):
            write_record(out, record)
            url = storage if storage is not None else default_storage(out)
            study = open_search(spec, opened if opened is not None else open_storage(url), record[SEARCH_ID], out)
            total = trials if trials is not None else spec.trials
            ended = finished_count(study)
            if ended >= total and ended == len(study.trials):  # was silent: `--n-trials 2` on 4 trials
                asked = (f"--n-trials {total:,} is the total it should hold, not a number to add" if trials is not None
                         else f"the spec's trials = {total:,}")
                announce(f"{out} holds {errors.count(ended, 'finished trial')}; {asked}: none to run")
            if ray_address is not None:
                from mtdqn.tune.ray_trials import run_search_on_ray  # imports Ray, which local tunes do without

                run_search_on_ray(spec, study, url, out, total, ray_address, announce)
                ray_session.close()  # a local cluster's daemons stop: the confirmation trains here, on these cores
            else:
                run_batched_search(spec, study, out, total, progress, announce)
            confirmed, confirm_score = None, None
            if confirm is not None and best_trial(study) is not None:  # none: the report says why, and the caller
                confirmed = confirm_best(spec, study, out, confirm, progress)
                confirm_score = seed_scores(spec.objective, confirmed)[0]
            report = build_tune_report(spec, study, out, command,
                                       [p.parent for p in sorted((out / "confirm").glob("*/summary.json"))])
            best = best_trial(study)
            failed = [(t.number, t.user_attrs.get("note", "")) for t in
                      study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.FAIL,))]
            if confirm is not None and best is None and not failed:  # with failures: SearchFailed, from the result
                raise ConfigError(f"{out}: no complete trial to confirm yet (report: {report})")
            options = dict(best.user_attrs.get("options", {})) if best else {}
            return TuneResult(out, report, best.number if best else None, best.value if best else None, options,
                              confirmed, confirm_score, failed)
