"""How much seed i of one variant has in common with seed i of another, in a finished study.

Seed i of every variant starts from the same key and meets the same evaluation
episodes, but trains its own network. The report's tests treat the variants'
seeds as independent samples (Welch, permutations over runs): conservative
where matched seeds' scores correlate positively, not where they correlate
negatively. This prints, per task, the Pearson correlation over seeds of each
variant's final score with the reference's (where both vary), its Welch and
paired-t p beside each other, and the mean correlation over every pair of
variants. Cells not finished are left out (said so)::

    python benchmarks/matched_seeds.py benchmarks/results/minigrid_mt3_cpu
    # MT5: its reference is kept apart; the study assembled as benchmarks/results/minigrid_mt5.md rebuilds it
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from scipy import stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study", type=Path, help="a study directory whose cells have finished")
    args = parser.parse_args()
    record = json.loads((args.study / "study.json").read_text())
    reference, summaries = record["reference"], {}
    for v in record["variants"]:
        path = args.study / "cells" / v / "summary.json"
        summary = json.loads(path.read_text()) if path.is_file() else {}
        if summary.get("status") == "ok":
            summaries[v] = summary
        else:
            print(f"(left out: {v}, {'not finished' if summary else f'no {path}'})")
    if reference not in summaries:
        raise SystemExit(f"matched_seeds.py: error: the reference {reference!r} has no finished cell in {args.study}")
    variants = list(summaries)
    scores = {v: summaries[v]["final_score"] for v in variants}
    print("| task | variant | r with the reference | Welch p | paired-t p |\n|---|---|---|---|---|")
    against, pooled = [], {}
    for task in record["tasks"]:
        y = np.asarray(scores[reference][task])
        matrix = np.array([scores[v][task] for v in variants])
        varying = matrix[np.ptp(matrix, axis=1) > 0]
        if len(varying) >= 2:
            upper = np.triu_indices(len(varying), 1)
            pooled[task] = float(np.corrcoef(varying)[upper].mean())
        if np.ptp(y) == 0:
            continue
        for v in variants:
            x = np.asarray(scores[v][task])
            if v == reference or np.ptp(x) == 0:
                continue
            r = float(stats.pearsonr(x, y)[0])
            against.append(r)
            print(f"| {task} | {v} | {r:+.2f} | {stats.ttest_ind(x, y, equal_var=False).pvalue:.4f} | "
                  f"{stats.ttest_rel(x, y).pvalue:.4f} |")
    if against:
        print(f"\nagainst the reference: mean r {np.mean(against):+.2f} over {len(against)} comparisons "
              f"({min(against):+.2f} to {max(against):+.2f})")
    for task, r in pooled.items():
        print(f"{task}: mean r over every pair of varying variants {r:+.3f}")


if __name__ == "__main__":
    main()
