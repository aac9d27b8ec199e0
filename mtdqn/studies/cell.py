"""A study cell: everything its results depend on, how a stored cell is judged, and how one is run.

A cell is the pure function :func:`run_cell` of its :class:`CellConfig` (all
seeds of one variant in one compiled program); the local backend
(:mod:`mtdqn.studies.runner`) and the Ray backend (:mod:`mtdqn.studies.ray_backend`)
only map it over the cells still to do, and the transfer study
(:mod:`mtdqn.studies.transfer`) runs its cells through it too.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal

from mtdqn.config import TrainConfig, changed_training, config_diff, config_hash, config_to_dict, derive
from mtdqn.errors import ConfigError, CorruptCheckpoint, FolderBusy, check_devices_asked
from mtdqn.io import check_not_other_kind, clear_folder, held, read_json, write_json
from mtdqn.rundir import STUDY_RECORD, RunDir
from mtdqn.runoptions import RunOptions
from mtdqn.taskfacts import changed_environments

__all__ = ["CellConfig", "CellStatus", "OnEvent", "adopt_thresholds", "cell_status", "check_devices", "check_out_dir",
           "read_summary", "resumable_from", "run_cell", "skip_finished", "write_failed"]

CellStatus = Literal["done", "resume", "fresh"]
OnEvent = Callable[[str, "CellConfig", dict[str, Any] | None], None]
"""(event, cell, what goes with it): "start" and "skip" (None), "resume" (``{"step", "of"}``: where its checkpoint
is, :func:`resumable_from`), "submit" (to Ray: the same, or None for a cell that starts), "done" (the cell's
summary)."""


@dataclass(frozen=True)
class CellConfig:
    """Everything a cell's results depend on (and nothing about where or how it runs)."""

    variant: str
    config: TrainConfig
    thresholds: dict[str, float]
    run_options: RunOptions = RunOptions()
    """How the cell's run is driven; ``devices`` 0: as many local devices as the seeds can use (a resumed cell
    keeps its own layout)."""

    @property
    def config_hash(self) -> str:
        return config_hash(self.config)


