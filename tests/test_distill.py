"""Policy distillation: the losses and the action report against hand-computed numbers, a CartPole student that
matches its teacher, a student of two teachers, and bad input refused before anything is written."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from helpers import IMAGE, VECTOR, fake_run, garble

import mtdqn
from mtdqn.checkpoint import save_checkpoint
from mtdqn.cli import main
from mtdqn.config import DQNConfig, NetworkConfig, TrainConfig, config_hash, config_to_dict
from mtdqn.distill import DistillConfig, classification_report, distill
from mtdqn.distill.loop import student_greedy
from mtdqn.distill.report import report_markdown, share_seen
from mtdqn.distill.run import student_view
from mtdqn.distill.teachers import load_teachers, student_config
from mtdqn.evaluate import evaluate_params
from mtdqn.io import write_json
from mtdqn.losses import distill_ce, distill_kl
from mtdqn.networks import init_params, merge_shared, split_shared
from mtdqn.train.agent import make_agent
from mtdqn.train.loop import make_trainer, seed_keys
from mtdqn.rundir import RunDir
from mtdqn.train.evaluate_command import evaluate_run
from mtdqn.train.run import train

# What learns CartPole-v1 in 20k env steps with seed 0 (greedy 500 over 20 episodes, ~15 s on 2 cores); the
# host-loop learning test in test_gymnasium_path.py uses the same DQN settings.
TEACHER = TrainConfig(
    tasks=("CartPole-v1",), steps=20_000, seeds=1, seed=0, log_every=4_000, num_envs=4,
    network=NetworkConfig(hidden=(64, 64)),
    dqn=DQNConfig(lr=1e-3, tau=0.005, target_update_every=1, loss="mse", train_every=4, eps_fraction=0.25,
                  eps_end=0.02, buffer_size=20_000, learning_starts=1_000, batch_size=64),
)


@pytest.fixture(scope="module")
def cartpole_teacher(tmp_path_factory) -> tuple[Path, dict]:
    run = tmp_path_factory.mktemp("teacher") / "cartpole"
    summary = train(TEACHER, run, progress=False, eval_episodes=20).summary
    return run, summary


def untrained_run(run_dir: Path, tasks: tuple[str, ...], value_norm: str = "none") -> Path:
    """A run directory whose checkpoint holds freshly initialized networks (finite, but no training)."""
    cfg = TrainConfig(tasks=tasks, steps=400, log_every=400, seeds=1, network=NetworkConfig(hidden=(32,)),
                      dqn=DQNConfig(buffer_size=64, batch_size=16), value_norm=value_norm)
    trainer = make_trainer(make_agent(cfg))
    write_json(run_dir / "config.json", {"config": config_to_dict(cfg), "config_hash": config_hash(cfg)})
    save_checkpoint(run_dir, trainer.agent.cfg, trainer.init(seed_keys(trainer.agent.seeds)), 1,
                    {"options": {"checkpoint_every": 0, "eval_episodes": 2, "devices": 1}})
    return run_dir


def two_teachers(root: Path) -> tuple[Path, Path]:
    """Untrained teachers: a multi-task one and a single-task one with PopArt heads (its Q-values are read in
    reward units).  The tests that distil or evaluate teachers use these, so they share compiled programs."""
    return (untrained_run(root / "pair", ("CarOnHill-v0", "CartPole-v1")),
            untrained_run(root / "single", ("MountainCar-v0",), value_norm="popart"))


def digest(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


# ---- losses and the report, by hand ----

def test_distill_losses_against_hand_computed_values():
    q_student = jnp.asarray([[1.0, 2.0, 7.0]])  # third action padded: the mask hides its 7 and the teacher's 9
    q_teacher = jnp.asarray([[0.0, 0.5, 9.0]])
    mask = jnp.asarray([True, True, False])
    # teacher's greedy action is 1; -log softmax([1, 2])[1] = log(1 + e^-1)
    np.testing.assert_allclose(distill_ce(q_student, q_teacher, mask), np.log1p(np.exp(-1.0)), rtol=1e-6)
    p = np.exp([0.0, 0.5 / 0.1]) / np.exp([0.0, 0.5 / 0.1]).sum()  # softmax(q_teacher / T), T = 0.1
    log_s = np.array([1.0, 2.0]) - np.log(np.exp(1.0) + np.exp(2.0))
    np.testing.assert_allclose(distill_kl(q_student, q_teacher, mask, 0.1), np.sum(p * (np.log(p) - log_s)),
                               rtol=1e-5)
    assert float(distill_kl(q_teacher, q_teacher, mask, 1.0)) == pytest.approx(0.0, abs=1e-7)  # KL(p || p) = 0
    for loss in (lambda q: distill_ce(q, q_teacher, mask), lambda q: distill_kl(q, q_teacher, mask, 0.01)):
        grad = np.asarray(jax.grad(loss)(q_student))
        assert np.all(np.isfinite(grad)) and grad[0, 2] == 0.0  # a padded action gets no gradient, never NaN


def test_kl_at_a_tiny_temperature_keeps_the_teachers_real_actions():
    """Q-values of -100 and -150 at T = 1e-8 are logits of -1e10 and -1.5e10, below the padded action's -1e9:
    the padded action took the teacher's probability, and the loss and its gradient were 0."""
    q_teacher = jnp.asarray([[-100.0, -150.0, 0.0]])
    mask = jnp.asarray([True, True, False])
    q_student = jnp.zeros((1, 3))
    for temperature in (1e-2, 1e-8):  # the teacher puts all its probability on action 0: KL = log 2 from uniform
        np.testing.assert_allclose(distill_kl(q_student, q_teacher, mask, temperature), np.log(2.0), rtol=1e-6)
        grad = np.asarray(jax.grad(lambda q: distill_kl(q, q_teacher, mask, temperature))(q_student))
        np.testing.assert_allclose(grad, [[-0.5, 0.5, 0.0]], atol=1e-6)


