"""Resume after a real ``kill -9`` ends bit-identical to an uninterrupted run; divergence stops cleanly.

Both tests drive the ``mtdqn`` command as a user would.  The run killed and
its resume run in subprocesses of their own (their compiled programs come from
the persistent cache that ``conftest.py`` uses), the resume planning its
devices from the checkpoint as it does after a crash; the uninterrupted run and
the diverging one run by the command's entry point in this process
(:func:`_command`), which spares starting a process and importing JAX there
(~4 s each).  Both tests train helpers.TINY, the training program much of the
suite compiles, so in `make test` they mostly find it compiled.
"""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import time
import warnings
from pathlib import Path

import jax
import numpy as np
import pandas as pd
import pytest
from helpers import TINY_ARGV

from mtdqn.checkpoint import load_checkpoint, verify_checkpoint
from mtdqn.cli import main
from mtdqn.train.agent import make_agent
from mtdqn.train.loop import make_trainer, seed_keys
from mtdqn.rundir import RunDir

ROOT = Path(__file__).resolve().parent.parent
# helpers.TINY: 4 chunks of 500 env steps per task (learning from step 600), a checkpoint after each: the kill
# lands mid-run, once learning has started.  Its 2 seeds on 2 devices, as this process has (conftest.py), on any
# machine: the processes started (the CLI plans one device per core) compute the same numbers as this one.
TINY = [*TINY_ARGV, "--checkpoint-every", "500", "--devices", "2"]


def _env() -> dict[str, str]:
    return {**os.environ, "JAX_PLATFORMS": "cpu", "JAX_NUMPY_RANK_PROMOTION": "raise"}  # conftest's compilation cache


def _start(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "mtdqn.cli", *args], cwd=ROOT, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen, timeout: float = 120) -> tuple[int, str]:
    _, err = proc.communicate(timeout=timeout)
    return proc.returncode, err


