"""The transfer study: a pretraining cell, held-out cells started from it, the transfer table from the stored
evaluations, the ordinary report, and a re-run that trains nothing again.  Tiny budgets: mechanics only."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import jax
import numpy as np
import pandas as pd
import pytest
from synthetic_study import REPS

import mtdqn
from mtdqn.analysis import build_report
from mtdqn.errors import ConfigError
from mtdqn.runoptions import RunOptions
from mtdqn.studies.transfer import TransferSpec, held_out_spec, run_transfer_study

SPEC = TransferSpec(
    name="t", pretrain_tasks=("Acrobot-v1",), target="CartPole-v1", steps=800, seeds=2,
    run_options=RunOptions(eval_every=400, eval_episodes=2, keep_best=True), unfreeze_at=400, lora_rank=2,
    options={"log_every": 400, "buffer_size": 256, "learning_starts": 100, "batch_size": 16, "hidden": (16,),
             "adapter_width": 8, "lr_schedule": "constant"},
    variants=("scratch", "frozen", "lora"),
)


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    """SPEC run once, report included.  The report's bootstrap intervals take REPS resamples, as the report's
    own tests do (tests/synthetic_study.py), not 2,000: no interval of it is read here, and its 2,000 took
    ~4 s of the fixture's CPU."""
    out = tmp_path_factory.mktemp("transfer")
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setattr("mtdqn.analysis.build_report", partial(build_report, reps=REPS))
        run_transfer_study(SPEC, out, progress=False)
    return out


@pytest.mark.slow  # trains the study
def test_cells_start_from_the_pretraining_cell(study):
    assert json.loads((study / "pretrain" / "summary.json").read_text())["status"] == "ok"
    record = json.loads((study / "study.json").read_text())
    assert record["reference"] == "scratch" and record["variants"] == ["scratch", "frozen", "lora"]
    pre, frozen = mtdqn.load_agent(study / "pretrain"), mtdqn.load_agent(study / "cells" / "frozen")
    for a, b in zip(jax.tree.leaves(pre.params["torso"]), jax.tree.leaves(frozen.params["torso"])):
        np.testing.assert_array_equal(np.asarray(a).view(np.uint8), np.asarray(b).view(np.uint8))
    assert (study / "report" / "report.html").is_file()
    kept = json.loads((study / "pretrain" / "summary.json").read_text())["keep_best"]["best_step"]
    assert set(kept) == {"0", "1"} and set(kept.values()) <= {400, 800}  # an evaluation's step, the last one too
    assert json.loads((study / "transfer.json").read_text())["grafted_steps"] == kept
    assert "Grafted trunk: per seed, the pretraining's evaluation with the highest sum" in (
        study / "transfer.md").read_text()
    scratch = json.loads((study / "cells" / "scratch" / "config.json").read_text())["config"]
    assert "finetune" not in scratch and scratch["network"]["hidden"] == [16]  # the same architecture


@pytest.mark.slow  # trains the study
def test_transfer_table_is_computed_from_the_stored_evaluations(study):
    table = json.loads((study / "transfer.json").read_text())["variants"]
    for variant in SPEC.variants:
        evals = pd.read_parquet(study / "cells" / variant / "evals.parquet")
        summary = json.loads((study / "cells" / variant / "summary.json").read_text())
        for s, seed in enumerate(summary["seeds"]):
            mine = evals[evals["seed"] == seed].sort_values("step")
            steps, ret = mine["step"].to_numpy(float), mine["return_mean"].to_numpy(float)
            area = ((ret[1:] + ret[:-1]) / 2 * np.diff(steps)).sum() / (steps[-1] - steps[0])
            row = table[variant]
            assert row["jumpstart"]["per_seed"][str(seed)] == pytest.approx(ret[0])  # step 400, every variant
            assert row["auc"]["per_seed"][str(seed)] == pytest.approx(area)
            assert row["final"]["per_seed"][str(seed)] == pytest.approx(summary["final_score"]["CartPole-v1"][s])
        values = list(row["final"]["per_seed"].values())
        assert row["final"]["mean"] == pytest.approx(np.mean(values)) and row["final"]["n"] == 2
    diffs = json.loads((study / "transfer.json").read_text())["differences"]
    assert set(diffs) == {"frozen", "lora"}  # every variant against the first, scratch
    for variant in diffs:
        for metric in ("jumpstart", "auc", "final", "final_discounted"):
            want = table[variant][metric]["mean"] - table["scratch"][metric]["mean"]
            assert diffs[variant][metric]["mean"] == pytest.approx(want)
    assert (study / "transfer.md").read_text().count("| frozen | 2 |") == 2  # the table and the differences


