"""`mtdqn tune`: the spec's checks, the objective's numbers, the pruner fed by a run's evaluations, resuming after
kill -9, confirmation, the report and the presets (trials on Ray: test_ray)."""

from __future__ import annotations

import errno
import json
import os
import shutil
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest

from helpers import TUNE_SMALL

import mtdqn
from mtdqn.analysis.anchors import lookup
from mtdqn.analysis.stats import MIN_SEEDS
from mtdqn.cli import main
from mtdqn.errors import ConfigError
from mtdqn.studies.presets import PRESETS
from mtdqn.tune.objective import objective_bounds, objective_so_far, per_seed, reduce, score_matrix, seed_interval
from mtdqn.tune.presets import CLASSIC_SPACE, TUNE_PRESETS, resolve_tune_spec
from mtdqn.train import sweep as sweep_module
from mtdqn.tune import batches, search
from mtdqn.tune.search import (
    Outcome, ask, drive, live_trial, open_search, open_storage, read_search_id, tell, write_record,
)
from mtdqn.tune.run import check_fixed_options
from mtdqn.tune.spec import TUNABLE, Dimension, build_tune_spec

ROOT = Path(__file__).resolve().parent.parent

# A trial of this spec trains ~1,000 steps per task (a few seconds after its compile); one evaluation during
# training, at step 500, feeds the pruner.
SMALL = TUNE_SMALL


def _toml(table: dict) -> str:
    """A tune table as TOML (flat values and one level of tables: all a spec has)."""
    def value(v):
        if isinstance(v, dict):
            return "{" + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + "}"
        return json.dumps(v)
    top = [f"{k} = {value(v)}" for k, v in table.items() if not isinstance(v, dict)]
    sections = [f"\n[{k}]\n" + "\n".join(f"{n} = {value(x)}" for n, x in v.items())
                for k, v in table.items() if isinstance(v, dict)]
    return "\n".join(top) + "\n" + "\n".join(sections) + "\n"


# ---------------------------------------------------------------- the spec


@pytest.mark.parametrize("space, expected", [
    ({}, "the search space is empty"),
    ({"lrr": {"log": [1e-4, 1e-2]}}, "did you mean 'lr'"),
    ({"steps": {"int": [1000, 2000]}}, "steps cannot be tuned (the spec fixes it); tunable: num_envs, task_weights, strategy"),
    ({"lr": {"log": [0.0, 1e-2]}}, "a log range needs bounds > 0"),
    ({"lr": {"log": [-1e-3, 1e-2]}}, "a log range needs bounds > 0"),
    ({"lr": {"float": [1e-2, 1e-4]}}, "low 0.01 > high 0.0001"),
    ({"lr": {"log": [1e-4, float("inf")]}}, "bounds must be finite numbers, got [0.0001, inf]"),  # was a traceback
    ({"eps_fraction": {"float": [float("nan"), 0.5]}}, "bounds must be finite numbers, got [nan, 0.5]"),
    ({"batch_size": {"int": [128, 32]}}, "low 128 > high 32"),
    ({"batch_size": {"float": [32.5, 64.0]}}, "batch_size is an int: give int bounds"),
    ({"sharing": {"float": [0.0, 1.0]}}, "sharing is str (use choice)"),
    ({"lr": {"range": [0.1, 0.2]}}, "expected one of {float = [low, high]}"),
    ({"sharing": {"choice": []}}, "choice needs a non-empty list"),
    ({"loss": {"choice": ["mse", "l1"]}}, "expected one of 'huber', 'mse', got 'l1'"),
])
def test_bad_space_is_one_line(space, expected):
    with pytest.raises(ConfigError, match=None) as info:
        build_tune_spec({**SMALL, "space": space}, "spec.toml", "spec")
    assert expected in str(info.value) and "\n" not in str(info.value)


def test_bad_spec_keys():
    for table, expected in [({**SMALL, "objetive": "auc"}, "did you mean 'objective'"),
                            ({**SMALL, "pruner": "hyperband"}, "pruner: expected one of median, asha, none"),
                            ({**SMALL, "options": {"lrr": 0.1}}, "did you mean 'lr'"),
                            ({**SMALL, "options": {"lr": 1e-3}}, "lr is both fixed in [options] and searched"),
                            ({**SMALL, "options": {"eval_every": 100}}, "set it at the top of the spec"),
                            ({**SMALL, "seed": 3}, "the sampler's seed is sampler_seed"),
                            ({**SMALL, "options": {"seed": 3}}, "every trial trains seeds 0..seeds-1"),
                            ({**SMALL, "tasks": ["CartPole-v1", "Breakout-MinAtar"]}, "objective iqm normalizes"),
                            ({**SMALL, "objective": "auc", "pruner": "none", "eval_every": 0}, "set eval_every"),
                            ({**SMALL, "probes": "yes"}, "probes: expected true or false, got 'yes'"),
                            # one wording for 0 and -1 (-1 was told ">= 0", which 0 is and is refused)
                            ({**SMALL, "steps": 0}, "steps: expected a positive integer, got 0"),
                            ({**SMALL, "steps": -1}, "steps: expected a positive integer, got -1"),
                            ({**SMALL, "eval_every": -1}, "eval_every: expected an integer >= 0, got -1"),
                            # the median pruner never acted: no evaluation before the trial's end
                            ({**SMALL, "eval_every": 5000, "steps": 2000}, "pruner median stops trials on their "
                             "evaluations during training, and eval_every 5,000 is not below steps 2,000"),
                            # the name first: it once met the objective's anchors ("use objective = ...")
                            ({**SMALL, "tasks": ["CartPol-v1"]},
                             "spec.toml: tasks: unknown task 'CartPol-v1'; did you mean 'CartPole-v1'?")]:
        with pytest.raises(ConfigError) as info:
            build_tune_spec(table, "spec.toml", "spec")
        assert expected in str(info.value), (table, str(info.value))


def test_a_budget_or_cadence_the_trials_round_is_said():
    """A trial trains whole logging windows and evaluates between them: ``steps = 100`` with the default
    10,000-step window trained 10,000 and evaluated once, while the report said 100 steps and an evaluation
    every 20.  The note checked here is the tune's warning (RoundedScheduleWarning, one line on the CLI) and the
    report's "As run" line.  The pruner's default cadence (a fifth of the steps) is in whole windows, so the note
    gives no advice on a value the spec did not set; one it sets is noted."""
    from mtdqn.tune.spec import schedule_note

    rounded = build_tune_spec({**SMALL, "steps": 100, "options": {"hidden": [16]}, "eval_every": 0}, "s", "s")
    assert rounded.eval_every == rounded.checkpoint_every == 10_000
    assert schedule_note(rounded) == ("tune small: steps 100 trains 10,000 env steps per task (whole logging windows "
                                      "of 10,000); set options.log_every to a multiple of num_envs (4) dividing them "
                                      "to run them as asked")
    asked = build_tune_spec({**SMALL, "eval_every": 200, "checkpoint_every": 300}, "s", "s")
    assert schedule_note(asked) == ("tune small: evaluations every 200 run every 500 and checkpoints every 300 are "
                                    "written every 500 env steps per task (whole logging windows of 500); set "
                                    "options.log_every to a multiple of num_envs (4) dividing them to run them as "
                                    "asked")
    same = schedule_note(build_tune_spec({**SMALL, "eval_every": 200}, "s", "s"))  # checkpoints at the evaluations
    assert "evaluations every 200 run every 500" in same and "checkpoints" not in same
    assert schedule_note(build_tune_spec(SMALL, "s", "s")) == ""  # 1,000 steps in windows of 500, as asked


def test_spec_kinds_and_schedule():
    options = {k: v for k, v in SMALL["options"].items() if k != "hidden"}
    spec = build_tune_spec({**SMALL, "options": options, "eval_every": 0, "space": {
        "lr": {"log": [1e-4, 1e-2]}, "gamma": {"float": [0.9, 1]}, "n_step": {"int": [1, 3]},
        "target_update_every": {"log": [10, 1000]}, "hidden": {"choice": [[16], [32, 32]]}}}, "s", "s")
    assert spec.space["gamma"] == Dimension("float", 0.9, 1.0)  # int bounds of a float option become floats
    assert spec.space["target_update_every"] == Dimension("log", 10, 1000)  # an int option on a log scale
    assert spec.space["hidden"].choices == ((16,), (32, 32))
    # pruning needs evaluations: five per trial, in whole logging windows (of 500: two in 1,000 steps)
    assert spec.eval_every == 500 and spec.checkpoint_every == 500
    assert "lr" in TUNABLE and "tasks" not in TUNABLE and "log_every" not in TUNABLE
    # a search compares returns: its trials run without the probes unless the spec asks (and records that it did)
    assert not spec.run_options.probes and "probes" not in spec.record()
    asked = build_tune_spec({**SMALL, "probes": True}, "s", "s")
    assert asked.run_options.probes and asked.record()["probes"] is True
    # without evaluations a trial still checkpoints five times, so a killed one does not restart from scratch
    plain = build_tune_spec({**SMALL, "objective": "final", "pruner": "none", "eval_every": 0}, "s", "s")
    assert plain.eval_every == 0 and plain.checkpoint_every == 500
    # gym: tasks' env state is Python's and cannot be checkpointed (train refuses it): none, and refused if asked
    host = {**SMALL, "tasks": ["gym:CartPole-v1"], "objective": "final"}
    assert build_tune_spec(host, "s", "s").checkpoint_every == 0
    with pytest.raises(ConfigError, match="checkpoint_every: gym: tasks step on the host"):
        build_tune_spec({**host, "checkpoint_every": 500}, "s", "s")


