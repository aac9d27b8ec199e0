"""What each `mtdqn` command does with its parsed options: call the library, print what a user reads.

Errors are raised (ConfigError and friends), never printed here: ``entry.main``
turns them into the one line a user sees.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable

from mtdqn.cli.commands import (
    Act, Distill, Evaluate, Extend, Finetune, Play, Report, Strategies, Study, Tasks, Train, Tune, given_options,
)
from mtdqn.errors import CellsFailed, ConfigError, SearchFailed, count
from mtdqn.results import Run
from mtdqn.rundir import RUN_FILES

__all__ = ["COMMANDS"]


def _run_tasks(_: Tasks) -> None:
    from rich.console import Console
    from rich.table import Table

    from mtdqn.tasks import list_tasks, parse_task
    from mtdqn.tasks.gymnasium_env import GYM_EXAMPLES
    from mtdqn.tasks.registry import NATIVE_ENVS

    table = Table("task", "backend", "kind", "observation shape", "actions", "max steps")
    for t in list_tasks():
        backend = "mtdqn (jax)" if t.name in NATIVE_ENVS else "gymnax (jax)"  # ours follow gymnax's API
        table.add_row(t.name, backend, t.kind, str(t.obs_shape), str(t.num_actions), str(t.max_episode_steps))
    unavailable = []
    for env_id in GYM_EXAMPLES:  # examples: any Gymnasium id with Discrete actions works as gym:<ID>
        try:
            t = parse_task(f"gym:{env_id}")
        except ConfigError as exc:
            unavailable.append(str(exc))
            continue
        table.add_row(t.spec, "gymnasium (host)", t.kind, str(t.obs_shape), str(t.num_actions),
                      str(t.max_episode_steps or "-"))
    table.caption = "gym:<ID>: any Gymnasium id with Discrete actions and Box observations (stepped on the host)"
    console = Console(width=120)
    console.print(table)
    for line in unavailable:
        console.print(f"  not available here: {line}", markup=False)


def _run_strategies(_: Strategies) -> None:
    import dataclasses

    from rich.console import Console
    from rich.table import Table

    from mtdqn.strategies import REGISTRY, SCOPE

    table = Table("strategy", "what it does", "options (default)", "paper")
    for name, spec in sorted(REGISTRY.items()):
        opts = ", ".join(f"{f.name}={f.default}" for f in dataclasses.fields(spec.options)) or "-"
        table.add_row(name, spec.summary, opts, spec.citation)
    console = Console(width=120)
    console.print(table)
    console.print(f"What the weights scale: {SCOPE}", markup=False)
    console.print("The real-valued options (not the integer ones) can be swept in one compiled program: "
                  "`mtdqn train --strategy cagrad --sweep strategy.c=0.2,0.5`.", markup=False)


def _run_train(cmd: Train) -> None:
    from mtdqn import api

    # --resume with --out is refused before JAX starts (mtdqn.cli.entry._check_before_jax).
    # The options given (those that differ from the defaults): a resumed run refuses train options, and keeps
    # its own run options unless given anew
    result = api.train(out=cmd.resume or cmd.out, resume=cmd.resume is not None, force=cmd.force,
                       progress=cmd.progress, announce=print, sweep=cmd.sweep or None, **api.cli_options(cmd.cfg),
                       **given_options(cmd.options))
    for run in result if isinstance(result, list) else [result]:
        if isinstance(result, list):
            print(f"{run.path.name}:")
        _print_run(run)


def _print_run(run: Run) -> None:
    """A trained run's greedy returns and final scores per task and seed, and where it is."""
    summary = run.summary
    for task, values in summary["final_eval"].items():
        print(f"  {task:24s} greedy return per seed: {', '.join(f'{v:.1f}' for v in values)}")
    _print_final_score(summary)
    _print_early_stop_and_test(summary, run.path)
    print(_results_line(run.path))


def _print_final_score(summary: dict) -> None:
    """A run that evaluated during training: its final score per task and seed, and the rule that made it."""
    if not summary["eval_every"]:
        return
    restored = summary["final_score_rule"] == "restored-best-final-eval"
    n = len(summary["final_score_steps"])  # "mean of the last 1 evaluations" read as a mean of several
    how = ("the restored best's final evaluation" if restored
           else "the final evaluation alone" if n == 1 else f"mean of the last {n} evaluations")
    for task, values in summary["final_score"].items():
        print(f"  {task:24s} final score ({how}) per seed: {', '.join(f'{v:.1f}' for v in values)}")


def _results_line(path: Path) -> str:
    """Where a finished run is and what it wrote, as its folder holds it (a fixed list left out evals.parquet
    of a run that evaluated, and named files a run had not written)."""
    written = [name + ("/" if (path / name).is_dir() else "") for name in RUN_FILES if (path / name).exists()]
    return f"results: {path}  ({', '.join(written)})"


