"""The `mtdqn` command line, generated from the config dataclasses by tyro.

The CLI only parses and calls the library.  Every user error — ours
(:class:`ConfigError`) or a parse error from tyro — is printed as one line
``error: ...`` on stderr with exit status 2; a run that diverges (non-finite
loss or Q-value) exits 3 and a failed write (disk full) exits 1, each with one
line too.  Nothing is half-written because the library writes atomically.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Callable

import tyro

from mtdqn.config import TrainConfig
from mtdqn.errors import ConfigError, TrainingDiverged

__all__ = ["main"]


@dataclass(frozen=True)
class Train:
    """Train one multi-task DQN agent (all seeds in one compiled program)."""

    cfg: Annotated[TrainConfig, tyro.conf.arg(name="")] = field(default_factory=TrainConfig)
    out: Path | None = None
    """Run directory (default: runs/train-<config hash>)."""
    force: bool = False
    """Overwrite a run directory that already holds a run."""
    checkpoint_every: int | None = None
    """Also checkpoint every this many env steps per task (default 0: only at the end; a resumed run keeps
    its own unless given)."""
    resume: Path | None = None
    """Continue the run in this directory from its latest checkpoint, with the config it was started with
    (training options are refused; --checkpoint-every/--eval-episodes/--devices default to the run's own)."""
    eval_episodes: int | None = None
    """Greedy episodes per task and seed evaluated at the end (default 10; a resumed run keeps its own unless
    given)."""
    devices: int | None = None
    """Split the seeds over this many local devices (CPU cores or GPUs; default 0: as many as the seeds can
    use; a resumed run keeps its own unless given)."""
    progress: bool = True
    """Show a progress bar."""


@dataclass(frozen=True)
class Evaluate:
    """Greedy returns per task and seed of a trained run; also written to RUN/eval.json."""

    run: tyro.conf.Positional[Path]
    """Run directory."""
    episodes: int = 100
    """Episodes per task and seed."""
    epsilon: float = 0.0
    """Exploration rate during evaluation (0: greedy)."""


@dataclass(frozen=True)
class Act:
    """Greedy actions of a trained run for observations in a .npy file (one line of actions per seed)."""

    run: tyro.conf.Positional[Path]
    """Run directory."""
    task: str
    """Which of the run's tasks the observations come from."""
    obs: Path
    """A .npy file: one observation (the task's own shape) or a batch of them (batch, *shape)."""
    seed: int | None = None
    """Act with this seed's network only (default: every seed of the run)."""


@dataclass(frozen=True)
class Play:
    """Greedy episodes of one task with a trained run's first seed: returns, and a GIF where the env can be drawn."""

    run: tyro.conf.Positional[Path]
    """Run directory."""
    task: str
    """Which of the run's tasks to play."""
    episodes: int = 1
    """Episodes to play."""
    gif: Path | None = None
    """Also write the frames as an animated GIF (MinAtar and gym: tasks)."""
    seed: int = 0
    """Seed of the environments' starts."""


@dataclass(frozen=True)
class Tasks:
    """List the registered tasks: name, backend, observation shape, actions."""


@dataclass(frozen=True)
class Strategies:
    """List the multi-task gradient strategies with their options and papers."""


@dataclass(frozen=True)
class Study:
    """Run a study (variants x seeds; each variant one cell, its seeds vmapped), then write its report."""

    study: tyro.conf.Positional[Annotated[str, tyro.conf.arg(metavar="PRESET|STUDY.toml")]]
    """A built-in preset (quick, classic, minatar, deramo) or a study file (.toml)."""
    seeds: int | None = None
    """Override the study's number of seeds."""
    steps: int | None = None
    """Override the study's env steps per task."""
    out: Path | None = None
    """Study directory (default: runs/study-<name>); re-running skips finished cells."""
    ray_address: str | None = None
    """Run cells as Ray tasks: local (a private instance), auto (a running cluster) or HOST:PORT."""
    devices: int = 0
    """Split each cell's seeds over this many local devices (0: as many as the seeds can use)."""
    progress: bool = True
    """Show a line per cell (and a progress bar per cell with the local backend)."""


@dataclass(frozen=True)
class Report:
    """Rebuild a study's report from its stored results (STUDY/report/report.html, report.md, results.md)."""

    study_dir: tyro.conf.Positional[Annotated[Path, tyro.conf.arg(metavar="STUDY_DIR")]]
    """Study directory (holds study.json and cells/)."""


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

    from mtdqn.strategies import REGISTRY

    table = Table("strategy", "what it does", "options (default)", "paper")
    for name, spec in sorted(REGISTRY.items()):
        opts = ", ".join(f"{f.name}={f.default}" for f in dataclasses.fields(spec.options)) or "-"
        table.add_row(name, spec.summary, opts, spec.citation)
    Console(width=120).print(table)


def _run_train(cmd: Train) -> None:
    from mtdqn.config import check_new_run, config_hash
    from mtdqn.networks import count_params, init_params
    from mtdqn.train.agent import make_agent
    from mtdqn.train.run import load_run_config, train

    resume = cmd.resume is not None
    if resume:
        _check_resume_options(cmd)
        if not (cmd.resume / "config.json").is_file():
            raise ConfigError(f"{cmd.resume} is not a run directory (no config.json)")
        cfg = load_run_config(cmd.resume)
        out = cmd.resume
    else:
        cfg = cmd.cfg
        check_new_run(cfg)
        out = cmd.out or Path("runs") / f"train-{config_hash(cfg)[:8]}"
    if (cmd.eval_episodes is not None and cmd.eval_episodes <= 0) or (cmd.checkpoint_every or 0) < 0:
        raise ConfigError("--eval-episodes must be > 0 and --checkpoint-every >= 0")
    agent = make_agent(cfg)
    import jax

    total, shared = count_params(agent.arch, jax.eval_shape(lambda: init_params(agent.arch, jax.random.PRNGKey(0))))
    print(f"mtdqn: {len(cfg.tasks)} tasks, sharing={cfg.network.sharing}, strategy={agent.derived.strategy}, "
          f"seeds={agent.seeds}, parameters: {total:,} total, {shared:,} shared")
    result = train(  # options not given are None: train() resolves them once (a resumed run keeps its own)
        cfg, out, force=cmd.force, progress=cmd.progress, resume=resume,
        checkpoint_every=cmd.checkpoint_every, eval_episodes=cmd.eval_episodes, devices=cmd.devices,
    )
    for task, values in result.summary["final_eval"].items():
        print(f"  {task:24s} greedy return per seed: {', '.join(f'{v:.1f}' for v in values)}")
    print(f"results: {out}  (metrics.parquet, summary.json, tb/, checkpoints/)")


def _check_resume_options(cmd: Train) -> None:
    """--resume continues a run with its own config: options that would change it are an error, not ignored."""
    from mtdqn.config import config_to_dict, flatten_config

    given, default = flatten_config(config_to_dict(cmd.cfg)), flatten_config(config_to_dict(TrainConfig()))
    flags = [f"--{key.rsplit('.', 1)[-1].replace('_', '-')}" for key in given if given[key] != default[key]]
    flags += [flag for flag, value in (("--out", cmd.out), ("--force", cmd.force)) if value]
    if flags:
        raise ConfigError(
            f"--resume continues {cmd.resume} with the config it was started with; drop {', '.join(flags)} "
            "(or start a new run with --out)"
        )


def _run_evaluate(cmd: Evaluate) -> None:
    from mtdqn.train.run import evaluate_run

    result = evaluate_run(cmd.run, cmd.episodes, cmd.epsilon)
    print(f"{'task':24s} {'seed':>5s}  return (mean ± std over {cmd.episodes} episodes)")
    for task, per_task in result["tasks"].items():
        for seed, r in per_task["per_seed"].items():
            print(f"{task:24s} {int(seed):5d}  {r['mean']:9.2f} ± {r['std']:.2f}")
    print(f"written: {cmd.run / 'eval.json'}")


def _run_act(cmd: Act) -> None:
    import numpy as np

    from mtdqn.deploy import load_agent

    try:
        obs = np.load(cmd.obs, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{cmd.obs}: not a readable .npy array ({str(exc).splitlines()[0]})") from None
    agent = load_agent(cmd.run)
    for seed in (agent.seeds if cmd.seed is None else (cmd.seed,)):
        actions = np.atleast_1d(agent.act(cmd.task, obs, seed))
        print(f"seed {seed}: {' '.join(map(str, actions.tolist()))}")


def _run_play(cmd: Play) -> None:
    from mtdqn.play import play

    result = play(cmd.run, cmd.task, cmd.episodes, cmd.gif, cmd.seed)
    for n, (ret, length) in enumerate(zip(result.returns, result.lengths)):
        print(f"episode {n}: return {ret:g} in {length} steps")
    if result.gif is not None:
        print(f"written: {result.gif}")


def _run_study(cmd: Study) -> None:
    from mtdqn.studies import resolve_spec, run_study

    spec = resolve_spec(cmd.study, {"seeds": cmd.seeds, "steps": cmd.steps})
    result = run_study(spec, cmd.out or Path("runs") / f"study-{spec.name}", ray_address=cmd.ray_address,
                       progress=cmd.progress, devices=cmd.devices)
    print(f"report: {result.report}")


def _run_report(cmd: Report) -> None:
    from mtdqn.studies import build

    print(f"report: {build(cmd.study_dir)}")


COMMANDS: dict[str, tuple[type, Callable]] = {
    "tasks": (Tasks, _run_tasks),
    "strategies": (Strategies, _run_strategies),
    "train": (Train, _run_train),
    "evaluate": (Evaluate, _run_evaluate),
    "act": (Act, _run_act),
    "play": (Play, _run_play),
    "study": (Study, _run_study),
    "report": (Report, _run_report),
}

_LIST_FLAGS = ("--tasks", "--task-weights")


def _split_commas(argv: list[str]) -> list[str]:
    """Let list options take ``a,b,c`` as well as ``a b c``."""
    out: list[str] = []
    expect = False
    for arg in argv:
        if expect and not arg.startswith("--") and "," in arg:
            out.extend(p for p in arg.split(",") if p)
        else:
            out.append(arg)
        expect = arg in _LIST_FLAGS or (expect and not arg.startswith("--"))
    return out


def _one_line(tyro_stderr: str) -> str:
    """Condense tyro's boxed parse error (unicode or ASCII box) into one line: title and first section."""
    lines = [re.sub(r"^[\s│╭╰─╮╯]+|[\s│╭╰─╮╯]+$", "", ln) for ln in tyro_stderr.splitlines()]
    lines = [re.sub(r"^-+$", "", ln) for ln in lines]  # an ASCII separator (no terminal): a section break
    title, detail = "", []
    for ln in lines:
        if not title:
            title = ln
        elif ln:
            detail.append(ln)
        elif detail:
            break  # a separator or blank line ends the first section
    title = title or "invalid arguments"
    text = " ".join(detail)
    if text.startswith(title):
        return text
    return f"{title}: {text}" if text and text not in title else title


def _parse(argv: list[str]) -> object:
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            return tyro.extras.subcommand_cli_from_dict(
                {name: cls for name, (cls, _) in COMMANDS.items()},
                args=_split_commas(argv),
                prog="mtdqn",
                config=(tyro.conf.OmitArgPrefixes, tyro.conf.FlagConversionOff),
            )
    except SystemExit as exc:
        if exc.code not in (0, None):
            print(f"error: {_one_line(stderr.getvalue())}", file=sys.stderr)
            raise SystemExit(2) from None
        sys.stderr.write(stderr.getvalue())
        raise


def _start_jax(cmd: object) -> None:
    """Set up this process's JAX before anything computes: CPU devices and threads, and the RNG lowering.

    Both are process-wide, so they are chosen here, once, by the program that
    owns the process (see mtdqn.devices) — never as a side effect of building
    a trainer.  The straight-line Threefry lowering is on for every command
    (the same bits, ~5-10% faster iterations); MTDQN_ROLLED_THREEFRY=1 keeps
    JAX's default.
    """
    from mtdqn.devices import unroll_cpu_threefry, use_cpu_cores

    use_cpu_cores(*_cpu_plan(cmd))
    if os.environ.get("MTDQN_ROLLED_THREEFRY", "") not in ("1", "true"):
        unroll_cpu_threefry()


def _cpu_plan(cmd: object) -> tuple[int, int] | tuple[()]:
    """(devices, threads) for the command, or () for one device per core.

    ``train`` knows its seeds and tasks (from the command, or from the run it
    resumes), a local ``study`` from its spec (every cell has the study's
    tasks and seeds); other commands get one device per core.
    """
    from mtdqn.devices import cpu_plan

    if isinstance(cmd, Study) and cmd.ray_address is None:
        from mtdqn.studies.presets import study_table  # the table as written: validating it would start JAX

        try:
            table, _, _ = study_table(cmd.study, {"seeds": cmd.seeds})
            seeds, tasks = table["seeds"], table["tasks"]
            return cpu_plan(seeds, [str(t) for t in tasks], cmd.devices) if isinstance(seeds, int) else ()
        except (ConfigError, KeyError, TypeError):  # _run_study says what is wrong in one line
            return ()
    if not isinstance(cmd, Train):
        return ()
    if cmd.resume is None:
        return cpu_plan(cmd.cfg.seeds, cmd.cfg.tasks, cmd.devices or 0)
    from mtdqn.checkpoint import checkpoint_meta  # plain JSON: does not start JAX

    try:  # the latest checkpoint's record: the config and layout the resumed run continues with
        meta = checkpoint_meta(cmd.resume)
        seeds, tasks = int(meta["config"]["seeds"]), list(meta["config"]["tasks"])
        devices = cmd.devices if cmd.devices is not None else int(meta.get("options", {}).get("devices", 1))
    except (ConfigError, KeyError, TypeError, ValueError):  # no usable record: _run_train says so in one line
        return ()
    return cpu_plan(seeds, tasks, devices)


def main(argv: list[str] | None = None) -> None:
    """Entry point: parse, dispatch, turn user errors into one line (exit 2; diverged 3; I/O 1)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    cmd = _parse(sys.argv[1:] if argv is None else argv)
    _start_jax(cmd)
    handler = next(fn for cls, fn in COMMANDS.values() if isinstance(cmd, cls))
    try:
        handler(cmd)
    except (ConfigError, TrainingDiverged) as exc:
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        raise SystemExit(2 if isinstance(exc, ConfigError) else 3) from None
    except OSError as exc:  # disk full or a folder that became unwritable mid-run
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"error: cannot write results: {exc.strerror or exc}{where}", file=sys.stderr)
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        raise SystemExit(130) from None


if __name__ == "__main__":
    main()
