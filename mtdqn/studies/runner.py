"""Run a study: one cell per variant (all its seeds vmapped in one program), then the report.

Layout written (read by :func:`mtdqn.analysis.build_report`)::

    STUDY/study.json             name, tasks, variants, reference, seeds, steps (+ the full spec)
    STUDY/cells/<variant>/       a run directory of :func:`mtdqn.train.run.train`; its summary.json
                                 also holds variant, thresholds, and status ok|failed with the error
    STUDY/report/                written last, from the stored cells only

A cell is the pure function :func:`~mtdqn.studies.cell.run_cell` of its
:class:`~mtdqn.studies.cell.CellConfig` (:mod:`mtdqn.studies.cell`); the local
and Ray backends only map it over the cells still to do.  Re-running a
study skips cells whose summary says ``ok`` (after checking they were made
with the same config), resumes a killed cell from its checkpoint when it has
one, and redoes failed or half-written cells.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import shlex
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from rich.console import Console

from mtdqn.config import TrainConfig, cadence_as_run, derive, first_update_iteration, rounded_schedule
from mtdqn.errors import ConfigError, MtdqnWarning, RoundedScheduleWarning, count, warn_user
from mtdqn.io import held, provenance, write_json
from mtdqn.rundir import STUDY_CELLS, STUDY_RECORD
from mtdqn.studies.cell import (CellConfig, OnEvent, cell_status, check_devices, check_out_dir, read_summary,
                                resumable_from, run_cell, skip_finished)
from mtdqn.studies.ray_backend import RayBackend, check_tasks_reach_ray
from mtdqn.studies.spec import StudySpec, variant_config

__all__ = ["StudyResult", "Estimate", "cell_configs", "estimate_training_time", "cell_evaluations",
           "progress_printer", "run_study", "build", "build_groups"]

@dataclass(frozen=True)
class StudyResult:
    out_dir: Path
    summaries: dict[str, dict[str, Any]]
    """Variant -> its cell's summary.json (also for cells skipped as already finished)."""
    report: Path | None
    """report.html, or None when the report was not built."""


def cell_configs(spec: StudySpec, devices: int = 0) -> list[CellConfig]:
    """One cell per variant, in the spec's order (reference first); ``devices``: each cell's seed layout."""
    options = dataclasses.replace(spec.run_options, devices=devices)
    return [CellConfig(v, variant_config(spec, v), dict(spec.thresholds), options) for v in spec.variants]


def warn_of_rounded_budgets(name: str, cells: list[CellConfig], advice: str | None = None,
                            cadence: bool = True) -> None:
    """A study's ``steps`` and evaluation cadence that its cells' logging windows round up, said once
    (RoundedScheduleWarning), as `mtdqn train` says it: a study of 2,000 steps trained 10,000 per cell with only
    the report's header saying so.  (:mod:`mtdqn.studies.spec` picks windows that divide the cadence and
    refuses a set one that does not; one set in env steps that are not whole vector steps is rounded up, as the
    MiniGrid presets' 5,000 on 16 envs: evaluations every 20,032.)  ``advice``: how to train as asked where a
    study has no options for the user to set (:func:`preset_advice`); ``cadence`` False for such a study: its
    cadence is not the user's to change (the MiniGrid presets' 20,032 was warned at every budget, a whole number
    of windows included)."""
    rounded: dict[str, list[str]] = {}
    for cell in cells:
        parts, window = rounded_schedule(cell.config, cell.run_options.eval_every if cadence else 0)
        if parts:
            rounded.setdefault(f"{' and '.join(parts)} env steps per task (whole log_every windows of {window:,})",
                               []).append(cell.variant)
    if rounded:
        said = "; ".join(f"{what} in cells {', '.join(variants)}" for what, variants in rounded.items())
        how = advice or ("give steps a multiple of the window, or options.log_every a divisor of steps that is a "
                         "multiple of num_envs")
        warn_user(f"study {name}: {said}; to train as asked, {how}", RoundedScheduleWarning)


