"""Checkpoints with orbax: arrays only, never pickle, so loading runs no code.

Layout inside a run directory::

    checkpoints/iter_000002000/      orbax StandardCheckpointer tree (TrainState of all seeds)
    checkpoints/latest.json          {"format_version", "path", "iteration", "chunk", "config", "files", ...}

A new checkpoint is written completely (orbax writes to a temp dir and
renames), *then* ``latest.json`` is atomically switched to it, *then* older
ones are removed — a kill at any moment leaves a complete checkpoint.
``latest.json`` lists every file of the checkpoint with its size and SHA-256,
so a truncated or garbled file is caught before orbax reads it.  Restoring
checks the format version and the config it was made with, and says exactly
what differs.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import sys
from pathlib import Path
from typing import Any, Callable, Mapping, TypeVar

import jax
import orbax.checkpoint as ocp

from mtdqn.config import (TrainConfig, changed_training, config_diff, config_from_dict, config_hash, config_to_dict,
                          derive)
from mtdqn.taskfacts import changed_environments
from mtdqn.errors import ConfigError, CorruptCheckpoint
from mtdqn.interrupts import interrupts_deferred
from mtdqn.runoptions import RunOptions, resolve
from mtdqn.tasknames import is_own_task
from mtdqn.io import provenance, read_json, write_json

__all__ = [
    "FORMAT_VERSION", "save_checkpoint", "load_checkpoint", "verify_checkpoint", "read_latest", "checkpoint_meta",
    "describe_mismatch", "resumed_layout", "check_shapes", "quiet_abandoned_reads",
]

FORMAT_VERSION = 2  # 2: latest.json lists the checkpoint's files with sizes and SHA-256
_META_KEYS = ("path", "iteration", "chunk", "config", "files")
_ITER_DIR = re.compile(r"iter_\d{9}")
READ_TRIES = 5  # a reader of a run still training takes a newer checkpoint this often before it gives up
T = TypeVar("T")


def _digest(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _files(root: Path) -> dict[str, Path]:
    """Every file under ``root`` by its path relative to it, in order."""
    return {p.relative_to(root).as_posix(): p for p in sorted(root.rglob("*")) if p.is_file()}


def _file_table(root: Path) -> dict[str, list]:
    """{relative path: [size, sha256]} of every file under ``root``."""
    return {rel: [p.stat().st_size, _digest(p)] for rel, p in _files(root).items()}


def save_checkpoint(run_dir: Path, cfg: TrainConfig, state: Any, chunk: int, extra: dict | None = None,
                    and_then: Callable[[], None] | None = None) -> Path:
    """Write ``state`` (a pytree of arrays) of a run of ``cfg`` after ``chunk`` chunks; keep the previous
    checkpoint until this one is complete.  A Ctrl-C meanwhile stops the command once the save has finished
    (orbax writes on its own threads, which an interrupt would leave running into the interpreter's exit), and
    ``and_then`` has run: what the run's records say of the new checkpoint (config.json's options; a Ctrl-C
    during the save skipped a write after it)."""
    with interrupts_deferred():
        path = _save(run_dir, cfg, state, chunk, extra)
        if and_then is not None:
            and_then()
        return path


def _save(run_dir: Path, cfg: TrainConfig, state: Any, chunk: int, extra: dict | None) -> Path:
    ckpt_dir = (Path(run_dir) / "checkpoints").absolute()
    iteration = chunk * derive(cfg).iters_per_chunk
    path = ckpt_dir / f"iter_{iteration:09d}"
    latest = ckpt_dir / "latest.json"
    live = read_json(latest).get("path") if latest.exists() else None
    if live == path.name:
        raise ValueError(f"refusing to overwrite the live checkpoint {path}")
    for old in ckpt_dir.glob("iter_*"):  # leftovers of an interrupted run: its saves, orbax's temp dirs (whose
        if old.name != live:             # name is fixed: orbax warned that it removed one, on a resume's save)
            shutil.rmtree(old)
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(path, state)
    checkpointer.wait_until_finished()
    checkpointer.close()
    meta = {
        "format_version": FORMAT_VERSION,
        "path": path.name,
        "iteration": iteration,
        "chunk": chunk,
        "config": config_to_dict(cfg),
        "config_hash": config_hash(cfg),
        **provenance(),
        **({"own_tasks": own} if (own := own_task_facts(cfg)) else {}),
        **(extra or {}),
        "files": _file_table(path),
    }
    write_json(ckpt_dir / "latest.json", meta)
    for old in ckpt_dir.glob("iter_*"):  # older checkpoints and temp dirs of interrupted saves
        if old.name != path.name:
            shutil.rmtree(old, ignore_errors=True)
    return path


def own_task_facts(cfg: TrainConfig) -> dict[str, dict[str, Any]]:
    """The observation shape and action count of each of ``cfg``'s own tasks (registered or named by import path)
    as the name gives them now.  A checkpoint records them: nothing else says what such a name meant when the run
    trained, and padding hides a changed shape from the network's (a 3-state chain beside CartPole's 4 inputs)."""
    own = [t for t in cfg.tasks if is_own_task(t)]
    if not own:
        return {}
    from mtdqn.tasks.registry import parse_task  # only for own tasks: the registry's import starts JAX

    return {t: {"obs_shape": list(task.obs_shape), "num_actions": task.num_actions}
            for t, task in zip(own, map(parse_task, own))}


def _check_own_tasks(run_dir: Path, meta: dict, cfg: TrainConfig) -> None:
    """A one-line ConfigError where an own task of the run observes or acts otherwise than when its checkpoint
    was saved (another environment registered or importable under its name); the same shapes with other
    dynamics are taken, as evaluating a trained agent on a changed environment is.  Checkpoints saved before
    the record: not checked."""
    recorded = meta.get("own_tasks")
    if not isinstance(recorded, dict) or not recorded:
        return
    for task, now in own_task_facts(cfg).items():
        then = recorded.get(task)
        if isinstance(then, dict) and then != now:
            raise ConfigError(
                f"checkpoint in {run_dir} does not fit its task now: your own environment ({task}) observes or "
                f"acts otherwise than when the run was trained (observations {tuple(then.get('obs_shape', ()))} "
                f"and {then.get('num_actions')} actions then, {tuple(now['obs_shape'])} and {now['num_actions']} "
                "now): register or import the environment it trained on")


def checkpoint_meta(run_dir: Path) -> dict:
    """The metadata of a run's latest checkpoint; a clear error when there is none or it is damaged."""
    meta_path = Path(run_dir) / "checkpoints" / "latest.json"
    if not meta_path.exists():
        raise CorruptCheckpoint(f"no checkpoint in {run_dir} (missing checkpoints/latest.json)")
    try:
        meta = read_json(meta_path)
    except ConfigError:
        raise CorruptCheckpoint(f"checkpoint record {meta_path} is corrupt (not valid JSON)") from None
    if not isinstance(meta, dict) or "format_version" not in meta:
        raise CorruptCheckpoint(f"{meta_path} is not an mtdqn checkpoint record")
    if meta["format_version"] != FORMAT_VERSION:
        raise ConfigError(
            f"checkpoint format version {meta['format_version']!r} in {run_dir}; "
            f"this mtdqn reads version {FORMAT_VERSION}"
        )
    missing = [k for k in _META_KEYS if k not in meta]
    if missing:
        raise CorruptCheckpoint(f"checkpoint record {meta_path} is corrupt (missing {', '.join(missing)})")
    if not isinstance(meta["path"], str) or not _ITER_DIR.fullmatch(meta["path"]):
        raise CorruptCheckpoint(f"checkpoint record {meta_path} is corrupt (bad path {meta['path']!r})")
    types = ((meta["chunk"], int), (meta["iteration"], int), (meta["files"], dict), (meta["config"], dict))
    if not all(isinstance(value, kind) and not isinstance(value, bool) for value, kind in types):
        raise CorruptCheckpoint(f"checkpoint record {meta_path} is corrupt (bad chunk, iteration, files or config)")
    return meta


