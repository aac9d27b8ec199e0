"""The Ray backend: each cell a Ray task calling the same :func:`run_cell` as the local backend.

``address`` is ``local`` (start a private Ray instance for this study, shut
down afterwards), ``auto`` (a running cluster found on this machine) or
``HOST:PORT`` / ``ray://HOST:PORT``.

Two things Ray does by default that a study must not:

* Since token authentication became the default, ``ray.init()`` of a new
  local instance writes a token to ``~/.ray/auth_token`` (and reuses it for
  every later cluster).  For ``local`` we instead keep token auth on with a
  fresh per-study token passed through ``RAY_AUTH_TOKEN`` in the environment
  (inherited by the raylet and workers), so nothing is written to the home
  folder and no secret outlives the study.  A user who set ``RAY_AUTH_*``
  themselves is left alone.
* Session files go to a private temp dir (short, because Ray's Unix sockets
  live there), removed at shutdown.

Workers write straight into the study folder when they can see it (one
machine or a shared filesystem); a worker on a node that cannot returns the
cell's files (without checkpoints) for the driver to write.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import shutil
import socket
import sys
import tempfile
import warnings
from pathlib import Path
from contextlib import contextmanager, nullcontext
from types import TracebackType
from typing import Any, Iterator

from mtdqn.errors import ConfigError, FolderBusy
from mtdqn.io import atomic_write
from mtdqn.rundir import STUDY_RECORD
from mtdqn.studies.cell import CellConfig, OnEvent, resumable_from, run_cell, write_failed

__all__ = ["RayBackend", "OBJECT_STORE_BYTES", "check_tasks_reach_ray"]

OBJECT_STORE_BYTES = 200 * 1024**2  # results are small dicts; don't reserve RAM a JAX worker needs
_FORWARDED_ENV = ("JAX_PLATFORMS", "JAX_ENABLE_X64", "JAX_DISABLE_MOST_OPTIMIZATIONS", "XLA_FLAGS", "TF_CPP_MIN_LOG_LEVEL")


def _remote_cell(cell: CellConfig, cell_dir: str, study_json: str) -> dict[str, Any]:
    """Runs on a worker: the cell, into the study folder if visible, else into a temp dir shipped back."""
    from mtdqn.devices import cpu_plan, unroll_cpu_threefry, use_cpu_cores

    # As the CLI plans a local study (every cell has the study's seeds and tasks), so a cell's seeds
    # get the same layout, and numbers, as run locally (each cell in a worker of its own: RayBackend.run).
    use_cpu_cores(*cpu_plan(cell.config.seeds, cell.config.tasks, cell.run_options.devices))
    unroll_cpu_threefry()  # as the CLI does: the same bits, faster on CPU
    if Path(study_json).exists():
        return {"summary": run_cell(cell, Path(cell_dir)), "files": None}
    with tempfile.TemporaryDirectory(prefix="mtdqn-cell-") as tmp:
        root = Path(tmp) / "cell"
        summary = run_cell(cell, root)
        files = {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
                 if p.is_file() and "checkpoints" not in p.relative_to(root).parts}
    return {"summary": summary, "files": files}


def _worker_env() -> dict[str, str]:
    """JAX settings of this process that workers need to compute the same numbers (and reuse compiles)."""
    env = {k: os.environ[k] for k in _FORWARDED_ENV if k in os.environ}
    jax = sys.modules.get("jax")
    if jax is not None:
        cache = jax.config.jax_compilation_cache_dir
        if cache:
            env["JAX_COMPILATION_CACHE_DIR"] = str(cache)
            env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = str(jax.config.jax_persistent_cache_min_compile_time_secs)
    return env


def _reload_ray_auth() -> None:
    """Make this process's Ray core re-read RAY_AUTH_* (it caches them at import), as ray.init itself does."""
    try:
        from ray._raylet import AuthenticationTokenLoader, Config
    except ImportError:  # a Ray without token authentication: nothing to reload
        return
    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()