def _run_finetune(cmd: Finetune | Extend) -> None:
    import dataclasses

    from mtdqn import api

    driving = dict(force=cmd.run.force, progress=cmd.run.progress, announce=print,
                   **api.cli_options(cmd.cfg), **dataclasses.asdict(cmd.run.options))
    if isinstance(cmd, Extend):
        run = api.extend(cmd.from_, cmd.add_tasks, cmd.run.out, freeze=cmd.freeze, trunk_lr=cmd.trunk_lr, **driving)
    else:
        run = api.finetune(cmd.from_, out=cmd.run.out, freeze=cmd.freeze, trunk_lr=cmd.trunk_lr, lora=cmd.lora,
                           keep_heads=cmd.keep_heads, **driving)
    summary = run.summary
    transfer = summary["transfer"]
    print(f"  {'task':24s} greedy return per seed: at the start -> at the end")
    for task, values in summary["final_eval"].items():
        start = ", ".join(f"{v:.1f}" for v in transfer["start_eval"][task])
        print(f"  {task:24s} {start} -> {', '.join(f'{v:.1f}' for v in values)}")
    _print_final_score(summary)  # as `mtdqn train --resume` of this run prints it
    _print_early_stop_and_test(summary, run.path)
    print(_results_line(run.path))
    _note_unfinished(cmd.from_, _source_iteration(run.path, cmd.from_))  # its trunk was a stopped run's


def _print_early_stop_and_test(summary: dict, run: Path) -> None:
    """What --patience and --test-episodes did, when they were used."""
    if "early_stop" in summary:
        early = summary["early_stop"]
        stopped = f"stopped at step {early['stopped_at']:,}" if early["stopped_at"] else "ran to the end"
        print(f"  early stopping: {stopped}; best evaluation per seed at step "
              f"{', '.join(f'{v:,}' for v in early['best_step'].values())} (restored)")
    if "keep_best" in summary:
        print(f"  kept (restored) per seed: the evaluation at step "
              f"{', '.join(f'{v:,}' for v in summary['keep_best']['best_step'].values())}")
    if "test_eval" in summary:
        _print_test(run)


def _print_test(run: Path) -> None:
    from mtdqn.io import read_json

    test = read_json(run / "test_eval.json")
    print(f"  test evaluation ({test['episodes']} greedy episodes per task and seed, episode starts of its own):")
    _print_per_seed(test["tasks"], "return (mean ± std)", indent="  ", discounted=True)
    print(f"  written: {run / 'test_eval.json'}")


def _print_per_seed(tasks: dict, header: str, indent: str = "", discounted: bool = False) -> None:
    """One line per task and seed of an evaluation record (eval.json, test_eval.json)."""
    print(f"{indent}{'task':24s} {'seed':>5s}  {header}" + ("   discounted" if discounted else ""))
    for task, per_task in tasks.items():
        for seed, r in per_task["per_seed"].items():
            tail = f" {r['discounted_mean']:9.2f}" if discounted else ""
            print(f"{indent}{task:24s} {int(seed):5d}  {r['mean']:9.2f} ± {r['std']:<9.2f}{tail}".rstrip())


def _source_iteration(run: Path, source: Path) -> int | None:
    """The source's checkpoint a fine-tuned or extended ``run`` started from (start.json), as an iteration of the
    source: the note then names it, not the source's checkpoint at exit (a source still training moves on)."""
    from mtdqn.rundir import RunDir

    try:
        step = (RunDir(run).read_start() or {}).get("source_step")
        return None if step is None else int(step) // RunDir(source).config().num_envs
    except (ConfigError, OSError, TypeError, ValueError):
        return None


def _note_unfinished(run: Path, iteration: int | None = None) -> None:
    """One line on stderr, after the command's output (never beside an error), where the run acted with,
    evaluated, fine-tuned from or distilled has not finished: its checkpoint is not its end (``iteration``:
    the one read, where the command knows it)."""
    from mtdqn.rundir import RunDir

    note = RunDir(run).unfinished_note(iteration)
    if note is not None:
        print(f"note: {note}", file=sys.stderr)


def _run_evaluate(cmd: Evaluate) -> None:
    from mtdqn.results import evaluation_frame

    from mtdqn.rundir import RunDir
    from mtdqn.train.evaluate_command import evaluate_run

    result = evaluate_run(cmd.run, cmd.episodes, cmd.epsilon, write=False)  # shown, then written (below)
    print(f"{'task':24s} {'seed':>5s}  return (mean ± std over {cmd.episodes} episodes)")
    for r in evaluation_frame(result).itertuples():
        print(f"{r.task:24s} {r.seed:5d}  {r.return_mean:9.2f} ± {r.return_std:<9.2f}".rstrip())
    RunDir(cmd.run).write_eval(result)  # one that cannot be written is an error after the table, not instead
    print(f"written: {cmd.run / 'eval.json'}")
    _note_unfinished(cmd.run, result["iteration"])  # the checkpoint it evaluated


