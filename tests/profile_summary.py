"""Sum a MTDQN_TEST_PROFILE file (tests/conftest.py) per test file: where the suite's time goes.

    python tests/profile_summary.py FILE [--tests N]
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file")
    parser.add_argument("--tests", type=int, default=30, help="also list the N slowest tests")
    args = parser.parse_args()
    rows = [json.loads(line) for line in open(args.file)]
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


if __name__ == "__main__":
    main()
