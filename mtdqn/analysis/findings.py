"""Plain-language findings generated from the computed tables.

Every sentence carries its number, its 95% CI (or, below
:data:`~mtdqn.analysis.stats.MIN_SEEDS` seeds, the per-seed values instead)
and the seed counts, and a difference whose CI contains zero, or that has no
CI, is always called "no clear difference": the report must not let a reader
turn noise into a claim.  Where the spread allows, a sentence also says the
smallest difference the study could have detected, so "no clear difference"
reads as what it is.  The first finding counts the comparisons made.
"""

from __future__ import annotations

import math
from typing import Callable

import pandas as pd

from .fmt import detectable, gamma, interval, num, steps
from .stats import MIN_SEEDS, Estimate
from .tables import METRICS

__all__ = ["compare_sentence", "conflict_sentence", "multiplicity_sentence", "findings"]


def compare_sentence(
    what: str,
    variant: str,
    reference: str,
    diff: Estimate,
    n_variant: int,
    n_reference: int,
    method: str,
    *,
    mde: float = float("nan"),
    max_diff: float = float("inf"),
    seeds: tuple[str, str] | None = None,
    show: Callable[[float], str] = num,
) -> str:
    """One sentence comparing `variant` with `reference` on `what` (difference = variant - reference).

    "higher"/"lower" only when the whole 95% CI is on one side of zero,
    otherwise "no clear difference"; an undefined CI (too few seeds) is also
    "no clear difference", and then `seeds` (the per-seed values of variant
    and reference, as text) are quoted instead. `mde` is the smallest
    difference detectable at power 0.8 (NaN: not stated), `max_diff` the
    largest difference the metric's range allows; `show` formats a
    magnitude (e.g. env steps as '50k').
    """
    counts = f"n = {n_variant} vs {n_reference} seeds"
    d = show(diff.value)
    d = d if d.startswith("-") or d == "n/a" else "+" + d
    detect = (f"; smallest difference detectable at power 0.8, alpha 0.05: {detectable(mde, max_diff, show)}"
              if math.isfinite(mde) else "")
    if not (math.isfinite(diff.lo) and math.isfinite(diff.hi)):
        per_seed = f"; per seed `{variant}` {seeds[0]} vs `{reference}` {seeds[1]}" if seeds else ""
        return (f"{what}: no clear difference between `{variant}` and `{reference}` "
                f"(difference {d}, CI undefined with {counts}, fewer than {MIN_SEEDS}{per_seed}{detect}).")
    ends = interval(diff.lo, diff.hi) if show is num else f"[{show(diff.lo)}, {show(diff.hi)}]"
    ci = f"95% CI {ends}, {method}"
    if diff.lo <= 0.0 <= diff.hi:
        return (f"{what}: no clear difference between `{variant}` and `{reference}` "
                f"(difference {d}, {ci}, {counts}{detect}).")
    word = "higher" if diff.lo > 0.0 else "lower"
    return (f"{what}: `{variant}` is {word} than `{reference}` by {show(abs(diff.value))} "
            f"(difference {d}, {ci}, {counts}).")


def multiplicity_sentence(n_comparisons: int) -> str:
    """How many comparisons the findings make, and what that means for reading them."""
    return (f"This report makes {n_comparisons} comparison(s) with the reference, each at the 95% level with no "
            f"correction for multiplicity: with no true difference anywhere, about {n_comparisons * 0.05:.1f} of "
            "them would still come out 'higher' or 'lower' by chance.")


def conflict_sentence(row: pd.Series) -> str:
    """Gradient-conflict level of one variant from a `conflict_summary_table` row, beside its same-task null."""
    null = ""
    if "null_cosine" in row and math.isfinite(row["null_cosine"]):
        null = (f"; same-task null at the end of training (two independent minibatches of one task) "
                f"{num(row['null_cosine'])} vs between tasks {num(row['end_cosine'])} on the same parameters")
    return (f"Gradient conflict in `{row['variant']}`: mean pairwise cosine of shared-parameter gradients "
            f"{num(row['cosine_mean'])} (95% CI {interval(row['cosine_lo'], row['cosine_hi'])}), "
            f"conflict fraction (share of updates whose task-pair gradients have cosine < 0) "
            f"{num(row['conflict_fraction'])} (95% CI {interval(row['conflict_lo'], row['conflict_hi'])}), "
            f"over {row['n_pairs']} task pair(s), n = {row['n']} seeds{null}.")


