"""Task specs as users write them, without JAX: which names exist, the closest to a typo, the import-path form,
and each spec's options (:func:`task_options`).

``mtdqn train`` checks its tasks' names here before JAX and the training stack are imported (~3 s on a 2-core
machine), so a mistyped task is answered in about a second; :func:`mtdqn.tasks.parse_task` raises the same
line when a task is built (the registry needs JAX: gymnax's environments), and :mod:`mtdqn.tasks.custom` reads
the import-path form from here.
"""

from __future__ import annotations

import difflib
import re
import sys
import math
from typing import Any, Iterable, Sequence

from mtdqn.errors import ConfigError, check_float32
from mtdqn.taskfacts import FACTS

__all__ = ["is_import_path", "is_own_task", "split_spec", "split_task_list", "task_options", "same_task",
           "unknown_task", "check_task_names", "check_known_names", "check_listed_once"]

_IMPORT_PATH = re.compile(r"^([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*:[A-Za-z_]\w*)(?::(.*))?$")


def is_import_path(spec: str) -> bool:
    """Whether a task spec names its environment by ``module:attribute`` (task names hold no such colon)."""
    return _IMPORT_PATH.match(spec.strip()) is not None


def split_spec(spec: str) -> tuple[str, str, str]:
    """(backend, name, options) of a task spec: "gymnasium" for ``gym:<ID>[:options]`` (the name its id),
    else "gymnax", the name a built-in or registered task's or an import path's ``module:attribute``."""
    spec = spec.strip()
    if spec.startswith("gym:"):
        name, _, opts = spec.removeprefix("gym:").partition(":")
        return "gymnasium", name, opts
    match = _IMPORT_PATH.match(spec)
    if match is not None:
        return "gymnax", match.group(1), match.group(2) or ""
    name, _, opts = spec.partition(":")
    return "gymnax", name, opts


def is_own_task(spec: str) -> bool:
    """Whether a task spec names your own environment (registered with mtdqn.register_task, or an import path):
    a JAX task that is not built in.  Its environment is whatever the name gives now, which may have changed
    since a run trained on it; it has no drawing, and play steps it with its own ``step``."""
    backend, name, _ = split_spec(spec)
    return backend == "gymnax" and name not in FACTS


def split_task_list(text: str) -> list[str]:
    """Task specs written as one comma-separated string, as ``--tasks`` takes them: a part ``key=value`` with no
    ``:`` is the next option of the spec before it (``Breakout-MinAtar:sticky=0.1,actions=full,SpaceInvaders-MinAtar``
    is two tasks)."""
    parts: list[str] = []
    for p in filter(None, (q.strip() for q in text.split(","))):
        if parts and "=" in p and ":" not in p and ":" in parts[-1]:
            parts[-1] += "," + p
        else:
            parts.append(p)
    return parts


_NUMBER_OPTIONS = ("reward_scale", "gamma")
_MINATAR_OPTIONS = ("sticky", "actions", "max_steps")
CLASSIC_TIME_LIMITED = tuple(name for name, f in FACTS.items() if f.rewards.time_limited)
"""gymnax's classic tasks (CartPole-v1, Acrobot-v1, MountainCar-v0: their facts' ``time_limited``) whose time limit
``max_steps=N`` sets (a truncation, as gymnax's own: D'Eramo et al. ran
Acrobot and Mountain-Car to 1,000 steps, mushroom-rl's ``Gym`` wrapper replacing gym's limit by its horizon)."""
_GYM_OPTIONS = ("obs",)
_VALID = ("reward_scale=<number>, gamma=<number>; MinAtar games also sticky=<probability in [0, 1)>, "
          "actions=full|minimal, max_steps=<steps>; MiniGrid tasks, CartPole-v1, Acrobot-v1 and MountainCar-v0 "
          "also max_steps=<steps>; gym: tasks also obs=image")
_MAX_STEPS_LIMIT = 2**31 - 2  # the episode step counter is int32


def same_task(spec: str) -> tuple[Any, ...]:
    """What makes two specs one task however they are spelled ('X' and 'X:', options in another order or as
    '0.9' and '0.90'): their backend, name and parsed options."""
    backend, name, options = task_options(spec)
    return backend, name, tuple(sorted(options.items()))


