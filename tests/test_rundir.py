"""The run directory's tidy tables: the loop's rows already have the schema's dtypes, and an empty table keeps them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from mtdqn.rundir import (EVAL_SCHEMA, GRAD_PAIR_SCHEMA, GRAD_TASK_SCHEMA, METRIC_SCHEMA, RunDir, Tables,
                          chunk_tables, eval_rows)

NAMES = ("CartPole-v1", "Acrobot-v1")


def _chunk_metrics(updates: float) -> dict[str, np.ndarray]:
    """One chunk's summarized metrics with the dtypes train/loop.py's summarize_chunk returns (seeds=2, tasks=2)."""
    f = lambda *shape: np.random.default_rng(0).random(shape).astype(np.float32)  # noqa: E731
    return {"episode_return": f(2, 2), "episode_length": f(2, 2), "episodes": np.ones((2, 2), np.int32),
            "loss": f(2, 2), "q_mean": f(2, 2), "grad_norm": f(2, 2), "weight": f(2, 2), "cosine": f(2, 2, 2),
            "conflict": f(2, 2, 2), "updates": np.full((2, 2), updates, np.float32), "epsilon": f(2)}


def test_the_loops_rows_have_the_schema_dtypes_uncast():
    """The schema is what the rows already are, so writing through it rounds nothing."""
    t = chunk_tables(NAMES, [0, 1], True, _chunk_metrics(updates=5.0), step=1000)
    for rows, schema in ((t.metrics, METRIC_SCHEMA), (t.grad_tasks, GRAD_TASK_SCHEMA), (t.grad_pairs, GRAD_PAIR_SCHEMA)):
        assert pd.DataFrame(rows).dtypes.astype(str).to_dict() == schema
    returns = np.zeros((2, 2, 3))
    assert pd.DataFrame(eval_rows(NAMES, [0, 1], returns, returns, 1000)).dtypes.astype(str).to_dict() == EVAL_SCHEMA


def test_a_run_without_updates_writes_empty_tables_in_their_schema(tmp_path):
    t = chunk_tables(NAMES, [0, 1], True, _chunk_metrics(updates=0.0), step=1000)
    assert t.metrics and not t.grad_tasks and not t.grad_pairs  # zeros of no update are not measurements
    frame = pd.DataFrame(t.metrics)  # nor are the loss and Q of none: NaN (they read 0.0, a perfect loss)
    assert frame[["loss", "q_mean"]].isna().all().all() and frame.dtypes.astype(str).to_dict() == METRIC_SCHEMA
    assert frame["episode_return"].notna().all()
    tables = Tables.empty()
    tables.extend(t)
    RunDir(tmp_path).write_tables(tables)
    grad = pd.read_parquet(tmp_path / "grad_tasks.parquet")
    assert grad.empty and grad.dtypes.astype(str).to_dict() == GRAD_TASK_SCHEMA
    assert not (tmp_path / "grad_pairs.parquet").exists()  # nothing to write: the report reads this as no updates


def _member(sweep: Path, record: str) -> Path:
    """A sweep's member folder ``lr=0.001`` in ``sweep``, its config.json holding ``record``."""
    member = sweep / "lr=0.001"
    member.mkdir()
    (member / "config.json").write_text(record)
    return member


def test_a_sweep_or_its_unfinished_member_named_as_a_run_points_to_the_sweep(tmp_path):
    """`evaluate SWEEP` names a member to give; `--resume SWEEP/MEMBER` of an unfinished member (whose only
    checkpoint is the population's) says to resume the sweep; a finished member resumes as its run alone."""
    import pytest

    from mtdqn.errors import ConfigError

    (tmp_path / "sweep.json").write_text("{}")
    member = _member(tmp_path, "{}")
    with pytest.raises(ConfigError, match=r"holds a sweep \(sweep.json\), not one run: name one of its 1 member, "
                                          r"e.g. .*lr=0.001$"):
        RunDir(tmp_path).require_run()
    for record in ("{}", '{"population": ".."}'):  # an older member (its parent says), what a sweep writes now
        (member / "config.json").write_text(record)
        with pytest.raises(ConfigError, match=f"is a member of the population in {tmp_path}, whose checkpoint is "
                                              f"the whole population's: resume it, --resume {tmp_path}$"):
            RunDir(member).require_resumable()
        with pytest.raises(ConfigError, match=f"unfinished member of the population in {tmp_path}, whose "
                                              f"checkpoint holds it until it finishes; resume it, --resume "
                                              f"{tmp_path}$"):
            RunDir(member).require_checkpoint()
    (member / "summary.json").write_text("{}")
    assert RunDir(member).require_resumable() == {"population": ".."}


