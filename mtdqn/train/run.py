"""Host side of a run: compile, drive the chunks, write what a researcher reads.

A run directory holds ``config.json`` (full config, hash, version, git
revision), ``metrics.parquet`` and ``metrics.csv`` (tidy rows: step, task,
seed, ...), ``grad_tasks.parquet`` / ``grad_pairs.parquet`` (gradient
diagnostics on the shared parameters), ``cka.parquet``, ``summary.json``,
TensorBoard event files under ``tb/`` and an orbax checkpoint.
"""

from __future__ import annotations

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

from mtdqn.checkpoint import load_checkpoint, save_checkpoint
from mtdqn.config import TrainConfig, config_hash, config_to_dict
from mtdqn.errors import TrainingDiverged
from mtdqn.evaluate import evaluate_params
from mtdqn.io import prepare_out_dir, provenance, read_json, write_json, write_parquet
from mtdqn.networks import count_params, torso_features
from mtdqn.train.agent import make_agent
from mtdqn.train.loop import Trainer, make_trainer, seed_keys

__all__ = ["RunResult", "train", "metric_rows", "linear_cka"]

METRIC_COLUMNS = ["step", "task", "seed", "episode_return", "episode_length", "episodes", "loss", "q_mean", "epsilon"]


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
                })
    return rows, grad_rows, pair_rows


def _check_finite(trainer: Trainer, m: dict[str, np.ndarray], step: int) -> None:
    bad = ~np.isfinite(m["max_abs_loss"]) | ~np.isfinite(m["q_mean"])
    if bad.any():
        s, i = map(int, np.argwhere(bad)[0])
        raise TrainingDiverged(
            f"non-finite loss or Q-value by step {step} in task {trainer.agent.task_set.names[i]} "
            f"(seed {trainer.agent.seeds[s]}); lower --lr or enable --max-grad-norm"
        )


def linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear CKA (Kornblith et al. 2019) between feature matrices (n, d1) and (n, d2)."""
    x = x - x.mean(0)
    y = y - y.mean(0)
    cross = np.linalg.norm(y.T @ x) ** 2
    denom = np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y)
    return float(cross / denom) if denom > 0 else float("nan")


def _cka_rows(trainer: Trainer, state: Any, probe_per_task: int = 128) -> list[dict]:
    """CKA between every two tasks' trunk features on one shared set of probe states."""
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


def train(
    cfg: TrainConfig,
    out_dir: Path,
    *,
    force: bool = False,
    progress: bool = True,
    checkpoint_every: int = 0,
    resume: bool = False,
    eval_episodes: int = 10,
    extra_summary: dict[str, Any] | None = None,
) -> RunResult:
    """Train all seeds of ``cfg`` and write the run directory; returns its summary.

    ``checkpoint_every`` is in env steps per task (rounded to whole chunks);
    the final state is always checkpointed.
    """
    agent = make_agent(cfg)  # validates before anything touches the disk
    out_dir = Path(out_dir)
    if not resume:
        prepare_out_dir(out_dir, "config.json", force)
        write_json(out_dir / "config.json", {
            "config": config_to_dict(cfg), "config_hash": config_hash(cfg), **provenance(),
            "seeds": agent.seeds, "derived": agent.derived.__dict__,
        })
    trainer = make_trainer(agent)
    d = agent.derived
    t_start = time.perf_counter()
    state = trainer.init(seed_keys(agent.seeds))
    rows: list = []
    grad_rows: list = []
    pair_rows: list = []
    first_chunk = 0
    if resume:
        state, meta = load_checkpoint(out_dir, trainer, state)
        first_chunk = meta["chunk"]
        for name, bucket in (("metrics", rows), ("grad_tasks", grad_rows), ("grad_pairs", pair_rows)):
            path = out_dir / f"{name}.parquet"
            if path.exists():
                frame = pd.read_parquet(path)
                bucket.extend(frame[frame["step"] <= first_chunk * d.iters_per_chunk * cfg.num_envs].to_dict("records"))
    t0 = time.perf_counter()
    compiled = trainer.run_chunk.lower(state, jnp.int32(0)).compile()
    compile_s = time.perf_counter() - t0
    from tensorboardX import SummaryWriter  # imported late: it is slow to import

    writer = SummaryWriter(str(out_dir / "tb"))
    every_chunks = max(1, round(checkpoint_every / (d.iters_per_chunk * cfg.num_envs))) if checkpoint_every else 0
    steps_per_chunk = d.iters_per_chunk * cfg.num_envs
    t_loop = time.perf_counter()
    with _progress(progress) as bar:
        task_id = bar.add_task("train", total=d.env_steps, completed=first_chunk * steps_per_chunk, rate="", returns="")
        for chunk in range(first_chunk, d.num_chunks):
            state, m = compiled(state, jnp.int32(chunk * d.iters_per_chunk))
            m = jax.tree.map(np.asarray, m)
            step = (chunk + 1) * steps_per_chunk
            _check_finite(trainer, m, step)
            r, g, p = metric_rows(trainer, m, step)
            rows += r
            grad_rows += g
            pair_rows += p
            for row in r:
                tag = f"{row['task']}/seed{row['seed']}"
                writer.add_scalar(f"return/{tag}", row["episode_return"], step)
                writer.add_scalar(f"loss/{tag}", row["loss"], step)
            for row in p:
                writer.add_scalar(f"cosine/{row['task_a']}|{row['task_b']}/seed{row['seed']}", row["cosine"], step)
            frame = pd.DataFrame(rows, columns=METRIC_COLUMNS)
            write_parquet(out_dir / "metrics.parquet", frame)
            write_parquet(out_dir / "grad_tasks.parquet", pd.DataFrame(grad_rows))
            if pair_rows:
                write_parquet(out_dir / "grad_pairs.parquet", pd.DataFrame(pair_rows))
            if every_chunks and (chunk + 1) % every_chunks == 0 and chunk + 1 < d.num_chunks:
                save_checkpoint(out_dir, trainer, state, chunk + 1)
            elapsed = time.perf_counter() - t_loop
            done_steps = (chunk + 1 - first_chunk) * steps_per_chunk
            means = np.nanmean(m["episode_return"], axis=0) if np.isfinite(m["episode_return"]).any() else None
            shown = " ".join(f"{n.split('-')[0]}={v:.0f}" for n, v in zip(agent.task_set.names, means)) if means is not None else ""
            rate = done_steps * agent.num_tasks * cfg.seeds / max(elapsed, 1e-9)
            bar.update(task_id, completed=step, rate=f"{rate:,.0f} env-steps/s", returns=shown)
    jax.block_until_ready(state)
    loop_s = time.perf_counter() - t_loop
    writer.close()
    save_checkpoint(out_dir, trainer, state, d.num_chunks)
    frame = pd.DataFrame(rows, columns=METRIC_COLUMNS)
    frame.to_csv(out_dir / "metrics.csv.tmp", index=False)
    Path(out_dir / "metrics.csv.tmp").replace(out_dir / "metrics.csv")
    summary = _summarize(trainer, state, out_dir, compile_s, loop_s, first_chunk, eval_episodes, time.perf_counter() - t_start)
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