def test_classification_report_against_hand_computed_values():
    # teacher (true) and student (predicted) actions over 6 states of a 4-action task; action 3 never occurs
    rep = classification_report([0, 0, 1, 1, 1, 2], [0, 1, 1, 1, 0, 1], num_actions=4)
    rows = {r["action"]: r for r in rep["actions"]}
    # action 0: tp 1, predicted 2, support 2 | action 1: tp 2, predicted 4, support 3 | action 2: tp 0, support 1
    want = {0: (1 / 2, 1 / 2, 1 / 2, 2), 1: (2 / 4, 2 / 3, 4 / 7, 3), 2: (0.0, 0.0, 0.0, 1), 3: (0.0, 0.0, 0.0, 0)}
    for a, (p, r, f1, support) in want.items():
        assert (rows[a]["precision"], rows[a]["recall"], rows[a]["f1"], rows[a]["support"]) == \
            pytest.approx((p, r, f1, support)), a
    # macro: over the actions that occur (0, 1, 2); weighted: by support (2, 3, 1, 0)
    assert [rep["macro avg"][k] for k in ("precision", "recall", "f1")] == pytest.approx([1 / 3, 7 / 18, 5 / 14])
    assert [rep["weighted avg"][k] for k in ("precision", "recall", "f1")] == pytest.approx([5 / 12, 1 / 2, 19 / 42])
    assert rep["accuracy"] == 0.5 and rep["macro avg"]["support"] == 6 == rep["n"]
    perfect = classification_report([1, 0, 1], [1, 0, 1], num_actions=2)
    assert perfect["macro avg"]["f1"] == perfect["weighted avg"]["f1"] == perfect["accuracy"] == 1.0
    # the markdown says which actions the macro average leaves out (its rows' mean is another number)
    task = {"teacher_return": 1.0, "teacher_return_std": 0.0, "student_return": 1.0, "student_return_std": 0.0,
            "random_return": 0.0, "normalized": 1.0, "agreement": 0.5}
    result = {"eval_episodes": 2, "holdout_states": 6, "tasks": {"T": {**task, "report": rep}}}
    assert rep["macro_actions"] == [0, 1, 2]
    assert "The macro average leaves out action 3: neither the teacher nor the student took it" in \
        report_markdown(result)
    result["tasks"]["T"]["report"] = perfect
    assert "leaves out" not in report_markdown(result)


