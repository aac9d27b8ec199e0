"""Host side of a run: one driver for both training loops, from options to a finished run directory.

:func:`train` resolves the run's options once (a resumed run keeps its own),
builds the chunk runner — the compiled program (:class:`CompiledChunks`) or
the Gymnasium host loop (:class:`mtdqn.train.host_loop.HostChunk`) — and
:func:`_drive` runs its chunks the same way for both: metrics checked and
appended to the :class:`~mtdqn.rundir.RunDir` after every chunk, checkpoints
every N chunks, a progress bar, then evaluation and the summary.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from mtdqn.checkpoint import load_checkpoint, save_checkpoint, verify_checkpoint
from mtdqn.config import TrainConfig, check_new_run, check_train_budget, config_hash, config_to_dict
from mtdqn.devices import seed_devices
from mtdqn.errors import ConfigError, TrainingDiverged
from mtdqn.evaluate import EvalStream, eval_seed, evaluate_params
from mtdqn.finetune import transfer_summary
from mtdqn.graft import start_from_source
from mtdqn.io import provenance
from mtdqn.networks import count_params, describe_architecture
from mtdqn.rundir import (FINAL_SCORE_EVALS, METRIC_SCHEMA, RunDir, Tables, chunk_tables, eval_rows,
                          final_score_rule, final_score_steps, final_scores, table_frame, write_tensorboard)
from mtdqn.strategies import SCOPE
from mtdqn.train.agent import Agent, describe, make_agent, state_bytes
from mtdqn.train.early_stop import EarlyStopping
from mtdqn.train.loop import Trainer, make_trainer, seed_keys

__all__ = ["RunResult", "RunOptions", "CompiledChunks", "train", "evaluate_run"]


@dataclass
class RunResult:
    out_dir: Path
    summary: dict[str, Any]
    metrics: pd.DataFrame
    state: Any = field(repr=False, default=None)


@dataclass(frozen=True)
class RunOptions:
    """How a run is driven, apart from its config: recorded with every checkpoint (the record a resume
    reads) and in config.json, and kept on resume unless given anew.

    ``devices`` (the seed layout, resolved to a count) is what makes a
    resumed run bit-identical to an uninterrupted one.
    """

    checkpoint_every: int = 0  # env steps per task between checkpoints (whole chunks); 0: the final state only
    eval_episodes: int = 10  # greedy episodes per task and seed in each evaluation
    devices: int = 1  # local devices the seed axis is split over
    eval_every: int = 0  # env steps per task between greedy evaluations (whole chunks); 0: the final one only
    patience: int = 0  # stop after this many evaluations without improvement, best params restored; 0: never
    test_episodes: int = 0  # a test evaluation at the end on its own episode starts (test_eval.json); 0: none
    keep_best: bool = False  # restore each seed's best parameters by D'Eramo et al.'s rule (early_stop.py), no stop

    def record(self) -> dict[str, Any]:
        options = {"checkpoint_every": self.checkpoint_every, "eval_episodes": self.eval_episodes,
                   "devices": self.devices, "eval_every": self.eval_every}
        extra = {"patience": self.patience, "test_episodes": self.test_episodes,  # written only when used, so
                 "keep_best": self.keep_best}
        return {"options": {**options, **{k: v for k, v in extra.items() if v}}}  # older records read the same



# (agent, a new run's fresh state) -> (its starting state, a JSON record of that start): see train().
StartFrom = Callable[[Agent, Any], tuple[Any, dict[str, Any]]]


class ChunkRunner(Protocol):
    """What the driver needs of a training loop."""

    resumable: bool  # can a checkpoint restore its whole state (env states included)?

    def start(self, keys: jax.Array) -> tuple[Any, float]:
        """A fresh state for ``keys`` and the seconds spent compiling."""

    def __call__(self, state: Any, start_iter: int) -> tuple[Any, dict[str, Any]]:
        """One logging window of iterations from ``start_iter``: (state, per-seed chunk metrics)."""

    def close(self) -> None:
        """Release what the loop holds outside JAX (host environments)."""


class CompiledChunks:
    """The compiled loop as a :class:`ChunkRunner`: ``run_chunk`` compiled once, on a fresh state."""

    resumable = True

    def __init__(self, trainer: Trainer):
        self.trainer = trainer
        self.compiled: Any = None

    def start(self, keys: jax.Array) -> tuple[Any, float]:
        state = self.trainer.init(keys)
        t0 = time.perf_counter()
        # Lowered on the fresh state, so a resumed run runs the very same program.
        self.compiled = self.trainer.run_chunk.lower(state, jnp.int32(0)).compile()
        return state, time.perf_counter() - t0

    def __call__(self, state: Any, start_iter: int) -> tuple[Any, dict[str, Any]]:
        return self.compiled(state, jnp.int32(start_iter))

    def close(self) -> None:
        pass


def _check_finite(trainer: Trainer, m: dict[str, np.ndarray], step: int, last_good: int | None) -> None:
    """Raise before anything of a chunk with a non-finite loss or Q-value is written."""
    bad = ~np.isfinite(m["max_abs_loss"]) | ~np.isfinite(m["q_mean"])
    if bad.any():
        s, i = map(int, np.argwhere(bad)[0])
        first = step - trainer.agent.derived.iters_per_chunk * trainer.agent.cfg.num_envs
        kept = f"last good checkpoint kept (step {last_good})" if last_good is not None else "no checkpoint was written"
        raise TrainingDiverged(
            f"training diverged: non-finite loss or Q-value in task {trainer.agent.task_set.names[i]} "
            f"(seed {trainer.agent.seeds[s]}) between env step {first} and {step}; {kept}; "
            "lower --lr or set --max-grad-norm"
        )


def _returns_text(names: tuple[str, ...], episode_return: np.ndarray) -> str:
    """Mean return over seeds per task for the progress bar; tasks without a finished episode are left out."""
    parts = []
    for i, name in enumerate(names):
        finite = episode_return[:, i][np.isfinite(episode_return[:, i])]
        if finite.size:
            parts.append(f"{name.removeprefix('MiniGrid-').split('-')[0]}={finite.mean():.3g}")
    return " ".join(parts)


def _progress(enabled: bool) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.completed:,}/{task.total:,} steps"),
        TextColumn("{task.fields[rate]}"), TextColumn("{task.fields[returns]}"), TimeRemainingColumn(),
        disable=not enabled, transient=False,
    )


def _check_host_options(agent: Agent, resume: bool, checkpoint_every: int | None, devices: int | None) -> None:
    """What the Gymnasium host loop cannot do, refused before anything is read or written."""
    if agent.task_set.backend != "gymnasium":
        return
    if devices not in (None, 0, 1):
        raise ConfigError("--devices is not supported with gym: tasks: their envs step on the host, one device")
    if resume or checkpoint_every:
        raise ConfigError(
            "--resume and --checkpoint-every are not supported with gym: tasks: their env state lives in Python "
            "and cannot be checkpointed (the final parameters are still saved)"
        )


def _resolve_options(agent: Agent, verified: dict | None, checkpoint_every: int | None,
                     eval_episodes: int | None, devices: int | None, eval_every: int | None = None,
                     patience: int | None = None, test_episodes: int | None = None,
                     keep_best: bool | None = None) -> RunOptions:
    """The run's options, resolved once: given ones win, a resumed run (``verified``: its checkpoint record)
    keeps its stored ones, else defaults."""
    resume = verified is not None
    stored = verified.get("options", {}) if resume else {}
    default = RunOptions()
    checkpoint_every = stored.get("checkpoint_every", default.checkpoint_every) if checkpoint_every is None \
        else checkpoint_every
    eval_episodes = stored.get("eval_episodes", default.eval_episodes) if eval_episodes is None else eval_episodes
    eval_every = stored.get("eval_every", default.eval_every) if eval_every is None else eval_every
    patience = stored.get("patience", default.patience) if patience is None else patience
    test_episodes = stored.get("test_episodes", default.test_episodes) if test_episodes is None else test_episodes
    keep_best = bool(stored.get("keep_best", default.keep_best) if keep_best is None else keep_best)
    for flag, value, least in (("checkpoint-every", checkpoint_every, 0), ("eval-every", eval_every, 0),
                               ("eval-episodes", eval_episodes, 1), ("patience", patience, 0),
                               ("test-episodes", test_episodes, 0)):
        if value < least:
            raise ConfigError(f"--{flag} must be {'>= 0' if least == 0 else '> 0'}, got {value}")
    if patience and not eval_every:
        raise ConfigError(f"--patience {patience} counts greedy evaluations during training: set --eval-every")
    if patience and checkpoint_every:
        raise ConfigError("--patience keeps the best parameters in memory until the run ends: it cannot be "
                          "combined with --checkpoint-every (the run checkpoints at its end)")
    if keep_best and (patience or checkpoint_every or not eval_every):
        raise ConfigError("--keep-best keeps the best evaluation's parameters in memory until the run ends: it needs "
                          "--eval-every and takes neither --patience nor --checkpoint-every")
    if agent.task_set.backend == "gymnasium":
        return RunOptions(0, eval_episodes, 1, eval_every, patience, test_episodes, keep_best)
    # Records from before the seed layout existed have no "devices": those runs trained on one device.
    devices = seed_devices(len(agent.seeds), stored.get("devices", 1 if resume else 0) if devices is None else devices)
    return RunOptions(checkpoint_every, eval_episodes, devices, eval_every, patience, test_episodes, keep_best)


def _runner(agent: Agent, devices: int) -> tuple[Trainer, ChunkRunner]:
    """The trainer (pure ``init``, for checkpoint templates) and the chunk runner of the agent's loop."""
    if agent.task_set.backend == "gymnasium":  # host envs cannot be stepped by the compiled loop
        from mtdqn.train.host_loop import make_host_trainer

        trainer = make_host_trainer(agent)
        return trainer, trainer.run_chunk
    trainer = make_trainer(agent, devices)
    return trainer, CompiledChunks(trainer)