@contextmanager
def _stderr_kept_on_success() -> Iterator[None]:
    """Hold back what Ray's C++ core prints to fd 2 while connecting (a retry line per second when the
    address is wrong); replay it if the connection works, drop it for the one-line error if not."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        ok = False
        try:
            yield
            ok = True
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            if ok:
                held.seek(0)
                sys.stderr.write(held.read().decode(errors="replace"))


# A Ray cluster's address is its GCS (or Ray client server), a gRPC server: it answers HTTP/2's client preface
# with a SETTINGS frame at once.  Anything else (the dashboard's web port, a web server, a silent socket) does not,
# and ray.init would retry it for minutes with nothing on the screen.
_HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])  # + an empty SETTINGS
_SETTINGS = 4  # the frame type, byte 3 of a frame's 9-byte header
PROBE_SECONDS = 5.0


def _first_frame(sock: socket.socket) -> bytes:
    """Up to the 9 bytes of the first frame header a peer sends back (fewer where it closes first)."""
    got = b""
    while len(got) < 9:
        chunk = sock.recv(9 - len(got))
        if not chunk:
            break
        got += chunk
    return got


def _check_reachable(address: str) -> None:
    """Fail in seconds on a HOST:PORT nobody listens on, or where something other than a Ray cluster answers
    (ray.init would retry either for minutes)."""
    hostport = address.split("://", 1)[-1]
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigError(f"--ray-address {address!r}: expected local, auto or HOST:PORT")
    try:
        sock = socket.create_connection((host, int(port)), timeout=PROBE_SECONDS)
    except OSError as exc:
        raise ConfigError(f"--ray-address {address}: cannot reach a Ray cluster there ({exc.strerror or exc})") from None
    if os.environ.get("RAY_USE_TLS", "0").lower() in ("1", "true"):  # a TLS cluster answers only a TLS handshake
        sock.close()
        return
    with sock:
        try:
            sock.sendall(_HTTP2_PREFACE)
            header = _first_frame(sock)
        except OSError:  # a timeout (a silent server), a reset
            header = b""
    if len(header) < 9 or header[3] != _SETTINGS:
        if address.startswith("ray://"):  # the Ray Client server's port, not the GCS's (a walk-through's ray://)
            raise ConfigError(f"--ray-address {address} does not answer as a Ray Client server: give ray://HOST:PORT "
                              "with the cluster's client port (10001 by default; 8265 is the dashboard's)")
        raise ConfigError(f"--ray-address {address} does not answer as a Ray cluster (its GCS): give the address "
                          "`ray start --head` printed (port 6379 by default; 8265 is the dashboard's)")


def _ray_advice(message: str) -> str:
    """Ray's error text with its advice to set ``--address`` (a flag of Ray's CLI) given as mtdqn's flag."""
    return re.sub(r"(the )?`--address`( flag)?", "--ray-address", message)


def check_tasks_reach_ray(tasks: list[str] | tuple[str, ...]) -> None:
    """A task registered with :func:`mtdqn.register_task` exists in this process only: Ray's workers cannot make
    it.  One line before anything is written (a walk-through's study sent the cell to Ray, which failed it there
    with "unknown task ... register it in this process", and wrote a FAILED report)."""
    from mtdqn.tasknames import split_spec

    custom = sys.modules.get("mtdqn.tasks.custom")  # not imported: nothing was registered (and nothing to start)
    registered = getattr(custom, "REGISTERED", {})
    for spec in tasks:
        backend, name, _ = split_spec(spec)
        if backend == "gymnax" and name in registered:
            raise ConfigError(f"task {name!r} was registered with mtdqn.register_task in this process, which Ray's "
                              "workers do not share: name it by its import path (module:factory) for a study on "
                              "Ray, or run the study locally")


