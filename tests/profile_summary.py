"""Sum a MTDQN_TEST_PROFILE file (tests/conftest.py) per test file: where the suite's time goes.

    python tests/profile_summary.py FILE [--tests N] [--write-costs]

``--write-costs`` stores each xdist group's measured seconds in tests/group_costs.json, from which `make test`
picks the order it hands the groups out in (tests/xdist_order.py); profile a whole `make test` for it.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file")
    parser.add_argument("--tests", type=int, default=30, help="also list the N slowest tests")
    parser.add_argument("--write-costs", action="store_true", help="write tests/group_costs.json from FILE")
    args = parser.parse_args()
    rows = [json.loads(line) for line in open(args.file)]
    if args.write_costs:
        write_costs(rows)
    per_file: dict = defaultdict(lambda: defaultdict(float))
    for row in rows:
        f = per_file[row["test"].split("::")[0]]
        for key in ("wall", "trace", "lower", "compile", "compile_n"):
            f[key] += row.get(key, 0.0)
        f["tests"] += 1
    total = {k: sum(f[k] for f in per_file.values()) for k in ("wall", "trace", "lower", "compile", "tests")}
    print(f"{'file':45s} {'tests':>5s} {'wall s':>8s} {'compile s':>9s} {'n':>5s} {'trace+lower s':>13s}")
    for name, f in sorted(per_file.items(), key=lambda kv: -kv[1]["wall"]):
        print(f"{name:45s} {int(f['tests']):5d} {f['wall']:8.1f} {f['compile']:9.1f} {int(f['compile_n']):5d} "
              f"{f['trace'] + f['lower']:13.1f}")
    print(f"{'total':45s} {int(total['tests']):5d} {total['wall']:8.1f} {total['compile']:9.1f} {'':5s} "
          f"{total['trace'] + total['lower']:13.1f}")
    print(f"\n{args.tests} slowest tests (wall s, compile s, programs compiled > 0.5 s):")
    for row in sorted(rows, key=lambda r: -r["wall"])[: args.tests]:
        print(f"{row['wall']:7.1f} {row.get('compile', 0):7.1f}  {row['test']}  {row['programs'][:4]}")


def write_costs(rows: list[dict]) -> None:
    """Seconds per xdist group (the ``@group`` of a test id under --dist loadgroup) in each phase of `make test`
    (its tests marked `optimized`, and the rest: a group such as test_step has tests in both, and each phase
    hands out only its own), rounded to whole seconds."""
    per_group: dict = {"optimized": defaultdict(float), "rest": defaultdict(float)}
    for row in rows:
        test = row["test"]
        if "@" not in test:
            raise SystemExit(f"{test} has no @group: profile a `make test` run (pytest-xdist, --dist loadgroup)")
        if "phase" not in row:
            raise SystemExit(f"{test} has no phase: a profile made before tests/conftest.py recorded it; profile again")
        per_group[row["phase"]][test.rsplit("@", 1)[1]] += row["wall"]
    costs = {phase: {group: round(s) for group, s in sorted(groups.items(), key=lambda kv: -kv[1])}
             for phase, groups in per_group.items()}
    path = Path(__file__).with_name("group_costs.json")
    path.write_text(json.dumps(costs, indent=1) + "\n")
    print(f"wrote {path}: " + ", ".join(f"{p} {len(c)} groups, {sum(c.values())} s" for p, c in costs.items()))


if __name__ == "__main__":
    main()
