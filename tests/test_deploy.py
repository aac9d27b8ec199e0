"""Acting from a checkpoint: the loaded network is the trained one, and bad input is one line."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest
from helpers import IMAGE, VECTOR, fake_run

import mtdqn
from mtdqn.checkpoint import load_checkpoint
from mtdqn.cli import main
from mtdqn.errors import ConfigError
from mtdqn.networks import q_values
from mtdqn.value_norm import unnormalize


POPART = dataclasses.replace(VECTOR, value_norm="popart")


@pytest.mark.parametrize("cfg", [VECTOR, IMAGE, POPART], ids=["vector", "image", "popart"])
def test_loaded_agent_acts_as_the_trained_network(tmp_path, cfg):
    """Greedy actions and Q-values (in reward units) equal the full network's on the padded task set, per seed."""
    trainer, abstract, state = fake_run(tmp_path, cfg)
    full, _ = load_checkpoint(tmp_path, trainer, abstract)
    agent = mtdqn.load_agent(tmp_path)
    ts = trainer.agent.task_set
    rng = np.random.default_rng(0)
    for i, task in enumerate(ts.tasks):
        obs = rng.integers(0, 2, (5, *task.obs_shape)).astype(np.float32)  # the task's own, unpadded shape
        padded = np.zeros((len(ts), 5, *ts.obs_shape), np.float32)
        padded[i, ..., : task.obs_shape[-1]] = obs
        for s, seed in enumerate(trainer.agent.seeds):
            q_all = q_values(trainer.agent.arch, jax.tree.map(lambda x: x[s], full.params), padded)
            if cfg.value_norm == "popart":
                q_all = unnormalize(jax.tree.map(lambda x: x[s], full.value_norm), q_all)
            q_all = np.asarray(q_all)
            want = q_all[i, :, : task.num_actions]
            np.testing.assert_allclose(agent.q_values(task.spec, obs, seed), want, rtol=1e-5, atol=1e-5)
            np.testing.assert_array_equal(agent.act(task.spec, obs, seed), want.argmax(-1))
        assert agent.act(task.spec, obs[0]).shape == ()  # one observation in, one action out


def test_act_command_and_its_bad_input(tmp_path, capsys):
    fake_run(tmp_path / "run")
    obs = tmp_path / "obs.npy"
    np.save(obs, np.zeros((3, 4), np.float32))  # three CartPole observations
    main(["act", str(tmp_path / "run"), "--task", "CartPole-v1", "--obs", str(obs)])
    lines = capsys.readouterr().out.strip().splitlines()
    assert [ln.split(":")[0] for ln in lines] == ["seed 0", "seed 1"] and all(len(ln.split()) == 5 for ln in lines)
    np.save(tmp_path / "wrong.npy", np.zeros((3, 5), np.float32))
    (tmp_path / "junk.npy").write_text("not an array")
    cases = [
        (["--task", "Pong-v0", "--obs", str(obs)], "is not one of this run's tasks"),
        (["--task", "CartPole-v1", "--obs", str(tmp_path / "wrong.npy")], "must have shape (batch, 4) or (4)"),
        (["--task", "CartPole-v1", "--obs", str(tmp_path / "junk.npy")], "not a readable .npy array"),
        (["--task", "CartPole-v1", "--obs", str(obs), "--seed", "7"], "seed 7 is not one of this run's seeds"),
    ]
    for argv, message in cases:
        with pytest.raises(SystemExit) as exc:
            main(["act", str(tmp_path / "run"), *argv])
        err = capsys.readouterr().err.strip().splitlines()
        assert exc.value.code == 2 and len(err) == 1 and message in err[0], err
    with pytest.raises(ConfigError, match="is not a run directory"):
        mtdqn.load_agent(tmp_path / "nothing")
