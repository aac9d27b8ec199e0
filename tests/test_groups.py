"""Scoring every partition of the tasks from their lookahead affinities (mtdqn.analysis.groups): numpy only."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mtdqn.analysis.groups import (MAX_TASKS, affinity_matrix, describe_partition, partition_score, partitions,
                                   rank_partitions, ranked, task_scores, trained_partitions)
from mtdqn.errors import ConfigError

TASKS = ("A", "B", "C")


def test_every_partition_once():
    bell = [1, 1, 2, 5, 15, 52, 203, 877]
    for n, count in enumerate(bell):
        found = list(partitions(n))
        assert len(found) == count and len(set(found)) == count
        for p in found:  # a partition: every task in exactly one non-empty group
            assert sorted(t for g in p for t in g) == list(range(n)) and all(p)
    assert list(partitions(3))[0] == ((0, 1, 2),) and list(partitions(3))[-1] == ((0,), (1,), (2,))


def test_a_task_scores_what_its_group_mates_give_it():
    """Z[j, i] = Z_{j->i}: row j's step onto column i's loss.  A helps B (+0.4), B hurts A (-0.1); C gives A
    +0.2 and B -0.6; the diagonal is ignored."""
    z = np.array([[9.0, 0.4, 0.0],
                  [-0.1, 9.0, 0.3],
                  [0.2, -0.6, 9.0]])
    np.testing.assert_allclose(task_scores(z, ((0, 1), (2,))), [-0.1, 0.4, 0.0])
    np.testing.assert_allclose(task_scores(z, ((0, 1, 2),)), [(-0.1 + 0.2) / 2, (0.4 - 0.6) / 2, (0.0 + 0.3) / 2])
    assert partition_score(z, ((0,), (1,), (2,))) == 0.0
    assert partition_score(z, ((0, 2), (1,))) == pytest.approx(0.2 + 0.0)
    z_diag = z.copy()
    np.fill_diagonal(z_diag, -5.0)
    assert partition_score(z_diag, ((0, 1, 2),)) == partition_score(z, ((0, 1, 2),))


def test_the_ranking_puts_helping_tasks_together_and_hurting_ones_apart():
    """A and B lower each other's losses; C raises theirs and they raise C's, C hurting A most."""
    z = np.array([[1.0, 0.5, -0.2],
                  [0.5, 1.0, -0.3],
                  [-0.8, -0.4, 1.0]])
    ranked = rank_partitions(z, TASKS)
    assert len(ranked) == 5 and list(ranked["rank"]) == [1, 2, 3, 4, 5]
    assert ranked["score"].is_monotonic_decreasing
    assert ranked.iloc[0]["partition"] == "A+B | C" and ranked.iloc[0]["score"] == pytest.approx(1.0)
    assert ranked.iloc[-1]["partition"] == "A+C | B" and ranked.iloc[-1]["score"] == pytest.approx(-0.8 - 0.2)
    apart = ranked[ranked["partition"] == "A | B | C"].iloc[0]
    assert apart["score"] == 0.0 and apart["groups"] == 3
    together = ranked[ranked["partition"] == "A+B+C"].iloc[0]
    assert together["score:C"] == pytest.approx((-0.2 - 0.3) / 2)


def test_equal_scores_keep_the_enumeration_order():
    ranked = rank_partitions(np.zeros((3, 3)), TASKS)
    assert list(ranked["partition"]) == [describe_partition(p, TASKS) for p in partitions(3)]


@pytest.mark.parametrize("z, tasks, message", [
    (np.zeros((1, 1)), ("A",), "at least 2 tasks"),
    (np.zeros((MAX_TASKS + 1,) * 2), tuple("ABCDEFGH"), f"at most {MAX_TASKS} tasks, got 8"),
    (np.zeros((2, 3)), ("A", "B"), "must be square"),
    (np.array([[0.0, np.nan], [0.1, 0.0]]), ("A", "B"), "non-finite"),
    (np.zeros((2, 2)), TASKS, "3 task names for a 2x2"),
])
def test_bad_inputs_are_one_line_errors(z, tasks, message):
    with pytest.raises(ConfigError, match=message):
        rank_partitions(z, tasks)


def test_the_matrix_from_the_reports_affinity_table():
    table = pd.DataFrame([{"variant": "shared", "task_i": i, "task_j": j, "mean": 10 * a + b}
                          for a, i in enumerate(TASKS) for b, j in enumerate(TASKS) if (i, j) != ("C", "A")]
                         + [{"variant": "other", "task_i": "A", "task_j": "A", "mean": -1.0}])
    z = affinity_matrix(table, TASKS, "shared")
    assert z[0, 1] == 1 and z[1, 0] == 10 and z[2, 2] == 22 and np.isnan(z[2, 0])


def test_the_study_trains_the_top_and_bottom_of_the_ranking_beside_together_and_apart():
    """Stage 2 of the groups study: from a given affinity matrix, the partitions it trains."""
    z = np.array([[1.0, 0.5, -0.2],
                  [0.5, 1.0, -0.3],
                  [-0.8, -0.4, 1.0]])
    chosen = trained_partitions(z)
    assert list(chosen) == ["best", "worst", "together", "apart"]
    assert chosen["best"] == ((0, 1), (2,)) and chosen["worst"] == ((0, 2), (1,))
    assert chosen["together"] == ((0, 1, 2),) and chosen["apart"] == ((0,), (1,), (2,))
    helping = np.full((3, 3), 0.1)  # every task helps every other: the worst is all apart (score 0)
    assert trained_partitions(helping)["worst"] == ((0,), (1,), (2,))
    assert trained_partitions(helping)["best"] == ((0, 1, 2),)
    assert [p for p, _ in ranked(z)][0] == chosen["best"]
