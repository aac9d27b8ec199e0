"""A population sweep's specification: which options, which values, which members; JAX-free.

`mtdqn train --sweep lr=1e-4,3e-4 --sweep gamma=0.98,0.99` and the Python
API's ``sweep={"lr": [1e-4, 3e-4]}`` are read here, once; the CLI reads a
sweep directory's record here before JAX starts.  Training is
:mod:`mtdqn.train.sweep`.

A sweep names three kinds of numbers, each a traced value of the compiled
loop (:class:`mtdqn.train.hypers.Hypers`):

* an option by its flat name (:data:`SWEEPABLE`): ``lr=1e-4,3e-4``;
* one task's static loss weight, its entry of ``--task-weights`` (the others
  keep theirs, default 1), by the task's name: ``weight.Acrobot-v1=0.5,1,2``
  (or its position in ``--tasks``, from 1: ``weight.2=0.5,1,2``);
* a real-valued option of the strategy's ``--strategy-args`` (the others keep
  theirs): ``strategy.c=0.2,0.5`` with ``--strategy cagrad``.  Which options
  are real numbers is the strategy's own (its options dataclass), checked
  where the strategies are (:func:`mtdqn.strategies.base.check_swept_options`).
"""

from __future__ import annotations

import difflib
import itertools
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

from mtdqn.config import TrainConfig, config_from_dict
from mtdqn.errors import ConfigError
from mtdqn.flatoptions import apply_options, closest_option, did_you_mean, option_table
from mtdqn.io import read_json

__all__ = ["SWEEPABLE", "TASK_WEIGHT", "STRATEGY_OPTION", "SWEEP_FILE", "parse_sweep", "check_sweep",
           "check_not_also_given", "member_configs", "strategy_options", "is_sweep", "read_sweep", "population_goes_on"]

SWEEPABLE = ("lr", "gamma", "tau", "eps_start", "eps_end", "eps_fraction", "dropout")
"""Flat option names (:mod:`mtdqn.flatoptions`) a sweep may vary: they only enter
:class:`mtdqn.train.hypers.Hypers`, traced values of the compiled loop.  ``dropout``: its rates must be all
above 0 (or all 0): a run at 0 has no dropout in its program, and running it through dropout at rate 0 is
not its numbers once XLA optimizes (measured: the last bits differ), so such a sweep is refused."""

TASK_WEIGHT = "weight."
"""``weight.<task>``: one task's entry of ``--task-weights``, the task named as in ``--tasks`` without its
options (``weight.CarOnHill-v0`` for ``CarOnHill-v0:gamma=0.95``), or by its position there, from 1
(``weight.2``: how to name one of two tasks that share a name)."""

STRATEGY_OPTION = "strategy."
"""``strategy.<option>``: a real-valued option of ``--strategy-args`` (``strategy.c`` of cagrad)."""

_EXAMPLES = "e.g. lr=1e-4,3e-4, weight.Acrobot-v1=0.5,2 or strategy.c=0.2,0.5"

SWEEP_FILE = "sweep.json"
_TABLE = option_table(TrainConfig)


def parse_sweep(specs: Sequence[str]) -> dict[str, tuple[float, ...]]:
    """``["lr=1e-4,3e-4", "gamma=0.98,0.99"]`` as ``{"lr": (1e-4, 3e-4), "gamma": (0.98, 0.99)}``, checked."""
    sweep: dict[str, Any] = {}
    for spec in specs:
        name, sep, values = spec.partition("=")
        name = _name(name)
        if not sep or not values.strip():
            raise ConfigError(f"--sweep {spec!r}: expected NAME=V1,V2,... ({_EXAMPLES})")
        if name in sweep:
            raise ConfigError(f"--sweep {name} is given twice; list all its values once")
        try:
            sweep[name] = [float(v) for v in values.split(",") if v.strip()]
        except ValueError:
            raise ConfigError(f"--sweep {spec!r}: values must be numbers") from None
    return check_sweep(sweep)