def train(
    cfg: TrainConfig,
    out_dir: Path,
    *,
    force: bool = False,
    progress: bool = True,
    checkpoint_every: int | None = None,
    resume: bool = False,
    eval_episodes: int | None = None,
    extra_summary: dict[str, Any] | None = None,
    devices: int | None = None,
    eval_every: int | None = None,
    patience: int | None = None,
    test_episodes: int | None = None,
    announce: Callable[[str], None] | None = None,
    keep_best: bool | None = None,
) -> RunResult:
    """Train all seeds of ``cfg`` and write the run directory; returns its summary.

    ``checkpoint_every`` is in env steps per task (rounded to whole chunks; 0
    or None: only the final state).  ``resume`` continues ``out_dir`` from its
    latest checkpoint and ends bit-identical to an uninterrupted run; it keeps
    the run's stored ``checkpoint_every`` / ``eval_episodes`` / ``devices`` / ``eval_every`` where these are None.
    ``eval_every`` (env steps per task, rounded to whole chunks; 0 or None for a new run: never) adds greedy
    evaluations of ``eval_episodes`` episodes during training to ``evals.parquet``, beside the final one.
    ``devices`` splits the seeds over local devices (0 or None for a new run:
    as many as the seeds can use; see :mod:`mtdqn.devices`).  Gymnasium
    (``gym:``) tasks run the host loop into the same kind of directory.
    ``announce`` receives one line describing the agent (parameter counts) once it is built.
    Raises :class:`TrainingDiverged` on a non-finite loss or Q-value, after the
    last good checkpoint and the metrics before it are on disk.
    A config with a fine-tuning section (``cfg.finetune``, made by
    :mod:`mtdqn.transfer`) starts a new run from its source run's weights (:mod:`mtdqn.graft`),
    grafted onto the fresh state (the source is checked before anything is
    written); the start is recorded in start.json and the summary's
    ``transfer`` entry.  A resumed run starts from its own checkpoint.
    ``patience`` (with ``eval_every``): early stopping, see
    :mod:`mtdqn.train.early_stop`; ``keep_best`` (with ``eval_every``): no
    stopping, each seed's parameters of the evaluation with the highest sum of
    the tasks' discounted returns restored at the end (same module);
    ``test_episodes``: a greedy test evaluation on episode starts of its own at
    the end (``test_eval.json``).

    Called from Python rather than through `mtdqn train`, call
    :func:`mtdqn.devices.use_cpu_cores` and :func:`mtdqn.devices.unroll_cpu_threefry`
    first to get the CLI's devices and its faster (same-bits) RNG lowering.
    """
    if not resume:
        check_new_run(cfg)  # a resumed run continues as it was made, even under rules added since
        check_train_budget(cfg)
    agent = make_agent(cfg)  # validates before anything touches the disk
    if announce is not None:
        announce(describe(agent))
    run_dir = RunDir(out_dir)
    _check_host_options(agent, resume, checkpoint_every, devices)
    verified = None
    if resume:
        record = run_dir.require_run()
        verified = verify_checkpoint(run_dir.path, cfg)  # once: the options and the load below use it
    options = _resolve_options(agent, verified, checkpoint_every, eval_episodes, devices, eval_every, patience,
                               test_episodes, keep_best)
    start_from = None
    if cfg.finetune.source and not resume:
        start_from = start_from_source(cfg, options.eval_episodes)  # checks the source: before any write
    trainer, runner = _runner(agent, options.devices)
    ckpt_bytes = state_bytes(jax.eval_shape(trainer.init, seed_keys(agent.seeds)))
    run_dir.check_space(ckpt_bytes)
    if resume:
        run_dir.update_record({**record, **options.record()})  # config.json states the options now in force
    else:
        run_dir.create({"config": config_to_dict(cfg), "config_hash": config_hash(cfg), **provenance(),
                        "seeds": agent.seeds, "derived": agent.derived.__dict__, **options.record()}, force)
    try:
        return _drive(trainer, runner, run_dir, options, verified, progress, ckpt_bytes, extra_summary, start_from)
    finally:
        runner.close()


