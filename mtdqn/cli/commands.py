"""The options of every `mtdqn` command: frozen dataclasses, one per command, from which tyro builds the CLI
(each field's docstring is its --help line)."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import textwrap
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import tyro

from mtdqn.config import TrainConfig
from mtdqn.distill.config import DistillConfig
from mtdqn.runoptions import RunOptions

__all__ = ["ResumableOptions", "given_options", "command_flags", "Train", "StartedRun", "Finetune", "Extend",
           "Evaluate", "Act", "Play", "Distill", "Tasks", "Strategies", "Study", "Tune", "Report"]


def _field_docs(cls: type) -> dict[str, str]:
    """Each field's docstring (the string under it) in ``cls``'s source, as tyro reads them for --help."""
    body = ast.parse(textwrap.dedent(inspect.getsource(cls))).body[0].body
    return {a.target.id: " ".join(inspect.cleandoc(b.value.value).split())
            for a, b in zip(body, body[1:]) if isinstance(a, ast.AnnAssign) and isinstance(a.target, ast.Name)
            and isinstance(b, ast.Expr) and isinstance(b.value, ast.Constant) and isinstance(b.value.value, str)}


def _optional_view(cls: type, name: str, note: str) -> type:
    """``cls`` with every field optional, None meaning "not given": for options a resumed run keeps unless
    given anew.  Each help line is the field's docstring in ``cls`` with its default there and ``note``, so
    defaults and help are written once, in ``cls``."""
    docs, hints = _field_docs(cls), typing.get_type_hints(cls)
    hint = "(default: {}; " + note + ")"
    fields = [(f.name, Annotated[hints[f.name] | None,
                                 tyro.conf.arg(help=docs[f.name], help_behavior_hint=hint.format(f.default))],
               field(default=None)) for f in dataclasses.fields(cls)]
    view = dataclasses.make_dataclass(name, fields, frozen=True)
    view.__module__, view.__doc__ = __name__, cls.__doc__
    return view


ResumableOptions = _optional_view(RunOptions, "ResumableOptions", "a resumed run keeps its own unless given")
"""The run options of `mtdqn train`: None where not given (see :func:`given_options`)."""


def command_flags(cls: type) -> list[str]:
    """The flags (``--lr``, ``--from``) of a command's dataclass as the CLI spells them: nested option sections
    are flat (tyro.conf.OmitArgPrefixes), a field annotated ``tyro.conf.arg(name=...)`` takes that name.  For the
    "did you mean" of an unrecognized flag, which tyro's parse-error hook does not suggest."""
    flags: list[str] = []
    for f in dataclasses.fields(cls):
        hint = typing.get_type_hints(cls, include_extras=True)[f.name]
        meta = getattr(hint, "__metadata__", ())
        if any(m is tyro.conf.Suppress or m is tyro.conf.Positional for m in meta):
            continue
        names = [m.name for m in meta if getattr(m, "name", None) is not None]
        inner = typing.get_args(hint)[0] if names else hint
        if dataclasses.is_dataclass(inner):
            flags.extend(command_flags(inner))
        else:
            flags.append("--" + (names[-1] if names else f.name).replace("_", "-"))
    return flags


def given_options(options: Any) -> dict[str, Any]:
    """The run options given on the command line: train() takes them over the defaults or a resumed run's own."""
    return {k: v for k, v in dataclasses.asdict(options).items() if v is not None}


@dataclass(frozen=True)
class Train:
    """Train one multi-task DQN agent (all seeds in one compiled program)."""

    cfg: Annotated[TrainConfig, tyro.conf.arg(name="")] = field(default_factory=TrainConfig)
    out: Path | None = None
    """Run directory (default: runs/train-<config hash>)."""
    force: bool = False
    """Overwrite a run directory that already holds a run."""
    resume: Path | None = None
    """Continue the run in this directory from its latest checkpoint, with the config it was started with
    (training options are refused; the run options below default to the run's own)."""
    options: Annotated[ResumableOptions, tyro.conf.arg(name="")] = field(  # type: ignore[valid-type]
        default_factory=ResumableOptions)
    sweep: Annotated[tuple[str, ...], tyro.conf.UseAppendAction] = ()
    """NAME=V1,V2,...: train every combination of the values x the seeds as one compiled program, each
    member an ordinary run directory under --out (repeat for more options; lr, gamma, tau, eps-start,
    eps-end, eps-fraction, dropout; weight.TASK: that task's --task-weights entry, e.g.
    weight.Acrobot-v1=0.5,2; strategy.OPTION: a real-valued --strategy-args option, e.g. strategy.c=0.2,0.5
    with --strategy cagrad)."""
    progress: bool = True
    """Show a progress bar."""


