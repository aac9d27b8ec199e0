"""Trials on a Ray cluster: Optuna asks in this process, each trial runs as a Ray task, Optuna is told here.

Why Optuna's own ask-and-tell over our :class:`~mtdqn.studies.ray_backend.RayBackend` rather than Ray Tune with
its OptunaSearch: a trial stays exactly what it is locally — :func:`mtdqn.tune.search.execute`, an ordinary run
directory checkpointed by mtdqn and resumed by `mtdqn train --resume`'s code — and the search state stays in
Optuna's storage, so a killed tune resumes the same way on both backends and the report reads one storage.
Ray Tune would bring a second trial runner with its own checkpoints, its own result directory layout and its
own resume (``Tuner.restore``), and its ASHA would replace Optuna's pruner; the local path would then differ
from the cluster one.  The price: the workers must reach the storage.  On one machine (``--ray-address local``)
the default SQLite file in the tune directory does; on a cluster, give ``--storage`` a database server's URL
(PostgreSQL, MySQL) or keep the tune directory on a filesystem every node sees.

The pruner works on the workers as it does locally: each worker opens the study in the storage and reports
its trial's evaluations there.  As many trials run at once as the cluster has CPUs (one per trial), so the
sampler proposes each new trial knowing every finished one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import optuna

from mtdqn.studies.ray_backend import RayBackend
from mtdqn.tune.search import Outcome, drive, execute, live_trial, open_search
from mtdqn.tune.spec import TuneSpec

__all__ = ["run_search_on_ray"]


def _remote_trial(spec: TuneSpec, storage_url: str, number: int, out: str, reported: list[int]) -> Outcome:
    """Runs on a worker: trial ``number`` (its parameters drawn by the driver), reporting to the storage at
    ``storage_url``."""
    from mtdqn.devices import cpu_plan, unroll_cpu_threefry, use_cpu_cores

    # as a local tune plans its process (and a study's Ray cells theirs): the same seed layout, the same numbers
    use_cpu_cores(*cpu_plan(spec.seeds, list(spec.tasks), 0))
    unroll_cpu_threefry()
    study = open_search(spec, storage_url)
    return execute(spec, live_trial(study, number), Path(out), False, set(reported))


def run_search_on_ray(spec: TuneSpec, study: optuna.Study, storage_url: str, out: Path, trials: int,
                      address: str, announce: Callable[[str], None]) -> None:
    """:func:`mtdqn.tune.search.drive` with each trial a Ray task, at most as many at once as the cluster has
    CPUs."""
    with RayBackend(address):
        import ray

        remote = ray.remote(num_cpus=1, max_retries=0)(_remote_trial)
        width = max(1, int(ray.cluster_resources().get("CPU", 1)))
        pending: dict[object, int] = {}

        def start(number: int, reported: list[int]) -> None:
            pending[remote.remote(spec, storage_url, number, str(out.absolute()), reported)] = number

        def wait() -> tuple[int, Outcome]:
            (ref,), _ = ray.wait(list(pending), num_returns=1)
            number = pending.pop(ref)
            try:
                return number, ray.get(ref)
            except Exception as exc:  # the worker died (e.g. out of memory): the trial failed, the search goes on
                return number, Outcome(optuna.trial.TrialState.FAIL, note=f"worker died: {str(exc).splitlines()[0]}")

        drive(spec, study, out, trials, width, start, wait, announce)
