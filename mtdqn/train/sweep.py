"""`mtdqn train --sweep lr=1e-4,3e-4 --sweep gamma=0.98,0.99`: every combination x the seeds in one compiled program.

The swept options only enter :class:`~mtdqn.train.hypers.Hypers`, so the
members share one program (:func:`mtdqn.train.loop.make_population_trainer`)
and each computes exactly as its run alone.  The directory holds
``sweep.json``, the population's checkpoint (``checkpoints/``: what resumes
the sweep, atomically for all members) and one ordinary run directory per
member (``lr=0.0001,gamma=0.98/``: its config is the member's own, so
``report``, ``evaluate``, ``load_agent`` and a study's bookkeeping read it as
the same run trained alone).
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import jax
import numpy as np

from mtdqn.checkpoint import load_checkpoint, save_checkpoint, verify_checkpoint
from mtdqn.budget import check_train_budget
from mtdqn.config import (
    TrainConfig, check_new_run, config_hash, config_to_dict, derive, warn_of_rounding,
)
from mtdqn.errors import ConfigError, DamagedRun, TrainingDiverged, count
from mtdqn.io import provenance, read_json, write_json
from mtdqn.rundir import RUN_RECORD, RunDir, Tables, chunk_tables, evaluated, evals_until, write_tensorboard
from mtdqn.runoptions import RunOptions, resolve
from mtdqn.strategies.base import check_swept_options
from mtdqn.sweepspec import SWEEP_FILE, check_sweep, member_configs, strategy_options
from mtdqn.train.agent import Agent, check_memory, describe, make_agent, state_bytes
from mtdqn.train.chunks import CompiledChunks
from mtdqn.train.drive import (Schedule, Trained, check_finite, expert_probe_fn, grad_probe_fn, greedy_rows,
                               nonfinite_from_environment)
from mtdqn.train.loop import Trainer, make_population_trainer, population_keys, program_agent
from mtdqn.train.run import RunResult, resuming_line
from mtdqn.train.summary import finish

__all__ = ["train_sweep", "train_population", "MemberEval"]

def train_sweep(cfg: TrainConfig, sweep: Mapping[str, Sequence[float]], out_dir: Path, *, resume: bool = False,
                force: bool = False, progress: bool = True, announce: Callable[[str], None] | None = None,
                **given: Any) -> list[RunResult]:
    """Train every member of ``sweep`` over ``cfg`` with ``cfg``'s seeds as one compiled program.

    Writes ``out_dir`` (module docstring) and returns each member's result.
    Checks everything (each member's config, the population's memory)
    before anything is written.  ``given``: run options as for
    :func:`mtdqn.train.run.train`; early stopping and keep-best are per run
    and not offered here.
    """
    sweep = check_sweep(sweep)
    members = member_configs(cfg, sweep)
    check_swept_options(derive(cfg).strategy, strategy_options(sweep))
    out_dir = Path(out_dir)
    record = {"sweep": {k: list(v) for k, v in sweep.items()}, "members": [label for label, _ in members]}
    return train_population(cfg, [(out_dir / label, member) for label, member in members], out_dir, record,
                            resume=resume, force=force, progress=progress, announce=announce, warn_rounding=True,
                            **given)


MemberEval = Callable[[int, int, list[dict[str, Any]]], None]
"""An observer of a population's members (:func:`train_population`): called with the member's index, the env
step and the member's evaluation rows so far after each greedy evaluation during training, once the chunk's
tables (and its checkpoint, when one falls there) are written.  It may raise to stop the whole population,
which then stays resumable from its latest checkpoint (`mtdqn tune` does when every member of a batch is
pruned)."""


def train_population(cfg: TrainConfig, members: Sequence[tuple[Path, TrainConfig]], out_dir: Path,
                     record: dict[str, Any], *, options: RunOptions | None = None, resume: bool = False,
                     force: bool = False, progress: bool = True, announce: Callable[[str], None] | None = None,
                     on_eval: MemberEval | None = None, warn_rounding: bool = False,
                     **given: Any) -> list[RunResult]:
    """Train ``members`` ((run directory, config) pairs whose configs differ only in the numbers the compiled
    loop traces) as one program, the population's checkpoint and ``record`` (sweep.json) in ``out_dir``.

    ``cfg`` is the population's config of record (its checkpoint is verified against it on ``resume``): a
    sweep's base config, a tune batch's first trial's.  A `--sweep` and a batch of `mtdqn tune` trials both
    train here, so each member is its run alone, bit for bit.  ``options`` and ``given`` as :func:`train`'s.
    """
    if resume and options is not None:
        raise ConfigError("a resumed run keeps the options it was started with: give only those to change")
    if not resume:
        for path, member in members:
            try:
                check_new_run(member)
                check_train_budget(member)
            except ConfigError as exc:  # "--lr must be > 0" named no flag the user gave: name the member
                raise ConfigError(f"member {path.name}: {exc}") from None
    agents = [make_agent(member, devices=None) for _, member in members]  # every member's values; memory below
    agent = program_agent(agents)
    if agent.task_set.backend == "gymnasium":
        raise ConfigError("--sweep needs tasks the compiled loop steps; gym: tasks step on the host, one run each")
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():  # was a FileExistsError traceback at its first write
        raise ConfigError(f"output path {out_dir} exists and is not a directory")
    verified = verify_checkpoint(out_dir, cfg) if resume else None
    if resume:
        _check_member_records(out_dir, members)
    options = resolve(given, RunOptions.from_record(verified, f"{out_dir / 'checkpoints' / 'latest.json'}")
                      if resume else options, resuming=resume)
    if options.patience or options.keep_best:
        raise ConfigError("--patience and --keep-best stop or restore single runs; a sweep trains its members "
                          "to the end (give --eval-every to see their progress)")
    if not resume:  # a folder in the way is refused before the announcement and warnings, as a run's is
        RunDir(out_dir).check_new_sweep(force)
    check_memory(cfg, agent.task_set, agent.arch, members=len(members), devices=options.devices)
    if warn_rounding and not resume:  # once every option is checked, as the announcement (the members share them)
        warn_of_rounding(cfg, options.eval_every, options.checkpoint_every)
    if announce is not None:
        sweep = f"mtdqn: sweep of {len(members)} settings x {count(cfg.seeds, 'seed')} in one program"
        announce(f"{describe(agent)}\n{sweep}" + (resuming_line(agent, verified) if verified is not None else ""))
    trainer = make_population_trainer(agent, [a.hypers for a in agents], options.devices)
    options = dataclasses.replace(options, devices=trainer.devices)
    runs = [RunDir(path) for path, _ in members]
    ckpt_bytes = state_bytes(jax.eval_shape(trainer.init, population_keys(agent.seeds, trainer.population)))
    RunDir(out_dir).check_space(ckpt_bytes * 2)
    with RunDir(out_dir).trained_here():  # before the first write: one trainer per population (its members too)
        _write_records(out_dir, cfg, record, members, agents, runs, options, resume, force)
        t_start = time.perf_counter()
        schedule = Schedule.of(agent, options)
        trained = _drive(trainer, cfg, agents, runs, out_dir, options, schedule, verified, progress, on_eval)
        results = []
        for (state, tables), member_agent, run_dir in zip(trained.members, agents, runs):
            one = Trained(state, tables, trained.compile_s, trained.loop_s, trained.first_chunk,
                          schedule.num_chunks, None, trained.eval_s)
            member_trainer = Trainer(member_agent, trainer.init, trainer.chunk, trainer.hypers, trainer.devices)
            if trained.first_chunk < schedule.num_chunks or run_dir.checkpoint_id() is None:  # never the live one
                save_checkpoint(run_dir.path, member_agent.cfg, state, schedule.num_chunks, options.record())
            summary, frame = finish(member_trainer, run_dir, options, schedule, one, t_start,
                                    {"sweep": {"dir": str(out_dir), "members": len(members)}})
            results.append(RunResult(run_dir.path, summary, frame, state))
        _write_options(out_dir, runs, options)
    return results


def _write_records(out_dir: Path, cfg: TrainConfig, record: dict[str, Any], members: Sequence, agents: list[Agent],
                   runs: list[RunDir], options: RunOptions, resume: bool, force: bool) -> None:
    """sweep.json (``record`` with the config of record) and each member's config.json (as its run alone
    writes it, plus where its population is: :meth:`RunDir.population`)."""
    if resume:  # they take a resume's changed options with its next checkpoint (_write_options)
        return
    RunDir(out_dir).prepare_sweep(force)  # a run's or an earlier sweep's files (--force): refused (again), or removed
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / SWEEP_FILE, {"config": config_to_dict(cfg), "config_hash": config_hash(cfg), **record,
                                      **provenance(), **options.record()})
    for (_, member), agent, run_dir in zip(members, agents, runs):
        run_dir.create({"config": config_to_dict(member), "config_hash": config_hash(member), **provenance(),
                        "seeds": agent.seeds, "derived": agent.derived.__dict__, **options.record(),
                        "population": os.path.relpath(out_dir, run_dir.path)}, force)


def _write_options(out_dir: Path, runs: list[RunDir], options: RunOptions) -> None:
    """sweep.json and its members' config.json state the options of the population's latest checkpoint, as a
    run's (:meth:`RunDir.write_options`): a resume's changed ones from its first checkpoint or its end."""
    sweep = read_json(out_dir / SWEEP_FILE)
    if sweep.get("options") != options.record()["options"]:
        write_json(out_dir / SWEEP_FILE, {**sweep, **options.record()})
    for run in runs:
        run.write_options(options.record())


@dataclasses.dataclass
class _SweepTrained:
    """What the sweep's loop leaves for each member's :func:`~mtdqn.train.summary.finish`."""

    members: list[tuple[Any, Tables]]  # each member's final state (its real seeds) and its tables
    compile_s: float
    loop_s: float
    first_chunk: int
    eval_s: float  # the evaluations during training (every member's)


def _take(state: Any, entries: np.ndarray) -> Any:
    """The population ``state``'s ``entries``, in order (one member's seeds, or every member's).

    A sweep's state (replay above all) can be most of the host's memory, and
    copies of it at a checkpoint or at the end would double it or worse
    (measured: 4 members of 1 seed peaked at 2.6x their state; of 2 seeds on
    2 CPU devices at 4.3x, and of 3 seeds, one dummy each, at 4.6x, where
    indexing gathered onto both devices).  So on CPU devices each device's
    rows among the entries are NumPy's view of its memory: one view is handed
    back to JAX (on the first CPU device) without a copy, several are joined
    (a copy of the entries only); all the entries are the state itself.  On
    an accelerator it is indexing.  A view alive at the next chunk only turns
    the chunk's donation of that buffer into a copy: drop it before.
    """
    entries = np.asarray(entries)
    breaks = np.flatnonzero(np.diff(entries) != 1) + 1
    runs = [(int(r[0]), int(r[-1]) + 1) for r in np.split(entries, breaks) if r.size]

    def take(x: jax.Array) -> jax.Array:
        if runs == [(0, x.shape[0])]:
            return x
        if any(d.platform != "cpu" for d in x.devices()) or jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            return x[entries]  # typed keys (a custom env's state may hold them) have no NumPy view
        shards = {}  # each device's rows by their first row (a replicated leaf: the same rows on each device)
        for shard in x.addressable_shards:
            first = shard.index[0].indices(x.shape[0])[0] if shard.index else 0
            shards[first] = shard.data
        starts = sorted(shards)
        views = []
        for start, stop in runs:
            for first, last in zip(starts, [*starts[1:], x.shape[0]]):
                if max(first, start) < min(last, stop):
                    views.append(np.asarray(shards[first])[max(first, start) - first:min(last, stop) - first])
        return jax.device_put(views[0] if len(views) == 1 else np.concatenate(views), jax.devices("cpu")[0])

    return jax.tree.map(take, state)


def _real_entries(trainer: Trainer) -> np.ndarray:
    layout = trainer.population
    return np.concatenate([layout.member_entries(m) for m in range(layout.members)])


def _drive(trainer: Trainer, cfg: TrainConfig, agents: list[Agent], runs: list[RunDir], out_dir: Path,
           options: RunOptions, schedule: Schedule, verified: dict | None, progress: bool,
           on_eval: MemberEval | None) -> _SweepTrained:
    """The population's chunks; after each, every member's rows, evaluations, probes and TensorBoard events
    written to its own directory as its run alone writes them, the population (``cfg``: its config of record)
    checkpointed on the schedule, and ``on_eval`` told of each member's evaluation."""
    agent, layout = trainer.agent, trainer.population
    members = [Trainer(a, trainer.init, trainer.chunk, trainer.hypers, trainer.devices) for a in agents]
    experts = [expert_probe_fn(t) for t in members]  # every chunk (mixtures of experts only)
    probes: list[Any] = [None] * len(members)  # the gradient probe, compiled at the first evaluation
    runner = CompiledChunks(trainer)
    state, compile_s = runner.start(population_keys(agent.seeds, layout))
    real = _real_entries(trainer)
    first_chunk = 0
    tables = [Tables.empty() for _ in runs]
    if verified is not None:
        template = jax.tree.map(lambda x: x[real], state)
        saved, meta = load_checkpoint(out_dir, cfg, template, verified)
        state = jax.tree.map(lambda full, part: jax.device_put(full.at[real].set(part), full.sharding), state, saved)
        first_chunk = meta["chunk"]
        tables = [run.tables_until(*schedule.kept_steps(first_chunk), evals_until(meta)) for run in runs]
    has_shared = agent.arch.adapter_shared or any(agent.arch.torso_shared)
    purge = first_chunk * schedule.steps_per_chunk + 1 if first_chunk else None
    writers = [run.tensorboard(purge_step=purge) for run in runs]
    last_good = first_chunk * schedule.steps_per_chunk if first_chunk else None  # the latest checkpoint's step
    t_loop, eval_s = time.perf_counter(), 0.0
    try:
        for chunk in range(first_chunk, schedule.num_chunks):
            state, m = runner(state, chunk * agent.derived.iters_per_chunk)
            m = jax.tree.map(np.asarray, m)
            step = (chunk + 1) * schedule.steps_per_chunk
            last = chunk + 1 == schedule.num_chunks
            evaluate = schedule.eval_chunks and (chunk + 1) % schedule.eval_chunks == 0 and not last
            for i, (member, run, writer) in enumerate(zip(members, runs, writers)):
                entries = layout.member_entries(i)
                mine = _take(state, entries) if evaluate or agent.arch.experts else None
                if evaluate:
                    probes[i] = probes[i] or grad_probe_fn(member, options.probes)
                eval_s += _write_member_chunk(member, run, writer, tables[i], jax.tree.map(lambda x: x[entries], m),
                                              mine, step, has_shared, options.eval_episodes, last_good,
                                              experts[i], probes[i] if evaluate else None,
                                              lambda e=entries: {k: v[e] for k, v in
                                                                 nonfinite_from_environment(state).items()})
            del mine  # a member's whole state (replay included): not alive beside the checkpoint's copy
            if schedule.checkpoint_chunks and (chunk + 1) % schedule.checkpoint_chunks == 0 and not last:
                save_checkpoint(out_dir, cfg, _take(state, real), chunk + 1,
                                {**options.record(), **evaluated(tables[0])},  # every member evaluates alike
                                lambda: _write_options(out_dir, runs, options))
                last_good = step
            if evaluate and on_eval is not None:
                for i, member_tables in enumerate(tables):
                    on_eval(i, step, member_tables.evals)
            if progress:
                print(f"sweep: {step:,}/{agent.derived.env_steps:,} steps", flush=True)
        jax.block_until_ready(state)
    finally:
        for writer in writers:
            writer.close()
    loop_s = time.perf_counter() - t_loop - eval_s
    if first_chunk < schedule.num_chunks:
        save_checkpoint(out_dir, cfg, _take(state, real), schedule.num_chunks, options.record(),
                        lambda: _write_options(out_dir, runs, options))
    members = [(_take(state, layout.member_entries(i)), t) for i, t in enumerate(tables)]
    return _SweepTrained(members, compile_s, loop_s, first_chunk, eval_s)