def _poi_sentence(row: pd.Series) -> str:
    return (f"Probability that `{row['variant']}` beats `{row['reference']}` on a task "
            f"(normalized final score): {num(row['poi'])} (95% CI {interval(row['poi_lo'], row['poi_hi'])}, "
            f"rliable stratified bootstrap, n = {row['n']} vs {row['n_reference']} seeds); 0.5 means a tie.")


def _aggregate_sentences(row: pd.Series, reference: str) -> list[str]:
    what = f"normalized final score over {row['n_tasks']} task(s), fixed anchors"
    v, n, nr = row["variant"], int(row["n"]), int(row["n_reference"])
    return [
        compare_sentence(f"Aggregate IQM of {what}", v, reference,
                         Estimate(row["iqm_diff"], row["iqm_diff_lo"], row["iqm_diff_hi"], n), n, nr,
                         "rliable stratified bootstrap"),
        compare_sentence(f"Aggregate mean of {what}", v, reference,
                         Estimate(row["mean_diff"], row["mean_diff_lo"], row["mean_diff_hi"], n), n, nr,
                         "rliable stratified bootstrap"),
        _poi_sentence(row),
    ]


def _difference_sentence(row: pd.Series) -> str:
    what = f"{METRICS[row['metric']]} on {row['task']}"
    if row["metric"] == "final_discounted":
        what = f"{METRICS[row['metric']]} (γ {gamma(row['gamma'])}) on {row['task']}"
    show = steps if row["metric"] == "steps_to_threshold" else num
    if row["metric"] == "steps_to_threshold":
        what += " (unreached counted as the whole budget)"
    diff = Estimate(row["diff"], row["lo"], row["hi"], int(row["n"]))
    return compare_sentence(what, row["variant"], row["reference"], diff, int(row["n"]), int(row["n_reference"]),
                            "percentile bootstrap within the metric's range", mde=float(row["mde"]),
                            max_diff=float(row["max_diff"]),
                            seeds=(row["values"], row["values_reference"]), show=show)


def n_comparisons(improvement: pd.DataFrame, differences: pd.DataFrame) -> int:
    """Comparisons with the reference: per task and metric, plus IQM, mean and P(improvement) per variant."""
    return int(len(differences) + 3 * len(improvement))


def findings(
    reference: str,
    variants: tuple[str, ...],
    improvement: pd.DataFrame,
    differences: pd.DataFrame,
    conflict: pd.DataFrame,
    headline: str = "final_return",
) -> list[str]:
    """All findings: the comparison count first, then grouped per non-reference variant in `variants` order.

    `improvement` is `tables.aggregate_tables`'s second frame, `differences`
    is `tables.difference_table`, `conflict` is `why.conflict_summary_table`.
    Within a variant the per-task differences follow the table's metric order;
    with `headline` "final_discounted" its sentences lead, before the aggregates
    (which stay on the undiscounted normalized score).
    """
    out: list[str] = []
    if reference not in variants:
        out.append(f"No comparison with the reference: `{reference}` did not finish (see Cells), so there are "
                   "no differences, normalized scores or probabilities of improvement.")
    elif len(improvement) or len(differences):
        out.append(multiplicity_sentence(n_comparisons(improvement, differences)))
    for v in variants:
        if v == reference:
            continue
        mine = differences[differences["variant"] == v]
        lead = mine["metric"] == headline if headline == "final_discounted" else pd.Series(False, mine.index)
        out += [_difference_sentence(row) for _, row in mine[lead].iterrows()]
        for _, row in improvement[improvement["variant"] == v].iterrows():
            out += _aggregate_sentences(row, reference)
        out += [_difference_sentence(row) for _, row in mine[~lead].iterrows()]
    for _, row in conflict.iterrows():
        out.append(conflict_sentence(row))
    return out
