"""The order in which `make test` hands its xdist groups out: the one whose simulated end is earliest.

pytest-xdist's ``--dist loadgroup`` (its LoadScope scheduler) hands a worker a new group whenever the worker
has at most two tests left to run, and starts every worker with two groups where it can (pytest-xdist#277).
A group of one long test (a learning test) therefore takes the next group in the queue with it from the
start, whatever its length: with the groups longest first (LPT), the worker that drew the MiniGrid learning
test (~104 s) also drew the third longest group, and the first phase ended at 212-215 s on one worker while
the other waited, against 196-200 s of work each (simulated from group_costs.json and from two profiles of
2026-12-05; the second run measured 215/185 s).  :func:`hand_out_order` simulates that scheduler on the
groups' measured seconds (``tests/group_costs.json``) and starts from LPT, swapping groups while the
simulated end gets earlier (196-203 s on those profiles).  The simulation takes a group's seconds as fixed;
they are not quite: the first group a worker runs pays its start-up, and a program two groups compile is
compiled by whichever runs first (the first run in this order measured 201/214 s: its groups took 414 s
of work against 393 and 399 in the two runs before it).

Plain functions of their arguments: every worker collects, and xdist refuses a run whose workers ordered
their tests differently, so the order must come out the same in each.
"""

from __future__ import annotations

from typing import Mapping, Sequence

SEARCHED = 12  # swaps among the first groups only: the rest are short, and LPT packs them well


def simulated_end(order: Sequence[str], tests: Mapping[str, Sequence[float]], workers: int) -> float:
    """When the last worker finishes ``order``'s groups (their tests' seconds in ``tests``) under xdist's
    LoadScope rules: each worker gets one group, then a second while it holds at most two tests, and after
    each test it finishes, another group while it holds at most two unfinished tests."""
    queue = list(order)
    assigned: list[list[float]] = [[] for _ in range(workers)]
    done = [0] * workers
    clock = [0.0] * workers

    def top_up(w: int) -> None:
        if queue and len(assigned[w]) - done[w] <= 2:
            assigned[w].extend(tests[queue.pop(0)])

    for w in range(workers):
        if queue:
            assigned[w].extend(tests[queue.pop(0)])
    for w in range(workers):
        top_up(w)
    while True:
        running = [(clock[w] + assigned[w][done[w]], w) for w in range(workers) if done[w] < len(assigned[w])]
        if not running:
            return max(clock)
        finish, w = min(running)
        clock[w] = finish
        done[w] += 1
        top_up(w)


def hand_out_order(tests: Mapping[str, Sequence[float]], workers: int) -> list[str]:
    """The groups of ``tests`` (group -> its tests' seconds, in collection order) longest first, then improved
    by swapping two of the first :data:`SEARCHED` while the simulated end gets earlier (ties keep LPT)."""
    order = sorted(tests, key=lambda g: -sum(tests[g]))  # stable: collection order among equal costs
    if workers < 2:
        return order
    best = simulated_end(order, tests, workers)
    improved = True
    while improved:
        improved = False
        for i in range(min(SEARCHED, len(order))):
            for j in range(i + 1, min(SEARCHED, len(order))):
                order[i], order[j] = order[j], order[i]
                end = simulated_end(order, tests, workers)
                if end < best - 1e-9:
                    best, improved = end, True
                else:
                    order[i], order[j] = order[j], order[i]
    return order
