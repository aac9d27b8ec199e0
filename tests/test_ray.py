"""Ray: an address where no Ray cluster answers is one line in seconds, never a silent wait of minutes; on a real
private cluster, a study's cells and a search's trials compute what they compute locally.

The tests that need a cluster share one (:func:`ray_cluster`, started as ``--ray-address local`` starts one):
each start and stop of Ray's seven processes (GCS, raylet, dashboard, agents, monitors, two workers) cost
the suite ~7 s of wall time and more of CPU, three times.  A study or search given ``local`` while it runs
uses it (a caller's own session, as in a notebook).  The tests without one come first: the fixture is
module-scoped, so the cluster lives from the first test using it to the end of the module."""

from __future__ import annotations

import functools
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import optuna
import pandas as pd
import pytest
from helpers import TUNE_SMALL, spec_file

import mtdqn
from mtdqn.errors import ConfigError
from mtdqn.studies import load_spec, run_study
from mtdqn.studies.ray_backend import RayBackend, _check_reachable

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
    with _server(reply) as address, pytest.raises(ConfigError, match=r"does not answer as a Ray Client server: give "
                                                                     r"ray://HOST:PORT .*10001 by default"):
        with RayBackend(f"ray://{address}"):  # a Ray Client address: its hint was the GCS's port 6379
            pass


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


# ---------------------------------------------------------------- on a private local cluster


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    """A private local cluster as ``--ray-address local`` starts it (:class:`RayBackend`), its GCS address; at
    its end it is shut down, its token is out of the environment and Ray left no ``.ray`` in the home folder (a
    fresh one; matplotlib keeps its own configuration folder, whose font cache a report would otherwise rebuild
    there).  A failed check here is reported as an error of the module's last test."""
    import matplotlib

    home = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MPLCONFIGDIR", matplotlib.get_configdir())
        mp.setenv("HOME", str(home))  # Ray must not leave an auth token (or anything) in the home folder
        for key in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_ADDRESS"):
            mp.delenv(key, raising=False)
        with RayBackend("local", num_cpus=2):
            yield ray.get_runtime_context().gcs_address
        assert not ray.is_initialized(), "RayBackend('local') left its cluster running"
        assert "RAY_AUTH_TOKEN" not in os.environ, "RayBackend('local') left its token in the environment"
        assert not (home / ".ray").exists(), f"Ray wrote {home / '.ray'}"


@pytest.mark.slow
def test_a_ray_clusters_own_address_passes_the_check(ray_cluster):
    """The check asks what every Ray cluster's GCS answers: a private local cluster's address passes it."""
    _check_reachable(ray_cluster)


@pytest.mark.slow
def test_trials_on_ray(ray_cluster, tmp_path):
    """The trials run as Ray tasks reporting to the SQLite storage; the same directory as a local search.  Before
    the study below: its 2-seed cells then follow these 1-seed trials on the cluster (a worker reused from them
    would train a cell on one device)."""
    out = tmp_path / "tune"
    result = mtdqn.tune({**TUNE_SMALL, "pruner": "none"}, out, n_trials=2, ray_address="local", progress=False)
    study = optuna.load_study(study_name="small", storage=f"sqlite:///{out / 'tune.db'}")
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 2
    assert study.trials[0].params != study.trials[1].params  # started together, each drew its own values
    assert all((out / "trials" / f"trial-{i:04d}" / "summary.json").is_file() for i in range(2))
    assert result.best_trial in (0, 1)


@pytest.mark.slow
def test_a_study_on_ray_matches_local(ray_cluster, local_study, tmp_path, monkeypatch):
    """The cells, each a Ray task running the local backend's run_cell, end with the local study's numbers.  The
    study enters and leaves a RayBackend of its address and CPUs (on the running cluster it owns nothing: the
    fixture's start and stop are those of ``local``)."""
    made = []

    class Recorded(RayBackend):
        def __exit__(self, *exc_info):
            made.append((self.address, self.num_cpus))
            return super().__exit__(*exc_info)

    monkeypatch.setattr("mtdqn.studies.runner.RayBackend", Recorded)
    out = tmp_path / "ray-study"
    result = run_study(load_spec(spec_file(tmp_path)), out, ray_address="local", num_cpus=2, progress=False,
                       report=False)
    assert made == [("local", 2)]
    for variant in ("independent", "shared"):
        local = json.loads((local_study / "cells" / variant / "summary.json").read_text())
        assert result.summaries[variant]["status"] == "ok"
        assert result.summaries[variant]["final_eval"] == local["final_eval"]
        assert result.summaries[variant]["config_hash"] == local["config_hash"]
        assert result.summaries[variant]["devices"] == local["devices"] == 2  # the layout the numbers depend on
        pd.testing.assert_frame_equal(pd.read_parquet(out / "cells" / variant / "metrics.parquet"),
                                      pd.read_parquet(local_study / "cells" / variant / "metrics.parquet"))
    assert ray.is_initialized()  # the caller's cluster, left running
