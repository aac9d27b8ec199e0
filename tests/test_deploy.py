"""Acting from a checkpoint: the loaded network is the trained one, and bad input is one line."""

from __future__ import annotations

import dataclasses
import json
import sys
from functools import partial
from types import SimpleNamespace

import jax
import numpy as np
import pytest
from helpers import IMAGE, VECTOR, fake_run

import mtdqn
import mtdqn.checkpoint
from mtdqn.checkpoint import load_checkpoint, save_checkpoint
from mtdqn.cli import main
from mtdqn.errors import ConfigError
from mtdqn.networks import q_values
from mtdqn.rundir import RunDir
from mtdqn.value_norm import unnormalize


POPART = dataclasses.replace(VECTOR, value_norm="popart")


@pytest.mark.slow
@pytest.mark.parametrize("cfg", [VECTOR, IMAGE, POPART], ids=["vector", "image", "popart"])
def test_loaded_agent_acts_as_the_trained_network(tmp_path, cfg):
    """Greedy actions and Q-values (in reward units) equal the full network's on the padded task set, per seed."""
    trainer, abstract, state = fake_run(tmp_path, cfg)
    full, _ = load_checkpoint(tmp_path, trainer.agent.cfg, abstract)
    agent = mtdqn.load_agent(tmp_path)
    ts = trainer.agent.task_set
    network = jax.jit(partial(q_values, trainer.agent.arch))  # one program for every task and seed
    rng = np.random.default_rng(0)
    for i, task in enumerate(ts.tasks):
        obs = rng.integers(0, 2, (5, *task.obs_shape)).astype(np.float32)  # the task's own, unpadded shape
        if task.kind == "vector":  # inside every bound of the spaces (CartPole's pole angle: +-0.419 rad)
            obs = rng.uniform(-0.4, 0.4, obs.shape).astype(np.float32)
        padded = np.zeros((len(ts), 5, *ts.obs_shape), np.float32)
        padded[i, ..., : task.obs_shape[-1]] = obs
        for s, seed in enumerate(trainer.agent.seeds):
            q_all = network(jax.tree.map(lambda x: x[s], full.params), padded)
            if cfg.value_norm == "popart":
                q_all = unnormalize(jax.tree.map(lambda x: x[s], full.value_norm), q_all)
            q_all = np.asarray(q_all)
            want = q_all[i, :, : task.num_actions]
            np.testing.assert_allclose(agent.q_values(task.spec, obs, seed), want, rtol=1e-5, atol=1e-5)
            np.testing.assert_array_equal(agent.act(task.spec, obs, seed), want.argmax(-1))
            one = agent.of_seed(seed)  # `play --agent-seed`: that seed's network acts by default
            assert one.seeds == (seed,)
            np.testing.assert_allclose(one.q_values(task.spec, obs), want, rtol=1e-5, atol=1e-5)
        assert agent.act(task.spec, obs[0]).shape == ()  # one observation in, one action out


def test_act_command_and_its_bad_input(tmp_path, capsys):
    fake_run(tmp_path / "run")
    obs = tmp_path / "obs.npy"
    np.save(obs, np.zeros((3, 4), np.float32))  # three CartPole observations
    main(["act", str(tmp_path / "run"), "--task", "CartPole-v1", "--obs", str(obs)])
    lines = capsys.readouterr().out.strip().splitlines()
    assert [ln.split(":")[0] for ln in lines] == ["seed 0", "seed 1"] and all(len(ln.split()) == 5 for ln in lines)
    np.save(tmp_path / "wrong.npy", np.zeros((3, 5), np.float32))
    np.save(tmp_path / "empty.npy", np.zeros((0, 4), np.float32))
    np.save(tmp_path / "complex.npy", np.zeros((3, 4), np.complex64))
    (tmp_path / "junk.npy").write_text("not an array")
    (tmp_path / "nothing.npy").write_bytes(b"")
    np.savez(tmp_path / "both.npz", obs=np.zeros((3, 4), np.float32))
    np.save(tmp_path / "objects.npy", np.array([{}, 1], dtype=object))
    np.save(tmp_path / "text.npy", np.array(list("abcd")))  # one observation's shape, of text
    cases = [
        (["--task", "Pong-v0", "--obs", str(obs)], "is not one of this run's tasks"),
        (["--task", "CartPole-v1", "--obs", str(tmp_path / "wrong.npy")], "must have shape (batch, 4) with batch"),
        (["--task", "CartPole-v1", "--obs", str(tmp_path / "empty.npy")], "got (0, 4) of float32"),
        (["--task", "CartPole-v1", "--obs", str(tmp_path / "complex.npy")], "of real numbers; got (3, 4) of complex64"),
        (["--task", "CartPole-v1", "--obs", str(tmp_path / "junk.npy")], "not a readable .npy array (it is not a "
         ".npy file)"),  # was: "NumPy would have to unpickle it" (NumPy tries that on any unknown format)
        (["--task", "CartPole-v1", "--obs", str(tmp_path / "objects.npy")], "(it holds Python objects, and mtdqn "
         "never unpickles)"),
        (["--task", "CartPole-v1", "--obs", str(tmp_path / "both.npz")], "both.npz is an .npz archive (obs); give "
         "one array as .npy"),  # was: got (1,) of <U1
        (["--task", "CartPole-v1", "--obs", str(tmp_path / "text.npy")], "real numbers; got (4,) of <U1"),  # (1, 4)
        (["--task", "CartPole-v1", "--obs", str(tmp_path / "nothing.npy")], "not a readable .npy array (the file is "
         "empty)"),  # was an EOFError traceback
        (["--task", "CartPole-v1", "--obs", str(obs), "--seed", "7"], "seed 7 is not one of this run's seeds"),
    ]
    for argv, message in cases:
        with pytest.raises(SystemExit) as exc:
            main(["act", str(tmp_path / "run"), *argv])
        err = capsys.readouterr().err.strip().splitlines()
        assert exc.value.code == 2 and len(err) == 1 and message in err[0], err
    with pytest.raises(ConfigError, match="is not a run directory"):
        mtdqn.load_agent(tmp_path / "nothing")
    with pytest.raises(ConfigError, match="seed True is not one of this run's seeds: 0, 1"):  # True == 1: seed 1
        mtdqn.load_agent(tmp_path / "run").act("CartPole-v1", np.zeros(4, np.float32), seed=True)