def test_a_sweep_whose_record_is_gone_is_named_as_such(tmp_path):
    """A sweep with its sweep.json deleted was "not a run directory (no config.json)", naming a file no sweep
    has; its members' records (``"population": ".."``) say what the folder was."""
    import pytest

    from mtdqn.errors import ConfigError

    member = _member(tmp_path, '{"population": ".."}')
    with pytest.raises(ConfigError, match=r"holds a sweep's members but no sweep.json: the population's record is "
                                          r"gone, .*name one of its 1 member, e.g. .*lr=0.001$"):
        RunDir(tmp_path).require_run()
    for record in ("{}", '{"population": "../../batches/batch-0000"}'):  # plain runs; a tune's trials/, whose
        (member / "config.json").write_text(record)  # members' population is elsewhere (a review found it said)
        with pytest.raises(ConfigError, match=r"is not a run directory \(no config.json\)$"):
            RunDir(tmp_path).require_run()


def test_a_study_named_as_a_run_names_its_cells(tmp_path, capsys):
    """act, play and evaluate of a study's folder name one of its cells (was: "not a run directory" alone)."""
    import pytest

    from mtdqn.cli import main
    from mtdqn.errors import ConfigError

    (tmp_path / "study.json").write_text("{}")
    with pytest.raises(ConfigError, match=r"holds a study \(study.json\), not one run: name one of its cells, "
                                          r".*/cells/<variant>$"):  # none run yet
        RunDir(tmp_path).require_run()
    for variant in ("separate", "shared"):
        (tmp_path / "cells" / variant).mkdir(parents=True)
        (tmp_path / "cells" / variant / "config.json").write_text("{}")
    np.save(tmp_path / "obs.npy", np.zeros(4, np.float32))
    for argv in (["act", "--task", "CartPole-v1", "--obs", str(tmp_path / "obs.npy")],
                 ["play", "--task", "CartPole-v1"], ["evaluate"]):
        with pytest.raises(SystemExit) as exc:
            main([argv[0], str(tmp_path), *argv[1:]])
        err = capsys.readouterr().err.strip().splitlines()
        assert exc.value.code == 2 and err == [f"error: {tmp_path} holds a study (study.json), not one run: name one "
                                               f"of its 2 cells, e.g. {tmp_path / 'cells' / 'separate'}"], err


def test_a_run_record_key_of_the_wrong_type_is_named_with_its_file(tmp_path):
    """config.json edited by hand (seeds "two", a width "abc") was a TypeError traceback deep in the agent."""
    import json

    import pytest

    from mtdqn.config import TrainConfig, config_to_dict
    from mtdqn.errors import ConfigError

    for key, section, value, message in [("seeds", None, "two", "config key seeds must be int, got 'two'"),
                                          ("hidden", "network", "abc", "network.hidden must be a list of int"),
                                          ("lr", "dqn", True, "dqn.lr must be float, got True"),
                                          ("value_norm", None, "x", "value_norm must be one of 'none', 'popart'"),
                                          ("conv_channels", "network", [1, 2, 3], r"a list of 2 \(int, int\)")]:
        config = config_to_dict(TrainConfig())
        (config[section] if section else config)[key] = value
        (tmp_path / "config.json").write_text(json.dumps({"config": config}))
        with pytest.raises(ConfigError, match=f"config.json: .*{message}"):
            RunDir(tmp_path).config()


def test_force_over_a_sweep_removes_its_record_and_members_and_nothing_else(tmp_path):
    """A run forced over a sweep left sweep.json and every member beside it (`--resume` then read the old sweep);
    a sweep forced over a sweep left the old members beside the new ones.  --force removes a sweep's record and
    the members it names, with a run's own files; a user's file and a folder the record does not name stay."""
    import json

    import pytest

    from mtdqn.errors import ConfigError

    out = tmp_path / "sweep"
    for member in ("lr=0.0001", "lr=0.001"):
        (out / member / "checkpoints").mkdir(parents=True)
        (out / member / "config.json").write_text("{}")
    (out / "checkpoints").mkdir()
    (out / "sweep.json").write_text(json.dumps({"sweep": {"lr": [1e-4, 1e-3]}, "members": ["lr=0.0001", "lr=0.001",
                                                                                         "../outside"]}))
    (out / "notes.txt").write_text("mine")
    (out / "mine").mkdir()
    assert RunDir(out).owned()[-3:] == ("sweep.json", "lr=0.0001", "lr=0.001")
    with pytest.raises(ConfigError, match="already holds a run"):
        RunDir(out).create({"config": {}}, force=False)
    RunDir(out).create({"config": {}}, force=True)
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "mine", "notes.txt"]
    assert RunDir(tmp_path / "plain").owned()[-1] == "test_eval.json"  # no sweep: a run's files alone


def test_the_output_kinds_are_the_records_of_each_kind():
    """mtdqn.io names each kind's record by its file (io is imported by the modules that declare them): the
    names stay those declarations'."""
    from mtdqn.io import OUTPUT_KINDS
    from mtdqn.rundir import RUN_RECORD, STUDY_RECORD
    from mtdqn.sweepspec import SWEEP_FILE
    from mtdqn.tune.search import TUNE_RECORD

    assert list(OUTPUT_KINDS) == [RUN_RECORD, SWEEP_FILE, STUDY_RECORD, TUNE_RECORD]


