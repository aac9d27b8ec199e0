"""Read a study directory into validated, tidy dataframes.

The study runner writes `study.json` and one folder per variant under `cells/`.
Malformed files raise a one-line `ValueError` naming the file and the field;
missing optional files become notes for the report, never crashes.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pandas as pd

from mtdqn.config import json_fits
from mtdqn.errors import count
from mtdqn.io import read_parquet
from mtdqn.rundir import GRAD_TASK_COLUMNS, HEADLINES, METRIC_COLUMNS, STUDY_CELLS, STUDY_RECORD, RunDir

__all__ = ["Cell", "Study", "load_study"]

_STUDY_KEYS = ("name", "tasks", "variants", "reference", "seeds", "steps")
_SUMMARY_KEYS = ("variant", "status", "error")
_OK_SUMMARY_KEYS = (
    "tasks", "seeds", "params_total", "params_shared", "wall_time_s", "compile_s",
    "env_steps_per_s", "final_eval", "random_return", "thresholds",
)
# file stem -> (required columns, which of them must be numeric)
# The schema is the run directory's (mtdqn.rundir); grad_pairs needs only what every version has written.
_TABLES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "metrics": (tuple(METRIC_COLUMNS), ("step", "seed", "episode_return")),
    "grad_tasks": (tuple(GRAD_TASK_COLUMNS), ("step", "seed", "grad_norm", "weight")),
    "grad_pairs": (("step", "seed", "task_a", "task_b", "cosine"), ("step", "seed", "cosine")),
    "cka": (("seed", "task_a", "task_b", "cka"), ("seed", "cka")),
    # greedy evaluation during training (runs made before it existed have none: training curves are used)
    "evals": (("step", "task", "seed", "return_mean"), ("step", "seed", "return_mean")),
    # end-of-run gradient probe (mtdqn.diagnostics): task_a == task_b rows are the same-task null
    "grad_probe": (("seed", "task_a", "task_b", "cosine"), ("seed", "cosine")),
    # lookahead affinity Z_{i->j} during training (runs with --affinity-every only)
    "affinity": (("step", "seed", "task_i", "task_j", "value"), ("step", "seed", "value")),
    # a mixture of experts' weights and expert similarity per logging window (--sharing moe:K / moore:K only)
    "experts": (("step", "seed", "task", "expert", "weight", "entropy", "cosine", "cosine_raw"),
                ("step", "seed", "expert", "weight", "entropy", "cosine", "cosine_raw")),
}
_OPTIONAL = ("evals", "grad_probe", "affinity", "experts")  # absent in older runs without it being worth a note
_CONSEQUENCE = {  # what the report does without an optional table the run's own record says it wrote
    "evals": "every variant's learning curves, AUC and steps to threshold use training returns instead (one source "
             "for all)",
    "affinity": "its affinity is left out",
    "experts": "its rows are left out of the mixture-of-experts tables",
}


@dataclasses.dataclass(frozen=True)
class Cell:
    """One variant's stored results; tables are None when the file is absent."""

    variant: str
    status: str  # "ok" | "failed" | "missing"
    error: str | None
    summary: dict[str, Any]
    metrics: pd.DataFrame | None = None
    grad_tasks: pd.DataFrame | None = None
    grad_pairs: pd.DataFrame | None = None
    cka: pd.DataFrame | None = None
    evals: pd.DataFrame | None = None
    grad_probe: pd.DataFrame | None = None
    affinity: pd.DataFrame | None = None
    experts: pd.DataFrame | None = None
    record: dict[str, Any] = dataclasses.field(default_factory=dict)
    """The run's config.json (config, hash, provenance, options); empty when absent."""

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def feature_norm(self) -> str:
        """The run's ``--feature-norm`` as recorded in config.json ('none' where absent: its default)."""
        network = self.record.get("config", {}).get("network", {})
        return str(network.get("feature_norm", "none")) if isinstance(network, dict) else "none"

    @property
    def sharing(self) -> str:
        """The run's ``--sharing`` as recorded (summary.json, else config.json); '' where neither has it."""
        network = self.record.get("config", {}).get("network", {})
        sharing = self.summary.get("sharing") or (network.get("sharing") if isinstance(network, dict) else None)
        return sharing if isinstance(sharing, str) else ""


@dataclasses.dataclass(frozen=True)
class Study:
    """The study spec plus its cells (in `variants` order) and loading notes."""

    name: str
    tasks: tuple[str, ...]
    variants: tuple[str, ...]
    reference: str
    seeds: tuple[int, ...]
    steps: int
    cells: dict[str, Cell]
    notes: tuple[str, ...]
    record: dict[str, Any] = dataclasses.field(default_factory=dict)
    """The whole study.json (spec options, eval episodes, provenance)."""
    headline: str = "return"
    """The metric the report leads with, one of :data:`HEADLINES`."""

    @property
    def ok_variants(self) -> tuple[str, ...]:
        return tuple(v for v in self.variants if self.cells[v].ok)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err.msg} at line {err.lineno})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def _require_keys(path: Path, data: dict[str, Any], keys: tuple[str, ...]) -> None:
    missing = [k for k in keys if k not in data]
    if missing:
        raise ValueError(f"{path}: missing key(s) {', '.join(repr(k) for k in missing)}")