def test_non_finite_and_out_of_bounds_observations_are_refused(tmp_path, capsys):
    """NaN/inf rows are named and refused, clip or not; values outside the space's finite bounds are refused
    unless clip=True clips them; unbounded dimensions (CartPole's velocities) take any finite value."""
    fake_run(tmp_path / "run")
    agent = mtdqn.load_agent(tmp_path / "run")
    obs = np.zeros((6, 4), np.float32)
    obs[1, 1], obs[4, 3] = np.nan, -np.inf
    for clip in (False, True):
        with pytest.raises(ConfigError, match=r"CartPole-v1 hold NaN or inf in rows 1, 4;"):
            agent.act("CartPole-v1", obs, clip=clip)
    with pytest.raises(ConfigError, match=r"NaN or inf in row 0;"):
        agent.q_values("CartPole-v1", np.array([0.0, 0.0, np.nan, 0.0]))
    obs = np.zeros((5, 4), np.float32)
    obs[:, 1] = obs[:, 3] = 1e30  # cart and pole velocities: unbounded in gymnax's space
    assert agent.act("CartPole-v1", obs).shape == (5,)
    obs[2, 0], obs[3, 2] = 7.0, -1.0  # cart position beyond +-4.8, pole angle beyond +-0.419 rad
    with pytest.raises(ConfigError, match=r"outside its observation space in rows 2, 3 \(row 2, index 0: 7 not in "
                                          r"\[-4\.8, 4\.8\]\); clip them into it with --clip True"):
        agent.q_values("CartPole-v1", obs)
    clipped = obs.copy()
    clipped[2, 0], clipped[3, 2] = 4.8, -0.41887903
    np.testing.assert_allclose(agent.q_values("CartPole-v1", obs, clip=True), agent.q_values("CartPole-v1", clipped),
                               rtol=1e-6)
    # check_bounds=False (play's: the env's own observations) takes them as they are, unless clip asks otherwise
    unchecked = agent.q_values("CartPole-v1", obs, check_bounds=False)
    assert not np.allclose(unchecked, agent.q_values("CartPole-v1", clipped))
    np.testing.assert_allclose(agent.q_values("CartPole-v1", obs, clip=True, check_bounds=False),
                               agent.q_values("CartPole-v1", clipped), rtol=1e-6)
    with pytest.raises(ConfigError, match="NaN or inf"):  # never a non-finite one
        agent.act("CartPole-v1", np.array([0.0, 0.0, np.nan, 0.0]), check_bounds=False)
    with pytest.raises(ConfigError, match=r"Acrobot-v1 .* row 0 \(row 0, index 5: -40 not in \[-28\.2743, 28\.2743\]"):
        agent.act("Acrobot-v1", np.array([1, 0, 1, 0, 0, -40.0]))

    np.save(tmp_path / "nan.npy", np.array([[0, 0, 0, 0], [0, np.nan, 0, 0]], np.float32))
    np.save(tmp_path / "far.npy", np.array([[9, 0, 0, 0], [0, 0, 0, 0]], np.float32))
    for name, extra in (("nan.npy", []), ("nan.npy", ["--clip", "True"]), ("far.npy", [])):
        with pytest.raises(SystemExit) as exc:
            main(["act", str(tmp_path / "run"), "--task", "CartPole-v1", "--obs", str(tmp_path / name), *extra])
        captured = capsys.readouterr()
        err = captured.err.strip().splitlines()
        assert exc.value.code == 2 and len(err) == 1 and not captured.out, err
        assert ("NaN or inf in row 1;" if name == "nan.npy" else "outside its observation space in row 0") in err[0]
    main(["act", str(tmp_path / "run"), "--task", "CartPole-v1", "--obs", str(tmp_path / "far.npy"), "--clip", "True"])
    assert len(capsys.readouterr().out.strip().splitlines()) == 2  # a line of actions per seed


