"""The `mtdqn` command line, generated from the config dataclasses by tyro.

The CLI only parses and calls the library.  Every user error — ours
(:class:`ConfigError`) or a parse error from tyro — is printed as one line
``error: ...`` on stderr with exit status 2; a run that diverges (non-finite
loss or Q-value) exits 3 and a failed write (disk full) exits 1, each with one
line too.  Nothing is half-written because the library writes atomically.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Callable

import tyro

from mtdqn.config import TrainConfig
from mtdqn.distill.config import DistillConfig
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
    """Greedy episodes per task and seed in each evaluation (default 10; a resumed run keeps its own unless
    given)."""
    eval_every: int | None = None
    """Also evaluate greedily every this many env steps per task, into evals.parquet (default 0: only at the
    end; a resumed run keeps its own unless given)."""
    devices: int | None = None
    """Split the seeds over this many local devices (CPU cores or GPUs; default 0: as many as the seeds can
    use; a resumed run keeps its own unless given)."""
    progress: bool = True
    """Show a progress bar."""


@dataclass(frozen=True)
class StartedRun:
    """Where a run started from a trained one goes and how it is driven: finetune's and extend's options."""

    out: Path | None = None
    """Run directory (default: runs/<command>-<hash of the options, the source and how the run starts from it>)."""
    force: bool = False
    """Overwrite a run directory that already holds a run (never the source)."""
    checkpoint_every: int | None = None
    """Also checkpoint every this many env steps per task (default 0: only at the end)."""
    eval_episodes: int | None = None
    """Greedy episodes per task and seed in each evaluation: at the start, every --eval-every, at the end
    (default 10)."""
    eval_every: int | None = None
    """Env steps per task between greedy (validation) evaluations during training (default 0: none)."""
    patience: int = 0
    """Early stopping: stop after this many evaluations without improvement and restore each seed's best
    parameters (needs --eval-every; 0: off)."""
    test_episodes: int = 0
    """At the end, a test evaluation of this many greedy episodes per task and seed on episode starts of its
    own: printed and written to test_eval.json (0: none)."""
    devices: int | None = None
    """Split the seeds over this many local devices (default 0: as many as the seeds can use)."""
    progress: bool = True
    """Show a progress bar."""


@dataclass(frozen=True)
class Finetune:
    """Fine-tune a trained run's trunk on tasks (new or its own) into a new run: freeze, a lower trunk lr, or LoRA."""

    from_: Annotated[Path, tyro.conf.arg(name="from")]
    """The trained run whose shared trunk is loaded (only read)."""
    cfg: Annotated[TrainConfig, tyro.conf.arg(name="")] = field(default_factory=TrainConfig)
    freeze: str = "none"
    """none | trunk | bottom:K | trunk-until:STEPS (the pretrained trunk gets no updates: all of it, its K lowest
    layers, or all of it until env step STEPS per task)."""
    trunk_lr: float = 0.0
    """Learning rate of the pretrained trunk layers that train (default 0: --lr)."""
    lora: int | None = None
    """Train rank-R updates W + A B of the frozen trunk's dense layers instead of the trunk (default: off)."""
    keep_heads: bool = False
    """Tasks the source run trained keep its adapters and heads (others start fresh)."""
    run: Annotated[StartedRun, tyro.conf.arg(name="")] = field(default_factory=StartedRun)


@dataclass(frozen=True)
class Extend:
    """Continue a trained multi-task run on its tasks plus new ones, its heads kept; reports the old tasks'
    forgetting."""

    from_: Annotated[Path, tyro.conf.arg(name="from")]
    """The trained run to continue (only read)."""
    add_tasks: tuple[str, ...]
    """Tasks to add (comma- or space-separated); the run's own come first."""
    cfg: Annotated[TrainConfig, tyro.conf.arg(name="")] = field(default_factory=TrainConfig)
    freeze: str = "none"
    """none | trunk | bottom:K | trunk-until:STEPS, as for finetune."""
    trunk_lr: float = 0.0
    """Learning rate of the trunk (default 0: --lr)."""
    run: Annotated[StartedRun, tyro.conf.arg(name="")] = field(default_factory=StartedRun)


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
class Distill:
    """Distil trained teacher runs into one shared-trunk multi-task student (policy distillation, Rusu et al.
    2016); then the student's greedy return against each teacher's and a per-action report of their actions."""

    teachers: tuple[Path, ...]
    """Teacher run directories (comma- or space-separated); each task must come from exactly one teacher."""
    out: Path
    """The student's run directory (an ordinary run: evaluate, act and load_agent work on it)."""
    cfg: Annotated[DistillConfig, tyro.conf.arg(name="")] = field(default_factory=DistillConfig)
    force: bool = False
    """Overwrite a run directory that already holds a run."""
    progress: bool = True
    """Show a progress bar."""


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
    """A built-in preset (quick, classic, minatar, deramo, transfer, deramo-transfer) or a study file (.toml)."""
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

    from mtdqn.strategies import REGISTRY, SCOPE

    table = Table("strategy", "what it does", "options (default)", "paper")
    for name, spec in sorted(REGISTRY.items()):
        opts = ", ".join(f"{f.name}={f.default}" for f in dataclasses.fields(spec.options)) or "-"
        table.add_row(name, spec.summary, opts, spec.citation)
    console = Console(width=120)
    console.print(table)
    console.print(f"What the weights scale: {SCOPE}", markup=False)