def test_the_returns_table_keeps_the_teachers_order_and_says_when_normalized_is_undefined(capsys):
    """distill.json keeps its keys sorted: the terminal's table (printed from it) listed the tasks alphabetically,
    distill_report.md in the teachers' order; a teacher no better than random printed 'nan'."""
    from mtdqn.distill.report import print_report

    rep = classification_report([0, 1], [0, 1], num_actions=2)
    row = {"teacher_return": 1.0, "teacher_return_std": 0.0, "student_return": 1.0, "student_return_std": 0.0,
           "random_return": 0.0, "normalized": 1.0, "agreement": 1.0, "report": rep}
    result = {"eval_episodes": 2, "holdout_states": 2, "teachers": [{"tasks": ["CartPole-v1", "Acrobot-v1"]}],
              "tasks": {"Acrobot-v1": {**row, "random_return": 1.0, "normalized": float("nan")}, "CartPole-v1": row}}
    markdown = report_markdown(result)
    assert markdown.index("| CartPole-v1 |") < markdown.index("| Acrobot-v1 |")
    assert "| Acrobot-v1 | 1.0 ± 0.0 | 1.0 ± 0.0 | 1.0 | — (teacher = random) | 1.000 |" in markdown
    below = {**result, "tasks": {"CartPole-v1": {**row, "teacher_return": 11.9, "student_return": 11.3,
                                                 "random_return": 24.2, "normalized": 1.05}}}  # a stored older one
    assert "| CartPole-v1 | 11.9 ± 0.0 | 11.3 ± 0.0 | 24.2 | — (teacher below random) |" in report_markdown(below)
    assert "nan" not in markdown
    print_report(result)
    printed = capsys.readouterr().out
    assert printed.index("CartPole-v1") < printed.index("Acrobot-v1") and "nan" not in printed


@pytest.mark.slow
def test_student_view_meets_the_teachers_episodes(tmp_path):
    """The student's evaluation for a teacher's tasks plays exactly the teacher's episodes: a student whose slice
    for those tasks is the teacher's own network scores the teacher's returns, episode by episode, although the
    student lists another teacher's task first and pads more actions."""
    pair, single = two_teachers(tmp_path)
    teachers = load_teachers([single, pair])
    student = make_agent(student_config(teachers, DistillConfig(network=NetworkConfig(hidden=(32,)))))
    teacher = teachers[1]
    shared, teacher_parts = split_shared(teacher.agent.arch, teacher.params)

    @jax.jit  # one program: run eagerly, each operation of init_params and of the copies compiles on first use
    def planted(key):
        _, student_parts = split_shared(student.arch, init_params(student.arch, key))
        # The teacher's region of each per-task leaf: the student pads heads to MountainCar's 3 actions, the
        # teacher to 2, and the padded action is masked.
        student_parts = jax.tree.map(lambda s, t: s.at[(slice(1, 3), *map(slice, t.shape[1:]))].set(t),
                                     student_parts, teacher_parts)
        return merge_shared(shared, student_parts)

    view, view_params = student_view(student, planted(jax.random.PRNGKey(1)), (1, 2))
    one = lambda tree: jax.tree.map(lambda x: x[None], tree)  # noqa: E731
    want = evaluate_params(teacher.agent, one(teacher.params), 7, 3).total
    got = evaluate_params(view, one(view_params), 7, 3).total
    np.testing.assert_array_equal(got, want)
    assert len(np.unique(want[0, 1])) > 1  # CartPole's starts differ between episodes: a real check of the keys


# ---- learning ----

