"""Stored results as Python objects: a :class:`Run` (one run directory) and a :class:`Study` (a study directory).

What :func:`mtdqn.train` and the other commands return, and what
:func:`mtdqn.open_run` / :func:`mtdqn.open_study` open from disk.  Both only
read their directory (pandas and JSON), so they are JAX-free until asked to
act or evaluate: the tables are the run directory's own (:mod:`mtdqn.rundir`
holds their schemas), the study's tables are the tidy tables its report is
built from (``STUDY/report/data/``).

    run = mtdqn.open_run("runs/my-run")
    run.evals.query("step == step.max()").groupby("task").return_mean.mean()  # the last evaluation, seeds' mean
    run.agent().act("CartPole-v1", obs)
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from mtdqn.config import TrainConfig
from mtdqn.errors import ConfigError, check_path, count
from mtdqn.io import read_json, read_parquet
from mtdqn.rundir import (CKA_SCHEMA, DISTILL_RECORD, EVAL_SCHEMA, GRAD_PAIR_SCHEMA, GRAD_TASK_SCHEMA, METRIC_SCHEMA,
                          RUN_SUMMARY, STUDY_CELLS, STUDY_RECORD, RunDir, table_frame)

if TYPE_CHECKING:  # annotations only: loading an agent imports JAX
    from mtdqn.deploy import LoadedAgent

__all__ = ["Run", "Study", "open_run", "open_study", "EVALUATION_COLUMNS"]

EVALUATION_COLUMNS = ["task", "seed", "return_mean", "return_std", "discounted_mean", "episodes"]
"""The columns of :meth:`Run.evaluate`'s table: one row per task and seed (as ``evals``, without the step)."""


