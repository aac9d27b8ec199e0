"""The driving loop: a run's chunks, one after another, with what happens between them.

After every chunk its metrics are checked (a non-finite loss stops the run
before anything of it is written) and appended to the run directory; on the
:class:`Schedule` a greedy evaluation (which early stopping and keep-best
observe) and a checkpoint.  At the end each seed's best parameters are
restored where the options ask for it and the final state is checkpointed.
The compiled loop and the Gymnasium host loop are driven alike
(:class:`~mtdqn.train.chunks.ChunkRunner`).
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from mtdqn.checkpoint import load_checkpoint, save_checkpoint
from mtdqn.config import every_chunks
from mtdqn.errors import TrainingDiverged
from mtdqn.evaluate import EvalStream, eval_seed, evaluate_params
from mtdqn.rundir import RunDir, Tables, chunk_tables, eval_rows, evaluated, evals_until, write_tensorboard
from mtdqn.runoptions import OnEval, RunOptions
from mtdqn.tasknames import short_name
from mtdqn.train.agent import Agent
from mtdqn.train.chunks import ChunkRunner
from mtdqn.train.early_stop import EarlyStopping
from mtdqn.train.loop import Trainer, seed_keys

__all__ = ["Schedule", "StartFrom", "Trained", "drive", "kept_as", "check_finite", "greedy_rows", "grad_probe_fn",
           "expert_probe_fn"]

# (agent, a new run's fresh state) -> (its starting state, a JSON record of that start): see train().
StartFrom = Callable[[Agent, Any], tuple[Any, dict[str, Any]]]


@dataclass(frozen=True)
class Schedule:
    """The run's chunks and its every-N-env-steps options in whole chunks: rounded here, and only here."""

    steps_per_chunk: int  # env steps per task of one chunk (logging window)
    num_chunks: int
    checkpoint_chunks: int  # chunks between checkpoints; 0: the final one only
    eval_chunks: int  # chunks between greedy evaluations during training; 0: the final one only

    @staticmethod
    def of(agent: Agent, options: RunOptions) -> Schedule:
        steps = agent.derived.iters_per_chunk * agent.cfg.num_envs
        return Schedule(steps, agent.derived.num_chunks, every_chunks(options.checkpoint_every, steps),
                        every_chunks(options.eval_every, steps))

    def kept_steps(self, first_chunk: int) -> tuple[int, int]:
        """Of a run resumed from chunk ``first_chunk``: the checkpoint's env step, and the step its metrics must
        reach (:meth:`RunDir.tables_until`).  An unfinished run wrote every chunk's rows up to its checkpoint; a
        finished one may have stopped early (its checkpoint is recorded as the last chunk's), so only its first
        chunk's rows are sure.  (Its evaluations: the checkpoint records how far they went, ``evals_until``;
        this schedule's cadence may be one a resume changed.)"""
        last = first_chunk * self.steps_per_chunk
        return last, (self.steps_per_chunk if first_chunk >= self.num_chunks else last)

    @property
    def eval_every_used(self) -> int:
        """Env steps per task between evaluations as run (``eval_every`` asks; this is its rounding)."""
        return self.eval_chunks * self.steps_per_chunk


class Trained(NamedTuple):
    """What the loop leaves for the summary."""

    state: Any  # the final state (each seed's best parameters where restored)
    tables: Tables  # every chunk's rows and the evaluations during training
    compile_s: float
    loop_s: float  # seconds spent training the chunks run here (evaluations during training excluded)
    first_chunk: int  # the chunk this process started at (a resumed run: its checkpoint's)
    last_chunk: int  # the chunk it ended after (before the last when early stopping stopped it)
    early: dict[str, Any] | None  # the early-stopping or keep-best record, under kept_as(options)
    eval_s: float  # seconds spent in the evaluations (and gradient probes) during training


def kept_as(options: RunOptions) -> str:
    """The summary and checkpoint key of the stopper's record."""
    return "keep_best" if options.keep_best else "early_stop"


