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
its trial's evaluations there.  Each trial reserves the CPUs its run uses, as a local tune plans them
(:func:`mtdqn.devices.cpu_plan`: a core per device its seeds are laid out on, every core for image tasks), so
as many trials run at once as the cluster's CPUs hold; this process's sampler draws each new trial's values
when it starts, knowing every finished trial and counting the running ones as bad (constant liar).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import optuna

from mtdqn.io import machine_write_error
from mtdqn.studies.ray_backend import RayBackend
from mtdqn.tune.search import Outcome, drive, execute, live_trial, open_search
from mtdqn.tune.spec import TuneSpec

__all__ = ["run_search_on_ray", "worker_failure"]


def _remote_trial(spec: TuneSpec, storage_url: str, number: int, out: str, reported: list[int],
                  plan: tuple[int, int]) -> Outcome:
    """Runs on a worker: trial ``number`` (its parameters drawn by the driver), reporting to the storage at
    ``storage_url``, on the (devices, threads) ``plan`` its CPUs were reserved for."""
    from mtdqn.devices import unroll_cpu_threefry, use_cpu_cores

    # as a local tune plans its process (and a study's Ray cells theirs): the same seed layout, the same numbers
    use_cpu_cores(*plan)
    unroll_cpu_threefry()
    study = open_search(spec, storage_url)
    return execute(spec, live_trial(study, number), Path(out), False, set(reported))


def run_search_on_ray(spec: TuneSpec, study: optuna.Study, storage_url: str, out: Path, trials: int,
                      address: str, announce: Callable[[str], None]) -> None:
    """:func:`mtdqn.tune.search.drive` with each trial a Ray task reserving the CPUs its run uses, at most as
    many at once as the cluster's CPUs hold."""
    from mtdqn.devices import cpu_plan

    plan = cpu_plan(spec.seeds, list(spec.tasks), 0)
    cpus = max(plan)  # threads: the devices' cores, or every core for image tasks
    with RayBackend(address):
        import ray

        # max_calls=1: each trial in a fresh worker, planned for the search's seeds (RayBackend.run says why)
        remote = ray.remote(num_cpus=cpus, max_retries=0, max_calls=1)(_remote_trial)
        width = max(1, int(ray.cluster_resources().get("CPU", 1)) // cpus)
        pending: dict[object, int] = {}

        def start(number: int, reported: list[int]) -> None:
            pending[remote.remote(spec, storage_url, number, str(out.absolute()), reported, plan)] = number

        def wait() -> tuple[int, Outcome]:
            (ref,), _ = ray.wait(list(pending), num_returns=1)
            number = pending.pop(ref)
            try:
                return number, ray.get(ref)
            except Exception as exc:
                return number, worker_failure(exc)

        drive(spec, study, out, trials, width, start, wait, announce)


def worker_failure(exc: Exception) -> Outcome:
    """How a trial whose Ray task raised ``exc`` ended.  The machine refusing a write on the worker (a full disk
    found before or during the run: the task's cause, ``RayTaskError.cause``) stops the search, as it does
    locally (:func:`mtdqn.tune.search.execute` raises it there), the trial left resumable; else (the worker
    died, e.g. out of memory) the trial failed and the search goes on."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BaseException) and machine_write_error(cause):
        raise cause from None
    return Outcome(optuna.trial.TrialState.FAIL, note=f"worker died: {str(exc).splitlines()[0]}")