class RayBackend:
    """Context manager: connect (or start) Ray on enter, shut down what we started on exit."""

    def __init__(self, address: str, num_cpus: int | None = None) -> None:
        self.address = address
        self.num_cpus = num_cpus
        self._temp_dir: str | None = None
        self._saved_env: dict[str, str | None] = {}
        self._owns = False

    def __enter__(self) -> "RayBackend":
        try:
            import ray
        except ImportError:
            raise ConfigError("--ray-address needs Ray: pip install 'mtdqn[ray]'") from None
        if ray.is_initialized():  # a caller's own session (e.g. a notebook): use it, leave it running
            return self
        kwargs: dict[str, Any] = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR,
                                      runtime_env={"env_vars": _worker_env()})
        if self.address == "local":
            self._contain_auth_token()
            self._temp_dir = tempfile.mkdtemp(prefix="mtdqn-ray-", dir="/tmp" if os.path.isdir("/tmp") else None)
            kwargs.update(num_cpus=self.num_cpus, object_store_memory=OBJECT_STORE_BYTES, _temp_dir=self._temp_dir)
        elif self.address != "auto":
            _check_reachable(self.address)
        self._owns = True
        try:
            # (only when connecting: a new local instance's daemons must not inherit the held-back stderr)
            with warnings.catch_warnings(), (nullcontext() if self.address == "local" else _stderr_kept_on_success()):
                # Ray starts its daemons by fork+exec: JAX's fork warning does not apply
                warnings.filterwarnings("ignore", message=r"os\.fork\(\) was called", category=RuntimeWarning)
                ray.init(address=self.address, **kwargs)
        except Exception as exc:  # ConnectionError, RuntimeError, TimeoutError, AuthenticationError...
            self._cleanup()
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ConfigError(f"--ray-address {self.address}: cannot connect to Ray: {_ray_advice(first)}") from None
        return self

    def _contain_auth_token(self) -> None:
        if any(k in os.environ for k in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")):
            return
        for key, value in (("RAY_AUTH_MODE", "token"), ("RAY_AUTH_TOKEN", secrets.token_hex(32))):
            self._saved_env[key] = os.environ.get(key)
            os.environ[key] = value
        _reload_ray_auth()

    def _cleanup(self) -> None:
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        if self._saved_env:
            _reload_ray_auth()
        self._saved_env = {}
        if self._temp_dir:
            shutil.rmtree(self._temp_dir, ignore_errors=True)
            self._temp_dir = None

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._owns:
            import ray

            ray.shutdown()
            self._owns = False
            self._cleanup()

    def run(self, todo: list[tuple[CellConfig, Path]], on_event: OnEvent) -> None:
        """Submit every cell at once; Ray runs as many as the cluster has CPUs for."""
        import ray

        # max_calls=1: each cell in a fresh worker process, planned for its own seeds (a reused worker kept the
        # devices of its first task: after a tune's 1-seed trials in the same session, a study's 2-seed cells
        # trained on one device instead of two, a different seed layout)
        remote = ray.remote(num_cpus=1, max_retries=1, max_calls=1)(_remote_cell)
        pending = {}
        for cell, cell_dir in todo:
            study_json = str((cell_dir.parent.parent / STUDY_RECORD).absolute())
            at = resumable_from(cell, cell_dir)  # read before the worker can write a checkpoint
            pending[remote.remote(cell, str(cell_dir.absolute()), study_json)] = (cell, cell_dir)
            on_event("submit", cell, at)
        while pending:
            (ref,), _ = ray.wait(list(pending), num_returns=1)
            cell, cell_dir = pending.pop(ref)
            try:
                out = ray.get(ref)
            except Exception as exc:  # the worker died (e.g. out of memory): record it, go on
                busy = next((e for e in (getattr(exc, "cause", None), exc) if isinstance(e, FolderBusy)), None)
                if busy is not None:  # another process trains the cell: not a failure to record in its folder
                    raise FolderBusy(str(busy).splitlines()[-1]) from None
                on_event("done", cell, write_failed(cell, cell_dir, exc))
                continue
            if out["files"] is not None:  # the worker could not see the study folder: write its files here
                shutil.rmtree(cell_dir, ignore_errors=True)
                for rel, blob in sorted(out["files"].items(), key=lambda kv: kv[0] == "summary.json"):
                    atomic_write(cell_dir / rel, lambda p, b=blob: p.write_bytes(b))
            on_event("done", cell, out["summary"])