def read_summary(path: Path) -> dict[str, Any] | None:
    """A JSON object (a cell's summary.json or config.json), or None when missing or half-written (a killed cell)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def resumable_from(cell: CellConfig, cell_dir: Path) -> dict[str, int] | None:
    """``{"step": ..., "of": ...}`` (env steps per task) where the cell resumes from its checkpoint; None where it
    starts (or what it finds is left to :func:`~mtdqn.studies.cell.run_cell`, which starts it over or fails it)."""
    try:
        if cell_status(cell, cell_dir) != "resume":
            return None
        meta = read_json(Path(cell_dir) / "checkpoints" / "latest.json")
        return {"step": int(meta["iteration"]) * cell.config.num_envs, "of": derive(cell.config).env_steps}
    except (ConfigError, OSError, KeyError, TypeError, ValueError):
        return None


def cell_status(cell: CellConfig, cell_dir: Path) -> CellStatus:
    """done (finished ok with this config), resume (killed after a checkpoint, with this config and these run
    options) or fresh.

    A finished cell made with a *different* config or run options is a
    ConfigError: mixing the two in one report would compare runs that are not
    comparable.
    """
    cell_dir = Path(cell_dir)
    summary = read_summary(cell_dir / "summary.json")
    record_path = RunDir(cell_dir).record_path
    run_cfg = read_summary(record_path) or {}
    if summary is not None and summary.get("status") == "ok":
        stored, now = _stored_outcome(run_cfg, cell.run_options, str(record_path)), cell.run_options.outcome()
        # thresholds are the analysis's alone: a cell finished under others is done (adopt_thresholds)
        same = (summary.get("config_hash") == cell.config_hash and summary.get("variant") == cell.variant
                and stored == now)
        if not _same_source(cell, cell_dir):
            source = cell.config.finetune.source
            raise ConfigError(f"{cell_dir}: holds a finished cell grafted from other weights of {source} than it "
                              "holds now (its source was trained again); delete that cell folder to redo it")
        if same:
            return "done"
        if not run_cfg:  # a record deleted, made by hand or cut short: its Nones read as another setup
            raise ConfigError(f"{cell_dir}: holds a finished cell whose {record_path.name} is missing or unreadable "
                              "(not a JSON object); delete that cell folder to redo it")
        diffs = [f"{key}: stored {a!r}, now {b!r}"
                 for key, a, b in config_diff(run_cfg.get("config", {}), config_to_dict(cell.config))]
        diffs += [f"variant: stored {summary.get('variant')!r}, now {cell.variant!r}"] * (
            summary.get("variant") != cell.variant)
        assumed = "" if "options" in run_cfg else f" (its {record_path.name} records no run options: the defaults)"
        diffs += [f"{key}: stored {stored[key]!r}{assumed}, now {now[key]!r}" for key in now if stored[key] != now[key]]
        changed, rules = changed_environments(cell.config.tasks), changed_training(cell.config)
        hashes = f"config hash in summary.json: {summary.get('config_hash')!r}, now {cell.config_hash!r}"
        diffs = diffs or ([f"another environment of {changed}"] if changed else [f"trained before: {rules}"] if rules
                          else [hashes])
        raise ConfigError(f"{cell_dir}: holds a finished cell made with a different setup ({'; '.join(diffs[:3])}); "
                          "choose another --out, or delete that cell folder to redo it")
    if run_cfg.get("config_hash") == cell.config_hash and (cell_dir / "checkpoints" / "latest.json").exists() \
            and _so_far(_stored_outcome(run_cfg, cell.run_options, str(record_path))) \
            == _so_far(cell.run_options.outcome()) and _same_source(cell, cell_dir):
        return "resume"
    # a killed cell of another config, of other run options (its evaluations so far at another cadence or
    # episode count: a resume mixed the two, unsaid) or grafted from other weights of its source (trained again:
    # it resumed on the old trunk beside cells grafted from the new): no result yet, started over
    return "fresh"


def _so_far(outcome: dict[str, Any]) -> dict[str, Any]:
    """The run options that shaped a killed run's history so far: all of its outcome but the test evaluation,
    which runs at the end (a resume takes the new count)."""
    return {k: v for k, v in outcome.items() if k != "test_episodes"}


def _same_source(cell: CellConfig, cell_dir: Path) -> bool:
    """Whether a fine-tuned cell started from the weights its source holds now (start.json's record); True for
    a cell that is no fine-tuning."""
    source = cell.config.finetune.source
    start = read_summary(Path(cell_dir) / "start.json") or {}
    return not source or start.get("source_checkpoint") == RunDir(source).checkpoint_id()


def adopt_thresholds(cell: CellConfig, cell_dir: Path) -> None:
    """A finished cell's summary.json takes the study's thresholds where they changed: they decide only the
    report's steps to threshold, and a study whose thresholds were edited refused its finished cells (each to be
    trained again, hours of a real study, to change one number of the analysis)."""
    path = Path(cell_dir) / "summary.json"
    summary = read_summary(path)
    if summary is not None and summary.get("thresholds") != cell.thresholds:
        write_json(path, {**summary, "thresholds": cell.thresholds})


def skip_finished(cell: CellConfig, cell_dir: Path, on_event: OnEvent) -> None:
    """A finished cell on a study's rerun: it takes the study's thresholds (:func:`adopt_thresholds`), and the
    progress says it is skipped (one place, for each kind of study's loop over its finished cells)."""
    adopt_thresholds(cell, cell_dir)
    on_event("skip", cell, None)


def _stored_outcome(run_record: dict[str, Any], now: RunOptions, source: str) -> dict[str, Any]:
    """The stored run's :meth:`RunOptions.outcome`.  A cell made before evaluations during training existed (no
    ``eval_every`` in its record) evaluated only at the end; evaluations never touch training, so it stays
    finished under any schedule (the report then scores it by its final evaluation)."""
    stored = RunOptions.from_record(run_record, source)
    if "eval_every" not in run_record.get("options", {}):
        stored = dataclasses.replace(stored, eval_every=now.eval_every)
    return stored.outcome()


def _failed(cell: CellConfig, exc: BaseException) -> dict[str, Any]:
    text = str(exc).strip().splitlines()
    return {
        "variant": cell.variant, "status": "failed", "error": f"{type(exc).__name__}: {text[0] if text else ''}",
        "tasks": list(cell.config.tasks), "seeds": [cell.config.seed + i for i in range(cell.config.seeds)],
        "thresholds": cell.thresholds, "eval_episodes": cell.run_options.eval_episodes,
        "eval_every": cell.run_options.eval_every,
        "config_hash": cell.config_hash,
    }


def write_failed(cell: CellConfig, cell_dir: Path, exc: BaseException) -> dict[str, Any]:
    """Record a failed cell so the study (and its report) can go on without it."""
    summary = _failed(cell, exc)
    write_json(Path(cell_dir) / "summary.json", summary)
    return summary


def run_cell(cell: CellConfig, cell_dir: Path, progress: bool = False) -> dict[str, Any]:
    """Train one cell into ``cell_dir`` and return its summary; never raises for a failed run.

    The numbers depend only on ``cell`` (seeds are part of its config), so any
    backend that calls this gets identical results.  A divergence or any other
    error becomes a ``status: failed`` summary, so one bad variant does not
    cost the rest of the study.
    """
    from mtdqn.train.run import train  # JAX: imported where the work happens (e.g. a Ray worker)

    cell_dir = Path(cell_dir)
    status = cell_status(cell, cell_dir)
    if status == "done":
        adopt_thresholds(cell, cell_dir)
        return read_summary(cell_dir / "summary.json") or {}
    kwargs = dict(progress=progress, extra_summary={"variant": cell.variant, "thresholds": cell.thresholds})
    try:
        with held(cell_dir):  # from before it is cleared: another process training the cell keeps it
            if status == "resume":  # the cell's options over the stored ones; devices 0 not given: its own layout
                given = {k: v for k, v in dataclasses.asdict(cell.run_options).items() if k != "devices" or v}
                try:
                    return train(cell.config, cell_dir, resume=True, **kwargs, **given).summary
                except CorruptCheckpoint:  # an unreadable checkpoint (read before any work): start over below.
                    pass  # Only that: any other refusal (a damaged table, your own environment changed) is the
                    # cell's failure, said in the report, its checkpoint kept; not a silent retraining under
                    # "evaluating it" (a damaged summary.json cleared a finished cell)
            clear_folder(cell_dir)  # not a finished result: a failed or half-written attempt (the hold stays)
            return train(cell.config, cell_dir, cell.run_options, force=True, **kwargs).summary
    except FolderBusy:
        raise  # another process trains the cell: neither its failure nor ours to record
    except Exception as exc:  # the study goes on; the report lists the failure
        return write_failed(cell, cell_dir, exc)


StudyKind = Literal["study", "groups", "transfer"]
"""What a study.json records: an ordinary study, or a groups or transfer study (its record's own key)."""


def _kind_of(record: dict[str, Any]) -> StudyKind:
    return "groups" if "groups" in record else "transfer" if "transfer" in record else "study"


def _described(name: object, kind: StudyKind) -> str:
    return f"{'' if kind == 'study' else kind + ' '}study {name!r}"


def check_devices(seeds: int, devices: int, *, local: bool = True) -> None:
    """A study's ``--devices`` checked before anything is written, as `train` checks its own (each cell failed
    with it, and the study exited 3 with a report of FAILED cells): >= 0, and where the cells train in this
    process (``local``) no more than its devices or the seeds (:func:`mtdqn.devices.seed_devices`)."""
    check_devices_asked(devices, seeds)  # on Ray too, where this process's devices are not the workers'
    if local:
        from mtdqn.devices import seed_devices  # JAX is planned by now: the study's caller started it

        seed_devices(seeds, devices)


def check_out_dir(out_dir: Path, name: str, kind: StudyKind = "study") -> None:
    """A study's --out: a new or empty folder, or one holding this same study (name and kind: its finished cells
    are reused).  Another study's folder is refused: its study.json, which its report and reruns read, would be
    written over (a `quick` study run into a groups study's folder lost the groups' plan)."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"{out_dir}: exists and is not a directory")
    check_not_other_kind(out_dir, STUDY_RECORD)  # a run's, a sweep's or a search's: said as train and tune say it
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / STUDY_RECORD).exists():
        raise ConfigError(f"{out_dir}: exists, is not empty and holds no study.json; choose another --out")
    record = read_summary(out_dir / STUDY_RECORD)  # None: none yet, or unreadable: the study writes it anew
    if record is not None and (record.get("name"), _kind_of(record)) != (name, kind):
        raise ConfigError(f"{out_dir}: holds {_described(record.get('name'), _kind_of(record))}, not "
                          f"{_described(name, kind)}; choose another --out (a study's folder holds that study alone)")
