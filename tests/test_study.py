"""The study runner end to end on a tiny study: layout, report, re-runs, failures, an unreachable Ray address, bad
input.

One tiny study (helpers.TINY_STUDY: 2 tasks, independent vs shared, 2 seeds, 2000 steps per task) is trained
once per session through the local backend (conftest.local_study; test_ray runs it on Ray too); the tests here
copy it (``copytree`` keeps mtimes) and check what a re-run touches.
"""

from __future__ import annotations

import dataclasses

import json
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from helpers import TINY_STUDY, spec_file

from mtdqn.cli import main
from mtdqn.errors import ConfigError, TrainingDiverged
from mtdqn.studies import cell_configs, cell_status, load_spec, resolve_spec, run_study
from mtdqn.studies.cell import adopt_thresholds

TINY = TINY_STUDY


def _spec_file(tmp: Path, text: str = TINY, name: str = "tiny.toml") -> Path:
    return spec_file(tmp, text, name)


def _mtimes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture()
def study_copy(local_study: Path, tmp_path: Path) -> Path:
    out = tmp_path / "study"
    shutil.copytree(local_study, out)  # copy2: mtimes preserved
    return out


@pytest.mark.slow
def test_layout_and_report(local_study: Path) -> None:
    study = json.loads((local_study / "study.json").read_text())
    assert study["variants"] == ["independent", "shared"] and study["reference"] == "independent"
    assert study["seeds"] == [0, 1] and study["steps"] == 2000 and study["tasks"] == ["CartPole-v1", "Acrobot-v1"]
    import shlex
    import sys

    assert study["command"] == shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]])  # this process's: pytest's
    for variant in study["variants"]:
        cell = local_study / "cells" / variant
        summary = json.loads((cell / "summary.json").read_text())
        assert summary["status"] == "ok" and summary["error"] is None and summary["variant"] == variant
        assert summary["thresholds"] == {"CartPole-v1": 400.0, "Acrobot-v1": -120.0}
        assert all(len(v) == 2 for v in summary["final_eval"].values())
        evals = pd.read_parquet(cell / "evals.parquet")  # the study's eval_every reached the cell's training
        assert sorted(evals["step"].unique()) == [1000, 2000] and summary["eval_every"] == 1000
        assert (cell / "metrics.parquet").exists() and (cell / "config.json").exists()
    assert json.loads((local_study / "cells/shared/summary.json").read_text())["params_shared"] > 0
    for name in ("report.html", "report.md", "results.md"):
        assert (local_study / "report" / name).stat().st_size > 0
    assert any((local_study / "report" / "data").glob("*.parquet"))


@pytest.mark.slow
def test_a_study_being_run_is_not_run_again_beside_it(study_copy: Path) -> None:
    """A second study in one folder raced the first for its cells (and started over a cell it found half
    written, the first's live one): it is refused in one line, nothing touched."""
    import fcntl

    from mtdqn.errors import FolderBusy

    spec = load_spec(_spec_file(study_copy.parent))
    shutil.rmtree(study_copy / "cells" / "shared")  # a cell to train: the rerun gets as far as the hold
    before = _mtimes(study_copy)
    other = os.open(study_copy, os.O_RDONLY)  # another process's hold of the folder
    fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
    try:
        with pytest.raises(FolderBusy, match="is being written by another process"):
            run_study(spec, study_copy, progress=False)
    finally:
        os.close(other)
    assert _mtimes(study_copy) == before


@pytest.mark.slow
def test_the_estimate_prices_every_evaluation_a_cell_runs(local_study: Path) -> None:
    """The printed estimate left evaluations out, half a tiny cell's time: it counts those the cells ran (the
    final one among the evals' steps, and the random policy's) and times one on the probe."""
    from mtdqn.studies.runner import cell_evaluations, estimate_training_time

    cells = cell_configs(load_spec(_spec_file(local_study.parent)))
    for cell in cells:
        evals = pd.read_parquet(local_study / "cells" / cell.variant / "evals.parquet")
        assert cell_evaluations(cell) == evals["step"].nunique() + 1
    estimate = estimate_training_time(cells, min_probe_s=0.0, probe_all=True)  # each cell's own program
    assert estimate.train_s > 0 and estimate.eval_s > 0 and estimate.rate > 0
    assert list(estimate.rates) == ["independent", "shared"] and estimate.assumed == ()


def test_the_estimate_probes_each_program_where_that_is_cheap(monkeypatch) -> None:
    """A probe of the first cell alone priced a study's `moe:2` and `moore:2` cells as its `independent` one (~3
    min for 9): each program is probed, where that adds at most PROBE_SHARE of the study's time; a shorter
    study prices the others as the first, and says which."""
    from mtdqn.studies import runner
    from mtdqn.studies.spec import build_spec

    def cells(steps: int) -> list:
        return cell_configs(build_spec({"tasks": ["CartPole-v1"], "steps": steps, "seeds": 1,
                                        "options": {"learning_starts": 1000},
                                        "variants": {"shared": {"sharing": "shared"}, "moe": {"sharing": "moe:2"},
                                                     "again": {"sharing": "moe:2"}}}, "s.toml", "s"))

    clock = [0.0]

    def probe(cell, min_probe_s):  # 10 s each on a clock of its own; moe 3x slower; no compile, no evaluation
        clock[0] += 10.0
        slow = 3.0 if cell.config.network.sharing.startswith("moe") else 1.0
        return runner._Probe(0.0, 1e-4 * slow, 1e-3 * slow, 0.0, 0.0, 1.0 / slow)

    monkeypatch.setattr(runner, "_probe", probe)
    monkeypatch.setattr(runner.time, "perf_counter", lambda: clock[0])
    # 2 more programs (moe and again: one) cost 20 s: probed where that is at most 5% of the study's time
    long = runner.estimate_training_time(cells(2_000_000))  # ~500 s a cell as the first prices it
    assert list(long.rates) == ["independent", "shared", "moe"] and long.assumed == ()
    short = runner.estimate_training_time(cells(200_000))  # ~50 s a cell: 20 s would be 10%
    assert list(short.rates) == ["independent"] and short.assumed == ("shared", "moe", "again")
    assert short.train_s < runner.estimate_training_time(cells(200_000), probe_all=True).train_s