def test_image_observations_with_fractions_are_refused():
    """Image observations reach the network as bytes: a MinAtar grid of 0.6 (inside its [0, 1] bounds) acted as
    all zeros, a MiniGrid id of 2.9 as 2; frames scaled to [0, 1] alike."""
    from mtdqn.deploy import check_observations
    from mtdqn.tasks.registry import parse_task

    grid = np.zeros((2, 10, 10, 4))
    check_observations(parse_task("Breakout-MinAtar"), grid)
    grid[1, 3, 4, 2] = 0.6
    with pytest.raises(ConfigError, match=r"are images, whole numbers .* row 1 hold fractions \(row 1: 0\.6\)"):
        check_observations(parse_task("Breakout-MinAtar"), grid)


@pytest.mark.slow
def test_image_observations_must_be_zero_or_one(tmp_path):
    fake_run(tmp_path, IMAGE)
    agent = mtdqn.load_agent(tmp_path)
    grid = np.zeros((3, 10, 10, 4), np.uint8)
    grid[1, 3, 4, 2] = 2
    with pytest.raises(ConfigError, match=r"row 1 \(row 1, index \(3, 4, 2\): 2 not in \[0, 1\]\)"):
        agent.act("Breakout-MinAtar", grid)
    grid[1, 3, 4, 2] = 1
    np.testing.assert_array_equal(agent.act("Breakout-MinAtar", np.where(grid > 0, 2, 0), clip=True),
                                  agent.act("Breakout-MinAtar", grid))


def _saving_after_verify(monkeypatch, trainer, state, saves: int) -> list[int]:
    """Make the first ``saves`` verifications of a checkpoint be followed by a new save of the run (as a run still
    training does between a reader's check and its restore), which removes the checkpoint just verified."""
    verify, chunks = mtdqn.checkpoint.verify_checkpoint, []

    def verify_then_save(run_dir, cfg):
        meta = verify(run_dir, cfg)
        if len(chunks) < saves:
            chunks.append(meta["chunk"] + 1)
            save_checkpoint(run_dir, trainer.agent.cfg, state, chunks[-1])
        return meta

    monkeypatch.setattr(mtdqn.checkpoint, "verify_checkpoint", verify_then_save)
    return chunks


def test_a_checkpoint_replaced_while_read_is_read_again(tmp_path, monkeypatch, capsys):
    """A run still training replaces its checkpoint between a reader's verification and restore: the reader takes
    the new one (was: "holds no usable network: Checkpoint at ... not found" 7 times in 8), and says so in one
    line only when the run outpaces every try."""
    trainer, _, state = fake_run(tmp_path / "run")
    chunks = _saving_after_verify(monkeypatch, trainer, state, saves=2)
    reported = []
    monkeypatch.setattr(sys, "unraisablehook", reported.append)
    agent = mtdqn.load_agent(tmp_path / "run")
    assert chunks == [2, 3] and agent.act("CartPole-v1", np.zeros(4, np.float32)).shape == ()
    # An abandoned read's TensorStore reads that end on its closed event loop are no longer printed; others are.
    closed, other = (SimpleNamespace(object=None, exc_value=exc) for exc in (RuntimeError("Event loop is closed"),
                                                                            ValueError("something else")))
    sys.unraisablehook(closed)
    sys.unraisablehook(other)
    assert reported == [other]
    _saving_after_verify(monkeypatch, trainer, state, saves=100)
    obs = tmp_path / "obs.npy"
    np.save(obs, np.zeros((1, 4), np.float32))
    with pytest.raises(SystemExit) as exc:
        main(["act", str(tmp_path / "run"), "--task", "CartPole-v1", "--obs", str(obs)])
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and len(err) == 1 and "writing checkpoints faster than they can be read" in err[0]