def _command(capfd: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """``mtdqn ARGS`` run by its entry point in this process: (exit status, stderr).  stderr is read at fd 2,
    and a warning a fresh process would print (Python's default filters: all but the deprecation, import and
    resource categories; pytest would otherwise collect it) is added as a line of it."""
    with warnings.catch_warnings(record=True) as shown:
        warnings.resetwarnings()
        for quiet in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
            warnings.simplefilter("ignore", quiet)
        try:
            main(list(args))
            code = 0
        except SystemExit as exc:
            code = exc.code
    return code, capfd.readouterr().err + "".join(f"{w.category.__name__}: {w.message}\n" for w in shown)


def _latest_chunk(run: Path) -> int:
    try:
        return json.loads((run / "checkpoints" / "latest.json").read_text())["chunk"]
    except (FileNotFoundError, json.JSONDecodeError):
        return -1


def _final_state(run: Path):
    """The whole TrainState of a run's latest checkpoint, read back with orbax (no compile)."""
    cfg = RunDir(run).config()
    trainer = make_trainer(make_agent(cfg))
    template = jax.eval_shape(trainer.init, seed_keys(trainer.agent.seeds))
    state, meta = load_checkpoint(run, trainer.agent.cfg, template)
    return state, meta


def _tb_scalars(tb_dir: Path) -> list[tuple[str, int, float]]:
    """(tag, step, value) of every scalar in the TFRecord event files under ``tb_dir``."""
    from tensorboardX.proto.event_pb2 import Event

    out = []
    for path in sorted(tb_dir.glob("events.out.tfevents.*")):
        data, pos = path.read_bytes(), 0
        while pos + 12 <= len(data):
            (length,) = struct.unpack("<Q", data[pos: pos + 8])
            event = Event.FromString(data[pos + 12: pos + 12 + length])
            pos += 12 + length + 4
            out += [(v.tag, event.step, v.simple_value) for v in event.summary.value]
    return out


def test_two_tensorboard_writers_of_a_run_in_one_second_keep_both_files(tmp_path, monkeypatch):
    """tensorboardX names an event file by its second and host and opens it for writing: the loop's writer and
    the end of run's, opened in one second (a short run or resume), shared one file, the second emptying the
    first (the kill -9 test below once failed on it: the uninterrupted run kept only its last step)."""
    import tensorboardX.event_file_writer as efw

    monkeypatch.setattr(efw.time, "time", lambda: 1796628586.25)  # both writers open in the same second
    run = RunDir(tmp_path)
    loop_writer = run.tensorboard()
    loop_writer.add_scalar("return/CartPole-v1/seed0", 1.0, 500)
    loop_writer.close()
    final_writer = run.tensorboard(purge_step=1000)
    final_writer.add_scalar("return/CartPole-v1/seed0", 2.0, 1000)
    final_writer.close()
    assert len(list((tmp_path / "tb").iterdir())) == 2
    assert sorted((step, v) for _, step, v in _tb_scalars(tmp_path / "tb")) == [(500, 1.0), (1000, 2.0)]
    # TensorBoard reads a folder's files in name order: the 10th writer's after the 9th's, not before
    import itertools

    import mtdqn.rundir as rundir

    monkeypatch.setattr(rundir, "_WRITERS", itertools.count(9))
    for _ in range(2):
        RunDir(tmp_path / "order").tensorboard().close()
    assert [p.name[-7:] for p in sorted((tmp_path / "order" / "tb").iterdir())] == [".000009", ".000010"]


@pytest.mark.slow
def test_kill_9_then_resume_is_bit_identical(tmp_path, capfd):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    common = [*TINY, "--progress", "False", "--eval-episodes", "2", "--eval-every", "1000"]
    # uninterrupted first: the victim and the resume then read every program from the persistent cache
    rc, err = _command(capfd, "train", *common, "--out", str(whole))
    assert rc == 0, err
    assert err.strip() == ""  # no NaN warnings from TensorBoard or the progress line
    victim = _start("train", *common, "--out", str(killed))
    deadline = time.monotonic() + 90
    while _latest_chunk(killed) < 2 and victim.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    if victim.poll() is not None:
        pytest.fail(f"the run ended (rc {victim.returncode}) before its second checkpoint could be killed: "
                    f"{victim.communicate()[1][-2000:]}")
    os.kill(victim.pid, signal.SIGKILL)
    victim.communicate(timeout=30)
    assert victim.returncode == -signal.SIGKILL
    at_kill = _latest_chunk(killed)
    assert 2 <= at_kill < 4, at_kill
    assert not (killed / "summary.json").exists()

    resumed = _start("train", "--resume", str(killed), "--progress", "False")
    out, err = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, err
    # said without a terminal's progress bar (a log showed no sign that the resume did not start over)
    assert f"mtdqn: resuming from env step {at_kill * 500:,} of 2,000 per task" in out, out

    a, meta_a = _final_state(whole)
    b, meta_b = _final_state(killed)
    assert meta_a["chunk"] == meta_b["chunk"] == 4
    leaves_a, leaves_b = jax.tree_util.tree_leaves_with_path(a), jax.tree_util.tree_leaves_with_path(b)
    assert len(leaves_a) == len(leaves_b)
    for (path, x), (_, y) in zip(leaves_a, leaves_b):  # params, target, optimizer, replay, env, keys, counters
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=jax.tree_util.keystr(path))
    assert sorted(pd.read_parquet(killed / "evals.parquet")["step"].unique()) == [1000, 2000]
    for name in ("metrics.parquet", "evals.parquet", "grad_tasks.parquet", "grad_pairs.parquet", "cka.parquet",
                 "grad_probe.parquet"):
        pd.testing.assert_frame_equal(pd.read_parquet(whole / name), pd.read_parquet(killed / name), check_exact=True)
    assert (whole / "metrics.csv").read_text() == (killed / "metrics.csv").read_text()
    sa, sb = (json.loads((run / "summary.json").read_text()) for run in (whole, killed))
    timing = {"wall_time_s", "compile_s", "eval_s", "env_steps_per_s"}  # eval_s: only this process's evaluations
    assert {k: v for k, v in sa.items() if k not in timing} == {k: v for k, v in sb.items() if k not in timing}
    assert sorted(p.name for p in (killed / "checkpoints").iterdir()) == ["iter_000000500", "latest.json"]
    scalars = _tb_scalars(whole / "tb")
    assert scalars and all(np.isfinite(v) for _, _, v in scalars)
    # the killed run's TensorBoard history is whole too (its events were never flushed: empty files before)
    assert {(tag, step) for tag, step, _ in _tb_scalars(killed / "tb")} == {(tag, step) for tag, step, _ in scalars}
    # TensorBoard holds the final evaluation, as evals.parquet does (the loop's writer had closed before it)
    final = pd.read_parquet(whole / "evals.parquet").query("step == 2000")
    greedy = {tag: v for tag, step, v in scalars if tag.startswith("greedy_return/") and step == 2000}
    assert greedy == {f"greedy_return/{r.task}/seed{r.seed}": np.float32(r.return_mean) for r in final.itertuples()}


@pytest.mark.slow
def test_divergence_stops_with_one_line_and_keeps_the_last_good_checkpoint(tmp_path, capfd):
    run = tmp_path / "run"
    # Adam moves every weight that has a gradient by about --lr at its first update (its step is normalized), so
    # with 1e30 the next forward pass through two such layers overflows float32 (3.4e38): non-finite in the
    # chunk learning starts in, by construction.  Adam is TINY's own optimizer: the kill test's programs.
    rc, err = _command(capfd, "train", *TINY, "--lr", "1e30", "--progress", "False", "--out", str(run))
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 3, err
    assert len(lines) == 1 and "Traceback" not in err, err
    # learning starts after 600 env steps per task: the first update chunk (500-1000) blows up
    assert lines[0].startswith("error: training diverged: non-finite loss or Q-value in task ")
    assert "between env step 500 and 1,000" in lines[0] and "last good checkpoint kept (step 500)" in lines[0]
    meta = verify_checkpoint(run, RunDir(run).config())
    assert meta["chunk"] == 1
    state, _ = _final_state(run)
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(state.params))
    metrics = pd.read_parquet(run / "metrics.parquet")
    assert metrics["step"].max() == 500  # the diverged chunk's rows are not kept; the window kept had no update:
    assert metrics[["loss", "q_mean"]].isna().all().all()  # no loss to record (NaN), nor any non-finite one
    scalars = _tb_scalars(run / "tb")
    assert scalars and max(step for _, step, _ in scalars) == 500
    assert all(np.isfinite(v) for _, _, v in scalars)
    assert not (run / "summary.json").exists()
