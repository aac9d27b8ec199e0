"""What a study is: tasks, budget, seeds and named variants of the train options.

A study file is TOML with the same schema as the built-in presets::

    name = "my-study"                  # default: the file's stem
    tasks = ["CartPole-v1", "Acrobot-v1"]
    steps = 100_000                    # env steps per task
    seeds = 3                          # vmapped inside each cell
    headline = "return"                # the report leads with "return" or "discounted" (default: return)
    [options]                          # train options shared by every variant
    lr = 1e-3
    [variants.shared]                  # a variant: any set of flat train options
    sharing = "shared"
    [thresholds]                       # return a task counts as "solved" at (report)
    "CartPole-v1" = 400

Option names are the field names of ``TrainConfig``, ``NetworkConfig`` and
``DQNConfig`` (no section prefix: ``lr``, ``sharing``, ``batch_size``).  Every
variant is validated by building its config and agent *before* anything is
written, and every error is one line naming the file and the key, so a typo
costs a second, not a cell.
"""

from __future__ import annotations

import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from mtdqn.config import MAX_SEED, TrainConfig, check_new_run, shares_nothing
from mtdqn.budget import check_train_budget
from mtdqn.errors import ConfigError, InsufficientResources
from mtdqn.flatoptions import apply_options as flat_apply
from mtdqn.flatoptions import coerce, option_table, unknown_option
from mtdqn.rundir import HEADLINES
from mtdqn.runoptions import LEAST, RunOptions
from mtdqn.taskfacts import FACTS, base_task

__all__ = [
    "StudySpec", "OPTIONS", "RUN_OPTION_KEYS", "DEFAULT_THRESHOLDS", "agent_error", "build_spec", "load_spec",
    "read_study_file", "apply_options", "variant_config", "longest_window",
]

REFERENCE = "independent"
# The built-in steps-to-threshold levels, from the one table of task facts.
DEFAULT_THRESHOLDS: dict[str, float] = {task: f.threshold for task, f in FACTS.items() if f.threshold is not None}
# Study-level: every variant of a study must see the same tasks, budget and seeds to be comparable.
_STUDY_LEVEL = ("tasks", "steps", "seeds", "seed")
# The run options a study sets for every cell, at the top level of its file (the seed layout is --devices).
RUN_OPTION_KEYS = ("eval_episodes", "eval_every", "checkpoint_every")
_TABLES = ("thresholds", "options", "variants")
_TOP_KEYS = ("name", "tasks", "steps", "seeds", "seed", "reference", "include_reference", "headline",
             *RUN_OPTION_KEYS, *_TABLES)
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")
"""A name that names a folder: a study's, its variants', a tune's."""


OPTIONS = option_table(TrainConfig, exclude=_STUDY_LEVEL)
"""Flat train option name -> (config section, type hint): every option a study variant may set."""


@dataclass(frozen=True)
class StudySpec:
    """A validated study: every variant here builds a valid agent."""

    name: str
    tasks: tuple[str, ...]
    steps: int
    seeds: int
    variants: dict[str, dict[str, Any]]
    """Variant name -> its train options (reference first, then in file order)."""
    seed: int = 0
    reference: str = REFERENCE
    thresholds: dict[str, float] = field(default_factory=dict)
    """One per task: the return that counts as reaching the task (steps-to-threshold in the report)."""
    options: dict[str, Any] = field(default_factory=dict)
    """Train options shared by every variant (a variant's own options win)."""
    run_options: RunOptions = RunOptions()
    """How every cell is driven: the file's top-level ``eval_episodes``, ``eval_every`` and ``checkpoint_every``
    (checkpoints let a killed cell resume)."""
    source: str = "<study>"
    """Where the spec came from, for error messages (a file path or 'preset NAME')."""
    headline: Literal["return", "discounted"] = "return"
    """The final score the report leads with: the undiscounted return, or the discounted return with each
    task's own gamma (D'Eramo et al. 2020's metric); the report shows both either way."""

    @property
    def seed_list(self) -> list[int]:
        return list(range(self.seed, self.seed + self.seeds))


