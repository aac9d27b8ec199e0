"""Greedy evaluation during training: evals.parquet, the final score, resume, studies."""

from __future__ import annotations

import dataclasses
import json
import warnings

import numpy as np
import pandas as pd
import pytest
from helpers import TINY, TINY_ARGV

from mtdqn.evaluate import EvalStream, eval_seed, evaluate_params
from mtdqn.rundir import EVAL_COLUMNS, RunDir, final_score_rule, final_score_steps, final_scores
from mtdqn.train.agent import make_agent
from mtdqn.train.loop import make_trainer, seed_keys
from mtdqn.train.run import train


@pytest.fixture(scope="module")
def run(tiny_run):  # TINY with eval_every 1000, trained once per session (conftest.py)
    return tiny_run


@pytest.mark.slow
def test_evaluations_every_n_steps_and_at_the_end(run):
    evals = pd.read_parquet(run.out_dir / "evals.parquet")
    assert list(evals.columns) == EVAL_COLUMNS
    assert sorted(evals["step"].unique()) == [1000, 2000]  # every 1000 steps; 2000 is the final evaluation
    assert len(evals) == 2 * len(TINY.tasks) * TINY.seeds
    assert (evals["episodes"] == 2).all()
    final = evals[evals["step"] == 2000]
    for task, per_seed in run.summary["final_eval"].items():
        got = final[final["task"] == task].sort_values("seed")["return_mean"].to_numpy()
        np.testing.assert_allclose(got, per_seed, rtol=1e-6)  # the last block is summary.json's final_eval
    acrobot = evals[evals["task"] == "Acrobot-v1"]
    assert (acrobot["discounted_mean"] >= acrobot["return_mean"] - 1e-4).all()  # -1 rewards: discounting shrinks
    # the evaluation at 1000 is timed apart from training, and both lie inside the run's wall time
    assert 0 < run.summary["eval_s"] < run.summary["wall_time_s"] - run.summary["compile_s"]


@pytest.mark.slow
def test_an_evaluation_is_the_policy_at_its_step(run):
    """The row at step 1000 is a greedy evaluation of the parameters after 1000 steps, with its own keys."""
    agent = make_agent(TINY)
    trainer = make_trainer(agent)
    state = trainer.init(seed_keys(agent.seeds))
    n = agent.derived.iters_per_chunk
    for chunk in range(2):
        state, _ = trainer.run_chunk(state, np.int32(chunk * n))
    want = evaluate_params(agent, state.params, eval_seed(TINY.seed, EvalStream.DURING_TRAINING), 2, step=1000)
    evals = pd.read_parquet(run.out_dir / "evals.parquet")
    first = evals[evals["step"] == 1000]
    for i, task in enumerate(TINY.tasks):
        got = first[first["task"] == task].sort_values("seed")
        np.testing.assert_allclose(got["return_mean"], want.total[:, i].mean(-1), rtol=1e-6)
        np.testing.assert_allclose(got["discounted_mean"], want.discounted[:, i].mean(-1), rtol=1e-6)


@pytest.mark.slow
def test_final_score_is_the_mean_of_the_last_evaluations_near_the_end(run):
    summary = run.summary
    assert summary["eval_every"] == summary["eval_every_used"] == 1000
    assert summary["final_score_steps"] == [2000]  # 1000 is not in the last 20% of 2000 steps: mid-training
    assert summary["final_score_evals"] == 1  # the count averaged (it said 3, the rule's cap)
    assert summary["final_score_rule"] == "mean-of-last-evals"
    evals = pd.read_parquet(run.out_dir / "evals.parquet")
    for task in TINY.tasks:
        for column, key in (("return_mean", "final_score"), ("discounted_mean", "final_score_discounted")):
            per_seed = evals[(evals["task"] == task) & (evals["step"] == 2000)].sort_values("seed")[column]
            np.testing.assert_allclose(summary[key][task], per_seed.to_numpy(), rtol=1e-6)


@pytest.mark.parametrize("steps, want", [
    ([10_000 * i for i in range(1, 16)], [130_000, 140_000, 150_000]),  # the quick preset: the last 3
    ([50_000, 100_000], [100_000]),  # a sparse schedule: 50k is mid-training, not final
    ([97_000, 98_000, 99_000, 100_000], [98_000, 99_000, 100_000]),
    ([100], [100]),  # only the final evaluation
])
def test_final_score_steps(steps, want):
    rows = [{"step": s, "task": "CartPole-v1", "seed": 0} for s in steps]
    assert final_score_steps(rows) == want


def test_restored_best_parameters_are_scored_by_their_final_evaluation_alone():
    rows = [{"step": s, "task": "CartPole-v1", "seed": 0} for s in (97_000, 98_000, 99_000, 100_000)]
    assert final_score_steps(rows, final_score_rule(True)) == [100_000]
    assert final_score_steps(rows, final_score_rule(False)) == [98_000, 99_000, 100_000]