@dataclass(frozen=True)
class StartedRun:
    """Where a run started from a trained one goes and how it is driven: finetune's and extend's options."""

    out: Path | None = None
    """Run directory (default: runs/<command>-<hash of the options, the source and how the run starts from it>)."""
    force: bool = False
    """Overwrite a run directory that already holds a run (never the source)."""
    options: Annotated[RunOptions, tyro.conf.arg(name="")] = field(default_factory=RunOptions)
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
class ExtendConfig(TrainConfig):
    """TrainConfig without --tasks: extend trains the source run's tasks plus --add-tasks."""

    tasks: Annotated[tuple[str, ...], tyro.conf.Suppress] = TrainConfig.tasks


@dataclass(frozen=True)
class Extend:
    """Continue a trained multi-task run on its tasks plus new ones, its heads kept; reports the old tasks'
    forgetting."""

    from_: Annotated[Path, tyro.conf.arg(name="from")]
    """The trained run to continue (only read)."""
    add_tasks: tuple[str, ...]
    """Tasks to add (comma- or space-separated); the run's own come first."""
    cfg: Annotated[ExtendConfig, tyro.conf.arg(name="")] = field(default_factory=ExtendConfig)
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
    clip: bool = False
    """Clip observations outside the observation space's finite bounds into it (default: refuse them, one line
    naming the rows).  Non-finite values (NaN, inf) are refused either way."""


@dataclass(frozen=True)
class Play:
    """Greedy episodes of one task with a trained run's first seed (or --agent-seed's): each episode's return and
    length, and optionally a GIF of them (any task; CartPole, Acrobot and MountainCar need pip install
    'mtdqn[render]')."""

    run: tyro.conf.Positional[Path]
    """Run directory."""
    task: str
    """Which of the run's tasks to play."""
    episodes: int = 1
    """Episodes to play."""
    gif: Path | None = None
    """Also write the episodes as an animated GIF: a frame for the start and one after each step."""
    seed: int = 0
    """Seed of the environments' starts."""
    agent_seed: int | None = None
    """Which of the run's seeds plays: its network (default: the run's first seed; `act`'s --seed)."""
    max_steps: int = 0
    """End each episode after this many steps (default 0: at the task's own end or time limit)."""
    gif_every: int = 1
    """Keep every k-th frame in the GIF, and each episode's last (default 1: all of them)."""
    fps: int = 30
    """Frames per second of the GIF (at most 50; a GIF counts time in hundredths of a second: 30 plays at 33)."""


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
    """A built-in preset (quick, classic, minatar, deramo, minigrid-mt3, minigrid-mt5, minigrid-mt7, transfer,
    deramo-transfer, groups) or a study file (.toml)."""
    tasks: tuple[str, ...] | None = None
    """Override the study's tasks (comma- or space-separated); for `groups`, the tasks to group (2 to 7)."""
    seeds: int | None = None
    """Override the study's number of seeds."""
    steps: int | None = None
    """Override the study's env steps per task."""
    out: Path | None = None
    """Study directory (default: runs/study-<name>); re-running skips finished cells."""
    ray_address: str | None = None
    """Run cells as Ray tasks: local (a private instance), auto (a running cluster) or HOST:PORT."""
    devices: int = RunOptions.devices
    """Split each cell's seeds over this many local devices (0: as many as the seeds can use)."""
    progress: bool = True
    """Show a line per cell (and a progress bar per cell with the local backend)."""


@dataclass(frozen=True)
class Tune:
    """Search train options with Optuna (TPE, median or ASHA pruning), each trial an ordinary run; then a report
    (best configuration, importance, history, trials). A rerun continues: finished trials are kept."""

    spec: tyro.conf.Positional[Annotated[str, tyro.conf.arg(metavar="PRESET|SPEC.toml")]]
    """A tune preset (classic-shared, classic-independent-matched, classic-partial-1, classic-conditioned,
    classic-moe, classic-moore, classic-shared+unit-norm) or a tune spec file (.toml: tasks, steps, seeds, [space])."""
    out: Path | None = None
    """Tune directory (default: runs/tune-<name>)."""
    storage: str | None = None
    """Optuna storage URL (default: SQLite OUT/tune.db)."""
    n_trials: int | None = None
    """Trials the tune directory should hold in all (default: the spec's trials)."""
    confirm: int | None = None
    """Then retrain the best configuration with this many fresh seeds: a best-of-K score is biased upward."""
    ray_address: str | None = None
    """Run trials as Ray tasks: local (a private instance), auto (a running cluster) or HOST:PORT."""
    progress: bool = False
    """Show each trial's progress bar (a line per trial either way)."""


@dataclass(frozen=True)
class Report:
    """Rebuild a study's report from its stored results (STUDY/report/report.html, report.md, results.md)."""

    study_dir: tyro.conf.Positional[Annotated[Path, tyro.conf.arg(metavar="STUDY_DIR")]]
    """Study directory (holds study.json and cells/)."""
