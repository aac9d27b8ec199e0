"""Host side of a run: from a config and its run options to a finished run directory.

:func:`train` checks everything before anything is written, resolves the
run's options once (:func:`mtdqn.runoptions.resolve`: a resumed run keeps its
own unless given anew), creates or updates the run's record, and hands over to
the driving loop (:mod:`mtdqn.train.drive`) and the end of the run
(:mod:`mtdqn.train.summary`).  Both training loops, the compiled one and the
Gymnasium host loop (:mod:`mtdqn.train.chunks`), are driven alike.
"""

from __future__ import annotations

import dataclasses
from contextlib import nullcontext
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import jax
import pandas as pd

from mtdqn.checkpoint import verify_checkpoint
from mtdqn.budget import check_train_budget
from mtdqn.config import (
    TrainConfig, check_new_run, config_hash, config_to_dict, warn_of_rounding,
)
from mtdqn.devices import seed_devices
from mtdqn.errors import (ConfigError, InsufficientResources, LayoutChangedWarning, MtdqnWarning, count,
                          warn_user)
from mtdqn.finetune import is_finetuned
from mtdqn.graft import start_from_source
from mtdqn.io import provenance, read_json, read_parquet
from mtdqn.rundir import RUN_SUMMARY, RunDir
from mtdqn.runoptions import OnEval, RunOptions, resolve
from mtdqn.train.agent import Agent, check_memory, describe, make_agent, state_bytes
from mtdqn.train.chunks import make_runner
from mtdqn.train.drive import Schedule, drive
from mtdqn.train.loop import seed_keys
from mtdqn.train.summary import finish

__all__ = ["RunResult", "train", "resuming_line"]


@dataclass
class RunResult:
    out_dir: Path
    summary: dict[str, Any]
    metrics: pd.DataFrame
    state: Any = field(repr=False, default=None)


def train(
    cfg: TrainConfig,
    out_dir: Path,
    options: RunOptions | None = None,
    *,
    resume: bool = False,
    force: bool = False,
    progress: bool = True,
    announce: Callable[[str], None] | None = None,
    extra_summary: dict[str, Any] | None = None,
    on_eval: OnEval | None = None,
    warn_rounding: bool = False,
    **given: Any,
) -> RunResult:
    """Train all seeds of ``cfg`` and write the run directory; returns its summary.

    ``options``: how a new run is driven (:class:`~mtdqn.runoptions.RunOptions`;
    None: the defaults).  ``given``: single options over them (fields, e.g.
    ``eval_every=1000``), or over a resumed run's own (``resume``: continue
    ``out_dir`` from its latest checkpoint, ending bit-identical to an
    uninterrupted run; it takes no ``options``: ``replace(stored, **given)``).  Gymnasium
    (``gym:``) tasks run the host loop into the same kind of directory.
    ``announce`` receives one line describing the agent (parameter counts) once
    it is built; ``extra_summary`` is merged into summary.json; ``on_eval`` sees
    every greedy evaluation during training (:data:`~mtdqn.runoptions.OnEval`).
    Raises :class:`~mtdqn.errors.TrainingDiverged` on a non-finite loss or
    Q-value, after the last good checkpoint and the metrics before it are on disk.
    A config with a fine-tuning section (``cfg.finetune``, made by
    :mod:`mtdqn.transfer`) starts a new run from its source run's weights (:mod:`mtdqn.graft`),
    grafted onto the fresh state (the source is checked before anything is
    written); the start is recorded in start.json and the summary's
    ``transfer`` entry.  A resumed run starts from its own checkpoint.

    Called from Python rather than through `mtdqn train`, call
    :func:`mtdqn.devices.use_cpu_cores` and :func:`mtdqn.devices.unroll_cpu_threefry`
    first to get the CLI's devices and its faster (same-bits) RNG lowering.
    """
    if resume and options is not None:
        raise ConfigError("a resumed run keeps the options it was started with: give only those to change")
    if not resume:
        check_new_run(cfg)  # a resumed run continues as it was made, even under rules added since
        check_train_budget(cfg)
    agent = make_agent(cfg, devices=None)  # validates before anything touches the disk; memory once laid out
    run_dir = RunDir(out_dir)
    # a resumed run is held before its checkpoint is read (another trainer may be replacing it); a new one
    # before its folder is written (below)
    with run_dir.trained_here() if resume and run_dir.is_run() else nullcontext():
        _check_host_options(agent, resume, {**dataclasses.asdict(options or RunOptions()), **given})
        verified = None
        if resume:
            run_dir.require_resumable()
            verified = verify_checkpoint(run_dir.path, cfg)  # once: the options and the load below use it
            if is_finetuned(cfg.finetune):
                run_dir.require_start()
            options = RunOptions.from_record(verified, f"{run_dir.path / 'checkpoints' / 'latest.json'}")
        trained_on = options.devices if resume else None
        options = resolve(given, options, resuming=resume)
        if resume and "devices" not in given:  # its own layout (--devices given: seed_devices says what is wrong)
            _check_devices_to_resume(run_dir.path, options.devices)
        options = _laid_out(agent, options)
        if trained_on is not None and options.devices != trained_on and not _finished_training(agent, verified):
            warn_user(f"{run_dir.path} resumes with its seeds over {count(options.devices, 'device')} where they "
                      f"trained over {trained_on}: another layout changes the numbers from here on, so the run "
                      "will not match one trained without a stop (summary.json records the new layout)",
                      LayoutChangedWarning)
        earlier = _earlier_final_episodes(run_dir) if resume and _finished_training(agent, verified) else set()
        if earlier - {options.eval_episodes}:
            warn_user(f"{run_dir.path}'s final score will average its new final evaluation of "
                      f"{count(options.eval_episodes, 'episode')} with the evaluations before it in its last 20% "
                      f"({' or '.join(map(str, sorted(earlier)))} episodes each; evals.parquet's `episodes` says "
                      "which)", MtdqnWarning)
        check_memory(cfg, agent.task_set, agent.arch, devices=options.devices)
        start_from = None
        if cfg.finetune.source and not resume:
            start_from = start_from_source(cfg, options.eval_episodes)  # checks the source: before any write
        if warn_rounding and not resume:  # once every option is checked, as the announcement
            warn_of_rounding(cfg, options.eval_every, options.checkpoint_every)
        if announce is not None:  # once every option is checked: a refused run prints its error line alone
            announce(describe(agent) + (resuming_line(agent, verified) if resume else ""))
        trainer, runner = make_runner(agent, options.devices)
        ckpt_bytes = state_bytes(jax.eval_shape(trainer.init, seed_keys(agent.seeds)))
        run_dir.check_space(ckpt_bytes)
        with run_dir.trained_here():  # before the first write: one trainer per folder (on resume: held above)
            if not resume:  # a resumed run's config.json takes its options with a checkpoint or its end
                run_dir.create({"config": config_to_dict(cfg), "config_hash": config_hash(cfg), **provenance(),
                                "seeds": agent.seeds, "derived": agent.derived.__dict__, **options.record()}, force)
            t_start = time.perf_counter()
            schedule = Schedule.of(agent, options)
            try:
                trained = drive(trainer, runner, run_dir, options, schedule, verified, progress, ckpt_bytes, start_from,
                                on_eval)
            finally:
                runner.close()
            summary, frame = finish(trainer, run_dir, options, schedule, trained, t_start, extra_summary)
        return RunResult(run_dir.path, summary, frame, trained.state)


