"""The end of a run: the final greedy evaluation, the test evaluation, the end-of-run probes and summary.json.

:func:`finish` takes what the driving loop leaves (:class:`~mtdqn.train.drive.Trained`)
and writes the run directory's final files.  The end-of-training evaluation
is the last block of ``evals.parquet`` (a finished run resumed computes it
again); the final score is read from those rows by
:func:`mtdqn.rundir.final_scores`.
"""

from __future__ import annotations

import time
from typing import Any

import jax
import numpy as np
import pandas as pd

from mtdqn.config import config_hash
from mtdqn.errors import ConfigError, MtdqnWarning, warn_user
from mtdqn.evaluate import EvalStream, eval_seed, evaluate_params
from mtdqn.finetune import transfer_summary
from mtdqn.networks import count_params, describe_architecture
from mtdqn.io import read_json
from mtdqn.rundir import (METRIC_SCHEMA, RUN_SUMMARY, RunDir, Tables, eval_rows,
                          final_score_rule, final_score_steps, final_scores, table_frame, write_tensorboard)
from mtdqn.runoptions import RunOptions
from mtdqn.strategies import SCOPE
from mtdqn.train.agent import Agent
from mtdqn.train.drive import Schedule, Trained, expert_probe_fn, grad_probe_fn, kept_as
from mtdqn.train.loop import Trainer

__all__ = ["finish", "returns_by_task", "TRAINING_PROCESS_FIELDS"]


def finish(trainer: Trainer, run_dir: RunDir, options: RunOptions, schedule: Schedule, trained: Trained,
           t_start: float, extra_summary: dict[str, Any] | None = None) -> tuple[dict[str, Any], pd.DataFrame]:
    """Evaluate the final state, write the final files; (summary, metrics frame)."""
    agent, state, tables = trainer.agent, trained.state, trained.tables
    env_steps = agent.derived.env_steps
    tables.evals[:] = [row for row in tables.evals if row["step"] < env_steps]
    greedy = evaluate_params(agent, state.params, eval_seed(agent.cfg.seed, EvalStream.FINAL_GREEDY),
                             options.eval_episodes, eps=0.0)
    tables.evals.extend(eval_rows(agent.task_set.names, agent.seeds, greedy.total, greedy.discounted, env_steps))
    tables.grad_probe[:] = [row for row in tables.grad_probe if row["step"] < env_steps]
    tables.grad_probe.extend({**row, "step": env_steps} for row in grad_probe_fn(trainer, options.probes)(state))
    tables.experts[:] = [row for row in tables.experts if row["step"] < env_steps]  # the final state's instead
    # a mixture of experts' diagnostics of the final state (the restored best parameters where kept)
    tables.experts.extend({**row, "step": env_steps} for row in expert_probe_fn(trainer)(state))
    run_dir.write_tables(tables)
    _tensorboard_at(run_dir, tables, env_steps)
    frame = table_frame(tables.metrics, METRIC_SCHEMA)
    early = trained.early
    restored = bool(early) and any(int(b) >= 0 for b in early["best_step"].values())  # best params restored
    summary = _summarize(trainer, options, schedule, trained, time.perf_counter() - t_start, greedy,
                         tables.evals, final_score_rule(restored))
    if trained.last_chunk == trained.first_chunk:  # a finished run resumed: evaluated again, nothing trained
        summary.update(_training_process_fields(run_dir))
    if early:
        summary[kept_as(options)] = early
    if options.test_episodes:
        summary["test_eval"] = _test_evaluation(agent, state.params, options.test_episodes, run_dir)
    summary.update(extra_summary or {})
    start = run_dir.read_start()
    if start is not None:
        summary["transfer"] = transfer_summary(start, summary)
    run_dir.write_final(frame, summary, _cka(trainer, state) if options.probes else [])
    run_dir.write_options(options.record())  # a finished run evaluated again with changed ones: once written
    return summary, frame


TRAINING_PROCESS_FIELDS = ("wall_time_s", "compile_s", "eval_s", "env_steps_per_s", "backend", "devices")
"""summary.json's timings of the process that trained the run, and the machine they were measured on."""


def _training_process_fields(run_dir: RunDir) -> dict[str, Any]:
    """The training process's fields of the run's previous summary.  A finished run resumed (new run options,
    e.g. more evaluation episodes) trains nothing; its own timings would put its throughput at 0 env-steps/s
    in a study's cost table.  Without a previous summary (killed after its last checkpoint, before the
    summary), the throughput is unknown: null (a report shows n/a)."""
    path = run_dir.path / RUN_SUMMARY
    unknown = {"env_steps_per_s": None}
    try:
        previous = read_json(path) if path.is_file() else unknown
    except ConfigError:  # damaged: written whole again below, as a missing one is (it failed after the work)
        warn_user(f"{path} was unreadable: it is written again, its throughput unknown (null) and its wall and "
                  "compile times this evaluation's", MtdqnWarning)
        previous = unknown
    if not isinstance(previous, dict) or previous.get("status", "ok") != "ok":  # a failed attempt's: no timings
        previous = unknown
    return {**unknown, **{k: previous[k] for k in TRAINING_PROCESS_FIELDS if k in previous}}