def drive(trainer: Trainer, runner: ChunkRunner, run_dir: RunDir, options: RunOptions, schedule: Schedule,
          verified: dict | None, progress: bool, ckpt_bytes: int, start_from: StartFrom | None = None,
          on_eval: OnEval | None = None) -> Trained:
    """Run the chunks not yet done (``verified``: a resumed run's checkpoint record), writing after each; then
    restore the best parameters where asked and checkpoint the final state.  ``on_eval`` sees every greedy
    evaluation during training (:data:`~mtdqn.runoptions.OnEval`)."""
    agent = trainer.agent
    state, compile_s = runner.start(seed_keys(agent.seeds))
    tables = Tables.empty()
    first_chunk = 0
    if verified is not None:
        state, meta = load_checkpoint(run_dir.path, trainer.agent.cfg, state, verified)
        first_chunk = meta["chunk"]
        tables = run_dir.tables_until(*schedule.kept_steps(first_chunk), evals_until(meta))
    elif start_from is not None:
        state, start_record = start_from(agent, state)
        run_dir.write_start(start_record)
    stopper = _stopper(agent, state.params, options) if first_chunk < schedule.num_chunks else None
    t_loop = time.perf_counter()
    state, last_chunk, eval_s = _run_chunks(trainer, runner, run_dir, options, schedule, state, tables,
                                            first_chunk, stopper, progress, ckpt_bytes, on_eval)
    loop_s = time.perf_counter() - t_loop - eval_s
    early = verified.get(kept_as(options)) if verified is not None else None
    if stopper is not None:  # the best parameters of every seed become the run's final ones
        state = stopper.restore(state)
        early = stopper.record(agent.seeds)
    if first_chunk < schedule.num_chunks:  # resuming a finished run must not rewrite its live checkpoint
        # An early-stopped run is finished: its checkpoint is recorded as the last chunk's.
        save_checkpoint(run_dir.path, trainer.agent.cfg, state, schedule.num_chunks,
                        {**options.record(), **({kept_as(options): early} if early else {})},
                        lambda: run_dir.write_options(options.record()))
    return Trained(state, tables, compile_s, loop_s, first_chunk, last_chunk, early, eval_s)


def _stopper(agent: Agent, params: Any, options: RunOptions) -> EarlyStopping | None:
    """What watches the evaluations during training: early stopping, keep-best, or nothing."""
    if options.patience:
        return EarlyStopping.anchored(agent, params, options.patience, options.eval_episodes)
    if options.keep_best:
        return EarlyStopping.keeping_best(len(agent.seeds))
    return None


