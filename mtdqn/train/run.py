"""Host side of a run: compile, drive the chunks, write what a researcher reads.

A run directory holds ``config.json`` (full config, hash, version, git
revision), ``metrics.parquet`` and ``metrics.csv`` (tidy rows: step, task,
seed, ...), ``grad_tasks.parquet`` / ``grad_pairs.parquet`` (gradient
diagnostics on the shared parameters), ``cka.parquet``, ``summary.json``,
TensorBoard event files under ``tb/`` and an orbax checkpoint.
"""

from __future__ import annotations

import errno
import itertools
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from mtdqn.checkpoint import load_checkpoint, save_checkpoint, state_bytes, verify_checkpoint
from mtdqn.config import TrainConfig, check_new_run, config_hash, config_to_dict
from mtdqn.devices import seed_devices
from mtdqn.errors import ConfigError, TrainingDiverged
from mtdqn.evaluate import evaluate_params
from mtdqn.io import (
    atomic_write, check_free_space, free_bytes, prepare_out_dir, provenance, read_json, write_json, write_parquet,
)
from mtdqn.networks import count_params, torso_features
from mtdqn.train.agent import make_agent
from mtdqn.train.loop import Trainer, init_state, make_trainer, seed_keys

__all__ = ["RunResult", "train", "metric_rows"]

METRIC_COLUMNS = ["step", "task", "seed", "episode_return", "episode_length", "episodes", "loss", "q_mean", "epsilon"]
# What a run writes into its directory; `--force` removes exactly these before a new run.
RUN_FILES = (
    "config.json", "metrics.parquet", "metrics.csv", "grad_tasks.parquet", "grad_pairs.parquet", "cka.parquet",
    "summary.json", "eval.json", "tb", "checkpoints",
)
_TABLES = ("metrics", "grad_tasks", "grad_pairs")


@dataclass
class RunResult:
    out_dir: Path
    summary: dict[str, Any]
    metrics: pd.DataFrame
    state: Any = field(repr=False, default=None)


def metric_rows(trainer: Trainer, chunk_metrics: dict[str, np.ndarray], step: int) -> tuple[list, list, list]:
    """Tidy rows (metrics, per-task gradients, task pairs) of one chunk for every seed."""
    agent = trainer.agent
    names = agent.task_set.names
    rows, grad_rows, pair_rows = [], [], []
    has_shared = agent.arch.adapter_shared or any(agent.arch.torso_shared)
    for s, seed in enumerate(agent.seeds):
        for i, task in enumerate(names):
            m = {k: chunk_metrics[k][s, i] for k in ("episode_return", "episode_length", "episodes", "loss", "q_mean")}
            rows.append({"step": step, "task": task, "seed": seed, **m, "epsilon": chunk_metrics["epsilon"][s]})
            grad_rows.append({
                "step": step, "seed": seed, "task": task, "grad_norm": chunk_metrics["grad_norm"][s, i],
                "weight": chunk_metrics["weight"][s, i], "loss": chunk_metrics["loss"][s, i],
            })
        if has_shared:
            for a, b in itertools.combinations(range(len(names)), 2):
                pair_rows.append({
                    "step": step, "seed": seed, "task_a": names[a], "task_b": names[b],
                    "cosine": chunk_metrics["cosine"][s, a, b],
                    "conflict_rate": chunk_metrics["conflict"][s, a, b],
                })
    return rows, grad_rows, pair_rows


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


def _write_tb(writer: Any, rows: list[dict], pair_rows: list[dict], step: int) -> None:
    """Scalars of one chunk; NaN (no episode ended in the window) is left out, not written."""
    scalars = [(f"{kind}/{r['task']}/seed{r['seed']}", r[col]) for r in rows
               for kind, col in (("return", "episode_return"), ("loss", "loss"))]
    scalars += [(f"{kind}/{r['task_a']}|{r['task_b']}/seed{r['seed']}", r[col]) for r in pair_rows
                for kind, col in (("cosine", "cosine"), ("conflict_rate", "conflict_rate"))]
    for tag, value in scalars:
        if np.isfinite(value):
            writer.add_scalar(tag, float(value), step)


def _returns_text(names: tuple[str, ...], episode_return: np.ndarray) -> str:
    """Mean return over seeds per task for the progress bar; tasks without a finished episode are left out."""
    parts = []
    for i, name in enumerate(names):
        finite = episode_return[:, i][np.isfinite(episode_return[:, i])]
        if finite.size:
            parts.append(f"{name.split('-')[0]}={finite.mean():.0f}")
    return " ".join(parts)


