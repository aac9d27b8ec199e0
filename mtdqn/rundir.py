"""The run directory: its layout, its one metric schema, and the writers training and analysis share.

A run directory holds ``config.json`` (full config, hash, version, git
revision, seeds, derived integers, run options), ``metrics.parquet`` and
``metrics.csv`` (tidy rows: step, task, seed, ...), ``evals.parquet`` (greedy
evaluations during and at the end of training), ``grad_tasks.parquet`` /
``grad_pairs.parquet`` (gradient diagnostics on the shared parameters), ``affinity.parquet`` (the lookahead
inter-task affinity, with ``--affinity-every``),
``cka.parquet`` and ``grad_probe.parquet`` (end-of-run probes, :mod:`mtdqn.diagnostics`), ``experts.parquet``
(a mixture of experts' mixing weights and expert similarity after every chunk; runs with ``--sharing moe:K`` or
``moore:K`` only),
``summary.json``, ``start.json`` (fine-tuned runs: where the weights came from and the greedy returns they
started with), ``test_eval.json`` (a test evaluation), TensorBoard event files under ``tb/`` and
an orbax checkpoint under ``checkpoints/`` (written by :mod:`mtdqn.checkpoint`).
A student of `mtdqn distill` holds config.json and the checkpoint like any run,
plus ``distill.json``, ``distill_report.csv`` and ``distill_report.md``.

JAX-free on purpose: the analysis reads run directories without starting JAX,
and both training loops (compiled and Gymnasium host) write through the same
:class:`RunDir`, so their directories cannot drift apart.
"""

from __future__ import annotations

import errno
import hashlib
import itertools
import json
import os
import shlex
from pathlib import Path
from typing import Any, ContextManager, NamedTuple

import numpy as np
import pandas as pd

from mtdqn.config import TrainConfig, config_from_dict, derive
from mtdqn.errors import ConfigError, count
from mtdqn.io import (atomic_write, check_free_space, check_new_out_dir, free_bytes, held, prepare_out_dir,
                      read_json, read_parquet, write_json, write_parquet)
from mtdqn.sweepspec import SWEEP_FILE, is_sweep, population_goes_on, sweep_entries
from mtdqn.tasknames import check_known_names

__all__ = ["RUN_RECORD", "RUN_SUMMARY", "DISTILL_RECORD", "STUDY_RECORD", "STUDY_CELLS", "RUN_FILES", "RUN_FOLDERS_OWN",
           "METRIC_COLUMNS", "EVAL_COLUMNS", "GRAD_TASK_COLUMNS", "GRAD_PAIR_COLUMNS",
           "METRIC_SCHEMA", "EVAL_SCHEMA", "GRAD_TASK_SCHEMA", "GRAD_PAIR_SCHEMA", "AFFINITY_SCHEMA",
           "EXPERT_SCHEMA", "CKA_SCHEMA", "table_frame", "HEADLINES", "Tables", "chunk_tables", "eval_rows",
           "final_score_steps",
           "final_scores", "FINAL_SCORE_EVALS", "FINAL_SCORE_SPAN", "FINAL_SCORE_RULES", "final_score_rule",
           "RunDir", "write_tensorboard", "evaluated", "evals_until", "TABLE_SCHEMAS"]

# A run's record (its config, options and hash): a folder that holds one holds a run.
RUN_RECORD = "config.json"
# A run is finished exactly when its last file is written: a trained run's summary, a distilled student's
# comparison with its teachers (`mtdqn distill`).
RUN_SUMMARY = "summary.json"
DISTILL_RECORD = "distill.json"
# A study's folder (`mtdqn study`): its record, and the folder holding one run directory per cell (its variant).
STUDY_RECORD = "study.json"
STUDY_CELLS = "cells"
# What a run writes into its directory; `--force` removes exactly these before a new run.
RUN_FILES = (
    RUN_RECORD, "metrics.parquet", "metrics.csv", "evals.parquet", "grad_tasks.parquet", "grad_pairs.parquet",
    "affinity.parquet", "experts.parquet",
    "cka.parquet", "grad_probe.parquet", RUN_SUMMARY, "eval.json", "tb", "checkpoints", DISTILL_RECORD,
    "distill_report.csv", "distill_report.md", "start.json", "test_eval.json",
)
# What of a run's folders is its own (a pattern of the names in them): --force removes those alone, and the folder
# once empty; a file of the user's in checkpoints/ or tb/ stays.
RUN_FOLDERS_OWN = {"checkpoints": r"iter_\d{9}.*|\.?latest\.json(\..*\.tmp)?",  # and an atomic write's temp file
                   "tb": r"events\.out\.tfevents\..*"}
