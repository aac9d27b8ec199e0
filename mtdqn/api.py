"""The Python API: every `mtdqn` command as a function, and what it made as a :class:`~mtdqn.results.Run` or
:class:`~mtdqn.results.Study`.

    import mtdqn
    run = mtdqn.train(tasks=["CartPole-v1", "Acrobot-v1"], steps=20_000, seeds=2, out="runs/two")
    run.evals.query("step == step.max()").groupby("task").return_mean.mean()  # the last evaluation, seeds' mean

Options are the CLI's, by their flag names with underscores (``--batch-size``
is ``batch_size=``), flat: a config field's section (``dqn.``,
``network.``) is never written (:mod:`mtdqn.flatoptions` maps them, the one
mapping the study files use too).  Every check is the CLI's, so a bad value
raises :class:`~mtdqn.errors.ConfigError` with the line the CLI prints, and
nothing is written.  The CLI's handlers call these functions: one code path.

Each function sets up JAX's CPU devices as the CLI does (one per core the
seeds can use), unless the process already started JAX.
"""

from __future__ import annotations

import hashlib
import shlex
import json
import os
import sys
import shutil
import tempfile
import typing
import warnings
from pathlib import Path
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Sequence

from mtdqn.config import TrainConfig, config_hash
from mtdqn.distill.config import DistillConfig
from mtdqn.errors import ConfigError, check_devices_asked, check_path, warn_user
from mtdqn.flatoptions import apply_options, coerce, config_options, option_table, unknown_option
from mtdqn.io import check_not_other_kind, held
from mtdqn.results import Run, Study
from mtdqn.rundir import STUDY_RECORD, RunDir
from mtdqn.runoptions import OnEval, RunOptions
from mtdqn.sweepspec import check_not_also_given, check_sweep, is_sweep, member_configs, parse_sweep, read_sweep
from mtdqn.tasknames import check_task_names, split_task_list

if TYPE_CHECKING:  # annotations only: the tune's modules import Optuna, play's JAX
    import pandas as pd

    from mtdqn.play import PlayResult
    from mtdqn.tune.run import TuneResult

__all__ = ["TRAIN_OPTIONS", "DISTILL_OPTIONS", "RUN_OPTIONS", "train_config", "train", "finetune", "extend",
           "distill", "study", "tune", "play", "evaluate", "default_out", "default_train_out"]

TRAIN_OPTIONS = option_table(TrainConfig)
"""Flat train option name -> (config section, type): ``tasks``, ``steps``, ``lr``, ``sharing``, ..."""
DISTILL_OPTIONS = option_table(DistillConfig)
"""Flat option names of `mtdqn distill` (:class:`~mtdqn.distill.config.DistillConfig` and its network)."""
RUN_OPTIONS = {name: ("", hint) for name, hint in typing.get_type_hints(RunOptions).items()}
"""How a run is driven (:class:`~mtdqn.runoptions.RunOptions`): ``eval_every``, ``eval_episodes``, ..."""

Announce = Callable[[str], None]


def _flag(name: str) -> str:
    return f"--{name.replace('_', '-')}"


def _checked(options: dict[str, Any], *tables: dict[str, tuple[str, Any]],
             keywords: Sequence[str] = ()) -> list[dict[str, Any]]:
    """``options`` split by the tables their names belong to, each value type-checked; unknown names and
    wrong types are one-line ConfigErrors (the closest name suggested, the caller's own ``keywords`` first:
    ``finetune(freez=...)`` means ``freeze``)."""
    hints = {name: (i, hint) for i, table in enumerate(tables) for name, (_, hint) in table.items()}
    out: list[dict[str, Any]] = [{} for _ in tables]
    for name, value in options.items():
        if name not in hints:
            raise ConfigError(unknown_option(name, [*keywords, *hints]))
        i, hint = hints[name]
        if name in ("tasks", "add_tasks") and isinstance(value, str):
            value = tuple(split_task_list(value))  # "CartPole-v1,Acrobot-v1", as --tasks takes it
        elif name == "teachers" and isinstance(value, (str, Path)):
            value = (str(value),)
        try:
            out[i][name] = coerce(value, hint)
        except TypeError as exc:
            raise ConfigError(f"{_flag(name)}: {exc}") from None
    return out


def train_config(**options: Any) -> TrainConfig:
    """The TrainConfig of flat train options over the defaults (names and types checked, values not yet)."""
    (training,) = _checked(options, TRAIN_OPTIONS)
    return apply_options(TrainConfig(), training, TRAIN_OPTIONS)


def default_out(kind: str, *what: Any) -> Path:
    """runs/<kind>-<hash of what makes the run>: where a command writes when not told."""
    return Path("runs") / f"{kind}-{hashlib.sha256(json.dumps(list(what)).encode()).hexdigest()[:8]}"