@pytest.mark.slow
def test_cell_status(study_copy: Path) -> None:
    spec = load_spec(_spec_file(study_copy.parent))
    independent, shared = cell_configs(spec)
    cells = study_copy / "cells"
    assert cell_status(independent, cells / "independent") == "done"
    # other thresholds (the analysis's alone) leave a finished cell done, and it takes them: a study whose
    # thresholds were edited refused every finished cell, to be trained again
    task = next(iter(independent.thresholds))
    edited = dataclasses.replace(independent, thresholds={**independent.thresholds, task: 50.0})
    assert cell_status(edited, cells / "independent") == "done"
    adopt_thresholds(edited, cells / "independent")
    assert json.loads((cells / "independent" / "summary.json").read_text())["thresholds"][task] == 50.0
    (cells / "shared" / "summary.json").unlink()  # killed after its final checkpoint
    assert cell_status(shared, cells / "shared") == "resume"
    # killed under other evaluations: it resumed, its evaluations so far at the old episode count, the rest at
    # the new, unsaid (a finished cell with the change is refused, below)
    more = dataclasses.replace(shared.run_options, eval_episodes=shared.run_options.eval_episodes + 1)
    assert cell_status(dataclasses.replace(shared, run_options=more), cells / "shared") == "fresh"
    tested = dataclasses.replace(shared.run_options, test_episodes=5)  # at the end alone: the resume takes it
    assert cell_status(dataclasses.replace(shared, run_options=tested), cells / "shared") == "resume"
    from mtdqn.config import derive
    from mtdqn.studies.cell import resumable_from

    at = resumable_from(shared, cells / "shared")  # what the rerun's line says
    assert at is not None and at["step"] == at["of"] == derive(shared.config).env_steps
    assert resumable_from(independent, cells / "independent") is None  # done: skipped, not resumed
    shutil.rmtree(cells / "shared" / "checkpoints")  # killed before any checkpoint
    assert cell_status(shared, cells / "shared") == "fresh" and resumable_from(shared, cells / "shared") is None
    # A cell finished before --eval-every existed (no key in its record) is finished for any schedule:
    # evaluations never touch training. One that stored another schedule is a different setup.
    record_path = cells / "independent" / "config.json"
    record = json.loads(record_path.read_text())
    every_5000 = dataclasses.replace(independent, run_options=dataclasses.replace(independent.run_options,
                                                                                  eval_every=5000))
    before = {**record, "options": {k: v for k, v in record["options"].items() if k != "eval_every"}}
    record_path.write_text(json.dumps(before))
    assert cell_status(every_5000, cells / "independent") == "done"
    record_path.write_text(json.dumps({**record, "options": {**record["options"], "eval_every": 1000}}))
    with pytest.raises(ConfigError, match=r"eval_every: stored 1000, now 5000"):
        cell_status(every_5000, cells / "independent")
    record_path.write_text(json.dumps(record))
    other = load_spec(_spec_file(study_copy.parent, TINY.replace("steps = 2000", "steps = 4000"), "other.toml"))
    with pytest.raises(ConfigError, match=r"cells/independent: holds a finished cell .*steps: stored 2000, now 4000"):
        cell_status(cell_configs(other)[0], cells / "independent")
    # damaged records said "a different setup ()" and "batch_size: stored None, now 128"
    summary_path = cells / "independent" / "summary.json"
    summary = json.loads(summary_path.read_text())
    summary_path.write_text(json.dumps({k: v for k, v in summary.items() if k != "config_hash"}))
    with pytest.raises(ConfigError, match=r"different setup \(config hash in summary.json: None, now '"):
        cell_status(independent, cells / "independent")
    summary_path.write_text(json.dumps(summary))
    record_path.write_text(json.dumps(record)[:100])
    with pytest.raises(ConfigError, match=r"finished cell whose config.json is missing or unreadable \(not a JSON"):
        cell_status(independent, cells / "independent")
    record_path.unlink()
    with pytest.raises(ConfigError, match=r"finished cell whose config.json is missing or unreadable"):
        cell_status(independent, cells / "independent")
    record_path.write_text(json.dumps({k: v for k, v in record.items() if k != "options"}))  # read as the defaults
    with pytest.raises(ConfigError, match=r"eval_episodes: stored 10 \(its config.json records no run options: the "
                                          r"defaults\), now 2"):
        cell_status(independent, cells / "independent")
    record_path.write_text(json.dumps(record))
    assert cell_status(independent, cells / "independent") == "done"