def test_dimensions_suggest_and_resumed_trials_get_their_values_back():
    """A trial continued after a kill (a new Trial object on the stored trial) gets back the values it was
    given, whatever the sampler would propose now; list choices come back as tuples."""
    options = {k: v for k, v in SMALL["options"].items() if k != "hidden"}
    spec = build_tune_spec({**SMALL, "options": options, "space": {
        "lr": {"log": [1e-4, 1e-2]}, "n_step": {"int": [1, 5]}, "hidden": {"choice": [[16], [32, 32]]},
        "double": {"choice": [True, False]}}}, "s", "s")
    study = open_search(spec, optuna.storages.InMemoryStorage())
    trial = study.ask()
    first = {name: dim.suggest(trial, name) for name, dim in spec.space.items()}
    assert 1e-4 <= first["lr"] <= 1e-2 and first["n_step"] in range(1, 6) and first["hidden"] in ((16,), (32, 32))
    again = live_trial(study, trial.number)
    assert {name: dim.suggest(again, name) for name, dim in spec.space.items()} == first


@pytest.mark.parametrize("sampler", ["random", "tpe"])
def test_a_reopened_search_does_not_repeat_its_configurations(tmp_path, sampler):
    """Each session opens a new sampler; seeded from the spec's seed alone, a resumed search would propose again
    the first trials' values (a random search's all, TPE's startup ones)."""
    spec = build_tune_spec({**SMALL, "sampler": sampler, "space": {"lr": {"log": [1e-4, 1e-2]},
                                                                   "gamma": {"float": [0.9, 0.99]}}}, "s", "s")
    url = f"sqlite:///{tmp_path / 'tune.db'}"

    def ask_and_tell(n):
        study = open_search(spec, url)
        for _ in range(n):
            trial = study.ask()
            values = {name: dim.suggest(trial, name) for name, dim in spec.space.items()}
            study.tell(trial, values["gamma"])

    ask_and_tell(2)
    ask_and_tell(2)
    params = [tuple(sorted(t.params.items())) for t in open_search(spec, url).trials]
    assert len(params) == 4 and len(set(params)) == 4, params


def test_trials_started_together_each_get_their_own_parameters(tmp_path):
    """On Ray several trials start before any ends: the driver's sampler draws each one's values when it asks
    (TPE with constant liar), and the process that runs a trial reads them back from the storage."""
    spec = build_tune_spec({**SMALL, "space": {"lr": {"log": [1e-4, 1e-2]}, "n_step": {"int": [1, 5]},
                                               "double": {"choice": [True, False]}}}, "s", "s")
    storage = optuna.storages.InMemoryStorage()
    study = open_search(spec, storage)
    started, running, widest = [], [], []

    def start(number, reported):
        assert set(study.trials[number].params) == set(spec.space)  # drawn when asked, before the trial runs
        trial = live_trial(open_search(spec, storage), number)  # as a worker sees it
        started.append(tuple(dim.suggest(trial, name) for name, dim in spec.space.items()))
        running.append(number)
        widest.append(len(running))

    def wait():
        number = running.pop(0)
        return number, Outcome(optuna.trial.TrialState.COMPLETE, float(number))

    drive(spec, study, tmp_path, 6, 3, start, wait, lambda line: None)
    assert max(widest) == 3 and len(started) == 6 and len(set(started)) == 6, started
    assert started == [tuple(dim.suggest(live_trial(study, t.number), name) for name, dim in spec.space.items())
                       for t in study.trials]


def test_an_outcome_note_is_stored_when_told():
    """The driver stores each trial's note when it tells Optuna how the trial ended: a Ray worker that died
    returns nothing, and its note ('worker died: ...') is made there."""
    spec = build_tune_spec(SMALL, "s", "s")
    study = open_search(spec, optuna.storages.InMemoryStorage())
    trial = study.ask()
    tell(study, trial.number, Outcome(optuna.trial.TrialState.FAIL, note="worker died: out of memory"))
    assert study.trials[0].state == optuna.trial.TrialState.FAIL
    assert study.trials[0].user_attrs["note"] == "worker died: out of memory"


def test_a_trial_that_raises_fails_and_the_search_goes_on(tmp_path, monkeypatch):
    """Any exception of a trial (not only a bad value or a divergence) fails that trial with a note; left
    running, every rerun would resume it and crash again."""
    calls = []

    def broken(where, *args):
        calls.append(where.name)
        raise RuntimeError("disk on fire\n  traceback line")

    monkeypatch.setattr(search, "train_or_resume", broken)
    spec = build_tune_spec(SMALL, "s", "s")
    study = open_search(spec, optuna.storages.InMemoryStorage())
    batches.run_batched_search(spec, study, tmp_path, 2, False, lambda line: None)
    assert calls == ["trial-0000", "trial-0001"]
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.FAIL] * 2
    assert study.trials[0].user_attrs["note"] == "RuntimeError: disk on fire traceback line"


@pytest.mark.parametrize("confirm", [[], ["--confirm", "2"]])
def test_a_search_none_of_whose_trials_completes_exits_3(tmp_path, monkeypatch, capsys, confirm):
    """Every trial failed: the report is written and its path printed, then one error line and exit 3 (it
    exited 0, as if the search had found something); with --confirm too, nothing to confirm (it exited 2, "no
    complete trial to confirm yet", with no report)."""
    from mtdqn.cli import main

    def broken(where, *args):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(search, "train_or_resume", broken)
    spec = tmp_path / "small.toml"
    spec.write_text(_toml(SMALL))
    with pytest.raises(SystemExit) as exc:
        main(["tune", str(spec), "--out", str(tmp_path / "out"), "--progress", "False", *confirm])
    captured = capsys.readouterr()
    err = [line for line in captured.err.splitlines() if line.strip()]
    assert not (tmp_path / "out" / "confirm").exists()
    assert exc.value.code == 3 and err == ["error: no trial completed: 2 failed (trial 0: RuntimeError: disk on "
                                           "fire); the report lists each trial's reason"], err
    assert f"report: {tmp_path / 'out' / 'report' / 'tune.md'}" in captured.out
    trials = pd.read_csv(tmp_path / "out" / "report" / "trials.csv", keep_default_na=False)
    assert list(trials["state"]) == ["fail", "fail"] and list(trials["run"]) == ["", ""]  # no directory to name


def test_a_batch_short_of_disk_stops_the_search_and_keeps_its_folder(tmp_path, monkeypatch):
    """A disk shortage is not the batch's size: the batch is not split and its folder (with a resumable
    checkpoint, in a real run) is not deleted; the search stops with the shortage's line (exit 1 in the CLI)."""
    from mtdqn.errors import InsufficientDisk

    def no_disk(out, where, *args):
        (where / "checkpoints").mkdir(parents=True)
        raise InsufficientDisk(f"not enough free disk space in {where} for two checkpoints")

    monkeypatch.setattr(batches, "_train", no_disk)
    spec = build_tune_spec({**SMALL, "batch": 2}, "s", "s")
    study = open_search(spec, optuna.storages.InMemoryStorage())
    with pytest.raises(InsufficientDisk, match="not enough free disk space"):
        batches.run_batched_search(spec, study, tmp_path, 2, False, lambda line: None)
    assert (batches.batch_dir(tmp_path, 0) / "checkpoints").is_dir()
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.RUNNING] * 2  # resumed by a rerun


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS])
def test_a_write_the_machine_refuses_mid_run_stops_the_search_alone_or_batched(tmp_path, monkeypatch, code):
    """A disk that fills during a run raises OSError(ENOSPC) (RunDir.ensure_space, or the write itself), not
    the InsufficientDisk of the check before training: the trial was told failed for good and counted, its
    resumable run never resumed; a batch's trials all failed.  Now the search stops (the CLI's exit 1), the
    trials left running for a rerun, as on a shortage found before training."""
    def refused(*args, **kwargs):
        raise OSError(code, "disk almost full: 3 MiB free", "trial-0000")

    monkeypatch.setattr(search, "train_or_resume", refused)
    spec = build_tune_spec(SMALL, "s", "s")
    study = open_search(spec, optuna.storages.InMemoryStorage())
    with pytest.raises(OSError, match="disk almost full"):
        batches.run_batched_search(spec, study, tmp_path / "alone", 2, False, lambda line: None)
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.RUNNING]

    monkeypatch.setattr(batches, "_train", refused)
    spec = build_tune_spec({**SMALL, "batch": 2}, "s", "s")
    study = open_search(spec, optuna.storages.InMemoryStorage())
    with pytest.raises(OSError, match="disk almost full"):
        batches.run_batched_search(spec, study, tmp_path / "batched", 2, False, lambda line: None)
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.RUNNING] * 2