# The tidy tables' columns and dtypes (those the compiled loop produces), the same when a table has no rows: a run
# whose budget ends before its first update still writes an empty grad_tasks table with an integer step column.
# One row per (chunk, seed, task) or (chunk, seed, task pair).
METRIC_SCHEMA = {"step": "int64", "task": "object", "seed": "int64", "episode_return": "float32",
                 "episode_length": "float32", "episodes": "int32", "loss": "float32", "q_mean": "float32",
                 "epsilon": "float32"}
# One row per (evaluation step, task, seed): the mean over that evaluation's greedy episodes.
EVAL_SCHEMA = {"step": "int64", "task": "object", "seed": "int64", "return_mean": "float64",
               "return_std": "float64", "discounted_mean": "float64", "episodes": "int64"}
GRAD_TASK_SCHEMA = {"step": "int64", "seed": "int64", "task": "object", "grad_norm": "float32",
                    "weight": "float32", "loss": "float32"}
GRAD_PAIR_SCHEMA = {"step": "int64", "seed": "int64", "task_a": "object", "task_b": "object",
                    "cosine": "float32", "conflict_rate": "float32"}
# One row per (chunk, seed, ordered task pair i -> j, i == j included): the mean of the window's measurements of
# Z_{i->j} (mtdqn.train.affinity); windows without a measurement have no rows.
AFFINITY_SCHEMA = {"step": "int64", "seed": "int64", "task_i": "object", "task_j": "object", "value": "float32"}
CKA_SCHEMA = {"seed": "int64", "task_a": "object", "task_b": "object", "cka": "float64", "cka_init": "float64",
              "cka_chance": "float64", "cka_own": "float64", "cka_own_init": "float64", "cka_own_chance": "float64",
              "probe": "object", "estimator": "object"}
"""cka.parquet (:func:`mtdqn.diagnostics.cka_rows`): written only where the run was probed; an empty table of
these columns where it was not (``--probes False``: it read as a frame without columns).  ``probe``: which
replay slots the states came from, ``uniform`` (:func:`mtdqn.diagnostics.probe_slots`); tables without the
column are older runs', whose probe took each replay's first slots.  ``estimator``: linear CKA's
(:data:`mtdqn.analysis.cka.ESTIMATOR`, ``debiased``); older runs' (no column) the biased one."""
# A mixture of experts (mtdqn.diagnostics.expert_probe), one row per (chunk, seed, task, expert), the final state's
# at the run's last step: ``weight``, the task's softmax mixing weight on the expert (a task's K rows sum to 1);
# ``entropy``, the entropy in nats of the task's K weights (log K: the even mixture; 0: one expert), repeated on
# each of the task's K rows; ``cosine``, the expert's mean cosine with the other experts on the task's probe
# observations, of the representations the task mixes (``moore``: orthonormalized, ~0), so the mean over a
# task's K rows is the mean pairwise cosine between experts; ``cosine_raw``, the same before Gram–Schmidt
# (``moe``: equal to ``cosine``).
EXPERT_SCHEMA = {"step": "int64", "seed": "int64", "task": "object", "expert": "int64", "weight": "float32",
                 "entropy": "float32", "cosine": "float32", "cosine_raw": "float32"}
METRIC_COLUMNS = list(METRIC_SCHEMA)
EVAL_COLUMNS = list(EVAL_SCHEMA)
GRAD_TASK_COLUMNS = list(GRAD_TASK_SCHEMA)
GRAD_PAIR_COLUMNS = list(GRAD_PAIR_SCHEMA)


def table_frame(rows: list[dict[str, Any]], schema: dict[str, str]) -> pd.DataFrame:
    """A tidy table from its rows with the schema's columns and dtypes, also when there are no rows."""
    return pd.DataFrame(rows, columns=list(schema)).astype(schema)


HEADLINES = ("return", "discounted")
"""The metric a study's report leads with (study.json's optional ``headline``, written by the study runner, read
by the report): the undiscounted or the discounted final return; studies recorded before the key existed lead
with the undiscounted one."""


class Tables(NamedTuple):
    """The rows of the tidy tables, as lists of dicts (appended chunk by chunk); each is ``<field>.parquet``."""

    metrics: list[dict[str, Any]]
    grad_tasks: list[dict[str, Any]]
    grad_pairs: list[dict[str, Any]]
    evals: list[dict[str, Any]]
    affinity: list[dict[str, Any]]
    grad_probe: list[dict[str, Any]]  # the gradient probe at each evaluation and at the end (mtdqn.diagnostics)
    experts: list[dict[str, Any]]  # a mixture of experts' weights and similarity per chunk (EXPERT_SCHEMA)

    @staticmethod
    def empty() -> Tables:
        return Tables(*([] for _ in Tables._fields))

    def extend(self, other: Tables) -> None:
        for mine, theirs in zip(self, other):
            mine.extend(theirs)