def resuming_line(agent: Agent, verified: dict[str, Any]) -> str:
    """Where a resumed run continues from, said once: only the progress bar said it, so a log (not a terminal)
    did not show whether a resume started over (a run's, a sweep's).  A run that trained all its steps is only
    evaluated again."""
    done, total = int(verified["iteration"]) * agent.cfg.num_envs, agent.derived.env_steps
    if _finished_training(agent, verified):
        return f"\nmtdqn: all {total:,} env steps per task trained (its latest checkpoint): evaluating it again"
    return f"\nmtdqn: resuming from env step {done:,} of {total:,} per task (its latest checkpoint)"


def _earlier_final_episodes(run_dir: RunDir) -> set[int]:
    """The episode counts of the evaluations a finished run's final score averages besides its final one (the
    rule and steps its summary.json records, the counts evals.parquet's): an evaluation again with another
    count is averaged with them."""
    path = run_dir.path / RUN_SUMMARY
    try:
        summary = read_json(path) if path.is_file() else {}
        if not isinstance(summary, dict) or summary.get("final_score_rule") != "mean-of-last-evals":
            return set()
        steps = set(summary.get("final_score_steps", ())[:-1])
        if not steps:
            return set()
        evals = read_parquet(run_dir.path / "evals.parquet")
        return {int(n) for n in evals.loc[evals["step"].isin(steps), "episodes"]}
    except (ConfigError, TypeError, KeyError):  # a damaged summary or table: redone, and nothing to say of it
        return set()


def _finished_training(agent: Agent, verified: dict[str, Any]) -> bool:
    """Whether the checkpoint holds every step of the budget (a resume then only evaluates again)."""
    return int(verified["iteration"]) * agent.cfg.num_envs >= agent.derived.env_steps


def _check_devices_to_resume(path: Path, devices: int) -> None:
    """A run resumes on the devices its seeds trained on (another layout changes its numbers; ``--devices``
    chooses another): a process whose JAX started with fewer (its own JAX code, or an earlier run with fewer
    seeds) cannot give them.  InsufficientResources: the checkpoint is fine, this process is not (a study's
    cell keeps it)."""
    have = jax.local_device_count()
    if devices > have:
        raise InsufficientResources(
            f"{path} trained its seeds over {devices} devices and resumes on as many (another layout changes its "
            f"numbers; --devices chooses one); this process's JAX started with {have}: resume it in a fresh process "
            f"(mtdqn train --resume {path}), or call mtdqn.devices.use_cpu_cores({devices}) before any JAX code")


def _check_host_options(agent: Agent, resume: bool, wanted: dict[str, Any]) -> None:
    """What the Gymnasium host loop cannot do (``wanted``: the options asked for), refused before anything is read
    or written."""
    if agent.task_set.backend != "gymnasium":
        return
    if wanted.get("devices", 0) not in (0, 1):
        raise ConfigError("--devices is not supported with gym: tasks: their envs step on the host, one device")
    if resume or wanted.get("checkpoint_every"):
        raise ConfigError(
            "--resume and --checkpoint-every are not supported with gym: tasks: their env state lives in Python "
            "and cannot be checkpointed (the final parameters are still saved)"
        )


def _laid_out(agent: Agent, options: RunOptions) -> RunOptions:
    """``options`` with ``devices`` the count the seeds are split over (host envs: one device)."""
    # the count, not len(agent.seeds): a list of 10^8 seeds took 9 s to build before the memory check refused them
    devices = 1 if agent.task_set.backend == "gymnasium" else seed_devices(agent.cfg.seeds, options.devices)
    return dataclasses.replace(options, devices=devices)
