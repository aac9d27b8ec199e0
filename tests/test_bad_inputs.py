"""Bad inputs through the CLI: one ``error:`` line, a non-zero exit, no traceback, nothing half-written.

Most cases call ``mtdqn.cli.main`` in-process (fast: every one fails in
validation, before anything is compiled); a few run the real command in a
subprocess to check what a user's terminal shows.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from collections import namedtuple
from pathlib import Path

import pandas as pd
import pytest
from helpers import TINY, TINY_ARGV, fake_run

import mtdqn
from mtdqn.cli import main
from mtdqn.cli.entry import _check_before_jax, _parse
from mtdqn.errors import ConfigError
from mtdqn.io import prepare_out_dir
from mtdqn.rundir import RUN_FOLDERS_OWN, RunDir

ROOT = Path(__file__).resolve().parent.parent

# (id, argv after `mtdqn train`, a piece of the expected message)
TRAIN_CASES = [
    ("unknown-task", ["--tasks", "CartPol-v1"], "did you mean 'CartPole-v1'"),
    ("unknown-task-car-on-hill", ["--tasks", "CarOnHil-v0"], "did you mean 'CarOnHill-v0'"),
    ("unknown-task-pendulum", ["--tasks", "InvertedPendulum-v0"], "did you mean 'InvertedPendulumDiscrete-v0'"),
    ("task-option-not-a-number", ["--tasks", "CartPole-v1:reward_scale=abc"], "must be a number"),
    ("task-option-unknown", ["--tasks", "CartPole-v1:foo=1"], "bad task option 'foo=1'"),
    ("task-option-typo", ["--tasks", "MiniGrid-DoorKey-6x6-v0:max_step=10"], "did you mean max_steps? valid:"),
    ("task-option-negative", ["--tasks", "CartPole-v1:reward_scale=-1"], "must be finite and > 0"),
    ("task-option-beyond-float32", ["--tasks", "CartPole-v1:reward_scale=1e40"],  # trained, then diverged
     "task option reward_scale in 'CartPole-v1:reward_scale=1e40': 1e+40 is outside float32's range"),
    ("task-gamma-rounds-to-zero", ["--tasks", "CartPole-v1:gamma=1e-50"],  # trained with a discount of 0
     "task option gamma in 'CartPole-v1:gamma=1e-50': 1e-50 is outside float32's range"),
    ("task-listed-twice", ["--tasks", "CartPole-v1", "CartPole-v1"], "listed twice"),
    ("no-tasks", ["--tasks"], "at least one task"),
    ("vector-and-image", ["--tasks", "CartPole-v1", "Breakout-MinAtar"], "cannot mix vector tasks"),
    ("vector-and-minigrid", ["--tasks", "MiniGrid-LavaGapS7-v0", "CartPole-v1"],
     "cannot mix vector tasks (CartPole-v1) and image tasks (MiniGrid-LavaGapS7-v0) in one agent"),
    ("unknown-minigrid", ["--tasks", "MiniGrid-DoorKey-8x8-v0"], "did you mean 'MiniGrid-DoorKey-6x6-v0'?"),
    ("minigrid-and-minatar", ["--tasks", "MiniGrid-DoorKey-6x6-v0", "Breakout-MinAtar"],
     "image tasks in one agent must share their image size (one conv trunk reads them); got "
     "MiniGrid-DoorKey-6x6-v0 7x7x3, Breakout-MinAtar 10x10x"),
    ("minigrid-max-steps-zero", ["--tasks", "MiniGrid-DoorKey-6x6-v0:max_steps=0"], "max_steps in "
     "'MiniGrid-DoorKey-6x6-v0:max_steps=0' must be >= 1"),
    ("max-steps-not-int", ["--tasks", "MiniGrid-LavaGapS7-v0:max_steps=1.5"], "must be a whole number, got '1.5'"),
    ("max-steps-on-caronhill", ["--tasks", "CarOnHill-v0:max_steps=100"],
     "applies to MinAtar games, MiniGrid tasks and the classic tasks CartPole-v1, Acrobot-v1, MountainCar-v0 only"),
    ("gym-minigrid-dict-obs", ["--tasks", "gym:MiniGrid-LavaGapS7-v0"], "Dict observation space; only Box is "
     "supported; add the task option obs=image"),
    ("obs-image-on-jax-task", ["--tasks", "MiniGrid-LavaGapS7-v0:obs=image"], "only obs=image, and only for gym: tasks"),
    ("obs-not-image", ["--tasks", "gym:MiniGrid-LavaGapS7-v0:obs=rgb"], "only obs=image"),
    ("max-steps-on-a-gym-task", ["--tasks", "gym:MiniGrid-DoorKey-8x8-v0:obs=image,max_steps=10"],
     "task option max_steps in 'gym:MiniGrid-DoorKey-8x8-v0:obs=image,max_steps=10' is for JAX tasks; a gym: task "
     "keeps its own TimeLimit"),
    ("obs-image-without-image", ["--tasks", "gym:CartPole-v1:obs=image"], "has no dict observation with an 'image'"),
    ("zero-n-step", ["--n-step", "0"], "--n-step must be > 0"),
    ("huge-n-step", ["--n-step", "500"], "--n-step 500 is above 100: each window step is unrolled"),
    ("zero-steps", ["--steps", "0"], "--steps must be > 0"),
    ("negative-steps", ["--steps", "-5"], "--steps must be > 0"),
    ("zero-seeds", ["--seeds", "0"], "--seeds must be > 0"),
    ("zero-envs", ["--num-envs", "0"], "--num-envs must be > 0"),
    ("zero-lr", ["--lr", "0"], "--lr must be a finite number > 0"),
    ("negative-lr", ["--lr", "-1"], "--lr must be a finite number > 0"),
    ("nan-lr", ["--lr", "nan"], "--lr must be a finite number > 0"),
    # NaN passed `< 0`: the run trained, then every command refused it (its records' NaN never equals itself)
    ("nan-max-grad-norm", ["--max-grad-norm", "nan"], "--max-grad-norm must be a finite number >= 0 (0: off), got nan"),
    ("nan-weight-decay", ["--weight-decay", "nan"], "--weight-decay must be a finite number >= 0 (0: off), got nan"),
    ("huge-seed", ["--seed", "100000000000000000000"], "--seed must be in [0, 4,611,686,018,427,387,904], got 1"),
    # all at once: 10^8 ended in an out-of-memory traceback, 10^12 aborted XLA after the run had trained
    ("huge-eval-episodes", ["--eval-episodes", "100000000"], "--eval-episodes 100,000,000 is above 100,000"),
    ("huge-test-episodes", ["--test-episodes", "100001"], "--test-episodes 100,001 is above 100,000"),
    ("inf-lr", ["--lr", "inf"], "--lr must be a finite number > 0"),
    ("gamma-zero", ["--gamma", "0"], "--gamma must be in (0, 1], got 0.0"),
    ("gamma-above-one", ["--gamma", "1.5"], "--gamma must be in (0, 1], got 1.5"),
    ("gamma-negative", ["--gamma", "-0.5"], "--gamma must be in (0, 1]"),
    ("gamma-nan", ["--gamma", "nan"], "--gamma must be in (0, 1]"),
    ("task-gamma-above-one", ["--tasks", "CarOnHill-v0:gamma=1.01"], "task option gamma in 'CarOnHill-v0:gamma=1.01' "
     "must be in (0, 1]"),
    ("task-gamma-zero", ["--tasks", "CarOnHill-v0:gamma=0"],
     "task option gamma in 'CarOnHill-v0:gamma=0' must be in (0, 1], got 0"),
    ("weights-count", ["--task-weights", "1", "2", "3"], "3 values for 2 tasks"),
    ("weights-negative", ["--task-weights", "1", "-1"], "must be finite, >= 0"),
    ("sharing-unknown", ["--sharing", "bogus"], "unknown --sharing 'bogus'"),
    ("sharing-typo", ["--sharing", "sharde"], "unknown --sharing 'sharde'; did you mean 'shared'? valid:"),
    ("sharing-partial-range", ["--sharing", "partial:7"], "partial:K needs 0 <= K"),
    ("sharing-partial-not-int", ["--sharing", "partial:x"], "needs an integer K"),
    ("sharing-moe-zero", ["--sharing", "moe:0"], "moe:K needs K >= 2 experts, got 0"),
    ("sharing-moore-one", ["--sharing", "moore:1"], "moore:K needs K >= 2 experts, got 1"),
    ("strategy-unknown", ["--strategy", "nope"], "unknown strategy 'nope'"),
    ("strategy-args", ["--strategy-args", "foo=1"], "unknown option 'foo=1'"),
    ("strategy-arg-nan", ["--strategy", "cagrad", "--strategy-args", "c=nan"],
     "strategy cagrad: option c must be a finite number, got 'nan'"),
    ("strategy-arg-inf", ["--strategy", "uncertainty", "--strategy-args", "clip=inf"],
     "strategy uncertainty: option clip must be a finite number, got 'inf'"),
    ("strategy-arg-twice", ["--strategy", "cagrad", "--strategy-args", "c=0.1,c=0.2"],
     "strategy cagrad: option c is given twice in 'c=0.1,c=0.2'; give it once"),
    ("max-steps-beyond-int32", ["--tasks", "MiniGrid-LavaGapS7-v0:max_steps=100000000000"],
     "task option max_steps in 'MiniGrid-LavaGapS7-v0:max_steps=100000000000' must be at most 2,147,483,646"),
    ("a-task-and-itself-with-a-colon", ["--tasks", "CartPole-v1,CartPole-v1:"], "a task is listed twice"),
    ("task-options-reordered", ["--tasks", "CartPole-v1:gamma=0.9,reward_scale=2",
                                "CartPole-v1:reward_scale=2,gamma=0.9"], "a task is listed twice"),
    ("task-option-twice", ["--tasks", "Breakout-MinAtar:sticky=0.1,sticky=0.2"],
     "task option sticky is given twice in 'Breakout-MinAtar:sticky=0.1,sticky=0.2'"),
    ("batch-over-buffer", ["--batch-size", "1000", "--buffer-size", "100"], "exceeds --buffer-size"),
    ("eps-out-of-range", ["--eps-start", "2"], "--eps-start must be in [0, 1]"),
    ("weight-decay-with-adam", ["--weight-decay", "0.01"], "--weight-decay needs --optimizer adamw or sgd"),
    ("strategy-without-sharing", ["--sharing", "independent", "--strategy", "cagrad"],
     "--strategy cagrad with --sharing independent changes nothing: strategies combine, and affinity measures, "
     "the tasks' gradients on shared parameters"),
    ("affinity-without-sharing", ["--sharing", "independent", "--affinity-every", "100"],
     "--affinity-every 100 with --sharing independent changes nothing"),
    ("lr-beyond-float32", ["--lr", "1e40"], "--lr 1e+40 is outside float32's range, in which training computes"),
    ("weights-round-to-zero", ["--tasks", "CartPole-v1,Acrobot-v1", "--task-weights", "1e-50", "1e-50"],
     "--task-weights 1e-50 is outside float32's range"),
    ("strategy-arg-beyond-float32", ["--tasks", "CartPole-v1,Acrobot-v1", "--strategy", "cagrad",
                                     "--strategy-args", "c=1e40"], "strategy cagrad: option c 1e+40 is outside"),
    ("strategy-with-partial-0", ["--sharing", "partial:0", "--strategy", "pcgrad"],
     "--strategy pcgrad with --sharing partial:0 changes nothing"),
    ("strategy-with-partial-plus-0", ["--sharing", "partial:+0", "--strategy", "pcgrad"],  # K as int() reads it
     "--strategy pcgrad with --sharing partial:+0 changes nothing"),
    ("affinity-with-partial-0", ["--sharing", "partial:0", "--affinity-every", "10"],
     "--affinity-every 10 with --sharing partial:0 changes nothing"),
    ("dropout-one", ["--dropout", "1"], "--dropout must be in [0, 1), got 1.0"),
    ("dropout-negative", ["--dropout", "-0.1"], "--dropout must be in [0, 1)"),
    ("dropout-nan", ["--dropout", "nan"], "--dropout must be in [0, 1)"),
    ("affinity-every-negative", ["--affinity-every", "-1"], "--affinity-every must be >= 0 (0: never), got -1"),
    ("hidden-zero", ["--hidden", "0"], "--hidden must be positive"),
    ("conv-channels-zero", ["--tasks", "Breakout-MinAtar", "--conv-channels", "0", "16"],
     "--conv-channels must be positive"),
    ("no-updates", ["--steps", "5000", "--log-every", "5000"],
     "no update would run: --steps 5,000 ends before the first update, after env step 5,004 per task "
     "(--learning-starts 5,000); use --steps >= 5,001 (it trains 10,000: whole --log-every windows of 5,000) or "
     "lower --learning-starts"),
    ("no-updates-after-rounding", ["--steps", "900", "--log-every", "1000", "--learning-starts", "1000"],
     "--steps 900 (1,000 after rounding up to whole --log-every windows) ends before the first update"),
    ("steps-beyond-counters", ["--steps", "100000000000"], "the step counters hold at most"),
    ("train-every-not-a-multiple", ["--num-envs", "4", "--train-every", "10"], "use --train-every 8"),
    ("polyak-every-n", ["--target-update-every", "1000", "--tau", "0.005"], "leaves the target far behind"),
    ("checkpoint-every-negative", ["--checkpoint-every", "-1"], "--checkpoint-every must be >= 0, got -1"),
    ("eval-every-negative", ["--eval-every", "-5"], "--eval-every must be >= 0, got -5"),
    ("eval-episodes-zero", ["--eval-episodes", "0"], "--eval-episodes must be > 0"),
    ("steps-not-a-number", ["--steps", "abc"], "error: --steps: expected an integer, got 'abc'"),
    ("lr-not-a-number", ["--lr", "fast"], "error: --lr: expected a number, got 'fast'"),
    ("optimizer-unknown", ["--optimizer", "rmsprop"], "Expected one of ('adam', 'adamw', 'sgd')"),
    ("unknown-flag", ["--bogus-flag", "1"], "Unrecognized options: --bogus-flag"),
]


def _one_error_line(capsys, argv: list[str], code: int = 2) -> str:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == code
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize("argv", [["tune", "classic-shared", "--n-trials", "abc"],
                                  ["distill", "--teachers", "a", "--out", "x", "--teacher-seed", "abc"],
                                  ["finetune", "--from", "a", "--tasks", "CartPole-v1", "--lora", "abc"]],
                         ids=["tune-n-trials", "distill-teacher-seed", "finetune-lora"])
def test_an_optional_number_that_is_no_number_is_one_line(capsys, argv):
    """A flag taking an int or nothing (``int | None``) gave tyro's message: a first line, then one line per
    type it tried.  Now the line a plain int flag gives."""
    line = _one_error_line(capsys, argv)
    assert line == f"error: {argv[-2]}: expected an integer, got 'abc'", line


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


@pytest.mark.parametrize("argv, expected", [c[1:] for c in TRAIN_CASES], ids=[c[0] for c in TRAIN_CASES])
def test_bad_train_input(tmp_path, capsys, argv, expected):
    out = tmp_path / "out"
    line = _one_error_line(capsys, ["train", *argv, "--out", str(out), "--progress", "False"])
    assert expected in line
    assert not out.exists()


def test_seeds_beyond_the_memory_are_the_machines_limit_exit_1(tmp_path, capsys):
    """A valid run this machine cannot hold: one line, exit 1 (an environment problem, as a full disk), not 2."""
    out = tmp_path / "out"
    argv = ["train", "--seeds", "100000000", "--steps", "1000", "--learning-starts", "100", "--out", str(out),
            "--progress", "False"]
    assert "GB available: use fewer seeds" in _one_error_line(capsys, argv, code=1)
    assert not out.exists()


@pytest.mark.parametrize("argv", [["--eval-episodes", "0"], ["--devices", "99"], ["--patience", "3"],
                                  ["--steps", "800", "--log-every", "800", "--learning-starts", "500", "--strategy",
                                   "cagrad", "--strategy-args", "c=-1"],
                                  ["--steps", "800", "--log-every", "800", "--learning-starts", "500", "--sharing",
                                   "moe:1"]])
def test_a_refused_run_option_prints_its_error_line_alone(tmp_path, capsys, argv):
    """Run options are checked before the agent's one-line description is printed: a refused run's output is
    its error line, nothing on stdout (the description came first, then the error); a budget's warning waits
    for the sharing's and the strategy's checks (it came before their error)."""
    with pytest.raises(SystemExit) as exc:
        main(["train", *argv, "--out", str(tmp_path / "out"), "--progress", "False"])
    captured = capsys.readouterr()
    assert exc.value.code == 2 and captured.out == "" and captured.err.count("\n") == 1, captured


def test_an_unknown_minigrid_id_gets_the_host_id_only_where_the_package_has_it(tmp_path, capsys, monkeypatch):
    """The host-path hint names a `gym:` id only where the `minigrid` package has it: DoorKey-8x8 is the
    package's; 'MiniGrid-Lavagaps7-v0' is in neither, so its line suggests our MiniGrid-LavaGapS7-v0 alone (it
    once offered gym:...Lavagaps7); without the package, the line says how to get it."""
    pytest.importorskip("minigrid")
    out = tmp_path / "out"

    def line(task: str) -> str:
        return _one_error_line(capsys, ["train", "--tasks", task, "--out", str(out)])

    assert ("did you mean 'MiniGrid-DoorKey-6x6-v0'? (any MiniGrid env of the `minigrid` package: "
            "'gym:MiniGrid-DoorKey-8x8-v0:obs=image', on the host)") in line("MiniGrid-DoorKey-8x8-v0")
    miscased = line("MiniGrid-Lavagaps7-v0")
    assert "did you mean 'MiniGrid-LavaGapS7-v0'?" in miscased and "gym:" not in miscased
    monkeypatch.setitem(sys.modules, "minigrid", None)  # import minigrid now raises ImportError
    assert "as 'gym:<id>:obs=image': pip install minigrid)" in line("MiniGrid-DoorKey-8x8-v0")
    assert not out.exists()


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    """A finished-looking run, a run without checkpoint, a corrupt one and a folder that is no run."""
    root = tmp_path_factory.mktemp("dirs")
    fake_run(root / "run")
    (root / "no_ckpt").mkdir()
    (root / "no_ckpt" / "config.json").write_text((root / "run" / "config.json").read_text())
    fake_run(root / "corrupt")
    latest = root / "corrupt" / "checkpoints" / "latest.json"
    latest.write_text(latest.read_text()[:40])
    (root / "not_a_run").mkdir()
    (root / "not_a_run" / "notes.txt").write_text("mine")
    (root / "bad.toml").write_text('name = "x"\n[grid\nfoo = ')
    return root


DIR_CASES = [
    ("evaluate-missing-dir", ["evaluate", "{root}/missing"], "is not a run directory"),
    ("evaluate-not-a-run", ["evaluate", "{root}/not_a_run"], "is not a run directory"),
    ("evaluate-corrupt-checkpoint", ["evaluate", "{root}/corrupt"], "is corrupt (not valid JSON)"),
    ("evaluate-no-checkpoint", ["evaluate", "{root}/no_ckpt"], "no checkpoint in"),
    ("evaluate-zero-episodes", ["evaluate", "{root}/run", "--episodes", "0"], "--episodes must be > 0, got 0"),
    ("evaluate-huge-episodes", ["evaluate", "{root}/run", "--episodes", "100000000"],
     "--episodes 100,000,000 is above 100,000"),  # a 30-line out-of-memory traceback
    ("evaluate-epsilon-above-1", ["evaluate", "{root}/run", "--epsilon", "2"], "--epsilon must be in [0, 1], got 2.0"),
    ("resume-no-checkpoint", ["train", "--resume", "{root}/no_ckpt"],
     "no_ckpt stopped before its first checkpoint: there is nothing to resume; train it again with the same options "
     "and --force True"),
    ("resume-corrupt-checkpoint", ["train", "--resume", "{root}/corrupt"], "is corrupt"),
    ("resume-not-a-run", ["train", "--resume", "{root}/not_a_run"], "is not a run directory"),
    ("resume-with-new-options", ["train", "--resume", "{root}/run", "--steps", "10", "--lr", "0.1"],
     "drop --steps, --lr"),
    ("resume-with-dropout", ["train", "--resume", "{root}/run", "--dropout", "0.1"], "drop --dropout"),
    ("existing-run-without-force", ["train", "--out", "{root}/run"], "already holds a run (config.json"),
    ("out-is-a-file", ["train", "--out", "{root}/not_a_run/notes.txt"], "exists and is not a directory"),
    ("out-under-a-file", ["train", "--out", "/dev/null/run"], "cannot write to output directory"),
    ("study-bad-toml", ["study", "{root}/bad.toml", "--out", "{root}/study"], "invalid TOML"),
    ("study-mistyped-preset", ["study", "quik", "--out", "{root}/study"],
     "nor a study file (.toml); did you mean 'quick'?"),
    ("study-no-updates", ["study", "quick", "--seeds", "2", "--steps", "5000", "--out", "{root}/study"],
     "preset quick: steps: no update would run: --steps 5,000 ends before the first update, after env step 5,004 per "
     "task (learning_starts 5,000); use --steps >= 5,001 (it trains 10,000: whole --log-every windows of 5,000)"),
    ("no-command", [], "expected a command: tasks"),
    ("unknown-command", ["fly"], "unknown command 'fly' (commands: tasks, strategies, train"),
]


@pytest.mark.parametrize("argv, expected", [c[1:] for c in DIR_CASES], ids=[c[0] for c in DIR_CASES])
def test_bad_paths_change_nothing(dirs, capsys, argv, expected):
    before = _snapshot(dirs)
    extra = ["--progress", "False"] if argv[:1] == ["train"] else []
    line = _one_error_line(capsys, [a.format(root=dirs) for a in argv] + extra)
    assert expected in line
    assert _snapshot(dirs) == before


def test_full_disk_fails_before_anything_is_written(tmp_path, capsys, monkeypatch):
    import mtdqn.io

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(mtdqn.io.shutil, "disk_usage", lambda path: usage(2**30, 2**30 - 2**16, 2**16))
    out = tmp_path / "out"
    line = _one_error_line(capsys, ["train", "--out", str(out), "--progress", "False"], code=1)  # the machine's
    assert "not enough free disk space" in line and "two checkpoints" in line
    assert not out.exists()


@pytest.mark.slow
def test_write_failure_mid_run_is_one_line(tmp_path, capsys, monkeypatch):
    """A real training run (helpers.TINY, the suite's compiled program) whose disk fills after its first window:
    the second write of metrics.parquet fails, and the user sees one line naming the file, exit code 1."""
    import mtdqn.rundir
    from mtdqn.config import config_to_dict

    real_write, writes = mtdqn.rundir.write_parquet, []

    def fills_up(path, frame):
        if Path(path).name == "metrics.parquet":
            writes.append(len(frame))
            if len(writes) == 2:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        real_write(path, frame)

    monkeypatch.setattr(mtdqn.rundir, "write_parquet", fills_up)
    out = tmp_path / "out"
    line = _one_error_line(capsys, ["train", *TINY_ARGV, "--out", str(out), "--progress", "False"], code=1)
    assert "No space left on device" in line and str(out / "metrics.parquet") in line
    assert writes == [4, 8]  # it failed mid-run: after the first window (2 tasks x 2 seeds rows), at the second
    assert json.loads((out / "config.json").read_text())["config"] == config_to_dict(TINY)  # TINY_ARGV is TINY
    assert len(pd.read_parquet(out / "metrics.parquet")) == 4 and not (out / "summary.json").exists()


def test_filling_disk_stops_before_a_write_fails(tmp_path, monkeypatch):
    import mtdqn.rundir

    monkeypatch.setattr(mtdqn.rundir, "free_bytes", lambda path: 2**20)
    with pytest.raises(OSError, match="disk almost full: 1 MiB free") as exc:
        mtdqn.rundir.RunDir(tmp_path).ensure_space(2**20)
    assert exc.value.errno == errno.ENOSPC
    monkeypatch.setattr(mtdqn.rundir, "free_bytes", lambda path: 2**30)
    mtdqn.rundir.RunDir(tmp_path).ensure_space(2**20)


def test_unwritable_parent(tmp_path, capsys, monkeypatch):
    """A folder the user may not write in: the machine's error (exit 1), one line, nothing made.  Root ignores
    directory permissions (this suite runs as root here, where the test was skipped for good), so there the
    refusal the kernel would give is raised by mkdir itself."""
    parent = tmp_path / "locked"
    parent.mkdir()
    parent.chmod(0o500)
    if os.geteuid() == 0:
        real_mkdir = Path.mkdir

        def refused(self, *args, **kwargs):
            if parent in self.parents:
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(self))
            return real_mkdir(self, *args, **kwargs)

        monkeypatch.setattr(Path, "mkdir", refused)
    try:
        line = _one_error_line(capsys, ["train", "--out", str(parent / "run"), "--progress", "False"], code=1)
        assert line == f"error: cannot write to output directory {parent / 'run'}: Permission denied", line
        assert not (parent / "run").exists()
    finally:
        parent.chmod(0o700)


def test_an_unfinished_run_in_the_way_is_offered_its_resume(tmp_path):
    """A killed run (a checkpoint, no summary.json) rerun with the same --out was told only of --force True; a
    distilled student, which --resume refuses, is told it does not resume; a finished run is offered nothing."""
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "latest.json").write_text("{}")
    (run / "config.json").write_text("{}")
    with pytest.raises(ConfigError, match=f"it is unfinished: `mtdqn train --resume {run}` continues it; pass "):
        RunDir(run).check_new(False)
    (run / "config.json").write_text('{"distill": {}}')
    with pytest.raises(ConfigError, match=r"already holds a run \(config.json, checkpoints\); it is an unfinished "
                                          r"distillation \(a distillation does not resume: start it over\); pass "
                                          r"--force True"):
        RunDir(run).check_new(False)
    (run / "config.json").write_text("{}")
    (run / "summary.json").write_text("{}")
    with pytest.raises(ConfigError, match=r"already holds a run \(config.json, summary.json, checkpoints\); pass "
                                          "--force True"):
        RunDir(run).check_new(False)


def test_a_run_being_trained_is_not_trained_again_beside_it(tmp_path, capsys):
    """A second trainer of one folder (--force over a run still training, or its --resume in another terminal)
    wrote checkpoints and tables over the first's; it is refused in one line and nothing there is touched.
    Within one process the hold is re-entrant (a study's cell is held around its clearing and by its training);
    clearing a held folder keeps the folder the hold lives on."""
    import fcntl

    from mtdqn.io import clear_folder

    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.json").write_text("{}")
    other = os.open(run, os.O_RDONLY)  # another process's hold: an flock on the folder, opened apart
    fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
    try:
        with pytest.raises(ConfigError, match=r"is being written by another process \(a run, a sweep, a study or a "
                                              r"search\); wait for it"):
            with RunDir(run).trained_here():
                pass
        with pytest.raises(SystemExit) as exc:
            main(["train", "--tasks", "CartPole-v1", "--steps", "2000", "--learning-starts", "100", "--out",
                  str(run), "--force", "True", "--progress", "False"])
        assert exc.value.code == 2 and "is being written by another process" in capsys.readouterr().err
        with pytest.raises(SystemExit) as exc:  # its --resume: it said "stopped before its first checkpoint"
            main(["train", "--resume", str(run)])
        assert exc.value.code == 2 and "is being written by another process" in capsys.readouterr().err
        assert sorted(p.name for p in run.iterdir()) == ["checkpoints", "config.json"]  # nothing written there
    finally:
        os.close(other)
    with RunDir(run).trained_here(), RunDir(run).trained_here():  # the other ended; one process, twice
        clear_folder(run)
        assert run.is_dir() and not any(run.iterdir())


def test_an_unwritable_place_is_the_machines_problem_and_a_pseudo_filesystem_no_full_disk(tmp_path, monkeypatch):
    """A read-only or forbidden folder is an environment problem (exit 1, as the README says; it was 2), a path
    under a file the input's (2); /proc has no disk, where "0 MiB free" was claimed."""
    import errno

    from mtdqn.errors import InsufficientDisk, InsufficientResources, Unwritable
    from mtdqn.io import free_bytes

    assert free_bytes(Path("/proc/mtdqn-run")) is None and free_bytes(tmp_path) > 0
    with pytest.raises(ConfigError, match="Not a directory") as exc:
        prepare_out_dir(Path("/dev/null/run"), "config.json", False)
    assert not isinstance(exc.value, InsufficientResources)

    def read_only(self, data):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(Path, "write_bytes", read_only)
    with pytest.raises(Unwritable, match="cannot write to output directory .*: Read-only file system"):
        prepare_out_dir(tmp_path / "run", "config.json", False)

    def full(self, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", full)  # a full disk: InsufficientDisk (a search's batch is not split)
    with pytest.raises(InsufficientDisk, match="No space left on device"):
        prepare_out_dir(tmp_path / "run", "config.json", False)
    assert issubclass(Unwritable, InsufficientResources) and issubclass(InsufficientDisk, InsufficientResources)


def test_a_full_disk_in_a_background_thread_says_nothing_beside_the_one_line(monkeypatch):
    """A full disk mid-run printed orbax's saving thread's traceback around the one line the main thread says;
    a thread's other errors are reported as before (to the hook that was there)."""
    import errno
    import threading

    from mtdqn.cli.entry import _quiet_full_disk_in_threads

    reported = []
    monkeypatch.setattr(threading, "excepthook", lambda args: reported.append(args.exc_value))  # restored after
    _quiet_full_disk_in_threads()
    for exc in (OSError(errno.ENOSPC, "No space left on device"), ValueError("a bug")):
        def fail(exc=exc):
            raise exc
        thread = threading.Thread(target=fail)
        thread.start()
        thread.join()
    assert [type(e) for e in reported] == [ValueError]


def test_force_replaces_only_what_a_run_owns(tmp_path, monkeypatch):
    (tmp_path / "checkpoints" / "iter_000000100").mkdir(parents=True)
    (tmp_path / "tb").mkdir()
    for name in ("config.json", "summary.json", "notes.txt", "checkpoints/latest.json", "checkpoints/mine.pt",
                 "tb/events.out.tfevents.1.host", "tb/my_notes.txt"):
        (tmp_path / name).write_text("{}")
    owned = ("summary.json", "checkpoints", "tb")
    with pytest.raises(Exception, match="already holds a run"):
        prepare_out_dir(tmp_path, "config.json", False, owned=owned)
    # files named like a run's without its config.json are not mtdqn's: --force would have removed a user's
    # metrics.csv, checkpoints/ and tb/ (a walk-through lost a model.pt): refused, with or without it
    stray = tmp_path / "stray"
    (stray / "checkpoints" / "resnet50").mkdir(parents=True)
    (stray / "checkpoints" / "resnet50" / "model.pt").write_text("w")
    for force in (False, True):
        with pytest.raises(Exception, match=r"stray holds checkpoints but no config.json: not mtdqn's output, and "
                                            r"--force would remove them; choose another --out \(nothing is removed\)"):
            prepare_out_dir(stray, "config.json", force, owned=owned)
    assert (stray / "checkpoints" / "resnet50" / "model.pt").read_text() == "w"
    # of a run's checkpoints/ and tb/, --force removes what the run wrote there, and a file of the user's stays
    prepare_out_dir(tmp_path, "config.json", True, owned=owned, inside=RUN_FOLDERS_OWN)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoints", "notes.txt", "stray", "tb"]
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["mine.pt"]
    assert [p.name for p in (tmp_path / "tb").iterdir()] == ["my_notes.txt"]
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "checkpoints" / "mine.pt").unlink()
    prepare_out_dir(tmp_path, "config.json", True, owned=owned, inside=RUN_FOLDERS_OWN)
    assert not (tmp_path / "checkpoints").exists()  # emptied: removed
    # a --force stopped partway (an entry it cannot remove) keeps the record, removed last, so --force again
    # finishes it (the record went first, and the folder was then "not mtdqn's" for good); a folder holding
    # only a user's file, or an atomic write's temp file, counts as it should
    (tmp_path / "checkpoints" / "iter_000000100").mkdir(parents=True)
    (tmp_path / "checkpoints" / ".latest.json.x1.tmp").write_text("{")
    (tmp_path / "summary.json").write_text("{}")
    (tmp_path / "config.json").write_text("{}")
    remove = shutil.rmtree

    def stopped(path, *args, **kwargs):
        raise OSError(errno.EIO, "Input/output error")

    with monkeypatch.context() as patch:
        patch.setattr(shutil, "rmtree", stopped)
        with pytest.raises(ConfigError, match="Input/output error"):
            prepare_out_dir(tmp_path, "config.json", True, owned=owned, inside=RUN_FOLDERS_OWN)
    assert (tmp_path / "config.json").is_file()
    assert remove is shutil.rmtree
    prepare_out_dir(tmp_path, "config.json", True, owned=owned, inside=RUN_FOLDERS_OWN)
    assert not (tmp_path / "checkpoints").exists() and not (tmp_path / "summary.json").exists()
    assert [p.name for p in (tmp_path / "tb").iterdir()] == ["my_notes.txt"]  # a user's alone: no run there
    prepare_out_dir(tmp_path, "config.json", False, owned=owned, inside=RUN_FOLDERS_OWN)


@pytest.mark.slow
def test_real_terminal_shows_one_line(tmp_path):
    """The installed command, in subprocesses run side by side: stderr is exactly one error line."""
    fake_run(tmp_path / "run")
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    cases = [
        (["train", "--tasks", "CartPol-v1", "--out", str(tmp_path / "a")], "did you mean"),
        (["train", "--steps", "abc"], "--steps: expected an integer"),
        (["train", "--gamma", "1.5", "--out", str(tmp_path / "b")], "--gamma must be in (0, 1]"),
        (["evaluate", str(tmp_path / "missing")], "is not a run directory"),
        (["train", "--out", str(tmp_path / "run")], "already holds a run"),
    ]
    procs = [subprocess.Popen([sys.executable, "-m", "mtdqn.cli", *argv], cwd=tmp_path, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for argv, _ in cases]
    for proc, (argv, expected) in zip(procs, cases):
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 2, (argv, err)
        assert "Traceback" not in err
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], (argv, err)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


@pytest.mark.parametrize("argv", [["distill", "--help"], ["strategies"]])
def test_output_into_a_pipe_its_reader_closed_ends_quietly(tmp_path, argv):
    """`mtdqn distill --help | head -2` ended with "error: cannot write results: Broken pipe": the reader's
    choice, not an error; `mtdqn strategies | head -1` exited 1 (rich's console ends a broken pipe itself).
    (Reader closed before the command writes: the broken pipe is certain, not a race.)"""
    read, write = os.pipe()
    os.close(read)
    proc = subprocess.run([sys.executable, "-m", "mtdqn.cli", *argv], cwd=tmp_path, stdout=write,
                          stderr=subprocess.PIPE, text=True, timeout=60)
    os.close(write)
    assert proc.stderr == "" and proc.returncode == 141  # as a tool SIGPIPE ends


@pytest.mark.slow
def test_a_run_whose_output_reader_left_trains_to_its_end_then_exits_141(tmp_path):
    """`mtdqn train ... | head -1`: the pipe broke at the progress line written as training finished, before the
    final checkpoint, and without --checkpoint-every the whole run was lost; it finishes, then exits 141."""
    read, write = os.pipe()
    os.close(read)
    argv = ["train", "--tasks", "CartPole-v1", "--steps", "1000", "--hidden", "16", "--log-every", "500",
            "--learning-starts", "200", "--out", str(tmp_path / "run")]
    proc = subprocess.run([sys.executable, "-m", "mtdqn.cli", *argv], cwd=tmp_path, stdout=write,
                          stderr=subprocess.PIPE, text=True, timeout=300, env={**os.environ, "JAX_PLATFORMS": "cpu"})
    os.close(write)
    assert proc.stderr == "" and proc.returncode == 141, proc.stderr
    assert mtdqn.open_run(tmp_path / "run").finished


def test_a_bad_number_or_task_is_answered_before_jax_starts(tmp_path):
    """`mtdqn train --lr -1`, `--tasks CartPol-v1`, a run directory that already holds a run (`--out` or the
    default one), `--resume` with `--out` and a budget that makes no update are refused by the JAX-free checks
    (0.6-0.7 s here, against 4.2 s for the task or the folder once JAX and the training stack are imported);
    the checks are the run's own, run again where the run is built (the same line:
    test_api.test_a_bad_option_raises_the_line_the_cli_prints).  With --force the held folder passes them,
    untouched."""
    (tmp_path / "held").mkdir()
    (tmp_path / "held" / "config.json").write_text("{}")
    code = ("import sys\nfrom mtdqn.api import default_train_out\nfrom mtdqn.cli import main\n"
            "from mtdqn.config import TrainConfig\n"
            "default = default_train_out(TrainConfig(tasks=('CartPole-v1',)))\n"
            "default.mkdir(parents=True)\n(default / 'summary.json').write_text('{}')\n"
            "for argv in (['--lr', '-1', '--out', 'x'], ['--tasks', 'CartPol-v1,Acrobot-v1', '--out', 'x'],\n"
            "             ['--out', 'held'], ['--tasks', 'CartPole-v1'], ['--resume', 'held', '--out', 'x'],\n"
            "             ['--steps', '1000', '--log-every', '1000', '--learning-starts', '1000', '--out', 'x']):\n"
            "    try:\n        main(['train', *argv])\n"
            "    except SystemExit as exc:\n        print(exc.code, 'jax' in sys.modules)\n"
            "print(default)")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "JAX_PLATFORMS": "cpu"})
    *codes, default = out.stdout.split()
    assert codes == ["2", "False"] * 6, (out.stdout, out.stderr)
    lr, task, held, held_default, resume, budget = out.stderr.strip().splitlines()
    assert lr == "error: --lr must be a finite number > 0, got -1.0" and not (tmp_path / "x").exists()
    assert task.startswith("error: unknown task 'CartPol-v1'; did you mean 'CartPole-v1'?"), task
    assert held == ("error: held already holds a run (config.json); pass --force True to overwrite or choose "
                    "another --out")
    assert held_default == (f"error: {default} holds summary.json but no config.json: not mtdqn's output, and "
                            "--force would remove them; choose another --out (nothing is removed)"), held_default
    assert resume == "error: --resume continues held in place; drop --out", resume
    assert budget.startswith("error: no update would run: --steps 1,000 ends before the first update"), budget
    _check_before_jax(_parse(["train", "--out", str(tmp_path / "held"), "--force", "True"]))  # --force: it passes
    assert sorted(p.name for p in (tmp_path / "held").iterdir()) == ["config.json"]  # ... and reads only
    assert (tmp_path / "held" / "config.json").read_text() == "{}"


