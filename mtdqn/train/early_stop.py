"""Early stopping on the periodic greedy evaluations, seed by seed, with each seed's best parameters kept;
and keep-best without stopping, D'Eramo et al.'s rule.

The seeds of a run train together in one compiled program, so they cannot
stop one by one; instead every seed keeps its own best parameters (a host
copy, taken when its validation score improves) and its own count of
evaluations without improvement.  Training stops when every seed has gone
``patience`` evaluations without improving; then each seed's parameters (and
target parameters) are replaced by its best, so the run's final checkpoint,
``evaluate``, ``load_agent`` and the final evaluation all see the best ones.

Validation: the periodic evaluations (``EvalStream.DURING_TRAINING``, their
own episode starts).  A seed's score is the mean over tasks of the report's
normalized score, ``(return - random) / (reference - random)`` with the
task's fixed anchors (:mod:`mtdqn.analysis.anchors`), so going from random to
the reference is worth 1 on every task; a task without usable anchors
(MinAtar, a custom env) takes ``(return - random) / max(|random|, 1)`` with
the random policy's return measured on the run's random-policy stream.  (With max(|random|, 1)
on every task, as before 2026-12-07, going from random to the reference was worth 22 on CartPole and
0.45 on MountainCar: a network that learned CartPole alone outscored one that
solved all three tasks.)  A single task: its return, shifted and scaled, the
same ranking.  A run
that trains to its end is evaluated on the same starts at its last step too:
its final parameters are a candidate (without that, a run that improved to
the end restored its next-to-last evaluation's parameters: a walk-through's
scored 43.8 where the final ones scored 52.0).  The best
parameters live in memory only: a run with early stopping checkpoints at its
end, not during training (train() refuses --checkpoint-every with --patience).

Keep-best (``--keep-best``, :meth:`EarlyStopping.keeping_best`): never stop,
and keep per seed the parameters of the evaluation with the highest *sum over
tasks of the discounted greedy return* (each task's gamma), ties going to the
later evaluation; the evaluation at the run's last step is a candidate too.
That is D'Eramo et al. 2020's ``--save-shared`` (github.com/carloderamo/shared,
``dqn/run_gym.py`` l.255-257, l.268: ``current_score_sum >= best_score_sum``
over every epoch's ``compute_J(dataset, gamma[i])``), the trunk their transfer
experiment grafts.  They keep the shared layers only; here the whole network
is restored, so the run's checkpoint (and a fine-tuning's source) is that
evaluation's.  The summary records it under ``keep_best``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import jax
import numpy as np

from mtdqn.config import first_update_iteration
from mtdqn.evaluate import EvalStream, eval_seed, evaluate_params
from mtdqn.train.agent import Agent

__all__ = ["EarlyStopping", "seed_scores", "task_unit", "discounted_sums"]

NORMALIZED, DISCOUNTED_SUM = "normalized", "discounted-sum"  # the two rules: --patience's, --keep-best's
_RULE_TEXT = {NORMALIZED: "mean over tasks of (return - random) / (reference - random) with the report's fixed "
                          "anchors (max(|random|, 1) for a task without), periodic greedy evaluations and one at "
                          "the last step",
              DISCOUNTED_SUM: "sum over tasks of the discounted greedy return (each task's gamma), periodic greedy "
                              "evaluations and one at the last step; ties to the later (D'Eramo et al. 2020's "
                              "--save-shared)"}


def seed_scores(rows: list[dict[str, Any]], names: tuple[str, ...], seeds: list[int],
                random: dict[str, float]) -> np.ndarray:
    """(seeds,) validation scores of one evaluation's rows (``evals.parquet`` rows of one step)."""
    by = {(r["seed"], r["task"]): r["return_mean"] for r in rows}
    unit = {t: task_unit(t, random[t]) for t in names}
    return np.array([np.mean([(by[(s, t)] - unit[t][0]) / unit[t][1] for t in names]) for s in seeds])


def task_unit(task: str, random: float) -> tuple[float, float]:
    """(zero, scale) of a task in the validation score (see the module): its fixed anchors' random and
    reference - random where the report can normalize it (the score is then the report's normalized score),
    else the run's measured ``random`` and ``max(|random|, 1)``."""
    from mtdqn.analysis.anchors import lookup, usable  # here: the analysis package's import is the reports' cost

    anchors = lookup(task)
    if anchors is not None and usable(task, anchors) == "":  # '' is usable; else the note why not
        return anchors.random, anchors.reference - anchors.random
    return random, max(abs(random), 1.0)


def discounted_sums(rows: list[dict[str, Any]], names: tuple[str, ...], seeds: list[int]) -> np.ndarray:
    """(seeds,) keep-best scores of one evaluation's rows: the sum over tasks of the mean discounted return."""
    by = {(r["seed"], r["task"]): r["discounted_mean"] for r in rows}
    return np.array([sum(by[(s, t)] for t in names) for s in seeds])