def _write_tables(out_dir: Path, rows: list, grad_rows: list, pair_rows: list) -> None:
    write_parquet(out_dir / "metrics.parquet", pd.DataFrame(rows, columns=METRIC_COLUMNS))
    write_parquet(out_dir / "grad_tasks.parquet", pd.DataFrame(grad_rows))
    if pair_rows:
        write_parquet(out_dir / "grad_pairs.parquet", pd.DataFrame(pair_rows))


def _records(frame: pd.DataFrame) -> list[dict]:
    """Rows as dicts of numpy scalars, so a frame rebuilt from them keeps its dtypes (float32 stays float32)."""
    columns = [frame[c].to_numpy() for c in frame.columns]
    return [dict(zip(frame.columns, values)) for values in zip(*columns)]


def _rows_until(out_dir: Path, last_step: int) -> tuple[list, list, list]:
    """The rows a resumed run keeps: those up to its checkpoint; later ones are regenerated."""
    kept = []
    for name in _TABLES:
        path = out_dir / f"{name}.parquet"
        frame = pd.read_parquet(path) if path.exists() else pd.DataFrame({"step": []})
        kept.append(_records(frame[frame["step"] <= last_step]))
    return kept[0], kept[1], kept[2]


def _cka_rows(trainer: Trainer, state: Any, probe_per_task: int = 128) -> list[dict]:
    """CKA between every two tasks' trunk features on one shared set of probe states."""
    from mtdqn.analysis.stats import linear_cka  # imported at the end of a run: it pulls in the plotting stack
    agent = trainer.agent
    names = agent.task_set.names
    rows = []
    for s, seed in enumerate(agent.seeds):
        params = jax.tree.map(lambda x: x[s], state.params)
        size = int(state.replay.size[s])
        probe = state.replay.data.obs[s, :, : min(size, probe_per_task)]  # (tasks, n, ...)
        probe = probe.reshape(-1, *probe.shape[2:])
        tiled = jnp.broadcast_to(probe, (agent.num_tasks, *probe.shape))
        feats = np.asarray(torso_features(agent.arch, params, tiled))
        for a, b in itertools.combinations(range(len(names)), 2):
            rows.append({"seed": seed, "task_a": names[a], "task_b": names[b], "cka": linear_cka(feats[a], feats[b])})
    return rows


def _progress(enabled: bool) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.completed:,}/{task.total:,} steps"),
        TextColumn("{task.fields[rate]}"), TextColumn("{task.fields[returns]}"), TimeRemainingColumn(),
        disable=not enabled, transient=False,
    )


def _start(cfg: TrainConfig, agent: Any, init: Any, out_dir: Path, force: bool, resume: bool,
           checkpoint_every: int | None, eval_episodes: int | None, devices: int | None) -> tuple[int, int, int, int]:
    """Check (and for a new run, create) the run directory before compiling.

    Returns the run's options (checkpoint_every, eval_episodes, devices) and
    the bytes one checkpoint takes (``init``: keys -> state, traced for shapes only).

    A resumed run keeps the options it was started with unless given new ones;
    keeping ``devices`` (the seed layout, resolved to a count) is what makes a
    resumed run bit-identical to an uninterrupted one.
    """
    stored: dict = {}
    if resume:
        if not (out_dir / "config.json").is_file():
            raise ConfigError(f"{out_dir} is not a run directory (no config.json)")
        stored = verify_checkpoint(out_dir, cfg).get("options", {})
    checkpoint_every = stored.get("checkpoint_every", 0) if checkpoint_every is None else checkpoint_every
    eval_episodes = stored.get("eval_episodes", 10) if eval_episodes is None else eval_episodes
    if checkpoint_every < 0 or eval_episodes <= 0:
        raise ConfigError(f"--checkpoint-every must be >= 0 and --eval-episodes > 0, "
                          f"got {checkpoint_every} and {eval_episodes}")
    devices = seed_devices(len(agent.seeds), stored.get("devices", 0) if devices is None else devices)
    ckpt_bytes = state_bytes(jax.eval_shape(init, seed_keys(agent.seeds)))
    check_free_space(out_dir, 2 * ckpt_bytes + 2**24, "two checkpoints")  # the old one stays until the new is complete
    if not resume:
        prepare_out_dir(out_dir, "config.json", force, owned=RUN_FILES)
        write_json(out_dir / "config.json", {
            "config": config_to_dict(cfg), "config_hash": config_hash(cfg), **provenance(),
            "seeds": agent.seeds, "derived": agent.derived.__dict__,
            "options": {"checkpoint_every": checkpoint_every, "eval_episodes": eval_episodes, "devices": devices},
        })
    return checkpoint_every, eval_episodes, devices, ckpt_bytes