@pytest.mark.slow
@pytest.mark.parametrize("loss", ["ce", "kl"])
def test_cartpole_student_matches_its_teacher(cartpole_teacher, tmp_path, loss):
    """Default options (20k teacher steps, ~4.7k student updates). Measured, student seeds 0-3: held-out agreement
    0.960-0.980 (ce) and 0.972-0.982 (kl), student return >= 98% of the teacher's. An untrained student agrees on
    about half the states (2 actions) and a random policy scores ~24."""
    teacher_dir, teacher_summary = cartpole_teacher
    assert teacher_summary["final_eval"]["CartPole-v1"][0] >= 400  # the premise: a teacher worth copying
    before = digest(teacher_dir)
    out = tmp_path / "student"
    r = distill([teacher_dir], out, DistillConfig(loss=loss), progress=False)
    task = r.result["tasks"]["CartPole-v1"]
    assert task["agreement"] >= 0.95, task["report"]
    assert task["student_return"] >= 0.9 * task["teacher_return"], (task["student_return"], task["teacher_return"])
    assert task["random_return"] < 0.2 * task["teacher_return"]
    assert digest(teacher_dir) == before  # teachers are only read
    # an ordinary run directory: load_agent acts as the distilled network does
    agent = mtdqn.load_agent(out)
    obs = np.random.default_rng(0).uniform(-0.4, 0.4, (64, 4)).astype(np.float32)  # inside CartPole's bounds
    want = np.asarray(student_greedy(make_agent(RunDir(out).config()), r.params, jnp.asarray(obs)[None]))[0]
    np.testing.assert_array_equal(agent.act("CartPole-v1", obs), want)
    frame = pd.read_csv(out / "distill_report.csv")
    assert list(frame["row"]) == ["action 0", "action 1", "macro avg", "weighted avg"]
    assert json.loads((out / "distill.json").read_text())["tasks"]["CartPole-v1"]["agreement"] == task["agreement"]


@pytest.mark.slow
def test_student_of_two_teachers_runs_and_writes_its_tables(tmp_path, capsys):
    """Untrained teachers (the learning test above has a trained one): this is about the plumbing. One teacher is
    multi-task, the other single-task with PopArt heads (its Q-values are read in reward units): two_teachers.

    The multi-task teacher's Car-On-Hill starts at (-0.5, 0) and moves without noise: its held-out rollouts
    retrace the training ones. CartPole's random starts make its held-out states new. The report measures both
    and says so. (One distillation checks both: each costs a minute of compiling on two cores.)"""
    pair, single = two_teachers(tmp_path)
    out = tmp_path / "student"
    main(["distill", "--teachers", f"{pair},{single}", "--out", str(out), "--steps", "800",
          "--log-every", "400", "--learning-starts", "200", "--hidden", "32", "--eval-episodes", "3",
          "--holdout", "256", "--progress", "False"])
    printed = capsys.readouterr().out
    tasks = {"CarOnHill-v0": 2, "CartPole-v1": 2, "MountainCar-v0": 3}  # task: actions
    assert all(f"{task}: student vs teacher actions" in printed for task in tasks), printed
    assert "distill.json, distill_report.csv, distill_report.md" in printed.split(f"results: {out}  (")[1]
    result = json.loads((out / "distill.json").read_text())
    assert set(result["tasks"]) == set(tasks)  # (json keys are sorted)
    assert [t["tasks"] for t in result["teachers"]] == [["CarOnHill-v0", "CartPole-v1"], ["MountainCar-v0"]]
    for task, actions in tasks.items():
        rep = result["tasks"][task]["report"]
        assert len(rep["actions"]) == actions and rep["n"] == 256
        assert len(result["tasks"][task]["student_returns"]) == 3
    frame = pd.read_csv(out / "distill_report.csv")
    assert len(frame) == sum(actions + 2 for actions in tasks.values())  # per-action rows and the two averages
    md = (out / "distill_report.md").read_text()
    assert "| MountainCar-v0 |" in md and "## CartPole-v1: student vs teacher actions" in md
    agent = mtdqn.load_agent(out)
    assert agent.tasks == tuple(tasks)
    assert agent.act("MountainCar-v0", np.zeros((3, 2), np.float32)).shape == (3,)
    evaluated = evaluate_run(out, episodes=2)
    assert set(evaluated["tasks"]) == set(tasks)
    # held-out states: a fixed-start deterministic task's repeat the training ones, and the report says so
    car, pole, mcar = (result["tasks"][t] for t in tasks)
    assert car["fixed_start_deterministic"] and not pole["fixed_start_deterministic"]
    assert not mcar["fixed_start_deterministic"]
    assert car["holdout_in_training"] > 0.5 and pole["holdout_in_training"] == 0.0
    assert result["training_states"] == 800
    for text in (md, printed):
        assert f"CarOnHill-v0: {car['holdout_in_training']:.1%} of the held-out states also occur" in text
        assert "Its start is fixed and its dynamics deterministic" in text
        assert "CartPole-v1: 0.0% of the held-out states also occur" in text
    assert md.count("Its start is fixed") == 1