def _drive(trainer: Trainer, runner: ChunkRunner, run_dir: RunDir, options: RunOptions, verified: dict | None,
           progress: bool, ckpt_bytes: int, extra_summary: dict[str, Any] | None,
           start_from: StartFrom | None = None) -> RunResult:
    """Run the chunks not yet done (``verified``: a resumed run's checkpoint record), writing after each;
    then checkpoint, evaluate and summarize."""
    resume = verified is not None
    agent = trainer.agent
    d = agent.derived
    steps_per_chunk = d.iters_per_chunk * agent.cfg.num_envs
    t_start = time.perf_counter()
    state, compile_s = runner.start(seed_keys(agent.seeds))
    tables = Tables.empty()
    first_chunk = 0
    if resume:
        state, meta = load_checkpoint(run_dir.path, trainer, state, verified)
        first_chunk = meta["chunk"]
        tables = run_dir.tables_until(first_chunk * steps_per_chunk)
    elif start_from is not None:
        state, start_record = start_from(agent, state)
        run_dir.write_start(start_record)
    last_good = first_chunk * steps_per_chunk if resume else None
    writer = run_dir.tensorboard(purge_step=first_chunk * steps_per_chunk + 1 if resume else None)
    every_chunks = _every_chunks(options.checkpoint_every, steps_per_chunk)
    eval_chunks = _every_chunks(options.eval_every, steps_per_chunk)
    has_shared = agent.arch.adapter_shared or any(agent.arch.torso_shared)
    t_loop = time.perf_counter()
    eval_s = 0.0  # evaluations during training: not counted in the training rate
    stopper = None
    if options.patience and first_chunk < d.num_chunks:
        stopper = EarlyStopping.anchored(agent, state.params, options.patience, options.eval_episodes)
    elif options.keep_best and first_chunk < d.num_chunks:
        stopper = EarlyStopping.keeping_best(len(agent.seeds))
    last_chunk = d.num_chunks
    try:
        with _progress(progress) as bar:
            label = "train" if runner.resumable else "train (host)"
            task_id = bar.add_task(label, total=d.env_steps, completed=first_chunk * steps_per_chunk,
                                   rate="", returns="")
            for chunk in range(first_chunk, d.num_chunks):
                state, m = runner(state, chunk * d.iters_per_chunk)
                m = jax.tree.map(np.asarray, m)
                step = (chunk + 1) * steps_per_chunk
                _check_finite(trainer, m, step, last_good)
                run_dir.ensure_space(ckpt_bytes)
                new = chunk_tables(agent.task_set.names, agent.seeds, has_shared, m, step)
                stop = False
                last = chunk + 1 == d.num_chunks  # the final evaluation's step: keep-best's last candidate
                if eval_chunks and ((chunk + 1) % eval_chunks == 0 and not last or last and options.keep_best):
                    t_eval = time.perf_counter()
                    rows = _greedy_rows(agent, state.params, EvalStream.DURING_TRAINING, options.eval_episodes, step)
                    new.evals.extend(rows)
                    if stopper is not None:
                        scores = stopper.scores(rows, agent.task_set.names, agent.seeds)
                        stop = stopper.observe(scores, state.params, step)
                    eval_s += time.perf_counter() - t_eval
                tables.extend(new)
                write_tensorboard(writer, new, step)
                run_dir.write_tables(tables)
                if every_chunks and (chunk + 1) % every_chunks == 0 and chunk + 1 < d.num_chunks:
                    save_checkpoint(run_dir.path, trainer, state, chunk + 1, options.record())
                    last_good = step
                _show_rate(bar, task_id, trainer, m, step, (chunk + 1 - first_chunk) * steps_per_chunk, t_loop)
                if stop:
                    last_chunk = chunk + 1
                    break
        jax.block_until_ready(state)
    finally:
        writer.close()
    loop_s = time.perf_counter() - t_loop - eval_s
    kept_as = "keep_best" if options.keep_best else "early_stop"  # where the stopper's record goes
    early = verified.get(kept_as) if resume else None
    if stopper is not None:  # the best parameters of every seed become the run's final ones
        state = stopper.restore(state)
        early = stopper.record(agent.seeds)
    if first_chunk < d.num_chunks:  # resuming a finished run must not rewrite its live checkpoint
        # An early-stopped run is finished: its checkpoint is recorded as the last chunk's.
        save_checkpoint(run_dir.path, trainer, state, d.num_chunks,
                        {**options.record(), **({kept_as: early} if early else {})})
    # The end-of-training evaluation is the last block of evals (a finished run resumed computes it again).
    tables.evals[:] = [row for row in tables.evals if row["step"] < d.env_steps]
    greedy = evaluate_params(agent, state.params, eval_seed(agent.cfg.seed, EvalStream.FINAL_GREEDY),
                             options.eval_episodes, eps=0.0)
    tables.evals.extend(eval_rows(agent.task_set.names, agent.seeds, greedy.total, greedy.discounted, d.env_steps))
    run_dir.write_tables(tables)
    frame = table_frame(tables.metrics, METRIC_SCHEMA)
    wall_s = time.perf_counter() - t_start
    restored = bool(early) and any(int(b) >= 0 for b in early["best_step"].values())  # best params restored
    summary = _summarize(trainer, state, compile_s, loop_s, first_chunk, options, wall_s, greedy, tables.evals,
                         final_score_rule(restored))
    if early:
        summary[kept_as] = early
        if stopper is not None and last_chunk < d.num_chunks:  # the rate of the chunks actually trained
            summary["env_steps_per_s"] *= (last_chunk - first_chunk) / (d.num_chunks - first_chunk)
    if options.test_episodes:
        summary["test_eval"] = _test_evaluation(agent, state.params, options.test_episodes, run_dir)
    summary.update(extra_summary or {})
    start = run_dir.read_start()
    if start is not None:
        summary["transfer"] = transfer_summary(start, summary)
    run_dir.write_final(frame, summary, *_end_of_run_probes(trainer, state))
    return RunResult(run_dir.path, summary, frame, state)