def default_train_out(cfg: TrainConfig) -> Path:
    """runs/train-<config hash>: where `mtdqn train` writes a run when not told (JAX-free: the CLI checks the
    folder before JAX starts)."""
    return Path("runs") / f"train-{config_hash(cfg)[:8]}"


_warned_of_devices = False
"""Whether this process warned that JAX had started with fewer CPU devices than a run's seeds could use."""


def _devices_chosen() -> bool:
    """Whether this process's JAX CPU devices are chosen already (an earlier call here, or the user's code): then
    nothing is planned before a study is validated, and a study refused by its validation says nothing of the
    devices it would have shared."""
    jax = sys.modules.get("jax")
    return jax is not None and jax.config.jax_num_cpu_devices != -1


def _start_jax(seeds: int, tasks: Sequence[str], devices: int) -> None:
    """The CLI's JAX setup (:mod:`mtdqn.devices`) where this process has not started JAX yet: CPU devices for
    the seeds, and the faster Threefry lowering (the same bits).  Where JAX had started with fewer CPU devices
    than the seeds could use (the user's own JAX code ran first, or an earlier run in this process chose them),
    a warning says so: the seeds then share the devices there are, correct but slower.  Not for a device count
    the user chose (``devices``, ``XLA_FLAGS``), nor for ``gym:`` tasks, which train on one device anyway."""
    from mtdqn.devices import cpu_plan, unroll_cpu_threefry, use_cpu_cores

    global _warned_of_devices

    wanted, threads = cpu_plan(seeds, list(tasks), devices)
    chosen = devices > 0 or "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", "")
    if not use_cpu_cores(wanted, threads) and not chosen and not any(str(t).startswith("gym:") for t in tasks):
        import jax

        have = len(jax.devices()) if jax.default_backend() == "cpu" else wanted
        if have < wanted and not _warned_of_devices:
            _warned_of_devices = True  # once per process: the devices stay as they are for its later runs
            warn_user(f"mtdqn: this process's JAX has {have} CPU device(s), chosen before this run (by JAX "
                      f"code that ran first, or an earlier call here with fewer seeds), so its {seeds} seeds "
                      f"share them where {wanted} cores could each take some: correct, but slower. Call "
                      "mtdqn.devices.use_cpu_cores() first thing in the process to present every core.",
                      UserWarning)
    unroll_cpu_threefry()


def _refuse_before_jax(configs: Sequence[tuple[str, TrainConfig]]) -> None:
    """What new runs (one, or a sweep's members: (label, config), the label "" for one run) can be refused for
    without starting JAX: their options, their budgets and their task names.  A member's refusal names it
    ("--lr must be > 0" named no flag the user gave).

    :func:`_start_jax` fixes this process's CPU devices for good (as many as
    the first run's seeds use), so a call refused after it, a typo in a
    notebook, left the next run with that call's devices.  Names registered
    in this process or given by import path are checked later (registering
    one started JAX already, with every core).
    """
    from mtdqn.budget import check_train_budget
    from mtdqn.config import check_new_run

    for label, cfg in configs:
        try:
            check_new_run(cfg)
            with warnings.catch_warnings():  # a budget of few updates warns once, when the run starts
                warnings.simplefilter("ignore")
                check_train_budget(cfg, strategy_rules=False)  # (its strategy's warning imports JAX)
            if not label:  # a sweep's members: their strategy options are the sweep's to refuse, in its words
                check_sharing_and_strategy(cfg)
        except ConfigError as exc:
            raise ConfigError(f"--sweep member {label}: {exc}" if label else str(exc)) from None
    check_task_names(configs[0][1].tasks)  # a sweep's members share their tasks


def check_sharing_and_strategy(cfg: TrainConfig) -> None:
    """``--sharing``'s K against the trunk and the strategy's options, as building the agent checks them, but
    before JAX's devices are chosen: the checks import JAX without starting its backends (``moe:1`` or cagrad's
    ``c=-1`` refused in a notebook left its later runs on the refused call's devices).  The trunk's depth from
    the tasks' kind (:mod:`mtdqn.taskfacts`); of a task known only later (your own, registered), the build's."""
    from mtdqn.config import derive
    from mtdqn.networks.architecture import parse_sharing, trunk_layers
    from mtdqn.strategies import make_strategy
    from mtdqn.taskfacts import facts

    kinds = {f.kind if (f := facts(task)) is not None else None for task in cfg.tasks}
    if kinds in ({"image"}, {"vector"}):
        parse_sharing(cfg.network.sharing, len(trunk_layers(kinds.pop(), cfg.network)))
    d = derive(cfg)
    make_strategy(d.strategy, cfg.strategy_args, d.task_weights)


