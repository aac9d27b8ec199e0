"""A tune spec: what `mtdqn tune` searches, read from a TOML file or a preset, checked before anything is written.

    name = "lr-gamma"
    tasks = ["CartPole-v1", "Acrobot-v1"]
    steps = 20000          # env steps per task of every trial
    seeds = 2              # seeds per trial (trained together, vmapped)
    trials = 8
    objective = "iqm"      # final | auc | iqm (mtdqn.tune.objective)
    pruner = "median"      # median | asha | none
    sampler_seed = 0       # the sampler's seed (every trial trains seeds 0..seeds-1)
    eval_every = 5000      # the greedy evaluations the pruner watches
    batch = 4              # trials asked at once; those differing only in lr, gamma, ... train in one program
    probes = false         # the trials' gradient probe and CKA (RunOptions.probes); default false: unread

    [options]              # fixed train options of every trial
    loss = "mse"

    [space]
    lr = {log = [1e-4, 3e-3]}
    gamma = {float = [0.95, 0.995]}
    batch_size = {int = [32, 128]}
    sharing = {choice = ["shared", "independent"]}

Options are the flat train option names of :mod:`mtdqn.flatoptions` (the
study files' and the Python API's); their types are checked here, their
values by the trial's own run (a sampled value no run accepts fails that
trial, recorded, and the search goes on).  JAX-free.

``batch = K`` (default 1) asks K trials at a time; those among them that differ
only in numbers the compiled loop traces (:data:`mtdqn.sweepspec.SWEEPABLE`:
lr, gamma, tau, the epsilon schedule, dropout) train as one population, one
compiled program, as a `--sweep`'s members do (:mod:`mtdqn.tune.batches`).
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple

import optuna

from mtdqn.analysis.anchors import lookup, usable
from mtdqn.config import TrainConfig, cadence_as_run, derive
from mtdqn.errors import ConfigError
from mtdqn.flatoptions import apply_options, coerce, option_table, type_name, unknown_option
from mtdqn.runoptions import RunOptions
from mtdqn.studies.spec import SAFE_NAME, read_study_file
from mtdqn.sweepspec import SWEEPABLE
from mtdqn.tasknames import check_task_names

__all__ = ["Dimension", "TuneSpec", "KINDS", "OBJECTIVES", "PRUNERS", "SAMPLERS", "FIXED", "TUNABLE", "build_tune_spec",
           "read_tune_spec"]

TRAIN_OPTIONS = option_table(TrainConfig)
RUN_OPTIONS = tuple(f.name for f in dataclasses.fields(RunOptions))
Kind = Literal["float", "log", "int", "choice"]
KINDS: tuple[Kind, ...] = typing.get_args(Kind)
OBJECTIVES = ("iqm", "final", "auc")
PRUNERS = ("median", "asha", "none")
SAMPLERS = ("tpe", "random")
FIXED = ("tasks", "steps", "seeds", "seed", "log_every", "affinity_every")
"""Train options a trial cannot vary: the spec's own keys (every trial trains seeds 0..seeds-1, common random
numbers), and those that change when things are measured ([options] may fix the last two)."""
TUNABLE = tuple(name for name in TRAIN_OPTIONS if name not in FIXED)
"""Train options a ``[space]`` may search over."""
_TOP = ("name", "tasks", "steps", "seeds", "trials", "objective", "sampler", "pruner", "sampler_seed", "eval_every",
        "eval_episodes", "checkpoint_every", "probes", "batch", "options", "space")


class Dimension(NamedTuple):
    """One searched option: a float, log-scale (float or int) or int range, or a list of choices."""

    kind: Kind
    low: float | int | None = None
    high: float | int | None = None
    choices: tuple[Any, ...] = ()

    def distribution(self) -> optuna.distributions.BaseDistribution:
        """The Optuna distribution of this dimension (choices as their labels): the sampler draws from it when the
        search asks for a trial, before the trial runs (on Ray, in another process)."""
        if self.kind == "choice":
            return optuna.distributions.CategoricalDistribution([_label(c) for c in self.choices])
        if isinstance(self.low, int) and isinstance(self.high, int):
            return optuna.distributions.IntDistribution(self.low, self.high, log=self.kind == "log")
        return optuna.distributions.FloatDistribution(float(self.low), float(self.high), log=self.kind == "log")

    def suggest(self, trial: Any, name: str) -> Any:
        """The trial's value of ``name`` (an Optuna trial: one asked with :meth:`distribution`, or a resumed one,
        gets back the value it was given)."""
        dist = self.distribution()
        if isinstance(dist, optuna.distributions.CategoricalDistribution):
            labels = list(dist.choices)
            return self.choices[labels.index(trial.suggest_categorical(name, labels))]
        if isinstance(dist, optuna.distributions.IntDistribution):
            return trial.suggest_int(name, dist.low, dist.high, log=dist.log)
        return trial.suggest_float(name, dist.low, dist.high, log=dist.log)

    def ends(self) -> tuple[Any, ...]:
        """The values at this dimension's edge: a range's two ends (one when they coincide), every choice."""
        if self.kind == "choice":
            return self.choices
        return (self.low,) if self.low == self.high else (self.low, self.high)

    def draw(self, rng: Any) -> Any:
        """One value drawn from the dimension's prior (``rng``: a numpy Generator): uniform, log-uniform, an
        integer, or a choice, as Optuna's random sampler draws them."""
        if self.kind == "choice":
            return self.choices[int(rng.integers(len(self.choices)))]
        ints = isinstance(self.low, int) and isinstance(self.high, int)
        if self.kind == "log":
            value = math.exp(rng.uniform(math.log(self.low), math.log(self.high)))
            return min(max(int(round(value)), self.low), self.high) if ints else value
        return int(rng.integers(self.low, self.high + 1)) if ints else float(rng.uniform(self.low, self.high))

    def describe(self) -> str:
        if self.kind == "choice":
            return "one of " + ", ".join(_label(c) for c in self.choices)
        return f"{self.kind} range [{self.low:g}, {self.high:g}]"