def test_a_permission_error_mid_run_fails_that_trial_only(tmp_path, monkeypatch):
    """Not every OSError is the machine's: a permission error may be a read of the trial's own (a user's
    environment's file), so it fails that trial and the search goes on."""
    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", "/data/levels.json")

    monkeypatch.setattr(search, "train_or_resume", denied)
    spec = build_tune_spec(SMALL, "s", "s")
    study = open_search(spec, optuna.storages.InMemoryStorage())
    batches.run_batched_search(spec, study, tmp_path, 2, False, lambda line: None)
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.FAIL] * 2


def test_a_trial_on_ray_whose_worker_is_refused_a_write_stops_the_search():
    """On Ray the worker's shortage came back as a RayTaskError and was told 'worker died', a failure for good
    (and every later trial failed alike); its cause, the machine refusing a write, now stops the search as it
    does locally.  A worker that died of anything else still fails its trial only."""
    from ray.exceptions import RayTaskError

    from mtdqn.tune.ray_trials import worker_failure

    full = OSError(errno.ENOSPC, "disk almost full: 3 MiB free", "trial-0003")
    with pytest.raises(OSError, match="disk almost full") as raised:
        worker_failure(RayTaskError("_remote_trial", "Traceback ...", full))
    assert raised.value is full
    died = worker_failure(RayTaskError("_remote_trial", "Traceback ...", MemoryError("killed")))
    assert died.state == optuna.trial.TrialState.FAIL and died.note.startswith("worker died: ")


def test_a_kill_while_an_all_pruned_batch_is_told_gives_each_trial_its_own_step(tmp_path):
    """Killed after the first trial of an all-pruned batch was told, the rerun told the others the first one's
    note ("pruned at step 500" for a trial pruned at 1,000)."""
    spec, study = _two_trial_batch()
    for n, step in ((0, 500), (1, 1000)):
        live_trial(study, n).set_user_attr(batches.PRUNED_AT_ATTR, step)
    tell(study, 0, search.Outcome(optuna.trial.TrialState.PRUNED, note="pruned at step 500"))
    batches._batch(spec, study, tmp_path, [0, 1], False, lambda line: None)
    assert study.trials[1].state == optuna.trial.TrialState.PRUNED
    assert study.trials[1].user_attrs["note"] == "pruned at step 1,000"


def test_a_kill_while_a_failed_batch_is_told_tells_each_trial_its_own_outcome(tmp_path, monkeypatch):
    """A batch failed with trial 0 pruned before: killed after trial 0 was told (pruned), the rerun told trial 1
    "pruned at step 500" too, copying its sibling; killed after a failed trial was told, a pruned sibling failed."""
    spec, study = _two_trial_batch()
    live_trial(study, 0).set_user_attr(batches.PRUNED_AT_ATTR, 500)

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    told = []
    monkeypatch.setattr(batches, "_train", broken)
    monkeypatch.setattr(batches, "_tell", lambda study, n, outcome, announce: told.append(n) or (
        tell(study, n, outcome) if n == 0 else None))  # killed after the first trial is told
    batches._batch(spec, study, tmp_path, [0, 1], False, lambda line: None)
    assert study.trials[1].state == optuna.trial.TrialState.RUNNING and told == [0, 1]
    monkeypatch.undo()
    batches._batch(spec, study, tmp_path, [0, 1], False, lambda line: None)  # the rerun
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.FAIL]
    assert study.trials[1].user_attrs["note"] == "batch-0000: RuntimeError: boom"


def _two_trial_batch():
    spec = build_tune_spec({**SMALL, "batch": 2}, "s", "s")
    study = open_search(spec, optuna.storages.InMemoryStorage())
    for _ in range(2):
        ask(spec, study)
    return spec, study


def test_a_batch_that_fails_leaves_the_trials_its_pruner_stopped_pruned(tmp_path, monkeypatch):
    """A batch's error told every running trial failed, those the pruner had already stopped too (the report
    and the sampler then saw a pruned configuration as a failure)."""
    spec, study = _two_trial_batch()
    live_trial(study, 1).set_user_attr(batches.PRUNED_AT_ATTR, 500)

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(batches, "_train", broken)
    batches._batch(spec, study, tmp_path, [0, 1], False, lambda line: None)
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.FAIL, optuna.trial.TrialState.PRUNED]
    assert [t.user_attrs["note"] for t in study.trials] == ["batch-0000: RuntimeError: boom", "pruned at step 500"]


def test_a_batch_out_of_accelerator_memory_trains_its_trials_alone(tmp_path, monkeypatch):
    """XLA's out-of-memory on a GPU (RESOURCE_EXHAUSTED; the CPU's memory is checked before training, a GPU's
    is not) failed every trial of the batch; a trial alone is a smaller program, as for InsufficientResources."""
    import jax

    spec, study = _two_trial_batch()

    def out_of_memory(*args, **kwargs):
        raise jax.errors.JaxRuntimeError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate 9.00GiB.")

    trained, said = [], []
    monkeypatch.setattr(batches, "_train", out_of_memory)
    monkeypatch.setattr(batches, "_alone", lambda spec, study, out, n, *rest: trained.append(n) or tell(
        study, n, search.Outcome(optuna.trial.TrialState.COMPLETE, 1.0)))
    batches._batch(spec, study, tmp_path, [0, 1], False, said.append)
    assert trained == [0, 1] and said[0].startswith("batch-0000: RESOURCE_EXHAUSTED") and "train alone" in said[0]


def test_a_storage_holds_the_spec_of_its_study(tmp_path):
    """A study name reused by another spec in the same storage is refused, not mixed in."""
    url = f"sqlite:///{tmp_path / 'tune.db'}"
    open_search(build_tune_spec(SMALL, "s", "s"), url)
    open_search(build_tune_spec({**SMALL, "trials": 5}, "s", "s"), url)  # the trial count may grow
    with pytest.raises(ConfigError, match="holds a study 'small' of another spec"):
        open_search(build_tune_spec({**SMALL, "steps": 2000}, "s", "s"), url)


def test_a_tune_directory_keeps_its_storage(tmp_path):
    """tune.json records the storage (None: the directory's own tune.db): a rerun with another is refused
    before anything trains."""
    out = tmp_path / "tune"
    out.mkdir()
    write_record(out, {**build_tune_spec(SMALL, "s", "s").record(), "storage": None})
    with pytest.raises(ConfigError, match="keeps its trials in its own tune.db: give the same --storage"):
        mtdqn.tune(SMALL, out, storage=f"sqlite:///{tmp_path / 'other.db'}", progress=False)


def test_a_folder_whose_tune_json_is_gone_keeps_its_own_search(tmp_path, monkeypatch):
    """Its own tune.db is the folder's alone: another spec is refused before anything is written (tune.json was
    rewritten with it first, after which both specs were refused), and its own spec goes on with the search's
    stored id (it was refused as "another tune folder", the folder itself).  Nothing trains here."""
    import mtdqn.tune.run

    monkeypatch.setattr(mtdqn.tune.run, "run_batched_search", lambda *args, **kwargs: None)
    out = tmp_path / "tune"
    mtdqn.tune(SMALL, out, progress=False)
    stored = optuna.load_study(study_name="small", storage=f"sqlite:///{out / 'tune.db'}").user_attrs
    (out / "tune.json").unlink()
    with pytest.raises(ConfigError, match=r"^the storage holds a study 'small' of another spec"):
        mtdqn.tune({**SMALL, "steps": 2000}, out, progress=False)
    assert not (out / "tune.json").exists()
    mtdqn.tune(SMALL, out, progress=False)
    assert read_search_id(out) == stored[search.SEARCH_ID]


def test_task_names_are_stripped_as_the_run_strips_them():
    """" Acrobot-v1" stayed in the spec while the run named it "Acrobot-v1": the pruner's objective found no
    evaluation row of it, reported NaN, and every trial was pruned."""
    spec = build_tune_spec({**SMALL, "tasks": ["CartPole-v1", " Acrobot-v1 "]}, "s", "s")
    assert spec.tasks == ("CartPole-v1", "Acrobot-v1")