def describe_mismatch(saved: dict, current: dict) -> list[str]:
    """Differences ``key: checkpoint has X, config has Y`` between two config dicts, nested keys dotted."""
    return [f"{key}: checkpoint has {a!r}, config has {b!r}" for key, a, b in config_diff(saved, current)]


def _verify_files(path: Path, files: dict) -> None:
    if not path.is_dir():
        raise CorruptCheckpoint(f"checkpoint {path} is missing (latest.json points to it)")
    if not files:  # the record lists every file it saved: an emptied table would check nothing
        raise CorruptCheckpoint(f"checkpoint record for {path} is corrupt (its file table is empty)")
    unlisted = [rel for rel, p in _files(path).items() if rel not in files and not p.name.startswith(".")]
    if unlisted:  # orbax writes no dot-files; an OS's or a sync tool's (.DS_Store, ._x, .nfs...) are left alone
        raise CorruptCheckpoint(f"checkpoint {path} holds {unlisted[0]}, which is not in its file table (mtdqn did "
                                "not write it): remove it if you added it, else the checkpoint's record is damaged")
    for rel, entry in files.items():
        if ".." in Path(rel).parts or not (isinstance(entry, list) and len(entry) == 2):
            raise CorruptCheckpoint(f"checkpoint record for {path} is corrupt (bad file entry {rel!r})")
        size, digest = entry
        f = path / rel
        if not f.is_file():
            raise CorruptCheckpoint(f"checkpoint {path} is incomplete: {rel} is missing")
        actual = f.stat().st_size
        if actual != size:
            raise CorruptCheckpoint(f"checkpoint {path} is corrupt: {rel} has {actual} bytes, expected {size} "
                                    "(truncated?)")
        if _digest(f) != digest:
            raise CorruptCheckpoint(f"checkpoint {path} is corrupt: {rel} does not match its SHA-256")