def check_evaluation_steps(name: str, cells: list[CellConfig]) -> None:
    """Refuse a study whose cells evaluate at different steps (one line, before anything is written): a
    ``log_every`` some variants' vector steps round (1,000 on 16 envs runs as 1,008: evaluations every 10,080
    beside another's 10,000), so the report read their AUC and steps to threshold on different grids."""
    runs: dict[int, list[str]] = {}
    for cell in cells:
        if cell.run_options.eval_every:
            window = derive(cell.config).iters_per_chunk * cell.config.num_envs
            runs.setdefault(cadence_as_run(cell.run_options.eval_every, window), []).append(cell.variant)
    if len(runs) > 1:
        said = "; ".join(f"{', '.join(v)} every {every:,}" for every, v in sorted(runs.items()))
        raise ConfigError(f"study {name}: its cells would evaluate at different steps ({said}: log_every rounded up "
                          "to whole vector steps of each cell's num_envs); give options.log_every a multiple of "
                          "every variant's num_envs")


def warn_of_no_evaluations(name: str, cells: list[CellConfig], preset: bool) -> None:
    """Cells whose evaluation cadence does not fit their budget, said once: evaluated at their end alone, they
    have no greedy learning curve, and the report's AUC and steps to threshold read the ε-greedy training
    returns instead (the minigrid-mt3 preset at ``--steps 5000``, under its 20,000: greedy returns of 0 beside
    "reached by 1/2 seeds", with only the report's Methods saying where that came from)."""
    short: dict[tuple[int, int], list[str]] = {}
    for cell in cells:
        every, steps = cell.run_options.eval_every, derive(cell.config).env_steps
        if every and steps <= every:
            short.setdefault((every, steps), []).append(cell.variant)
    if short:
        said = "; ".join(f"evaluations every {every:,} env steps do not fit in {steps:,} (cells {', '.join(v)})"
                         for (every, steps), v in short.items())
        how = ("give --steps above the cadence" if preset else
               "give steps above options.eval_every, or a smaller options.eval_every")
        warn_user(f"study {name}: {said}: each is evaluated at its end alone, so the report's AUC and steps to "
                  f"threshold will read ε-greedy training returns; for greedy learning curves, {how}", MtdqnWarning)


def preset_advice(num_envs: int) -> str:
    """How a transfer or groups preset trains its ``--steps`` as asked: it picks the longest logging window
    that divides them (:func:`mtdqn.studies.presets.cadence`), and whole vector steps of ``num_envs`` always
    do."""
    return f"give --steps a multiple of num_envs ({num_envs}): the preset then picks a window that divides it"


def _describe(summary: dict[str, Any] | None) -> str:
    if not summary:
        return ""
    if summary.get("status") != "ok":
        return f"[red]failed[/red]: {summary.get('error')}"
    import numpy as np

    # The report's headline: final_score (the mean of the last evaluations) where the run has it; runs from
    # before evaluation during training have only the end-of-training evaluation, and say so.
    key, name = ("final_score", "final score") if "final_score" in summary else ("final_eval", "final evaluation")
    # the seeds' sample standard deviation, as the report's (numpy's default, n not n - 1, read 33.7 for 37.7)
    evals = " · ".join(f"{t} {np.mean(v):.1f} ± {np.std(v, ddof=1) if len(v) > 1 else 0.0:.1f}"
                       for t, v in summary.get(key, {}).items())
    return f"[green]ok[/green] · {name}, greedy return (mean ± sd over seeds) {evals}"


def _resuming(at: dict[str, int]) -> str:
    """Where a resumed cell continues (:func:`~mtdqn.studies.cell.resumable_from`)."""
    step, of = at["step"], at["of"]
    return (f"resuming from env step {step:,} of {of:,} (its checkpoint)" if step < of else
            f"trained ({of:,} env steps, its last checkpoint): evaluating it")