def test_two_tune_folders_cannot_share_one_storages_study(tmp_path, monkeypatch):
    """A second folder on a --storage whose study is a first folder's search is refused before anything is
    written: it took the first's trials as its own (listed without their runs, a killed one resumed into the
    second folder, the best confirmed without a run of it).  A copy of the folder is a second folder; a moved
    one is the same search; the same path made again is told its record is gone.  A study stored before
    searches had ids is adopted by a folder that holds a search (tune.json), refused to a new folder once it
    holds a trial.  (The searches train nothing here: only their records and storage are under test.)"""
    import mtdqn.tune.run

    monkeypatch.setattr(mtdqn.tune.run, "run_batched_search", lambda *args, **kwargs: None)
    url, spec = f"sqlite:///{tmp_path / 'shared.db'}", build_tune_spec(SMALL, "s", "s")
    first = tmp_path / "first"
    mtdqn.tune(SMALL, first, storage=url, progress=False)
    attrs = optuna.load_study(study_name="small", storage=url).user_attrs
    assert attrs[search.SEARCH_ID] == read_search_id(first) and attrs[search.FOLDER] == str(first.absolute())
    mtdqn.tune(SMALL, first, storage=url, progress=False)  # its own search, again
    with pytest.raises(ConfigError, match=r"study 'small' is the search of another tune folder, .*first, where"):
        mtdqn.tune(SMALL, tmp_path / "second", storage=url, progress=False)
    assert not (tmp_path / "second").exists()
    shutil.copytree(first, tmp_path / "copy")
    before = sorted(p.name for p in (tmp_path / "copy").rglob("*"))
    with pytest.raises(ConfigError, match=r"another tune folder \(this folder is a copy of it\), .*first"):
        mtdqn.tune(SMALL, tmp_path / "copy", storage=url, progress=False)
    assert sorted(p.name for p in (tmp_path / "copy").rglob("*")) == before
    shutil.rmtree(tmp_path / "copy")
    first.rename(tmp_path / "moved")  # the same search: the study names its new folder
    mtdqn.tune(SMALL, tmp_path / "moved", storage=url, progress=False)
    assert optuna.load_study(study_name="small", storage=url).user_attrs[search.FOLDER] == \
        str((tmp_path / "moved").absolute())
    shutil.rmtree(tmp_path / "moved")
    with pytest.raises(ConfigError, match=r"is the search .*moved held before its tune.json was removed; give this "
                                          r"spec another name, or delete that study \(optuna delete-study"):
        mtdqn.tune(SMALL, tmp_path / "moved", storage=url, progress=False)
    legacy = f"sqlite:///{tmp_path / 'legacy.db'}"  # studies made before ids
    open_search(spec, legacy).add_trial(optuna.trial.create_trial(value=1.0, user_attrs={"options": {}}))
    with pytest.raises(ConfigError, match="another tune folder, one made before folders were recorded"):
        mtdqn.tune(SMALL, tmp_path / "new", storage=legacy, progress=False)
    assert not (tmp_path / "new").exists()
    (tmp_path / "old").mkdir()
    write_record(tmp_path / "old", {**spec.record(), "storage": legacy})
    mtdqn.tune(SMALL, tmp_path / "old", storage=legacy, progress=False)  # adopted, and given an id
    assert optuna.load_study(study_name="small", storage=legacy).user_attrs[search.SEARCH_ID] == \
        read_search_id(tmp_path / "old") is not None
    empty = f"sqlite:///{tmp_path / 'empty.db'}"
    open_search(spec, empty)
    mtdqn.tune(SMALL, tmp_path / "fresh", storage=empty, progress=False)  # a study without trials: adopted


def test_fixed_option_values_are_checked_once_before_any_trial(tmp_path):
    """A bad fixed value is one line before anything is written (it would fail every trial); an error that
    names a searched option is left to the trials, whose values may make it valid."""
    for options, expected in [({"sharing": "x"}, "unknown --sharing 'x'"),
                              ({"buffer_size": 10}, "--batch-size 16 exceeds --buffer-size 10")]:
        with pytest.raises(ConfigError, match="tune small: \\[options\\]: " + expected):
            mtdqn.tune({**SMALL, "options": {**SMALL["options"], **options}}, tmp_path / "out", progress=False)
        assert not (tmp_path / "out").exists()
    tau = {**SMALL, "options": {**SMALL["options"], "tau": 0.005},
           "space": {"target_update_every": {"int": [1, 1]}}}  # default 1000 with tau 0.005 is refused, 1 is not
    check_fixed_options(build_tune_spec(tau, "s", "s"))


def test_a_budget_that_makes_no_update_is_refused_before_any_trial(tmp_path):
    """steps = 1000 before the default --learning-starts 5000: every trial failed "no update would run" and the
    search exited 3 with its folder written; now one line naming the budget.  With learning_starts searched, a
    space whose every point starts learning too late is refused too, and one with a point that learns is not."""
    cut = {**SMALL, "options": {k: v for k, v in SMALL["options"].items() if k != "learning_starts"}}
    with pytest.raises(ConfigError, match="tune small: steps = 1,000: no update would run: --steps 1,000 ends "
                                          "before the first update"):
        mtdqn.tune(cut, tmp_path / "out", progress=False)
    late = {**cut, "space": {**cut["space"], "learning_starts": {"int": [2000, 4000]}}}
    with pytest.raises(ConfigError, match="no configuration of \\[space\\] checked can train .* no update would run"):
        mtdqn.tune(late, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()
    check_fixed_options(build_tune_spec({**late, "space": {"learning_starts": {"int": [100, 4000]}}}, "s", "s"))
    # searched train_every: the default 4 at the fixed point makes no update, train_every 1 does (review)
    one = {**cut, "options": {**cut["options"], "num_envs": 1, "log_every": 1000, "learning_starts": 999},
           "space": {"train_every": {"int": [1, 3]}}}
    check_fixed_options(build_tune_spec(one, "s", "s"))


def test_a_space_no_point_of_which_can_train_is_refused_before_any_trial(tmp_path):
    """Every --target-update-every in [10, 1000] beside the default Polyak --tau 0.005 is refused by the run: a
    search over it would fail every trial (the classic presets did), so it is one line before anything is
    written.  Spaces with a valid part are searched: with tau searched too (tau 1 makes hard copies valid);
    a rule that is not a threshold (--train-every a multiple of --num-envs 4: both ends of [2, 6] fail, 4
    passes); more corners than are tried, half of which pass.  And each choice on its own: a choice with which no
    configuration can train (a mistyped sharing; tau 0.005 beside target_update_every >= 10) would fail every
    trial that draws it (it once ran them all, failed, and exited 0)."""
    period = {**SMALL, "space": {"lr": {"log": [1e-4, 1e-2]}, "target_update_every": {"log": [10, 1000]}}}
    with pytest.raises(ConfigError, match=r"tune small: no configuration of \[space\] checked can train \(68: its "
                                          r"corners and 64 random draws\), so the search would fail its trials; "
                                          r"e\.g\. at lr = 0\.0001, target_update_every = 10: --target-update-every "
                                          r"10 with --tau 0\.005"):
        mtdqn.tune(period, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()
    with_tau = {**period, "space": {**period["space"], "tau": {"log": [1e-3, 1.0]}}}
    check_fixed_options(build_tune_spec(with_tau, "s", "s"))
    check_fixed_options(build_tune_spec({**SMALL, "options": {**SMALL["options"], "num_envs": 4},
                                         "space": {"train_every": {"int": [2, 6]}}}, "s", "s"))
    wide = {"tau": {"choice": [0.005, 1.0]}, "target_update_every": {"log": [1, 1000]}, "lr": {"log": [1e-4, 1e-2]},
            "gamma": {"float": [0.9, 0.99]}, "eps_fraction": {"float": [0.1, 0.5]}, "eps_end": {"float": [0.01, 0.1]},
            "eps_start": {"float": [0.5, 1.0]}}  # 128 corners, those with tau 0.005 valid only at 1
    check_fixed_options(build_tune_spec({**SMALL, "space": wide}, "s", "s"))
    never = {**wide, "target_update_every": {"log": [10, 1000]}}  # tau 0.005 now has no valid corner or draw
    with pytest.raises(ConfigError, match=r"tune small: tau = 0\.005: no configuration checked with it can train "
                                          r"\(128: its corners and 64 random draws\).*--tau 0\.005"):
        check_fixed_options(build_tune_spec({**SMALL, "space": never}, "s", "s"))
    typo = {**SMALL, "space": {**SMALL["space"], "sharing": {"choice": ["shared", "bogus"]}}}
    with pytest.raises(ConfigError, match=r"tune small: sharing = bogus: no configuration checked with it can "
                                          r"train .*unknown --sharing 'bogus'"):
        mtdqn.tune(typo, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_another_search_is_refused_before_its_storage_is_opened(tmp_path):
    """Opening a SQLite URL creates the database: a directory of another search is refused before that."""
    out = tmp_path / "tune"
    out.mkdir()
    write_record(out, {**build_tune_spec({**SMALL, "steps": 2000}, "s", "s").record(), "storage": None})
    with pytest.raises(ConfigError, match="keeps its trials in its own tune.db"):
        mtdqn.tune(SMALL, out, storage=f"sqlite:///{tmp_path / 'new.db'}", progress=False)
    assert not (tmp_path / "new.db").exists() and sorted(p.name for p in out.iterdir()) == ["tune.json"]


def test_another_search_in_the_directory_is_named_by_what_differs(tmp_path):
    """'tune.json differs' named nothing: the keys that differ, with both values (the name is the spec file's)."""
    from mtdqn.tune.search import check_same_search

    out = tmp_path / "tune"
    out.mkdir()
    write_record(out, {**build_tune_spec(SMALL, "small", "small").record(), "storage": None})
    for spec, message in [({**SMALL, "steps": 2000}, "holds another search: steps 1000 there, 2000 here; give another "
                                                     "--out, or the spec it was made with"),
                          ({**SMALL, "name": "copy"}, "name 'small' there, 'copy' here (a spec's name is its file's")]:
        record = {**build_tune_spec(spec, spec["name"], spec["name"]).record(), "storage": None}
        with pytest.raises(ConfigError, match=re.escape(message)):
            check_same_search(out, record)


def test_a_record_of_the_default_or_a_relative_storage_is_the_same_search(tmp_path, monkeypatch):
    """tune.json written before storages were recorded as now (the folder's tune.db named explicitly, a relative
    SQLite path) passed the storage check, then was refused as "another search: storage ... there, ... here"."""
    from mtdqn.tune.search import check_same_search, storage_url

    monkeypatch.chdir(tmp_path)
    out = tmp_path / "tune"
    out.mkdir()
    spec = build_tune_spec(SMALL, "small", "small")
    for old, now in [(f"sqlite:///{out / 'tune.db'}", None), ("sqlite:///rel.db", f"sqlite:///{tmp_path}/rel.db")]:
        write_record(out, {**spec.record(), "storage": old})
        assert storage_url(old, out) == now
        check_same_search(out, {**spec.record(), "storage": now})
    with pytest.raises(ConfigError, match="holds another search: steps"):
        check_same_search(out, {**build_tune_spec({**SMALL, "steps": 2000}, "small", "small").record(),
                                "storage": f"sqlite:///{tmp_path}/rel.db"})


def test_a_trial_directory_of_another_configuration_is_refused(tmp_path):
    """The storage says trial 0 is running, but trials/trial-0000 holds a run of another configuration (say
    tune.db was deleted and the search started over): it is neither read back nor resumed, nor deleted."""
    out = tmp_path / "tune"
    out.mkdir()
    spec = build_tune_spec(SMALL, "s", "s")
    write_record(out, {**spec.record(), "storage": None})
    ask(spec, open_search(spec, f"sqlite:///{out / 'tune.db'}"))  # left running by a killed tune
    other = tmp_path / "tune" / "trials" / "trial-0000"
    other.mkdir(parents=True)
    (other / "config.json").write_text(json.dumps({"config_hash": "0123456789abcdef"}))
    (other / "summary.json").write_text("{}")
    with pytest.raises(ConfigError, match="trial-0000 holds a run of another configuration"):
        mtdqn.tune(SMALL, out, n_trials=1, progress=False)
    assert (other / "summary.json").is_file()


def test_trials_runs_without_their_study_are_refused(tmp_path):
    """tune.db emptied or deleted beside trials/ with runs: the rerun made a new study, drew other trials into the
    old trials' folders and stuck on the first that differed; now one line, and the runs stay."""
    out = tmp_path / "tune"
    run = out / "trials" / "trial-0000"
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"config_hash": "0123456789abcdef"}))
    spec = build_tune_spec(SMALL, "s", "s")
    write_record(out, {**spec.record(), "storage": None})
    for state in ("deleted", "emptied"):
        if state == "emptied":
            (out / "tune.db").write_bytes(b"")
        with pytest.raises(ConfigError, match=r"storage sqlite:///.*tune.db holds no study 'small', while .*trials "
                                              r"holds 1 trial run: the storage was emptied, deleted or replaced"):
            mtdqn.tune(SMALL, out, n_trials=1, progress=False)
        assert (run / "config.json").is_file() and not (out / "trials" / "trial-0001").exists()


