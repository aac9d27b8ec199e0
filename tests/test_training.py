"""The compiled loop: determinism, seeds that differ, one compile, the run directory."""

from __future__ import annotations

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from helpers import TINY

from mtdqn.config import check_new_run, derive
from mtdqn.errors import ConfigError
from mtdqn.train.agent import make_agent
from mtdqn.train.loop import make_trainer, seed_keys
from mtdqn.train.summary import TRAINING_PROCESS_FIELDS

@pytest.fixture(scope="module")
def two_runs(tiny_run, tiny_run_final_eval_only):  # trained once per session (conftest.py)
    """The same config and seed, one with evaluations during training and one without."""
    return tiny_run, tiny_run_final_eval_only


def _leaves(tree):
    return [np.asarray(x) for x in jax.tree.leaves(tree)]


@pytest.mark.slow
def test_same_seed_gives_bit_identical_parameters(two_runs):
    """Evaluations during training use their own keys: they change nothing of training."""
    a, b = two_runs
    for x, y in zip(_leaves(a.state.params), _leaves(b.state.params)):
        np.testing.assert_array_equal(x, y)
    pd.testing.assert_frame_equal(a.metrics, b.metrics)


@pytest.mark.slow
def test_different_seeds_differ(two_runs):
    a, _ = two_runs
    kernel = np.asarray(a.state.params["heads"]["kernel"])  # (seeds, tasks, features, actions)
    assert not np.allclose(kernel[0], kernel[1])
    returns = a.metrics.pivot_table(index=["step", "task"], columns="seed", values="episode_return")
    assert not np.allclose(returns[0].to_numpy(), returns[1].to_numpy(), equal_nan=True)


@pytest.mark.slow
def test_run_directory_contents(two_runs):
    a, _ = two_runs
    out = a.out_dir
    for name in ("config.json", "metrics.parquet", "metrics.csv", "summary.json", "grad_tasks.parquet",
                 "grad_pairs.parquet", "cka.parquet", "checkpoints/latest.json"):
        assert (out / name).exists(), name
    assert any((out / "tb").iterdir())
    config = json.loads((out / "config.json").read_text())
    assert {"config", "config_hash", "mtdqn_version", "git_revision"} <= set(config)
    metrics = pd.read_parquet(out / "metrics.parquet")
    assert {"step", "task", "seed", "episode_return", "episode_length", "loss", "q_mean", "epsilon"} <= set(metrics)
    assert len(metrics) == 4 * 2 * 2  # chunks x tasks x seeds
    summary = json.loads((out / "summary.json").read_text())
    assert summary["params_shared"] > 0 and summary["params_total"] > summary["params_shared"]
    assert len(summary["final_eval"]["CartPole-v1"]) == 2
    pairs = pd.read_parquet(out / "grad_pairs.parquet")
    assert pairs["cosine"].between(-1.0001, 1.0001).all()
    assert pairs["conflict_rate"].between(0.0, 1.0).all()


@pytest.mark.slow
def test_run_chunk_compiles_once():
    trainer = make_trainer(make_agent(TINY))
    state = trainer.init(seed_keys([0, 1]))
    n = trainer.agent.derived.iters_per_chunk
    for chunk in range(3):
        state, _ = trainer.run_chunk(state, jnp.int32(chunk * n))
    assert trainer.chunk._cache_size() == 1


@pytest.mark.slow
@pytest.mark.parametrize("tasks", [("SpaceInvaders-MinAtar", "Breakout-MinAtar"),
                                   ("CartPole-v1", "Acrobot-v1", "MountainCar-v0")])
def test_a_chunk_returns_the_signature_it_takes(tasks):
    """Some gymnax resets leave counters weakly typed, and a step can return one strongly typed (Space Invaders'
    alien_move_timer); a fresh state, the state after a chunk and a restored one (always strong) must be one
    signature, or ``jax.jit`` traces and compiles the chunk once for each.  Shapes only (nothing compiled)."""
    trainer = make_trainer(make_agent(dataclasses.replace(TINY, tasks=tasks, seeds=1)))
    fresh = jax.eval_shape(trainer.init, seed_keys([0]))
    after, _ = jax.eval_shape(trainer.run_chunk, fresh, jnp.int32(0))
    signature = lambda tree: jax.tree.map(lambda x: (x.shape, x.dtype, x.weak_type), tree)  # noqa: E731
    assert signature(after) == signature(fresh)
    assert not any(x.weak_type for x in jax.tree.leaves(fresh))  # as a checkpoint restores it