def _name(raw: str) -> str:
    """A swept name as written (``--eps-end``, ``weight.Acrobot-v1``, ``strategy.step-size``) in its one
    spelling: options with underscores, a task's name as it is."""
    name = raw.strip().lstrip("-")
    prefix, dot, rest = name.partition(".")
    if dot and f"{prefix}." == TASK_WEIGHT:
        return TASK_WEIGHT + rest.strip()
    return name.replace("-", "_")


def _meant(name: str) -> str | None:
    """What a mistyped sweep name most likely means: a prefix's (weights.1: weight.1), else what a sweep varies
    (eps: eps_end, not steps), else any option (the next check then refuses it as not sweepable)."""
    head, dot, rest = name.partition(".")
    close = difflib.get_close_matches(head + dot, [TASK_WEIGHT, STRATEGY_OPTION], n=1, cutoff=0.6) if dot else []
    if close:
        return close[0] + rest
    return closest_option(name, SWEEPABLE) or closest_option(name, list(_TABLE))


def _check_name(name: str) -> None:
    """A one-line ConfigError unless ``name`` is a number a sweep may vary (module docstring)."""
    for prefix, what in ((TASK_WEIGHT, "a task's name"), (STRATEGY_OPTION, "an option name")):
        if name.startswith(prefix):
            if not name[len(prefix):] or (prefix == STRATEGY_OPTION and not name[len(prefix):].isidentifier()):
                raise ConfigError(f"--sweep {name}: expected {prefix}NAME with {what} ({_EXAMPLES})")
            return
    if name not in _TABLE:
        varied = f"a sweep varies {', '.join(SWEEPABLE)}, {TASK_WEIGHT}TASK or {STRATEGY_OPTION}OPTION"
        meant = _meant(name)
        raise ConfigError(f"--sweep {name}: unknown option; {did_you_mean(meant, repr(meant))} ({varied})"
                          if meant else f"--sweep {name}: unknown option; {varied}")
    if name == "task_weights":
        raise ConfigError("--sweep task_weights: sweep one task's weight, weight.TASK=V1,V2,... (e.g. "
                          "weight.Acrobot-v1=0.5,2); repeat for more tasks")
    if name == "strategy_args":
        raise ConfigError("--sweep strategy_args: sweep one of the strategy's real-valued options, "
                          "strategy.OPTION=V1,V2,... (e.g. strategy.c=0.2,0.5)")
    if name not in SWEEPABLE:
        raise ConfigError(f"--sweep {name}: only numbers that enter the compiled loop can be swept "
                          f"({', '.join(SWEEPABLE)}, {TASK_WEIGHT}TASK, {STRATEGY_OPTION}OPTION); {name} changes "
                          "the program, so its settings compile separately: use one run per value, or a study")


def check_sweep(sweep: Mapping[str, Sequence[float]]) -> dict[str, tuple[float, ...]]:
    """The sweep with its names checked: options that exist and enter the loop as numbers, each with values."""
    if not sweep:
        raise ConfigError(f"--sweep needs at least one NAME=V1,V2,... ({_EXAMPLES})")
    out = {}
    for raw, values in sweep.items():
        name = _name(raw)
        _check_name(name)
        if name in out:
            raise ConfigError(f"--sweep {name} is given twice; list all its values once")
        if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):  # a bare 1e-3: a sweep of one?
            raise ConfigError(f"--sweep {name}: expected a list of values, got {values!r}")
        values = tuple(float(v) for v in values)
        if not values:
            raise ConfigError(f"--sweep {name}: no values; give at least one")
        if len(set(values)) != len(values):
            raise ConfigError(f"--sweep {name}: give distinct values, got {list(values)}")
        if len({f"{v:g}" for v in values}) != len(values):  # the members' folders are named by them
            raise ConfigError(f"--sweep {name}: values {', '.join(map(repr, values))} read the same in the members' "
                              f"folder names ({', '.join(f'{name}={v:g}' for v in values)}): give values that differ "
                              "in their first 6 significant digits")
        out[name] = values
    return out