def _tensorboard_at(run_dir: RunDir, tables: Tables, step: int) -> None:
    """TensorBoard's scalars at ``step`` (the run's last) written again from the finished tables: the final
    evaluation, and the end-of-run probes, replace the loop's rows there, after the loop's writer closed (its
    events lacked the final evaluation, and showed a keep-best run's candidate where the restored parameters'
    evaluation is the run's).  Earlier events at that step are dropped (``purge_step``)."""
    writer = run_dir.tensorboard(purge_step=step)
    try:
        write_tensorboard(writer, Tables(*([row for row in rows if row["step"] == step] for rows in tables)), step)
    finally:
        writer.close()


def _summarize(trainer: Trainer, options: RunOptions, schedule: Schedule, trained: Trained, wall_s: float,
               greedy: Any, evals: list[dict[str, Any]], rule: str) -> dict[str, Any]:
    """summary.json: ``greedy`` is the end-of-training evaluation, ``evals`` every evaluation's rows, ``rule``
    the final score's definition (:data:`mtdqn.rundir.FINAL_SCORE_RULES`)."""
    agent = trainer.agent
    d = agent.derived
    names = agent.task_set.names
    one_seed = jax.tree.map(lambda x: x[0], trained.state.params)
    total, shared = count_params(agent.arch, one_seed)
    final_steps = final_score_steps(evals, rule)
    random = evaluate_params(agent, trained.state.params, eval_seed(agent.cfg.seed, EvalStream.RANDOM_POLICY),
                             options.eval_episodes, eps=1.0)
    trained_steps = (trained.last_chunk - trained.first_chunk) * schedule.steps_per_chunk  # in this process
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
        "compile_s": trained.compile_s,
        # The evaluations during training in this process (a resumed run: since it resumed; a sweep member: the
        # whole population's, evaluated together); the rest of wall_time_s past compile_s and the training loop
        # (env_steps_per_s's time) is setting up and the end of the run (its evaluations, files).
        "eval_s": trained.eval_s,
        "devices": trainer.devices,
        "env_steps_per_s": trained_steps * agent.num_tasks * agent.cfg.seeds / max(trained.loop_s, 1e-9),
        "final_eval": {n: greedy.total[:, i].mean(-1).tolist() for i, n in enumerate(names)},
        "final_eval_std": {n: greedy.total[:, i].std(-1).tolist() for i, n in enumerate(names)},
        "final_eval_discounted": {n: greedy.discounted[:, i].mean(-1).tolist() for i, n in enumerate(names)},
        "random_return": {n: float(random.total[:, i].mean()) for i, n in enumerate(names)},
        "random_return_discounted": {n: float(random.discounted[:, i].mean()) for i, n in enumerate(names)},
        "final_score": final_scores(evals, names, agent.seeds, final_steps),
        "final_score_discounted": final_scores(evals, names, agent.seeds, final_steps, "discounted_mean"),
        "final_score_rule": rule,
        "final_score_evals": len(final_steps),  # how many it averages (it said 3, the cap, of a run that had 1)
        "final_score_steps": final_steps,
        "gamma": agent.cfg.dqn.gamma,
        "task_gamma": dict(zip(names, agent.gammas)),
        "eval_episodes": options.eval_episodes,
        "eval_every": options.eval_every,  # as asked; the schedule rounds it to whole logging chunks:
        "eval_every_used": schedule.eval_every_used,
        "config_hash": config_hash(agent.cfg),
    }


def _cka(trainer: Trainer, state: Any) -> list[dict]:
    """CKA rows of the final state: :mod:`mtdqn.diagnostics`, the one place for the probes."""
    from mtdqn import diagnostics  # imported at the end of a run: its CKA pulls in the analysis stack

    return diagnostics.cka_rows(trainer, state)


def _test_evaluation(agent: Agent, params: Any, episodes: int, run_dir: RunDir) -> dict[str, list[float]]:
    """The test evaluation: greedy, on episode starts no other evaluation uses; test_eval.json, and per task
    the per-seed means for the summary."""
    returns = evaluate_params(agent, params, eval_seed(agent.cfg.seed, EvalStream.TEST), episodes)
    result = {"episodes": episodes, "gamma": agent.cfg.dqn.gamma,
              "task_gamma": dict(zip(agent.task_set.names, agent.gammas)), "tasks": returns_by_task(agent, returns)}
    run_dir.write_test_eval(result)
    return {t: [v["mean"] for v in r["per_seed"].values()] for t, r in result["tasks"].items()}


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