def _label(choice: Any) -> Any:
    """A choice as Optuna stores it (None, bool, int, float or str): lists (``hidden``) as their text."""
    return choice if choice is None or isinstance(choice, (bool, int, float, str)) else str(list(choice))


@dataclass(frozen=True)
class TuneSpec:
    """A checked tune spec (see the module docstring for the file)."""

    name: str
    tasks: tuple[str, ...]
    steps: int
    seeds: int
    space: dict[str, Dimension]
    trials: int = 20
    objective: Literal["final", "auc", "iqm"] = "iqm"
    sampler: Literal["tpe", "random"] = "tpe"
    pruner: Literal["median", "asha", "none"] = "median"
    sampler_seed: int = 0  # the search's; every trial trains seeds 0..seeds-1 (common random numbers)
    run_options: RunOptions = RunOptions(probes=False)  # how every trial is driven: evaluations (the pruner's),
    # checkpoints; no probes unless the spec asks (a search compares returns, and its trials' probes went unread)
    batch: int = 1  # trials asked at once (mtdqn.tune.batches); an execution choice, not part of the search
    options: dict[str, Any] = field(default_factory=dict)

    def train_options(self, params: dict[str, Any]) -> dict[str, Any]:
        """The flat train options of a trial with ``params`` (searched values over the fixed ones)."""
        return {"tasks": self.tasks, "steps": self.steps, "seeds": self.seeds, **self.options, **params}

    def config(self, params: dict[str, Any], **changes: Any) -> TrainConfig:
        """The TrainConfig of a trial with ``params`` (``changes``: other flat options, e.g. a confirmation's
        seeds); names and types checked here, values by the run."""
        flat = {**self.train_options(params), **changes}
        for name, value in flat.items():
            if name not in TRAIN_OPTIONS:
                raise ConfigError(unknown_option(name, TRAIN_OPTIONS))
            try:
                flat[name] = coerce(value, TRAIN_OPTIONS[name][1])
            except TypeError as exc:
                raise ConfigError(f"{name}: {exc}") from None
        return apply_options(TrainConfig(), flat, TRAIN_OPTIONS)

    def distributions(self) -> dict[str, optuna.distributions.BaseDistribution]:
        """Each searched option's Optuna distribution (what the search asks its sampler for)."""
        return {name: dim.distribution() for name, dim in self.space.items()}

    @property
    def on_host(self) -> bool:
        """Whether a task steps on the host (``gym:``): one run per trial, no checkpoints."""
        return any(t.startswith("gym:") for t in self.tasks)  # stripped when read (_tasks)

    @property
    def eval_every(self) -> int:
        """Env steps per task between a trial's evaluations (what the pruner and the auc objective read)."""
        return self.run_options.eval_every

    @property
    def eval_episodes(self) -> int:
        """Greedy episodes per task and seed in each evaluation."""
        return self.run_options.eval_episodes

    @property
    def checkpoint_every(self) -> int:
        """Env steps per task between a trial's checkpoints (where a killed search resumes it)."""
        return self.run_options.checkpoint_every

    def record(self) -> dict[str, Any]:
        """The spec as JSON (tune.json): a rerun of the same directory must be the same search.  ``probes`` only
        when asked for: they change no trial's numbers, and searches recorded before it existed stay the same."""
        asked = {"probes": True} if self.run_options.probes else {}
        return {**asked, "name": self.name, "tasks": list(self.tasks), "steps": self.steps, "seeds": self.seeds,
                "trials": self.trials, "objective": self.objective, "sampler": self.sampler, "pruner": self.pruner,
                "sampler_seed": self.sampler_seed, "eval_every": self.eval_every, "eval_episodes": self.eval_episodes,
                "checkpoint_every": self.checkpoint_every, "batch": self.batch, "options": _jsonable(self.options),
                "space": {k: {d.kind: _jsonable(list(d.choices) if d.kind == "choice" else [d.low, d.high])}
                          for k, d in self.space.items()}}


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def read_tune_spec(path: str | Path, overrides: dict[str, Any] | None = None) -> TuneSpec:
    """A tune spec file (.toml), checked; ``overrides`` replace top-level keys (``trials``)."""
    path = Path(path)
    if path.suffix != ".toml":
        raise ConfigError(f"{path}: not a tune preset nor a tune spec file (.toml)")
    if not path.is_file():
        raise ConfigError(f"{path}: no such tune spec file")
    return build_tune_spec({**read_study_file(path), **(overrides or {})}, str(path), path.stem)