def test_a_resumed_run_refuses_tables_that_lost_its_history(tmp_path):
    """A resume kept whatever the tables held: a deleted metrics.parquet resumed to 6 of 16 rows (exit 0) and
    emptied metrics.csv; a column dropped or retyped by hand ended in pandas' traceback after the training.
    Each is now one line before anything is written; tables as written are kept up to the checkpoint."""
    import pytest

    from mtdqn.errors import ConfigError
    from mtdqn.rundir import evaluated, evals_until
    from mtdqn.train.drive import Schedule

    tables = Tables.empty()
    for step in (1000, 2000, 3000):
        tables.extend(chunk_tables(NAMES, [0, 1], True, _chunk_metrics(updates=5.0), step=step))
    tables.evals.extend(eval_rows(NAMES, [0, 1], np.zeros((2, 2, 3)), np.zeros((2, 2, 3)), 2000))
    run = RunDir(tmp_path)
    run.write_tables(tables)
    schedule = Schedule(steps_per_chunk=1000, num_chunks=4, checkpoint_chunks=1, eval_chunks=2)
    assert schedule.kept_steps(3) == (3000, 3000)  # unfinished: every chunk's rows up to it
    assert schedule.kept_steps(4) == (4000, 1000)  # finished (perhaps stopped early): its first chunk's rows
    assert evaluated(tables) == {"evals_until": 2000}  # what a checkpoint records of the evaluations before it
    assert evals_until({}) == 0 and evals_until(evaluated(tables)) == 2000  # none recorded: nothing asked
    kept = run.tables_until(*schedule.kept_steps(2), 2000)
    assert len(kept.metrics) == 2 * 4 and len(kept.evals) == 4 and {r["step"] for r in kept.metrics} == {1000, 2000}
    assert pd.DataFrame(kept.metrics).dtypes.astype(str).to_dict() == METRIC_SCHEMA  # as written, uncast
    with pytest.raises(ConfigError, match=r"metrics.parquet ends before step 4,000: the run's history up to its "
                                          r"checkpoint \(step 4,000\) is lost"):
        run.tables_until(4000, 4000)
    (tmp_path / "evals.parquet").unlink()
    with pytest.raises(ConfigError, match=r"evals.parquet is missing: the run's history"):
        run.tables_until(*schedule.kept_steps(3), 2000)
    run.tables_until(*schedule.kept_steps(3), 0)  # none recorded before the checkpoint (a resume may add them)
    frame = pd.read_parquet(tmp_path / "metrics.parquet")
    frame.drop(columns="episodes").to_parquet(tmp_path / "metrics.parquet")
    with pytest.raises(ConfigError, match=r"metrics.parquet has no column 'episodes': not the table this run wrote"):
        run.tables_until(1000, 1000)
    frame.assign(step=frame["step"].astype(str) + "x").to_parquet(tmp_path / "metrics.parquet")
    with pytest.raises(ConfigError, match=r"metrics.parquet: its column 'step' holds object, not the int64"):
        run.tables_until(1000, 1000)
    (tmp_path / "metrics.parquet").unlink()
    with pytest.raises(ConfigError, match=r"metrics.parquet is missing"):
        run.tables_until(*schedule.kept_steps(4))


def test_a_file_that_cannot_replace_its_place_is_named_not_its_temp_file(tmp_path):
    """A folder where eval.json goes said "cannot write results: Is a directory (.../.eval.json.viyb070v.tmp)"."""
    import pytest

    from mtdqn.io import write_json

    (tmp_path / "eval.json").mkdir()
    with pytest.raises(IsADirectoryError) as exc:
        write_json(tmp_path / "eval.json", {})
    assert exc.value.filename == str(tmp_path / "eval.json")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eval.json"]  # no temp file left


def test_a_resumed_runs_timings_come_only_from_a_finished_summary(tmp_path):
    """A failed attempt's summary.json (a study cell's) has no timings: its resume wrote a throughput of 0.0 where
    it trained nothing; a damaged one is written again, said once."""
    import json

    import pytest

    from mtdqn.errors import MtdqnWarning
    from mtdqn.train.summary import _training_process_fields

    run = RunDir(tmp_path)
    assert _training_process_fields(run) == {"env_steps_per_s": None}  # none: killed before its summary
    (tmp_path / "summary.json").write_text(json.dumps({"status": "failed", "error": "OSError: disk full"}))
    assert _training_process_fields(run) == {"env_steps_per_s": None}
    (tmp_path / "summary.json").write_text(json.dumps({"status": "ok", "wall_time_s": 9.5, "env_steps_per_s": 40.0}))
    assert _training_process_fields(run) == {"env_steps_per_s": 40.0, "wall_time_s": 9.5}
    (tmp_path / "summary.json").write_text('{"status": "ok", "wall_ti')
    with pytest.warns(MtdqnWarning, match=r"summary.json was unreadable: it is written again, its throughput "
                                          r"unknown \(null\) and its wall and compile times this evaluation's"):
        assert _training_process_fields(run) == {"env_steps_per_s": None}