def _run_train(cmd: Train) -> None:
    from mtdqn.config import config_hash
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
        out = cmd.out or Path("runs") / f"train-{config_hash(cfg)[:8]}"
    result = train(  # options not given are None: train() resolves them once (a resumed run keeps its own)
        cfg, out, force=cmd.force, progress=cmd.progress, resume=resume,
        checkpoint_every=cmd.checkpoint_every, eval_episodes=cmd.eval_episodes, devices=cmd.devices,
        eval_every=cmd.eval_every, announce=print,
    )
    for task, values in result.summary["final_eval"].items():
        print(f"  {task:24s} greedy return per seed: {', '.join(f'{v:.1f}' for v in values)}")
    if result.summary["eval_every"]:
        last = result.summary["final_score_evals"]
        for task, values in result.summary["final_score"].items():
            print(f"  {task:24s} final score (mean of the last {last} evaluations) per seed: "
                  f"{', '.join(f'{v:.1f}' for v in values)}")
    print(f"results: {out}  (metrics.parquet, summary.json, tb/, checkpoints/)")


def _run_finetune(cmd: Finetune | Extend) -> None:
    from mtdqn.config import config_hash
    from mtdqn.transfer import extend, finetune

    import dataclasses
    import hashlib
    import json

    kind = "extend" if isinstance(cmd, Extend) else "finetune"
    # The default folder names what makes this run: its options, its source and how it starts from it.
    how = [config_hash(cmd.cfg), str(cmd.from_.absolute()), cmd.freeze, cmd.trunk_lr,
           getattr(cmd, "lora", None), getattr(cmd, "keep_heads", None), list(getattr(cmd, "add_tasks", ()))]
    out = cmd.run.out or Path("runs") / f"{kind}-{hashlib.sha256(json.dumps(how).encode()).hexdigest()[:8]}"
    # train() resolves and checks the run options once (one-line errors for nonsense values)
    options = {**{k: v for k, v in dataclasses.asdict(cmd.run).items() if k != "out"}, "announce": print}
    if isinstance(cmd, Extend):
        result = extend(cmd.cfg, cmd.from_, cmd.add_tasks, out, freeze=cmd.freeze, trunk_lr=cmd.trunk_lr,
                        **options)
    else:
        result = finetune(cmd.cfg, cmd.from_, out, freeze=cmd.freeze, trunk_lr=cmd.trunk_lr, lora_rank=cmd.lora,
                          keep_heads=cmd.keep_heads, **options)
    transfer = result.summary["transfer"]
    print(f"  {'task':24s} greedy return per seed: at the start -> at the end")
    for task, values in result.summary["final_eval"].items():
        start = ", ".join(f"{v:.1f}" for v in transfer["start_eval"][task])
        print(f"  {task:24s} {start} -> {', '.join(f'{v:.1f}' for v in values)}")
    if "early_stop" in result.summary:
        early = result.summary["early_stop"]
        stopped = f"stopped at step {early['stopped_at']:,}" if early["stopped_at"] else "ran to the end"
        print(f"  early stopping: {stopped}; best evaluation per seed at step "
              f"{', '.join(f'{v:,}' for v in early['best_step'].values())} (restored)")
    if "test_eval" in result.summary:
        _print_test(out)
    print(f"results: {out}  (metrics.parquet, evals.parquet, start.json, summary.json, tb/, checkpoints/)")