def build_tune_spec(raw: dict[str, Any], source: str, default_name: str) -> TuneSpec:
    """Check a tune table as written (file or preset) and build its spec; every error is one line."""
    unknown = [k for k in raw if k not in _TOP]
    if "seed" in unknown:  # not the closest name, 'seeds', but what is meant
        raise ConfigError(f"{source}: unknown option 'seed': the sampler's seed is sampler_seed (every trial trains "
                          "seeds 0..seeds-1)")
    if unknown:
        raise ConfigError(f"{source}: {unknown_option(unknown[0], _TOP)}")
    for key in ("tasks", "steps", "seeds"):
        if key not in raw:
            raise ConfigError(f"{source}: missing {key!r} (a tune spec gives tasks, steps, seeds and [space])")
    if not isinstance(raw.get("options", {}), dict):
        raise ConfigError(f"{source}: [options]: expected a table of option = value, got {raw['options']!r}")
    options = dict(raw.get("options", {}))
    for name in options:
        if name == "seed":
            raise ConfigError(f"{source}: [options] seed: every trial trains seeds 0..seeds-1 (common random "
                              "numbers); sampler_seed at the top of the spec seeds the search")
        if name in ("tasks", "steps", "seeds") or name in RUN_OPTIONS:
            raise ConfigError(f"{source}: [options] {name}: set it at the top of the spec, not in [options]")
    space = _space(raw.get("space", {}), source)
    both = sorted(set(options) & set(space))
    if both:
        raise ConfigError(f"{source}: {both[0]} is both fixed in [options] and searched in [space]; keep one")
    name = raw.get("name", default_name)
    # a name written in the spec ("../x" named its default folder runs/tune-../x); one taken from the file's name
    # is as it always was (a search made from "my search.toml" resumes)
    if "name" in raw and (not isinstance(name, str) or not SAFE_NAME.fullmatch(name)):
        raise ConfigError(f"{source}: name: expected letters, digits, '_.+-' (it names folders and the storage's "
                          f"study), got {name!r}")
    spec = TuneSpec(name=name, tasks=_tasks(raw["tasks"], source),
                    steps=_positive(raw, "steps", source), seeds=_positive(raw, "seeds", source), space=space,
                    trials=_positive(raw, "trials", source, 20), objective=_one_of(raw, "objective", OBJECTIVES, source),
                    sampler=_one_of(raw, "sampler", SAMPLERS, source), pruner=_one_of(raw, "pruner", PRUNERS, source),
                    sampler_seed=_int(raw, "sampler_seed", source, 0), run_options=RunOptions(
                        eval_every=_int(raw, "eval_every", source, RunOptions.eval_every),
                        eval_episodes=_positive(raw, "eval_episodes", source, RunOptions.eval_episodes),
                        checkpoint_every=_int(raw, "checkpoint_every", source, RunOptions.checkpoint_every),
                        probes=_bool(raw, "probes", source, False)),
                    batch=_positive(raw, "batch", source, 1), options=options)
    if spec.batch > 1 and spec.on_host:
        raise ConfigError(f"{source}: batch = {spec.batch} trains trials in one compiled program, and gym: tasks step "
                          "on the host, one run each; remove batch")
    if spec.batch > 1 and not set(space) & set(SWEEPABLE):
        raise ConfigError(f"{source}: batch = {spec.batch} trains trials that differ only in numbers the compiled "
                          f"loop traces ({', '.join(SWEEPABLE)}) in one program, and [space] searches none of them; "
                          "remove batch")
    return _with_schedule(_checked_options(spec, source), source)


