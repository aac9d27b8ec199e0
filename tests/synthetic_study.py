"""A small synthetic study directory for the report's tests (plain data, no JAX, no training): what
``mtdqn study`` would leave, with known effects.  Shared by test_report*.py and test_experts_report.py, as
helpers.py is for the training tests (a test module never imports another)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

TASKS = ["CartPole-v1", "Acrobot-v1"]  # real names: the report's return bounds and fixed anchors apply
SEEDS = [0, 1, 2, 3, 4]  # 5: enough seeds for intervals (see make_study(seeds=...) for a smoke test)
STEPS = 10_000
LOG_EVERY = 500
REPS = 200  # bootstrap resamples: enough to exercise rliable, fast enough for a unit test
# variant -> (asymptotic return per task, has shared params)
VARIANTS = {"independent": ((200.0, -100.0), False), "shared": ((260.0, -90.0), True), "pcgrad": (None, True)}
RANDOM = {"CartPole-v1": 20.0, "Acrobot-v1": -500.0}
THRESH = {"CartPole-v1": 150.0, "Acrobot-v1": -120.0}
BOUNDS = {"CartPole-v1": (0.0, 500.0), "Acrobot-v1": (-500.0, 0.0)}
GAMMA = {"CartPole-v1": 0.99, "Acrobot-v1": 0.95}  # each task's own discount, as summary.json's task_gamma
# Discounted returns lie in [lo * S, hi * S], S = (1 - gamma^N) / (1 - gamma), N = 500 rewarded steps for both.
DISCOUNTED_BOUNDS = {"CartPole-v1": (0.0, (1 - 0.99 ** 500) / 0.01), "Acrobot-v1": (-(1 - 0.95 ** 500) / 0.05, 0.0)}
# options each variant was trained with, as config.json records them (the methods section must list them)
OPTIONS = {"independent": {"network": {"sharing": "independent"}, "dqn": {"loss": "mse", "lr": 0.001}},
           "shared": {"network": {"sharing": "shared", "hidden": [64, 64]}, "dqn": {"loss": "mse"}, "log_every": 500}}


def _write_json(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def _clip(task: str, x: float) -> float:
    return float(np.clip(x, *BOUNDS[task]))


def _metrics(rng: np.random.Generator, finals: tuple[float, ...], seeds: list[int]) -> pd.DataFrame:
    rows = []
    for t, task in enumerate(TASKS):
        for seed in seeds:
            for step in range(LOG_EVERY, STEPS + 1, LOG_EVERY):
                ret = _clip(task, RANDOM[task] + (finals[t] - RANDOM[task]) * (1 - np.exp(-step / 3000))
                            + rng.normal(0, 10))
                ret = np.nan if rng.random() < 0.1 else ret  # windows where no episode ended
                rows.append({"step": step, "task": task, "seed": seed, "episode_return": ret,
                             "episode_length": 100.0, "episodes": 0 if np.isnan(ret) else 3, "loss": 0.1,
                             "q_mean": 1.0, "epsilon": max(0.05, 1 - step / STEPS)})
    return pd.DataFrame(rows)


def _evals(rng: np.random.Generator, finals: tuple[float, ...], seeds: list[int]) -> pd.DataFrame:
    """Greedy evaluations every 2,000 steps (the periodic-evaluation contract's evals.parquet)."""
    rows = []
    for t, task in enumerate(TASKS):
        for seed in seeds:
            for step in range(2000, STEPS + 1, 2000):
                ret = _clip(task, RANDOM[task] + (finals[t] - RANDOM[task]) * (1 - np.exp(-step / 2500))
                            + rng.normal(0, 15))
                rows.append({"step": step, "task": task, "seed": seed, "return_mean": ret, "return_std": 5.0,
                             "discounted_mean": ret / 10, "episodes": 10})
    return pd.DataFrame(rows)


def discounted(task: str, ret: float) -> float:
    """The discounted return of an episode paying +-1 per step for |ret| steps (both tasks' reward shape)."""
    g = GAMMA[task]
    return float(np.sign(ret) * (1 - g ** abs(ret)) / (1 - g))


# Lookahead affinity Z_{i->j} of the `shared` variant (i: row, whose step; j: column, whose loss); each seed
# adds AFFINITY_SEED_STEP * seed at every step, so per seed the mean over training is Z + that, and over seeds
# 0..4 the mean is Z + 2 * AFFINITY_SEED_STEP.
AFFINITY = {("CartPole-v1", "CartPole-v1"): 3.0e-3, ("CartPole-v1", "Acrobot-v1"): -1.0e-3,
            ("Acrobot-v1", "CartPole-v1"): 0.5e-3, ("Acrobot-v1", "Acrobot-v1"): 2.0e-3}
AFFINITY_SEED_STEP = 1e-4


def _affinity(seeds: list[int]) -> pd.DataFrame:
    rows = [{"step": step, "seed": seed, "task_i": i, "task_j": j,
             "value": np.float32(z + AFFINITY_SEED_STEP * seed + (1e-4 if step % 1000 else -1e-4))}
            for seed in seeds for step in range(LOG_EVERY, STEPS + 1, LOG_EVERY) for (i, j), z in AFFINITY.items()]
    return pd.DataFrame(rows)


def _grad_tables(rng: np.random.Generator, seeds: list[int]) -> tuple[pd.DataFrame, pd.DataFrame]:
    tasks, pairs = [], []
    for seed in seeds:
        for step in range(LOG_EVERY, STEPS + 1, LOG_EVERY):
            for task in TASKS:
                tasks.append({"step": step, "seed": seed, "task": task, "grad_norm": 1.0 + rng.random(),
                              "weight": 0.5, "loss": 0.2})
            # stored "backwards" on purpose: the analysis must canonicalize pair order
            pairs.append({"step": step, "seed": seed, "task_a": TASKS[1], "task_b": TASKS[0],
                          "cosine": float(np.clip(rng.normal(0.05, 0.3), -1, 1))})
    return pd.DataFrame(tasks), pd.DataFrame(pairs)


def make_study(root: Path, *, seeds: list[int] = SEEDS, evals: bool = False, drop: tuple[str, ...] = (),
               reference_finals: tuple[float, float] | None = None, with_discounted: bool = True,
               headline: str | None = None) -> Path:
    """Write a study with 2 tasks and variants independent / shared / pcgrad (failed).

    `evals`: cells also store greedy evaluations during training; `reference_finals`
    replaces the reference's final scores (everything else, other variants included, unchanged);
    `with_discounted`: summaries carry the discounted final score and each task's gamma (runs
    before them did not); `headline`: study.json's headline metric (absent: older studies).
    """
    rng = np.random.default_rng(0)
    _write_json(root / "study.json", {"name": "synthetic", "tasks": TASKS, "variants": list(VARIANTS),
                                      "reference": "independent", "seeds": seeds, "steps": STEPS,
                                      "git_revision": "abc123", "mtdqn_version": "0.1.0",
                                      **({"headline": headline} if headline else {})})
    for variant, (finals, shared) in VARIANTS.items():
        cell = root / "cells" / variant
        if finals is None:
            _write_json(cell / "summary.json", {"variant": variant, "status": "failed",
                                                "error": "XlaRuntimeError: out of memory"})
            continue
        final_eval = {t: [_clip(t, f + rng.normal(0, 8)) for _ in seeds] for t, f in zip(TASKS, finals)}
        if reference_finals is not None and variant == "independent":
            final_eval = {t: [_clip(t, f + 3.0 * i) for i in range(len(seeds))]
                          for t, f in zip(TASKS, reference_finals)}
        disc = {"final_eval_discounted": {t: [discounted(t, x) for x in xs] for t, xs in final_eval.items()},
                "task_gamma": dict(GAMMA)} if with_discounted else {}
        _write_json(cell / "summary.json", {
            "variant": variant, "status": "ok", "error": None, "tasks": TASKS, "seeds": seeds,
            "params_total": 20_000 if shared else 36_000, "params_shared": 16_000 if shared else 0,
            "wall_time_s": 12.5, "compile_s": 3.25, "env_steps_per_s": 4800.0, "final_eval": final_eval,
            "random_return": dict(RANDOM), "thresholds": THRESH, "eval_episodes": 10, "config_hash": "f00d",
            "devices": 1, "strategy": "sum", **disc, **({"eval_s": 1.75} if shared else {})})  # independent: older
        _write_json(cell / "config.json", {"config": OPTIONS[variant], "config_hash": "f00d", "git_revision": "abc123",
                                           "mtdqn_version": "0.1.0", "packages": {"jax": "0.10.2"},
                                           "host": {"cpu": "Test CPU", "cpu_cores": 2, "platform": "Linux"}})
        _metrics(rng, finals, seeds).to_parquet(cell / "metrics.parquet")
        if evals:
            _evals(rng, finals, seeds).to_parquet(cell / "evals.parquet")
        gt, gp = _grad_tables(rng, seeds)
        gt.to_parquet(cell / "grad_tasks.parquet")
        if shared:
            gp.to_parquet(cell / "grad_pairs.parquet")
            _affinity(seeds).to_parquet(cell / "affinity.parquet")
            probe = [{"seed": s, "task_a": a, "task_b": b, "cosine": float(rng.normal(0.02, 0.05)),
                      "negative": 0.25 if a == b else 0.5}
                     for s in seeds for a, b in ((TASKS[0], TASKS[0]), (TASKS[1], TASKS[1]), (TASKS[0], TASKS[1]))]
            pd.DataFrame(probe).to_parquet(cell / "grad_probe.parquet")
        cka = pd.DataFrame([{"seed": s, "task_a": TASKS[0], "task_b": TASKS[1], "cka": 0.4 + 0.1 * rng.random(),
                             "cka_init": 0.9, "cka_own": 0.2 + 0.1 * rng.random(), "cka_own_init": 0.5}
                            for s in seeds])
        cka.to_parquet(cell / "cka.parquet")
        for name in drop:
            (cell / name).unlink(missing_ok=True)
    return root


def md_table_rows(text: str, title: str) -> list[str]:
    """Data rows of the pipe table under '### title'."""
    block = text.split(f"### {title}\n", 1)[1].split("\n### ", 1)[0].split("\n## ", 1)[0]
    rows = [ln for ln in block.splitlines() if ln.startswith("|")]
    return rows[2:]  # drop header and separator