class Run:
    """One run directory: its config, tables and summary, its agent, and more evaluations of it.

    The tables are read from disk each time they are asked for (a run still
    training grows them), as pandas DataFrames with the schemas of
    :mod:`mtdqn.rundir`; a table the run has not written is empty, with its
    columns.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.record: dict[str, Any] = RunDir(self.path).require_run()
        """config.json: the config, its hash, provenance, seeds and run options."""

    def __fspath__(self) -> str:
        """A Run goes wherever its folder's path does: ``load_agent(run)``, ``open_run(run)``, ``play(run, ...)``,
        ``finetune(run, ...)``."""
        return str(self.path)

    def __repr__(self) -> str:
        state = "finished" if self.finished else "not finished"
        return f"Run({str(self.path)!r}: {', '.join(self.tasks)}; {count(len(self.seeds), 'seed')}; {state})"

    @property
    def config(self) -> TrainConfig:
        """The config the run was made with."""
        return RunDir(self.path).config()

    @property
    def tasks(self) -> tuple[str, ...]:
        return tuple(self.record["config"]["tasks"])

    @property
    def seeds(self) -> list[int]:
        return list(self.record.get("seeds", []))

    @property
    def finished(self) -> bool:
        """Whether the run ended: its summary.json is written last (a distilled student's distill.json)."""
        return RunDir(self.path).finished_as() is not None

    @property
    def summary(self) -> dict[str, Any]:
        """summary.json: final evaluations and scores per task and seed, timings, and what the run did; a
        one-line error while the run has not finished, and for a distilled student (``json("distill")``)."""
        ended = RunDir(self.path).finished_as()
        if ended == DISTILL_RECORD:
            raise ConfigError(f"{self.path} is a distilled student: no training summary; its comparison with its "
                              f"teachers is {DISTILL_RECORD} (Run.json('distill'))")
        if ended is None:
            raise ConfigError(f"{self.path} has no {RUN_SUMMARY}: the run has not finished")
        return read_json(self.path / RUN_SUMMARY)

    @property
    def metrics(self) -> pd.DataFrame:
        """Training metrics: one row per logging window, seed and task (episode return, loss, Q, epsilon)."""
        return self._table("metrics", METRIC_SCHEMA)

    @property
    def evals(self) -> pd.DataFrame:
        """Greedy evaluations during and at the end of training: one row per evaluation step, task and seed."""
        return self._table("evals", EVAL_SCHEMA)

    @property
    def grad_tasks(self) -> pd.DataFrame:
        """Per-task gradient norms, strategy weights and losses on the shared parameters, per window and seed."""
        return self._table("grad_tasks", GRAD_TASK_SCHEMA)

    @property
    def grad_pairs(self) -> pd.DataFrame:
        """Gradient cosines and conflict rates of every task pair on the shared parameters (sharing runs only)."""
        return self._table("grad_pairs", GRAD_PAIR_SCHEMA)

    @property
    def cka(self) -> pd.DataFrame:
        """Representation similarity (linear CKA) between tasks at the end of the run (empty when not probed)."""
        return self._table("cka", CKA_SCHEMA)

    def json(self, name: str) -> dict[str, Any] | None:
        """Another record of the run by its file stem, or None when absent: ``start`` (fine-tuned runs),
        ``test_eval``, ``eval`` (the latest :meth:`evaluate`), ``distill`` (a distilled student)."""
        path = self.path / f"{name}.json"
        return read_json(path) if path.is_file() else None

    def agent(self) -> LoadedAgent:
        """The trained Q-network of every seed, ready to act (:func:`mtdqn.load_agent`)."""
        from mtdqn.deploy import load_agent  # JAX starts here, not when a run is opened

        return load_agent(self.path)

    def evaluate(self, episodes: int = 100, epsilon: float = 0.0) -> pd.DataFrame:
        """Greedy (or ``epsilon``-greedy) returns of the latest checkpoint, ``episodes`` per task and seed; also
        written to eval.json (`mtdqn evaluate`).  One row per task and seed (:data:`EVALUATION_COLUMNS`)."""
        from mtdqn.train.evaluate_command import evaluate_run  # JAX starts here

        return evaluation_frame(evaluate_run(self.path, episodes, epsilon))

    def _table(self, stem: str, schema: dict[str, str] | None) -> pd.DataFrame:
        path = self.path / f"{stem}.parquet"
        if path.is_file():
            return read_parquet(path)
        return table_frame([], schema) if schema is not None else pd.DataFrame()


def evaluation_frame(record: dict[str, Any]) -> pd.DataFrame:
    """An evaluation record (eval.json's layout) as one row per task and seed."""
    rows = [{"task": task, "seed": int(seed), "return_mean": r["mean"], "return_std": r["std"],
             "discounted_mean": r.get("discounted_mean", float("nan")), "episodes": len(r.get("returns", ()))}
            for task, per_task in record["tasks"].items() for seed, r in per_task["per_seed"].items()]
    return pd.DataFrame(rows, columns=EVALUATION_COLUMNS)


class Study:
    """One study directory: its cells as :class:`Run` objects, the tidy tables behind its report, and the report.

    ``tables`` are the report's data (``report/data/<name>.parquet``: per_seed,
    per_task, differences, curves, aggregates, conflict_summary, cka, ...);
    they are built with the report when the study has none yet.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not (self.path / STUDY_RECORD).is_file():
            raise ConfigError(f"{self.path} is not a study directory (no study.json)")
        self.record: dict[str, Any] = read_json(self.path / STUDY_RECORD)
        """study.json: name, tasks, variants, reference, seeds, steps and the full spec."""

    def __repr__(self) -> str:
        return f"Study({str(self.path)!r}: {self.name}; variants {', '.join(self.variants)})"

    @property
    def name(self) -> str:
        return str(self.record["name"])

    @property
    def tasks(self) -> tuple[str, ...]:
        return tuple(self.record["tasks"])

    @property
    def variants(self) -> tuple[str, ...]:
        return tuple(self.record["variants"])

    @property
    def reference(self) -> str:
        return str(self.record["reference"])

    @property
    def cells(self) -> dict[str, Run]:
        """Variant -> its cell's run (cells not started yet are left out)."""
        return {v: Run(self.path / STUDY_CELLS / v) for v in self.variants
                if RunDir(self.path / STUDY_CELLS / v).is_run()}

    @property
    def trained_cells(self) -> dict[str, Path]:
        """Every cell the study trains, by name: its variants, then a groups study's group cells (named by their
        folder, ``groups/<tasks>``) and a transfer study's pretraining (``pretrain``)."""
        cells = {v: self.path / STUDY_CELLS / v for v in self.variants}
        plan = self.record.get("groups") or {}
        for entry in (plan.get("partitions") or {}).values():
            cells.update({g["cell"]: self.path / g["cell"] for g in entry["groups"] if g["cell"] != plan.get("joint")})
        if self.record.get("transfer"):
            cells["pretrain"] = self.path / str(self.record["transfer"].get("pretrain", "pretrain"))
        return cells

    @property
    def failed(self) -> dict[str, str]:
        """Name -> error of each of :attr:`trained_cells` that ended failed (its summary.json says so): the report
        marks it FAILED, and a rerun of the study trains it again."""
        out = {}
        for name, folder in self.trained_cells.items():
            summary = read_json(folder / RUN_SUMMARY) if (folder / RUN_SUMMARY).is_file() else {}
            if summary.get("status") == "failed":
                out[name] = str(summary.get("error") or "no error recorded")
        return out

    @property
    def report_path(self) -> Path:
        return self.path / "report" / "report.html"

    @property
    def own_reports(self) -> dict[str, Path]:
        """The files a groups or transfer study writes beside its report, by what the command line calls them:
        a groups study's groups.md once its partitions are chosen, a transfer study's transfer.md."""
        own = {}
        if self.record.get("transfer"):
            own["transfer table"] = self.path / "transfer.md"
        if self.record.get("groups", {}).get("partitions"):
            own["groups report"] = self.path / "groups.md"
        return own

    def report(self) -> Path:
        """Rebuild the report from the stored cells (`mtdqn report`) and :attr:`own_reports`, as `mtdqn study`
        writes them; returns report.html's path."""
        from mtdqn.studies.runner import build, build_groups  # the analysis, imported when asked for

        if "groups report" in self.own_reports:
            build_groups(self.path)
        transfer = self.record.get("transfer")
        if transfer:
            from mtdqn.analysis.transfer import write_transfer_table

            write_transfer_table(self.path, list(transfer["variants"]), transfer["target"])
        return build(self.path)

    @property
    def tables(self) -> dict[str, pd.DataFrame]:
        """Every tidy table of the report by name (the report is built first when there is none)."""
        data = self.path / "report" / "data"
        if not data.is_dir():
            self.report()
        return {p.stem: read_parquet(p) for p in sorted(data.glob("*.parquet"))}

    def table(self, name: str) -> pd.DataFrame:
        """One tidy table of the report (see :attr:`tables`); a one-line error naming the others."""
        tables = self.tables
        if name not in tables:
            raise ConfigError(f"study {self.name} has no table {name!r}; tables: {', '.join(tables)}")
        return tables[name]


def open_run(path: str | Path) -> Run:
    """An existing run directory (one-line ConfigError if it holds no run)."""
    check_path("path", path)
    return Run(path)


def open_study(path: str | Path) -> Study:
    """An existing study directory (one-line ConfigError if it holds no study)."""
    check_path("path", path)
    return Study(path)