PARSE_CASES = [
    ("no-command", [], "expected a command: tasks, strategies, train"),
    ("unknown-command", ["bogus"], "unknown command 'bogus' (commands: tasks, strategies, train"),
    ("mistyped-command", ["trian", "--steps", "9"], "unknown command 'trian'; did you mean `mtdqn train`?"),
    ("command-by-its-use", ["watch", "runs/x"], "unknown command 'watch'; did you mean `mtdqn play`?"),
    ("missing-positional", ["evaluate"], "Missing required arguments: PATH (see `mtdqn evaluate --help`)"),
    ("missing-required-flag", ["play", "somewhere"], "Missing required arguments: --task"),
    ("bool-not-a-bool", ["train", "--double", "maybe"], "invalid choice 'maybe'. Expected one of ('True', 'False')"),
    ("too-few-values", ["train", "--conv-channels", "8"], "error: --conv-channels: expected INT INT"),
    ("flag-without-value", ["train", "--force"], "error: --force: expected {True,False}"),
    ("misspelled-flag", ["train", "--hiden", "64"],
     "Unrecognized options: --hiden 64; --hiden: did you mean --hidden? (see `mtdqn train --help`)"),
    ("another-librarys-flag", ["train", "--learning-rate=1e-3", "--total-timesteps", "9"],
     "--learning-rate: did you mean --lr?; --total-timesteps: did you mean --steps?"),
    ("another-librarys-flag-in-other-units", ["train", "--target-update-interval", "9"],
     "did you mean --target-update-every (counted in gradient updates, not env steps)?"),
    ("another-librarys-flag-we-lack", ["train", "--gradient-steps", "2"],
     "Unrecognized options: --gradient-steps 2 (see `mtdqn train --help`)"),  # not --n-step by its spelling
    ("unlike-any-flag", ["study", "quick", "--bogus", "1"],
     "Unrecognized options: --bogus 1 (see `mtdqn study --help`)"),
    ("misspelled-command-flag", ["finetune", "--from", "a", "--frezee", "trunk"], "--frezee: did you mean --freeze?"),
    ("another-commands-flag", ["extend", "--from", "a", "--add-tasks", "b", "--keep-heads", "True"],  # not --keep-best
     "--keep-heads is a flag of `mtdqn finetune`: extend keeps the run's heads for its own tasks, always"),
    ("another-commands-flag-named-otherwise-here", ["act", "r", "--task", "t", "--obs", "o", "--agent-seed", "1"],
     "--agent-seed is a flag of `mtdqn play`: did you mean --seed (the seed whose network acts)?"),
    ("missing-required-flag-of-a-command", ["finetune"], "Missing required arguments: --from (see `mtdqn finetune"),
]