def test_asha_rungs_are_the_evaluations():
    """ASHA's first rung is the first evaluation at or after a third of the budget (1,000 of 2,500 with one every
    500: the median pruner's warm-up), each next one twice as far, and a trial goes on only in the top half of
    those that reached the rung: with scores 10, 5, 1, 8 reported at every evaluation, 5 and 1 stop at the
    first rung (1,000), 8 at the second (2,000, below 10 of the two there)."""
    spec = build_tune_spec({**SMALL, "pruner": "asha", "steps": 2500, "eval_every": 500}, "s", "s")
    study = open_search(spec, optuna.storages.InMemoryStorage())
    stopped = []
    for value in (10.0, 5.0, 1.0, 8.0):
        trial = study.ask()
        for step in range(500, 3000, 500):
            trial.report(value, step)
            if trial.should_prune():
                stopped.append(step)
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                break
        else:
            stopped.append(None)
            study.tell(trial, value)
    assert stopped == [None, 1000, 1000, 2000]


# ---------------------------------------------------------------- the objective


def _evals(rows):
    return pd.DataFrame(rows, columns=["step", "task", "seed", "return_mean"])


def test_objective_numbers_by_hand():
    evals = _evals([(0, "CartPole-v1", 0, 10.0), (100, "CartPole-v1", 0, 30.0), (200, "CartPole-v1", 0, 50.0),
                    (0, "CartPole-v1", 1, 0.0), (100, "CartPole-v1", 1, 0.0), (200, "CartPole-v1", 1, 100.0)])
    tasks, seeds = ("CartPole-v1",), [0, 1]
    # AUC: trapezoid over [0, 200] divided by the span: seed 0 (20 + 40) / 2 = 30; seed 1 (0 + 50) / 2 = 25
    np.testing.assert_allclose(score_matrix("auc", evals, tasks, seeds), [[30.0], [25.0]])
    # during training the latest evaluation stands in for the final score
    np.testing.assert_allclose(score_matrix("final", evals, tasks, seeds), [[50.0], [100.0]])
    # a finished run's final score is its summary's
    np.testing.assert_allclose(score_matrix("final", evals, tasks, seeds, {"CartPole-v1": [40.0, 90.0]}),
                               [[40.0], [90.0]])
    a = lookup("CartPole-v1")
    norm = score_matrix("iqm", evals, tasks, seeds)
    np.testing.assert_allclose(norm[:, 0], (np.array([50.0, 100.0]) - a.random) / (a.reference - a.random))
    assert reduce("final", [[1.0, 2.0], [3.0, 10.0]]) == 4.0
    # IQM of 8 values: the middle four (trimmed 25% each side)
    assert reduce("iqm", np.arange(8.0).reshape(4, 2)) == pytest.approx(3.5)
    assert per_seed("final", [[1.0, 3.0], [5.0, 7.0]]) == [2.0, 6.0]
    assert np.isnan(reduce("final", [[1.0, np.nan]]))
    rows = evals.to_dict("records")
    assert objective_so_far("auc", rows, tasks, seeds) == pytest.approx(27.5)


def test_report_interval_is_of_the_score_itself_and_within_its_range():
    """The report's interval is of the number it shows (the pooled objective, for iqm not the mean of per-seed
    IQMs), resampled over seeds, and never outside the objective's range."""
    tasks = ("CartPole-v1", "Acrobot-v1")
    assert objective_bounds("final", tasks) == (-250.0, 250.0)  # the mean of [0, 500] and [-500, 0]
    c, a = lookup("CartPole-v1"), lookup("Acrobot-v1")
    low = min((0 - c.random) / (c.reference - c.random), (-500 - a.random) / (a.reference - a.random))
    high = max((500 - c.random) / (c.reference - c.random), (0 - a.random) / (a.reference - a.random))
    assert objective_bounds("iqm", tasks) == pytest.approx((low, high))
    matrix = np.array([[0.9, 1.1], [1.0, 1.2], [0.2, 0.9], [1.1, 1.05], [0.3, 1.0], [1.0, 1.0]])
    e = seed_interval("iqm", matrix, (low, high))
    assert e.value == pytest.approx(reduce("iqm", matrix)) and e.value != pytest.approx(np.mean(per_seed("iqm", matrix)))
    assert e.lo < e.value < e.hi and e.n == 6
    near_top = np.array([[500.0], [500.0], [500.0], [500.0], [10.0]])  # a t interval's upper end: 674
    top = seed_interval("final", near_top, (0.0, 500.0))
    assert top.hi <= 500.0 and top.value == pytest.approx(402.0)
    assert np.isnan(seed_interval("final", near_top[:4], (0.0, 500.0)).lo)  # below MIN_SEEDS: no interval


# ---------------------------------------------------------------- storage, presets, the CLI's bad input


def test_storage_that_cannot_be_opened(tmp_path):
    with pytest.raises(ConfigError, match="--storage sqlite:///.*: cannot open"):
        open_storage(f"sqlite:///{tmp_path}/missing/dir/x.db")
    with pytest.raises(ConfigError, match="cannot open"):
        mtdqn.tune(SMALL, tmp_path / "out", storage="nosuchdb://x")
    assert not (tmp_path / "out").exists()


def test_mtdqn_tune_is_the_api_function():
    import inspect

    assert callable(mtdqn.tune) and "tune" in mtdqn.__all__
    fn = inspect.unwrap(mtdqn.tune)
    assert fn.__doc__ and "return" in fn.__annotations__
    assert list(inspect.signature(fn).parameters)[:2] == ["preset_or_spec", "out"]


def test_presets_one_per_classic_structure():
    classic = PRESETS["classic"]()
    assert set(TUNE_PRESETS) == {f"classic-{v}" for v in classic["variants"]}
    for variant, options in classic["variants"].items():
        spec = resolve_tune_spec(f"classic-{variant}")
        assert spec.tasks == tuple(classic["tasks"]) and spec.objective == "iqm" and spec.pruner == "median"
        assert all(spec.options[k] == v for k, v in options.items())  # the structure stays fixed ...
        assert set(spec.space) == set(CLASSIC_SPACE)  # ... and every structure is searched over the same space
        check_fixed_options(spec)  # ... where trials can train (every trial of every preset failed until 2026-12-04)


