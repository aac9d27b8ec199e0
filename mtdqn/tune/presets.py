"""Built-in tunes: one per sharing structure of the classic study, so a study can compare the structures each at
its own tuned optimum rather than at shared defaults.

``mtdqn tune classic-shared`` (and ``classic-independent-matched``, ``classic-partial-1``, ...) searches the
learning rate, the target network's Polyak rate, the exploration schedule and the batch size of that variant of
`mtdqn study classic`: its tasks, its fixed options and its structure, with the same search space for every
structure.  The tables go through the same checks as a user's file (:func:`build_tune_spec`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from mtdqn.errors import ConfigError
from mtdqn.flatoptions import meant_name
from mtdqn.studies.presets import PRESETS
from mtdqn.tune.spec import TuneSpec, build_tune_spec, read_tune_spec

__all__ = ["CLASSIC_SPACE", "TUNE_PRESETS", "resolve_tune_spec", "tune_table"]

CLASSIC_SPACE: dict[str, Any] = {
    "lr": {"log": [1e-4, 3e-3]},
    "tau": {"log": [1e-3, 1e-1]},
    "eps_fraction": {"float": [0.05, 0.5]},
    "batch_size": {"choice": [32, 64, 128]},
}
"""The space every classic structure is tuned over (the structure's own options stay fixed).  The target
network's Polyak rate ``tau`` (every update, the study's way; 0.005 its default) is searched, not the hard
copy's period: the classic options avoid hard copies (:data:`mtdqn.studies.presets.CLASSIC_OPTIONS`), and a
period above 1 beside the Polyak default is refused, which made every trial of these presets fail until
2026-12-04 (``--target-update-every`` was searched in [10, 1000])."""


def _classic_tune(variant: str) -> Callable[[], dict[str, Any]]:
    """A tune of one variant of the classic study: 24 trials of 100k steps per task, 2 seeds, median pruning on
    an evaluation every 10k steps, objective the normalized IQM the study's report leads its aggregates with."""

    def table() -> dict[str, Any]:
        study = PRESETS["classic"]()
        return {"name": f"classic-{variant}", "tasks": study["tasks"], "steps": 100_000, "seeds": 2, "trials": 24,
                "objective": "iqm", "pruner": "median", "eval_every": 10_000,
                "options": {**study["options"], **study["variants"][variant]}, "space": dict(CLASSIC_SPACE)}

    return table


TUNE_PRESETS: dict[str, Callable[[], dict[str, Any]]] = {
    f"classic-{variant}": _classic_tune(variant) for variant in PRESETS["classic"]()["variants"]}


def tune_table(name_or_path: str | Path) -> tuple[dict[str, Any], str, str] | None:
    """(table, source, name) of a tune preset; None for a file."""
    key = str(name_or_path)
    return (TUNE_PRESETS[key](), f"tune preset {key}", key) if key in TUNE_PRESETS else None


def resolve_tune_spec(name_or_path: str | Path | dict[str, Any], overrides: dict[str, Any] | None = None) -> TuneSpec:
    """A tune preset by name, a tune spec file (.toml) by path, or a tune table as a dict; ``overrides`` replace
    top-level keys (``trials``)."""
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    if isinstance(name_or_path, dict):
        return build_tune_spec({**name_or_path, **overrides}, "tune", str(name_or_path.get("name", "tune")))
    preset = tune_table(name_or_path)
    if preset is not None:
        table, source, name = preset
        return build_tune_spec({**table, **overrides}, source, name)
    path = Path(name_or_path)
    if path.suffix != ".toml":
        raise ConfigError(f"{name_or_path}: not a tune preset ({', '.join(TUNE_PRESETS)}) nor a tune spec file "
                          f"(.toml){meant_name(str(name_or_path), TUNE_PRESETS)}")
    return read_tune_spec(path, overrides)