def _print_test(run: Path) -> None:
    from mtdqn.io import read_json

    test = read_json(run / "test_eval.json")
    print(f"  test evaluation ({test['episodes']} greedy episodes per task and seed, episode starts of its own):")
    print(f"  {'task':24s} {'seed':>5s}  return (mean ± std)   discounted")
    for task, per_task in test["tasks"].items():
        for seed, r in per_task["per_seed"].items():
            print(f"  {task:24s} {int(seed):5d}  {r['mean']:9.2f} ± {r['std']:<9.2f} {r['discounted_mean']:9.2f}")
    print(f"  written: {run / 'test_eval.json'}")


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


def _run_distill(cmd: Distill) -> None:
    from mtdqn.distill.report import print_report
    from mtdqn.distill.run import distill

    result = distill(cmd.teachers, cmd.out, cmd.cfg, force=cmd.force, progress=cmd.progress)
    print_report(result.result)
    print(f"results: {cmd.out}  (distill.json, distill_report.md, distill_report.csv, checkpoints/)")


def _run_study(cmd: Study) -> None:
    from mtdqn.studies import resolve_spec, run_study

    from mtdqn.studies.presets import TRANSFER_PRESETS

    if cmd.study in TRANSFER_PRESETS:  # two stages (pretraining, then the held-out task): its own runner
        from mtdqn.studies.transfer import run_transfer_study

        if cmd.ray_address is not None:
            raise ConfigError("the transfer study runs locally (its cells wait for the pretraining); "
                              "drop --ray-address")
        spec = TRANSFER_PRESETS[cmd.study](cmd.seeds, cmd.steps)
        result = run_transfer_study(spec, cmd.out or Path("runs") / f"study-{spec.name}", progress=cmd.progress,
                                    devices=cmd.devices)
        print(f"transfer table: {result.out_dir / 'transfer.md'}")
        print(f"report: {result.report}")
        return

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
    "finetune": (Finetune, _run_finetune),
    "extend": (Extend, _run_finetune),
    "evaluate": (Evaluate, _run_evaluate),
    "act": (Act, _run_act),
    "play": (Play, _run_play),
    "distill": (Distill, _run_distill),
    "study": (Study, _run_study),
    "report": (Report, _run_report),
}

_LIST_FLAGS = ("--tasks", "--task-weights", "--teachers", "--add-tasks")


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


class _Rejected(Exception):
    """A command line tyro rejected, as the one line we print."""


def _rejection(event: object) -> str:
    """One line from tyro's parse-error event.

    ``tyro._errors.on_parse_error`` is tyro's one structured hook for parse
    failures (private and experimental, so pyproject.toml pins tyro exactly);
    it hands us the failure's parts instead of its boxed drawing.  An event
    type this version does not know gets a generic line, never a traceback.
    """
    from tyro import _errors as tyro_errors

    if isinstance(event, tyro_errors.InstantiationFailure):
        where = f"Error parsing {event.argument.display_name()}: " if event.argument is not None else ""
        return f"{where}{event.message}"
    if isinstance(event, tyro_errors.InvalidChoice):
        return (f"Error parsing {event.argument.display_name()}: invalid choice {event.value!r}. "
                f"Expected one of {event.choices}")
    if isinstance(event, tyro_errors.UnrecognizedArgs):
        return f"Unrecognized options: {' '.join(event.tokens)} (see `{event.prog} --help`)"
    if isinstance(event, tyro_errors.MissingArgs):
        names = ", ".join(a.arg.display_name() for a in event.missing_arguments)
        return f"Missing required arguments: {names} (see `{event.prog} --help`)"
    if isinstance(event, tyro_errors.MissingSubcommand):
        return f"expected a command: {', '.join(COMMANDS)} (see `mtdqn --help`)"
    if isinstance(event, tyro_errors.BadValue):
        name = event.argument.display_name()
        if event.reason == "too_few_values":
            return f"Error parsing {name}: expected {event.argument.lowered.metavar}"
        return f"Error parsing {name}: takes no value, got {event.offending_value!r}"
    return f"invalid arguments for `{getattr(event, 'prog', 'mtdqn')}` (see its --help)"


def _raise_rejection(event: object) -> None:
    raise _Rejected(_rejection(event))


def _parse(argv: list[str]) -> object:
    from tyro import _errors as tyro_errors

    try:
        with tyro_errors.on_parse_error(_raise_rejection):
            return tyro.extras.subcommand_cli_from_dict(
                {name: cls for name, (cls, _) in COMMANDS.items()},
                args=_split_commas(argv),
                prog="mtdqn",
                config=(tyro.conf.OmitArgPrefixes, tyro.conf.FlagConversionOff),
            )
    except _Rejected as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


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
