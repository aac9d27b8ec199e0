"""Checkpoints with orbax: arrays only, never pickle, so loading runs no code.

Layout inside a run directory::

    checkpoints/iter_000002000/      orbax StandardCheckpointer tree (TrainState of all seeds)
    checkpoints/latest.json          {"format_version", "path", "iteration", "chunk", "config", ...}

A new checkpoint is written completely (orbax writes to a temp dir and
renames), *then* ``latest.json`` is atomically switched to it, *then* older
ones are removed — a kill at any moment leaves a complete checkpoint.
Restoring checks the format version and the config it was made with, and says
exactly what differs.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp

from mtdqn.config import config_from_dict, config_hash, config_to_dict
from mtdqn.errors import ConfigError
from mtdqn.io import provenance, read_json, write_json
from mtdqn.train.loop import Trainer

__all__ = ["FORMAT_VERSION", "save_checkpoint", "load_checkpoint", "checkpoint_meta", "describe_mismatch"]

FORMAT_VERSION = 1
_SHAPE_KEYS = ("tasks", "seeds", "num_envs", "network")
_SHAPE_DQN_KEYS = ("buffer_size", "optimizer")


def save_checkpoint(run_dir: Path, trainer: Trainer, state: Any, chunk: int, extra: dict | None = None) -> Path:
    """Write ``state`` after ``chunk`` chunks; keep the previous one until this one is complete."""
    ckpt_dir = (Path(run_dir) / "checkpoints").absolute()
    iteration = chunk * trainer.agent.derived.iters_per_chunk
    path = ckpt_dir / f"iter_{iteration:09d}"
    if path.exists():
        shutil.rmtree(path)
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(path, state)
    checkpointer.wait_until_finished()
    checkpointer.close()
    cfg = trainer.agent.cfg
    meta = {
        "format_version": FORMAT_VERSION,
        "path": path.name,
        "iteration": iteration,
        "chunk": chunk,
        "config": config_to_dict(cfg),
        "config_hash": config_hash(cfg),
        **provenance(),
        **(extra or {}),
    }
    write_json(ckpt_dir / "latest.json", meta)
    for old in ckpt_dir.glob("iter_*"):
        if old.name != path.name:
            shutil.rmtree(old, ignore_errors=True)
    return path


def checkpoint_meta(run_dir: Path) -> dict:
    """The metadata of a run's latest checkpoint; a clear error when there is none."""
    meta_path = Path(run_dir) / "checkpoints" / "latest.json"
    if not meta_path.exists():
        raise ConfigError(f"no checkpoint in {run_dir} (missing checkpoints/latest.json)")
    meta = read_json(meta_path)
    if not isinstance(meta, dict) or "format_version" not in meta:
        raise ConfigError(f"{meta_path} is not an mtdqn checkpoint record")
    if meta["format_version"] != FORMAT_VERSION:
        raise ConfigError(
            f"checkpoint format version {meta['format_version']} in {run_dir}; this mtdqn reads version {FORMAT_VERSION}"
        )
    return meta


def describe_mismatch(saved: dict, current: dict) -> list[str]:
    """Human-readable differences between two config dicts in what shapes the state."""
    diffs = []
    for key in _SHAPE_KEYS:
        if saved.get(key) != current.get(key):
            diffs.append(f"{key}: checkpoint has {saved.get(key)!r}, config has {current.get(key)!r}")
    for key in _SHAPE_DQN_KEYS:
        a, b = saved.get("dqn", {}).get(key), current.get("dqn", {}).get(key)
        if a != b:
            diffs.append(f"dqn.{key}: checkpoint has {a!r}, config has {b!r}")
    return diffs


def load_checkpoint(run_dir: Path, trainer: Trainer, template: Any) -> tuple[Any, dict]:
    """Restore the latest checkpoint into the structure of ``template`` (a state of the same config)."""
    meta = checkpoint_meta(run_dir)
    current = config_to_dict(trainer.agent.cfg)
    diffs = describe_mismatch(meta.get("config", {}), current)
    if diffs:
        raise ConfigError(f"checkpoint in {run_dir} was made with a different setup: {'; '.join(diffs)}")
    config_from_dict(meta["config"])  # validates the stored config's keys
    path = (Path(run_dir) / "checkpoints" / meta["path"]).absolute()
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
    checkpointer = ocp.StandardCheckpointer()
    try:
        state = checkpointer.restore(path, abstract)
    except Exception as exc:  # orbax raises many types for a damaged tree
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"checkpoint {path} is unreadable or corrupt: {first}") from None
    finally:
        checkpointer.close()
    return state, meta
