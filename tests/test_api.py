"""The Python API (mtdqn.train, mtdqn.open_run, ...): the CLI's options and one-line errors, one code path with
the CLI (the same config gives the same numbers), JAX-free until used."""

from __future__ import annotations

import importlib
import json
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pandas as pd
import pytest
from helpers import TUNE_SMALL, fake_run

import mtdqn
from mtdqn.cli import main
from mtdqn.config import DQNConfig, NetworkConfig, TrainConfig, config_to_dict
from mtdqn.rundir import RUN_FILES

ROOT = Path(__file__).resolve().parent.parent

# Two tasks, one seed, 1,000 env steps per task in two windows: the smallest run with updates, evaluations,
# gradient diagnostics and CKA.
SMALL = dict(tasks=["CartPole-v1", "Acrobot-v1"], steps=1000, seeds=1, log_every=500, hidden=(16,), adapter_width=8,
             learning_starts=200, buffer_size=1000, batch_size=16, eval_every=500, eval_episodes=2)
SMALL_ARGV = ["--tasks", "CartPole-v1", "Acrobot-v1", "--steps", "1000", "--seeds", "1", "--log-every", "500",
              "--hidden", "16", "--adapter-width", "8", "--learning-starts", "200", "--buffer-size", "1000",
              "--batch-size", "16", "--eval-every", "500", "--eval-episodes", "2", "--progress", "False"]
SMALL_CONFIG = TrainConfig(tasks=("CartPole-v1", "Acrobot-v1"), steps=1000, seeds=1, log_every=500,
                           network=NetworkConfig(hidden=(16,), adapter_width=8),
                           dqn=DQNConfig(learning_starts=200, buffer_size=1000, batch_size=16))