def test_a_folder_of_another_kind_is_refused_whatever_force_says(tmp_path, capsys):
    """train, finetune, distill and a sweep into a study's or a search's folder, a tune into a run's or a study's:
    they wrote their files beside the other's (a study folder then read as a finished run) with exit 0; now one
    line, exit 2, before anything is written, --force or not (it would clear only a run's files)."""
    fake_run(tmp_path / "run")
    (tmp_path / "study").mkdir()
    (tmp_path / "study" / "study.json").write_text("{}")
    (tmp_path / "search").mkdir()
    (tmp_path / "search" / "tune.json").write_text("{}")
    (tmp_path / "spec.toml").write_text('tasks = ["CartPole-v1"]\nsteps = 1000\nseeds = 1\n[space]\n'
                                        'lr = {log = [1e-4, 1e-2]}\n[options]\nlearning_starts = 100\n'
                                        'log_every = 500\n')
    short = ["--steps", "1000", "--learning-starts", "100", "--log-every", "500"]
    cases = [(["train", "--tasks", "CartPole-v1", *short, "--out", "{root}/study"],
              "holds a study (study.json); a run"),
             (["train", "--tasks", "CartPole-v1", *short, "--out", "{root}/search", "--force", "True"],
              "holds a search (tune.json); a run needs a folder of its own: choose another --out"),
             (["train", "--tasks", "CartPole-v1", *short, "--sweep", "lr=1e-3,2e-3", "--out", "{root}/study"],
              "holds a study (study.json); a sweep needs"),
             (["finetune", "--from", "{root}/run", "--tasks", "MountainCar-v0", *short, "--out", "{root}/study"],
              "holds a study (study.json); a run needs"),
             (["distill", "--teachers", "{root}/run", "--steps", "1000", "--out", "{root}/study"],
              "holds a study (study.json); a run needs"),
             (["tune", "{root}/spec.toml", "--out", "{root}/run"], "holds a run (config.json); a search needs"),
             (["tune", "{root}/spec.toml", "--out", "{root}/study"], "holds a study (study.json); a search needs"),
             (["study", "quick", "--out", "{root}/run"], "holds a run (config.json); a study needs"),
             (["study", "quick", "--out", "{root}/search"], "holds a search (tune.json); a study needs")]
    before = _snapshot(tmp_path)
    for argv, expected in cases:
        assert expected in _one_error_line(capsys, [a.format(root=tmp_path) for a in argv]), argv
    assert _snapshot(tmp_path) == before