def chunk_tables(names: tuple[str, ...], seeds: list[int], has_shared: bool, m: dict[str, np.ndarray],
                 step: int) -> Tables:
    """One chunk's rows for every seed from its summarized metrics ``m`` (leading axes: seeds, tasks).

    Task-pair rows exist only where the tasks share parameters (gradient
    cosines and affinities are taken on the shared ones); affinity rows only
    for windows that measured it (``--affinity-every``).  A window in which a seed made no
    gradient update (before learning starts) has no gradient rows: its
    zeros are not measurements, and averaged in they would bias every
    gradient statistic (a weight of 1 would read 0.97).  Its ``loss`` and ``q_mean`` (means over the window's
    updates) are NaN: there were none (they read 0.0, a perfect loss).
    """
    out = Tables.empty()
    for s, seed in enumerate(seeds):
        updated = bool(np.asarray(m["updates"][s]).max() > 0) if "updates" in m else True
        for i, task in enumerate(names):
            out.metrics.append({
                "step": step, "task": task, "seed": seed,
                **{k: m[k][s, i] for k in ("episode_return", "episode_length", "episodes")},
                **{k: m[k][s, i] if updated else np.float32(np.nan) for k in ("loss", "q_mean")},
                "epsilon": m["epsilon"][s],
            })
            if not updated:
                continue
            out.grad_tasks.append({
                "step": step, "seed": seed, "task": task,
                "grad_norm": m["grad_norm"][s, i], "weight": m["weight"][s, i], "loss": m["loss"][s, i],
            })
        if has_shared and updated:
            for a, b in itertools.combinations(range(len(names)), 2):
                out.grad_pairs.append({
                    "step": step, "seed": seed, "task_a": names[a], "task_b": names[b],
                    "cosine": m["cosine"][s, a, b], "conflict_rate": m["conflict"][s, a, b],
                })
        if has_shared and "affinity" in m and m["affinity_measurements"][s] > 0:
            out.affinity.extend({"step": step, "seed": seed, "task_i": names[i], "task_j": names[j],
                                 "value": m["affinity"][s, i, j]}
                                for i, j in itertools.product(range(len(names)), repeat=2))
    return out


def eval_rows(names: tuple[str, ...], seeds: list[int], total: np.ndarray, discounted: np.ndarray,
              step: int) -> list[dict[str, Any]]:
    """One evaluation's rows from its returns, each (seeds, tasks, episodes): undiscounted and discounted."""
    return [{"step": step, "task": task, "seed": seed, "return_mean": float(total[s, i].mean()),
             "return_std": float(total[s, i].std()), "discounted_mean": float(discounted[s, i].mean()),
             "episodes": int(total.shape[-1])}
            for s, seed in enumerate(seeds) for i, task in enumerate(names)]


FINAL_SCORE_EVALS = 3  # a run's final score: the mean of at most its last this many greedy evaluations ...
FINAL_SCORE_SPAN = 0.2  # ... of those in the last 20% of training (the final one always counts)


FINAL_SCORE_RULES = {
    "mean-of-last-evals": "the mean of the last greedy evaluations (at most FINAL_SCORE_EVALS, in the last "
                          "FINAL_SCORE_SPAN of training, the end-of-training one always among them)",
    "restored-best-final-eval": "the end-of-training greedy evaluation alone: early stopping (--patience) or "
                                "--keep-best restored each seed's best parameters, and the evaluations before "
                                "were of other parameters",
}
"""summary.json's ``final_score_rule``: which definition its ``final_score`` follows."""


def final_score_rule(restored_best: bool) -> str:
    """The key of :data:`FINAL_SCORE_RULES` a run's final score follows."""
    return "restored-best-final-eval" if restored_best else "mean-of-last-evals"


def final_score_steps(evals: list[dict[str, Any]], rule: str = "mean-of-last-evals") -> list[int]:
    """The evaluation steps a final score averages: the last FINAL_SCORE_EVALS, but only those in the last
    FINAL_SCORE_SPAN of training, so a sparse schedule never mixes a mid-training policy into "final"; under
    ``restored-best-final-eval`` the last (the restored parameters' evaluation) alone."""
    steps = sorted({int(row["step"]) for row in evals})
    if rule == "restored-best-final-eval":
        return steps[-1:]
    return [s for s in steps[-FINAL_SCORE_EVALS:] if s >= (1.0 - FINAL_SCORE_SPAN) * steps[-1]]


def final_scores(evals: list[dict[str, Any]], names: tuple[str, ...], seeds: list[int], steps: list[int],
                 column: str = "return_mean") -> dict[str, list[float]]:
    """Per task, per seed: the mean of ``column`` over the evaluations at ``steps`` (:func:`final_score_steps`)."""
    frame = table_frame(evals, EVAL_SCHEMA)
    frame = frame[frame["step"].isin(steps)]
    means = frame.groupby(["task", "seed"])[column].mean()
    return {task: [float(means[(task, seed)]) for seed in seeds] for task in names}