def _space(table: Any, source: str) -> dict[str, Dimension]:
    if not isinstance(table, dict) or not table:
        raise ConfigError(f"{source}: the search space is empty: give [space] at least one option, e.g. "
                          "lr = {log = [1e-4, 1e-2]}")
    return {name: _dimension(name, value, source) for name, value in table.items()}


def _dimension(name: str, value: Any, source: str) -> Dimension:
    """One ``[space]`` entry checked against the option's type."""
    if name not in TRAIN_OPTIONS:
        raise ConfigError(f"{source}: [space] {unknown_option(name, TUNABLE)}")
    if name in FIXED:
        raise ConfigError(f"{source}: [space] {name} cannot be tuned (the spec fixes it); tunable: {', '.join(TUNABLE)}")
    where = f"{source}: [space] {name}"
    if not isinstance(value, dict) or len(value) != 1 or next(iter(value)) not in KINDS:
        raise ConfigError(f"{where}: expected one of {{float = [low, high]}}, {{log = [low, high]}}, "
                          "{int = [low, high]}, {choice = [a, b, ...]}")
    (kind, bounds), = value.items()
    hint = TRAIN_OPTIONS[name][1]
    if kind == "choice":
        if not isinstance(bounds, list) or not bounds:
            raise ConfigError(f"{where}: choice needs a non-empty list of values")
        try:
            return Dimension("choice", choices=tuple(coerce(b, hint) for b in bounds))
        except TypeError as exc:
            raise ConfigError(f"{where}: {exc}") from None
    if not (isinstance(bounds, list) and len(bounds) == 2 and all(_is_number(b) for b in bounds)):
        raise ConfigError(f"{where}: {kind} needs [low, high], two numbers")
    low, high = bounds
    if not all(math.isfinite(b) for b in bounds):  # Optuna's sampler met inf with a traceback, the trial left running
        raise ConfigError(f"{where}: bounds must be finite numbers, got [{low}, {high}]")
    numeric = _numeric(hint)
    if numeric is None or (kind == "int" and numeric is not int):
        raise ConfigError(f"{where}: a {kind} range needs a{'n int' if kind == 'int' else ' numeric'} option; "
                          f"{name} is {type_name(hint)} (use choice)")
    if numeric is int and not (isinstance(low, int) and isinstance(high, int)):
        raise ConfigError(f"{where}: {name} is an int: give int bounds, got [{low}, {high}]")
    if kind == "log" and (low <= 0 or high <= 0):
        raise ConfigError(f"{where}: a log range needs bounds > 0, got [{low}, {high}]")
    if low > high:
        raise ConfigError(f"{where}: low {low} > high {high}")
    if numeric is float:
        low, high = float(low), float(high)
    return Dimension(kind, low, high)


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _numeric(hint: Any) -> type | None:
    """int or float when the option takes that number (``float | None`` counts), else None."""
    args = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
    if len(args) == 1 and args[0] in (int, float):
        return args[0]
    return None


def _tasks(value: Any, source: str) -> tuple[str, ...]:
    """The spec's task names, each known (a mistyped one was met first by the objective's anchors, which said to
    change the objective, then by the run's check, as an [options] error)."""
    tasks = [value] if isinstance(value, str) else value
    if not isinstance(tasks, list) or not tasks or not all(isinstance(t, str) for t in tasks):
        raise ConfigError(f"{source}: tasks: expected a non-empty list of task names")
    try:
        check_task_names(tasks)
    except ConfigError as exc:
        raise ConfigError(f"{source}: tasks: {exc}") from None
    return tuple(t.strip() for t in tasks)  # as the run names them: " Acrobot-v1" matched no evaluation row


def _int(raw: dict[str, Any], key: str, source: str, default: int, minimum: int = 0) -> int:
    """An integer entry of at least ``minimum``; one wording for every bad value (``steps = -1`` was told
    ">= 0", which ``steps = 0`` is and is refused), as a study file's (:mod:`mtdqn.studies.spec`)."""
    value = raw.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        what = "a positive integer" if minimum > 0 else "an integer >= 0"
        raise ConfigError(f"{source}: {key}: expected {what}, got {value!r}")
    return value