def verify_checkpoint(run_dir: Path, cfg: TrainConfig) -> dict:
    """Check the latest checkpoint without loading it: record, config, file sizes and checksums.

    The whole config must match: nearly every option shapes the state (network,
    tasks, buffer, optimizer chain, strategy state), and resuming with any other
    would not continue the same run.  Cheap: call it before compiling anything.
    """
    meta = checkpoint_meta(run_dir)
    try:  # parsed, so options added since the checkpoint was made read as their defaults
        saved = config_to_dict(config_from_dict(meta["config"]))
    except (ConfigError, TypeError, AttributeError):
        raise CorruptCheckpoint(f"checkpoint record in {run_dir} holds an unreadable config") from None
    diffs = describe_mismatch(saved, config_to_dict(cfg))
    if diffs:
        raise ConfigError(f"checkpoint in {run_dir} was made with a different setup: {'; '.join(diffs)}")
    moved = meta.get("config_hash") != config_hash(cfg)  # the same config, hashed otherwise by this code
    changed = changed_environments(cfg.tasks) if moved else ""
    if changed:  # the same config, another game under a task's name
        raise ConfigError(f"checkpoint in {run_dir} was made with another environment of {changed}: resuming would "
                          "train one run on two games; start a new run (another --out)")
    rules = changed_training(cfg) if moved else ""
    if rules:  # the same config, trained by another rule
        raise ConfigError(f"checkpoint in {run_dir} was made before a change of how it trains ({rules}): resuming "
                          "would train one run under two rules; start a new run (another --out)")
    derived = derive(cfg)  # the record's own fields agree, as saving wrote them (a chunk edited by hand retrained
    iteration = meta["chunk"] * derived.iters_per_chunk  # a finished run's last chunks over its final weights)
    if meta["chunk"] < 0 or meta["iteration"] != iteration or meta["path"] != f"iter_{iteration:09d}":
        raise CorruptCheckpoint(f"checkpoint record {Path(run_dir) / 'checkpoints' / 'latest.json'} is corrupt "
                                f"(chunk {meta['chunk']}, iteration {meta['iteration']} and {meta['path']} do not "
                                "agree)")
    _check_own_tasks(run_dir, meta, cfg)
    _verify_files((Path(run_dir) / "checkpoints" / meta["path"]).absolute(), meta["files"])
    RunOptions.from_record(meta, str(Path(run_dir) / "checkpoints" / "latest.json"))  # its run options read back
    return meta


def load_checkpoint(run_dir: Path, cfg: TrainConfig, template: Any, verified: dict | None = None
                    ) -> tuple[Any, dict]:
    """Restore the latest checkpoint into the structure of ``template`` (a state of the same config).

    ``verified``: the record :func:`verify_checkpoint` returned for this run in
    this process, so the checksums over every file are not computed twice.
    """
    meta = verified if verified is not None else verify_checkpoint(run_dir, cfg)
    path = (Path(run_dir) / "checkpoints" / meta["path"]).absolute()
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
    checkpointer = ocp.StandardCheckpointer()
    try:
        check_shapes(path, abstract, cfg)
        state = checkpointer.restore(path, abstract)
    except ConfigError:
        raise
    except Exception as exc:  # orbax raises many types for a damaged tree
        quiet_abandoned_reads()  # the failed read's coroutines would each print a traceback as they end
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise CorruptCheckpoint(f"checkpoint {path} is unreadable or corrupt: {first}") from None
    finally:
        checkpointer.close()
    return state, meta


def _key_names(path: tuple) -> tuple[str, ...]:
    """A tree path as plain names, the same for a state's dataclass fields and the checkpoint's dict keys."""
    return tuple(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path)