@pytest.mark.slow
def test_a_cell_whose_resume_is_refused_fails_and_keeps_its_checkpoint(study_copy: Path) -> None:
    """Only an unreadable checkpoint makes a study train a cell again from its start; any other refusal of its
    resume (here its metrics.parquet lost) is the cell's failure, said in the report with what to do, and its
    checkpoint stays (every refusal cleared the cell and retrained it, a user's files in it too)."""
    cell = study_copy / "cells" / "shared"
    (cell / "summary.json").unlink()  # killed after its final checkpoint
    (cell / "metrics.parquet").unlink()
    checkpoints = _mtimes(cell / "checkpoints")
    run_study(load_spec(_spec_file(study_copy.parent)), study_copy, progress=False, report=False)
    summary = json.loads((cell / "summary.json").read_text())
    assert summary["status"] == "failed" and "metrics.parquet is missing" in summary["error"]
    assert "a study's cell: delete its folder" in summary["error"]
    assert _mtimes(cell / "checkpoints") == checkpoints
    # an unreadable checkpoint is the one case trained again from the start
    latest = cell / "checkpoints" / "latest.json"
    latest.write_text(latest.read_text()[:50])
    run_study(load_spec(_spec_file(study_copy.parent)), study_copy, progress=False, report=False)
    assert json.loads((cell / "summary.json").read_text())["status"] == "ok" and (cell / "metrics.parquet").exists()


@pytest.mark.slow
def test_a_finished_cells_damaged_summary_is_written_again_not_its_training(study_copy: Path,
                                                                           local_study: Path) -> None:
    """A truncated summary.json failed the resume after its evaluation, and the study then cleared the cell (a
    user's file in it too) and trained it again under "evaluating it"; now the summary is written again."""
    from mtdqn.errors import MtdqnWarning

    cell = study_copy / "cells" / "shared"
    (cell / "NOTES.txt").write_text("mine")
    (cell / "summary.json").write_text((cell / "summary.json").read_text()[:100])
    checkpoints = _mtimes(cell / "checkpoints")
    with pytest.warns(MtdqnWarning, match=r"summary.json was unreadable: it is written again"):
        result = run_study(load_spec(_spec_file(study_copy.parent)), study_copy, progress=False, report=False)
    assert result.summaries["shared"]["status"] == "ok" and (cell / "NOTES.txt").read_text() == "mine"
    assert _mtimes(cell / "checkpoints") == checkpoints  # not trained again
    original = json.loads((local_study / "cells/shared/summary.json").read_text())
    assert result.summaries["shared"]["final_eval"] == original["final_eval"]


@pytest.mark.slow
def test_rerun_finishes_only_what_was_missing(study_copy: Path, local_study: Path) -> None:
    before = _mtimes(study_copy / "cells" / "independent")
    (study_copy / "cells" / "shared" / "summary.json").unlink()  # the study was killed during this cell
    result = run_study(load_spec(_spec_file(study_copy.parent)), study_copy, progress=False, report=False)
    assert _mtimes(study_copy / "cells" / "independent") == before
    original = json.loads((local_study / "cells/shared/summary.json").read_text())
    assert result.summaries["shared"]["status"] == "ok"
    assert result.summaries["shared"]["final_eval"] == original["final_eval"]  # resumed from its checkpoint
    assert result.summaries["shared"]["env_steps_per_s"] is None  # it trained nothing: its throughput is unknown
    pd.testing.assert_frame_equal(pd.read_parquet(study_copy / "cells/shared/metrics.parquet"),
                                  pd.read_parquet(local_study / "cells/shared/metrics.parquet"))