def test_evaluate_reads_a_checkpoint_replaced_while_read(tmp_path, monkeypatch):
    """`mtdqn evaluate` of a run still training reads its newer checkpoint as load_agent does."""
    from mtdqn.train.evaluate_command import evaluate_run

    trainer, _, state = fake_run(tmp_path / "run")
    first = mtdqn.checkpoint.checkpoint_meta(tmp_path / "run")["iteration"]
    chunks = _saving_after_verify(monkeypatch, trainer, state, saves=1)
    result = evaluate_run(tmp_path / "run", episodes=1)
    assert result["iteration"] == 2 * first and chunks == [2]
    assert result["step"] == 2 * first * trainer.agent.cfg.num_envs  # eval.json names the step it evaluated


def test_acting_with_an_unfinished_run_says_so(tmp_path, capsys, monkeypatch):
    """act and evaluate of a run that has not finished (still training, or killed) add one note on stderr after
    their output: its checkpoint is not its end.  A finished run has none."""
    fake_run(tmp_path / "run")  # chunk 1 of 6: 200 of 1200 steps
    np.save(tmp_path / "obs.npy", np.zeros((2, 4), np.float32))
    act = ["act", str(tmp_path / "run"), "--task", "CartPole-v1", "--obs", str(tmp_path / "obs.npy")]
    for argv in (act, ["evaluate", str(tmp_path / "run"), "--episodes", "1"]):
        main(argv)
        captured = capsys.readouterr()
        assert captured.out and captured.err.splitlines() == [
            f"note: {tmp_path / 'run'} is unfinished: its checkpoint is at step 200 of 1,200"]
    # act (and play) name the checkpoint they read, not the one at exit; a run that finished meanwhile says so
    # (play said nothing of a run that finished while it drew its GIF from a checkpoint at 2,000 of 30,000)
    from mtdqn import deploy

    load = deploy.load_agent
    latest = tmp_path / "run" / "checkpoints" / "latest.json"

    def trained_on(run):
        agent = load(run)
        latest.write_text(json.dumps({**json.loads(latest.read_text()), "iteration": 250}))
        return agent

    record = latest.read_text()
    with monkeypatch.context() as patch:
        patch.setattr(deploy, "load_agent", trained_on)
        main(act)
        assert capsys.readouterr().err.splitlines() == [
            f"note: {tmp_path / 'run'} is unfinished: its checkpoint is at step 200 of 1,200"]
    latest.write_text(record)  # (an iteration of 250 beside chunk 1 is a corrupt record to a reader)
    (tmp_path / "run" / "summary.json").write_text("{}")  # and finished
    with monkeypatch.context() as patch:  # after a read of its checkpoint at step 1,000
        patch.setattr(deploy, "load_agent", lambda run: dataclasses.replace(load(run), iteration=250))
        main(act)
        assert capsys.readouterr().err.splitlines() == [
            f"note: {tmp_path / 'run'} was unfinished when read: the checkpoint used is at step 1,000 of 1,200 (the "
            "run has finished since)"]
    (tmp_path / "run" / "summary.json").unlink()
    # the run trains on and writes its next checkpoint as eval.json is written: the note names the checkpoint
    # evaluated (it named the newer one, re-read after the evaluation)
    latest = tmp_path / "run" / "checkpoints" / "latest.json"
    write_eval = RunDir.write_eval

    def and_a_newer_checkpoint(self, result):
        write_eval(self, result)
        latest.write_text(json.dumps({**json.loads(latest.read_text()), "iteration": 250}))

    monkeypatch.setattr(RunDir, "write_eval", and_a_newer_checkpoint)
    main(["evaluate", str(tmp_path / "run"), "--episodes", "1"])
    assert capsys.readouterr().err.splitlines() == [
        f"note: {tmp_path / 'run'} is unfinished: its checkpoint is at step 200 of 1,200"]
    latest.write_text(record)
    # a folder it cannot write eval.json into: the table first, then the error (it showed nothing)
    def refused(self, result):
        raise PermissionError(1, "Operation not permitted", str(tmp_path / "run" / "eval.json"))

    monkeypatch.setattr(RunDir, "write_eval", refused)
    with pytest.raises(SystemExit) as exc:
        main(["evaluate", str(tmp_path / "run"), "--episodes", "1"])
    captured = capsys.readouterr()
    assert exc.value.code == 1 and "CartPole-v1" in captured.out and "written:" not in captured.out
    assert captured.err.startswith("error: cannot write results: Operation not permitted")
    (tmp_path / "run" / "summary.json").write_text("{}")  # finished, its checkpoint its last (step 1,200)
    monkeypatch.setattr(deploy, "load_agent", lambda run: dataclasses.replace(load(run), iteration=300))
    main(act)
    assert capsys.readouterr().err == ""