def _run_chunks(trainer: Trainer, runner: ChunkRunner, run_dir: RunDir, options: RunOptions, schedule: Schedule,
                state: Any, tables: Tables, first_chunk: int, stopper: EarlyStopping | None, progress: bool,
                ckpt_bytes: int, on_eval: OnEval | None) -> tuple[Any, int, float]:
    """Chunks ``first_chunk``.. with a progress bar: (state, the chunk it ended after, seconds evaluating)."""
    agent = trainer.agent
    has_shared = agent.arch.adapter_shared or any(agent.arch.torso_shared)
    # A resumed run starts after its checkpoint's chunk (>= 1): the last good checkpoint, and where its
    # TensorBoard events are cut.
    last_good = first_chunk * schedule.steps_per_chunk if first_chunk else None
    last_chunk = schedule.num_chunks
    writer = run_dir.tensorboard(purge_step=first_chunk * schedule.steps_per_chunk + 1 if first_chunk else None)
    t_loop, eval_s = time.perf_counter(), 0.0
    probe = None  # the gradient probe, compiled at the first evaluation that needs it
    experts = expert_probe_fn(trainer)  # a mixture of experts' weights and similarity, after every chunk
    try:
        with _progress(progress) as bar:
            task_id = bar.add_task("train" if runner.resumable else "train (host)", total=agent.derived.env_steps,
                                   completed=first_chunk * schedule.steps_per_chunk, rate="", returns="")
            for chunk in range(first_chunk, schedule.num_chunks):
                state, m = runner(state, chunk * agent.derived.iters_per_chunk)
                m = jax.tree.map(np.asarray, m)
                step = (chunk + 1) * schedule.steps_per_chunk
                check_finite(trainer, m, step, last_good, lambda: nonfinite_from_environment(state))
                run_dir.ensure_space(ckpt_bytes)
                new = chunk_tables(agent.task_set.names, agent.seeds, has_shared, m, step)
                new.experts.extend({**row, "step": step} for row in experts(state))
                stop = False
                # the last step's parameters are a candidate of early stopping and keep-best too: evaluated here
                # on the validation starts (the final evaluation, on its own, is of the parameters restored)
                last = chunk + 1 == schedule.num_chunks
                if schedule.eval_chunks and ((chunk + 1) % schedule.eval_chunks == 0 and not last
                                             or last and stopper is not None):
                    t_eval = time.perf_counter()
                    rows = greedy_rows(agent, state.params, options.eval_episodes, step)
                    new.evals.extend(rows)
                    if not last:  # the final state's probe is the end of run's (summary.finish)
                        probe = probe or grad_probe_fn(trainer, options.probes)
                        new.grad_probe.extend({**row, "step": step} for row in probe(state))
                    if stopper is not None:
                        stop = stopper.observe(stopper.scores(rows, agent.task_set.names, agent.seeds),
                                               state.params, step, last=last)
                    eval_s += time.perf_counter() - t_eval
                tables.extend(new)
                write_tensorboard(writer, new, step)
                run_dir.write_tables(tables)
                if schedule.checkpoint_chunks and (chunk + 1) % schedule.checkpoint_chunks == 0 and not last:
                    writer.flush()  # the scalars up to the checkpoint on disk before it (a kill -9 left empty
                    # event files, and the resume wrote only its own chunks'; later ones it purges)
                    save_checkpoint(run_dir.path, trainer.agent.cfg, state, chunk + 1,
                                    {**options.record(), **evaluated(tables)},
                                    lambda: run_dir.write_options(options.record()))
                    last_good = step
                _show_rate(bar, task_id, trainer, m, step, (chunk + 1 - first_chunk) * schedule.steps_per_chunk,
                           t_loop)
                if on_eval is not None and new.evals and not last:
                    on_eval(step, tables.evals)
                if stop:
                    last_chunk = chunk + 1
                    break
        jax.block_until_ready(state)
    finally:
        writer.close()
    return state, last_chunk, eval_s


def grad_probe_fn(trainer: Trainer, on: bool = True) -> Callable[[Any], list[dict[str, Any]]]:
    """The run's gradient probe (:mod:`mtdqn.diagnostics`) as a function of a state (every seed); no rows
    without a shared parameter or when not ``on`` (:attr:`RunOptions.probes`).  A run takes it at every
    evaluation during training and at the end, a sweep's member too."""
    if not on:
        return lambda state: []
    from mtdqn import diagnostics  # imported when first needed: its CKA pulls in the analysis stack

    return diagnostics.gradient_probe(trainer) or (lambda state: [])


def expert_probe_fn(trainer: Trainer) -> Callable[[Any], list[dict[str, Any]]]:
    """The run's expert diagnostics (:mod:`mtdqn.diagnostics`), after every chunk; no rows without experts."""
    if not trainer.agent.arch.experts:
        return lambda state: []
    from mtdqn import diagnostics  # as grad_probe_fn

    return diagnostics.expert_probe(trainer) or (lambda state: [])