def test_a_search_being_run_is_not_run_again_beside_it(tmp_path):
    """A second search in one folder (a rerun in another terminal) cleared and trained the first's batches and
    trial folders beside it: refused in one line before anything is written."""
    import fcntl

    from mtdqn.errors import FolderBusy

    out = tmp_path / "tune"
    out.mkdir()
    other = os.open(out, os.O_RDONLY)  # another process's hold of the folder
    fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
    new_db = tmp_path / "new.db"
    try:
        for storage in (None, f"sqlite:///{new_db}"):  # a database of its own: refused before it is created
            with pytest.raises(FolderBusy, match="being written by another process"):
                mtdqn.tune(SMALL, out, storage=storage, progress=False)
    finally:
        os.close(other)
    assert list(out.iterdir()) == [] and not new_db.exists()


@pytest.mark.slow
def test_cli_bad_input_exit_2_nothing_written(tmp_path, capsys):
    """In-process: each fails in validation; the last is the real command in a subprocess (one line)."""
    for i, (space, expected) in enumerate([({}, "search space is empty"), ({"seeds": {"int": [1, 2]}},
                                                                            "cannot be tuned")]):
        path = tmp_path / f"bad{i}.toml"
        path.write_text(_toml({**SMALL, "space": space} if space else {k: v for k, v in SMALL.items() if k != "space"}))
        with pytest.raises(SystemExit) as info:
            main(["tune", str(path), "--out", str(tmp_path / "out")])
        assert info.value.code == 2
        assert expected in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["tune", str(tmp_path / "bad0.toml"), "--out", str(tmp_path / "out"), "--n-trials", "0"])
    assert "--n-trials must be an int > 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["tune", "classic-share", "--out", str(tmp_path / "out")])
    assert capsys.readouterr().err.strip().endswith("nor a tune spec file (.toml); did you mean 'classic-shared'?")
    good = tmp_path / "good.toml"
    good.write_text(_toml(SMALL))
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "mtdqn.cli", "tune", str(good), "--out", str(tmp_path / "out"),
                           "--storage", f"sqlite:///{tmp_path}/no/such/dir.db"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and "cannot open" in lines[0], proc.stderr
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- the observer hook of a run


@pytest.mark.slow
def test_on_eval_sees_each_evaluation_and_may_stop_the_run(tmp_path):
    """The run calls the observer after each evaluation during training (not the final one) with every row so
    far; an observer that raises stops the run, which then resumes from its checkpoint to the same end."""
    options = {**SMALL["options"], "tasks": SMALL["tasks"], "steps": 1500, "seeds": 1, "eval_every": 500,
               "eval_episodes": 2, "checkpoint_every": 500}
    seen = []

    def stop_at_second(step, rows):
        seen.append((step, sorted({r["step"] for r in rows})))
        if step == 1000:
            raise RuntimeError("stop here")

    with pytest.raises(RuntimeError, match="stop here"):
        mtdqn.train(out=tmp_path / "run", progress=False, on_eval=stop_at_second, **options)
    assert seen == [(500, [500]), (1000, [500, 1000])]
    assert not (tmp_path / "run" / "summary.json").exists()
    resumed = []
    run = mtdqn.train(out=tmp_path / "run", resume=True, progress=False, on_eval=lambda s, r: resumed.append(s))
    assert resumed == [] and run.finished  # the checkpoint at 1,000 comes after its evaluation; 1,500 is the last
    assert sorted(run.evals["step"].unique()) == [500, 1000, 1500]


# ---------------------------------------------------------------- a search


def _seed_storage(out: Path, spec_table: dict, value: float, steps: list[int], n: int) -> None:
    """``n`` finished trials with ``value`` at every step, as if an earlier search had run them."""
    out.mkdir(parents=True)
    spec = build_tune_spec(spec_table, "t", "t")
    study = open_search(spec, f"sqlite:///{out / 'tune.db'}")
    for i in range(n):
        study.add_trial(optuna.trial.create_trial(
            params={"lr": 1e-3 * (i + 1)}, distributions={"lr": optuna.distributions.FloatDistribution(1e-4, 1e-2,
                                                                                                      log=True)},
            value=value, intermediate_values={s: value for s in steps}, user_attrs={"options": {"lr": 1e-3}}))


@pytest.mark.slow
def test_pruner_stops_a_trial_below_the_median(tmp_path):
    """Two earlier trials scored far above anything 2000 steps can reach: the median pruner lets the new trial's
    first evaluation pass (500 steps, before a third of its 2000: the warm-up) and stops it at the second, its run
    left unfinished with a checkpoint there; the report lists it."""
    out = tmp_path / "tune"
    table = {**SMALL, "steps": 2000}
    _seed_storage(out, table, 1e9, [500, 1000, 1500, 2000], 2)
    result = mtdqn.tune(table, out, n_trials=3, progress=False)
    study = optuna.load_study(study_name="small", storage=f"sqlite:///{out / 'tune.db'}")
    new = study.trials[2]
    assert new.state == optuna.trial.TrialState.PRUNED and list(new.intermediate_values) == [500, 1000]
    assert new.user_attrs["note"] == "pruned at step 1,000"
    run_dir = out / "trials" / "trial-0002"
    assert (run_dir / "checkpoints" / "latest.json").is_file() and not (run_dir / "summary.json").exists()
    table = pd.read_csv(out / "report" / "trials.csv")
    assert table["state"].tolist() == ["complete", "complete", "pruned"]
    assert result.best_trial in (0, 1) and (out / "report" / "history.png").is_file()


@pytest.mark.slow
def test_search_report_confirm_and_rerun(tmp_path):
    """Three trials with the median pruner, then --confirm 2: a report with importance, figures and the trials'
    table, the confirmation on fresh seeds (1, 2), a rerun that trains nothing again, and a confirmation of a
    trial no longer the best listed apart from the best's."""
    out = tmp_path / "tune"
    table = {**SMALL, "space": {"lr": {"log": [1e-4, 1e-2]}, "eps_fraction": {"float": [0.1, 0.9]}}}
    first = mtdqn.tune(table, out, n_trials=3, progress=False)
    assert first.best_trial is not None and set(first.best_options) == {"lr", "eps_fraction"}
    summaries = {p: p.stat().st_mtime_ns for p in (out / "trials").glob("*/summary.json")}
    assert len(summaries) == 3
    trials = pd.read_csv(out / "report" / "trials.csv")
    assert trials.loc[trials.state == "complete", "last_step"].tolist() == [1000] * 3  # its last report: 500
    assert not [p for p in (out / "trials").glob("*/*.parquet") if p.name in ("grad_probe.parquet", "cka.parquet")]
    trial_run = mtdqn.open_run(out / "trials" / f"trial-{first.best_trial:04d}")
    assert trial_run.config.dqn.lr == pytest.approx(first.best_options["lr"])  # the trial is an ordinary run
    confirmed = mtdqn.tune(table, out, n_trials=3, confirm=2, progress=False)
    assert {p: p.stat().st_mtime_ns for p in (out / "trials").glob("*/summary.json")} == summaries
    conf = mtdqn.open_run(confirmed.confirm_dir)
    assert conf.seeds == [1, 2] and conf.config.dqn.lr == pytest.approx(first.best_options["lr"])
    report = (out / "report" / "tune.md").read_text()
    for part in ("## Best configuration", "biased upward", "--confirm 10", "## Hyperparameter importance (fANOVA)",
                 "## Optimization history", "## Trials", f"Confirmation `confirm/trial-{first.best_trial:04d}"):
        assert part in report, part
    # the trial's 1 seed and the confirmation's 2 are too few for an interval: said, not named ("over 1 seeds (a 95%
    # percentile bootstrap")
    assert f"over 1 seed (no interval: one needs {MIN_SEEDS} seeds)" in report and "over 2 seeds (no interval" in report
    assert "1 seed per trial" in report
    assert "bootstrap" not in report.split("## Hyperparameter importance")[0]
    assert (out / "report" / "parallel.png").is_file()
    other = next(n for n in range(3) if n != first.best_trial)  # as if trial `other` had been confirmed when best
    shutil.copytree(confirmed.confirm_dir, out / "confirm" / f"trial-{other:04d}-seeds-2")
    said = []
    mtdqn.tune(table, out, n_trials=2, progress=False, announce=said.append)  # trains nothing, writes the report
    assert said == [f"{out} holds 3 finished trials; --n-trials 2 is the total it should hold, not a number to add: "
                    "none to run"]  # it said nothing
    best_part, rest = (out / "report" / "tune.md").read_text().split("Earlier confirmations")
    assert f"trial-{first.best_trial:04d}-seeds-2" in best_part and f"trial-{other:04d}" not in best_part
    assert f"`confirm/trial-{other:04d}-seeds-2` (trial {other})" in rest.split("##")[0]
    with pytest.raises(ConfigError, match="holds another search"):
        mtdqn.tune({**table, "steps": 2000}, out, n_trials=3)