def test_differences_from_the_reference_have_intervals_from_five_seeds():
    from mtdqn.analysis.transfer import METRICS, differences

    def row(values):
        return {m: {"per_seed": dict(enumerate(values))} for m in METRICS}

    table = {"scratch": row([-90.0, -85, -95, -88, -92]), "frozen": row([-150.0, -140, -160, -155, -145]),
             "lora": row([-89.0, -86, -94, -90, -91]), "failed": None}
    diffs = differences(table, "Acrobot-v1")
    assert set(diffs) == {"frozen", "lora"}
    frozen, lora = diffs["frozen"]["final"], diffs["lora"]["final"]
    assert frozen["mean"] == pytest.approx(-60.0) and frozen["lo"] < -60 < frozen["hi"] < 0  # clearly worse
    assert lora["lo"] < 0 < lora["hi"] and frozen["n"] == 5  # no clear difference


@pytest.mark.slow  # trains the study
def test_a_rerun_trains_nothing_again(study):
    cells = [study / "pretrain", *(study / "cells" / v for v in SPEC.variants)]
    before = [(c / "summary.json").stat().st_mtime_ns for c in cells]
    run_transfer_study(SPEC, study, progress=False, report=False)
    assert [(c / "summary.json").stat().st_mtime_ns for c in cells] == before


@pytest.mark.parametrize("change, message", [
    ({"variants": ("scratch", "warm")}, "unknown variant warm"),
    ({"target": "Acrobot-v1"}, "is held out, so it cannot also be pretrained on"),
    ({"unfreeze_at": 800}, "must be inside the 800 steps"),
])
def test_bad_transfer_specs(change, message):
    import dataclasses

    with pytest.raises(ConfigError, match=message):
        held_out_spec(dataclasses.replace(SPEC, **change))