@pytest.mark.slow
def test_epsilon_and_updates_follow_the_schedule(two_runs):
    """Each row's epsilon is the linear schedule at the chunk's last iteration; updates start on time."""
    a, _ = two_runs
    d, dqn = derive(TINY), TINY.dqn
    last_iters = np.arange(1, d.num_chunks + 1) * d.iters_per_chunk - 1
    want = dqn.eps_start + np.clip(last_iters / d.eps_decay_iters, 0, 1) * (dqn.eps_end - dqn.eps_start)
    eps = a.metrics.groupby("step")["epsilon"].first().to_numpy()
    np.testing.assert_allclose(eps, want, rtol=1e-6)
    assert eps[-1] == pytest.approx(dqn.eps_end)  # 0.9 of the run: the schedule ends inside the last chunk
    # one update per vector step (train_every = num_envs) from learning_starts on, for every seed
    expected_updates = d.total_iters - -(-dqn.learning_starts // TINY.num_envs)
    assert np.asarray(a.state.updates).tolist() == [expected_updates] * TINY.seeds


def test_rules_for_new_runs_do_not_lock_out_old_runs():
    """Runs made before the new-run rules (a Polyak step every N updates, train_every not a multiple of the
    envs) are refused as new runs, but still build an agent to evaluate or resume, with their old rounding."""
    old = dataclasses.replace(TINY, num_envs=8, dqn=dataclasses.replace(TINY.dqn, target_update_every=1000,
                                                                       tau=0.005, train_every=4))
    with pytest.raises(ConfigError, match="leaves the target far behind"):
        check_new_run(old)
    with pytest.raises(ConfigError, match="not a multiple of --num-envs 8"):
        check_new_run(dataclasses.replace(old, dqn=dataclasses.replace(old.dqn, tau=1.0)))
    agent = make_agent(old)
    assert agent.derived.train_every_iters == 1  # round(4 / 8) -> at least one, as such runs were trained


def test_train_takes_a_new_runs_options_whole_and_single_ones_over_them(tmp_path):
    """``train(cfg, out, options, **given)``: ``given`` over ``options`` (each refused value reaches the check,
    from either), and a resumed run takes no ``options`` (it keeps its stored ones).  Refused before anything
    is written; that a run made with ``options`` records and uses them, the study cells show (test_study)."""
    from mtdqn.runoptions import RunOptions
    from mtdqn.train.run import train

    with pytest.raises(ConfigError, match="--eval-episodes must be > 0, got 0"):
        train(TINY, tmp_path / "a", RunOptions(eval_episodes=0), progress=False)
    with pytest.raises(ConfigError, match="--eval-episodes must be > 0, got 0"):
        train(TINY, tmp_path / "b", RunOptions(eval_episodes=3), eval_episodes=0, progress=False)
    with pytest.raises(ConfigError, match="--patience 2 counts greedy evaluations"):
        train(TINY, tmp_path / "c", RunOptions(patience=2), eval_every=0, progress=False)
    with pytest.raises(ConfigError, match="a resumed run keeps the options it was started with"):
        train(TINY, tmp_path / "d", RunOptions(), resume=True, progress=False)
    assert not any(tmp_path.iterdir())


@pytest.mark.slow
def test_explicit_run_options_on_resume_are_honoured(two_runs, tmp_path):
    """`--eval-episodes 10` on resume is used even though 10 is also the default (the run stored 2)."""
    import shutil

    from mtdqn.cli import main

    run = tmp_path / "run"
    shutil.copytree(two_runs[0].out_dir, run)
    before = json.loads((run / "summary.json").read_text())
    assert before["eval_episodes"] == 2 and before["env_steps_per_s"] > 0
    main(["train", "--resume", str(run), "--eval-episodes", "10", "--progress", "False"])
    after = json.loads((run / "summary.json").read_text())
    assert after["eval_episodes"] == 10
    # nothing trained on this resume: the timings stay those of the process that trained the run
    assert {k: after[k] for k in TRAINING_PROCESS_FIELDS} == {k: before[k] for k in TRAINING_PROCESS_FIELDS}
    assert json.loads((run / "config.json").read_text())["options"]["eval_episodes"] == 10  # not a stale copy
    main(["train", "--resume", str(run), "--progress", "False"])  # not given: the run's own (stored 2)
    assert json.loads((run / "summary.json").read_text())["eval_episodes"] == 2


@pytest.mark.slow
def test_evaluate_command_writes_eval_json_and_repeats_exactly(two_runs, tmp_path, capsys):
    import shutil

    from mtdqn.cli import main

    run = tmp_path / "run"
    shutil.copytree(two_runs[0].out_dir, run)
    main(["evaluate", str(run), "--episodes", "3"])
    first = json.loads((run / "eval.json").read_text())
    assert first["episodes"] == 3 and first["epsilon"] == 0.0 and set(first["tasks"]) == set(TINY.tasks)
    for task in TINY.tasks:
        per_seed = first["tasks"][task]["per_seed"]
        assert set(per_seed) == {"0", "1"} and all(len(v["returns"]) == 3 for v in per_seed.values())
        assert first["tasks"][task]["mean_over_seeds"] == pytest.approx(np.mean([v["mean"] for v in per_seed.values()]))
    assert "CartPole-v1" in capsys.readouterr().out
    main(["evaluate", str(run), "--episodes", "3"])
    assert json.loads((run / "eval.json").read_text()) == first  # the same keys: the same episodes


@pytest.mark.slow
def test_a_run_trained_on_more_devices_than_here_still_evaluates(two_runs, tmp_path, monkeypatch):
    """Trained on 2 devices, evaluated where only one exists: the same returns (evaluation ignores the layout)."""
    import shutil

    from mtdqn.train.evaluate_command import evaluate_run

    run = tmp_path / "run"
    shutil.copytree(two_runs[0].out_dir, run)
    assert json.loads((run / "checkpoints" / "latest.json").read_text())["options"]["devices"] == 2
    both = evaluate_run(run, episodes=2)
    monkeypatch.setattr(jax, "local_device_count", lambda *a, **k: 1)
    one = evaluate_run(run, episodes=2)
    for task in TINY.tasks:
        for seed in ("0", "1"):
            np.testing.assert_allclose(one["tasks"][task]["per_seed"][seed]["returns"],
                                       both["tasks"][task]["per_seed"][seed]["returns"])