AGAIN = "train the run again from its start (--force True; a study's cell: delete its folder)"
"""What a run whose records cannot be resumed from is left to do, where a command or a study resumes it."""


def evaluated(tables: Tables) -> dict[str, int]:
    """What a checkpoint records of the evaluations during training before it: ``evals_until``, the last one's
    env step (0: none), which a resume's evals.parquet must reach (:meth:`RunDir.tables_until`).  Recorded, not
    worked out from the schedule: a resume may change the cadence (``--eval-every``), and a run resumed twice
    evaluated under each."""
    return {"evals_until": int(max((row["step"] for row in tables.evals), default=0))}


def evals_until(meta: dict[str, Any]) -> int:
    """The ``evals_until`` a checkpoint's record holds (:func:`evaluated`); 0 for one saved before the record."""
    value = meta.get("evals_until", 0)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


TABLE_SCHEMAS = {"metrics": METRIC_SCHEMA, "grad_tasks": GRAD_TASK_SCHEMA, "grad_pairs": GRAD_PAIR_SCHEMA,
                 "evals": EVAL_SCHEMA, "affinity": AFFINITY_SCHEMA, "experts": EXPERT_SCHEMA}
"""The columns and types of each table a run writes with a schema (:class:`Tables`' fields; the gradient
probe's rows are written as they come)."""


def _as_written(frame: pd.DataFrame, schema: dict[str, str], path: Path) -> pd.DataFrame:
    """``frame`` read from ``path`` with ``schema``'s columns in its types, or a one-line ConfigError naming the
    file: a table edited by hand (a column dropped, steps as text) is no longer the run's."""
    missing = [c for c in schema if c not in frame]
    if missing and len(frame):
        raise ConfigError(f"{path} has no column {missing[0]!r}: not the table this run wrote")
    if missing:  # an absent (or empty) table
        return frame.reindex(columns=list(dict.fromkeys([*schema, *frame.columns]))).astype(schema)
    typed = {c: t for c, t in schema.items() if t != "object"}
    try:
        return frame.astype(typed)
    except (TypeError, ValueError):
        wrong = next(c for c, t in typed.items() if str(frame[c].dtype) != t)
        raise ConfigError(f"{path}: its column {wrong!r} holds {frame[wrong].dtype}, not the {typed[wrong]} this run "
                          "wrote: not the table this run wrote") from None


def _records(frame: pd.DataFrame) -> list[dict]:
    """Rows as dicts of numpy scalars, so a frame rebuilt from them keeps its dtypes (float32 stays float32)."""
    columns = [frame[c].to_numpy() for c in frame.columns]
    return [dict(zip(frame.columns, values)) for values in zip(*columns)]


def _runs_in(folder: Path, what: str, placeholder: str = "") -> str:
    """``: name one of its N <what>, e.g. FOLDER/first`` for the runs directly in ``folder``; where it holds none
    yet, ``: name one of its <what>, FOLDER/<placeholder>`` (nothing without a placeholder)."""
    runs = sorted(d.name for d in folder.iterdir() if (d / RUN_RECORD).is_file()) if folder.is_dir() else []
    if runs:
        return f": name one of its {count(len(runs), what.removesuffix('s'))}, e.g. {folder / runs[0]}"
    return f": name one of its {what}, {folder / placeholder}" if placeholder else ""


def _holds_members(folder: Path) -> bool:
    """Whether ``folder`` holds a member of a sweep in ``folder`` itself (its record's population leads here,
    :meth:`RunDir.population`), as a sweep whose sweep.json was deleted does; not a tune's trials/, whose
    members name their batch elsewhere."""
    here = folder.resolve()
    return folder.is_dir() and any(RunDir(record.parent).population() == here
                                   for record in folder.glob(f"*/{RUN_RECORD}"))


_WRITERS = itertools.count()
"""Numbers this process's TensorBoard writers (:meth:`RunDir.tensorboard`), so that no two share a file."""