@pytest.mark.parametrize("argv, message", [
    (["--steps", "0"], "steps: expected a positive integer, got 0"),
    (["--seeds", "0"], "seeds: expected a positive integer, got 0"),
    (["--ray-address", "local"], "drop --ray-address"),
])
@pytest.mark.parametrize("preset", ["transfer", "deramo-transfer"])
def test_bad_transfer_command_lines_write_nothing(tmp_path, capsys, argv, message, preset):
    from mtdqn.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["study", preset, "--out", str(tmp_path / "s"), "--progress", "False", *argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and len(err) == 1 and message in err[0], err
    assert not (tmp_path / "s").exists()


def test_deramo_transfer_is_the_papers_transfer_experiment_on_the_deramo_protocol(tmp_path):
    """D'Eramo et al. 2020: pretrain on the other four tasks, Acrobot with the trunk frozen, unfrozen after
    10 of 50 epochs, or from scratch; every cell with the `deramo` preset's settings."""
    from mtdqn.studies.presets import deramo_transfer_preset
    from mtdqn.studies.spec import variant_config
    from mtdqn.studies.transfer import transfer_cells

    spec = deramo_transfer_preset()
    assert spec.target == "Acrobot-v1:max_steps=1000" and spec.pretrain_tasks == (  # the paper's horizons
        "CartPole-v1", "MountainCar-v0:max_steps=1000", "CarOnHill-v0:gamma=0.95",
        "InvertedPendulumDiscrete-v0:gamma=0.95")
    # "unfreeze 10": epochs count from 1 and epoch 10 learns with the trunk, so it trains after 9 epochs
    assert (spec.steps, spec.seeds, spec.run_options.eval_every, spec.unfreeze_at) == (50_000, 10, 1_000, 9_000)
    assert spec.run_options.keep_best  # the pretraining's best evaluation is grafted, as --save-shared keeps it
    assert {"scratch", "frozen", "unfreeze-at-k"} <= set(spec.variants)
    pre, cells = transfer_cells(spec, tmp_path)
    deramo = variant_config(mtdqn.studies.resolve_spec("deramo"), "shared")
    for cfg in (pre.config, *(c.config for c in cells)):
        assert cfg.dqn == deramo.dqn and cfg.network.hidden == (80, 80) and cfg.network.adapter_width == 80
    assert pre.config.tasks == spec.pretrain_tasks and pre.config.network == deramo.network
    assert pre.run_options.keep_best and not any(c.run_options.keep_best for c in cells)
    assert deramo.network.init == "deramo"
    assert set(pre.thresholds) == set(spec.pretrain_tasks)  # the task options do not hide a task's threshold
    freeze = {c.variant: c.config.finetune.freeze for c in cells}
    assert freeze["frozen"] == "trunk" and freeze["unfreeze-at-k"] == "trunk-until:9000"
    assert cells[[c.variant for c in cells].index("scratch")].config.finetune.source == ""
    small = deramo_transfer_preset(seeds=2, steps=5_000)  # --steps keeps the shape: after 9 of 50 epochs
    assert (small.steps, small.seeds, small.run_options.eval_every, small.unfreeze_at) == (5_000, 2, 250, 900)


@pytest.mark.slow
def test_a_pretraining_finished_without_keep_best_is_not_taken_for_one(study, tmp_path):
    import shutil

    from mtdqn.studies.runner import cell_status
    from mtdqn.studies.transfer import transfer_cells

    pre_cell, _ = transfer_cells(SPEC, study)
    assert cell_status(pre_cell, study / "pretrain") == "done"
    old = tmp_path / "pretrain"
    shutil.copytree(study / "pretrain", old)
    record = json.loads((old / "config.json").read_text())
    del record["options"]["keep_best"]  # as a pretraining made before keep_best
    (old / "config.json").write_text(json.dumps(record))
    with pytest.raises(ConfigError, match="keep_best: stored False, now True"):
        cell_status(pre_cell, old)


def test_a_finished_cell_grafted_from_other_weights_than_its_source_now_holds_is_refused(tmp_path):
    """A pretraining trained again (e.g. now with --keep-best) changes the weights a finished held-out cell
    started from: that cell is no longer a result of this study, and the study says so instead of reusing it."""
    from mtdqn.config import FinetuneConfig, TrainConfig
    from mtdqn.studies.cell import CellConfig, cell_status

    source, cell_dir = tmp_path / "pretrain", tmp_path / "cells" / "frozen"
    (source / "checkpoints").mkdir(parents=True)
    cell_dir.mkdir(parents=True)
    write = lambda path, obj: path.write_text(json.dumps(obj))  # noqa: E731
    write(source / "checkpoints" / "latest.json", {"files": {"a": [1, "00ff"]}})
    cfg = TrainConfig(tasks=("Acrobot-v1",), finetune=FinetuneConfig(source=str(source), freeze="trunk"))
    cell = CellConfig("frozen", cfg, {})
    write(cell_dir / "summary.json", {"status": "ok", "config_hash": cell.config_hash, "thresholds": {},
                                      "eval_episodes": 10, "variant": "frozen", "eval_every": 0})
    from mtdqn.rundir import RunDir

    write(cell_dir / "start.json", {"source_checkpoint": RunDir(source).checkpoint_id()})
    assert cell_status(cell, cell_dir) == "done"
    write(source / "checkpoints" / "latest.json", {"files": {"a": [1, "11ee"]}})  # the source trained again
    with pytest.raises(ConfigError, match="grafted from other weights"):
        cell_status(cell, cell_dir)
    # killed, not finished: it resumed on the old trunk, reported beside cells grafted from the new one
    (cell_dir / "summary.json").unlink()
    (cell_dir / "checkpoints").mkdir()
    write(cell_dir / "checkpoints" / "latest.json", {"iteration": 10})
    write(cell_dir / "config.json", {"config_hash": cell.config_hash, **cell.run_options.record()})
    assert cell_status(cell, cell_dir) == "fresh"
    write(cell_dir / "start.json", {"source_checkpoint": RunDir(source).checkpoint_id()})  # started from these
    assert cell_status(cell, cell_dir) == "resume"


def test_a_transfer_preset_budget_without_updates_names_the_least_budget_from_which_all_have_them(tmp_path, capsys):
    """The preset's logging window follows --steps: 4,566 was told ">= 4,789" (refused again: its own window
    is another) and to lower --learning-starts (which a preset does not take).  Now the refusal names the
    least budget from which every budget updates, before anything is written."""
    from mtdqn.cli import main
    from mtdqn.studies.presets import check_transfer_budget

    with pytest.raises(SystemExit) as exc:
        main(["study", "transfer", "--steps", "4566", "--out", str(tmp_path / "s"), "--progress", "False"])
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and len(err) == 1 and err[0].endswith("use --steps >= 5,001"), err
    assert "learning-starts" not in err[0] and not (tmp_path / "s").exists()
    refused: dict[str, list[int]] = {"transfer": [], "deramo-transfer": []}
    for name, least in (("transfer", 5001), ("deramo-transfer", 101)):  # learning starts after 5,000 or 100 steps
        for steps in range(1, least + 200):
            try:
                check_transfer_budget(name, 1, steps)
            except ConfigError as exc:
                assert str(exc).endswith(f"use --steps >= {least:,}"), exc
                refused[name].append(steps)
        assert max(refused[name]) == least - 1  # every budget from the one named makes an update
    assert 4804 in refused["transfer"] and 4801 not in refused["transfer"]  # its windows: no threshold below 5,001


@pytest.mark.parametrize("preset", ["transfer", "groups"])
def test_a_preset_budget_its_windows_round_is_warned_before_anything_is_written(tmp_path, preset):
    """--steps 5,003 trained 5,208 steps per task (whole windows of 248) with nothing said, as a study or
    `mtdqn train` says it; the advice is what a preset takes: --steps a multiple of its num_envs."""
    import warnings

    from mtdqn.errors import RoundedScheduleWarning
    from mtdqn.studies.groups import run_groups_study
    from mtdqn.studies.presets import groups_preset, transfer_preset

    run = run_transfer_study if preset == "transfer" else run_groups_study
    spec = (transfer_preset if preset == "transfer" else partial(groups_preset, None))(1, 5003)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RoundedScheduleWarning)
        with pytest.raises(RoundedScheduleWarning,
                           match=r"steps 5,003 trains 5,208 .* a multiple of num_envs \(4\): the preset then picks"):
            run(spec, tmp_path / "s", progress=False)
    assert not (tmp_path / "s").exists()


@pytest.mark.slow  # trains the study
def test_mtdqn_report_rebuilds_a_transfer_studys_transfer_md(study, tmp_path, monkeypatch, capsys):
    """`mtdqn report STUDY` rebuilt the held-out cells' report but not transfer.md, which `study transfer`
    writes (a groups study's groups.md: test_groups_study)."""
    import shutil

    import mtdqn.studies.runner
    from mtdqn.cli import main

    copy = tmp_path / "study"
    shutil.copytree(study, copy)
    kept = (copy / "transfer.md").read_text()
    (copy / "transfer.md").unlink()
    (copy / "transfer.json").unlink()
    monkeypatch.setattr(mtdqn.studies.runner, "build", lambda out: out / "report" / "report.html")  # tested above
    capsys.readouterr()
    main(["report", str(copy)])
    assert (copy / "transfer.md").read_text() == kept and (copy / "transfer.json").is_file()
    assert capsys.readouterr().out.splitlines() == [f"transfer table: {copy / 'transfer.md'}",  # as `study` says
                                                    f"report: {copy / 'report' / 'report.html'}"]
