"""A population sweep's specification: which options, which values, which members; JAX-free.

`mtdqn train --sweep lr=1e-4,3e-4 --sweep gamma=0.98,0.99` and the Python
API's ``sweep={"lr": [1e-4, 3e-4]}`` are read here, once; the CLI reads a
sweep directory's record here before JAX starts.  Training is
:mod:`mtdqn.train.sweep`.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any, Mapping, Sequence

from mtdqn.config import TrainConfig, config_from_dict
from mtdqn.errors import ConfigError
from mtdqn.flatoptions import apply_options, option_table, unknown_option
from mtdqn.io import read_json

__all__ = ["SWEEPABLE", "SWEEP_FILE", "parse_sweep", "check_sweep", "member_configs", "is_sweep", "read_sweep"]

SWEEPABLE = ("lr", "gamma", "tau", "eps_start", "eps_end", "eps_fraction")
"""Flat option names (:mod:`mtdqn.flatoptions`) a sweep may vary: they only enter
:class:`mtdqn.train.hypers.Hypers`, traced values of the compiled loop."""

SWEEP_FILE = "sweep.json"
_TABLE = option_table(TrainConfig)


def parse_sweep(specs: Sequence[str]) -> dict[str, tuple[float, ...]]:
    """``["lr=1e-4,3e-4", "gamma=0.98,0.99"]`` as ``{"lr": (1e-4, 3e-4), "gamma": (0.98, 0.99)}``, checked."""
    sweep: dict[str, Any] = {}
    for spec in specs:
        name, sep, values = spec.partition("=")
        name = name.strip().lstrip("-").replace("-", "_")
        if not sep or not values.strip():
            raise ConfigError(f"--sweep {spec!r}: expected NAME=V1,V2,... (e.g. lr=1e-4,3e-4)")
        if name in sweep:
            raise ConfigError(f"--sweep {name} is given twice; list all its values once")
        try:
            sweep[name] = [float(v) for v in values.split(",") if v.strip()]
        except ValueError:
            raise ConfigError(f"--sweep {spec!r}: values must be numbers") from None
    return check_sweep(sweep)


def check_sweep(sweep: Mapping[str, Sequence[float]]) -> dict[str, tuple[float, ...]]:
    """The sweep with its names checked: options that exist and enter the loop as numbers, each with values."""
    if not sweep:
        raise ConfigError("--sweep needs at least one NAME=V1,V2,... (e.g. lr=1e-4,3e-4)")
    out = {}
    for name, values in sweep.items():
        if name not in _TABLE:
            raise ConfigError(unknown_option(name, _TABLE))
        if name not in SWEEPABLE:
            raise ConfigError(f"--sweep {name}: only numbers that enter the compiled loop can be swept "
                              f"({', '.join(SWEEPABLE)}); {name} changes the program, so its settings compile "
                              "separately: use one run per value, or a study")
        values = tuple(float(v) for v in values)
        if not values or len(set(values)) != len(values):
            raise ConfigError(f"--sweep {name}: give distinct values, got {list(values)}")
        out[name] = values
    return out


def member_configs(cfg: TrainConfig, sweep: Mapping[str, Sequence[float]]) -> list[tuple[str, TrainConfig]]:
    """Every combination of the sweep's values (the first option varying slowest) as (label, config)."""
    names = list(sweep)
    members = []
    for values in itertools.product(*(sweep[n] for n in names)):
        label = ",".join(f"{n}={v:g}" for n, v in zip(names, values))
        members.append((label, apply_options(cfg, dict(zip(names, values)), _TABLE)))
    return members


def is_sweep(out_dir: Path) -> bool:
    """Whether ``out_dir`` holds a sweep (what `--resume` continues)."""
    return (Path(out_dir) / SWEEP_FILE).is_file()


def read_sweep(out_dir: Path) -> tuple[TrainConfig, dict[str, tuple[float, ...]]]:
    """The base config and the sweep of a sweep directory, its names in the order given.

    sweep.json's keys are sorted; the order lives in the member labels (``lr=0.001,gamma=0.9``), and it is
    the order of the members (:func:`member_configs`), so of the population's entries in the checkpoint.
    """
    record = read_json(Path(out_dir) / SWEEP_FILE)
    sweep = record["sweep"]
    members = record.get("members") or []
    order = [part.partition("=")[0] for part in members[0].split(",")] if members else list(sweep)
    return config_from_dict(record["config"]), check_sweep({name: sweep[name] for name in order})