def member_configs(cfg: TrainConfig, sweep: Mapping[str, Sequence[float]]) -> list[tuple[str, TrainConfig]]:
    """Every combination of the sweep's values (the first option varying slowest) as (label, config).

    A member's config is the one its run alone would have: ``weight.TASK`` sets that task's entry of
    ``task_weights`` (the others the base config's, default 1), ``strategy.KEY`` sets KEY in
    ``strategy_args`` (the others as given).  A task name that is not one of ``cfg.tasks`` is a one-line
    ConfigError."""
    names = list(sweep)
    task_of = {n: _task_index(cfg.tasks, n[len(TASK_WEIGHT):]) for n in names if n.startswith(TASK_WEIGHT)}
    if len(set(task_of.values())) < len(task_of):
        raise ConfigError(f"--sweep {', '.join(task_of)}: these name the same task; sweep its weight once")
    members = []
    for values in itertools.product(*(sweep[n] for n in names)):
        label = ",".join(f"{n}={v:g}" for n, v in zip(names, values))
        chosen = dict(zip(names, values))
        options: dict[str, Any] = {n: v for n, v in chosen.items() if n in _TABLE}
        # a --task-weights of the wrong length is left as given: the run refuses it with its own line
        if task_of and (cfg.task_weights is None or len(cfg.task_weights) == len(cfg.tasks)):
            weights = list(cfg.task_weights if cfg.task_weights is not None else (1.0,) * len(cfg.tasks))
            for name, index in task_of.items():
                weights[index] = chosen[name]
            options["task_weights"] = tuple(weights)
        numbers = {n[len(STRATEGY_OPTION):]: v for n, v in chosen.items() if n.startswith(STRATEGY_OPTION)}
        if numbers:
            options["strategy_args"] = _with_strategy_options(cfg.strategy_args, numbers)
        members.append((label, apply_options(cfg, options, _TABLE)))
    if len({member.dqn.dropout > 0 for _, member in members}) > 1:
        raise ConfigError("--sweep dropout: mixes 0 (no dropout in the program) with rates above 0 (dropout in "
                          "it): two programs, and a rate-0 member run through dropout would not be its run alone "
                          "bit for bit; sweep the rates above 0 and train 0 as its own run")
    return members


def strategy_options(sweep: Mapping[str, Sequence[float]]) -> tuple[str, ...]:
    """The strategy options a sweep varies (``strategy.c`` -> ``c``)."""
    return tuple(n[len(STRATEGY_OPTION):] for n in sweep if n.startswith(STRATEGY_OPTION))


def _task_index(tasks: Sequence[str], name: str) -> int:
    """The position in ``tasks`` (specs) of the one task called ``name`` (its spec without options), or of
    the task at ``name`` (1-based), the way to name one of two tasks that share a name."""
    if re.fullmatch(r"[0-9]+", name):  # not str.isdigit, which takes '²' and other scripts' digits
        if not 1 <= int(name) <= len(tasks):
            raise ConfigError(f"--sweep {TASK_WEIGHT}{name}: --tasks has {len(tasks)} tasks; name one by its "
                              f"position, 1 to {len(tasks)}, or its name")
        return int(name) - 1
    names = [spec.strip().removeprefix("gym:").partition(":")[0] for spec in tasks]
    found = [i for i, n in enumerate(names) if n == name]
    if not found:
        raise ConfigError(f"--sweep {TASK_WEIGHT}{name}: no task named {name!r} in --tasks ({', '.join(names)}); "
                          "name one task by its name")
    if len(found) > 1:
        raise ConfigError(f"--sweep {TASK_WEIGHT}{name}: {len(found)} tasks named {name!r} in --tasks "
                          f"({', '.join(tasks)}); name one by its position in --tasks instead: "
                          f"{' or '.join(f'{TASK_WEIGHT}{i + 1}' for i in found)}")
    return found[0]


def _strategy_arg_key(item: str) -> str:
    return item.partition("=")[0].strip().replace("-", "_")


def _with_strategy_options(args: str, numbers: Mapping[str, float]) -> str:
    """``--strategy-args`` (``k=v,k=v``) with the options ``numbers`` set: in place where given, else added."""
    items = [item.strip() for item in args.split(",") if item.strip()]
    out = [f"{_strategy_arg_key(item)}={numbers[_strategy_arg_key(item)]!r}" if _strategy_arg_key(item) in numbers
           else item for item in items]
    given = {_strategy_arg_key(item) for item in items}
    return ",".join([*out, *(f"{k}={v!r}" for k, v in numbers.items() if k not in given)])


