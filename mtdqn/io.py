"""Small, safe file helpers: atomic writes, run provenance, output-dir checks.

Everything a run writes goes through :func:`atomic_write` (temp file in the
same folder, then ``os.replace``), so a crash never leaves a half-written file.
"""

from __future__ import annotations

import errno
import functools
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Mapping

import pandas as pd

from mtdqn.version import __version__
from mtdqn.errors import ConfigError, FolderBusy, InsufficientDisk, Unwritable

__all__ = [
    "atomic_write", "write_json", "read_json", "write_parquet", "git_revision", "provenance", "prepare_out_dir",
    "check_new_out_dir", "check_free_space", "free_bytes", "read_parquet", "held", "clear_folder", "OUTPUT_KINDS",
    "check_not_other_kind",
]



_UMASK = os.umask(0o022)
os.umask(_UMASK)  # read the process umask once: temp files are created 0600, renamed files should not be


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` on a temp path beside ``path``, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except OSError as exc:  # named by the file meant, not its temp name (a folder in eval.json's place)
        if exc.filename == tmp:
            raise OSError(exc.errno, exc.strerror, str(path)) from None
        raise
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_json(path: Path, data: Any) -> None:
    atomic_write(path, lambda p: p.write_text(json.dumps(data, indent=2, sort_keys=True, default=float) + "\n"))


def read_parquet(path: Path) -> pd.DataFrame:
    """A Parquet table; a one-line ConfigError naming the file when it is missing or damaged (pyarrow raises
    several types, and its messages name a buffer, not the file)."""
    try:
        return pd.read_parquet(path)
    except FileNotFoundError:
        raise ConfigError(f"{path} not found") from None
    except (OSError, MemoryError):  # the machine's (a permission, a full memory): the CLI's exit 1, not bad input
        raise
    except Exception as exc:
        raise ConfigError(f"{path} is unreadable or corrupt ({type(exc).__name__})") from None


def read_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path} not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not valid JSON ({exc.__class__.__name__})") from None


def write_parquet(path: Path, frame: pd.DataFrame) -> None:
    atomic_write(path, lambda p: frame.to_parquet(p, index=False))


@functools.cache
def git_revision() -> str:
    """The source tree's git revision when this process first asked, or 'unknown' outside a checkout.

    Once per process: a long study records it in every cell, and a commit made while it runs does not change
    the code the process has loaded (read anew each time, it named the new commit for cells trained by the
    old code)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def changed_package_files(first: str, second: str) -> list[str] | None:
    """Paths under ``mtdqn/`` that differ between two git revisions of this source tree (relative to it), or
    None when they cannot be compared (no checkout, an unknown revision): what a study whose cells trained at
    two revisions must tell its reader."""
    if not all(re.fullmatch(r"[0-9a-f]{7,40}", rev) for rev in (first, second)):  # a record's text, not options
        return None
    root = Path(__file__).parent.parent
    try:
        top = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=root, capture_output=True, text=True,
                             timeout=10)
        if top.returncode != 0 or Path(top.stdout.strip()).resolve() != root.resolve():
            return None  # an installed copy inside some other repository: its history is not ours
        out = subprocess.run(["git", "diff", "--name-only", first, second, "--", "mtdqn/"],
                             cwd=root, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return [line.removeprefix("mtdqn/") for line in out.stdout.splitlines() if line.strip()]


_PACKAGES = ("jax", "jaxlib", "flax", "optax", "gymnax", "gymnasium", "minigrid", "numpy", "orbax-checkpoint",
             "rliable")  # the environment packages too: a task's dynamics are theirs


def package_versions() -> dict[str, str]:
    """Installed versions of the packages a result depends on ('absent' for one not installed)."""
    from importlib import metadata

    out = {}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


def host_info() -> dict[str, Any]:
    """The machine a result came from: platform, CPU model, the cores this process may use, Python."""
    import platform

    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"platform": platform.platform(), "cpu": cpu or "unknown", "cpu_cores": cores,
            "python": platform.python_version()}


def provenance() -> dict[str, Any]:
    """What every result records about where it came from: version, git revision, packages, host."""
    return {"mtdqn_version": __version__, "git_revision": git_revision(), "packages": package_versions(),
            "host": host_info()}


def check_new_out_dir(out: Path, marker: str, force: bool, owned: tuple[str, ...] = (), hint: str = "",
                      inside: Mapping[str, str] | None = None) -> list[str]:
    """Refuse ``out`` for a new run (one line) where it is a file, or holds ``marker`` (or an ``owned`` entry)
    and not ``force``; returns the entries present.  Reads only: the CLI asks it before JAX starts, so a
    folder that already holds a run is answered in a second, and :func:`prepare_out_dir` asks it again.
    ``hint``: what the refusal adds about the run there (:meth:`mtdqn.rundir.RunDir.check_new`); ``inside``: as
    for :func:`prepare_out_dir` (a folder holding nothing of ours, a user's file kept there, is not present)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"output path {out} exists and is not a directory")
    check_not_other_kind(out, marker)
    present = [name for name in dict.fromkeys((marker, *owned)) if (out / name).exists()
               and not _holds_none_of_ours(out / name, (inside or {}).get(name))]
    records = _TRAINED if marker in _TRAINED else {marker}
    if present and not any((out / record).is_file() for record in records):  # names like ours, no output of ours
        raise ConfigError(f"{out} holds {', '.join(present[:3])} but no {marker}: not mtdqn's output, and --force "
                          "would remove them; choose another --out (nothing is removed)")
    if present and not force:
        raise ConfigError(
            f"{out} already holds a run ({', '.join(present[:3])}){hint}; pass --force True to overwrite or "
            "choose another --out"
        )
    return present


OUTPUT_KINDS = {"config.json": "a run", "sweep.json": "a sweep", "study.json": "a study", "tune.json": "a search"}
"""Each kind of output folder by its record (mtdqn.rundir's RUN_RECORD and STUDY_RECORD, mtdqn.sweepspec's
SWEEP_FILE, mtdqn.tune.search's TUNE_RECORD): a folder holds one kind."""
_TRAINED = {"config.json", "sweep.json"}


def check_not_other_kind(out: Path, marker: str) -> None:
    """Refuse ``out`` (one line, whatever --force says) where it holds another kind of output than the one whose
    record is ``marker``: a run trained into a study's folder wrote its files beside study.json and cells/, and
    the folder then read as a finished run; a tune wrote its trials into a run's folder."""
    for record, kind in OUTPUT_KINDS.items():
        if {record, marker} <= _TRAINED or record == marker:  # a run and a sweep replace each other with --force
            continue
        if (out / record).is_file():
            raise ConfigError(f"{out} holds {kind} ({record}); {OUTPUT_KINDS.get(marker, 'this output')} needs a "
                              "folder of its own: choose another --out")


def prepare_out_dir(out: Path, marker: str, force: bool, owned: tuple[str, ...] = (), hint: str = "",
                    inside: Mapping[str, str] | None = None) -> Path:
    """Create ``out`` if needed; refuse one that already holds ``marker`` (or any ``owned`` entry) unless ``force``.

    With ``force`` the ``owned`` entries (files or folders a previous run left)
    are removed, so no stale checkpoint, metrics or TensorBoard events mix with
    the new run; of a folder named in ``inside`` only the entries its pattern matches (and the folder, once
    empty): files of the user's in a run's checkpoints/ or tb/ were removed with it.  Nothing else in ``out``
    is touched.  Fails early (before any training) on an unwritable location.
    """
    out = Path(out)
    present = check_new_out_dir(out, marker, force, owned, hint, inside)
    present.sort(key=lambda name: name in _TRAINED or name == marker)  # the record last: one stopped partway
    # through keeps its record, and --force again finishes it (it was "no config.json", refused for good)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-probe"
        probe.write_bytes(b"0" * 4096)
        probe.unlink()
        for name in present:
            pattern = (inside or {}).get(name)
            if pattern is not None and (out / name).is_dir() and not (out / name).is_symlink():
                _remove_matching(out / name, re.compile(pattern))
            else:
                _remove(out / name)
    except OSError as exc:  # the machine's (exit 1: permissions, a read-only or full disk), else the path's
        error = _MACHINE_ERRORS.get(exc.errno, ConfigError)
        raise error(f"cannot write to output directory {out}: {exc.strerror or exc}") from None
    return out


# What makes a writable-looking path unwritable on this machine rather than a wrong path: the environment's
# problem (the CLI's exit 1), not the input's (2).
_MACHINE_ERRORS = {errno.EACCES: Unwritable, errno.EPERM: Unwritable, errno.EROFS: Unwritable,
                   errno.ENOSPC: InsufficientDisk, errno.EDQUOT: InsufficientDisk}


def machine_write_error(exc: BaseException) -> bool:
    """Whether ``exc`` is the machine refusing a write (a full disk or quota, a read-only filesystem, a folder
    found unwritable before training: the CLI's exit 1), found before training (InsufficientDisk, Unwritable)
    or as the OSError itself (a write that failed mid-run; :meth:`mtdqn.rundir.RunDir.ensure_space` raises
    ENOSPC): no trial's doing, and every later one would meet it too.  A permission error mid-run is not
    among them: it may be a read of the trial's own (a user's environment's file)."""
    return isinstance(exc, (InsufficientDisk, Unwritable)) or \
        isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS)


def _holds_none_of_ours(path: Path, pattern: str | None) -> bool:
    """Whether ``path`` is a folder named in ``inside`` whose entries are all a user's (none its pattern
    matches; an empty one is a run's leftover)."""
    if pattern is None or not path.is_dir() or path.is_symlink():
        return False
    names = [entry.name for entry in path.iterdir()]
    return bool(names) and not any(re.fullmatch(pattern, name) for name in names)


def _remove_matching(folder: Path, pattern: re.Pattern[str]) -> None:
    """The entries of ``folder`` whose names match ``pattern`` (whole), then the folder if nothing is left."""
    for entry in folder.iterdir():
        if pattern.fullmatch(entry.name):
            _remove(entry)
    if not any(folder.iterdir()):
        folder.rmdir()


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def free_bytes(path: Path) -> int | None:
    """Free bytes on the filesystem ``path`` is (or will be) on; None where that cannot be asked."""
    existing = Path(path).absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return None  # under a file: prepare_out_dir reports that
    try:
        usage = shutil.disk_usage(existing)
    except OSError:
        return None
    return usage.free if usage.total else None  # /proc, /sys: no disk (it read "0 MiB free"); the write says why


def check_free_space(path: Path, need_bytes: int, what: str) -> None:
    """Fail early (InsufficientDisk: the CLI's exit 1) when the filesystem of ``path`` has less than
    ``need_bytes`` free."""
    free = free_bytes(path)
    if free is not None and free < need_bytes:
        raise InsufficientDisk(
            f"not enough free disk space in {path} for {what}: need about {need_bytes / 2**20:,.0f} MiB, "
            f"{free / 2**20:,.0f} MiB free"
        )


_HELD: set[str] = set()  # the folders this process holds (held): taking one again inside is free


@contextmanager
def held(folder: Path) -> Iterator[None]:
    """Hold ``folder`` for this process while it writes there: another process holding it (a second trainer
    of one run, a second study in one folder) is a one-line :class:`~mtdqn.errors.FolderBusy` before it writes,
    where both wrote checkpoints and tables over each other.  Re-entrant within a process (a study's cell held
    around its clearing and again by its training).  An OS lock (``flock`` on the folder itself, so clearing
    it must keep the folder: :func:`clear_folder`) ends with its process, however it ends, so a killed run
    leaves nothing stale; without ``fcntl`` (not POSIX), or on a file system without locks, nothing is held.
    Where the folder cannot be made, the write that follows says why."""
    key = os.path.realpath(folder)
    fd = None if key in _HELD else _lock(Path(folder))
    if fd is None:
        yield
        return
    _HELD.add(key)
    try:
        yield
    finally:
        _HELD.discard(key)
        os.close(fd)


def _lock(folder: Path) -> int | None:
    """The open, locked descriptor of ``folder`` itself (no file is made: a refused call writes nothing); None
    where nothing can be held; FolderBusy where another process holds it."""
    try:
        import fcntl
    except ImportError:
        return None
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise FolderBusy(f"{folder} is being written by another process (a run, a sweep, a study or a search); "
                         "wait for it to end, or stop it (a killed run resumes from its checkpoint)") from None
    except OSError:  # a file system without locks (some network mounts): write unguarded, as before
        os.close(fd)
        return None
    return fd


def clear_folder(folder: Path) -> None:
    """Remove everything in ``folder``, not the folder: a hold lives on it (:func:`held`)."""
    for entry in Path(folder).iterdir() if Path(folder).is_dir() else ():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