def check_finite(trainer: Trainer, m: dict[str, np.ndarray], step: int, last_good: int | None,
                 environment: Callable[[], dict[str, np.ndarray]] | None = None) -> None:
    """Raise before anything of a chunk with a non-finite loss or Q-value is written.

    The advice names the cause where it is the environment's, which no learner option fixes
    (``environment``: :func:`nonfinite_from_environment` of the state, asked only on divergence)."""
    bad = ~np.isfinite(m["max_abs_loss"]) | ~np.isfinite(m["q_mean"])
    if bad.any():
        s, i = map(int, np.argwhere(bad)[0])
        task = trainer.agent.task_set.names[i]
        first = step - trainer.agent.derived.iters_per_chunk * trainer.agent.cfg.num_envs
        kept = f"last good checkpoint kept (step {last_good:,})" if last_good is not None else \
            "no checkpoint was written"
        found = environment() if environment is not None else {}
        causes = [what for what, where in found.items() if where[s, i]]
        advice = (f"task {task}'s environment gives non-finite {' and '.join(causes)} (no learner option fixes "
                  "that)" if causes else "lower --lr or set --max-grad-norm")
        raise TrainingDiverged(
            f"training diverged: non-finite loss or Q-value in task {task} "
            f"(seed {trainer.agent.seeds[s]}) between env step {first:,} and {step:,}; {kept}; {advice}"
        )


def nonfinite_from_environment(state: Any) -> dict[str, np.ndarray]:
    """Where each seed's task (seeds, tasks) holds a non-finite observation or reward, in its replay or its
    running episode: what :func:`check_finite` asks after a divergence (reduced where the state lives; the
    host loop's state, which keeps its environments in Python, gives nothing)."""
    def bad(x: Any) -> jax.Array | None:  # (seeds, tasks, ...) -> (seeds, tasks)
        if x is None or getattr(x, "ndim", 0) < 2 or not jnp.issubdtype(x.dtype, jnp.floating):
            return None
        return ~jnp.isfinite(x).reshape(*x.shape[:2], -1).all(-1)

    def any_of(*xs: Any) -> np.ndarray | None:
        found = [b for b in map(bad, xs) if b is not None]
        return np.asarray(functools.reduce(jnp.logical_or, found)) if found else None

    replay = getattr(state, "replay", None)
    data = replay.data if replay is not None else None
    flags = {"observations": any_of(getattr(state, "obs", None), getattr(data, "obs", None),
                                    getattr(data, "next_obs", None)),
             "rewards": any_of(getattr(state, "ep_return", None), getattr(data, "reward", None))}
    return {what: where for what, where in flags.items() if where is not None}


def greedy_rows(agent: Agent, params: Any, episodes: int, step: int) -> list[dict[str, Any]]:
    """A greedy evaluation during training of every seed at step ``step``, as rows of ``evals.parquet``."""
    returns = evaluate_params(agent, params, eval_seed(agent.cfg.seed, EvalStream.DURING_TRAINING), episodes,
                              eps=0.0, step=step)
    return eval_rows(agent.task_set.names, agent.seeds, returns.total, returns.discounted, step)


def _returns_text(names: tuple[str, ...], episode_return: np.ndarray) -> str:
    """Mean return over seeds per task for the progress bar; tasks without a finished episode are left out."""
    parts = []
    for i, name in enumerate(names):
        finite = episode_return[:, i][np.isfinite(episode_return[:, i])]
        if finite.size:
            parts.append(f"{short_name(name)}={finite.mean():.3g}")
    return " ".join(parts)


def _progress(enabled: bool) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.completed:,}/{task.total:,} steps"),
        TextColumn("{task.fields[rate]}"), TextColumn("{task.fields[returns]}"), TimeRemainingColumn(),
        disable=not enabled, transient=False,
    )


def _show_rate(bar: Progress, task_id: Any, trainer: Trainer, m: dict[str, np.ndarray], step: int,
               steps_done: int, t_loop: float) -> None:
    """Progress bar: env steps, env-steps/s over all tasks and seeds, and the latest mean returns."""
    agent = trainer.agent
    rate = steps_done * agent.num_tasks * agent.cfg.seeds / max(time.perf_counter() - t_loop, 1e-9)
    bar.update(task_id, completed=step, rate=f"{rate:,.0f} env-steps/s",
               returns=_returns_text(agent.task_set.names, m["episode_return"]))
