"""Plain-language findings generated from the computed tables.

Every sentence carries its number, its 95% CI and the seed counts, and a
difference whose CI contains zero is always called "no clear difference":
the report must not let a reader turn noise into a claim.
"""

from __future__ import annotations

import math

import pandas as pd

from .fmt import interval, num, signed
from .stats import Estimate

__all__ = ["compare_sentence", "conflict_sentence", "findings"]


def compare_sentence(
    what: str,
    variant: str,
    reference: str,
    diff: Estimate,
    n_variant: int,
    n_reference: int,
    method: str,
) -> str:
    """One sentence comparing `variant` with `reference` on `what` (difference = variant - reference).

    "higher"/"lower" only when the whole 95% CI is on one side of zero,
    otherwise "no clear difference"; an undefined CI (too few seeds) is also
    "no clear difference".
    """
    seeds = f"n = {n_variant} vs {n_reference} seeds"
    ci = f"95% CI {interval(diff.lo, diff.hi)}, {method}"
    if not (math.isfinite(diff.lo) and math.isfinite(diff.hi)):
        return (f"{what}: no clear difference between `{variant}` and `{reference}` "
                f"(difference {signed(diff.value)}, CI undefined with {seeds}).")
    if diff.lo <= 0.0 <= diff.hi:
        return (f"{what}: no clear difference between `{variant}` and `{reference}` "
                f"(difference {signed(diff.value)}, {ci}, {seeds}).")
    word = "higher" if diff.lo > 0.0 else "lower"
    return (f"{what}: `{variant}` is {word} than `{reference}` by {num(abs(diff.value))} "
            f"(difference {signed(diff.value)}, {ci}, {seeds}).")


def conflict_sentence(row: pd.Series) -> str:
    """Gradient-conflict level of one variant from a `conflict_summary_table` row."""
    return (f"Gradient conflict in `{row['variant']}`: mean pairwise cosine of shared-parameter gradients "
            f"{num(row['cosine_mean'])} (95% CI {interval(row['cosine_lo'], row['cosine_hi'])}), "
            f"conflict fraction (share of task-pair gradient comparisons with cosine < 0) {num(row['conflict_fraction'])} "
            f"(95% CI {interval(row['conflict_lo'], row['conflict_hi'])}), "
            f"over {row['n_pairs']} task pair(s), n = {row['n']} seeds.")


def _poi_sentence(row: pd.Series) -> str:
    return (f"Probability that `{row['variant']}` beats `{row['reference']}` on a task "
            f"(normalized final score): {num(row['poi'])} (95% CI {interval(row['poi_lo'], row['poi_hi'])}, "
            f"rliable stratified bootstrap, n = {row['n']} vs {row['n_reference']} seeds); 0.5 means a tie.")


def findings(
    reference: str,
    variants: tuple[str, ...],
    improvement: pd.DataFrame,
    final_diff: pd.DataFrame,
    conflict: pd.DataFrame,
) -> list[str]:
    """All findings, grouped per non-reference variant in `variants` order.

    `improvement` is `tables.aggregate_tables`'s second frame, `final_diff`
    is `tables.final_difference_table`, `conflict` is `why.conflict_summary_table`.
    """
    out: list[str] = []
    if reference not in variants:
        out.append(f"No comparison with the reference: `{reference}` did not finish (see Cells), so there are "
                   "no differences, normalized scores or probabilities of improvement.")
    for v in variants:
        if v == reference:
            continue
        imp = improvement[improvement["variant"] == v]
        for _, row in imp.iterrows():
            diff = Estimate(row["iqm_diff"], row["iqm_diff_lo"], row["iqm_diff_hi"], int(row["n"]))
            out.append(compare_sentence(
                f"Aggregate IQM of normalized final score over {row['n_tasks']} task(s)", v, reference, diff,
                int(row["n"]), int(row["n_reference"]), "rliable stratified bootstrap"))
            out.append(_poi_sentence(row))
        for _, row in final_diff[final_diff["variant"] == v].iterrows():
            diff = Estimate(row["diff"], row["lo"], row["hi"], int(row["n"]))
            out.append(compare_sentence(
                f"Final return on {row['task']}", v, reference, diff,
                int(row["n"]), int(row["n_reference"]), "Welch t-interval"))
    for _, row in conflict.iterrows():
        out.append(conflict_sentence(row))
    return out
