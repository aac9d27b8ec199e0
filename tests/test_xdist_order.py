"""The order `make test` hands its xdist groups out in (tests/xdist_order.py)."""

from __future__ import annotations

from xdist_order import hand_out_order, simulated_end

# A learning test alone in its group (100 s) and three other groups.
GROUPS = {"learning": [100.0], "short": [10.0], "long": [50.0], "middle": [40.0]}


def test_a_worker_starts_with_two_groups():
    """pytest-xdist 3.8's LoadScope scheduler hands each worker a group, then a second one while it holds at most
    two tests (pytest-xdist#277): the worker with the learning test holds the third group too."""
    assert simulated_end(["learning", "long", "middle", "short"], GROUPS, 2) == 100 + 40  # long + short: 60


def test_a_worker_is_topped_up_once_it_holds_two_unfinished_tests():
    """Counted after the test that just finished: a worker takes the next group once two or fewer of its tests are
    left, not one, not three, and not before its own test ends."""
    # w0's four 10-s tests leave two at t=20, w1's at t=26: x (100 s) goes to w0
    tests = {"a": [10.0] * 4, "b": [25.0, 1.0, 1.0, 1.0], "x": [100.0], "y": [1.0]}
    assert simulated_end(["a", "b", "x", "y"], tests, 2) == 40 + 100
    # w1 holds two unfinished tests at t=16, w0 at t=20 (three at t=10: not yet): x goes to w1
    tests = {"a": [10.0] * 4, "b": [15.0, 1.0, 1.0, 1.0], "x": [100.0], "y": [1.0]}
    assert simulated_end(["a", "b", "x", "y"], tests, 2) == 15 + 1 + 1 + 1 + 100 + 1  # and y, taken at t=17


def test_the_order_pairs_the_learning_test_with_the_shortest_group():
    order = hand_out_order(GROUPS, 2)
    assert sorted(order) == sorted(GROUPS) and order == hand_out_order(GROUPS, 2)  # a permutation, every time
    assert simulated_end(order, GROUPS, 2) == 110  # learning + short against long + middle: 110 / 90
    assert hand_out_order(GROUPS, 1) == ["learning", "long", "middle", "short"]  # one worker: longest first