def task_options(spec: str) -> tuple[str, str, dict[str, Any]]:
    """(backend, name, options) of a task spec (:func:`split_spec`), each option's value parsed and checked:
    a one-line ConfigError for a bad one.  Without JAX, so a command refuses them in about a second."""
    backend, name, opts = split_spec(spec)
    options: dict[str, Any] = {}
    for item in filter(None, (o.strip() for o in opts.split(","))):
        key, eq, raw = item.partition("=")
        raw = raw.strip()
        if not eq or key not in (*_NUMBER_OPTIONS, *_MINATAR_OPTIONS, *_GYM_OPTIONS):
            close = difflib.get_close_matches(key.strip(), (*_NUMBER_OPTIONS, *_MINATAR_OPTIONS, *_GYM_OPTIONS), n=1,
                                              cutoff=0.6)
            meant = f"did you mean {close[0]}? " if close and eq else ""  # max_step=10: max_steps
            raise ConfigError(f"bad task option {item!r} in {spec!r}; {meant}valid: {_VALID}")
        if key in options:
            raise ConfigError(f"task option {key} is given twice in {spec!r}; give it once")
        if key == "obs":
            if backend != "gymnasium" or raw != "image":
                raise ConfigError(f"task option {item!r} in {spec!r}: only obs=image, and only for gym: tasks "
                                  "(JAX MiniGrid tasks observe the image already)")
            options[key] = raw
        elif key in _MINATAR_OPTIONS:
            if backend == "gymnasium":
                raise ConfigError(f"task option {key} in {spec!r} is for JAX tasks; a gym: task keeps its own "
                                  "TimeLimit and actions")
            minatar = name in FACTS and name.endswith("-MinAtar")  # the built-in families, not look-alike names
            limited = name in FACTS and (name.startswith("MiniGrid-") or name in CLASSIC_TIME_LIMITED)
            if not minatar and not (key == "max_steps" and limited):
                which = (f"MinAtar games, MiniGrid tasks and the classic tasks {', '.join(CLASSIC_TIME_LIMITED)}"
                         if key == "max_steps" else "MinAtar games")
                raise ConfigError(f"task option {key} in {spec!r} applies to {which} only")
            options[key] = _minatar_option(key, raw, spec)
        else:
            options[key] = _number_option(key, raw, spec)
    return backend, name, options


def _number_option(key: str, raw: str, spec: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"task option {key} in {spec!r} must be a number, got {raw!r}") from None
    if key == "gamma" and not 0 < value <= 1:  # (nan fails it too)
        raise ConfigError(f"task option gamma in {spec!r} must be in (0, 1], got {raw}")
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"task option {key} in {spec!r} must be finite and > 0, got {raw}")
    check_float32(f"task option {key} in {spec!r}:", value)  # rewards and discounts are float32 in the loop
    return value


def _minatar_option(key: str, raw: str, spec: str) -> Any:
    """The value of one MinAtar (or, ``max_steps``, MiniGrid) option (:mod:`mtdqn.tasks.minatar`)."""
    if key == "actions":
        if raw not in ("full", "minimal"):
            raise ConfigError(f"task option actions in {spec!r} must be full or minimal, got {raw!r}")
        return raw
    if key == "sticky":
        try:
            value = float(raw)
        except ValueError:
            raise ConfigError(f"task option sticky in {spec!r} must be a number, got {raw!r}") from None
        if not 0 <= value < 1:
            raise ConfigError(f"task option sticky in {spec!r} must be a probability in [0, 1), got {raw}")
        return value
    try:
        steps = int(raw)
    except ValueError:
        raise ConfigError(f"task option max_steps in {spec!r} must be a whole number, got {raw!r}") from None
    if steps < 1:
        raise ConfigError(
            f"task option max_steps in {spec!r} must be >= 1 (evaluation rolls out that many steps, so an "
            f"episode needs a cut-off{'; MinAtar has none of its own: use a large one' if 'MinAtar' in spec else ''})"
            f", got {raw}")
    if steps > _MAX_STEPS_LIMIT:
        raise ConfigError(f"task option max_steps in {spec!r} must be at most {_MAX_STEPS_LIMIT:,} (the episode's "
                          f"step counter is a 32-bit integer), got {raw}")
    return steps


def _minigrid_package_ids() -> frozenset[str] | None:
    """The ids the ``minigrid`` package registers with gymnasium; None where it is not installed (it is
    optional: a test dependency, and what ``gym:MiniGrid-...`` tasks need)."""
    try:
        import gymnasium
        import minigrid
    except ImportError:
        return None
    gymnasium.register_envs(minigrid)
    return frozenset(i for i in gymnasium.registry if i.startswith("MiniGrid-"))