def _check_member_records(out_dir: Path, members: list[tuple[Path, TrainConfig]]) -> None:
    """Before a population resumes: its own record and each member's config.json readable and the member's own
    (one missing, damaged or swapped was found only after the next chunk and checkpoint, as its options were
    written; a tune batch's trials then all failed for good).  One line, nothing written."""
    try:
        if not isinstance(read_json(out_dir / SWEEP_FILE), dict):
            raise ConfigError(f"{out_dir / SWEEP_FILE} is not a sweep's record (a JSON object)")
        records = [RunDir(path).require_run() for path, _ in members]
    except ConfigError as exc:
        raise DamagedRun(f"{exc}: the population in {out_dir} cannot resume without it") from None
    for (path, member), record in zip(members, records):
        stored = record.get("config_hash")
        if stored != config_hash(member):
            raise DamagedRun(f"{path / RUN_RECORD} holds another run's config (hash {stored}, not "
                             f"{config_hash(member)}): put this member's own back before {out_dir} resumes")


def _write_member_chunk(member: Trainer, run: RunDir, writer: Any, tables: Tables, m: dict[str, np.ndarray],
                        state: Any, step: int, has_shared: bool, episodes: int, last_good: int | None,
                        experts: Callable[[Any], list[dict[str, Any]]],
                        probe: Callable[[Any], list[dict[str, Any]]] | None,
                        environment: Callable[[], dict[str, np.ndarray]] | None = None) -> float:
    """One member's chunk, as its run alone writes it (:func:`mtdqn.train.drive.drive`): checked (a divergence
    names the member; ``last_good``: the step of the population's latest checkpoint), its rows, its experts'
    rows, and where ``probe`` is given a greedy evaluation and the gradient probe of ``state`` (the member's
    entries) appended to ``tables`` and written; the seconds the evaluation took.  ``environment``: where
    the member's observations or rewards are non-finite, asked if it diverged
    (:func:`mtdqn.train.drive.check_finite`)."""
    agent = member.agent
    try:
        check_finite(member, m, step, last_good, environment)
    except TrainingDiverged as exc:
        raise TrainingDiverged(f"{run.path.name}: {exc}") from None
    new = chunk_tables(agent.task_set.names, agent.seeds, has_shared, m, step)
    if agent.arch.experts:
        new.experts.extend({**row, "step": step} for row in experts(state))
    t_eval = time.perf_counter()
    if probe is not None:
        new.evals.extend(greedy_rows(agent, state.params, episodes, step))
        new.grad_probe.extend({**row, "step": step} for row in probe(state))
    eval_s = time.perf_counter() - t_eval
    tables.extend(new)
    write_tensorboard(writer, new, step)
    run.write_tables(tables)
    return eval_s
