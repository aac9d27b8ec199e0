"""The `evaluate` command: greedy (or epsilon) returns of a trained run's latest checkpoint, into RUN/eval.json."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax

from mtdqn.checkpoint import load_checkpoint, read_latest
from mtdqn.errors import ConfigError, check_number
from mtdqn.evaluate import EvalStream, eval_seed, evaluate_params
from mtdqn.rundir import RunDir
from mtdqn.runoptions import RunOptions, check_episodes
from mtdqn.train.agent import make_agent
from mtdqn.train.chunks import make_runner
from mtdqn.train.loop import seed_keys
from mtdqn.train.summary import returns_by_task

__all__ = ["evaluate_run"]


def evaluate_run(run_dir: Path, episodes: int, epsilon: float = 0.0, write: bool = True) -> dict[str, Any]:
    """Evaluate a run's latest checkpoint (``episodes`` per task and seed) and write RUN/eval.json.

    The checkpoint is verified before anything compiles (a missing, foreign or
    damaged one fails fast), and the seeds keep the layout they were trained with where this machine has
    that many devices.  A run still training may replace its checkpoint meanwhile: the new one is read
    (:func:`mtdqn.checkpoint.read_latest`).
    """
    check_number("--episodes", episodes, 1)
    check_episodes("--episodes", episodes)
    check_number("--epsilon", epsilon, float("-inf"), integer=False)  # its range: below
    if not 0.0 <= epsilon <= 1.0:
        raise ConfigError(f"--epsilon must be in [0, 1], got {epsilon}")
    run_dir = RunDir(run_dir)
    cfg = run_dir.runnable_config()  # a one-line error for a folder that holds no run
    run_dir.require_checkpoint()  # one line, naming a population's member's checkpoint
    agent = make_agent(cfg, devices=None)  # parameters only: no replay to fit
    state, meta = read_latest(run_dir.path, cfg, lambda meta: _restore(run_dir.path, agent, meta))
    returns = evaluate_params(agent, state.params, eval_seed(cfg.seed, EvalStream.EVALUATE_COMMAND), episodes,
                              epsilon)  # each (seeds, tasks, episodes)
    result = {"episodes": episodes, "epsilon": epsilon, "gamma": cfg.dqn.gamma,
              "task_gamma": dict(zip(agent.task_set.names, agent.gammas)), "iteration": meta["iteration"],
              "step": meta["iteration"] * cfg.num_envs,  # env steps per task: a run that trained on since is later
              "tasks": returns_by_task(agent, returns)}
    if write:  # the CLI writes it after showing the table: a folder it cannot write to lost the results
        run_dir.write_eval(result)
    return result


def _restore(run_dir: Path, agent: Any, meta: dict) -> tuple[Any, dict]:
    """The training state of the verified checkpoint ``meta``, laid out as trained where this machine has its
    devices, else on as many as are here (evaluation does not depend on the layout, and a run trained on 4
    devices must still evaluate on a laptop)."""
    recorded = RunOptions.from_record(meta, f"{run_dir / 'checkpoints' / 'latest.json'}").devices
    trainer, _ = make_runner(agent, recorded if recorded <= jax.local_device_count() else 0)
    template = jax.eval_shape(trainer.init, seed_keys(agent.seeds))
    return load_checkpoint(run_dir, trainer.agent.cfg, template, meta)