def _check_paths(**given: Any) -> None:
    """Folders given as paths (a str or an os.PathLike; ``None`` where allowed): a Python caller's ``out=123``
    raised pathlib's TypeError from inside the call."""
    for name, value in given.items():
        if value is not None:
            check_path(name, value)


def _check_driving(**given: Any) -> None:
    """The keywords that steer a call rather than configure a run: ``force``, ``resume`` and ``progress`` must be
    bools (``force="False"`` is truthy: it overwrote a run, silently), ``announce`` a callable or None, and
    ``devices`` a whole number >= 0."""
    for name, value in given.items():
        if name == "announce":
            ok, want = value is None or callable(value), "a callable (e.g. print) or None"
        elif name == "devices":
            ok, want = isinstance(value, int) and not isinstance(value, bool), "an int >= 0"
            if ok:
                check_devices_asked(value)  # as the CLI's runs say it
        else:
            ok, want = isinstance(value, bool), "True or False"
        if not ok:
            raise ConfigError(f"{name}: expected {want}, got {value!r}")


def _check_spec(preset_or_spec: Any, what: str) -> None:
    """A preset's name, a spec file's path or a table (dict): ``mtdqn.tune([1, 2])`` raised pathlib's TypeError."""
    if not isinstance(preset_or_spec, (str, os.PathLike, dict)):
        raise ConfigError(f"{what}: expected a preset's name, a .toml file's path or a table (dict), got "
                          f"{preset_or_spec!r}")


def train(tasks: Sequence[str] | str | None = None, steps: int | None = None, seeds: int | None = None,
          out: str | Path | None = None, *, resume: bool = False, force: bool = False, progress: bool = True,
          announce: Announce | None = None, on_eval: OnEval | None = None,
          sweep: Mapping[str, Sequence[float]] | Sequence[str] | None = None, **options: Any) -> Run | list[Run]:
    """Train one multi-task DQN agent, all seeds in one compiled program (`mtdqn train`).

    Args:
        tasks: task specs (``"CartPole-v1"``, ``"CarOnHill-v0:gamma=0.95"``, a registered name, an import
            path ``"module:factory"``); default the CLI's.
        steps: env steps per task (rounded up to whole ``log_every`` windows).
        seeds: how many seeds, trained together (vmapped).
        out: the run directory (default ``runs/train-<config hash>``).
        resume: continue the run in ``out`` from its latest checkpoint with its own config (no train options
            then); it ends bit-identical to an uninterrupted run.
        force: overwrite a run directory that already holds a run.
        progress: show a progress bar.
        announce: called once with a line describing the agent (e.g. ``print``).
        on_eval: called after each greedy evaluation during training with its env step and every evaluation
            row so far (``evals.parquet``'s rows); it may raise to stop the run, which stays resumable from its
            last checkpoint (`mtdqn tune`'s pruner does); not for the last step's, which the returned Run holds.
            Single runs only: with ``sweep`` (a new one or a resumed sweep directory) it is refused.
        sweep: train every combination of these values x the seeds as one compiled program (`--sweep`):
            ``{"lr": [1e-4, 3e-4], "gamma": [0.98, 0.99]}`` or ``["lr=1e-4,3e-4", "gamma=0.98,0.99"]``; only
            :data:`mtdqn.sweepspec.SWEEPABLE` options, a task's weight (``"weight.Acrobot-v1"``) and the
            strategy's real-valued options (``"strategy.c"``).  Returns one Run per member (each directory under
            ``out``, default ``runs/sweep-<hash>``).  ``resume`` continues a sweep directory as well.
        **options: every other option of `mtdqn train` by its flat name: train options (``lr``, ``sharing``,
            ``hidden``, ``strategy``, ``batch_size``, ...) and run options (``eval_every``,
            ``eval_episodes``, ``patience``, ``devices``, ...).

    Returns the finished :class:`~mtdqn.results.Run` (with ``sweep``, a list of them, one per member).  Raises
    ConfigError (one line, nothing written) on bad input, and TrainingDiverged on a non-finite loss or Q-value.
    """
    _check_paths(out=out)
    _check_driving(resume=resume, force=force, progress=progress, announce=announce)
    given = {k: v for k, v in (("tasks", tasks), ("steps", steps), ("seeds", seeds)) if v is not None}
    training, run_options = _checked({**given, **options}, TRAIN_OPTIONS, RUN_OPTIONS)
    swept = _sweep_of(sweep)
    _check_no_eval_callback(swept, on_eval)
    resumed_devices = 0  # a resumed run's own device count
    if resume:
        if out is None:
            raise ConfigError("resume continues the run in out=: give its directory")
        flags = [_flag(name) for name in training] + (["--force"] if force else []) + (["--sweep"] if swept else [])
        if flags:
            raise ConfigError(f"--resume continues {out} with the config it was started with; drop "
                              f"{', '.join(flags)} (or start a new run with --out)")
        if Path(out).is_dir():  # one being trained now: said so (it read "stopped before its first checkpoint")
            with held(Path(out)):
                pass
        if is_sweep(Path(out)):
            cfg, swept = read_sweep(Path(out))
            _check_no_eval_callback(swept, on_eval)
        else:
            RunDir(out).require_resumable()  # one line if out holds no run, or a student: before JAX starts
            cfg = RunDir(out).runnable_config()
            from mtdqn.checkpoint import resumed_layout  # plain JSON: does not start JAX

            try:  # its own seed layout, as the CLI plans it (where JAX has fewer devices, train says why)
                resumed_devices = resumed_layout(out, run_options)[2]
            except (ConfigError, KeyError, TypeError, ValueError):  # no usable record: train says so in one line
                pass
    else:
        check_not_also_given(swept, training)
        cfg = apply_options(TrainConfig(), training, TRAIN_OPTIONS)
        # every member's options apply before anything starts, each checked by its own values
        _refuse_before_jax(member_configs(cfg, swept) if swept else [("", cfg)])
        if out is None:
            out = (default_out("sweep", config_hash(cfg), {k: list(v) for k, v in swept.items()}) if swept
                   else default_train_out(cfg))
        if swept:  # a reused folder is refused before JAX starts, as the CLI does
            RunDir(out).check_new_sweep(force)
        else:
            RunDir(out).check_new(force)
    _start_jax(cfg.seeds, cfg.tasks, run_options.get("devices", 0) or resumed_devices)
    if swept:
        from mtdqn.train.sweep import train_sweep

        with _shared_compiles():
            results = train_sweep(cfg, swept, Path(out), resume=resume, force=force, progress=progress,
                                  announce=announce, **run_options)
        return [Run(r.out_dir) for r in results]
    from mtdqn.train.run import train as train_run

    result = train_run(cfg, Path(out), resume=resume, force=force, progress=progress, announce=announce,
                       on_eval=on_eval, warn_rounding=True, **run_options)
    return Run(result.out_dir)