def test_importing_mtdqn_starts_no_jax_and_opening_a_run_neither():
    code = ("import sys, mtdqn; mtdqn.ConfigError; mtdqn.open_run; mtdqn.Study; "
            "assert 'jax' not in sys.modules, 'jax imported'; print(sorted(mtdqn.__all__))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         env={"PYTHONPATH": str(ROOT), "PATH": ""})
    assert out.returncode == 0, out.stderr
    for name in ("train", "study", "finetune", "extend", "distill", "open_run", "open_study", "register_task"):
        assert name in out.stdout


def test_the_public_names_are_documented_and_typed():
    import inspect
    import pydoc

    text = pydoc.render_doc(mtdqn, renderer=pydoc.plaintext)
    for line in ("study(preset_or_spec", "register_task(name", "open_run(path", "class Run", "mtdqn.train(tasks="):
        assert line in text, line
    assert (ROOT / "mtdqn" / "py.typed").is_file()
    for name in ("train", "study", "finetune", "extend", "distill", "open_run", "open_study", "register_task", "play"):
        fn = inspect.unwrap(getattr(mtdqn, name))  # train, finetune, distill, play: modules callable as the function
        assert fn.__doc__ and "return" in fn.__annotations__, name
    assert list(inspect.signature(mtdqn.train).parameters)[:4] == ["tasks", "steps", "seeds", "out"]
    importlib.import_module("mtdqn.train.run")  # importing the training modules leaves the names callable

    assert callable(mtdqn.train) and callable(mtdqn.finetune) and callable(mtdqn.distill)


# (id, keyword arguments of mtdqn.train, the same as `mtdqn train` flags)
BAD = [
    ("lr-negative", {"lr": -1.0}, ["--lr", "-1"]),
    ("batch-exceeds-buffer", {"batch_size": 64, "buffer_size": 32}, ["--batch-size", "64", "--buffer-size", "32"]),
    ("unknown-task", {"tasks": ["CartPol-v1"]}, ["--tasks", "CartPol-v1"]),
    ("patience-without-eval-every", {"patience": 2}, ["--patience", "2"]),
    ("eval-episodes-zero", {"eval_episodes": 0}, ["--eval-episodes", "0"]),
    ("train-every-not-a-multiple", {"train_every": 6}, ["--train-every", "6"]),
    ("no-update", {"steps": 1000, "log_every": 1000}, ["--steps", "1000", "--log-every", "1000"]),
]


@pytest.mark.parametrize("kwargs, argv", [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_a_bad_option_raises_the_line_the_cli_prints(tmp_path, capsys, kwargs, argv):
    with pytest.raises(mtdqn.ConfigError) as exc:
        mtdqn.train(out=tmp_path / "api", progress=False, **kwargs)
    with pytest.raises(SystemExit):
        main(["train", *argv, "--out", str(tmp_path / "cli"), "--progress", "False"])
    assert capsys.readouterr().err.strip() == f"error: {' '.join(str(exc.value).split())}"
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("kwargs, expected", [
    ({"lrr": 0.1}, "unknown option 'lrr'; did you mean 'lr'?"),
    ({"sharin": "independent"}, "did you mean 'sharing'?"),
    ({"learning_rate": 1e-3}, "unknown option 'learning_rate'; did you mean 'lr'?"),  # not learning_starts
    ({"lr": "fast"}, "--lr: expected float, got 'fast'"),
    ({"hidden": 64}, "--hidden: expected a list of int"),
    ({"eval_every": 1.5}, "--eval-every: expected int, got 1.5"),
])
def test_an_unknown_or_mistyped_option_is_one_line(tmp_path, kwargs, expected):
    with pytest.raises(mtdqn.ConfigError, match=None) as exc:
        mtdqn.train(out=tmp_path / "api", **kwargs)
    assert expected in str(exc.value)
    assert not (tmp_path / "api").exists()


@pytest.mark.parametrize("kwargs, expected", [
    ({"lora": "4"}, "--lora: expected int or None, got '4'"),
    ({"lora": 2.5}, "--lora: expected int or None, got 2.5"),
    ({"trunk_lr": "x"}, "--trunk-lr: expected float, got 'x'"),
    ({"freeze": 3}, "--freeze: expected str, got 3"),
    ({"keep_heads": "yes"}, "--keep-heads: expected bool, got 'yes'"),
])
def test_a_mistyped_finetune_keyword_is_one_line(tmp_path, kwargs, expected):
    """finetune's own keywords are type-checked as the flat options are: they raised TypeError and
    AttributeError from inside the transfer (``lora="4"``, ``freeze=3``), or trained (``keep_heads="yes"``)."""
    fake_run(tmp_path / "src")
    with pytest.raises(mtdqn.ConfigError) as exc:
        mtdqn.finetune(tmp_path / "src", tasks=["CartPole-v1"], out=tmp_path / "ft", **kwargs)
    assert str(exc.value) == expected
    assert not (tmp_path / "ft").exists()


def test_resume_refuses_train_options_as_the_cli_does(tmp_path, capsys):
    fake_run(tmp_path / "run")
    with pytest.raises(mtdqn.ConfigError, match=r"drop --steps, --lr \(or start a new run with --out\)") as exc:
        mtdqn.train(out=tmp_path / "run", resume=True, steps=5000, lr=0.1)
    with pytest.raises(SystemExit):
        main(["train", "--resume", str(tmp_path / "run"), "--steps", "5000", "--lr", "0.1"])
    assert capsys.readouterr().err.strip() == f"error: {exc.value}"


@pytest.mark.parametrize("call, expected", [
    (lambda tmp: mtdqn.train(tasks=["CartPole-v1"], out=123), "out: expected a path (str or pathlib.Path), got 123"),
    (lambda tmp: mtdqn.tune([1, 2]), "tune: expected a preset's name, a .toml file's path or a table (dict), got "
                                     "[1, 2]"),
    (lambda tmp: mtdqn.study(3), "study: expected a preset's name, a .toml file's path or a table (dict), got 3"),
    (lambda tmp: mtdqn.tune(TUNE_SMALL, out=4.5), "out: expected a path (str or pathlib.Path), got 4.5"),
    (lambda tmp: mtdqn.tune({**TUNE_SMALL, "options": [1, 2]}),
     "tune: [options]: expected a table of option = value, got [1, 2]"),
    (lambda tmp: mtdqn.tune({**TUNE_SMALL, "name": "../evil"}, out=tmp / "t"),
     "tune: name: expected letters, digits, '_.+-' (it names folders and the storage's study), got '../evil'"),
    (lambda tmp: mtdqn.tune({**TUNE_SMALL, "name": ""}, out=tmp / "t"), "tune: name: expected letters"),
    (lambda tmp: mtdqn.finetune(tmp / "src", tasks=["CartPole-v1"], out=["x"]), "out: expected a path"),
    (lambda tmp: mtdqn.distill(["", tmp / "src"], out=tmp / "st"), "--teachers: an empty path"),
    # force="False" is truthy: it overwrote a run, silently; resume="no" resumed
    (lambda tmp: mtdqn.train(tasks=["CartPole-v1"], out=tmp / "r", force="False"),
     "force: expected True or False, got 'False'"),
    (lambda tmp: mtdqn.train(out=tmp / "r", resume="no"), "resume: expected True or False, got 'no'"),
    (lambda tmp: mtdqn.train(tasks=["CartPole-v1"], out=tmp / "r", announce="x"),
     "announce: expected a callable (e.g. print) or None, got 'x'"),
    (lambda tmp: mtdqn.finetune(tmp / "src", tasks=["CartPole-v1"], out=tmp / "f", progress=1),
     "progress: expected True or False, got 1"),
    (lambda tmp: mtdqn.distill([tmp / "src"], out=tmp / "st", force="yes"), "force: expected True or False"),
    (lambda tmp: mtdqn.study("quick", out=tmp / "s", devices="2"), "devices: expected an int >= 0, got '2'"),
    (lambda tmp: mtdqn.study("quick", out=tmp / "s", devices=-1), "--devices must be >= 0"),
    (lambda tmp: mtdqn.evaluate(123), "run: expected a path (str or pathlib.Path), got 123"),
    (lambda tmp: mtdqn.load_agent(5), "run_dir: expected a path (str or pathlib.Path), got 5"),
    (lambda tmp: mtdqn.play(None, "CartPole-v1"), "run: expected a path (str or pathlib.Path), got None"),
    (lambda tmp: mtdqn.distill([5], out=tmp / "st"), "teachers: expected a path (str or pathlib.Path), got 5"),
    (lambda tmp: mtdqn.distill(5, out=tmp / "st"), "teachers: expected a run's path or a list of them, got 5"),
    (lambda tmp: mtdqn.play(tmp / "r", "CartPole-v1", episode=1),
     "unknown option 'episode'; did you mean 'episodes'?"),  # Python's TypeError before
    (lambda tmp: mtdqn.open_study(5), "path: expected a path (str or pathlib.Path), got 5"),
    (lambda tmp: mtdqn.study("transfer", steps="1000", out=tmp / "s"),
     "steps: expected a positive integer, got '1000'"),
    (lambda tmp: mtdqn.study("groups", tasks="CartPole-v1,Acrobot-v1", steps=8, out=tmp / "s"),
     "tasks: expected a list of task names, got 'CartPole-v1,Acrobot-v1'"),
    (lambda tmp: mtdqn.study("groups", seeds=2.0, out=tmp / "s"), "seeds: expected a positive integer, got 2.0"),
    (lambda tmp: mtdqn.study("groups", tasks=(t for t in ["CartPole-v1", "Acrobot-v1"]), out=tmp / "s"),
     "tasks: expected a list of task names"),  # checked by reading it, it then trained the default tasks
    (lambda tmp: mtdqn.study("groups", tasks=[], out=tmp / "s"),
     "groups study 'groups': tasks: grouping needs at least 2 tasks, got 0"),  # it trained the default tasks
    (lambda tmp: mtdqn.extend(tmp / "src", add_tasks=5), "--add-tasks: expected a task name or a list of them, got 5"),
    (lambda tmp: mtdqn.train(tasks=["CartPole-v1"], sweep=5, out=tmp / "s"), "sweep=: expected {option: values}"),
    (lambda tmp: mtdqn.train(tasks=["CartPole-v1"], sweep={"lr": [1e-4, 3e-4]}, on_eval=print, out=tmp / "s"),
     "on_eval: observes a single run's evaluations, not a sweep's members"),  # it was never called
])
def test_a_python_callers_wrong_type_of_path_or_spec_is_one_line(tmp_path, call, expected):
    """A path, a spec or a steering keyword of the wrong type raised pathlib's or dict's TypeError from inside the
    call, or was taken for its truth value; a tune's name was not checked ('../evil' named its default folder
    runs/tune-../evil)."""
    with pytest.raises(mtdqn.ConfigError) as exc:
        call(tmp_path)
    assert str(exc.value).startswith(expected), str(exc.value)
    assert list(tmp_path.iterdir()) == []


def test_distill_takes_one_teacher_given_as_a_path(tmp_path):
    """mtdqn.distill(Path(...)): the empty-path check iterated the Path (a TypeError)."""
    with pytest.raises(mtdqn.ConfigError, match="is not a run directory"):
        mtdqn.distill(tmp_path / "teacher", out=tmp_path / "student")


def test_a_misspelled_transfer_keyword_is_suggested(tmp_path):
    """finetune's and extend's own keywords are candidates too: `freez` listed every train option but freeze."""
    with pytest.raises(mtdqn.ConfigError, match=r"^unknown option 'freez'; did you mean 'freeze'\?$"):
        mtdqn.finetune(tmp_path / "source", tasks=["MountainCar-v0"], freez="trunk")
    with pytest.raises(mtdqn.ConfigError, match=r"^unknown option 'trunklr'; did you mean 'trunk_lr'\?$"):
        mtdqn.extend(tmp_path / "source", ["MountainCar-v0"], trunklr=0.1)
    assert not (tmp_path / "source").exists() and not (tmp_path / "runs").exists()


def test_opening_what_is_not_a_run_or_study_is_one_line(tmp_path):
    with pytest.raises(mtdqn.ConfigError, match="is not a run directory"):
        mtdqn.open_run(tmp_path)
    with pytest.raises(mtdqn.ConfigError, match="is not a study directory"):
        mtdqn.open_study(tmp_path)


def test_a_bad_study_table_is_one_line(tmp_path):
    with pytest.raises(mtdqn.ConfigError, match="variants.shared.lrr: unknown option 'lrr'; did you mean 'lr'"):
        mtdqn.study({"tasks": ["CartPole-v1"], "steps": 1000, "seeds": 1, "variants": {"shared": {"lrr": 1}}},
                    out=tmp_path / "study")
    assert not (tmp_path / "study").exists()


def test_an_unnamed_study_table_takes_its_folders_name(tmp_path, monkeypatch):
    """As a study file's name is its stem (was "study": its lines read "study study: ...", its default folder
    runs/study-study); a folder whose study.json stored a name keeps it (a rerun of a study made before resumes
    it), and a folder name that is no study name ("my study") gives "study"."""
    named = []

    def stop(spec, out_dir, **kwargs):
        named.append((spec.name, out_dir))
        raise KeyboardInterrupt  # nothing trained

    monkeypatch.setattr("mtdqn.studies.run_study", stop)
    table = {"tasks": ["CartPole-v1"], "steps": 1000, "seeds": 1, "variants": {"shared": {}}}
    (tmp_path / "older").mkdir()
    (tmp_path / "older" / "study.json").write_text(json.dumps({"name": "study"}))
    for out in (tmp_path / "cartpole-check", None, tmp_path / "my study", tmp_path / "older"):
        with pytest.raises(KeyboardInterrupt):
            mtdqn.study(table, out=out)
    with pytest.raises(KeyboardInterrupt):
        mtdqn.study({**table, "name": "mine"}, out=tmp_path / "folder")
    assert named == [("cartpole-check", tmp_path / "cartpole-check"), ("study", Path("runs") / "study-study"),
                     ("study", tmp_path / "my study"), ("study", tmp_path / "older"), ("mine", tmp_path / "folder")]


# ---------------------------------------------------------------- one code path: the CLI and the API alike

@pytest.fixture(scope="module")
def api_run(tmp_path_factory) -> mtdqn.Run:
    return mtdqn.train(out=tmp_path_factory.mktemp("api") / "run", progress=False, **SMALL)


@pytest.mark.slow
def test_the_cli_and_the_api_make_the_same_run(api_run, tmp_path, capsys):
    out = tmp_path / "cli"
    main(["train", *SMALL_ARGV, "--out", str(out)])
    printed = capsys.readouterr().out
    cli_run = mtdqn.open_run(out)
    assert api_run.config == cli_run.config == SMALL_CONFIG
    same = ("final_eval", "final_score", "final_discounted", "env_steps", "updates", "seeds")
    api_summary, cli_summary = api_run.summary, cli_run.summary
    assert {k: api_summary.get(k) for k in same} == {k: cli_summary.get(k) for k in same}
    for table in ("metrics", "evals", "grad_tasks", "grad_pairs"):
        pd.testing.assert_frame_equal(getattr(api_run, table), getattr(cli_run, table))
    for task, values in api_summary["final_eval"].items():  # the CLI prints the numbers the API returns
        assert f"{task:24s} greedy return per seed: {', '.join(f'{v:.1f}' for v in values)}" in printed
    assert cli_summary["final_score_steps"] == [1000]  # 500 is not in the last 20%: one evaluation, said as one
    assert "final score (the final evaluation alone) per seed" in printed and "last 1 evaluations" not in printed
    # the results line names what the folder holds (a fixed list left out the evaluating run's evals.parquet)
    written = printed.split(f"results: {out}  (")[1].split(")")[0].split(", ")
    assert written == [name + "/" * (out / name).is_dir() for name in RUN_FILES if (out / name).exists()]
    assert {"evals.parquet", "summary.json", "checkpoints/"} <= set(written)


def _recorded_on(run: Path, devices: int) -> None:
    """The run's records (config.json and its latest checkpoint's) as if its seeds had trained over ``devices``."""
    for path in (run / "config.json", run / "checkpoints" / "latest.json"):
        record = json.loads(path.read_text())
        record["options"]["devices"] = devices
        path.write_text(json.dumps(record))


@pytest.mark.slow
def test_a_run_resumed_where_jax_has_fewer_devices_than_it_trained_on_says_why(api_run, tmp_path):
    """A run resumes on its own seed layout.  In a process whose JAX started with fewer devices (2 here, conftest)
    it warned "correct, but slower", then failed with `--devices 3: only 2 local device(s) here`, a flag never
    given: now only the reason and the way out (InsufficientResources: a study's cell keeps its checkpoint),
    nothing of the run touched; a --devices the process has is taken, as before."""
    from mtdqn.errors import InsufficientResources

    run = tmp_path / "run"
    shutil.copytree(api_run.path, run)
    _recorded_on(run, 3)
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(InsufficientResources, match=rf"^{re.escape(str(run))} trained its seeds over 3 devices "
                                                        r"and resumes on as many .* this process's JAX started with "
                                                        rf"2: resume it in a fresh process \(mtdqn train --resume "
                                                        rf"{re.escape(str(run))}\), or call "
                                                        r"mtdqn\.devices\.use_cpu_cores\(3\)"):
            mtdqn.train(out=run, resume=True, progress=False)
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before
    resumed = mtdqn.train(out=run, resume=True, devices=1, progress=False)  # its own choice: resumes (evaluated)
    assert json.loads((resumed.path / "config.json").read_text())["options"]["devices"] == 1


@pytest.mark.slow
def test_a_run_resumed_on_another_layout_is_warned(tmp_path):
    """`--resume --devices 1` of a run whose 2 seeds trained over 2 devices trains on, silently not matching an
    uninterrupted run (its losses differed from there on): warned, as is nothing for a finished run's resume."""
    from mtdqn.errors import LayoutChangedWarning

    def stop(step, rows):
        raise RuntimeError("stopped")

    run = tmp_path / "run"
    with pytest.raises(RuntimeError, match="stopped"):
        mtdqn.train(out=run, progress=False, on_eval=stop, **{**SMALL, "seeds": 2, "devices": 2,
                                                              "checkpoint_every": 500})
    with pytest.warns(LayoutChangedWarning, match=rf"^{re.escape(str(run))} resumes with its seeds over 1 device "
                                                  "where they trained over 2: another layout changes the numbers"):
        resumed = mtdqn.train(out=run, resume=True, devices=1, progress=False)
    assert resumed.summary["devices"] == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error", LayoutChangedWarning)  # finished: evaluated again, nothing trained
        mtdqn.train(out=run, resume=True, devices=2, progress=False)


@pytest.mark.slow  # a fresh interpreter imports JAX (~3 s)
def test_a_resumed_run_plans_the_devices_its_seeds_trained_on(api_run, tmp_path):
    """mtdqn.train(resume=True) plans JAX from the run's checkpoint as `mtdqn train --resume` does: it planned
    from the seeds alone (1 device for this 1-seed run recorded on 2), so the resume was refused."""
    run = tmp_path / "run"
    shutil.copytree(api_run.path, run)
    _recorded_on(run, 2)
    code = f"""
import mtdqn.devices
class Planned(Exception): pass
planned = []
def spy(*args):
    planned.append(args)
    raise Planned
mtdqn.devices.use_cpu_cores = spy
import mtdqn
try:
    mtdqn.train(out={str(run)!r}, resume=True, progress=False)
except Planned:
    pass
print(planned)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[(2, 2)]", done.stdout  # (devices, threads)


@pytest.mark.slow
def test_a_run_exposes_its_tables_summary_agent_and_evaluations(api_run):
    run = mtdqn.open_run(api_run.path)
    assert "2 seed" not in repr(run) and "finished" in repr(run)
    assert run.tasks == ("CartPole-v1", "Acrobot-v1") and run.seeds == [0]
    assert len(run.metrics) == 2 * 2 and set(run.metrics.task) == set(run.tasks)  # 2 windows x 2 tasks
    assert sorted(run.evals.step.unique()) == [500, 1000]
    assert len(run.grad_pairs) and len(run.grad_tasks) and list(run.cka.columns)
    from mtdqn.rundir import CKA_SCHEMA

    assert list(run.cka.columns) == list(CKA_SCHEMA)  # the schema is what the probe writes
    last = run.evals.query("step == step.max()").groupby("task").return_mean.mean()  # the README's line
    assert last.to_dict() == {t: v[0] for t, v in run.summary["final_eval"].items()}  # (one seed)
    evaluation = run.evaluate(episodes=2)
    assert list(evaluation.columns) == ["task", "seed", "return_mean", "return_std", "discounted_mean", "episodes"]
    assert len(evaluation) == 2 and (evaluation.episodes == 2).all()
    assert json.loads((run.path / "eval.json").read_text())["episodes"] == 2
    agent = run.agent()
    assert agent.act("CartPole-v1", [0.0, 0.0, 0.0, 0.0]).shape == ()
    assert repr(agent) == f"LoadedAgent({str(run.path)!r}, tasks=['CartPole-v1', 'Acrobot-v1'], seeds=[0])"
    assert mtdqn.open_run(run).path == run.path and mtdqn.load_agent(run).tasks == run.tasks  # a Run is a path
    watched = mtdqn.play(run, "CartPole-v1", max_steps=5, agent_seed=0)  # `mtdqn play`, as mtdqn.train is
    assert watched.lengths == [5] and watched.gif is None


@pytest.mark.slow  # a fresh interpreter imports JAX (~3 s)
def test_register_task_presents_the_cores_as_devices_before_jax_starts():
    """Registering an env runs it, and importing gymnax alone starts JAX: mtdqn.register_task presents every
    core as a CPU device first, so that a multi-seed run of a registered task still spreads its seeds over the
    cores (before, it left one device and the seeds shared it, silently)."""
    code = ("import os, mtdqn; mtdqn.register_task; import jax; "
            "print(len(jax.devices()), len(os.sched_getaffinity(0)))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    devices, cores = map(int, done.stdout.split())
    assert devices == cores


@pytest.mark.slow  # a fresh interpreter imports JAX (~3 s)
def test_a_refused_call_leaves_the_processs_devices_to_the_next():
    """The first call that starts JAX fixes the process's CPU devices (its seeds'): a typo'd task or task option,
    a task listed twice, a budget with no update, a nonsense option, a sharing or strategy option the agent's
    build refuses (moe:1, partial:5, cagrad's c=-1: they started JAX) or a transfer from no run is refused before
    that, so the next run in a notebook still chooses."""
    code = ("import mtdqn, mtdqn.devices\n"
            "for bad in ({'tasks': ['CartPoel-v1']}, {'tasks': ['MiniGrid-LavaGapS7-v0:max_steps=0']},\n"
            "            {'tasks': ['CartPole-v1', 'CartPole-v1:']},\n"
            "            {'steps': 2000, 'learning_starts': 100000}, {'lr': -1.0}, {'sharing': 'moe:1'},\n"
            "            {'sharing': 'partial:5'}, {'strategy': 'cagrad', 'strategy_args': 'c=-1'}):\n"
            "    try:\n        mtdqn.train(**bad)\n    except mtdqn.ConfigError:\n        pass\n"
            "for call in (lambda: mtdqn.finetune('no-such-run', tasks=['Acrobot-v1']),\n"
            "             lambda: mtdqn.extend('no-such-run', ['Acrobot-v1']),\n"
            "             lambda: mtdqn.distill(['no-such-run'], 'out')):\n"
            "    try:\n        call()\n    except mtdqn.ConfigError:\n        pass\n"
            "print(mtdqn.devices.use_cpu_cores())")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True"]  # JAX had not started: the devices are still to choose


def test_tasks_given_as_one_string_are_split_as_the_command_line_splits_them():
    """tasks="CartPole-v1,Acrobot-v1" was one unknown task; a task spec's own options stay with it."""
    from mtdqn.api import train_config

    assert train_config(tasks="CartPole-v1,Acrobot-v1").tasks == ("CartPole-v1", "Acrobot-v1")
    assert train_config(tasks="Breakout-MinAtar:sticky=0.1,actions=full,Asterix-MinAtar").tasks == (
        "Breakout-MinAtar:sticky=0.1,actions=full", "Asterix-MinAtar")


def test_a_sweep_is_checked_by_its_members_values_before_jax(tmp_path):
    """--tau 0.005 (the default) with --target-update-every 100 is refused, but a sweep's only member has tau 1:
    the check before JAX takes the members, as the CLI's does (the run is then refused for its --out, a file)."""
    (tmp_path / "file").write_text("")
    with pytest.raises(mtdqn.ConfigError, match="exists and is not a directory"):
        mtdqn.train(tasks=["CartPole-v1"], steps=20000, target_update_every=100, sweep={"tau": [1.0]},
                    out=tmp_path / "file", progress=False)


def test_a_budget_and_cadence_rounded_to_whole_windows_are_said(tmp_path):
    """--steps 2000 trained 10,000 env steps (the default windows of 10,000), said only by the progress bar's
    count: one warning before the run starts (stopped here at its announcement), none where run as asked; a
    refused run (its --out a file) is refused before JAX starts, without the warning."""
    from mtdqn.errors import RoundedScheduleWarning

    class Announced(Exception):
        pass

    def stop(line: str) -> None:
        raise Announced(line)

    said = (r"^steps 2,000 trains 10,000 and evaluations every 5,000 run every 10,000 env steps per task \(whole "
            r"--log-every windows of 10,000\); to run them as asked, give multiples of the window, or a --log-every "
            r"that divides them and is a multiple of --num-envs \(4\)")
    with pytest.warns(RoundedScheduleWarning, match=said) as caught:
        with pytest.raises(Announced):
            mtdqn.train(tasks=["CartPole-v1"], steps=2000, eval_every=5000, out=tmp_path / "a", progress=False,
                        announce=stop)
    # the user's line, not mtdqn's (errors.warn_user)
    assert [w.filename for w in caught if w.category is RoundedScheduleWarning] == [__file__]
    (tmp_path / "file").write_text("")
    with warnings.catch_warnings():
        warnings.simplefilter("error", RoundedScheduleWarning)
        with pytest.raises(mtdqn.ConfigError, match="exists and is not a directory"):
            mtdqn.train(tasks=["CartPole-v1"], steps=2000, eval_every=5000, out=tmp_path / "file", progress=False)
        with pytest.raises(Announced):
            mtdqn.train(tasks=["CartPole-v1"], steps=2000, log_every=1000, eval_every=1000, learning_starts=500,
                        out=tmp_path / "b", progress=False, announce=stop)
    said = r"^checkpoints every 1,500 are written every 2,000 env steps per task \(whole --log-every windows of 1,000"
    with pytest.warns(RoundedScheduleWarning, match=said):  # was silent: --checkpoint-every rounds the same way
        with pytest.raises(Announced):
            mtdqn.train(tasks=["CartPole-v1"], steps=2000, log_every=1000, checkpoint_every=1500,
                        learning_starts=500, out=tmp_path / "c", progress=False, announce=stop)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]  # nothing written by the runs stopped


def test_a_run_whose_seeds_cannot_spread_over_devices_says_so(monkeypatch):
    """JAX started in this process with 2 CPU devices (conftest); on a 4-core machine a run of 8 seeds would plan
    4: it warns, once per process (a notebook's every call repeated it).  Not where the plan fits, where the user
    chose the count, or for gym: tasks."""
    import mtdqn.api
    import mtdqn.devices
    from mtdqn.api import _start_jax

    monkeypatch.setattr(mtdqn.devices, "_usable_cores", lambda: 4)
    monkeypatch.setattr(mtdqn.api, "_warned_of_devices", False)
    with pytest.warns(UserWarning, match=r"JAX has 2 CPU device\(s\), chosen before this run .* its 8 seeds share "
                                         r"them where 4 cores could each take some") as caught:
        _start_jax(8, ["CartPole-v1"], 0)
    assert [w.filename for w in caught if "JAX has" in str(w.message)] == [__file__]  # the caller's line, not mtdqn's
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _start_jax(8, ["CartPole-v1"], 0)  # said once
    monkeypatch.setattr(mtdqn.api, "_warned_of_devices", False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _start_jax(2, ["CartPole-v1"], 0)  # 2 seeds: 2 devices, as there are
        _start_jax(8, ["CartPole-v1"], 2)  # the user's count
        _start_jax(8, ["gym:CartPole-v1"], 0)  # host tasks step on one device


@pytest.mark.slow  # a fresh interpreter imports JAX (~3 s)
def test_every_training_entry_point_plans_jax_before_jax_starts(tmp_path):
    """train, study (a table or a preset), finetune, extend, distill and tune each reach mtdqn.devices.use_cpu_cores
    with JAX not yet started: before, study's validation, and the imports behind finetune, extend and distill,
    imported gymnax (which starts JAX), so their seeds silently shared one device.  So do mtdqn.play and
    mtdqn.evaluate, reached from `import mtdqn` alone (the README's mtdqn.play(run, task, ...))."""
    code = f"""
from jax._src import xla_bridge
import mtdqn.devices
class Planned(Exception): pass
seen = []
def spy(*args, **kwargs):
    seen.append(bool(xla_bridge._backends))
    raise Planned
mtdqn.devices.use_cpu_cores = spy
import mtdqn
out, src = {str(tmp_path / "out")!r}, {str(tmp_path / "src")!r}
table = {{"name": "t", "tasks": ["CartPole-v1"], "steps": 1000, "seeds": 2,
         "variants": {{"s": {{"sharing": "shared"}}}}}}
for call in (lambda: mtdqn.train(tasks=["CartPole-v1"], seeds=2, out=out), lambda: mtdqn.study(table, out=out),
             lambda: mtdqn.study("quick", out=out), lambda: mtdqn.finetune(src, tasks=["CartPole-v1"], out=out),
             lambda: mtdqn.extend(src, ["Acrobot-v1"], out=out), lambda: mtdqn.distill([src, src], out=out),
             lambda: mtdqn.tune("classic-shared", out=out, n_trials=1), lambda: mtdqn.play,
             lambda: mtdqn.evaluate):
    try:
        call()
    except Planned:
        pass
print(seen)
"""
    (tmp_path / "src").mkdir()  # a run's record, which finetune, extend and distill read before planning
    (tmp_path / "src" / "config.json").write_text(json.dumps({"config": config_to_dict(TrainConfig())}))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str([False] * 9), done.stdout


def test_evaluate_and_play_take_python_callers_numbers_as_the_cli_does(tmp_path):
    """mtdqn.evaluate(run, ...) is `mtdqn evaluate` (its module callable, as mtdqn.play's), and a Python caller's
    episodes="2" or 2.5 is the CLI's one line, not a TypeError from a comparison of str with int (found by a
    README walk-through); checked before JAX compiles anything."""
    from helpers import fake_run

    fake_run(tmp_path / "run")
    assert callable(mtdqn.evaluate) and mtdqn.evaluate.__wrapped__.__module__ == "mtdqn.api"
    for call, said in [(lambda: mtdqn.evaluate(tmp_path / "run", episodes="3"), "--episodes: expected an integer"),
                       (lambda: mtdqn.evaluate(tmp_path / "run", epsilon="x"), "--epsilon: expected a number"),
                       (lambda: mtdqn.open_run(tmp_path / "run").evaluate(0), "--episodes must be > 0, got 0"),
                       (lambda: mtdqn.play(tmp_path / "run", "CartPole-v1", episodes="2"),
                        "--episodes: expected an integer, got '2'"),
                       (lambda: mtdqn.play(tmp_path / "run", "CartPole-v1", episodes=2.5), "got 2.5"),
                       (lambda: mtdqn.play(tmp_path / "run", "CartPole-v1", agent_seed="0"), "--agent-seed: expected")]:
        with pytest.raises(mtdqn.ConfigError, match=said):
            call()
    assert not (tmp_path / "run" / "eval.json").exists()


def test_a_study_refused_in_a_process_whose_devices_are_chosen_plans_nothing_first(tmp_path, monkeypatch):
    """In a process that trained already, mtdqn.study("quick", seeds=3, steps=5000) warned that its 3 seeds
    would share the devices, then was refused by its budget (found by a README walk-through): where the devices
    are chosen, the study is validated before anything is planned."""
    from mtdqn import api

    planned = []
    monkeypatch.setattr(api, "_start_jax", lambda *args: planned.append(args))
    monkeypatch.setattr(api, "_devices_chosen", lambda: True)
    with pytest.raises(mtdqn.ConfigError, match="preset quick: steps: no update would run"):
        mtdqn.study("quick", seeds=3, steps=5000, out=tmp_path / "s")
    assert planned == [] and not (tmp_path / "s").exists()
    monkeypatch.setattr(api, "_devices_chosen", lambda: False)  # a fresh process: planned from the table first
    with pytest.raises(mtdqn.ConfigError, match="no update would run"):
        mtdqn.study("quick", seeds=3, steps=5000, out=tmp_path / "s")
    assert len(planned) == 1 and planned[0][0] == 3


def test_counts_in_the_lines_users_read_agree_with_their_number():
    """A study of one seed announced "1 seeds", a one-task run "1 tasks"."""
    from mtdqn.errors import count
    from mtdqn.train.agent import describe, make_agent

    assert [count(1, "seed"), count(2, "seed"), count(0, "variant"), count(1200, "task")] == \
        ["1 seed", "2 seeds", "0 variants", "1,200 tasks"]
    assert describe(make_agent(TrainConfig(tasks=("CartPole-v1",)))).startswith("mtdqn: 1 task, sharing=")


def test_a_run_without_probes_reads_an_empty_cka_table_with_its_columns(tmp_path):
    """--probes False writes no cka.parquet: Run.cka read a frame without columns, where the other tables keep
    their columns when empty (the README: fixed columns and dtypes, also with no rows)."""
    from mtdqn.rundir import CKA_SCHEMA

    (tmp_path / "config.json").write_text(json.dumps({"config": {}, "seeds": [0]}))
    cka = mtdqn.open_run(tmp_path).cka
    assert len(cka) == 0 and list(cka.columns) == list(CKA_SCHEMA)


def test_a_sweeps_compilation_cache_is_put_back_after_it(tmp_path):
    """A sweep shares its members' compiles through a temporary persistent cache: it stayed on for the rest of
    the process, every later compile (the user's own) written to the folder deleted at exit, and a cache
    directory set later ignored (JAX reads it once)."""
    import jax
    from jax.experimental.compilation_cache.compilation_cache import reset_cache

    from mtdqn.api import _shared_compiles

    suite_dir = jax.config.jax_compilation_cache_dir  # the suite's (conftest): put back below
    try:
        jax.config.update("jax_compilation_cache_dir", None)
        reset_cache()
        with _shared_compiles():
            temporary = Path(jax.config.jax_compilation_cache_dir)
            assert temporary.name.startswith("mtdqn-sweep-jax-") and temporary.is_dir()
        assert jax.config.jax_compilation_cache_dir is None and not temporary.exists()
        jax.config.update("jax_compilation_cache_dir", str(tmp_path / "mine"))
        jax.jit(lambda x: x * 3.0 + 1.0)(jax.numpy.float32(2.0)).block_until_ready()
        assert any((tmp_path / "mine").iterdir())  # the user's own directory, set after the sweep, is used
    finally:
        jax.config.update("jax_compilation_cache_dir", suite_dir)
        reset_cache()