def _read_table(path: Path, stem: str, tasks: tuple[str, ...]) -> pd.DataFrame:
    required, numeric = _TABLES[stem]
    df = read_parquet(path)
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {', '.join(repr(c) for c in missing)}")
    if df.empty:  # no rows (a cell without updates); runs older than the fixed schemas wrote object columns
        df = df.astype({col: "float64" for col in numeric if not pd.api.types.is_numeric_dtype(df[col])})
    for col in numeric:
        if not pd.api.types.is_numeric_dtype(df[col]):
            raise ValueError(f"{path}: column '{col}' must be numeric, got {df[col].dtype}")
    for col in ("task", "task_a", "task_b", "task_i", "task_j"):
        if col in df.columns:
            unknown = sorted(set(df[col].astype(str)) - set(tasks))
            if unknown:
                raise ValueError(f"{path}: column '{col}' has task(s) not in study.json: {unknown}")
    return df.reset_index(drop=True)


_OK_SUMMARY_TYPES = (("tasks", tuple[str, ...], "a list of task names"), ("seeds", tuple[int, ...], "a list of "
                     "whole numbers"), ("params_total", int, "a whole number"), ("params_shared", int, "a whole "
                     "number"), ("wall_time_s", float, "a number"), ("compile_s", float, "a number"),
                     ("env_steps_per_s", float | None, "a number or null"))
"""The types of a finished cell's summary.json fields the report computes with (a hand-edited ``"seeds": 5`` was
a TypeError's traceback, ``"params_total": "x"`` an error naming no file)."""


def _validate_ok_summary(path: Path, summary: dict[str, Any], study_tasks: tuple[str, ...]) -> None:
    _require_keys(path, summary, _OK_SUMMARY_KEYS)
    for key, hint, what in _OK_SUMMARY_TYPES:
        if not json_fits(summary[key], hint):
            raise ValueError(f"{path}: {key!r} must be {what}, got {summary[key]!r}")
    n_seeds = len(summary["seeds"])
    for key, hint, what in (("final_eval", None, ""), ("random_return", float, "a number"),
                            ("thresholds", float | None, "a number or null")):
        if not isinstance(summary[key], dict):
            raise ValueError(f"{path}: {key!r} must be a table of task: value, got {summary[key]!r}")
        missing = [t for t in study_tasks if t not in summary[key]]
        if missing:
            raise ValueError(f"{path}: '{key}' lacks task(s) {missing}")
        wrong = [t for t in study_tasks if hint is not None and not json_fits(summary[key][t], hint)]
        if wrong:
            raise ValueError(f"{path}: '{key}'['{wrong[0]}'] must be {what}, got {summary[key][wrong[0]]!r}")
    # final_score: runs made since greedy evaluation during training; *_discounted: since the discounted return
    for key in ("final_eval", "final_score", "final_eval_discounted", "final_score_discounted"):
        if key not in summary:
            continue
        for task in study_tasks:
            values = summary[key].get(task) if isinstance(summary[key], dict) else None
            if not isinstance(values, list) or len(values) != n_seeds or not json_fits(values, tuple[float, ...]):
                raise ValueError(f"{path}: '{key}'['{task}'] is not a list of {n_seeds} numbers (one per seed)")


def _empty(table: pd.DataFrame | None) -> bool:
    """A table written with no rows (a run without gradient updates), as against one never written."""
    return table is not None and table.empty


def _written_by_its_options(stem: str, summary: dict[str, Any], record: dict[str, Any]) -> str | None:
    """Why the run must have written optional table ``stem`` (its own summary.json or config.json says it
    evaluated, measured the affinity, or had experts), or None where it need not have (older runs, options off)."""
    config = record.get("config") if isinstance(record.get("config"), dict) else {}
    if stem == "evals" and isinstance(summary.get("eval_every_used"), int) and summary["eval_every_used"] > 0:
        return f"it evaluated every {count(summary['eval_every_used'], 'env step')}"
    if stem == "affinity" and isinstance(config.get("affinity_every"), int) and config["affinity_every"] > 0 \
            and summary.get("params_shared", 0):
        return f"it measured the affinity every {count(config['affinity_every'], 'update')}"
    sharing = summary.get("sharing")
    if stem == "experts" and isinstance(sharing, str) and sharing.startswith(("moe:", "moore:")):
        return f"it trained --sharing {sharing}, whose runs write one (since 2026-12-02)"
    return None