@pytest.mark.parametrize("argv", [["finetune", "--tasks", "MountainCar-v0"],
                                  ["extend", "--add-tasks", "MountainCar-v0"], ["distill", "--teachers", "{root}/run"],
                                  ["train", "--steps", "10000", "--sweep", "lr=1e-4,1e-3"]])
def test_a_reused_out_is_refused_before_the_run_is_announced(sources, capsys, argv):
    """finetune, extend, distill and a sweep into a folder that holds a run: the refusal came after JAX started
    and the run's announcement lines (and a sweep's rounding warning) were printed; now first, alone, as
    train's."""
    argv = [a.format(root=sources) for a in argv]
    source = [] if argv[0] in ("distill", "train") else ["--from", str(sources / "run")]
    with pytest.raises(SystemExit) as exc:
        main([*argv, *source, "--out", str(sources / "no_ckpt")])
    said = capsys.readouterr()
    assert exc.value.code == 2 and said.out == "", said.out
    assert said.err.strip().startswith("error: ") and "no_ckpt already holds a run (config.json)" in said.err


def test_each_other_commands_flag_noted_is_another_commands_and_not_its_own():
    """A note of OTHER_COMMANDS_FLAGS whose flag was renamed would read "is a flag of : ..."."""
    from mtdqn.cli.commands import command_flags
    from mtdqn.cli.entry import OTHER_COMMANDS_FLAGS
    from mtdqn.cli.handlers import COMMANDS

    for command, flag in OTHER_COMMANDS_FLAGS:
        assert flag not in command_flags(COMMANDS[command][0]), (command, flag)
        assert any(flag in command_flags(cls) for other, (cls, _) in COMMANDS.items() if other != command), flag