def test_share_seen_counts_exact_repeats():
    seen = np.array([[0.0, 1.0], [2.0, 3.0]], np.float32)
    states = np.array([[0.0, 1.0], [2.0, 3.0000002], [2.0, 3.0], [5.0, 5.0]], np.float32)
    assert share_seen(states, seen) == 0.5 and share_seen(states[:0], seen) == 0.0


# ---- bad input ----

def _no_checkpoint(root: Path) -> Path:
    run = root / "no-ckpt"
    run.mkdir()
    write_json(run / "config.json", {"config": config_to_dict(VECTOR), "config_hash": config_hash(VECTOR)})
    return run


def _corrupt(root: Path) -> Path:
    fake_run(root / "corrupt")
    garble(root / "corrupt")
    return root / "corrupt"


def _image_and_vector(root: Path) -> str:
    fake_run(root / "vector")
    fake_run(root / "image", IMAGE)
    return f"{root / 'vector'},{root / 'image'}"


def _one(root: Path) -> Path:
    fake_run(root / "t")
    return root / "t"


def _twice(root: Path) -> str:
    fake_run(root / "a")
    untrained_run(root / "b", ("CarOnHill-v0", "CartPole-v1"))  # two_teachers' pair
    return f"{root / 'a'},{root / 'b'}"