def _check_no_eval_callback(swept: Any, on_eval: OnEval | None) -> None:
    """A sweep trains its members as one program, their evaluations together: ``on_eval`` was silently never
    called there."""
    if swept and on_eval is not None:
        raise ConfigError("on_eval: observes a single run's evaluations, not a sweep's members (train the member "
                          "alone, or read each member's evals.parquet after the sweep)")


@contextmanager
def _shared_compiles() -> Iterator[None]:
    """Compile a sweep's end-of-run programs once, not once per member.

    Each member's final evaluation, gradient probe and CKA are built from its
    own agent, so JAX's in-memory caches miss, yet their programs are the
    same.  JAX's persistent compilation cache (a temporary directory, unless
    this process already has one) finds them by their contents: the 2nd..Nth
    member load the first one's executables instead of compiling.  Put back
    after the sweep, with JAX's cache forgotten (it reads its directory once):
    left on, every later compile of the process, the user's own, went to the
    temporary folder, and a cache directory the user set later was ignored.
    """
    import jax
    from jax.experimental.compilation_cache.compilation_cache import reset_cache

    if jax.config.jax_compilation_cache_dir:
        yield
        return
    before = jax.config.jax_persistent_cache_min_compile_time_secs
    path = tempfile.mkdtemp(prefix="mtdqn-sweep-jax-")
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    try:
        yield
    finally:
        jax.config.update("jax_compilation_cache_dir", None)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", before)
        reset_cache()
        shutil.rmtree(path, ignore_errors=True)


def _sweep_of(sweep: Mapping[str, Sequence[float]] | Sequence[str] | None) -> dict[str, tuple[float, ...]]:
    """The sweep as ``{option: values}``, checked (:mod:`mtdqn.sweepspec`); {} for none."""
    if sweep is None or (not isinstance(sweep, Mapping) and not sweep):
        return {}
    if isinstance(sweep, str):
        sweep = [sweep]
    if not isinstance(sweep, (Mapping, list, tuple)):
        raise ConfigError(f"sweep=: expected {{option: values}} or a list of 'option=V1,V2', got {sweep!r}")
    if isinstance(sweep, Mapping):
        try:
            values = {k: [float(v) for v in ([vs] if isinstance(vs, (int, float)) else vs)] for k, vs in sweep.items()}
        except (TypeError, ValueError):
            raise ConfigError(f"sweep= values must be numbers, got {dict(sweep)!r}") from None
        return check_sweep(values)
    return parse_sweep(list(sweep))