def _end_of_run_probes(trainer: Trainer, state: Any) -> tuple[list[dict], list[dict]]:
    """(CKA rows, gradient-probe rows) of the final state: :mod:`mtdqn.diagnostics`, the one place for them."""
    from mtdqn import diagnostics  # imported at the end of a run: its CKA pulls in the analysis stack

    return diagnostics.cka_rows(trainer, state), diagnostics.gradient_probe_rows(trainer, state)


def _test_evaluation(agent: Agent, params: Any, episodes: int, run_dir: RunDir) -> dict[str, list[float]]:
    """The test evaluation: greedy, on episode starts no other evaluation uses; test_eval.json, and per task
    the per-seed means for the summary."""
    returns = evaluate_params(agent, params, eval_seed(agent.cfg.seed, EvalStream.TEST), episodes)
    result = {"episodes": episodes, "gamma": agent.cfg.dqn.gamma,
              "task_gamma": dict(zip(agent.task_set.names, agent.gammas)), "tasks": returns_by_task(agent, returns)}
    run_dir.write_test_eval(result)
    return {t: [v["mean"] for v in r["per_seed"].values()] for t, r in result["tasks"].items()}


def _every_chunks(env_steps: int, steps_per_chunk: int) -> int:
    """An every-N-env-steps option as whole logging chunks (at least one); 0 stays 0 (never)."""
    return max(1, round(env_steps / steps_per_chunk)) if env_steps else 0