class RunDir:
    """One run directory on disk: create or open it, append chunks, write the final files."""

    def __init__(self, path: Path | str):
        self.path = Path(path)

    @property
    def record_path(self) -> Path:
        return self.path / RUN_RECORD

    def is_run(self) -> bool:
        """Whether this folder holds a run (its record)."""
        return self.record_path.is_file()

    def check_new(self, force: bool) -> None:
        """Refuse this folder for a new run where it holds one and not ``force`` (one line; reads only)."""
        check_new_out_dir(self.path, RUN_RECORD, force, hint="" if force else self._resume_hint(), **self._ours())

    def check_new_sweep(self, force: bool) -> None:
        """Refuse this folder for a new sweep where it holds a sweep or a run and not ``force`` (one line; reads
        only: asked before JAX starts, and again where the sweep writes)."""
        if is_sweep(self.path) and not force:
            raise ConfigError(f"{self.path} already holds a sweep; use --resume {self.path} to continue it or "
                              "--force True to overwrite")
        check_new_out_dir(self.path, SWEEP_FILE, force, **self._ours())

    def prepare_sweep(self, force: bool) -> None:
        """This folder made ready for a new sweep: :meth:`check_new_sweep`, then (``force``) a run's or an earlier
        sweep's files removed, as :meth:`create` does for a run."""
        self.check_new_sweep(force)
        prepare_out_dir(self.path, SWEEP_FILE, force, **self._ours())

    def trained_here(self) -> ContextManager[None]:
        """Hold this folder for one trainer while it writes (:func:`mtdqn.io.held`): a second (``--resume`` of a
        run still training in another terminal, ``--force`` over it) is refused in one line before it writes,
        where both wrote checkpoints and tables over each other."""
        return held(self.path)

    def create(self, record: dict[str, Any], force: bool) -> None:
        """A new run: check the folder may be used (``force`` replaces an old run's files), write its record."""
        prepare_out_dir(self.path, RUN_RECORD, force, hint="" if force else self._resume_hint(), **self._ours())
        write_json(self.record_path, record)

    def owned(self) -> tuple[str, ...]:
        """What ``--force`` removes here before a new run or sweep: a run's files and a sweep's
        (:func:`mtdqn.sweepspec.sweep_entries`); nothing else in the folder."""
        return (*RUN_FILES, *sweep_entries(self.path))

    def _ours(self) -> dict[str, Any]:
        """What of this folder a new run or sweep may replace, as :func:`mtdqn.io.prepare_out_dir` takes it: the
        entries (:meth:`owned`) and, inside a run's folders, the names (:data:`RUN_FOLDERS_OWN`)."""
        return {"owned": self.owned(), "inside": RUN_FOLDERS_OWN}

    def _resume_hint(self) -> str:
        """What the refusal of a new run here adds where this folder holds an unfinished training run (a
        checkpoint, not finished, resumable): the ``--resume`` that continues it (a killed finetune was told
        only ``--force True``)."""
        if self.finished_as() is not None:
            return ""
        try:
            if self._distilled(self.require_run()):  # killed before its distill.json: no distillation resumes
                return "; it is an unfinished distillation (a distillation does not resume: start it over)"
        except (OSError, ValueError):  # no run's record (ConfigError), or an unreadable one
            return ""
        if not (self.path / "checkpoints" / "latest.json").is_file():
            return ""
        try:
            self.require_resumable()
        except ConfigError:  # no run's record, a distilled student, a sweep or one of its members
            return ""
        return f"; it is unfinished: `mtdqn train --resume {shlex.quote(str(self.path))}` continues it"

    def write_options(self, options: dict[str, Any]) -> None:
        """config.json states the options its latest checkpoint holds (``options``: :meth:`RunOptions.record`):
        rewritten (atomically) after a checkpoint a resume wrote under changed options, not before, so a resume
        stopped before its first checkpoint leaves the options it will resume with (it stated the new ones)."""
        record = self.require_run()
        if record.get("options") != options["options"]:
            write_json(self.record_path, {**record, **options})

    def require_run(self, flag: str = "") -> dict[str, Any]:
        """An existing run's record; a one-line error if this is no run directory, naming the runs inside a sweep
        or a study given instead (``flag``: the option that named the folder, e.g. ``--from``, said first)."""
        if not self.is_run():
            named = f"{flag} {self.path}" if flag else str(self.path)
            if (self.path / SWEEP_FILE).is_file():
                raise ConfigError(f"{named} holds a sweep ({SWEEP_FILE}), not one run"
                                  f"{_runs_in(self.path, 'members')}")
            if (self.path / STUDY_RECORD).is_file():
                raise ConfigError(f"{named} holds a study ({STUDY_RECORD}), not one run"
                                  f"{_runs_in(self.path / STUDY_CELLS, 'cells', '<variant>')}")
            if _holds_members(self.path):
                raise ConfigError(f"{named} holds a sweep's members but no {SWEEP_FILE}: the population's record is "
                                  f"gone, and the sweep cannot resume without it{_runs_in(self.path, 'members')}")
            raise ConfigError(f"{named} is not a run directory (no {RUN_RECORD})")
        return read_json(self.record_path)

    def finished_as(self) -> str | None:
        """The file that says this run has ended (a trained run's summary.json, a distilled student's
        distill.json), or None while it can still be resumed."""
        return next((name for name in (DISTILL_RECORD, RUN_SUMMARY) if (self.path / name).is_file()), None)

    def _distilled(self, record: dict[str, Any]) -> bool:
        """Whether this run is a distilled student (``record``: its config.json): its record says so from the
        start, its distill.json once it has ended."""
        return "distill" in record or self.finished_as() == DISTILL_RECORD

    def require_resumable(self) -> dict[str, Any]:
        """The record of a run ``--resume`` may continue: a training run, finished or not (a finished one is
        evaluated again with the options given); one line for a distilled student, which no DQN run made (its
        record says so from the start: a distillation killed before its distill.json is one too)."""
        record = self.require_run()
        if self._distilled(record):
            raise ConfigError(f"{self.path} is a distilled student (`mtdqn distill`), not a training run: "
                              "there is nothing to resume")
        population = self.population(record)
        if population is not None and self.finished_as() is None:
            raise ConfigError(f"{self.path} is a member of the population in {population}, whose checkpoint is "
                              f"the whole population's: {population_goes_on(population)}")
        checkpointed = (self.path / "checkpoints" / "latest.json").exists()
        if population is None and self.finished_as() is None and not checkpointed:
            # diverged or killed before its first checkpoint: said "no checkpoint in ...", and nothing about how on
            raise ConfigError(f"{self.path} stopped before its first checkpoint: there is nothing to resume; train "
                              "it again with the same options and --force True")
        return record

    def population(self, record: dict[str, Any] | None = None) -> Path | None:
        """The population (a ``--sweep``, a batch of `mtdqn tune` trials) this run was trained in: its record's
        ``population`` (relative to the run), or, in records older than that key, a sweep in the parent folder;
        None for a run trained alone.  Until the run finishes, its only checkpoint is the population's."""
        if record is None:
            try:
                record = read_json(self.record_path)
            except (ConfigError, OSError):
                return None
        relative = record.get("population") if isinstance(record, dict) else None
        if isinstance(relative, str):
            return (self.path / relative).resolve()  # through a symlinked member too, as the parent below
        parent = self.path.resolve().parent  # `--resume .` from inside a member too
        return parent if (parent / SWEEP_FILE).is_file() else None

    def require_checkpoint(self) -> None:
        """One line where this run has no checkpoint to load (no ``checkpoints/latest.json``), saying where a
        population's unfinished member has it."""
        if (self.path / "checkpoints" / "latest.json").exists():
            return
        population = self.population()
        where = (f": it is an unfinished member of the population in {population}, whose checkpoint holds it "
                 f"until it finishes; {population_goes_on(population)}") if population is not None else ""
        raise ConfigError(f"no checkpoint in {self.path} (missing checkpoints/latest.json){where}")

    def unfinished_note(self, iteration: int | None = None) -> str | None:
        """Where this run has not ended but has a checkpoint (it is training, or was stopped): what a reader of it
        acts with, ``RUN is unfinished: its checkpoint is at step X of Y``; None for a finished run and for a
        folder without a run or a readable checkpoint record (the reader's own error says so).  ``iteration``:
        the checkpoint's the reader read (a run training on may have written another since: `evaluate` named
        step 6,000 of a run it had evaluated at 2,000); one read before the run finished is said as such (`play`
        said nothing of a run that finished while it drew its GIF)."""
        if not self.is_run():
            return None
        finished = self.finished_as() is not None
        if finished and iteration is None:
            return None
        try:
            meta = read_json(self.path / "checkpoints" / "latest.json")
            cfg = config_from_dict(meta["config"])
            step = int(meta["iteration"] if iteration is None else iteration) * cfg.num_envs
            total = derive(cfg).env_steps
        except (ConfigError, OSError, KeyError, TypeError, ValueError, AttributeError):
            return None
        if finished:
            return None if step >= total else (f"{self.path} was unfinished when read: the checkpoint used is at step "
                                               f"{step:,} of {total:,} (the run has finished since)")
        return f"{self.path} is unfinished: its checkpoint is at step {step:,} of {total:,}"

    def config(self) -> TrainConfig:
        """The config this run directory was made with (its record); a one-line error if it has none."""
        record = self.require_run()
        try:
            return config_from_dict(record["config"])
        except (KeyError, TypeError, AttributeError):
            raise ConfigError(f"{self.record_path} is not an mtdqn run record (no readable config)") from None
        except ConfigError as exc:  # a key of the wrong type or unknown: name the file
            raise ConfigError(f"{self.record_path}: {exc}") from None

    def runnable_config(self) -> TrainConfig:
        """:meth:`config`, its tasks known in this process (what building its agent needs): a run of a task
        registered with ``mtdqn.register_task`` where it was made, reopened in another process, named the
        unknown task but not the run."""
        cfg = self.config()
        try:
            check_known_names(cfg.tasks)
        except ConfigError as exc:
            raise ConfigError(f"{self.path}: {exc}") from None
        return cfg

    def checkpoint_id(self) -> str | None:
        """A digest of the latest checkpoint's file table (the SHA-256 of every file): the same weights give the
        same id, any others another; None without a readable checkpoint record."""
        try:
            files = read_json(self.path / "checkpoints" / "latest.json")["files"]
        except (ConfigError, OSError, KeyError, TypeError):
            return None
        return hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()[:16]

    def check_space(self, checkpoint_bytes: int) -> None:
        """Before anything is compiled: room for two checkpoints (the old one stays until the new is complete)."""
        check_free_space(self.path, 2 * checkpoint_bytes + 2**24, "two checkpoints")

    def ensure_space(self, checkpoint_bytes: int) -> None:
        """Stop cleanly, last checkpoint intact, before a filling disk makes a write fail half-way."""
        need = checkpoint_bytes + 2**23
        free = free_bytes(self.path)
        if free is not None and free < need:
            message = (f"disk almost full: {free / 2**20:,.0f} MiB free, below the {need / 2**20:,.0f} MiB kept "
                       "for the next checkpoint; the last checkpoint is intact")
            raise OSError(errno.ENOSPC, message, str(self.path))

    def tables_until(self, last_step: int, metrics_until: int = 0, evals_until: int = 0) -> Tables:
        """The rows a resumed run keeps: those up to its checkpoint (env step ``last_step``); later ones are
        regenerated.  What they must hold is checked, each failure one line: metrics.parquet (every chunk writes
        its rows) reaching ``metrics_until``, evals.parquet ``evals_until`` (0: nothing asked;
        :meth:`mtdqn.train.drive.Schedule.kept_steps` says what), and every table the columns and types the
        run writes.  A deleted metrics.parquet resumed to 6 of its 16 rows and emptied metrics.csv; a column
        dropped by hand ended in pandas' traceback after the training."""
        reach = {"metrics": metrics_until, "evals": evals_until}
        kept = []
        for name in Tables._fields:
            path = self.path / f"{name}.parquet"
            frame = read_parquet(path) if path.exists() else pd.DataFrame({"step": []})
            if name == "grad_probe" and "step" not in frame:  # an older run's, taken at its end only: regenerated
                frame = pd.DataFrame({"step": []})
            frame = _as_written(frame, TABLE_SCHEMAS.get(name, {"step": "int64"}), path)
            if reach.get(name, 0) and not (len(frame) and frame["step"].max() >= reach[name]):
                why = "is missing" if not path.exists() else f"ends before step {reach[name]:,}"
                raise ConfigError(f"{path} {why}: the run's history up to its checkpoint (step {last_step:,}) is "
                                  f"lost, and resuming would write the run without it; {AGAIN}")
            kept.append(_records(frame[frame["step"] <= last_step]))
        return Tables(*kept)

    def write_tables(self, tables: Tables) -> None:
        """Rewrite the parquet tables whole (atomically), so a killed run never leaves half a table."""
        write_parquet(self.path / "metrics.parquet", table_frame(tables.metrics, METRIC_SCHEMA))
        write_parquet(self.path / "grad_tasks.parquet", table_frame(tables.grad_tasks, GRAD_TASK_SCHEMA))
        if tables.grad_pairs:
            write_parquet(self.path / "grad_pairs.parquet", table_frame(tables.grad_pairs, GRAD_PAIR_SCHEMA))
        if tables.evals:
            write_parquet(self.path / "evals.parquet", table_frame(tables.evals, EVAL_SCHEMA))
        if tables.affinity:
            write_parquet(self.path / "affinity.parquet", table_frame(tables.affinity, AFFINITY_SCHEMA))
        if tables.grad_probe:
            write_parquet(self.path / "grad_probe.parquet", pd.DataFrame(tables.grad_probe))
        if tables.experts:
            write_parquet(self.path / "experts.parquet", table_frame(tables.experts, EXPERT_SCHEMA))

    def tensorboard(self, purge_step: int | None = None) -> Any:
        """A TensorBoard writer under tb/; on resume, events after ``purge_step`` are dropped and written again.

        Its file is named apart from every other writer's: tensorboardX names one by the second it opened and
        the host, and opens it for writing, so two writers of one run in one second (the loop's, then the end of
        run's, in a run or resume of a second) made one file, the second emptying the first: the run's
        TensorBoard history was lost but for its last step.  The count zero-padded: TensorBoard reads a folder's
        files in name order ('.10' before '.9' would put the end of run's step first, then drop it)."""
        from tensorboardX import SummaryWriter  # imported late: it is slow to import

        return SummaryWriter(str(self.path / "tb"), purge_step=purge_step,
                             filename_suffix=f".{os.getpid()}.{next(_WRITERS):06d}")  # in name order

    def write_eval(self, result: dict[str, Any]) -> None:
        """eval.json of `mtdqn evaluate`: returns per task and seed of the latest checkpoint."""
        write_json(self.path / "eval.json", result)

    def write_test_eval(self, result: dict[str, Any]) -> None:
        """test_eval.json: the test evaluation at the end of a run (--test-episodes), on its own episode starts."""
        write_json(self.path / "test_eval.json", result)

    def write_start(self, record: dict[str, Any]) -> None:
        """start.json of a run that started from another's weights (fine-tuning): what it started with."""
        write_json(self.path / "start.json", record)

    def read_start(self) -> dict[str, Any] | None:
        """start.json's record, None where there is none; one line where it is no JSON object."""
        path = self.path / "start.json"
        record = read_json(path) if path.is_file() else None
        if record is not None and not isinstance(record, dict):
            raise ConfigError(f"{path} is not a record of a run's start (a JSON object)")
        return record

    def require_start(self) -> None:
        """A fine-tuned run about to resume has its start.json: its summary's transfer record (the source, the
        greedy returns at the start) is made from it and nothing else can make it again (the run resumes from its
        own checkpoint, not from the source); a deleted one resumed to a summary without it."""
        if self.read_start() is None:
            raise ConfigError(f"{self.path / 'start.json'} is missing: this fine-tuned run's record of its start "
                              "(its source and the greedy returns there) cannot be made again; put it back, or "
                              + AGAIN)

    def write_distill(self, result: dict[str, Any], report: pd.DataFrame, markdown: str) -> None:
        """A distilled student's comparison with its teachers (`mtdqn distill`): the action reports as CSV and,
        with the returns, as markdown, then distill.json last (the student is finished when it exists)."""
        atomic_write(self.path / "distill_report.csv", lambda path: report.to_csv(path, index=False))
        atomic_write(self.path / "distill_report.md", lambda path: path.write_text(markdown))
        write_json(self.path / DISTILL_RECORD, result)

    def write_final(self, metrics: pd.DataFrame, summary: dict[str, Any], cka: list[dict[str, Any]]) -> None:
        """metrics.csv, cka.parquet (when there are rows) and, last, summary.json: a run is finished exactly
        when its summary exists."""
        atomic_write(self.path / "metrics.csv", lambda path: metrics.to_csv(path, index=False))
        if cka:
            write_parquet(self.path / "cka.parquet", pd.DataFrame(cka))
        write_json(self.path / RUN_SUMMARY, summary)