@pytest.mark.slow
def test_with_patience_the_final_score_is_the_restored_best_ones_alone(tmp_path, capsys, monkeypatch):
    from mtdqn.cli import main
    from mtdqn.train.early_stop import EarlyStopping

    seen = []  # every evaluation early stopping weighs: (step, last, scores per seed)
    observe = EarlyStopping.observe
    monkeypatch.setattr(EarlyStopping, "observe", lambda self, scores, params, step, last=False: seen.append(
        (step, last, scores.tolist())) or observe(self, scores, params, step, last))
    out = tmp_path / "best"  # patience never runs out: training ends, each seed's best parameters are restored
    main(["train", *TINY_ARGV, "--eval-every", "500", "--patience", "50", "--eval-episodes", "2", "--out", str(out),
          "--progress", "False"])  # TINY: the suite's compiled program
    printed = capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert summary["early_stop"]["stopped_at"] is None and min(summary["early_stop"]["best_step"].values()) > 0
    # the last step's parameters are a candidate (they were not: a run improving to its end restored its
    # next-to-last evaluation's), the initial network's at step 500 (updates start after env step 600) is not,
    # and each seed keeps the first of its best evaluations
    assert [(step, last) for step, last, _ in seen] == [(500, False), (1000, False), (1500, False), (2000, True)]
    candidates = seen[1:]
    for s, seed in enumerate(summary["seeds"]):
        scores = [row[s] for _, _, row in candidates]
        assert summary["early_stop"]["best_score"][str(seed)] == pytest.approx(max(scores))
        assert summary["early_stop"]["best_step"][str(seed)] == candidates[scores.index(max(scores))][0]
    assert summary["final_score_rule"] == "restored-best-final-eval" and summary["final_score_steps"] == [2000]
    evals = pd.read_parquet(out / "evals.parquet")
    assert sorted(evals["step"].unique())[-3:] == [1000, 1500, 2000]  # the old rule would have mixed these
    for key, final in (("final_score", "final_eval"), ("final_score_discounted", "final_eval_discounted")):
        for task in TINY.tasks:
            assert summary[key][task] == pytest.approx(summary[final][task], rel=1e-6)
    assert "final score (the restored best's final evaluation)" in printed
    again = train(RunDir(out).config(), out, resume=True, progress=False)  # a finished run resumed: same rule
    assert again.summary["final_score_rule"] == "restored-best-final-eval"


def test_the_last_steps_evaluation_is_a_candidate_that_stops_nothing():
    """Out of patience at the run's last step: a run that trained its budget did not stop (stopped_at stays
    None: the summary's "ran to the end"), and those parameters are kept if best."""
    from mtdqn.train.early_stop import EarlyStopping

    es = EarlyStopping.start(patience=1, random={"T": 0.0}, n_seeds=2)
    assert not es.observe(np.array([1.0, 5.0]), {"w": np.zeros((2, 1), np.float32)}, 100)
    assert not es.observe(np.array([0.5, 4.0]), {"w": np.ones((2, 1), np.float32)}, 200, last=True)  # no seed
    assert es.stopped_at is None and (es.since >= 1).all()  # improved: out of patience, yet not stopped
    kept = EarlyStopping.start(patience=1, random={"T": 0.0}, n_seeds=2)
    kept.observe(np.array([1.0, 5.0]), {"w": np.zeros((2, 1), np.float32)}, 100)
    kept.observe(np.array([2.0, 4.0]), {"w": np.ones((2, 1), np.float32)}, 200, last=True)
    assert kept.best_step.tolist() == [200, 100]  # the last step's parameters kept where best
    np.testing.assert_array_equal(kept.best_params["w"], [[1.0], [0.0]])


def test_an_evaluation_before_the_first_update_is_no_candidate():
    """A walk-through's run stopped at step 3,000 having restored its untrained network (step 1,000, learning
    starting after it: 21.0 on CartPole) as each seed's best; nor do such evaluations use up patience."""
    from mtdqn.train.early_stop import EarlyStopping

    es = EarlyStopping(1, {"T": 0.0}, np.full(1, -np.inf), np.full(1, -1), np.zeros(1, np.int64), untrained_until=1000)
    assert not es.observe(np.array([9.0]), {"w": np.zeros((1, 1), np.float32)}, 1000)  # the initial network's
    assert es.best_step.tolist() == [-1] and es.since.tolist() == [0] and es.best_params is None
    assert not es.observe(np.array([5.0]), {"w": np.ones((1, 1), np.float32)}, 2000)
    assert es.observe(np.array([4.0]), {"w": np.ones((1, 1), np.float32)}, 3000)  # out of patience: stops
    assert es.best_step.tolist() == [2000]


