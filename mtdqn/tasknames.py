"""Task names as users write them, without JAX: which exist, the closest to a typo, and the import-path form.

``mtdqn train`` checks its tasks' names here before JAX and the training stack are imported (~4 s on a 2-core
machine), so a mistyped task is answered in about a second; :func:`mtdqn.tasks.parse_task` raises the same
line when a task is built (the registry needs JAX: gymnax's environments), and :mod:`mtdqn.tasks.custom` reads
the import-path form from here.
"""

from __future__ import annotations

import difflib
import re
import sys
from typing import Iterable

from mtdqn.errors import ConfigError
from mtdqn.taskfacts import FACTS

__all__ = ["is_import_path", "split_spec", "unknown_task", "check_task_names"]

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


def check_task_names(specs: Iterable[str]) -> None:
    """Raise :func:`unknown_task`'s line for the first spec whose name is unknown, as parse_task would: names
    registered in this process count (none unless :mod:`mtdqn.tasks.custom` was imported, which imports JAX);
    ``gym:`` tasks and import paths are checked where they are built."""
    custom = sys.modules.get("mtdqn.tasks.custom")
    registered = tuple(custom.REGISTERED) if custom is not None else ()
    for spec in specs:
        backend, name, _ = split_spec(spec)
        if backend == "gymnax" and not is_import_path(name) and name not in FACTS and name not in registered:
            raise ConfigError(unknown_task(name, registered))
