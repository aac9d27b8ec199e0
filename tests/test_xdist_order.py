"""The order `make test` hands its xdist groups out in (tests/xdist_order.py)."""

from __future__ import annotations

import json
from pathlib import Path

from xdist_order import hand_out_order, simulated_end

# A learning test alone in its group (100 s) and three other groups.
GROUPS = {"learning": [100.0], "short": [10.0], "long": [50.0], "middle": [40.0]}


def test_a_worker_starts_with_two_groups_and_takes_another_when_two_tests_are_left():
    """xdist's LoadScope rules, as pytest-xdist 3.8 implements them: each worker is handed a group, then a second
    one while it holds at most two tests; the worker with the learning test thus holds the third group too."""
    lpt = ["learning", "long", "middle", "short"]
    assert simulated_end(lpt, GROUPS, 2) == 100 + 40  # learning + middle on one worker, long + short on the other
    # one worker runs everything in order; one test per group leaves at most two, so each is taken at once
    assert simulated_end(lpt, GROUPS, 1) == 200
    # a group of four tests is not topped up until two of its tests are done
    four = {"a": [10.0] * 4, "b": [25.0], "c": [1.0]}
    assert simulated_end(["a", "b", "c"], four, 1) == 66
    # two workers: a's four tests keep the first from taking b, which goes to the second with c
    assert simulated_end(["a", "c", "b"], {**four, "b": [100.0]}, 2) == 1 + 100


def test_the_order_pairs_the_long_group_with_the_shortest():
    order = hand_out_order(GROUPS, 2)
    assert sorted(order) == sorted(GROUPS) and order == hand_out_order(GROUPS, 2)  # a permutation, every time
    assert simulated_end(order, GROUPS, 2) == 110  # learning + short against long + middle: 110 / 90
    assert hand_out_order(GROUPS, 1) == ["learning", "long", "middle", "short"]  # one worker: LPT


def test_the_recorded_costs_end_no_later_than_longest_first():
    """On the measured costs of both phases (equal shares per test, as conftest.py splits them), the chosen
    order's simulated end is at most LPT's."""
    costs = json.loads((Path(__file__).with_name("group_costs.json")).read_text())
    for phase in costs.values():
        tests = {group: [seconds] for group, seconds in phase.items()}
        lpt = sorted(tests, key=lambda g: -tests[g][0])
        assert simulated_end(hand_out_order(tests, 2), tests, 2) <= simulated_end(lpt, tests, 2)