def _load_cell(cell_dir: Path, variant: str, tasks: tuple[str, ...], notes: list[str]) -> Cell:
    summary_path = cell_dir / "summary.json"
    if not summary_path.exists():
        notes.append(f"Variant `{variant}`: no {summary_path.relative_to(cell_dir.parent.parent)}; cell treated as missing.")
        if (cell_dir / "checkpoints" / "latest.json").is_file():
            why = "unfinished (a checkpoint, no summary.json): rerunning the study resumes it"
        elif cell_dir.is_dir():
            why = "unfinished (no summary.json, no checkpoint yet): rerunning the study trains it"
        else:
            why = "not run (no folder): rerunning the study trains it"
        return Cell(variant, "missing", why, {})
    summary = _read_json(summary_path)
    _require_keys(summary_path, summary, _SUMMARY_KEYS)
    if summary["variant"] != variant:
        raise ValueError(f"{summary_path}: 'variant' is {summary['variant']!r}, folder says {variant!r}")
    status = summary["status"]
    if status not in ("ok", "failed"):
        raise ValueError(f"{summary_path}: 'status' must be 'ok' or 'failed', got {status!r}")
    if status == "failed":
        return Cell(variant, "failed", str(summary.get("error") or "no error message"), summary)
    _validate_ok_summary(summary_path, summary, tasks)
    record_path = RunDir(cell_dir).record_path
    record = _read_json(record_path) if record_path.is_file() else {}
    if "config" in record and not isinstance(record["config"], dict):  # the Methods read its options
        raise ValueError(f"{record_path}: 'config' must be a table of options, got {record['config']!r}")
    tables: dict[str, pd.DataFrame | None] = {}
    for stem in _TABLES:
        path = cell_dir / f"{stem}.parquet"
        if path.exists():
            tables[stem] = _read_table(path, stem, tasks)
        else:
            tables[stem] = None
            no_pairs = summary.get("params_shared", 0) == 0 or _empty(tables.get("grad_tasks"))  # none to write
            expected = _written_by_its_options(stem, summary, record)
            if expected:
                notes.append(f"Variant `{variant}`: no {stem}.parquet, though {expected}; {_CONSEQUENCE[stem]}.")
            elif stem not in _OPTIONAL and not (stem == "grad_pairs" and no_pairs):
                notes.append(f"Variant `{variant}`: no {stem}.parquet; its part of the report is skipped.")
    return Cell(variant, "ok", None, summary, **tables, record=record)


def load_study(study_dir: Path) -> Study:
    """Read and validate `study_dir`; raises ValueError naming the bad file and field."""
    study_dir = Path(study_dir)
    spec_path = study_dir / STUDY_RECORD
    if not spec_path.exists():
        raise ValueError(f"{spec_path}: not found; is {study_dir} a study directory?")
    spec = _read_json(spec_path)
    _require_keys(spec_path, spec, _STUDY_KEYS)
    for key, hint, what in (("tasks", tuple[str, ...], "a list of task names"),
                            ("variants", tuple[str, ...], "a list of names"),
                            ("seeds", tuple[int, ...], "a list of whole numbers"), ("steps", int, "a whole number"),
                            ("name", str, "a string")):
        if not json_fits(spec[key], hint):
            raise ValueError(f"{spec_path}: {key!r} must be {what}, got {spec[key]!r}")
    tasks = tuple(str(t) for t in spec["tasks"])
    variants = tuple(str(v) for v in spec["variants"])
    if not tasks or not variants:
        raise ValueError(f"{spec_path}: 'tasks' and 'variants' must be non-empty")
    if spec["reference"] not in variants:
        raise ValueError(f"{spec_path}: 'reference' {spec['reference']!r} is not one of 'variants'")
    headline = spec.get("headline", "return")
    if headline not in HEADLINES:
        raise ValueError(f"{spec_path}: 'headline' must be one of {', '.join(map(repr, HEADLINES))}, got {headline!r}")
    notes: list[str] = []
    cells = {v: _load_cell(study_dir / STUDY_CELLS / v, v, tasks, notes) for v in variants}
    cells_dir = study_dir / STUDY_CELLS
    extra = sorted(p.name for p in cells_dir.iterdir() if p.is_dir() and p.name not in variants) if cells_dir.exists() else []
    if extra:
        notes.append(f"Ignored cell folder(s) not listed in study.json: {', '.join(extra)}.")
    return Study(
        name=str(spec["name"]),
        tasks=tasks,
        variants=variants,
        reference=str(spec["reference"]),
        seeds=tuple(int(s) for s in spec["seeds"]),
        steps=int(spec["steps"]),
        cells=cells,
        notes=tuple(notes),
        record=spec,
        headline=headline,
    )