def _greedy_rows(agent: Agent, params: Any, stream: int, episodes: int, step: int) -> list[dict[str, Any]]:
    """A greedy evaluation of every seed at training step ``step`` as rows of ``evals.parquet``."""
    returns = evaluate_params(agent, params, eval_seed(agent.cfg.seed, stream), episodes, eps=0.0, step=step)
    return eval_rows(agent.task_set.names, agent.seeds, returns.total, returns.discounted, step)


def _show_rate(bar: Progress, task_id: Any, trainer: Trainer, m: dict[str, np.ndarray], step: int,
               steps_done: int, t_loop: float) -> None:
    """Progress bar: env steps, env-steps/s over all tasks and seeds, and the latest mean returns."""
    agent = trainer.agent
    rate = steps_done * agent.num_tasks * agent.cfg.seeds / max(time.perf_counter() - t_loop, 1e-9)
    bar.update(task_id, completed=step, rate=f"{rate:,.0f} env-steps/s",
               returns=_returns_text(agent.task_set.names, m["episode_return"]))


def _summarize(trainer: Trainer, state: Any, compile_s: float, loop_s: float, first_chunk: int,
               options: RunOptions, wall_s: float, greedy: Any, evals: list[dict[str, Any]],
               rule: str = "mean-of-last-evals") -> dict[str, Any]:
    """summary.json: ``greedy`` is the end-of-training evaluation, ``evals`` every evaluation's rows, ``rule``
    the final score's definition (:data:`mtdqn.rundir.FINAL_SCORE_RULES`)."""
    agent = trainer.agent
    d = agent.derived
    names = agent.task_set.names
    one_seed = jax.tree.map(lambda x: x[0], state.params)
    total, shared = count_params(agent.arch, one_seed)
    final_steps = final_score_steps(evals, rule)
    random = evaluate_params(agent, state.params, eval_seed(agent.cfg.seed, EvalStream.RANDOM_POLICY),
                             options.eval_episodes, eps=1.0)
    trained_steps = (d.num_chunks - first_chunk) * d.iters_per_chunk * agent.cfg.num_envs
    return {
        "status": "ok",
        "error": None,
        "tasks": list(names),
        "seeds": agent.seeds,
        "sharing": agent.cfg.network.sharing,
        "strategy": d.strategy,
        "strategy_scope": SCOPE,
        "params_total": total,
        "params_shared": shared,
        "architecture": describe_architecture(agent.arch),
        "backend": f"{jax.default_backend()} ({jax.devices()[0].device_kind})",
        "env_steps": d.env_steps,
        "wall_time_s": wall_s,
        "compile_s": compile_s,
        "devices": trainer.devices,
        "env_steps_per_s": trained_steps * agent.num_tasks * agent.cfg.seeds / max(loop_s, 1e-9),
        "final_eval": {n: greedy.total[:, i].mean(-1).tolist() for i, n in enumerate(names)},
        "final_eval_std": {n: greedy.total[:, i].std(-1).tolist() for i, n in enumerate(names)},
        "final_eval_discounted": {n: greedy.discounted[:, i].mean(-1).tolist() for i, n in enumerate(names)},
        "random_return": {n: float(random.total[:, i].mean()) for i, n in enumerate(names)},
        "random_return_discounted": {n: float(random.discounted[:, i].mean()) for i, n in enumerate(names)},
        "final_score": final_scores(evals, names, agent.seeds, final_steps),
        "final_score_discounted": final_scores(evals, names, agent.seeds, final_steps, "discounted_mean"),
        "final_score_rule": rule,
        "final_score_evals": FINAL_SCORE_EVALS if rule == "mean-of-last-evals" else 1,
        "final_score_steps": final_steps,
        "gamma": agent.cfg.dqn.gamma,
        "task_gamma": dict(zip(names, agent.gammas)),
        "eval_episodes": options.eval_episodes,
        "eval_every": options.eval_every,  # as asked; the schedule rounds it to whole logging chunks:
        "eval_every_used": _every_chunks(options.eval_every, d.iters_per_chunk * agent.cfg.num_envs)
        * d.iters_per_chunk * agent.cfg.num_envs,
        "config_hash": config_hash(agent.cfg),
    }