def finetune(source: str | Path, tasks: Sequence[str] | str | None = None, out: str | Path | None = None, *,
             freeze: str = "none", trunk_lr: float = 0.0, lora: int | None = None, keep_heads: bool = False,
             force: bool = False, progress: bool = True, announce: Announce | None = None,
             **options: Any) -> Run:
    """Fine-tune a trained run's trunk on ``tasks`` (new or its own) into a new run (`mtdqn finetune`).

    Args:
        source: the trained run (only read).
        tasks: the tasks to learn; the network's shape comes from ``source``.  Default the CLI's
            (CartPole-v1, Acrobot-v1), not ``source``'s: name them to fine-tune on its own tasks.
        out: the new run directory (default ``runs/finetune-<hash of what makes the run>``).
        freeze: ``none`` | ``trunk`` | ``bottom:K`` | ``trunk-until:STEPS``.
        trunk_lr: learning rate of the pretrained trunk layers that train (0: ``lr``).
        lora: train rank-``lora`` updates of the frozen trunk's dense layers instead (None: off).
        keep_heads: tasks ``source`` trained keep its adapters and heads.
        force, progress, announce: as for :func:`train`.
        **options: train and run options, as for :func:`train`.

    Returns the new run's :class:`~mtdqn.results.Run`; ConfigError (one line, nothing written) on bad input.
    """
    return _transfer("finetune", source, out, dict(freeze=freeze, trunk_lr=trunk_lr, lora=lora, keep_heads=keep_heads),
                     dict(force=force, progress=progress, announce=announce),
                     {**({"tasks": tasks} if tasks is not None else {}), **options})


def extend(source: str | Path, add_tasks: Sequence[str] | str, out: str | Path | None = None, *,
           freeze: str = "none", trunk_lr: float = 0.0, force: bool = False, progress: bool = True,
           announce: Announce | None = None, **options: Any) -> Run:
    """Continue a trained run on its tasks plus ``add_tasks``, its heads kept (`mtdqn extend`); the summary's
    ``transfer`` entry holds the old tasks' forgetting.  ``add_tasks``: task specs, a list or one string
    (``"A,B"`` is two, as ``--add-tasks`` reads it); the other arguments and the return as for :func:`finetune`."""
    added = tuple(split_task_list(add_tasks)) if isinstance(add_tasks, str) else tuple(add_tasks) \
        if isinstance(add_tasks, (list, tuple)) else None  # a string as --add-tasks reads it: "A,B" is two tasks
    if added is None or not all(isinstance(t, str) for t in added):  # add_tasks=5: "'int' object is not iterable"
        raise ConfigError(f"--add-tasks: expected a task name or a list of them, got {add_tasks!r}")
    return _transfer("extend", source, out, dict(freeze=freeze, trunk_lr=trunk_lr, add_tasks=added),
                     dict(force=force, progress=progress, announce=announce), options)


_HOW_TYPES: dict[str, tuple[str, tuple[type, ...]]] = {
    "freeze": ("str", (str,)), "trunk_lr": ("float", (int, float)), "lora": ("int or None", (int, type(None))),
    "keep_heads": ("bool", (bool,))}


def _checked_how(how: dict[str, Any]) -> dict[str, Any]:
    """finetune's and extend's own keywords type-checked, as the flat options are (``lora="4"`` met a comparison
    of str with int, ``freeze=3`` a method of str); ``trunk_lr`` as a float."""
    for name, value in how.items():
        if name not in _HOW_TYPES:  # add_tasks: task names, checked as such
            continue
        want, kinds = _HOW_TYPES[name]
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            raise ConfigError(f"{_flag(name)}: expected {want}, got {value!r}")
    return {**how, **({"trunk_lr": float(how["trunk_lr"])} if "trunk_lr" in how else {})}


def _transfer(kind: str, source: str | Path, out: str | Path | None, how: dict[str, Any],
              driving: dict[str, Any], options: dict[str, Any]) -> Run:
    """finetune and extend: the base config, the default folder, then :mod:`mtdqn.transfer` (imported once JAX is
    planned: it imports the tasks, whose gymnax starts JAX)."""
    _check_paths(source=source, out=out)
    _check_driving(**driving)
    training, run_options = _checked(options, TRAIN_OPTIONS, RUN_OPTIONS, keywords=list(how))
    how = _checked_how(how)
    base = apply_options(TrainConfig(), training, TRAIN_OPTIONS)
    if out is None:  # the folder names what makes this run: its options, its source and how it starts from it
        out = default_out(kind, config_hash(base), str(Path(source).absolute()), how["freeze"], how["trunk_lr"],
                          how.get("lora"), how.get("keep_heads"), list(how.get("add_tasks", ())))
    RunDir(source).require_run("--from")  # before JAX starts (_refuse_before_jax): a source that is no run
    RunDir(source).runnable_config()
    check_task_names(how["add_tasks"] if kind == "extend" else base.tasks)  # extend refuses --tasks itself
    if Path(out).absolute() != Path(source).absolute():  # the source as --out: refused by name (mtdqn.transfer)
        RunDir(out).check_new(driving["force"])  # a reused folder: one line, not after the run's announcement
    _start_jax(base.seeds, base.tasks, run_options.get("devices", 0))
    from mtdqn import transfer

    if kind == "extend":
        result = transfer.extend(base, source, how["add_tasks"], Path(out), freeze=how["freeze"],
                                 trunk_lr=how["trunk_lr"], **driving, **run_options)
    else:
        result = transfer.finetune(base, source, Path(out), freeze=how["freeze"], trunk_lr=how["trunk_lr"],
                                   lora_rank=how["lora"], keep_heads=how["keep_heads"], **driving, **run_options)
    return Run(result.out_dir)