def _ensure_space(out_dir: Path, ckpt_bytes: int) -> None:
    """Stop cleanly, last checkpoint intact, before a filling disk makes a write fail half-way."""
    need = ckpt_bytes + 2**23
    free = free_bytes(out_dir)
    if free is not None and free < need:
        message = (f"disk almost full: {free / 2**20:,.0f} MiB free, below the {need / 2**20:,.0f} MiB kept for "
                   "the next checkpoint; the last checkpoint is intact")
        raise OSError(errno.ENOSPC, message, str(out_dir))


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
) -> RunResult:
    """Train all seeds of ``cfg`` and write the run directory; returns its summary.

    ``checkpoint_every`` is in env steps per task (rounded to whole chunks; 0
    or None: only the final state).  ``resume`` continues ``out_dir`` from its
    latest checkpoint and ends bit-identical to an uninterrupted run; it keeps
    the run's stored ``checkpoint_every`` / ``eval_episodes`` / ``devices`` where these are None.
    ``devices`` splits the seeds over local devices (0 or None for a new run:
    as many as the seeds can use; see :mod:`mtdqn.devices`).
    Raises :class:`TrainingDiverged` on a non-finite loss or Q-value, after the
    last good checkpoint and the metrics before it are on disk.
    """
    if not resume:
        check_new_run(cfg)  # a resumed run continues as it was made, even under rules added since
    agent = make_agent(cfg)  # validates before anything touches the disk
    if agent.task_set.backend == "gymnasium":  # host envs cannot be stepped by the compiled loop
        from mtdqn.train.host_loop import train_host

        return train_host(cfg, out_dir, force=force, progress=progress, checkpoint_every=checkpoint_every,
                          resume=resume, eval_episodes=eval_episodes, extra_summary=extra_summary, devices=devices)
    out_dir = Path(out_dir)
    checkpoint_every, eval_episodes, devices, ckpt_bytes = _start(
        cfg, agent, jax.vmap(lambda k: init_state(agent, k)), out_dir, force, resume, checkpoint_every,
        eval_episodes, devices,
    )
    trainer = make_trainer(agent, devices)
    d = agent.derived
    steps_per_chunk = d.iters_per_chunk * cfg.num_envs
    t_start = time.perf_counter()
    state = trainer.init(seed_keys(agent.seeds))
    t0 = time.perf_counter()
    # Lowered on the fresh state, so a resumed run runs the very same program.
    compiled = trainer.run_chunk.lower(state, jnp.int32(0)).compile()
    compile_s = time.perf_counter() - t0
    rows: list = []
    grad_rows: list = []
    pair_rows: list = []
    first_chunk = 0
    if resume:
        state, meta = load_checkpoint(out_dir, trainer, state)
        first_chunk = meta["chunk"]
        rows, grad_rows, pair_rows = _rows_until(out_dir, first_chunk * steps_per_chunk)
    options = {"options": {"checkpoint_every": checkpoint_every, "eval_episodes": eval_episodes, "devices": devices}}
    last_good = first_chunk * steps_per_chunk if resume else None
    from tensorboardX import SummaryWriter  # imported late: it is slow to import

    # On resume, TensorBoard drops the events after the checkpoint; they are written again.
    writer = SummaryWriter(str(out_dir / "tb"), purge_step=first_chunk * steps_per_chunk + 1 if resume else None)
    every_chunks = max(1, round(checkpoint_every / steps_per_chunk)) if checkpoint_every else 0
    t_loop = time.perf_counter()
    try:
        with _progress(progress) as bar:
            task_id = bar.add_task("train", total=d.env_steps, completed=first_chunk * steps_per_chunk,
                                   rate="", returns="")
            for chunk in range(first_chunk, d.num_chunks):
                state, m = compiled(state, jnp.int32(chunk * d.iters_per_chunk))
                m = jax.tree.map(np.asarray, m)
                step = (chunk + 1) * steps_per_chunk
                _log_chunk(trainer, m, step, last_good, out_dir, ckpt_bytes, writer, (rows, grad_rows, pair_rows))
                if every_chunks and (chunk + 1) % every_chunks == 0 and chunk + 1 < d.num_chunks:
                    save_checkpoint(out_dir, trainer, state, chunk + 1, options)
                    last_good = step
                _show_rate(bar, task_id, trainer, m, step, (chunk + 1 - first_chunk) * steps_per_chunk, t_loop)
        jax.block_until_ready(state)
    finally:
        writer.close()
    loop_s = time.perf_counter() - t_loop
    if first_chunk < d.num_chunks:  # resuming a finished run must not rewrite its live checkpoint
        save_checkpoint(out_dir, trainer, state, d.num_chunks, options)
    return _finish(trainer, state, out_dir, rows, (t_start, compile_s, loop_s), first_chunk, eval_episodes,
                   extra_summary)