BAD = {  # id: (make the teachers -> --teachers value, extra argv, expected piece of the message)
    "image-and-vector": (_image_and_vector, [], "teachers have different observation kinds"),
    "no-checkpoint": (_no_checkpoint, [], "no checkpoint in"),
    "corrupt-checkpoint": (_corrupt, [], "does not match its SHA-256"),
    "not-a-run": (lambda root: root, [], "is not a run directory"),
    "task-in-two-teachers": (_twice, [], "task CartPole-v1 is taught by two teachers"),
    "teacher-listed-twice": (lambda root: f"{_one(root)},{root / 't'}", [], "twice (as "),  # was "two teachers"
    "temperature-zero": (_one, ["--loss", "kl", "--temperature", "0"],
                         "--temperature must be a finite number > 0"),
    "temperature-negative": (_one, ["--temperature", "-1"],
                             "--temperature must be a finite number > 0"),
    "steps-zero": (_one, ["--steps", "0"], "--steps must be > 0"),
    "no-updates": (_one, ["--steps", "1000", "--log-every", "1000", "--learning-starts", "1000"],
                   "no update would run: --steps 1,000 ends before the first update, after env step 1,004"),
    "steps-negative": (_one, ["--steps", "-3"], "--steps must be > 0"),
    "lr-nan": (_one, ["--lr", "nan"], "--lr must be a finite number"),
    "epsilon-out-of-range": (_one, ["--teacher-epsilon", "2"],
                             "--teacher-epsilon must be in [0, 1]"),
    "teacher-seed-absent": (_one, ["--teacher-seed", "9"],
                            "--teacher-seed 9 is not a seed of teacher"),
    "conditioned-student": (_one, ["--sharing", "conditioned"],
                            "--sharing conditioned is not supported"),
    "bad-student-network": (_one, ["--hidden", "0"],
                            "--hidden must be positive"),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, case):
    make, argv, message = BAD[case]
    teachers_root = tmp_path / "teachers"
    teachers_root.mkdir()
    teachers = make(teachers_root)
    before = digest(teachers_root)
    out = tmp_path / "student"
    with pytest.raises(SystemExit) as exc:
        main(["distill", "--teachers", str(teachers), "--out", str(out), *argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    assert not out.exists()  # nothing written in --out
    assert digest(teachers_root) == before  # teachers untouched


def test_out_may_not_be_a_teacher_or_an_existing_run(tmp_path, capsys):
    fake_run(tmp_path / "t")
    before = digest(tmp_path / "t")
    fake_run(tmp_path / "other")
    cases = [(["--out", str(tmp_path / "t"), "--force", "True"], "is the teacher run"),
             (["--out", str(tmp_path / "other")], "already holds a run")]
    for argv, message in cases:
        with pytest.raises(SystemExit) as exc:
            main(["distill", "--teachers", str(tmp_path / "t"), *argv])
        err = capsys.readouterr().err.strip().splitlines()
        assert exc.value.code == 2 and len(err) == 1 and message in err[0], err
    assert digest(tmp_path / "t") == before


def test_a_student_is_a_finished_run_that_cannot_be_resumed(tmp_path, capsys):
    """A student's directory ends with distill.json, not summary.json: `open_run` calls it finished and its
    `summary` says where its results are; `train --resume` refuses it in one line and writes nothing (it once
    trained it on as a DQN run, writing a summary with 0 env-steps/s and an empty metrics table)."""
    out = tmp_path / "student"
    fake_run(out)
    write_json(out / "distill.json", {"tasks": {}})
    run = mtdqn.open_run(out)
    assert run.finished and "finished" in repr(run) and "not finished" not in repr(run)
    with pytest.raises(mtdqn.ConfigError, match=r"is a distilled student: no training summary; .*distill.json"):
        run.summary
    before = sorted(p.name for p in out.rglob("*"))
    with pytest.raises(SystemExit) as exc:
        main(["train", "--resume", str(out), "--progress", "False"])
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and len(err) == 1 and "is a distilled student (`mtdqn distill`)" in err[0], err
    assert sorted(p.name for p in out.rglob("*")) == before
    (out / "distill.json").unlink()  # a distillation killed before its comparison: its record still says what it is
    record = json.loads((out / "config.json").read_text())
    write_json(out / "config.json", {**record, "distill": {"teachers": [], "options": {}}})
    with pytest.raises(mtdqn.ConfigError, match=r"is a distilled student \(`mtdqn distill`\), not a training run"):
        mtdqn.train(out=out, resume=True, progress=False)
    # distilling again into it (a killed `mtdqn distill` rerun) is told what the folder holds and what to do
    from mtdqn.rundir import RunDir

    with pytest.raises(mtdqn.ConfigError, match=r"already holds a run \(.*\); it is an unfinished distillation \(a "
                                                r"distillation does not resume: start it over\); pass --force True"):
        RunDir(out).check_new(force=False)


def test_a_distillation_of_few_updates_names_its_own_cadence(tmp_path):
    """A distillation updates once per vector step: its few-updates warning named --train-every, a flag distill
    does not have (found by a README walk-through).  Warned before anything is written."""
    import warnings

    import mtdqn
    from helpers import fake_run
    from mtdqn.errors import FewUpdatesWarning

    fake_run(tmp_path / "teacher")
    with warnings.catch_warnings():
        warnings.simplefilter("error", FewUpdatesWarning)
        with pytest.raises(FewUpdatesWarning, match=r"one every vector step of --num-envs 8 env steps per task "
                                                    r"after --learning-starts 990\)"):
            mtdqn.distill([tmp_path / "teacher"], tmp_path / "student", steps=1000, learning_starts=990,
                          log_every=1000, num_envs=8, progress=False)
    assert not (tmp_path / "student").exists()