def test_final_scores_average_the_chosen_steps():
    rows = [{"step": s, "task": t, "seed": seed, "return_mean": float(s + seed), "return_std": 0.0,
             "discounted_mean": 0.0, "episodes": 2} for s in (80, 90, 100) for t in ("A", "B") for seed in (0, 1)]
    got = final_scores(rows, ("A", "B"), [0, 1], [90, 100])
    assert got == {"A": [95.0, 96.0], "B": [95.0, 96.0]}


@pytest.mark.slow
def test_resuming_a_finished_run_keeps_one_final_evaluation(run, tmp_path, monkeypatch):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(run.out_dir, copy)
    said = []
    again = train(TINY, copy, resume=True, progress=False, announce=said.append)
    assert said[0].endswith("\nmtdqn: all 2,000 env steps per task trained (its latest checkpoint): evaluating it "
                            "again")  # not "resuming from env step 2,000 of 2,000"
    before = pd.read_parquet(run.out_dir / "evals.parquet")
    pd.testing.assert_frame_equal(pd.read_parquet(copy / "evals.parquet"), before)
    assert again.summary["eval_every"] == 1000 and again.summary["eval_episodes"] == 2  # the run's own options
    assert json.loads((copy / "config.json").read_text())["options"]["eval_every"] == 1000
    # evaluated again with another episode count, where its final score averages earlier evaluations too: said
    # (the final score silently averaged 5-, 5- and 20-episode evaluations); of its final one alone, nothing
    from mtdqn.errors import MtdqnWarning
    from mtdqn.train import run as run_module

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt
    with monkeypatch.context() as patch:  # a resume stopped before it wrote anything: config.json keeps the options
        patch.setattr(run_module, "drive", stopped)  # it resumes with (it stated the new ones, not yet in force)
        with pytest.raises(KeyboardInterrupt):
            train(TINY, copy, resume=True, progress=False, eval_episodes=3)
    assert json.loads((copy / "config.json").read_text())["options"]["eval_episodes"] == 2
    with warnings.catch_warnings():
        warnings.simplefilter("error", MtdqnWarning)
        train(TINY, copy, resume=True, progress=False, eval_episodes=3)  # final_score_steps [2000]: alone
    assert json.loads((copy / "config.json").read_text())["options"]["eval_episodes"] == 3  # once in force
    summary = json.loads((copy / "summary.json").read_text())  # as if 1,000 were in its last 20% (it is not)
    (copy / "summary.json").write_text(json.dumps({**summary, "final_score_steps": [1000, 2000]}))
    with pytest.warns(MtdqnWarning, match=r"final score will average its new final evaluation of 3 episodes with "
                                          r"the evaluations before it in its last 20% \(2 episodes each"):
        train(TINY, copy, resume=True, progress=False, eval_episodes=3)


@pytest.mark.slow
def test_without_eval_every_only_the_final_evaluation(tiny_run_final_eval_only):
    result = tiny_run_final_eval_only
    evals = pd.read_parquet(result.out_dir / "evals.parquet")
    assert evals["step"].unique().tolist() == [2000]
    assert result.summary["eval_every"] == 0 and result.summary["eval_s"] == 0  # none during training
    assert result.summary["final_score_evals"] == 1 and result.summary["final_score_steps"] == [2000]  # it said 3
    for task in TINY.tasks:
        assert result.summary["final_score"][task] == pytest.approx(result.summary["final_eval"][task])


def test_study_cells_evaluate_during_training(tmp_path):
    """A study's eval_every reaches every cell (tests/test_study.py checks the cells' evals.parquet)."""
    from mtdqn.studies import load_spec, resolve_spec
    from mtdqn.studies.runner import cell_configs

    path = tmp_path / "s.toml"
    path.write_text('tasks = ["CartPole-v1"]\nsteps = 6000\nseeds = 1\neval_every = 1500\n'
                    '[variants.shared]\nsharing = "shared"\n[variants.independent]\nsharing = "independent"\n')
    assert [cell.run_options.eval_every for cell in cell_configs(load_spec(path))] == [1500, 1500]
    path.write_text(path.read_text().replace("eval_every = 1500\n", ""))
    assert {cell.run_options.eval_every for cell in cell_configs(load_spec(path))} == {0}  # not given: final only
    quick = resolve_spec("quick").run_options
    assert {cell.run_options.eval_every for cell in cell_configs(resolve_spec("quick"))} == {quick.eval_every}
    assert quick.eval_every > 0


