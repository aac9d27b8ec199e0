"""--ray-address: an address where no Ray cluster answers is one line in seconds, never a silent wait of minutes."""

from __future__ import annotations

import functools
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from mtdqn.errors import ConfigError
from mtdqn.studies.ray_backend import RayBackend

ray = pytest.importorskip("ray")


@contextmanager
def _server(reply: bytes | None) -> Iterator[str]:
    """A local TCP server that accepts every connection and sends ``reply`` once it has read something (None:
    says nothing, holding the connection open); its HOST:PORT."""
    listener = socket.create_server(("127.0.0.1", 0))
    held = []

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:  # closed: the test is over
                return
            held.append(conn)
            if reply is not None:
                conn.recv(1024)
                conn.sendall(reply)

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield f"127.0.0.1:{listener.getsockname()[1]}"
    finally:
        listener.close()
        for conn in held:
            conn.close()


@pytest.mark.parametrize("reply", [None, b"HTTP/1.0 400 Bad Request\r\n\r\n"], ids=["silent", "http"])
def test_a_port_that_is_no_ray_cluster_is_one_line_in_seconds(reply, monkeypatch):
    """Was: a hang of minutes with nothing on the screen (the TCP connect succeeded, ray.init retried).  The
    probe's wait is shortened here: a silent server costs the whole of it."""
    monkeypatch.setattr("mtdqn.studies.ray_backend.PROBE_SECONDS", 0.5)
    with _server(reply) as address:
        start = time.monotonic()
        with pytest.raises(ConfigError) as exc:
            with RayBackend(address):
                pass
        assert time.monotonic() - start < 0.5 + 5
    message = str(exc.value)
    assert "\n" not in message and message.startswith(f"--ray-address {address} does not answer as a Ray cluster")
    assert not ray.is_initialized()


def test_auto_without_a_cluster_names_mtdqns_flag(monkeypatch):
    """Ray's advice to set "the `--address` flag" (its own CLI's) is given as mtdqn's --ray-address."""
    monkeypatch.setattr(ray._private.services, "find_gcs_addresses", functools.cache(lambda: []))  # Ray clears it
    monkeypatch.setattr(ray._private.services, "find_bootstrap_address", lambda temp_dir: None)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    with pytest.raises(ConfigError) as exc:
        with RayBackend("auto"):
            pass
    message = str(exc.value)
    assert "Could not find any running Ray instance" in message and "--ray-address" in message.split(": ", 1)[1]
    assert "`--address`" not in message
    assert not ray.is_initialized()


@pytest.mark.slow
def test_a_ray_clusters_own_address_passes_the_check(tmp_path, monkeypatch):
    """The check asks what every Ray cluster's GCS answers: a private local cluster's address passes it."""
    from mtdqn.studies.ray_backend import _check_reachable

    monkeypatch.setenv("HOME", str(tmp_path))  # Ray must leave nothing in the home folder
    for key in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_ADDRESS"):
        monkeypatch.delenv(key, raising=False)
    with RayBackend("local", num_cpus=1):
        _check_reachable(ray.get_runtime_context().gcs_address)
    assert not ray.is_initialized()