def write_tensorboard(writer: Any, tables: Tables, step: int) -> None:
    """One chunk's scalars; NaN (no episode ended in the window) is left out, not written."""
    scalars = [(f"{kind}/{r['task']}/seed{r['seed']}", r[col]) for r in tables.metrics
               for kind, col in (("return", "episode_return"), ("loss", "loss"))]
    scalars += [(f"{kind}/{r['task']}/seed{r['seed']}", r[col]) for r in tables.grad_tasks
                for kind, col in (("grad_norm", "grad_norm"), ("strategy_weight", "weight"))]
    scalars += [(f"{kind}/{r['task_a']}|{r['task_b']}/seed{r['seed']}", r[col]) for r in tables.grad_pairs
                for kind, col in (("cosine", "cosine"), ("conflict_rate", "conflict_rate"))]
    scalars += [(f"greedy_return/{r['task']}/seed{r['seed']}", r["return_mean"]) for r in tables.evals]
    scalars += [(f"affinity/{r['task_i']}->{r['task_j']}/seed{r['seed']}", r["value"]) for r in tables.affinity]
    scalars += _expert_scalars(tables.experts)
    for tag, value in scalars:
        if np.isfinite(value):
            writer.add_scalar(tag, float(value), step)


def _expert_scalars(rows: list[dict[str, Any]]) -> list[tuple[str, Any]]:
    """TensorBoard scalars of one chunk's expert rows: each task's weight per expert, its weights' entropy and
    the mean pairwise cosine between the experts on its observations (the mean of its rows' cosines)."""
    out = [(f"mixing_weight/{r['task']}/expert{r['expert']}/seed{r['seed']}", r["weight"]) for r in rows]
    by_task: dict[tuple[Any, Any], list[dict[str, Any]]] = {}
    for r in rows:
        by_task.setdefault((r["task"], r["seed"]), []).append(r)
    for (task, seed), group in by_task.items():
        out.append((f"expert_entropy/{task}/seed{seed}", group[0]["entropy"]))
        out.append((f"expert_cosine/{task}/seed{seed}", float(np.mean([r["cosine"] for r in group]))))
    return out