@pytest.mark.slow
def test_kill_9_resumes_without_redoing_finished_trials(tmp_path, capsys):
    """kill -9 while trial 1 trains (trial 0 finished, trial 1 checkpointed): the rerun keeps trial 0's run as it
    was, continues trial 1 under its number from its checkpoint, and finishes the search.  The killed tune is
    the command in a subprocess; the rerun, which knows only what it left on disk and in the storage, is the
    same command (main) in this process, which spares starting one more (and importing JAX there, ~4 s)."""
    spec = tmp_path / "spec.toml"
    # 1,500 steps: after trial 1's first checkpoint (step 500) two chunks, its final evaluation and its end-of-run
    # probes (seconds) come before its summary.json; the loop below sees the checkpoint within 0.05 s.
    spec.write_text(_toml({**SMALL, "steps": 1500, "eval_every": 500, "pruner": "none"}))
    out = tmp_path / "tune"
    argv = [sys.executable, "-m", "mtdqn.cli", "tune", str(spec), "--out", str(out), "--n-trials", "3"]
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(argv, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    checkpoint = out / "trials" / "trial-0001" / "checkpoints" / "latest.json"
    deadline = time.monotonic() + 600
    while not checkpoint.is_file() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, proc.stdout.read().decode()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done0 = out / "trials" / "trial-0000" / "summary.json"
    assert done0.is_file() and not (out / "trials" / "trial-0001" / "summary.json").exists()
    stamp = done0.stat().st_mtime_ns
    main(argv[3:])  # `mtdqn tune ...`: a SystemExit (with its one line) if it fails
    rerun = capsys.readouterr().out
    assert "trial 1: resuming" in rerun and "trial 0:" not in rerun
    assert done0.stat().st_mtime_ns == stamp
    study = optuna.load_study(study_name="small", storage=f"sqlite:///{out / 'tune.db'}")
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 3
    assert len({t.params["lr"] for t in study.trials}) == 3  # the rerun's sampler does not restart the first's stream
    resumed = json.loads((out / "trials" / "trial-0001" / "config.json").read_text())
    assert resumed["config"]["dqn"]["lr"] == study.trials[1].params["lr"]


# ---------------------------------------------------------------- batches: trials sharing a program train as one

BATCHED = {**SMALL, "batch": 2}


@pytest.mark.parametrize("address", ["", "closed port"])
def test_an_unreachable_ray_address_writes_nothing(tmp_path, address):
    """The cluster is reached before tune.json and tune.db are written: they were, and the folder then refused
    the same spec with another budget as "another search"."""
    import socket

    if address == "closed port":
        with socket.socket() as sock:  # a port nobody listens on once closed
            sock.bind(("127.0.0.1", 0))
            address = f"127.0.0.1:{sock.getsockname()[1]}"
    with pytest.raises(ConfigError, match="--ray-address"):
        mtdqn.tune(SMALL, tmp_path / "tune", ray_address=address, progress=False)
    assert not (tmp_path / "tune").exists()


def test_batch_needs_a_traced_number_in_the_space(tmp_path):
    with pytest.raises(ConfigError, match="searches none of them; remove batch"):
        build_tune_spec({**BATCHED, "space": {"num_envs": {"int": [2, 4]}}}, "spec.toml", "spec")
    with pytest.raises(ConfigError, match="batch: expected a positive integer, got 0"):
        build_tune_spec({**SMALL, "batch": 0}, "spec.toml", "spec")
    with pytest.raises(ConfigError, match="gym: tasks step on the host"):
        build_tune_spec({**BATCHED, "tasks": ["gym:CartPole-v1"]}, "spec.toml", "spec")
    with pytest.raises(ConfigError, match="on Ray each trial is a task of its own"):
        mtdqn.tune(BATCHED, tmp_path / "tune", ray_address="local")
    assert not (tmp_path / "tune").exists()


def test_batched_trials_are_grouped_by_their_program(tmp_path):
    """Trials asked together share a batch only where nothing but traced numbers differ: the same number of envs
    (structural: it shapes the program's arrays) and dropout on or off (a rate of 0 has no dropout in its
    program); each group keeps the order the trials were asked in."""
    spec = build_tune_spec({**SMALL, "batch": 12, "sampler": "random", "space": {
        "lr": {"log": [1e-4, 1e-2]}, "num_envs": {"choice": [2, 4]}, "dropout": {"choice": [0.0, 0.1, 0.2]}}},
        "t", "t")
    study = open_search(spec, f"sqlite:///{tmp_path / 'tune.db'}")
    asked = [ask(spec, study) for _ in range(12)]
    groups = batches.partition(spec, asked)
    assert sorted(t.number for g in groups for t in g) == list(range(12))
    keys = []
    for group in groups:
        params = [search.trial_params(spec, t) for t in group]
        assert len({(p["num_envs"], p["dropout"] > 0) for p in params}) == 1
        assert [t.number for t in group] == sorted(t.number for t in group)
        keys.append((params[0]["num_envs"], params[0]["dropout"] > 0))
    assert len(set(keys)) == len(keys) and max(len(g) for g in groups) > 1


def _interrupt(*args, **kwargs):
    raise KeyboardInterrupt  # as a kill after the checkpoint: nothing told, nothing cleaned up


def _killed_batch(out: Path, monkeypatch, report_and_prune) -> optuna.Study:
    """BATCHED's first batch with ``report_and_prune`` in place of the pruner's check, which raises
    KeyboardInterrupt at the first evaluation (a kill after its checkpoint); the storage as the kill left it."""
    monkeypatch.setattr(batches, "report_and_prune", report_and_prune)
    with pytest.raises(KeyboardInterrupt):
        mtdqn.tune(BATCHED, out, n_trials=2, progress=False)
    monkeypatch.undo()
    return optuna.load_study(study_name="small", storage=f"sqlite:///{out / 'tune.db'}")


@pytest.mark.slow
def test_a_batch_trains_as_one_program_and_resumes_from_its_checkpoint(tmp_path, monkeypatch):
    """Two trials (their lr drawn apart) train as one population: batches/batch-0000 holds its checkpoint,
    each trial is an ordinary run directory of its own config, and the report names the batch.  Interrupted
    at its first evaluation (after the checkpoint there), the rerun resumes the batch, not its trials alone,
    and each trial's numbers are those of the batch trained through.

    A stopped batch killed while telling is not trained again: from a copy of the same interrupted tune, told
    as if its batch had stopped with every trial pruned and the kill came after telling trial 0 only, the rerun
    tells trial 1 as its sibling was told, without training anything.  (The copy spares training that
    interruption a second time.)"""
    whole = tmp_path / "whole"
    mtdqn.tune(BATCHED, whole, n_trials=2, progress=False)
    study = optuna.load_study(study_name="small", storage=f"sqlite:///{whole / 'tune.db'}")
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 2
    assert [t.user_attrs["batch"] for t in study.trials] == ["batch-0000"] * 2
    assert (whole / "batches" / "batch-0000" / "checkpoints" / "latest.json").is_file()
    lrs = [mtdqn.open_run(whole / "trials" / f"trial-{i:04d}").config.dqn.lr for i in range(2)]
    assert lrs == pytest.approx([t.params["lr"] for t in study.trials]) and lrs[0] != lrs[1]
    assert pd.read_csv(whole / "report" / "trials.csv")["batch"].tolist() == ["batch-0000"] * 2
    assert not [p for p in (whole / "trials").glob("*/*.parquet") if p.name in ("grad_probe.parquet", "cka.parquet")]

    cut = tmp_path / "cut"
    study = _killed_batch(cut, monkeypatch, _interrupt)
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.RUNNING] * 2
    assert not (cut / "trials" / "trial-0000" / "summary.json").exists()
    assert (cut / "batches" / "batch-0000" / "checkpoints" / "latest.json").is_file()
    stopped = tmp_path / "stopped"
    shutil.copytree(cut, stopped)  # the interrupted tune, for the stopped batch's rerun below
    with pytest.raises(ConfigError, match="holds a batch of `mtdqn tune` trials"):  # not a --sweep to resume
        mtdqn.train(out=cut / "batches" / "batch-0000", resume=True, progress=False)
    for go_on in (lambda trial: mtdqn.load_agent(trial), lambda trial: mtdqn.train(out=trial, resume=True)):
        with pytest.raises(ConfigError, match=r"member of the population in .*batches/batch-0000, whose checkpoint "
                                              r".*[:;] rerun that tune to finish it"):  # its record names its batch
            go_on(cut / "trials" / "trial-0000")
    with pytest.raises(ConfigError, match="batch-0000 of a batched tune still hold"):
        mtdqn.tune({**BATCHED, "batch": 1}, cut, n_trials=2, ray_address="local")
    # a trial's record lost: the tune stops in one line, its trials untold (it trained the batch through and then
    # failed both trials for good, the record put back or not)
    record = cut / "trials" / "trial-0001" / "config.json"
    kept = record.read_text()
    record.unlink()
    with pytest.raises(ConfigError, match=r"trial-0001 is not a run directory \(no config.json\): the population "
                                          r"in .*batch-0000 cannot resume without it"):
        mtdqn.tune(BATCHED, cut, n_trials=2, progress=False)
    study = optuna.load_study(study_name="small", storage=f"sqlite:///{cut / 'tune.db'}")
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.RUNNING] * 2
    record.write_text(kept)
    resumed = []
    real = sweep_module.train_population
    monkeypatch.setattr(sweep_module, "train_population",
                        lambda *a, **k: resumed.append(k["resume"]) or real(*a, **k))
    lines: list[str] = []
    mtdqn.tune({**BATCHED, "batch": 1}, cut, n_trials=2, progress=False, announce=lines.append)  # any batch
    assert lines[0] == "batch-0000 (trials 0, 1): resuming" and not any("started" in line for line in lines)
    assert resumed == [True]  # from the population's checkpoint, not trained again
    study = optuna.load_study(study_name="small", storage=f"sqlite:///{cut / 'tune.db'}")
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 2
    for i in range(2):
        a, b = (pd.read_parquet(d / "trials" / f"trial-{i:04d}" / "metrics.parquet") for d in (whole, cut))
        pd.testing.assert_frame_equal(a, b)

    study = optuna.load_study(study_name="small", storage=f"sqlite:///{stopped / 'tune.db'}")
    tell(study, 0, Outcome(optuna.trial.TrialState.PRUNED, note="pruned at step 500"))
    monkeypatch.setattr(sweep_module, "train_population", lambda *a, **k: pytest.fail("trained again"))
    mtdqn.tune(BATCHED, stopped, n_trials=2, progress=False)
    study = optuna.load_study(study_name="small", storage=f"sqlite:///{stopped / 'tune.db'}")
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.PRUNED] * 2
    assert study.trials[1].user_attrs["note"] == "pruned at step 500"