def progress_printer(console: Console, total: int) -> OnEvent:
    """One line per cell event: started, skipped, finished (with its returns) or failed; each one line however
    narrow the console (a log's is 80 columns), for grep."""
    say = functools.partial(console.print, soft_wrap=True)
    started: dict[str, float] = {}
    done = [0]

    def on_event(event: str, cell: CellConfig, summary: dict[str, Any] | None) -> None:
        label = (f"[bold]{cell.variant}[/bold] ({count(cell.config.seeds, 'seed')}, "
                 f"sharing={cell.config.network.sharing})")
        if event in ("start", "resume", "submit"):
            started[cell.variant] = time.perf_counter()
            if event == "start":
                say(f"cell {done[0] + 1}/{total} {label}: running")
            elif event == "resume":  # summary: where its checkpoint is (resumable_from)
                say(f"cell {done[0] + 1}/{total} {label}: {_resuming(summary)}")
            else:  # summary: None, or where a resumed cell's checkpoint is
                say(f"{label}: submitted to Ray" + ("" if summary is None else f", {_resuming(summary)}"))
            return
        done[0] += 1
        if event == "skip":
            say(f"cell {done[0]}/{total} {label}: already finished, skipped")
        else:
            took = time.perf_counter() - started.get(cell.variant, time.perf_counter())
            say(f"cell {done[0]}/{total} {label}: {_describe(summary)} ({took:.0f} s)")

    return on_event


def run_local(todo: list[tuple[CellConfig, Path]], on_event: OnEvent, progress: bool) -> None:
    """Sequential, in this process: the default backend."""
    for cell, cell_dir in todo:
        at = resumable_from(cell, cell_dir)
        on_event("start", cell, None) if at is None else on_event("resume", cell, at)
        on_event("done", cell, run_cell(cell, cell_dir, progress=progress))


class Estimate(NamedTuple):
    """A study's time on this machine, measured on a probe of each of its programs (:func:`estimate_training_time`)."""

    train_s: float  # every cell's init, compile and training loop
    eval_s: float  # every cell's greedy evaluations: during training, the final one and the random policy's
    rate: float  # env-steps/s (all seeds and tasks) of the first cell's probe, in its updating region
    rates: dict[str, float] = {}  # the same for each probed cell (one per program), by variant
    assumed: tuple[str, ...] = ()  # cells of another program priced as the first's: too short a study to probe it


class _Probe(NamedTuple):
    """One program's measured costs (:func:`_probe`)."""

    compile_s: float  # init, compile and a warm-up chunk
    warming_s: float  # per iteration before learning starts
    updating_s: float  # per iteration after
    eval_compile_s: float
    eval_run_s: float  # one greedy evaluation of every seed
    rate: float  # env-steps/s of the updating region


PROBE_SHARE = 0.05
"""The most of a study's estimated time that probing its other programs may add: a shorter study prices them as
its first cell's (4 programs of 2-minute cells took 48 s to probe)."""