def _log_chunk(trainer: Trainer, m: dict[str, np.ndarray], step: int, last_good: int | None, out_dir: Path,
               ckpt_bytes: int, writer: Any, tables: tuple[list, list, list]) -> None:
    """Check one chunk's metrics, append its rows to ``tables`` and write them (parquet, TensorBoard).

    Shared by the compiled and the Gymnasium host loop, so both write the same run directory.
    """
    _check_finite(trainer, m, step, last_good)
    _ensure_space(out_dir, ckpt_bytes)
    new = metric_rows(trainer, m, step)
    for table, rows in zip(tables, new):
        table.extend(rows)
    _write_tb(writer, new[0], new[2], step)
    _write_tables(out_dir, *tables)


def _show_rate(bar: Progress, task_id: Any, trainer: Trainer, m: dict[str, np.ndarray], step: int,
               steps_done: int, t_loop: float) -> None:
    """Progress bar: env steps, env-steps/s over all tasks and seeds, and the latest mean returns."""
    agent = trainer.agent
    rate = steps_done * agent.num_tasks * agent.cfg.seeds / max(time.perf_counter() - t_loop, 1e-9)
    bar.update(task_id, completed=step, rate=f"{rate:,.0f} env-steps/s",
               returns=_returns_text(agent.task_set.names, m["episode_return"]))


def _finish(trainer: Trainer, state: Any, out_dir: Path, rows: list, times: tuple[float, float, float],
            first_chunk: int, eval_episodes: int, extra_summary: dict[str, Any] | None) -> RunResult:
    """Write metrics.csv, evaluate, and write cka.parquet and summary.json; ``times``: (start, compile_s, loop_s)."""
    t_start, compile_s, loop_s = times
    frame = pd.DataFrame(rows, columns=METRIC_COLUMNS)
    atomic_write(out_dir / "metrics.csv", lambda path: frame.to_csv(path, index=False))
    wall_s = time.perf_counter() - t_start
    summary = _summarize(trainer, state, out_dir, compile_s, loop_s, first_chunk, eval_episodes, wall_s)
    summary.update(extra_summary or {})
    cka = _cka_rows(trainer, state)
    if cka:
        write_parquet(out_dir / "cka.parquet", pd.DataFrame(cka))
    write_json(out_dir / "summary.json", summary)
    return RunResult(out_dir, summary, frame, state)


def _summarize(trainer: Trainer, state: Any, out_dir: Path, compile_s: float, loop_s: float,
               first_chunk: int, eval_episodes: int, wall_s: float) -> dict[str, Any]:
    agent = trainer.agent
    d = agent.derived
    names = agent.task_set.names
    one_seed = jax.tree.map(lambda x: x[0], state.params)
    total, shared = count_params(agent.arch, one_seed)
    greedy = evaluate_params(agent, state.params, agent.cfg.seed + 10_000, eval_episodes, eps=0.0)
    random = evaluate_params(agent, state.params, agent.cfg.seed + 20_000, eval_episodes, eps=1.0)
    trained_steps = (d.num_chunks - first_chunk) * d.iters_per_chunk * agent.cfg.num_envs
    return {
        "status": "ok",
        "error": None,
        "tasks": list(names),
        "seeds": agent.seeds,
        "sharing": agent.cfg.network.sharing,
        "strategy": d.strategy,
        "params_total": total,
        "params_shared": shared,
        "env_steps": d.env_steps,
        "wall_time_s": wall_s,
        "compile_s": compile_s,
        "devices": trainer.devices,
        "env_steps_per_s": trained_steps * agent.num_tasks * agent.cfg.seeds / max(loop_s, 1e-9),
        "final_eval": {n: greedy[:, i].mean(-1).tolist() for i, n in enumerate(names)},
        "final_eval_std": {n: greedy[:, i].std(-1).tolist() for i, n in enumerate(names)},
        "random_return": {n: float(random[:, i].mean()) for i, n in enumerate(names)},
        "eval_episodes": eval_episodes,
        "config_hash": config_hash(agent.cfg),
    }


def load_run_config(run_dir: Path) -> TrainConfig:
    """The config a run directory was made with."""
    from mtdqn.config import config_from_dict

    return config_from_dict(read_json(Path(run_dir) / "config.json")["config"])