@dataclass
class EarlyStopping:
    """Per-seed best score, its step and parameters, and evaluations since; see the module."""

    patience: int  # 0: never stop (keep-best)
    random: dict[str, float]  # random-policy return per task (the normalized score's anchor; keep-best: none)
    best_score: np.ndarray  # (seeds,)
    best_step: np.ndarray  # (seeds,) env step of the best evaluation, -1 before the first
    since: np.ndarray  # (seeds,) evaluations since the best
    best_params: Any = field(default=None, repr=False)  # host copies, leading seed axis
    stopped_at: int | None = None  # env step training stopped at (None: ran to the end)
    rule: str = NORMALIZED  # how an evaluation is scored (see the module)
    # --patience: evaluations at env steps up to this one are of the initial network (no update yet), and not
    # candidates; -1 (all are) for a fine-tuning, whose start is trained, and for keep-best, D'Eramo et al.'s rule
    untrained_until: int = -1
    # ... and use up no patience up to this one: the same step, a fine-tuning's included (its network cannot
    # change before its first update: it stopped, its best the start, before any update of a long --learning-starts)
    patient_until: int = -1

    @staticmethod
    def start(patience: int, random: dict[str, float], n_seeds: int, rule: str = NORMALIZED) -> EarlyStopping:
        return EarlyStopping(patience, random, np.full(n_seeds, -np.inf), np.full(n_seeds, -1, np.int64),
                             np.zeros(n_seeds, np.int64), rule=rule)

    @staticmethod
    def keeping_best(n_seeds: int) -> EarlyStopping:
        """Keep-best without stopping, on the sum of the tasks' discounted returns (see the module)."""
        return EarlyStopping.start(0, {}, n_seeds, DISCOUNTED_SUM)

    def scores(self, rows: list[dict[str, Any]], names: tuple[str, ...], seeds: list[int]) -> np.ndarray:
        """(seeds,) scores of one evaluation's rows under this rule."""
        if self.rule == DISCOUNTED_SUM:
            return discounted_sums(rows, names, seeds)
        return seed_scores(rows, names, seeds, self.random)

    @staticmethod
    def anchored(agent: Agent, params: Any, patience: int, episodes: int) -> EarlyStopping:
        """Started with the random policy's returns of ``agent``'s tasks (the summary's random-policy stream)."""
        seed = eval_seed(agent.cfg.seed, EvalStream.RANDOM_POLICY)
        random = evaluate_params(agent, params, seed, episodes, eps=1.0)
        anchors = {n: float(random.total[:, i].mean()) for i, n in enumerate(agent.task_set.names)}
        stopping = EarlyStopping.start(patience, anchors, len(agent.seeds))
        untrained = first_update_iteration(agent.derived) * agent.cfg.num_envs  # the first update follows it
        # a fine-tuning's start is its source's trained network: a candidate, but no evaluation without an update
        no_candidate_until = -1 if agent.cfg.finetune.source else untrained
        return dataclasses.replace(stopping, untrained_until=no_candidate_until, patient_until=untrained)

    def observe(self, scores: np.ndarray, params: Any, step: int, last: bool = False) -> bool:
        """Record one evaluation's (seeds,) scores of ``params`` at ``step``; True when every seed is out of
        patience (training should stop).  ``last``: the evaluation at the run's last step, a candidate that
        stops nothing (a run that ran its budget did not stop).  An evaluation before the first update is of
        the initial network: neither a candidate nor an evaluation without improvement (a run restored its
        untrained network, 21.0 on CartPole, as its best); a fine-tuning's is a candidate that uses up no
        patience."""
        if step <= self.untrained_until:
            return False
        better = scores >= self.best_score if self.rule == DISCOUNTED_SUM else scores > self.best_score
        if better.any():
            host = jax.tree.map(np.asarray, params)
            if self.best_params is None:
                self.best_params = jax.tree.map(np.array, host)
            else:
                for best, new in zip(jax.tree.leaves(self.best_params), jax.tree.leaves(host)):
                    best[better] = new[better]
        self.best_score = np.where(better, scores, self.best_score)
        self.best_step = np.where(better, step, self.best_step)
        self.since = np.where(better, 0, self.since + (step > self.patient_until))
        stop = self.patience > 0 and not last and bool((self.since >= self.patience).all())
        if stop:
            self.stopped_at = step
        return stop

    def restore(self, state: Any) -> Any:
        """``state`` with every evaluated seed's params and target params set to its best (same layout)."""
        if self.best_params is None:
            return state
        put = lambda best, old: jax.device_put(best, old.sharding)  # noqa: E731
        return state.replace(params=jax.tree.map(put, self.best_params, state.params),
                             target_params=jax.tree.map(put, self.best_params, state.target_params))

    def record(self, seeds: list[int]) -> dict[str, Any]:
        """What summary.json and the final checkpoint's record keep of it."""
        kept = {"best_step": {str(s): int(b) for s, b in zip(seeds, self.best_step)},
                "best_score": {str(s): float(b) for s, b in zip(seeds, self.best_score)},
                "score": _RULE_TEXT[self.rule]}
        if self.rule == DISCOUNTED_SUM:
            return kept
        return {"patience": self.patience, "stopped_at": self.stopped_at, **kept}
