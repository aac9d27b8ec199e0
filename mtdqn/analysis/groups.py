"""Which tasks should share a network: every partition of the tasks scored from their lookahead affinities.

TAG's criterion (Fifty et al., NeurIPS 2021, "Efficiently Identifying Task
Groupings for Multi-Task Learning"): a grouping is as good as
the affinity each task receives from the tasks it trains with.  Here every
partition of the T tasks into groups (each group one `shared` agent) gets

    score = sum_i  mean_{j in G(i), j != i}  Z_{j->i}

where G(i) is task i's group and Z_{j->i} the affinity of a step on task j's
loss onto task i's loss (:mod:`mtdqn.train.affinity`; the matrix of
:func:`mtdqn.analysis.why.affinity_table`, averaged over training).  A task
alone in its group receives nothing: 0, so training every task apart scores 0
and a group pays off exactly when its tasks' steps lower each other's losses.
TAG selects groups that may overlap under a budget of networks; a partition
is the special case the `groups` study trains (every task in one agent).

T tasks have Bell(T) partitions (877 for 7), so they are all scored; beyond
:data:`MAX_TASKS` the study refuses rather than search for minutes.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import pandas as pd

from mtdqn.errors import ConfigError

__all__ = ["MAX_TASKS", "Partition", "ROLES", "partitions", "task_scores", "partition_score", "ranked",
           "rank_partitions", "trained_partitions", "describe_partition", "affinity_matrix"]

MAX_TASKS = 7
"""The most tasks whose partitions are searched exhaustively (Bell(7) = 877; Bell(10) would be 115,975)."""

Partition = tuple[tuple[int, ...], ...]
"""Groups of task indices: groups ordered by their first task, tasks ascending within a group."""


def partitions(n: int) -> Iterator[Partition]:
    """Every partition of ``range(n)`` into non-empty groups, each exactly once (restricted growth strings:
    task t joins one of the groups opened before it or opens the next)."""
    def grow(labels: tuple[int, ...], groups: int) -> Iterator[Partition]:
        if len(labels) == n:
            yield tuple(tuple(t for t in range(n) if labels[t] == g) for g in range(groups))
            return
        for g in range(groups + 1):
            yield from grow((*labels, g), max(groups, g + 1))

    return grow((), 0)


def _check_affinity(affinity: np.ndarray) -> np.ndarray:
    z = np.asarray(affinity, dtype=np.float64)
    if z.ndim != 2 or z.shape[0] != z.shape[1]:
        raise ConfigError(f"an affinity matrix must be square (tasks x tasks), got shape {z.shape}")
    if not np.isfinite(z).all():
        raise ConfigError("the affinity matrix has missing or non-finite entries: every ordered task pair needs one")
    return z


def task_scores(affinity: np.ndarray, partition: Partition) -> np.ndarray:
    """Per task (tasks,): the mean affinity its group-mates give it, mean_{j in G(i), j != i} Z[j, i] (row: the
    task whose step is taken, column: the task whose loss changes); 0 for a task alone.  The diagonal (a task's
    own step) plays no part.  (TAG's selection code scores a task in no group but its own -1e6, since it picks
    networks that may overlap; over partitions that would leave only all-together for 3 tasks, so 0 here.)"""
    z = _check_affinity(affinity)
    scores = np.zeros(z.shape[0])
    for group in partition:
        for i in group:
            mates = [j for j in group if j != i]
            if mates:
                scores[i] = z[mates, i].mean()
    return scores


def partition_score(affinity: np.ndarray, partition: Partition) -> float:
    """TAG's criterion: the sum over tasks of :func:`task_scores`."""
    return float(task_scores(affinity, partition).sum())


def describe_partition(partition: Partition, tasks: Sequence[str]) -> str:
    """'CartPole-v1+Acrobot-v1 | MountainCar-v0': groups separated by ' | ', tasks in a group by '+'."""
    return " | ".join("+".join(tasks[t] for t in group) for group in partition)


def _check_tasks(n: int) -> None:
    if n < 2:
        raise ConfigError(f"grouping needs at least 2 tasks, got {n}")
    if n > MAX_TASKS:
        raise ConfigError(f"grouping searches every partition of at most {MAX_TASKS} tasks, got {n}")


def ranked(affinity: np.ndarray) -> list[tuple[Partition, float]]:
    """Every partition of the matrix's tasks with its score, best first; equal scores keep the enumeration
    order of :func:`partitions` (each task joining the groups opened so far before opening its own: not fewer
    groups first, {0,1}|{2}|{3} comes before {0,2,3}|{1}), so the ranking is deterministic."""
    z = _check_affinity(affinity)
    _check_tasks(z.shape[0])
    scored = [(p, partition_score(z, p)) for p in partitions(z.shape[0])]
    return sorted(scored, key=lambda ps: -ps[1])  # sorted() is stable


def rank_partitions(affinity: np.ndarray, tasks: Sequence[str]) -> pd.DataFrame:
    """Every partition of ``tasks`` with its score and per-task scores, best first (``rank`` 1), in the order of
    :func:`ranked`.

    Raises a one-line :class:`ConfigError` for fewer than 2 tasks (nothing to group) or more than
    :data:`MAX_TASKS`."""
    z = _check_affinity(affinity)
    if len(tasks) != z.shape[0]:
        raise ConfigError(f"{len(tasks)} task names for a {z.shape[0]}x{z.shape[0]} affinity matrix")
    rows = []
    for p, score in ranked(z):
        per_task = task_scores(z, p)
        rows.append({"partition": describe_partition(p, tasks), "groups": len(p), "score": score,
                     **{f"score:{t}": float(s) for t, s in zip(tasks, per_task)}})
    frame = pd.DataFrame(rows)
    frame.insert(0, "rank", np.arange(1, len(frame) + 1))
    return frame


ROLES = ("best", "worst", "together", "apart")
"""The partitions the `groups` study trains: predicted best and worst, every task in one agent, each alone."""


def trained_partitions(affinity: np.ndarray) -> dict[str, Partition]:
    """{role: partition} for :data:`ROLES`: the top and the bottom of :func:`ranked` (so a tie goes to the
    partition enumerated first for the best and last for the worst), all tasks in one group, every task alone.
    Two roles can name one partition (with every affinity positive, the worst is all apart)."""
    order = ranked(affinity)
    n = sum(len(g) for g in order[0][0])
    return {"best": order[0][0], "worst": order[-1][0], "together": (tuple(range(n)),),
            "apart": tuple((t,) for t in range(n))}


def affinity_matrix(table: pd.DataFrame, tasks: Sequence[str], variant: str, column: str = "mean") -> np.ndarray:
    """The (tasks, tasks) matrix Z[i, j] = Z_{i->j} of one variant from :func:`mtdqn.analysis.why.affinity_table`
    (``column``: its mean over seeds by default); NaN where a pair has no row."""
    idx = {t: k for k, t in enumerate(tasks)}
    z = np.full((len(tasks), len(tasks)), np.nan)
    for r in table[table["variant"] == variant].itertuples():
        if r.task_i in idx and r.task_j in idx:
            z[idx[r.task_i], idx[r.task_j]] = getattr(r, column)
    return z