@pytest.mark.slow
def test_a_pruned_trial_trains_on_with_its_batch_and_a_kill_does_not_undo_it(tmp_path, monkeypatch):
    """The pruner stops trial 0 at its evaluation and the tune is killed right after (before trial 1's report):
    rerun, the batch resumes and trial 0 is still the pruned one, at the step it was pruned, its run trained to
    the end with its batch; trial 1 completes."""
    real = batches.report_and_prune

    def prune_0_then_kill(spec, trial, reported, step, rows):
        if trial.number == 1:
            raise KeyboardInterrupt
        real(spec, trial, reported, step, rows)
        return True

    out = tmp_path / "tune"
    _killed_batch(out, monkeypatch, prune_0_then_kill)
    mtdqn.tune(BATCHED, out, n_trials=2, progress=False)
    study = optuna.load_study(study_name="small", storage=f"sqlite:///{out / 'tune.db'}")
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.COMPLETE]
    assert study.trials[0].user_attrs["note"] == "pruned at step 500 (trained on to the end with its batch)"
    assert study.trials[0].user_attrs["pruned_at"] == 500 and list(study.trials[0].intermediate_values) == [500]
    assert all((out / "trials" / f"trial-{i:04d}" / "summary.json").is_file() for i in range(2))


@pytest.mark.slow
def test_a_batch_that_diverges_trains_its_trials_alone(tmp_path, monkeypatch):
    """One trial's divergence stops its population: the batch is given up and each trial trained alone (no longer
    in a batch), so only a trial that diverges alone would fail; here neither does."""
    from mtdqn.errors import TrainingDiverged

    def diverges(*args, **kwargs):
        raise TrainingDiverged("trial-0001: training diverged: non-finite loss")

    monkeypatch.setattr(sweep_module, "train_population", diverges)
    lines: list[str] = []
    out = tmp_path / "tune"
    mtdqn.tune(BATCHED, out, n_trials=2, progress=False, announce=lines.append)
    assert "batch-0000: trial-0001: training diverged: non-finite loss; its trials train alone" in lines
    study = optuna.load_study(study_name="small", storage=f"sqlite:///{out / 'tune.db'}")
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 2
    assert [t.user_attrs["batch"] for t in study.trials] == ["", ""]
    assert not (out / "batches" / "batch-0000").exists()


def test_a_kill_while_a_given_up_batch_retrains_does_not_undo_its_pruned_trials(tmp_path, monkeypatch):
    """A diverged batch's trials train again one by one; one the pruner had stopped was told so only in its
    turn, so a kill before it left it running, and the rerun trained it from scratch (the pruner deciding again).
    Now it is told first: the kill, here in trial 0's retraining, finds trial 1 already pruned."""
    spec = build_tune_spec({**SMALL, "batch": 2}, "s", "s")
    study = open_search(spec, optuna.storages.InMemoryStorage())
    for _ in range(2):
        ask(spec, study).set_user_attr(batches.BATCH_ATTR, "batch-0000")

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(batches, "_alone", killed)
    with pytest.raises(KeyboardInterrupt):
        batches._each_alone(spec, study, tmp_path, tmp_path / "batches" / "batch-0000", [0, 1], {1: 500},
                            {0: {500}, 1: {500}}, False, lambda line: None)
    states = [t.state for t in study.get_trials(deepcopy=False)]
    assert states == [optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.PRUNED]
    assert study.trials[0].user_attrs[batches.BATCH_ATTR] == ""  # resumed alone after the kill
    # killed earlier, once both left the batch but before trial 3 was told: the rerun tells it, trains only 2
    for _ in range(2):
        ask(spec, study).set_user_attr(batches.BATCH_ATTR, "")
    live_trial(study, 3).set_user_attr(batches.PRUNED_AT_ATTR, 500)
    trained = []
    monkeypatch.setattr(batches, "_alone", lambda spec, study, out, n, *rest: trained.append(n) or tell(
        study, n, search.Outcome(optuna.trial.TrialState.FAIL, note="stub")))
    batches.run_batched_search(spec, study, tmp_path, 4, False, lambda line: None)
    assert sorted(trained) == [0, 2] and study.trials[3].state == optuna.trial.TrialState.PRUNED
    assert study.trials[3].user_attrs["note"] == "pruned at step 500"


@pytest.mark.slow
def test_a_batch_whose_trials_are_all_pruned_stops(tmp_path):
    """Two earlier trials scored far above anything 500 steps reaches: both trials of the next batch are pruned
    at their first evaluation, and the batch stops there (the trials' runs unfinished)."""
    out = tmp_path / "tune"
    _seed_storage(out, BATCHED, 1e9, [500], 2)
    said = []
    mtdqn.tune(BATCHED, out, n_trials=4, progress=False, announce=said.append)
    study = optuna.load_study(study_name="small", storage=f"sqlite:///{out / 'tune.db'}")
    assert [t.state for t in study.trials[2:]] == [optuna.trial.TrialState.PRUNED] * 2
    assert said[-2:] == ["trial 2: pruned at step 500", "trial 3: pruned at step 500"]  # "pruned (pruned at step 500)"
    assert [t.user_attrs["note"] for t in study.trials[2:]] == ["pruned at step 500"] * 2
    assert not any((out / "trials" / f"trial-{i:04d}" / "summary.json").exists() for i in (2, 3))


def test_storage_urls_as_a_search_records_them(tmp_path, monkeypatch):
    """A relative SQLite path followed the current directory (the same command run from another made a second
    database, unsaid): made absolute; the folder's own tune.db named explicitly was refused as 'another storage':
    it is the default.  Two searches creating one new database at once: one read "table studies already
    exists", exit 2 as bad input; the loser now opens what the winner made."""
    import sqlalchemy

    from mtdqn.tune import search

    monkeypatch.chdir(tmp_path)
    out = tmp_path / "t"
    assert search.storage_url("sqlite:///relative.db", out) == f"sqlite:///{tmp_path / 'relative.db'}"
    assert search.storage_url(f"sqlite:///{tmp_path}/x.db", out) == f"sqlite:///{tmp_path}/x.db"  # absolute: kept
    assert search.storage_url("sqlite:///t/tune.db", out) is None and search.storage_url(None, out) is None
    assert search.storage_url("postgresql://host/db", out) == "postgresql://host/db"
    assert search.storage_url("sqlite+pysqlite:///rel.db?timeout=9", out) == \
        f"sqlite+pysqlite:///{tmp_path / 'rel.db'}?timeout=9"
    for kept in ("sqlite:///:memory:", "sqlite:///?mode=memory", "sqlite:///file:x?mode=ro&uri=true"):
        assert search.storage_url(kept, out) == kept
    real, calls = optuna.storages.RDBStorage, []

    def racing(url):
        calls.append(url)
        if len(calls) == 1:
            raise sqlalchemy.exc.OperationalError("CREATE TABLE studies", {}, Exception("table studies already exists"))
        return real(url)

    monkeypatch.setattr(optuna.storages, "RDBStorage", racing)
    assert search.open_storage(f"sqlite:///{tmp_path}/race.db") is not None and len(calls) == 2
    with pytest.raises(ConfigError, match="cannot open"):  # a bad URL still fails at once
        search.open_storage("nosuchdriver://x")


def test_a_log_dimension_is_drawn_on_the_log_scale_it_was_sampled_on():
    """The parallel-coordinate plot scaled every axis linearly: lr sampled log-uniform on [1e-4, 1e-2] drew its
    two lower decades in the bottom tenth."""
    from mtdqn.tune.report import _axis_values

    y, labels = _axis_values([1e-4, 1e-3, 1e-2], log=True)
    np.testing.assert_allclose(y, [0.0, 0.5, 1.0])
    assert labels[-1] == "(log)"
    np.testing.assert_allclose(_axis_values([1e-4, 1e-3, 1e-2])[0], [0.0, 0.9e-3 / 0.0099, 1.0])