def distill(teachers: Sequence[str | Path], out: str | Path, *, force: bool = False, progress: bool = True,
            **options: Any) -> Run:
    """Distil trained teacher runs into one shared-trunk student run (`mtdqn distill`, Rusu et al. 2016).

    Args:
        teachers: one trained run's path or a list of them (only read); their tasks are the student's.
        out: the student's run directory (required, as ``--out`` is).
        force: overwrite a run directory that already holds a run.
        progress: show a progress bar.
        **options: `mtdqn distill`'s by their flat names (``steps``, ``lr``, ``loss``, ``hidden``, ...).

    Returns the student's :class:`~mtdqn.results.Run`, an ordinary run; ``run.json("distill")`` holds its
    comparison with the teachers.  ConfigError (one line, nothing written) on bad input.
    """
    _check_paths(out=out)
    _check_driving(force=force, progress=progress)
    (flat,) = _checked(options, DISTILL_OPTIONS)
    cfg = apply_options(DistillConfig(), flat, DISTILL_OPTIONS)
    if not isinstance(teachers, (str, os.PathLike, list, tuple)):  # distill(5) met list()'s TypeError
        raise ConfigError(f"teachers: expected a run's path or a list of them, got {teachers!r}")
    given = [teachers] if isinstance(teachers, (str, os.PathLike)) else list(teachers)
    for teacher in given:  # distill([5]) met pathlib's TypeError
        check_path("teachers", teacher)
    if any(isinstance(t, str) and not t.strip() for t in given):  # Path("") is already "."
        raise ConfigError("--teachers: an empty path (it read as '.', the current folder)")
    teacher_dirs = [Path(t) for t in given]
    for teacher in teacher_dirs:  # before JAX starts (_refuse_before_jax): a teacher that is no run
        RunDir(teacher).runnable_config()
    if all(Path(out).absolute() != t.absolute() for t in teacher_dirs):  # a teacher as --out: refused by name
        RunDir(out).check_new(force)  # a reused folder: one line before JAX starts
    _start_jax(1, [], 0)
    from mtdqn.distill.run import distill as distill_run  # after the plan: it imports the tasks (gymnax starts JAX)

    result = distill_run(teacher_dirs, Path(out), cfg, force=force, progress=progress)
    return Run(result.out_dir)


def study(preset_or_spec: str | Path | dict[str, Any], out: str | Path | None = None, *,
          ray_address: str | None = None, devices: int = 0, progress: bool = True, **overrides: Any) -> Study:
    """Run a study's unfinished cells, then build its report (`mtdqn study`); a rerun skips finished cells.

    Args:
        preset_or_spec: a built-in preset's name (``"quick"``, ``"classic"``, ``"transfer"``, ...), a study
            file (.toml), or a study table as a dict (the TOML's schema: ``tasks``, ``steps``, ``seeds``,
            ``options``, ``variants``, ``thresholds``, ...; without ``name``, the name is ``out``'s folder
            name, as a study file's is its stem, else "study").
        out: the study directory (default ``runs/study-<name>``).
        ray_address: run the cells as Ray tasks (``"local"``, ``"auto"``, HOST:PORT or ``ray://HOST:PORT``);
            tasks registered with :func:`mtdqn.register_task` exist only in this process (name them by import
            path instead).
        devices: split each cell's seeds over this many local devices (0: as many as the seeds can use).
        progress: print a line per cell and show each cell's progress bar.
        **overrides: top-level keys replacing the study's (``seeds``, ``steps``, ``eval_every``, ...).

    Returns the :class:`~mtdqn.results.Study` (its cells, tables and report).  ConfigError (one line, nothing
    written) on bad input; a cell that fails is recorded and reported (``Study.failed``), not raised.
    """
    from mtdqn.studies import build_spec, resolve_spec, run_study
    from mtdqn.studies.presets import GROUPS_PRESET, TRANSFER_PRESETS, study_seeds_and_tasks

    _check_spec(preset_or_spec, "study")
    _check_paths(out=out)
    _check_driving(progress=progress, devices=devices)
    if out is not None:  # a folder of another kind, before JAX is planned (and warned of)
        check_not_other_kind(Path(out), STUDY_RECORD)
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if isinstance(preset_or_spec, str) and preset_or_spec in TRANSFER_PRESETS:
        return _transfer_study(preset_or_spec, out, ray_address, devices, progress, overrides)
    if preset_or_spec == GROUPS_PRESET:
        return _groups_study(out, ray_address, devices, progress, overrides)
    written = study_seeds_and_tasks(preset_or_spec, overrides) if ray_address is None else None
    if written and not _devices_chosen():  # planned from the table as written: validating it imports the tasks
        _start_jax(*written, devices)  # (JAX starts); where chosen already, a refused study warns of none
    if isinstance(preset_or_spec, dict):
        spec = build_spec({**preset_or_spec, **overrides}, "study",
                          str(preset_or_spec.get("name", _unnamed_study_name(out))))
    else:
        spec = resolve_spec(preset_or_spec, overrides)
    if ray_address is None:
        _start_jax(spec.seeds, spec.tasks, devices)
    result = run_study(spec, Path(out) if out is not None else Path("runs") / f"study-{spec.name}",
                       ray_address=ray_address, progress=progress, devices=devices)
    return Study(result.out_dir)