def check_not_also_given(sweep: Mapping[str, Sequence[float]], given: Mapping[str, Any]) -> None:
    """A one-line ConfigError where a swept option is also given as an option (``given``: the flat options set,
    as :func:`mtdqn.api.train` takes them): the sweep's values replaced it silently (``--sweep lr=1e-3,1e-4 --lr
    1e-2`` trained the two swept rates).  A swept ``strategy.KEY`` given in ``--strategy-args`` alike; a swept
    ``weight.TASK`` sets that task's entry of ``--task-weights``, the others' kept, as documented.  The CLI
    hands the library the options that differ from their defaults (:func:`mtdqn.api.cli_options`), so it checks
    the flags as written too (``--lr 5e-4``, the default: :func:`mtdqn.cli.entry._flags_given`)."""
    args = str(given.get("strategy_args", "") or "")
    in_args = {_strategy_arg_key(item) for item in args.split(",") if item.strip()}
    for name in sweep:
        key = name[len(STRATEGY_OPTION):] if name.startswith(STRATEGY_OPTION) else None
        if name in given or key in in_args:
            flag = f"--strategy-args {args}" if key else f"--{name.replace('_', '-')} {given[name]}"
            raise ConfigError(f"--sweep {name} and {flag} both set {key or name}: the sweep's values would replace "
                              "the option's; drop one")


def is_sweep(out_dir: Path) -> bool:
    """Whether ``out_dir`` holds a sweep (what `--resume` continues)."""
    return (Path(out_dir) / SWEEP_FILE).is_file()


def sweep_entries(out_dir: Path) -> tuple[str, ...]:
    """What a sweep wrote into ``out_dir``: its record and its members' folders (named in the record), those
    present; none where it holds no sweep.  ``--force`` removes them with a run's own files (a run or a sweep
    forced over a sweep left its members and record beside the new one, and `--resume` then read the old)."""
    out_dir = Path(out_dir)
    if not is_sweep(out_dir):
        return ()
    try:
        members = read_json(out_dir / SWEEP_FILE).get("members") or []
    except (ConfigError, AttributeError):  # an unreadable record: the record alone goes
        members = []
    return (SWEEP_FILE, *(m for m in members if isinstance(m, str) and "/" not in m and (out_dir / m).is_dir()))


_TUNE_GOES_ON = "rerun that tune to finish it (a batch whose trials were all pruned trains no further)"


def population_goes_on(out_dir: Path) -> str:
    """How a population's unfinished members go on (its members' runs have no checkpoint of their own until
    they finish): a ``--sweep`` is resumed, a batch of `mtdqn tune` trials (:mod:`mtdqn.tune.batches`, whose
    sweep.json has no ``sweep``) is its tune's to finish."""
    try:
        record = read_json(Path(out_dir) / SWEEP_FILE)
    except ConfigError:
        record = {}
    if isinstance(record, dict) and "tune_batch" in record:
        return _TUNE_GOES_ON
    return f"resume it, --resume {out_dir}"


def read_sweep(out_dir: Path) -> tuple[TrainConfig, dict[str, tuple[float, ...]]]:
    """The base config and the sweep of a sweep directory, its names in the order given.

    sweep.json's keys are sorted; the order lives in the member labels (``lr=0.001,gamma=0.9``), and it is
    the order of the members (:func:`member_configs`), so of the population's entries in the checkpoint.
    """
    record = read_json(Path(out_dir) / SWEEP_FILE)
    if "sweep" not in record:  # mtdqn.tune.batches: a population of trials, not a grid of options
        raise ConfigError(f"{out_dir} holds a batch of `mtdqn tune` trials (trials {record.get('tune_batch')}): "
                          f"{_TUNE_GOES_ON}")
    sweep = record["sweep"]
    members = record.get("members") or []
    order = [part.partition("=")[0] for part in members[0].split(",")] if members else list(sweep)
    return config_from_dict(record["config"]), check_sweep({name: sweep[name] for name in order})