def check_shapes(path: Path, abstract: Any, cfg: TrainConfig) -> None:
    """A one-line ConfigError where an array the checkpoint at ``path`` holds has another shape than in
    ``abstract`` (the state, or the part of it to restore, that ``cfg`` builds): with the config verified the
    same, one of the run's environments now observes or acts otherwise under the same name (your own, edited
    or another registered as it; a built-in one of another package version), which orbax reported as a
    corrupt checkpoint (the run is fine).  Metadata that cannot be read leaves the verdict to the restore."""
    try:
        with ocp.StandardCheckpointer() as checkpointer:
            stored = jax.tree_util.tree_leaves_with_path(checkpointer.metadata(path).item_metadata,
                                                         is_leaf=lambda x: hasattr(x, "shape"))
    except Exception:  # noqa: BLE001 (a damaged tree: the restore says so)
        return
    shapes = {_key_names(key): tuple(leaf.shape) for key, leaf in stored if hasattr(leaf, "shape")}
    for key, leaf in jax.tree_util.tree_leaves_with_path(abstract):
        saved = shapes.get(_key_names(key))
        if saved is not None and saved != tuple(leaf.shape):
            own = [t for t in cfg.tasks if is_own_task(t)]
            why = (f"your own environment ({', '.join(own)}) observes or acts otherwise than when the run was "
                   "trained (its observation shape or number of actions changed under the same name)" if own
                   else "a task's environment observes or acts otherwise than when the run was trained (another "
                        "version of its package: config.json's \"packages\" records the run's)")
            raise ConfigError(f"checkpoint {path} does not fit its run's network: {'/'.join(_key_names(key))} "
                              f"is {saved} there and {tuple(leaf.shape)} here; {why}")


def _live_name(run_dir: Path) -> str | None:
    """The checkpoint latest.json names now; None where there is no readable record."""
    try:
        return read_json(Path(run_dir) / "checkpoints" / "latest.json").get("path")
    except (ConfigError, OSError, AttributeError):
        return None


def _abandoned(unraisable: Any) -> bool:
    """Whether Python reports what an abandoned orbax read left behind: its coroutines, collected with their
    exceptions, and TensorStore reads that end after its event loop closed."""
    code = getattr(unraisable.object, "cr_code", None)
    exc = unraisable.exc_value
    return (code is not None and "orbax" in Path(code.co_filename).parts) or (
        unraisable.object is None and isinstance(exc, RuntimeError) and str(exc) == "Event loop is closed")


def quiet_abandoned_reads() -> None:
    """From now on in this process (a process-wide hook, installed only once a read was abandoned or failed),
    what an abandoned read leaves behind reports nothing: Python would print a traceback of each (~100 lines of
    TensorStore text) beside the right answer, whenever they end or are collected, which may be after the new
    checkpoint was read.  Everything else is reported as before."""
    if getattr(sys.unraisablehook, "quiets_abandoned_reads", False):
        return
    before = sys.unraisablehook

    def hook(unraisable: Any) -> None:
        if not _abandoned(unraisable):
            before(unraisable)

    hook.quiets_abandoned_reads = True  # type: ignore[attr-defined]
    sys.unraisablehook = hook


def read_latest(run_dir: Path, cfg: TrainConfig, restore: Callable[[dict], T], tries: int = READ_TRIES) -> T:
    """``restore(meta)`` of a run's latest checkpoint, verified first (:func:`verify_checkpoint`).

    A run still training switches latest.json to each new checkpoint and then
    removes the old one, which a reader may be verifying or restoring at that
    moment: where latest.json has moved on since, the failure says nothing about
    the run, and the new checkpoint is read instead (``tries`` times in all).
    A failure while latest.json stays put is the checkpoint's own, raised as is.
    """
    for _ in range(tries):
        seen = _live_name(run_dir)
        try:
            return restore(verify_checkpoint(run_dir, cfg))
        except Exception:  # a file or the whole checkpoint gone under the reader: any type, from orbax or the OS
            if _live_name(run_dir) == seen:  # the checkpoint's own failure: reported, and nothing silenced
                raise
            quiet_abandoned_reads()  # at once: the abandoned read's leftovers report as they end
    raise ConfigError(f"the run in {run_dir} is writing checkpoints faster than they can be read; retry")


def resumed_layout(run_dir: Path | str, given: Mapping[str, Any]) -> tuple[int, list[str], int]:
    """(seeds, tasks, devices) of a run about to resume: its latest checkpoint's config, and its own device count
    under the ``given`` options (``--devices`` may change it), read before JAX starts (the checkpoint's record is
    plain JSON), so the CLI and the API plan the same devices.  ConfigError, KeyError, TypeError or ValueError
    for a record that is missing or damaged (train says so in one line)."""
    meta = checkpoint_meta(Path(run_dir))
    seeds, tasks = int(meta["config"]["seeds"]), list(meta["config"]["tasks"])
    return seeds, tasks, resolve(given, RunOptions.from_record(meta)).devices