def _unnamed_study_name(out: str | Path | None) -> str:
    """The name of a study table without ``name``: the one its folder's study.json stored (a rerun resumes it),
    else the folder's name, as a study file's is its stem, where that is a study name; else "study" (all of them
    were, before: their lines read "study study: ...")."""
    from mtdqn.studies.cell import read_summary
    from mtdqn.studies.spec import SAFE_NAME

    if out is None:
        return "study"
    stored = (read_summary(Path(out) / STUDY_RECORD) or {}).get("name")
    if isinstance(stored, str) and SAFE_NAME.fullmatch(stored):
        return stored
    folder = Path(out).resolve().name
    return folder if SAFE_NAME.fullmatch(folder) else "study"


def _check_stage_overrides(overrides: dict[str, Any]) -> None:
    """The two- and three-stage presets' own overrides, checked as a study table's are (``steps="1000"`` met
    integer arithmetic, and ``tasks="CartPole-v1,Acrobot-v1"`` was read as 22 one-letter tasks)."""
    for key in ("seeds", "steps"):
        value = overrides.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise ConfigError(f"{key}: expected a positive integer, got {value!r}")
    tasks = overrides.get("tasks")
    if tasks is not None and (not isinstance(tasks, (list, tuple)) or not all(isinstance(t, str) for t in tasks)):
        raise ConfigError(f"tasks: expected a list of task names, got {tasks!r}")  # (a generator: read once)


def _transfer_study(name: str, out: str | Path | None, ray_address: str | None, devices: int, progress: bool,
                    overrides: dict[str, Any]) -> Study:
    """The two-stage transfer presets (pretraining, then the held-out task): their own runner, local only."""
    from mtdqn.studies.presets import TRANSFER_PRESETS, check_transfer_budget
    from mtdqn.studies.transfer import run_transfer_study

    if ray_address is not None:
        raise ConfigError("the transfer study runs locally (its cells wait for the pretraining); drop --ray-address")
    unknown = sorted(set(overrides) - {"seeds", "steps"})
    if unknown:
        raise ConfigError(f"the transfer presets take seeds and steps only, not {unknown[0]}")
    _check_stage_overrides(overrides)
    if "steps" in overrides:
        check_transfer_budget(name, overrides.get("seeds"), overrides["steps"])
    spec = TRANSFER_PRESETS[name](overrides.get("seeds"), overrides.get("steps"))
    _start_jax(spec.seeds, list(spec.pretrain_tasks), devices)
    result = run_transfer_study(spec, Path(out) if out is not None else Path("runs") / f"study-{spec.name}",
                                progress=progress, devices=devices)
    return Study(result.out_dir)


def _groups_study(out: str | Path | None, ray_address: str | None, devices: int, progress: bool,
                  overrides: dict[str, Any]) -> Study:
    """The three-stage groups study (joint run with affinity, partition choice, the partitions): its own
    runner, local only."""
    from mtdqn.studies.groups import run_groups_study
    from mtdqn.studies.presets import groups_preset

    if ray_address is not None:
        raise ConfigError("the groups study runs locally (its partitions wait for the joint run); drop --ray-address")
    unknown = sorted(set(overrides) - {"seeds", "steps", "tasks"})
    if unknown:
        raise ConfigError(f"the groups study takes tasks, seeds and steps only, not {unknown[0]}")
    _check_stage_overrides(overrides)
    tasks = overrides.get("tasks")
    spec = groups_preset(tuple(tasks) if tasks is not None else None, overrides.get("seeds"), overrides.get("steps"))
    _start_jax(spec.seeds, list(spec.tasks), devices)
    result = run_groups_study(spec, Path(out) if out is not None else Path("runs") / f"study-{spec.name}",
                              progress=progress, devices=devices)
    return Study(result.out_dir)