def _checked_options(raw: Any, source: str, where: str) -> dict[str, Any]:
    """Type-check one table of flat train options."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: {where}: expected a table of train options, got {raw!r}")
    out = {}
    for key, value in raw.items():
        name = key.replace("-", "_")
        if name in _TOP_KEYS and name not in _TABLES:
            raise ConfigError(f"{source}: {where}.{key}: {name} is a study-level key, set once for every variant: "
                              f"put it at the top of the file, not in [{where}]")
        if name not in OPTIONS:
            raise ConfigError(f"{source}: {where}.{key}: {unknown_option(name, OPTIONS)}")
        try:
            out[name] = coerce(value, OPTIONS[name][1])
        except TypeError as exc:
            raise ConfigError(f"{source}: {where}.{key}: {exc}") from None
    return out


def apply_options(base: TrainConfig, options: dict[str, Any]) -> TrainConfig:
    """A new config with flat train options mapped onto their sections (never mutates ``base``)."""
    return flat_apply(base, options, OPTIONS)


def variant_config(spec: StudySpec, variant: str) -> TrainConfig:
    """The full TrainConfig of one variant (one cell: all seeds of it)."""
    base = TrainConfig(tasks=spec.tasks, steps=spec.steps, seeds=spec.seeds, seed=spec.seed)
    return apply_options(base, {**spec.options, **spec.variants[variant]})


def agent_error(cfg: TrainConfig, *, machine: bool = True) -> str | None:
    """Why ``cfg`` cannot train, or None: the same checks `train` runs, without compiling.  ``machine=False``:
    the config's own rules only, not whether this machine's memory holds its state (a search's trials meet
    that themselves: a batch too large trains its trials alone)."""
    from mtdqn.train.agent import make_agent  # imports JAX: only when validating

    try:
        check_new_run(cfg)
        make_agent(cfg)
    except InsufficientResources as exc:
        return str(exc).splitlines()[0] if machine else None
    except (ValueError, TypeError) as exc:  # ConfigError is a ValueError
        return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return None


def _idle_without_sharing(options: dict[str, Any]) -> dict[str, Any]:
    """What a variant that shares nothing (the study's automatic independent reference, a user's `independent`
    or `partial:0`) sets back to its default among the study's ``options`` that act on shared parameters only
    (a strategy, affinity), which `train` refuses without shared parameters: it trains exactly as it would with
    them, as plain networks (a study sweeping sharing depth with one strategy for all was refused)."""
    idle: dict[str, Any] = {}
    if options.get("strategy", "sum") not in ("sum", "auto"):
        idle.update(strategy="sum", strategy_args="")
    if options.get("affinity_every"):
        idle["affinity_every"] = 0
    return idle


def _check_buildable(base: TrainConfig, options: dict[str, Any], source: str, where: str) -> None:
    """Raise a ConfigError naming the option whose removal makes the config valid (the culprit);
    InsufficientResources (the CLI's exit 1) where only this machine's memory stands in the way."""
    cfg = apply_options(base, options)
    error = agent_error(cfg)
    if error is None:
        return
    if agent_error(cfg, machine=False) is None:
        raise InsufficientResources(f"{source}: {where}: {error}")
    fixes = [k for k in options if agent_error(apply_options(base, {o: v for o, v in options.items() if o != k})) is None]
    # Several keys can each fix it (batch_size vs buffer_size): name the one the message names first.
    position = {k: error.find(f"--{k.replace('_', '-')}") for k in fixes}
    culprit = min(fixes, key=lambda k: (position[k] < 0, position[k])) if fixes else None
    raise ConfigError(f"{source}: {where}{'.' + culprit if culprit else ''}: {error}")


def _int(raw: dict, key: str, default: Any, source: str, minimum: int) -> int:
    value = raw.get(key, default)
    if value is None and key not in raw:  # read "expected a positive integer, got None" where it was left out
        raise ConfigError(f"{source}: {key} is missing (a study file gives it at its top level, e.g. {key} = 5)")
    if value is None or isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        what = "a positive integer" if minimum > 0 else "an integer >= 0"
        extra = "; empty grid: a study needs at least one seed" if key == "seeds" and value == 0 else ""
        raise ConfigError(f"{source}: {key}: expected {what}, got {value!r}{extra}")
    return value


def default_threshold(task: str) -> float | None:
    """The built-in steps-to-threshold level of a task spec, its options aside.

    Unlike the anchors (:func:`mtdqn.analysis.anchors.lookup`) a threshold is a chosen return level, not a
    measurement of the default task, and it keeps its meaning under the options that change returns: MinAtar's are
    fractions of published DQN's returns, which play with sticky actions and the full action set, and MiniGrid's
    0.5 lies within the success reward's range (0.1 to 1) whatever ``max_steps``."""
    return DEFAULT_THRESHOLDS.get(base_task(task))


def _thresholds(raw: Any, tasks: tuple[str, ...], source: str) -> dict[str, float]:
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: thresholds: expected a table task = return, got {raw!r}")
    raw = {str(task).strip(): value for task, value in raw.items()}  # stripped as the tasks are
    for task, value in raw.items():
        if task not in tasks:
            raise ConfigError(f"{source}: thresholds.{task}: not one of the study's tasks {list(tasks)}")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ConfigError(f"{source}: thresholds.{task}: expected a finite number, got {value!r}")
        lo, hi = _threshold_range(task)
        if not lo <= value <= hi:  # NaN and 1,000 on CartPole trained, and the report said "not informative at this
            raise ConfigError(f"{source}: thresholds.{task}: {value:g} is outside the return's range [{lo:g}, "
                              f"{hi:g}], so it says nothing (never reached above it, reached at once below)")
    out = {}
    for task in tasks:
        default = default_threshold(task)
        if task not in raw and default is None:
            raise ConfigError(f"{source}: thresholds.{task}: no default threshold for this task; set one "
                              "under [thresholds]")
        out[task] = float(raw.get(task, default))
    return out


def _threshold_range(task: str) -> tuple[float, float]:
    """The undiscounted returns a task spec's episodes can have (the report's feasible range), unbounded where
    unknown or where its options change them (``max_steps``: :data:`mtdqn.analysis.anchors.RETURN_OPTIONS`)."""
    from mtdqn.analysis.anchors import return_options  # the analysis package: imported when thresholds are set
    from mtdqn.analysis.ranges import UNBOUNDED, return_bounds

    return UNBOUNDED if return_options(task) else return_bounds(task)


def build_spec(raw: dict[str, Any], source: str, default_name: str) -> StudySpec:
    """Validate a parsed study table (from TOML or a preset) into a StudySpec."""
    unknown = [k for k in raw if k not in _TOP_KEYS]
    if unknown:
        raise ConfigError(f"{source}: {unknown[0]}: unknown key; valid: {', '.join(_TOP_KEYS)}")
    name = raw.get("name", default_name)
    if not isinstance(name, str) or not SAFE_NAME.fullmatch(name):
        raise ConfigError(f"{source}: name: expected letters, digits, '_.+-' (it names folders), got {name!r}")
    tasks = raw.get("tasks")
    if not isinstance(tasks, list) or not all(isinstance(t, str) for t in tasks):
        raise ConfigError(f"{source}: tasks: expected a list of task names (see `mtdqn tasks`), got {tasks!r}")
    if not tasks:
        raise ConfigError(f"{source}: tasks: empty grid: a study needs at least one task")
    tasks = [t.strip() for t in tasks]  # as the runs name them (their summaries, the report's rows)
    steps = _int(raw, "steps", None, source, 1)
    seeds = _int(raw, "seeds", None, source, 1)
    seed = _int(raw, "seed", 0, source, 0)
    if seed > MAX_SEED:  # else refused by the first cell's check, named as the tasks'
        raise ConfigError(f"{source}: seed must be in [0, {MAX_SEED:,}], got {seed}")
    run_options = RunOptions(**{key: _int(raw, key, getattr(RunOptions(), key), source, LEAST[key])
                                for key in RUN_OPTION_KEYS})
    headline = raw.get("headline", "return")
    if headline not in HEADLINES:
        raise ConfigError(f"{source}: headline: expected one of {', '.join(map(repr, HEADLINES))}, got {headline!r}")
    include = raw.get("include_reference", True)
    if not isinstance(include, bool):
        raise ConfigError(f"{source}: include_reference: expected true or false, got {include!r}")
    options = _checked_options(raw.get("options", {}), source, "options")
    defined = raw.get("variants", {})
    if not isinstance(defined, dict):
        raise ConfigError(f"{source}: variants: expected tables [variants.NAME], got {defined!r}")
    if not defined:
        raise ConfigError(f"{source}: variants: empty grid: define at least one [variants.NAME] table")
    variants: dict[str, dict[str, Any]] = {}
    if include and REFERENCE not in defined:
        variants[REFERENCE] = {"sharing": "independent", **_idle_without_sharing(options)}
    for vname, vraw in defined.items():
        if not SAFE_NAME.fullmatch(vname):
            raise ConfigError(f"{source}: variants.{vname}: a variant name names a folder; use letters, digits, "
                              "'_.+-'")
        vopts = _checked_options(vraw, source, f"variants.{vname}")
        sharing = vopts.get("sharing", options.get("sharing", "shared"))
        idle = _idle_without_sharing(options) if isinstance(sharing, str) and shares_nothing(sharing) else {}
        variants[vname] = {**{k: v for k, v in idle.items() if k not in vopts}, **vopts}  # its own: checked
    reference = raw.get("reference", REFERENCE if include else next(iter(variants)))
    if reference not in variants:
        raise ConfigError(f"{source}: reference: {reference!r} is not one of the variants {list(variants)}")
    base = TrainConfig(tasks=tuple(tasks), steps=steps, seeds=seeds, seed=seed)
    base_error = agent_error(base)
    if base_error:
        raise ConfigError(f"{source}: tasks: {base_error}")
    thresholds = _thresholds(raw.get("thresholds", {}), tuple(tasks), source)
    options = _logging_windows_for(run_options.eval_every, options, variants, source)
    _check_buildable(base, options, source, "options")
    for vname, vopts in variants.items():
        _check_buildable(apply_options(base, options), vopts, source, f"variants.{vname}")
    if reference == REFERENCE and REFERENCE in defined:  # the report calls it the independent reference
        sharing = apply_options(apply_options(base, options), variants[REFERENCE]).network.sharing
        if sharing != "independent":
            raise ConfigError(f"{source}: variants.{REFERENCE}: names the study's reference (one network per task) "
                              f"but trains sharing = {sharing!r}; rename the variant, or name another variant as "
                              "reference")
    for vname, vopts in variants.items():  # the budget: the study's steps, unless options move learning_starts
        try:
            check_train_budget(apply_options(base, {**options, **vopts}),  # a preset's learning start is its own
                               starts=None if source.startswith("preset ") else "learning_starts")
        except ConfigError as exc:
            where = (f"variants.{vname}" if "learning_starts" in vopts
                     else "options" if "learning_starts" in options else "steps")
            raise ConfigError(f"{source}: {where}: {exc}") from None
    return StudySpec(name=name, tasks=tuple(tasks), steps=steps, seeds=seeds, variants=variants, seed=seed,
                     reference=reference, thresholds=thresholds, options=options, run_options=run_options,
                     source=source, headline=headline)


MIN_WINDOW_SHARE = 10
"""A logging window chosen for ``eval_every`` is at least the default window / this (else the study asks)."""


def longest_window(every: int, most: int, num_envs: int, steps: int | None = None) -> int:
    """The longest logging window, up to ``most``, that the loop runs as asked and that puts whole windows
    between evaluations every ``every`` steps (and in ``steps``, where given): whole vector steps of
    ``num_envs`` (the trainer rounds a window up to them) dividing ``every``; 0 where there is none."""
    return max((w for w in range(num_envs, min(most, every) + 1, num_envs)
                if every % w == 0 and (steps is None or steps % w == 0)), default=0)


def _logging_windows_for(eval_every: int, options: dict[str, Any], variants: dict[str, dict[str, Any]],
                         source: str) -> dict[str, Any]:
    """``options`` with logging windows that honour ``eval_every``: evaluations run between windows (chunks).

    A study's evaluation cadence is its protocol (its final score averages the evaluations of the run's last
    stretch), so it is run as asked, never rounded to the windows: a ``log_every`` the study sets must divide
    ``eval_every`` (else a one-line error), and where no variant sets one, the window is the largest divisor of
    ``eval_every`` up to the default (``eval_every = 5000`` trains in 5,000-step windows, not 10,000) in whole
    vector steps (``num_envs = 8``, ``eval_every = 15000``: 5,000, not 7,500, which would run as 7,504).
    """
    if not eval_every:
        return options
    for where, opts in [("options", options), *((f"variants.{v}", o) for v, o in variants.items())]:
        window = opts.get("log_every")
        if window is not None and eval_every % int(window):
            raise ConfigError(f"{source}: {where}: log_every {int(window):,} does not divide eval_every "
                              f"{eval_every:,}: evaluations run between logging windows, so the study's cadence "
                              "needs whole windows between them; make log_every a divisor of eval_every")
    if "log_every" in options or all("log_every" in o for o in variants.values()):
        return options
    default = TrainConfig().log_every
    # the trainer rounds a window up to whole vector steps: a multiple of every such variant's num_envs
    envs = math.lcm(*(max(1, int(o.get("num_envs", options.get("num_envs", TrainConfig().num_envs))))
                      for o in variants.values() if "log_every" not in o))
    window = longest_window(eval_every, default, envs)
    if window * MIN_WINDOW_SHARE < min(default, eval_every):
        raise ConfigError(f"{source}: eval_every {eval_every:,} has no divisor near the default logging window "
                          f"({default:,} env steps) in whole vector steps of {envs} env steps (the largest is "
                          f"{window:,}): set options.log_every to a divisor of eval_every, or eval_every to a "
                          "multiple of a sensible window")
    return options if window == default else {**options, "log_every": window}


def load_spec(path: Path, overrides: dict[str, Any] | None = None) -> StudySpec:
    """Read a study TOML file; ``overrides`` (e.g. from --seeds/--steps) replace top-level keys."""
    return build_spec({**read_study_file(path), **(overrides or {})}, str(path), Path(path).stem)


def read_study_file(path: Path) -> dict[str, Any]:
    """A study file's table as written, not yet validated (validating builds agents, which starts JAX)."""
    path = Path(path)
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError:  # by name, a preset is resolved before a file is looked for (presets.study_table)
        raise ConfigError(f"{path}: no such study file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {str(exc).splitlines()[0]}") from None