@pytest.mark.parametrize("argv, expected", [c[1:] for c in PARSE_CASES], ids=[c[0] for c in PARSE_CASES])
def test_rejected_command_lines_are_one_line(capsys, argv, expected):
    """tyro's rejections reach the user as one line built from its parse-error events, not its drawing."""
    assert expected in _one_error_line(capsys, argv)


def test_a_corrupt_table_on_resume_is_one_line(tmp_path):
    """A damaged metrics.parquet stops a resume with a ConfigError naming the file, not a pyarrow traceback."""
    from mtdqn.errors import ConfigError
    from mtdqn.rundir import RunDir

    (tmp_path / "metrics.parquet").write_bytes(b"PAR1 not really a parquet file")
    with pytest.raises(ConfigError, match=r"metrics.parquet is unreadable or corrupt"):
        RunDir(tmp_path).tables_until(1000)


def test_a_corrupt_table_is_named_where_it_is_read(tmp_path):
    """A truncated table read through the API (`open_run(...).evals`) or a study's report (its loader) is a
    ConfigError naming the file, not pyarrow's message about a buffer."""
    from mtdqn.analysis.load import _read_table
    from mtdqn.errors import ConfigError

    fake_run(tmp_path / "run")
    table = tmp_path / "run" / "evals.parquet"
    pd.DataFrame({"step": [1], "task": ["CartPole-v1"]}).to_parquet(table)
    table.write_bytes(table.read_bytes()[:-20])  # truncated: Parquet's footer is gone
    with pytest.raises(ConfigError, match=r"run/evals.parquet is unreadable or corrupt \(ArrowInvalid\)"):
        mtdqn.open_run(tmp_path / "run").evals
    with pytest.raises(ConfigError, match=r"run/evals.parquet is unreadable or corrupt"):
        _read_table(table, "evals", ("CartPole-v1",))


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """Runs to fine-tune from: a good one, one without a checkpoint, one of an older checkpoint format, one
    whose checkpoint is of another architecture than its config.json, a folder that is no run and a sweep."""
    root = tmp_path_factory.mktemp("sources")
    fake_run(root / "run")  # CartPole-v1 + Acrobot-v1, trunk 16 -> 32
    (root / "no_ckpt").mkdir()
    (root / "no_ckpt" / "config.json").write_text((root / "run" / "config.json").read_text())
    fake_run(root / "old_version")
    latest = root / "old_version" / "checkpoints" / "latest.json"
    latest.write_text(latest.read_text().replace('"format_version": 2', '"format_version": 1'))
    fake_run(root / "other_arch")
    record = json.loads((root / "other_arch" / "config.json").read_text())
    record["config"]["network"]["hidden"] = [64]  # config.json says 64 units, the checkpoint holds 32
    (root / "other_arch" / "config.json").write_text(json.dumps(record))
    (root / "not_a_run").mkdir()
    (root / "a_sweep").mkdir()  # a sweep's folder: its record, and a member (any run)
    (root / "a_sweep" / "sweep.json").write_text("{}")
    fake_run(root / "a_sweep" / "lr=0.001")
    return root