def _bool(raw: dict[str, Any], key: str, source: str, default: bool) -> bool:
    value = raw.get(key, default)
    if not isinstance(value, bool):
        raise ConfigError(f"{source}: {key}: expected true or false, got {value!r}")
    return value


def _positive(raw: dict[str, Any], key: str, source: str, default: int = 0) -> int:
    return _int(raw, key, source, default, minimum=1)


def _one_of(raw: dict[str, Any], key: str, valid: tuple[str, ...], source: str) -> Any:
    value = raw.get(key, valid[0])
    if value not in valid:
        raise ConfigError(f"{source}: {key}: expected one of {', '.join(valid)}, got {value!r}")
    return value


def _checked_options(spec: TuneSpec, source: str) -> TuneSpec:
    """The fixed options' names and types, and the tasks' anchors where the objective normalizes; the
    values themselves are checked by each trial's run."""
    try:
        cfg = spec.config({})
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    if spec.objective == "iqm":
        for task in cfg.tasks:
            why = usable(task, lookup(task))
            if why:
                raise ConfigError(f"{source}: objective iqm normalizes every task, but {task} has {why.split(';')[0]}; "
                                  "use objective = \"final\" or \"auc\"")
    return spec


def _with_schedule(spec: TuneSpec, source: str) -> TuneSpec:
    """Evaluations during training for the pruner (default: five per trial), checkpoints at each of them (five
    per trial without evaluations) so a killed trial resumes where it was, never from scratch.  Except for
    ``gym:`` tasks, whose env state lives in Python and cannot be checkpointed: a killed search runs their
    unfinished trial again from its start."""
    if spec.on_host and spec.checkpoint_every:
        raise ConfigError(f"{source}: checkpoint_every: gym: tasks step on the host and their env state cannot be "
                          "checkpointed; remove it (a killed search runs an unfinished trial again)")
    if spec.pruner != "none" and spec.eval_every >= spec.steps:  # set so: no evaluation before the end to prune on
        raise ConfigError(f"{source}: pruner {spec.pruner} stops trials on their evaluations during training, and "
                          f"eval_every {spec.eval_every:,} is not below steps {spec.steps:,}: none would run; lower "
                          "eval_every, or set pruner = \"none\"")
    if spec.pruner != "none" and spec.eval_every == 0:
        spec = _with_options(spec, eval_every=_fifth(spec))
    if spec.objective == "auc" and spec.eval_every == 0:
        raise ConfigError(f"{source}: objective auc is the area under the greedy evaluations: set eval_every")
    if spec.checkpoint_every == 0 and not spec.on_host:
        spec = _with_options(spec, checkpoint_every=spec.eval_every or _fifth(spec))
    return spec


def _fifth(spec: TuneSpec) -> int:
    """A fifth of the trials' steps in whole logging windows (of the fixed options; the loop runs a cadence
    so): a default cadence the search would otherwise note as rounded, with advice on a value nobody gave."""
    fifth = max(spec.steps // 5, 1)
    try:
        cfg = spec.config({})
        window = derive(cfg).iters_per_chunk * cfg.num_envs
    except ConfigError:  # fixed options no run takes: refused with their own line (check_fixed_options)
        return fifth
    return cadence_as_run(fifth, window)


def schedule_note(spec: TuneSpec) -> str:
    """How a trial runs ``steps``, ``eval_every`` and ``checkpoint_every`` where it rounds them ("" where as
    asked): a run trains whole logging windows (``log_every``, default 10,000 env steps; in whole vector steps)
    and evaluates between them, so ``steps = 100`` trained 10,000 and ``eval_every = 5000`` evaluated every
    10,000 while the report said otherwise.  Read with the fixed options (a searched ``num_envs`` rounds each
    trial its own way)."""
    from mtdqn.config import rounded_schedule

    cfg = spec.config({})
    parts, window = rounded_schedule(cfg, spec.eval_every, spec.run_options.checkpoint_every)
    if not parts:
        return ""
    searched = "; a searched num_envs rounds each trial its own way" if "num_envs" in spec.space else ""
    return (f"tune {spec.name}: {' and '.join(parts)} env steps per task (whole logging windows of {window:,}); "
            f"set options.log_every to a multiple of num_envs ({cfg.num_envs}) dividing them to run them as "
            f"asked{searched}")


def _with_options(spec: TuneSpec, **changes: Any) -> TuneSpec:
    return dataclasses.replace(spec, run_options=dataclasses.replace(spec.run_options, **changes))