def estimate_training_time(todo: list[CellConfig], min_probe_s: float = 0.5,
                           probe_all: bool | None = None) -> Estimate:
    """The estimated time of ``todo`` on this machine: training and greedy evaluations (:class:`Estimate`).

    Measured, not guessed: each program among the cells (a cell's config but for its budget, seed and logging
    window: its network, strategy, seeds, devices, update schedule and learning start) is probed once, in
    chunks of at least 200 iterations, compiled, warmed up and timed until ``min_probe_s`` has passed, in
    both regions a run goes through: before learning starts (env steps only) and after (an update every
    ``train_every``), one program, started at those iterations.  Each cell's iterations in each region are
    priced at its program's rates (at 20k steps of the classic preset a quarter of the run has no updates; a
    probe of the update region alone overestimated it by 55%; a probe of the first cell alone priced `moe:2`
    and `moore:2` cells as the `independent` one, ~3 min for a study that took 9), and compiles as long as
    its probe did (``benchmarks/study_estimate.py`` compares the estimate with the time a cell then trains).
    Evaluations are timed on the probe's parameters, compiled and then run once: each cell pays the compile
    and one run per evaluation (every ``eval_every``, the final greedy one and the random policy's: at a few
    thousand steps they took half a cell's time).  Gradient probes, checkpoints and the report are not
    included.  ``probe_all``: probe every program (True), the first alone (False), or (None) the others only
    where probing them adds at most :data:`PROBE_SHARE` of the time the first's prices the study at.
    """
    from mtdqn.config import config_to_dict

    def program(cell: CellConfig) -> str:
        return json.dumps(config_to_dict(dataclasses.replace(cell.config, steps=1, seed=0, log_every=1)),
                          sort_keys=True, default=str) + str(cell.run_options.devices)

    def priced(cell: CellConfig, p: _Probe) -> tuple[float, float]:
        c = derive(cell.config)
        pre = min(first_update_iteration(c), c.total_iters)
        return (p.compile_s + pre * p.warming_s + (c.total_iters - pre) * p.updating_s,
                p.eval_compile_s + cell_evaluations(cell) * p.eval_run_s)

    keys = [program(cell) for cell in todo]
    t0 = time.perf_counter()
    first = _probe(todo[0], min_probe_s)
    probe_s = time.perf_counter() - t0
    if probe_all is None:
        probe_all = (len(set(keys)) - 1) * probe_s <= PROBE_SHARE * sum(sum(priced(c, first)) for c in todo)
    probes, rates = {keys[0]: first}, {todo[0].variant: first.rate}
    assumed = []
    train_s = eval_s = 0.0
    for cell, key in zip(todo, keys):
        if key not in probes and probe_all:
            probes[key] = _probe(cell, min_probe_s)
            rates[cell.variant] = probes[key].rate
        elif key not in probes:
            assumed.append(cell.variant)
        train, evaluations = priced(cell, probes.get(key, first))
        train_s, eval_s = train_s + train, eval_s + evaluations
    return Estimate(train_s, eval_s, first.rate, rates, tuple(assumed))