_FT = ["--tasks", "MountainCar-v0", "--steps", "1000", "--learning-starts", "100", "--out", "{root}/new"]
TRANSFER_CASES = [
    ("no-checkpoint", ["finetune", "--from", "{root}/no_ckpt", *_FT], "no checkpoint in"),
    ("not-a-run", ["finetune", "--from", "{root}/not_a_run", *_FT], "is not a run directory"),
    ("a-sweep", ["finetune", "--from", "{root}/a_sweep", *_FT],
     "a_sweep holds a sweep (sweep.json), not one run: name one of its 1 member, e.g. "),
    ("extend-a-sweep", ["extend", "--from", "{root}/a_sweep", "--add-tasks", "MountainCar-v0", "--out", "{root}/new"],
     "a_sweep holds a sweep (sweep.json), not one run"),
    ("old-checkpoint-version", ["finetune", "--from", "{root}/old_version", *_FT], "checkpoint format version 1"),
    ("other-architecture", ["finetune", "--from", "{root}/other_arch", *_FT], "made with a different setup"),
    ("lora-zero", ["finetune", "--from", "{root}/run", *_FT, "--lora", "0"], "--lora must be a rank > 0"),
    ("lora-negative", ["finetune", "--from", "{root}/run", *_FT, "--lora", "-2"], "--lora must be a rank > 0"),
    ("lora-above-layer", ["finetune", "--from", "{root}/run", *_FT, "--lora", "17"],
     "larger than trunk layer layer_0 (16 -> 32): at most 16"),
    ("lora-and-freeze", ["finetune", "--from", "{root}/run", *_FT, "--lora", "2", "--freeze", "trunk"],
     "drop --freeze trunk"),
    ("freeze-unknown", ["finetune", "--from", "{root}/run", *_FT, "--freeze", "top"], "unknown --freeze 'top'"),
    ("freeze-bottom-too-deep", ["finetune", "--from", "{root}/run", *_FT, "--freeze", "bottom:3"],
     "the pretrained trunk has 1 layer"),
    ("freeze-not-a-number", ["finetune", "--from", "{root}/run", *_FT, "--freeze", "bottom:x"],
     "bottom:K needs an integer K"),
    ("freeze-bottom-zero", ["finetune", "--from", "{root}/run", *_FT, "--freeze", "bottom:0"],
     "bottom:0: K must be > 0"),
    ("unfreeze-at-zero", ["finetune", "--from", "{root}/run", *_FT, "--freeze", "trunk-until:0"],
     "trunk-until:0: STEPS must be > 0"),
    ("unfreeze-after-the-end", ["finetune", "--from", "{root}/run", *_FT, "--freeze", "trunk-until:5000"],
     "is not before the end of --steps 1000"),
    ("trunk-lr-negative", ["finetune", "--from", "{root}/run", *_FT, "--trunk-lr", "-1"], "--trunk-lr must be"),
    ("trunk-lr-beyond-float32", ["finetune", "--from", "{root}/run", *_FT, "--trunk-lr", "1e40"],
     "--trunk-lr 1e+40 is outside float32's range"),
    ("trunk-lr-frozen-trunk", ["finetune", "--from", "{root}/run", *_FT, "--freeze", "trunk", "--trunk-lr", "1e-4"],
     "--trunk-lr 0.0001 sets the rate of trunk layers that train, and --freeze trunk freezes the whole trunk"),
    ("trunk-lr-all-bottom", ["finetune", "--from", "{root}/run", *_FT, "--freeze", "bottom:1", "--trunk-lr", "1e-4"],
     "--freeze bottom:1 freezes the whole trunk"),
    ("network-option", ["finetune", "--from", "{root}/run", *_FT, "--hidden", "64"], "drop --hidden"),
    ("vector-trunk-image-task", ["finetune", "--from", "{root}/run", "--tasks", "Breakout-MinAtar"],
     "cannot take image tasks"),
    ("out-is-the-source", ["finetune", "--from", "{root}/run", "--tasks", "MountainCar-v0", "--out", "{root}/run",
                           "--force", "True"], "is the source run"),
    ("patience-without-eval-every", ["finetune", "--from", "{root}/run", *_FT, "--patience", "2"],
     "set --eval-every"),
    ("extend-task-present", ["extend", "--from", "{root}/run", "--add-tasks", "CartPole-v1", "--out", "{root}/new"],
     "CartPole-v1 is already one of"),
    ("extend-task-present-spelled-otherwise", ["extend", "--from", "{root}/run", "--add-tasks", "CartPole-v1:",
                                               "--out", "{root}/new"], "CartPole-v1: is already one of"),
    ("extend-with-tasks", ["extend", "--from", "{root}/run", "--add-tasks", "MountainCar-v0", "--tasks",
                           "Pendulum-v1", "--out", "{root}/new"],  # not in extend --help either
     "--tasks is a flag of `mtdqn train` and `mtdqn finetune` and `mtdqn study`: extend trains the run's own tasks"),
    ("extend-no-checkpoint", ["extend", "--from", "{root}/no_ckpt", "--add-tasks", "MountainCar-v0"],
     "no checkpoint in"),
    ("finetune-no-updates", ["finetune", "--from", "{root}/run", "--tasks", "MountainCar-v0", "--steps", "1000",
                             "--log-every", "1000", "--out", "{root}/new"], "no update would run: --steps 1,000"),
    ("extend-no-updates", ["extend", "--from", "{root}/run", "--add-tasks", "MountainCar-v0", "--steps", "2000",
                           "--log-every", "1000", "--out", "{root}/new"], "no update would run: --steps 2,000"),
]


@pytest.mark.parametrize("argv, expected", [c[1:] for c in TRANSFER_CASES], ids=[c[0] for c in TRANSFER_CASES])
def test_bad_transfer_input_leaves_the_source_untouched(sources, capsys, argv, expected):
    before = _snapshot(sources)
    line = _one_error_line(capsys, [a.format(root=sources) for a in argv] + ["--progress", "False"])
    assert expected in line
    assert _snapshot(sources) == before  # the source runs as they were, and no new run directory