def tune(preset_or_spec: str | Path | dict[str, Any], out: str | Path | None = None, *, storage: str | None = None,
         n_trials: int | None = None, confirm: int | None = None, ray_address: str | None = None,
         progress: bool = True, announce: Announce | None = None, command: str | None = None) -> TuneResult:
    """Search train options with Optuna, each trial an ordinary run; then the report (`mtdqn tune`).

    Args:
        preset_or_spec: a tune preset (``"classic-shared"``, ...: :data:`mtdqn.tune.presets.TUNE_PRESETS`), a
            tune spec file (.toml) or its table as a dict (:mod:`mtdqn.tune.spec`: tasks, steps, seeds, trials,
            objective, sampler, pruner, ``options``, ``space``).
        out: the tune directory (default ``runs/tune-<name>``); a rerun continues it (finished trials are kept,
            an interrupted one resumes from its run's checkpoint).
        storage: Optuna storage URL (default: SQLite ``OUT/tune.db``).
        n_trials: how many trials the directory should hold in all (default the spec's ``trials``).
        confirm: then retrain the best configuration with this many fresh seeds (its score is unbiased by the
            selection of the best).
        ray_address: run the trials as Ray tasks (``"local"``, ``"auto"``, HOST:PORT or ``ray://HOST:PORT``).
        progress: show each trial's progress bar.
        announce: called with a line as each trial starts and ends (e.g. ``print``).
        command: the command line the report names for ``--confirm`` (default: built from these arguments).

    Returns a :class:`~mtdqn.tune.run.TuneResult`.  Bad input raises ConfigError (one line, nothing written).
    """
    from mtdqn.tune.presets import resolve_tune_spec
    from mtdqn.tune.run import run_tune

    for name, value in (("n_trials", n_trials), ("confirm", confirm)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise ConfigError(f"{_flag(name)} must be an int > 0, got {value!r}")
    _check_spec(preset_or_spec, "tune")
    _check_paths(out=out)
    _check_driving(progress=progress, announce=announce)
    spec = resolve_tune_spec(preset_or_spec)
    if ray_address is None:
        _start_jax(spec.seeds, spec.tasks, 0)
    out = Path(out) if out is not None else Path("runs") / f"tune-{spec.name}"
    if command is None:
        named = preset_or_spec if isinstance(preset_or_spec, (str, Path)) else "SPEC.toml"
        command = shlex.join(["mtdqn", "tune", str(named), "--out", str(out),
                            *(["--storage", storage] if storage else []),
                            *(["--n-trials", str(n_trials)] if n_trials else [])])
    return run_tune(spec, out, storage=storage, trials=n_trials, ray_address=ray_address, confirm=confirm,
                    command=command, progress=progress, announce=announce or (lambda line: None))


def play(run: str | Path, task: str, **options: Any) -> PlayResult:
    """Watch a trained run (`mtdqn play`): greedy episodes of ``task``, their returns and lengths, and with
    ``gif=PATH`` an animated GIF of them; ``options`` are :func:`mtdqn.play.play`'s (``episodes``, ``seed``,
    ``agent_seed``, ``max_steps``, ``gif_every``, ``fps``).  Returns a :class:`mtdqn.play.PlayResult`."""
    import inspect

    from mtdqn.devices import use_cpu_cores

    check_path("run", run)
    use_cpu_cores()  # the renderers' imports start JAX (gymnax)
    from mtdqn.play import play as play_episodes

    known = [name for name in inspect.signature(play_episodes).parameters if name not in ("run_dir", "task")]
    for name in options:  # play(run, task, episode=1) met Python's TypeError
        if name not in known:
            raise ConfigError(unknown_option(name, known))
    return play_episodes(run, task, **options)


def evaluate(run: str | Path, episodes: int = 100, epsilon: float = 0.0) -> pd.DataFrame:
    """Greedy (or ``epsilon``-greedy) returns of a run's latest checkpoint, ``episodes`` per task and seed, also
    written to RUN/eval.json (`mtdqn evaluate`): :meth:`mtdqn.results.Run.evaluate`, one row per task and seed."""
    from mtdqn.results import open_run

    check_path("run", run)
    return open_run(run).evaluate(episodes, epsilon)


def cli_options(cfg: TrainConfig) -> dict[str, Any]:
    """The flat train options a CLI command's parsed TrainConfig sets (those that differ from the defaults):
    what its handler passes to the functions above."""
    return config_options(cfg, TRAIN_OPTIONS)


def cli_distill_options(cfg: DistillConfig) -> dict[str, Any]:
    """The flat options `mtdqn distill`'s parsed DistillConfig sets."""
    return config_options(cfg, DISTILL_OPTIONS)