def evaluate_run(run_dir: Path, episodes: int, epsilon: float = 0.0) -> dict[str, Any]:
    """Evaluate a run's latest checkpoint (``episodes`` per task and seed) and write RUN/eval.json.

    The checkpoint is verified before anything compiles (a missing, foreign or
    damaged one fails fast), and the seeds keep the layout they were trained with where this machine has
    that many devices.
    """
    if episodes <= 0 or not 0.0 <= epsilon <= 1.0:
        raise ConfigError("--episodes must be > 0 and --epsilon in [0, 1]")
    run_dir = RunDir(run_dir)
    cfg = run_dir.config()  # a one-line error for a folder that holds no run
    agent = make_agent(cfg)
    meta = verify_checkpoint(run_dir.path, cfg)
    # The trained layout where this machine has its devices; else as many as are here (evaluation does not
    # depend on the layout, and a run trained on 4 devices must still evaluate on a laptop).
    recorded = meta.get("options", {}).get("devices", 0)
    trainer, _ = _runner(agent, recorded if recorded <= jax.local_device_count() else 0)
    template = jax.eval_shape(trainer.init, seed_keys(agent.seeds))
    state, meta = load_checkpoint(run_dir.path, trainer, template, meta)
    returns = evaluate_params(agent, state.params, eval_seed(cfg.seed, EvalStream.EVALUATE_COMMAND), episodes,
                              epsilon)  # each (seeds, tasks, episodes)
    result = {"episodes": episodes, "epsilon": epsilon, "gamma": cfg.dqn.gamma,
              "task_gamma": dict(zip(agent.task_set.names, agent.gammas)), "iteration": meta["iteration"],
              "tasks": returns_by_task(agent, returns)}
    run_dir.write_eval(result)
    return result


def returns_by_task(agent: Agent, returns: Any) -> dict[str, Any]:
    """{task: {"per_seed": {seed: mean, std, returns, discounted...}, "mean_over_seeds"}} (eval.json's layout)."""
    out = {}
    for i, task in enumerate(agent.task_set.names):
        per_seed = {str(seed): {"mean": float(returns.total[s, i].mean()), "std": float(returns.total[s, i].std()),
                                "returns": returns.total[s, i].tolist(),
                                "discounted_mean": float(returns.discounted[s, i].mean()),
                                "discounted_returns": returns.discounted[s, i].tolist()}
                    for s, seed in enumerate(agent.seeds)}
        out[task] = {"per_seed": per_seed, "mean_over_seeds": float(np.mean([v["mean"] for v in per_seed.values()]))}
    return out