def _probe(cell: CellConfig, min_probe_s: float) -> _Probe:
    """A cell's program, compiled and timed in both regions of a run, and one greedy evaluation of it."""
    import jax

    from mtdqn.devices import padded_seeds, seed_devices
    from mtdqn.evaluate import EvalStream, eval_seed, evaluate_params
    from mtdqn.train.agent import make_agent
    from mtdqn.train.chunks import CompiledChunks
    from mtdqn.train.loop import make_trainer, seed_keys

    first = cell.config
    d = derive(first)
    every = d.train_every_iters
    iters = every * max(1, -(-200 // every))  # whole update periods, at least 200 iterations
    devices = seed_devices(first.seeds, cell.run_options.devices)
    # Dummy seeds that fill the last device cost a fresh state per chunk: amortized over a real chunk,
    # not over a probe's few chunks, so the probe trains them as ordinary seeds.
    probe = dataclasses.replace(first, steps=iters * first.num_envs, log_every=iters * first.num_envs,
                                seeds=padded_seeds(first.seeds, devices))
    chunks = CompiledChunks(make_trainer(make_agent(probe), devices))  # as train() compiles and runs them
    learning = first_update_iteration(d)  # the same in the probe: same learning start, envs and schedule
    start = time.perf_counter()
    state, _ = chunks.start(seed_keys(chunks.trainer.agent.seeds))
    state, metrics = chunks(state, learning)
    jax.block_until_ready(metrics)
    compile_s = time.perf_counter() - start  # init, compile and a warm-up chunk

    def per_iter(first_iter: int) -> float:
        nonlocal state
        runs, t0 = 0, time.perf_counter()
        while runs == 0 or time.perf_counter() - t0 < min_probe_s:
            state, out = chunks(state, first_iter + runs * iters)
            jax.block_until_ready(out)
            runs += 1
        return (time.perf_counter() - t0) / (runs * iters)

    updating = per_iter(learning + iters)
    warming = per_iter(0) if learning >= iters else updating  # a region shorter than a chunk: priced as updating
    key = eval_seed(first.seed, EvalStream.DURING_TRAINING)
    t0 = time.perf_counter()
    evaluate_params(chunks.trainer.agent, state.params, key, cell.run_options.eval_episodes)
    t1 = time.perf_counter()
    evaluate_params(chunks.trainer.agent, state.params, key, cell.run_options.eval_episodes)
    eval_run = time.perf_counter() - t1
    return _Probe(compile_s, warming, updating, max(0.0, t1 - t0 - eval_run), eval_run,
                  first.num_envs * len(first.tasks) * first.seeds / updating)


def cell_evaluations(cell: CellConfig) -> int:
    """How many greedy evaluations of every seed a cell runs: one every ``eval_every`` during training (as the
    loop rounds it: :class:`~mtdqn.train.drive.Schedule`; early stopping's and keep-best's of the last chunk
    too), the final one and the random policy's."""
    from mtdqn.train.agent import make_agent
    from mtdqn.train.drive import Schedule

    schedule = Schedule.of(make_agent(cell.config, devices=None), cell.run_options)
    if not schedule.eval_chunks:
        return 2
    kept = cell.run_options.keep_best or cell.run_options.patience  # evaluated at the last step too
    return (schedule.num_chunks - 1) // schedule.eval_chunks + bool(kept) + 2


def _estimate_line(todo: list[CellConfig]) -> str:
    """The study's estimated training time as one line; an estimate that cannot be made never stops a study."""
    if any(t.startswith("gym:") for t in todo[0].config.tasks):
        return "no time estimate for gym: tasks (their envs step on the host, outside the compiled program)"
    try:
        estimate = estimate_training_time(todo)
    except Exception as exc:  # noqa: BLE001 - an estimate is a courtesy; the cells report real errors themselves
        return f"no time estimate: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    probed = ", ".join(f"{variant} {rate:,.0f}" for variant, rate in estimate.rates.items())
    shared = (f"; cells {', '.join(estimate.assumed)}, of other programs, priced as {todo[0].variant!r}: too short a "
              "study to probe each (they may run several times slower: experts, per-task gradient strategies)"
              if estimate.assumed else "")
    return (f"estimated time here: ~{_duration(estimate.train_s + estimate.eval_s)} for {len(todo)} cell(s): "
            f"training ~{_duration(estimate.train_s)}, greedy evaluations ~{_duration(estimate.eval_s)} (measured "
            f"in short probes, env-steps/s: {probed}{shared}; resumed cells counted whole; gradient probes, "
            "checkpoints and the report not included)")


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def budget_text(asked: int, configs: list[TrainConfig]) -> str:
    """A study's budget for its start line: the steps asked and, where its cells round them up to whole logging
    windows, what they train (the line said "1 env steps per task" of a study that trained 1,000; a rerun that
    skips finished cells does not warn of the rounding again)."""
    trained = sorted({derive(c).env_steps for c in configs})
    if trained in ([], [asked]):
        return count(asked, "env step")
    span = f"{trained[0]:,}" if len(trained) == 1 else f"{trained[0]:,}–{trained[-1]:,}"
    return f"{count(asked, 'env step')} ({span} trained: whole logging windows)"


def study_record(spec: StudySpec) -> dict[str, Any]:
    """study.json: the keys the analysis reads, plus the full spec and provenance."""
    return {
        "name": spec.name, "tasks": list(spec.tasks), "variants": list(spec.variants), "reference": spec.reference,
        "seeds": spec.seed_list, "steps": spec.steps, "thresholds": spec.thresholds, "options": spec.options,
        "variant_options": spec.variants, "eval_episodes": spec.run_options.eval_episodes,
        "eval_every": spec.run_options.eval_every, "source": spec.source, "headline": spec.headline,
        "command": shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv and sys.argv[0] else None,
        **provenance(),
    }


def run_study(spec: StudySpec, out_dir: Path, *, ray_address: str | None = None, num_cpus: int | None = None,
              progress: bool = True, console: Console | None = None, report: bool = True,
              devices: int = 0) -> StudyResult:
    """Run every unfinished cell of ``spec`` into ``out_dir``, then build the report.

    ``devices`` splits each cell's seeds over local devices (0: as many as the seeds can use).

    Everything that can be wrong with the input (the spec, a conflicting
    finished cell, an unreachable Ray address) is raised as a ConfigError
    before anything is written.
    """
    out_dir = Path(out_dir)
    console = console or Console(quiet=not progress)
    if ray_address is not None:
        check_tasks_reach_ray(spec.tasks)
    check_out_dir(out_dir, spec.name)
    check_devices(spec.seeds, devices, local=ray_address is None)
    cells = [(cell, out_dir / STUDY_CELLS / cell.variant) for cell in cell_configs(spec, devices)]
    statuses = {cell.variant: cell_status(cell, d) for cell, d in cells}
    todo = [(c, d) for c, d in cells if statuses[c.variant] != "done"]
    on_event = progress_printer(console, len(cells))
    if ray_address is not None and todo:
        backend: Any = RayBackend(ray_address, num_cpus=num_cpus)
    else:
        backend = nullcontext()
    # connect first: an unreachable cluster must fail before anything is written; then the rounding warning (an
    # error under -W error: nothing written yet), then one study per folder (the hold makes the folder)
    with backend:
        preset = spec.source.startswith("preset ")  # its options are its own: only --steps is the user's
        if todo:  # beside the finished ones too (a variant added to a study); a study with nothing to train reports
            check_evaluation_steps(spec.name, [c for c, _ in cells])
        warn_of_rounded_budgets(spec.name, [c for c, _ in todo], "give --steps a whole number of windows (one at "
                                "least)" if preset else None, cadence=not preset)
        warn_of_no_evaluations(spec.name, [c for c, _ in todo], preset)
        with held(out_dir):
            write_json(out_dir / STUDY_RECORD, study_record(spec))
            console.print(f"study [bold]{spec.name}[/bold]: {count(len(spec.tasks), 'task')} × "
                          f"{count(len(cells), 'variant')} × {count(spec.seeds, 'seed')}, "
                          f"{budget_text(spec.steps, [c.config for c, _ in cells])} per task → {out_dir}",
                          soft_wrap=True)
            for cell, d in cells:
                if statuses[cell.variant] == "done":
                    skip_finished(cell, d, on_event)
            if progress and todo and ray_address is None:
                console.print(_estimate_line([c for c, _ in todo]), soft_wrap=True)
            if ray_address is not None and todo:
                backend.run(todo, on_event)
            else:
                run_local(todo, on_event, progress)
            summaries = {cell.variant: read_summary(d / "summary.json") or {} for cell, d in cells}
            return StudyResult(out_dir, summaries, build(out_dir) if report else None)  # the report too, held


def build(out_dir: Path) -> Path:
    """Build the report of a stored study; malformed results become one-line ConfigErrors."""
    from mtdqn.analysis import build_report

    try:
        return Path(build_report(Path(out_dir))) / "report.html"
    except ValueError as exc:
        raise ConfigError(str(exc).splitlines()[0] if str(exc) else "report failed") from None


def build_groups(out_dir: Path) -> Path:
    """Write a stored groups study's groups.md (:func:`build`'s one-line errors); returns its path."""
    from mtdqn.analysis.group_report import write_groups_report

    try:
        return write_groups_report(Path(out_dir))
    except ValueError as exc:
        raise ConfigError(str(exc).splitlines()[0] if str(exc) else "groups report failed") from None