@pytest.mark.slow
def test_a_machine_short_of_memory_keeps_a_killed_cells_checkpoint(study_copy: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Resuming on a machine that cannot fit the run fails the cell but keeps its checkpoint for a later try."""
    import mtdqn.train.agent

    cell = study_copy / "cells" / "shared"
    (cell / "summary.json").unlink()  # killed after its final checkpoint
    checkpoints = _mtimes(cell / "checkpoints")
    spec = load_spec(_spec_file(study_copy.parent))  # validated on this machine; the resume runs short
    monkeypatch.setattr(mtdqn.train.agent, "available_host_memory", lambda: 100_000_000)  # 0.1 GB
    run_study(spec, study_copy, progress=False, report=False)
    summary = json.loads((cell / "summary.json").read_text())
    assert summary["status"] == "failed" and summary["error"].startswith("InsufficientResources")
    assert _mtimes(cell / "checkpoints") == checkpoints
    assert cell_status(cell_configs(spec)[1], cell) == "resume"  # a later run on a bigger machine continues it


@pytest.mark.slow
def test_failed_cell_is_recorded_and_the_study_goes_on(study_copy: Path, monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """The other cells and the report are made; `mtdqn study` then exits 3 naming the failure (it exited 0, and
    with --progress False said nothing of it)."""
    import mtdqn.train.run

    def diverge(*args: object, **kwargs: object) -> None:
        raise TrainingDiverged("training diverged: non-finite loss in task Acrobot-v1")

    monkeypatch.setattr(mtdqn.train.run, "train", diverge)
    shutil.rmtree(study_copy / "cells" / "shared")
    with pytest.raises(SystemExit) as exc:
        main(["study", str(_spec_file(study_copy.parent)), "--out", str(study_copy), "--progress", "False"])
    assert exc.value.code == 3
    captured = capsys.readouterr()
    assert captured.out.strip() == f"report: {study_copy / 'report' / 'report.html'}"
    assert captured.err == ("error: 1 cell of 2 failed (shared: TrainingDiverged: training diverged: non-finite loss "
                            "in task Acrobot-v1); the report marks it FAILED, and a rerun of the study trains it "
                            "again\n")
    summary = json.loads((study_copy / "cells/shared/summary.json").read_text())
    assert summary["status"] == "failed" and summary["variant"] == "shared"
    assert summary["error"].startswith("TrainingDiverged: training diverged")
    assert json.loads((study_copy / "cells/independent/summary.json").read_text())["status"] == "ok"
    assert "TrainingDiverged" in (study_copy / "report" / "report.md").read_text()


@pytest.mark.slow
def test_another_study_into_a_studys_folder_is_refused(study_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Its study.json, which the report and reruns read, was written over (a `quick` study run into a groups
    study's folder lost the groups' plan); a study of the same name reuses its finished cells, as before."""
    before = _mtimes(study_copy)
    path = _spec_file(study_copy.parent, TINY.replace('name = "tiny"', 'name = "other"'), "other.toml")
    with pytest.raises(SystemExit) as exc:
        main(["study", str(path), "--out", str(study_copy)])
    assert exc.value.code == 2
    assert capsys.readouterr().err == (f"error: {study_copy}: holds study 'tiny', not study 'other'; choose another "
                                       "--out (a study's folder holds that study alone)\n")
    assert _mtimes(study_copy) == before


def test_unreachable_ray_address_writes_nothing(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    out = tmp_path / "never"
    with pytest.raises(ConfigError, match=r"--ray-address 127\.0\.0\.1:1: cannot reach"):
        run_study(load_spec(_spec_file(tmp_path)), out, ray_address="127.0.0.1:1", progress=False)
    assert not out.exists()


def test_the_automatic_reference_trains_plain_independent_networks(tmp_path):
    """A strategy or affinity set for every variant in [options] acts on shared parameters only, which `train`
    refuses for independent networks: the reference the study adds trains without them (as it would with them)."""
    text = TINY.replace("[options]", '[options]\nstrategy = "cagrad"\nstrategy_args = "c=0.2"\naffinity_every = 500')
    spec = load_spec(_spec_file(tmp_path, text, "strategy.toml"))
    assert spec.variants["independent"] == {"sharing": "independent", "strategy": "sum", "strategy_args": "",
                                            "affinity_every": 0}
    assert load_spec(_spec_file(tmp_path)).variants["independent"] == {"sharing": "independent"}
    # a variant of the user's that shares nothing trains so too (a sharing-depth study with one strategy for
    # all was refused); a strategy the variant sets itself is still its own, and refused
    depth = text + '\n[variants.p0]\nsharing = "partial:0"\n'
    assert load_spec(_spec_file(tmp_path, depth, "depth.toml")).variants["p0"] == {
        "strategy": "sum", "strategy_args": "", "affinity_every": 0, "sharing": "partial:0"}
    own = depth + 'strategy = "pcgrad"\n'
    with pytest.raises(ConfigError, match="variants.p0.*--strategy pcgrad with --sharing partial:0 changes nothing"):
        load_spec(_spec_file(tmp_path, own, "own.toml"))


BAD = {
    "bad-toml": (TINY.replace("[variants.shared]", "[variants.shared"), "invalid TOML"),
    "unknown-key": ("budget = 3\n" + TINY, ": budget: unknown key"),
    "unknown-option": (TINY + "lrr = 0.1\n", ": variants.shared.lrr: unknown option"),
    "run-option-in-options": (TINY.replace("[options]", "[options]\neval_episodes = 3"), ": options.eval_episodes: "
                              "eval_episodes is a study-level key, set once for every variant: put it at the top of "
                              "the file, not in [options]"),
    "study-key-in-variant": (TINY + "seeds = 3\n", ": variants.shared.seeds: seeds is a study-level key"),
    "invalid-option": (TINY + "lr = -1.0\n", ": variants.shared.lr: --lr must be a finite number > 0"),
    "wrong-type": (TINY + 'lr = "fast"\n', ": variants.shared.lr: expected float, got 'fast'"),
    "bad-sharing": (TINY.replace('sharing = "shared"', 'sharing = "partial:9"'), ": variants.shared.sharing: "),
    "shared-option": (TINY.replace("batch_size = 32", "batch_size = 5000"), ": options.batch_size: "),
    "empty-grid": (TINY.split("[variants.shared]")[0], ": variants: empty grid"),
    "no-seeds": (TINY.replace("seeds = 2", "seeds = 0"), ": seeds: expected a positive integer, got 0"),
    "seeds-left-out": (TINY.replace("seeds = 2\n", ""), ": seeds is missing (a study file gives it at its top level"),
    "no-tasks": (TINY.replace('tasks = ["CartPole-v1", "Acrobot-v1"]', "tasks = []"), ": tasks: empty grid"),
    "window-not-dividing-eval": (TINY.replace("log_every = 500", "log_every = 300"),
                                 ": options: log_every 300 does not divide eval_every 1,000"),
    "strategy-without-sharing": (TINY + '[variants.alone]\nsharing = "independent"\nstrategy = "pcgrad"\n',
                                 ": variants.alone.strategy: --strategy pcgrad with --sharing independent changes "
                                 "nothing"),
    "threshold-nan": (TINY + '[thresholds]\n"CartPole-v1" = nan\n',  # trained, "not informative at this budget"
                      ": thresholds.CartPole-v1: expected a finite number, got nan"),
    "threshold-out-of-range": (TINY + '[thresholds]\n"CartPole-v1" = 1000\n',
                               ": thresholds.CartPole-v1: 1000 is outside the return's range [0, 500]"),
    "variant-named-as-the-reference": (TINY.replace("[variants.shared]", "[variants.independent]"),
                                       ": variants.independent: names the study's reference (one network per task) "
                                       "but trains sharing = 'shared'"),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_study_file_is_one_line_and_leaves_results_untouched(
    case: str, study_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text, expected = BAD[case]
    path = _spec_file(tmp_path, text, "bad.toml")
    before = _mtimes(study_copy)
    with pytest.raises(SystemExit) as exc:
        main(["study", str(path), "--out", str(study_copy)])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {path}") and "\n" not in err and expected in err, err
    assert _mtimes(study_copy) == before


@pytest.mark.slow
def test_changed_study_refuses_to_mix_results(study_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = _mtimes(study_copy)
    path = _spec_file(study_copy.parent, TINY, "tiny.toml")
    with pytest.raises(SystemExit) as exc:
        main(["study", str(path), "--steps", "4000", "--out", str(study_copy)])
    assert exc.value.code == 2
    assert "holds a finished cell made with a different setup" in capsys.readouterr().err
    assert _mtimes(study_copy) == before


@pytest.mark.slow
def test_a_rerun_skips_finished_cells_and_its_header_keeps_the_folder_on_its_line(local_study: Path,
                                                                                 tmp_path: Path) -> None:
    """A console narrower than the line (a log is 80 columns) broke it after "→ ", the folder alone below."""
    from rich.console import Console

    from mtdqn.studies import load_spec, run_study

    out = tmp_path / ("a-folder-name-long-enough-to-pass-the-width-" * 2) / "study"
    shutil.copytree(local_study, out)
    console = Console(record=True, width=60)
    run_study(load_spec(_spec_file(tmp_path)), out, progress=True, console=console)
    lines = console.export_text().splitlines()
    assert lines[0].startswith("study tiny: 2 tasks × 2 variants × 2 seeds"), lines
    assert lines[0].endswith(f"→ {out}"), lines
    assert [line.split(": ", 1)[1] for line in lines[1:3]] == ["already finished, skipped"] * 2, lines


@pytest.mark.slow
def test_report_command(study_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shutil.rmtree(study_copy / "report")
    main(["report", str(study_copy)])
    assert capsys.readouterr().out.strip() == f"report: {study_copy / 'report' / 'report.html'}"
    assert (study_copy / "report" / "report.html").exists()
    with pytest.raises(SystemExit) as exc:
        main(["report", str(tmp_path / "nothing")])
    assert exc.value.code == 2 and capsys.readouterr().err.count("\n") == 1


def test_the_evaluation_cadence_is_run_as_asked_never_rounded() -> None:
    """eval_every is the study's protocol: the logging window (between which evaluations run) follows it where
    no one set it, and a window someone set must divide it."""
    from mtdqn.studies.spec import build_spec

    def spec(eval_every: int, options: dict | None = None, variant: dict | None = None):
        return build_spec({"tasks": ["CartPole-v1"], "steps": 60_000, "seeds": 1, "eval_every": eval_every,
                           "options": options or {}, "variants": {"shared": {"sharing": "shared", **(variant or {})}}},
                          "s.toml", "s")

    assert spec(5_000).options["log_every"] == 5_000  # the referee's study: 10,000-step windows before
    assert spec(15_000).options["log_every"] == 7_500  # the largest divisor up to the default 10,000
    assert "log_every" not in spec(20_000).options and "log_every" not in spec(0).options  # the default fits
    assert spec(5_000, {"log_every": 1_000}).options["log_every"] == 1_000
    with pytest.raises(ConfigError, match=r"^s\.toml: variants\.shared: log_every 2,000 does not divide eval_every 5,000"):
        spec(5_000, variant={"log_every": 2_000})
    with pytest.raises(ConfigError, match="eval_every 10,007 has no divisor near the default logging window"):
        spec(10_007)
    # whole vector steps: 7,500 on 8 envs would run as 7,504, evaluations every 15,008
    assert spec(15_000, {"num_envs": 8, "train_every": 8}).options["log_every"] == 5_000
    assert spec(15_000, variant={"num_envs": 8, "train_every": 8}).options["log_every"] == 5_000
    with pytest.raises(ConfigError, match="no divisor near the default logging window .* in whole vector steps of 16"):
        spec(5_000, {"num_envs": 16, "train_every": 16})


def test_a_budget_its_cells_round_up_is_said_once() -> None:
    """A study of 2,000 steps trained 10,000 per cell (the default logging windows), said only in the report's
    header (its Methods said 2,000): now a warning as `mtdqn train`'s, naming the cells; none where the cells
    train as asked."""
    from mtdqn.errors import RoundedScheduleWarning
    from mtdqn.studies.runner import warn_of_rounded_budgets
    from mtdqn.studies.spec import build_spec

    def cells(steps: int, options: dict) -> list:
        return cell_configs(build_spec({"tasks": ["CartPole-v1"], "steps": steps, "seeds": 1, "options": options,
                                        "variants": {"shared": {"sharing": "shared"}}}, "s.toml", "s"))

    said = (r"^study s: steps 2,000 trains 10,000 env steps per task \(whole log_every windows of 10,000\) in cells "
            r"independent, shared; ")
    with pytest.warns(RoundedScheduleWarning, match=said) as w:
        warn_of_rounded_budgets("s", cells(2_000, {"learning_starts": 500}))
    assert len([x for x in w if x.category is RoundedScheduleWarning]) == 1  # once for the study, not per cell
    with warnings.catch_warnings():
        warnings.simplefilter("error", RoundedScheduleWarning)
        warn_of_rounded_budgets("s", cells(2_000, {"learning_starts": 500, "log_every": 1_000}))


def test_cells_evaluating_at_different_steps_are_refused_and_a_rounded_cadence_said() -> None:
    """log_every 1,000 on a variant's 16 envs runs as 1,008: it evaluated every 10,080 beside the reference's
    10,000 (AUC and steps to threshold then on two grids), with no warning; the spec checks only that a set
    window divides eval_every.  Now refused in one line; a cadence every cell rounds alike is warned."""
    from mtdqn.errors import RoundedScheduleWarning
    from mtdqn.studies.runner import check_evaluation_steps, warn_of_rounded_budgets
    from mtdqn.studies.spec import build_spec

    def cells(variant: dict, options: dict | None = None) -> list:
        return cell_configs(build_spec({"tasks": ["CartPole-v1"], "steps": 100_800, "seeds": 1, "eval_every": 10_000,
                                        "options": {"log_every": 1_000, **(options or {})},
                                        "variants": {"shared": {"sharing": "shared", **variant}}}, "s.toml", "s"))

    mixed = cells({"num_envs": 16, "train_every": 16})
    with pytest.raises(ConfigError, match=r"^study s: its cells would evaluate at different steps \(independent "
                                          r"every 10,000; shared every 10,080: "):
        check_evaluation_steps("s", mixed)
    alike = cells({}, {"num_envs": 16, "train_every": 16})
    check_evaluation_steps("s", alike)
    with pytest.warns(RoundedScheduleWarning, match=r"evaluations every 10,000 run every 10,080 env steps per task"):
        warn_of_rounded_budgets("s", alike)
    check_evaluation_steps("s", cells({}))  # 1,000 on 4 envs: as asked
    # a preset's cadence is not the user's to change: the MiniGrid presets (20,000 run as 20,032) warned at every
    # budget, a whole number of windows included, and could not run under -W error
    mt3 = cell_configs(resolve_spec("minigrid-mt3", {"steps": 200_320, "seeds": 1}))
    with warnings.catch_warnings():
        warnings.simplefilter("error", RoundedScheduleWarning)
        warn_of_rounded_budgets("minigrid-mt3", mt3, "give --steps a whole number of windows", cadence=False)


def test_run_study_refuses_cells_evaluating_at_different_steps_before_writing(tmp_path: Path) -> None:
    """The check is run_study's, before the study's folder is made (not only the function above)."""
    from mtdqn.studies.spec import build_spec

    spec = build_spec({"tasks": ["CartPole-v1"], "steps": 100_800, "seeds": 1, "eval_every": 10_000,
                       "options": {"log_every": 1_000},
                       "variants": {"shared": {"sharing": "shared", "num_envs": 16, "train_every": 16}}}, "s.toml", "s")
    with pytest.raises(ConfigError, match="its cells would evaluate at different steps"):
        run_study(spec, tmp_path / "study", progress=False)
    assert not (tmp_path / "study").exists()


def test_a_presets_rounded_cadence_is_not_warned_by_run_study(tmp_path: Path, monkeypatch) -> None:
    """minigrid-mt3 at a whole number of windows (200,320 steps) warned that its 20,000 runs as 20,032, which no
    option of a preset changes: under -W error it could not run.  (Stopped where the study's folder is made.)"""
    from mtdqn.errors import RoundedScheduleWarning
    from mtdqn.studies import runner

    class Reached(Exception):
        pass

    def stop(path):
        raise Reached

    monkeypatch.setattr(runner, "held", stop)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RoundedScheduleWarning)
        with pytest.raises(Reached):
            run_study(resolve_spec("minigrid-mt3", {"steps": 200_320, "seeds": 1}), tmp_path / "s", progress=False)


def test_cells_evaluated_at_their_end_alone_are_said_once() -> None:
    """A study whose evaluation cadence does not fit its budget (minigrid-mt3 at --steps 5000, under its
    20,000) has no greedy learning curves, and its report's AUC and steps to threshold read training returns:
    warned once, naming the cells; nothing where an evaluation fits before the end."""
    from mtdqn.errors import MtdqnWarning
    from mtdqn.studies.runner import warn_of_no_evaluations
    from mtdqn.studies.spec import build_spec

    def cells(steps: int, eval_every: int) -> list:
        return cell_configs(build_spec({"tasks": ["CartPole-v1"], "steps": steps, "seeds": 1, "eval_every": eval_every,
                                        "options": {"learning_starts": 500},
                                        "variants": {"shared": {"sharing": "shared"}}}, "s.toml", "s"))

    with pytest.warns(MtdqnWarning, match=r"^study s: evaluations every 20,000 env steps do not fit in 10,000 \(cells "
                                          r"independent, shared\): each is evaluated at its end alone, so the "
                                          r"report's AUC and steps to threshold will read ε-greedy training returns; "
                                          r"for greedy learning curves, give --steps above the cadence$") as w:
        warn_of_no_evaluations("s", cells(10_000, 20_000), preset=True)
    assert len(w) == 1
    with pytest.warns(MtdqnWarning, match=r"give steps above options.eval_every, or a smaller options.eval_every$"):
        warn_of_no_evaluations("s", cells(10_000, 10_000), preset=False)  # one evaluation, at the end: no curve
    with warnings.catch_warnings():
        warnings.simplefilter("error", MtdqnWarning)
        warn_of_no_evaluations("s", cells(20_000, 10_000), preset=False)  # at 10,000 and the end: a curve
        warn_of_no_evaluations("s", cells(10_000, 0), preset=False)  # no evaluations asked for


def test_the_study_warns_of_its_rounding_before_it_writes(tmp_path: Path) -> None:
    """run_study says it (not only the function above), before the study's folder is made: under -W error
    nothing is written; a preset's advice is only --steps."""
    from mtdqn.errors import RoundedScheduleWarning

    spec = load_spec(_spec_file(tmp_path, TINY.replace("steps = 2000", "steps = 1900")))
    with warnings.catch_warnings():
        warnings.simplefilter("error", RoundedScheduleWarning)
        with pytest.raises(RoundedScheduleWarning, match="steps 1,900 trains 2,000"):
            run_study(spec, tmp_path / "study", progress=False)
        # a preset's options are its own: only --steps is the user's to change (not options.log_every)
        with pytest.raises(RoundedScheduleWarning, match=r"steps 5,001 trains 10,000 .* in cells independent, "
                                                         r"shared; to train as asked, give --steps a whole number of "
                                                         r"windows \(one at least\)$"):
            run_study(resolve_spec("quick", {"steps": 5001, "seeds": 1}), tmp_path / "study", progress=False)
    assert not (tmp_path / "study").exists()


def test_presets(monkeypatch) -> None:
    """Every preset's variants are valid runs.  Whether this machine has the memory for the minatar preset's 3
    seeds (16.5 GB) is not the preset's validity: with a study stopped beside the suite it had 16.4 GB free."""
    from mtdqn.config import derive
    from mtdqn.studies.spec import variant_config

    monkeypatch.setenv("MTDQN_SKIP_MEMORY_CHECK", "1")

    quick = resolve_spec("quick")
    assert list(quick.variants) == ["independent", "shared"] and quick.seeds == 2
    classic = resolve_spec("classic", {"seeds": 10})
    assert classic.seeds == 10 and classic.tasks == ("CartPole-v1", "Acrobot-v1", "MountainCar-v0")
    assert list(classic.variants) == ["independent", "independent-matched", "shared", "partial-1", "shared+unit-norm",
                                      "conditioned", "moe", "moore"]
    assert variant_config(classic, "shared+unit-norm").strategy == "unit-norm"
    minatar = resolve_spec("minatar")
    assert minatar.tasks[0] == "Breakout-MinAtar:sticky=0.1,actions=full,max_steps=10000"  # as published
    for spec in (quick, classic, minatar):  # every variant of every preset is a valid run
        for variant in spec.variants:
            derive(variant_config(spec, variant))
    dqn = variant_config(minatar, "shared").dqn  # Young & Tian: a hard copy every 1,000 frames per game
    assert dqn.tau == 1.0 and dqn.target_update_every * dqn.train_every == 1_000
    with pytest.raises(ConfigError, match="preset classic: seeds"):
        resolve_spec("classic", {"seeds": 0})


@pytest.mark.slow
def test_minigrid_presets_follow_moore() -> None:
    """MOORE's task sets, budget, evaluation and gamma; every variant a valid run; every task normalized by its
    fixed anchors (optimal return) with the shortest budget the issue names (--steps 5000) still updating."""
    from mtdqn.analysis.anchors import lookup, usable
    from mtdqn.config import derive
    from mtdqn.budget import check_train_budget
    from mtdqn.studies.spec import variant_config

    mt3 = ["MiniGrid-LavaGapS7-v0", "MiniGrid-RedBlueDoors-6x6-v0", "MiniGrid-MemoryS11-v0"]
    mt5 = [*mt3, "MiniGrid-DoorKey-6x6-v0", "MiniGrid-DistShift1-v0"]
    mt7 = [*mt5, "MiniGrid-SimpleCrossingS9N2-v0", "MiniGrid-MultiRoom-N2-S4-v0"]
    for name, tasks in (("minigrid-mt3", mt3), ("minigrid-mt5", mt5), ("minigrid-mt7", mt7)):
        spec = resolve_spec(name)
        assert list(spec.tasks) == tasks and spec.steps == 200_000 and spec.run_options.eval_episodes == 16
        assert list(spec.variants) == ["independent", "shared", "shared+unit-norm", "shared+pcgrad", "moe", "moore"]
        experts = {3: 2, 5: 3, 7: 4}[len(tasks)]  # MOORE's counts
        assert variant_config(spec, "moore").network.sharing == f"moore:{experts}"
        assert variant_config(spec, "moe").network.sharing == f"moe:{experts}"
        for variant in spec.variants:
            cfg = variant_config(spec, variant)
            derive(cfg)
            assert cfg.dqn.gamma == 0.99 and cfg.dqn.n_step > 1
        assert variant_config(spec, "shared+pcgrad").strategy == "pcgrad"
        for task in tasks:
            anchors = lookup(task)
            assert anchors is not None and usable(task, anchors) == "" and 0.8 < anchors.reference <= 1.0
    check_train_budget(variant_config(resolve_spec("minigrid-mt3", {"steps": 5_000}), "shared"))


def test_classic_capacity_control_matches_shared_within_ten_percent() -> None:
    import jax

    from mtdqn.networks import init_params, make_architecture
    from mtdqn.studies.spec import variant_config
    from mtdqn.tasks import make_task_set

    classic = resolve_spec("classic")

    def params(variant: str) -> int:
        cfg = variant_config(classic, variant)
        arch = make_architecture(make_task_set(cfg.tasks), cfg.network)
        shapes = jax.eval_shape(lambda k: init_params(arch, k), jax.random.PRNGKey(0))
        return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(shapes))

    matched, shared, full = params("independent-matched"), params("shared"), params("independent")
    assert variant_config(classic, "independent-matched").network.sharing == "independent"
    assert abs(matched - shared) / shared < 0.10 and full > 2 * shared  # the control is needed and works


def test_console_cell_line_states_the_final_score_the_report_uses(tmp_path: Path) -> None:
    """The line a finished cell prints gives summary.json's final_score (the report's headline), not the
    end-of-training evaluation, and says which it is; a run from before evaluations during training says so."""
    from rich.console import Console

    from mtdqn.studies.runner import progress_printer

    cell = cell_configs(load_spec(_spec_file(tmp_path)))[1]
    summary = {"status": "ok", "error": None, "final_eval": {"CartPole-v1": [420.0, 440.0]},
               "final_score": {"CartPole-v1": [380.0, 396.0]}}
    console = Console(record=True, width=400)
    on_event = progress_printer(console, 2)
    on_event("start", cell, None)
    on_event("done", cell, summary)
    line = console.export_text().splitlines()[-1]
    assert "final score" in line and "CartPole-v1 388.0 ± 11.3" in line, line  # the seeds' sample sd, as the report's
    assert "430.0" not in line and "(mean ± sd over seeds)" in line
    on_event("done", cell, {k: v for k, v in summary.items() if k != "final_score"})
    line = console.export_text().splitlines()[-1]
    assert "final evaluation" in line and "CartPole-v1 430.0 ± 14.1" in line, line
    on_event("resume", cell, {"step": 5_000, "of": 20_000})  # a rerun said 'running' of the cell it resumed
    assert console.export_text().splitlines()[-1].endswith(": resuming from env step 5,000 of 20,000 (its checkpoint)")
    on_event("submit", cell, {"step": 5_000, "of": 20_000})  # on Ray a resumed cell's line said only 'submitted'
    assert console.export_text().splitlines()[-1].endswith(
        ": submitted to Ray, resuming from env step 5,000 of 20,000 (its checkpoint)")
    on_event("submit", cell, None)
    assert console.export_text().splitlines()[-1].endswith(": submitted to Ray")


@pytest.mark.parametrize("devices, message", [
    ("-1", "--devices must be >= 0 (0: as many as the seeds can use), got -1"), ("3", "--devices 3: ")])
def test_a_studys_devices_are_checked_before_anything_is_written(tmp_path, capsys, devices, message):
    """Each cell failed with it, and the study exited 3 with a report of FAILED cells; `train` refuses the same
    --devices in one line."""
    with pytest.raises(SystemExit) as exc:
        main(["study", str(_spec_file(tmp_path)), "--devices", devices, "--out", str(tmp_path / "s")])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {message}") and err.count("\n") == 1, err
    assert not (tmp_path / "s").exists()


def test_the_start_line_says_what_a_rounded_budget_trains():
    """The line said "1 env steps per task" of a study that trained 1,000; a rerun skipping finished cells does not
    warn of the rounding again, so the line is where it shows."""
    from mtdqn.config import TrainConfig
    from mtdqn.studies.runner import budget_text

    cfg = TrainConfig(tasks=("CartPole-v1",), steps=1, log_every=1000)
    assert budget_text(1, [cfg]) == "1 env step (1,000 trained: whole logging windows)"
    assert budget_text(2000, [dataclasses.replace(cfg, steps=2000)]) == "2,000 env steps"
    two = [dataclasses.replace(cfg, steps=1500), dataclasses.replace(cfg, steps=1500, log_every=500)]
    assert budget_text(1500, two) == "1,500 env steps (1,500–2,000 trained: whole logging windows)"


def test_a_ray_studys_devices_beyond_its_seeds_are_refused_here():
    """On Ray this process's devices are not the workers', but more devices than seeds is no layout anywhere: it
    reached every cell as a failure."""
    from mtdqn.studies.cell import check_devices

    with pytest.raises(ConfigError, match=r"^--devices 3: more devices than seeds \(2\)$"):
        check_devices(2, 3, local=False)
    check_devices(2, 2, local=False)  # its workers' devices are theirs to check


def test_a_studys_task_names_are_stripped_as_its_runs_name_them():
    """" Acrobot-v1" stayed in the spec (and its thresholds' keys) while each run named the task "Acrobot-v1"."""
    from mtdqn.studies import build_spec

    spec = build_spec({"tasks": ["CartPole-v1", " Acrobot-v1 "], "steps": 1000, "seeds": 1,
                       "variants": {"shared": {"sharing": "shared"}},
                       "thresholds": {" Acrobot-v1 ": -100}}, "s.toml", "s")  # the keys too: spaced, as before
    assert spec.tasks == ("CartPole-v1", "Acrobot-v1")
    assert {c.config.tasks for c in cell_configs(spec)} == {("CartPole-v1", "Acrobot-v1")}


def test_a_seed_beyond_a_keys_range_is_refused_before_anything_is_written():
    """seed = 10^20 passed the study's check, made the folder, and failed every cell with JAX's OverflowError
    (exit 3, FAILED cells); the train check then named it as the tasks'."""
    from mtdqn.config import MAX_SEED
    from mtdqn.studies import build_spec

    table = {"tasks": ["CartPole-v1"], "steps": 6000, "seeds": 1, "variants": {"shared": {"sharing": "shared"}}}
    with pytest.raises(ConfigError, match=rf"^s.toml: seed must be in \[0, {MAX_SEED:,}\], got {10**20}$"):
        build_spec({**table, "seed": 10**20}, "s.toml", "s")
    assert build_spec({**table, "seed": MAX_SEED}, "s.toml", "s").seed == MAX_SEED


def test_a_finished_cell_of_a_tasks_earlier_environment_is_refused_naming_it(tmp_path):
    """A finished Asterix-MinAtar cell whose summary holds the config hash its code wrote (before the game's
    revision was part of it): the same config, another game.  The study refuses to count it, naming the task and
    the change (the generic "config hash ..." line said neither)."""
    from mtdqn.config import TrainConfig, config_to_dict
    from mtdqn.studies.cell import CellConfig

    cfg = TrainConfig(tasks=("Breakout-MinAtar", "Asterix-MinAtar"))
    cell = CellConfig("shared", cfg, {})
    old_hash = "0123456789abcdef"
    (tmp_path / "summary.json").write_text(json.dumps({"status": "ok", "variant": "shared", "config_hash": old_hash}))
    (tmp_path / "config.json").write_text(json.dumps({"config": config_to_dict(cfg), "config_hash": old_hash,
                                                      "options": {}}))
    with pytest.raises(ConfigError, match=r"made with a different setup \(another environment of Asterix-MinAtar "
                                          r"\(MinAtar's spawn since 2026-12-07"):
        cell_status(cell, tmp_path)