def _load_npy(path: Path) -> Any:
    """The one array of a .npy file; one line for anything else (an .npz archive, a file of another format)."""
    import numpy as np

    try:
        obs = np.load(path, allow_pickle=False)
    except EOFError:  # an empty file
        raise ConfigError(f"{path}: not a readable .npy array (the file is empty)") from None
    except (OSError, ValueError) as exc:
        why = str(exc).splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "Object arrays" in why:  # a .npy of Python objects: NumPy's advice is to unpickle them
            why = "it holds Python objects, and mtdqn never unpickles"
        elif "allow_pickle" in why:  # NumPy tries unpickling whatever is neither .npy nor .npz
            why = "it is not a .npy file"
        raise ConfigError(f"{path}: not a readable .npy array ({why})") from None
    if isinstance(obs, np.lib.npyio.NpzFile):
        names = ", ".join(obs.files) or "no arrays"
        obs.close()
        raise ConfigError(f"{path} is an .npz archive ({names}); give one array as .npy (numpy.save)")
    return obs


def _run_act(cmd: Act) -> None:
    import numpy as np

    from mtdqn.deploy import load_agent

    obs = _load_npy(cmd.obs)
    agent = load_agent(cmd.run)
    for seed in (agent.seeds if cmd.seed is None else (cmd.seed,)):
        actions = np.atleast_1d(agent.act(cmd.task, obs, seed, clip=cmd.clip))
        print(f"seed {seed}: {' '.join(map(str, actions.tolist()))}")
    _note_unfinished(cmd.run, agent.iteration)  # the checkpoint it acted with, not the one at exit


def _run_play(cmd: Play) -> None:
    from mtdqn.play import play

    result = play(cmd.run, cmd.task, cmd.episodes, cmd.gif, cmd.seed, cmd.max_steps, cmd.gif_every, cmd.fps,
                  cmd.agent_seed)
    for n, (ret, length) in enumerate(zip(result.returns, result.lengths)):
        cut = " (cut off: the episode had not ended)" if result.cut and result.cut[n] else ""
        print(f"episode {n + 1}: return {ret:g}, length {length} steps{cut}")
    if result.gif is not None:
        print(f"written: {result.gif} ({result.frames} frames)")
    _note_unfinished(cmd.run, result.iteration)  # the checkpoint it played, not the one at exit


def _run_distill(cmd: Distill) -> None:
    from mtdqn import api
    from mtdqn.distill.report import print_report

    run = api.distill(cmd.teachers, cmd.out, force=cmd.force, progress=cmd.progress,
                      **api.cli_distill_options(cmd.cfg))
    print_report(run.json("distill"))
    print(_results_line(run.path))
    for teacher in cmd.teachers:  # a teacher that was a stopped run
        _note_unfinished(teacher)


def _run_study(cmd: Study) -> None:
    from mtdqn import api

    study = api.study(cmd.study, cmd.out, ray_address=cmd.ray_address, devices=cmd.devices, progress=cmd.progress,
                      seeds=cmd.seeds, steps=cmd.steps, tasks=list(cmd.tasks) if cmd.tasks is not None else None)
    _print_reports(study, study.report_path)
    failed = study.failed
    if failed:  # the report is written; a script must still learn that a variant has no result
        first, error = next(iter(failed.items()))
        them = "it" if len(failed) == 1 else "them"
        names = f": {', '.join(failed)} " if len(failed) > 1 else " "
        raise CellsFailed(f"{count(len(failed), 'cell')} of {len(study.trained_cells)} failed{names}({first}: "
                          f"{error}); the report marks {them} FAILED, and a rerun of the study trains {them} again")


def _run_tune(cmd: Tune) -> None:
    from mtdqn import api

    result = api.tune(cmd.spec, cmd.out, storage=cmd.storage, n_trials=cmd.n_trials, confirm=cmd.confirm,
                      ray_address=cmd.ray_address, progress=cmd.progress, announce=print)
    if result.best_trial is not None:
        print(f"best: trial {result.best_trial}, score {result.best_score:.4g}: "
              + ", ".join(f"{k}={v}" for k, v in result.best_options.items()))
    if result.confirm_dir is not None:
        print(f"confirmation ({result.confirm_dir}): score {result.confirm_score:.4g}")
    print(f"report: {result.report}")
    if result.best_trial is None and result.failed:  # nothing to show for the search: say so in the exit status
        number, note = result.failed[0]
        raise SearchFailed(f"no trial completed: {len(result.failed)} failed (trial {number}: "
                           f"{note or 'no reason recorded'}); the report lists each trial's reason")


def _run_report(cmd: Report) -> None:
    from mtdqn.results import open_study

    study = open_study(cmd.study_dir)
    report = study.report()
    _print_reports(study, report)


def _print_reports(study: Any, report: Path) -> None:
    """A study's reports' paths, its own (a groups or transfer study's) first: `mtdqn study` and `mtdqn report`."""
    for what, path in study.own_reports.items():
        print(f"{what}: {path}")
    print(f"report: {report}")


COMMANDS: dict[str, tuple[type, Callable]] = {
    "tasks": (Tasks, _run_tasks),
    "strategies": (Strategies, _run_strategies),
    "train": (Train, _run_train),
    "finetune": (Finetune, _run_finetune),
    "extend": (Extend, _run_finetune),
    "evaluate": (Evaluate, _run_evaluate),
    "act": (Act, _run_act),
    "play": (Play, _run_play),
    "distill": (Distill, _run_distill),
    "study": (Study, _run_study),
    "tune": (Tune, _run_tune),
    "report": (Report, _run_report),
}