def unknown_task(name: str, registered: Iterable[str]) -> str:
    """The error line for a task name that is neither built in nor in ``registered`` (this process's own)."""
    names = {n.lower(): n for n in [*FACTS, *registered]}  # case is the commonest slip: compared without it
    typed = name.lower()
    # a name cut short ('breakout', 'DoorKey') names its task; otherwise the closest, but not by the version alone
    # ('Foo-v1' is not 'Acrobot-v1')
    within = sorted((n for n in names if len(typed) >= 4 and typed in n), key=len)
    close = [names[n] for n in (within or difflib.get_close_matches(typed, names, n=1, cutoff=0.7))][:1]
    hint = f"; did you mean {close[0]!r}?" if close else ""
    if name.startswith("MiniGrid-"):  # the package's other envs run on the host, through gymnasium
        package = _minigrid_package_ids()
        if package is None:
            hint += " (the `minigrid` package's envs run on the host as 'gym:<id>:obs=image': pip install minigrid)"
        elif name in package:
            hint += f" (any MiniGrid env of the `minigrid` package: 'gym:{name}:obs=image', on the host)"
    return (f"unknown task {name!r}{hint} (see `mtdqn tasks`; your own environment: mtdqn.register_task in this "
            "process, or an import path module:factory)")


def short_name(name: str) -> str:
    """A task's name in a progress bar: 'CartPole' for CartPole-v1, 'LavaGapS7' for MiniGrid-LavaGapS7-v0."""
    return name.removeprefix("MiniGrid-").split("-")[0]


def find_task(names: Sequence[str], task: str) -> int | None:
    """Where ``task`` is among a run's task names however either is spelled (:func:`same_task`: 'X' for a run
    of 'X:', options in another order); None where none is it (a spec that does not parse is no task of it)."""
    names = list(names)
    if task in names:
        return names.index(task)

    def same(a: str, b: str) -> bool:
        try:
            return same_task(a) == same_task(b)
        except ConfigError:
            return False

    return next((i for i, name in enumerate(names) if same(name, task)), None)


def index_of_task(names: Sequence[str], task: str) -> int:
    """:func:`find_task`, or a one-line ConfigError naming the run's tasks (a task given as no string, the index
    0 or None, among them: it met ``str.strip``)."""
    if not isinstance(task, str):
        raise ConfigError(f"task: expected a task name (str), got {task!r}; this run's tasks: {', '.join(names)}")
    i = find_task(names, task)
    if i is None:
        bare = split_spec(task)[1].lower()  # 'cartpole-v1', or 'CartPole-v1' of a run's 'CartPole-v1:gamma=0.9'
        close = [name for name in names if split_spec(name)[1].lower() == bare]
        hint = f" (did you mean {close[0]!r}?)" if len(close) == 1 else ""
        raise ConfigError(f"task {task!r} is not one of this run's tasks: {', '.join(names)}{hint}")
    return i


def check_task_names(specs: Iterable[str]) -> None:
    """:func:`check_known_names`, then :func:`check_listed_once`: the rules for the tasks of a new run."""
    specs = list(specs)
    check_known_names(specs)
    check_listed_once(specs)


def check_known_names(specs: Iterable[str]) -> None:
    """Raise :func:`unknown_task`'s line for the first spec whose name is unknown, and :func:`task_options`'
    for a bad option, as parse_task would: names registered in this process count (none unless
    :mod:`mtdqn.tasks.custom` was imported, which imports JAX); ``gym:`` ids and import paths are checked where
    they are built."""
    custom = sys.modules.get("mtdqn.tasks.custom")
    registered = tuple(custom.REGISTERED) if custom is not None else ()
    for spec in specs:
        name = split_spec(spec)[1]
        if is_own_task(spec) and not is_import_path(name) and name not in registered:
            raise ConfigError(unknown_task(name, registered))


def check_listed_once(specs: list[str]) -> None:
    """A one-line ConfigError for a bad task option (:func:`task_options`) or a task listed twice
    (:func:`same_task`)."""
    if len({same_task(spec) for spec in specs}) != len(specs):
        raise ConfigError(f"a task is listed twice in {specs}")