@pytest.mark.slow
def test_train_command_stops_early_and_tests_at_the_end(tmp_path, capsys):
    from mtdqn.cli import main

    out = tmp_path / "es"
    main(["train", *TINY_ARGV, "--eval-every", "500", "--patience", "1", "--test-episodes", "3",
          "--eval-episodes", "2", "--out", str(out), "--progress", "False"])  # TINY: the suite's compiled program
    printed = capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert "early stopping:" in printed and "test evaluation (3 greedy episodes" in printed
    assert set(summary["early_stop"]["best_step"].values()) <= {500, 1000, 1500, 2000}  # evaluations' steps
    assert (out / "test_eval.json").is_file()
    assert json.loads((out / "config.json").read_text())["options"]["patience"] == 1


@pytest.mark.slow
def test_a_resume_keeps_the_evaluations_its_checkpoint_recorded_whatever_its_cadence(tmp_path, monkeypatch):
    """What a resume's evals.parquet must hold is what its checkpoint recorded (``evals_until``), not what the
    resumed cadence would have made: a run stopped without evaluations and resumed with --eval-every was refused
    as having lost evals.parquet; one whose evals.parquet was deleted resumed to half its rows, exit 0."""
    import mtdqn.train.drive as drive_module
    from mtdqn.errors import ConfigError

    show = drive_module._show_rate

    def stop_at_1000(bar, task_id, trainer, m, step, *args):
        show(bar, task_id, trainer, m, step, *args)
        if step >= 1000:
            raise KeyboardInterrupt

    for name, every in (("plain", 0), ("evaluated", 500)):
        with monkeypatch.context() as patch:
            patch.setattr(drive_module, "_show_rate", stop_at_1000)
            with pytest.raises(KeyboardInterrupt):
                train(TINY, tmp_path / name, progress=False, eval_every=every, eval_episodes=2, checkpoint_every=500)
    latest = lambda name: json.loads((tmp_path / name / "checkpoints" / "latest.json").read_text())  # noqa: E731
    assert latest("plain")["evals_until"] == 0 and latest("evaluated")["evals_until"] == 1000
    resumed = train(TINY, tmp_path / "plain", resume=True, progress=False, eval_every=500)
    evals = pd.read_parquet(tmp_path / "plain" / "evals.parquet")
    assert resumed.summary["eval_every"] == 500 and sorted(set(evals["step"])) == [1500, 2000]  # from here on
    (tmp_path / "evaluated" / "evals.parquet").unlink()
    with pytest.raises(ConfigError, match=r"evals.parquet is missing: the run's history up to its checkpoint "
                                          r"\(step 1,000\) is lost"):
        train(TINY, tmp_path / "evaluated", resume=True, progress=False)


def test_a_finetunings_evaluations_before_its_first_update_use_up_no_patience():
    """A fine-tuning's start is a candidate (its trunk is trained), but its evaluations before the first update
    counted against --patience: with --learning-starts 5,000, --eval-every 1,000 and --patience 3 a run stopped at
    step 4,000 without one update, its start restored as the best (a review's run)."""
    from mtdqn.train.early_stop import EarlyStopping

    es = dataclasses.replace(EarlyStopping.start(patience=3, random={"T": 0.0}, n_seeds=1), patient_until=5000)
    params = {"w": np.zeros((1, 1), np.float32)}
    assert [es.observe(np.array([9.0 - step / 1000]), params, step) for step in (1000, 2000, 3000, 4000, 5000)] \
        == [False] * 5  # the start the best, as its untrained...
    assert es.best_step.tolist() == [1000] and es.since.tolist() == [0]  # ...and none used up patience
    assert [es.observe(np.array([1.0]), params, step) for step in (6000, 7000, 8000)] == [False, False, True]


@pytest.mark.parametrize("source, candidates_from", [("", 5000), ("/runs/pretrained", -1)])
def test_early_stopping_is_anchored_with_the_first_update_for_training_and_fine_tuning(monkeypatch, source,
                                                                                        candidates_from):
    """Training: evaluations before the first update are neither candidates nor use up patience; fine-tuning:
    they are candidates, and use up none either."""
    from types import SimpleNamespace

    from mtdqn.config import derive
    from mtdqn.train import early_stop

    cfg = dataclasses.replace(TINY, num_envs=1, dqn=dataclasses.replace(TINY.dqn, learning_starts=5000, train_every=1))
    agent = SimpleNamespace(cfg=dataclasses.replace(cfg, finetune=dataclasses.replace(cfg.finetune, source=source)),
                            derived=derive(cfg), task_set=SimpleNamespace(names=cfg.tasks), seeds=[0])
    monkeypatch.setattr(early_stop, "evaluate_params", lambda *args, **kwargs: SimpleNamespace(
        total=np.zeros((1, len(cfg.tasks)))))
    es = early_stop.EarlyStopping.anchored(agent, None, patience=3, episodes=2)
    assert (es.untrained_until, es.patient_until) == (candidates_from, 5000)
