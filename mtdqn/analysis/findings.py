"""Plain-language findings generated from the computed tables.

Every sentence carries its number, its 95% CI (or, below
:data:`~mtdqn.analysis.stats.MIN_SEEDS` seeds, the per-seed values instead),
its test and the seed counts. A difference is "higher" or "lower" only when it
survives Holm-Bonferroni across every test of the report; one that passes only
uncorrected is "suggestive only", and the rest "no clear difference": the
report must not let a reader turn noise into a claim. Where the spread allows,
a sentence also says the smallest difference the study could have detected, so
"no clear difference" reads as what it is. The first finding counts the tests
and says which comparisons were not tested.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import pandas as pd

from .fmt import detectable, gamma, interval, num, p_is, pvalue, steps
from .permutation import permutation_is_exact, permutation_wording, permutations_exact
from .stats import MIN_SEEDS, Estimate
from .tables import METRICS, NEAR_RANDOM, UNTESTED, family_size, in_family

__all__ = ["compare_sentence", "conflict_sentence", "multiplicity_sentence", "findings"]


ALPHA = 0.05
"""Family-wise error rate of the report's findings (Holm-Bonferroni over all its tests)."""


def compare_sentence(
    what: str,
    variant: str,
    reference: str,
    diff: Estimate,
    n_variant: int,
    n_reference: int,
    method: str,
    *,
    p: float = float("nan"),
    p_holm: float = float("nan"),
    effect: float = float("nan"),
    estimable: bool = True,
    mde: float = float("nan"),
    max_diff: float = float("inf"),
    seeds: tuple[str, str] | None = None,
    show: Callable[[float], str] = num,
    mde_alpha: float = ALPHA,
) -> str:
    """One sentence comparing `variant` with `reference` on `what` (difference = variant - reference).

    "higher"/"lower" only when the Holm-corrected p (`p_holm`) is below :data:`ALPHA` and the interval
    agrees; "suggestive" when only the uncorrected `p` is; otherwise "no clear difference". No test
    (too few seeds: the per-seed values in `seeds` are quoted; no variation: "not estimable") is never a
    finding. `effect` is Hedges' g, `mde` the difference detectable at power 0.8 (NaN: not stated),
    `max_diff` the largest difference the metric's range allows, `mde_alpha` the level `mde` was sized at (the
    Holm family's first step); `show` formats a magnitude.
    """
    counts = f"n = {n_variant} vs {n_reference} seeds"
    d = signed(diff.value, show)
    detect = (f"; smallest difference detectable at power 0.8 at Holm's first-step level "
              f"(α {alpha_text(mde_alpha)}): {detectable(mde, max_diff, show)}" if math.isfinite(mde) else "")
    if not estimable:
        per_seed = f": every seed of both gave {seeds[0].split(', ')[0]}" if seeds else ""
        return (f"{what}: not estimable (no variation{per_seed}) between `{variant}` and `{reference}`, "
                f"{counts}; not counted among the comparisons.")
    per_seed = f"; per seed `{variant}` {seeds[0]} vs `{reference}` {seeds[1]}" if seeds else ""
    if not (math.isfinite(diff.lo) and math.isfinite(diff.hi)) and min(n_variant, n_reference) < MIN_SEEDS:
        return (f"{what}: not tested, `{variant}` vs `{reference}` (difference {d}, no interval or test with "
                f"{counts}, fewer than {MIN_SEEDS}{per_seed}).")
    if not (math.isfinite(diff.lo) and math.isfinite(diff.hi)):  # each side constant, the two apart
        certain = math.isfinite(p_holm) and p_holm < ALPHA
        verdict = (f"`{variant}` is {'higher' if diff.value > 0 else 'lower'} than `{reference}` by "
                   f"{show(abs(diff.value))}" if certain else f"no clear difference between `{variant}` and "
                   f"`{reference}`")
        return (f"{what}: {verdict} (difference {d}, no interval: no spread within either variant{per_seed}; "
                f"{p_is(p)}, Holm-corrected {p_is(p_holm)}, {counts}).")
    ends = interval(diff.lo, diff.hi) if show is num else f"[{show(diff.lo)}, {show(diff.hi)}]"
    g = f"; Hedges' g {effect:+.2f}" if math.isfinite(effect) else ""
    tested = math.isfinite(p)
    test = f"; {p_is(p)}, Holm-corrected {p_is(p_holm)}" if tested else ""
    stats_text = f"95% CI {ends}, {method}{test}{g}, {counts}"
    word = "higher" if diff.value > 0.0 else "lower"
    if tested and math.isfinite(p_holm) and p_holm < ALPHA and not diff.lo <= 0.0 <= diff.hi:
        return (f"{what}: `{variant}` is {word} than `{reference}` by {show(abs(diff.value))} "
                f"(difference {d}, {stats_text}).")
    if tested and p < ALPHA:
        return (f"{what}: suggestive only, `{variant}` {word} than `{reference}` by {show(abs(diff.value))} "
                f"(difference {d}, {stats_text}): it does not survive the correction for multiplicity, so it "
                "is not a finding.")
    return (f"{what}: no clear difference between `{variant}` and `{reference}` "
            f"(difference {d}, {stats_text}{detect}).")


def signed(x: float, show: Callable[[float], str] = num) -> str:
    """A difference with its sign: '+68.0', '-32.9', 'n/a'."""
    d = show(x)
    return d if d.startswith("-") or d == "n/a" else "+" + d


def alpha_text(level: float) -> str:
    """A Holm first-step level as '0.05/21 = 0.0024' (or '0.05' for a family of one)."""
    m = round(ALPHA / level) if level > 0 else 0
    return f"{ALPHA:g}/{m} = {level:.2g}" if m > 1 else f"{level:g}"


def _untested_reasons(differences: pd.DataFrame) -> pd.Series:
    """Per row: why it has no test ('' where it has one); tables from before `untested` read from `p`."""
    if "untested" in differences:
        return differences["untested"].fillna("").astype(str)
    flat = ~differences["estimable"].astype(bool)
    few = ~flat & ~np.isfinite(differences["p"].to_numpy(dtype=float))
    return pd.Series(np.where(flat, "no_variation", np.where(few, "few_seeds", "")), index=differences.index)


def _untested_aggregates(improvement: pd.DataFrame) -> tuple[int, int]:
    """(aggregate comparisons with too few seeds, those left out as unable to reach significance: Tarone)."""
    few = unattainable = 0
    for p in ("iqm_p", "mean_p"):
        untested = ~in_family(improvement, p)
        smallest = (improvement[f"{p}_min"].to_numpy(dtype=float) if f"{p}_min" in improvement
                    else np.full(len(improvement), np.nan))
        unattainable += int((untested & np.isfinite(smallest)).sum())
        few += int((untested & ~np.isfinite(smallest)).sum())
    return few, unattainable


def multiplicity_sentence(differences: pd.DataFrame, improvement: pd.DataFrame) -> str:
    """How many comparisons the findings test, how they are corrected, and which are not tested and why."""
    tested = family_size(differences, improvement)
    reasons = _untested_reasons(differences)
    untested = [f"{int((reasons == key).sum())} {text}" for key, text in UNTESTED.items() if (reasons == key).any()]
    few, unattainable = _untested_aggregates(improvement)
    if few:
        untested.append(f"{few} aggregate IQM or mean comparison(s) with fewer than {MIN_SEEDS} seeds on a side")
    if unattainable:
        untested.append(f"{unattainable} aggregate IQM or mean comparison(s) whose permutation test could not reach "
                        "significance at these seed counts (Tarone's rule)")
    total = len(differences) + 2 * len(improvement) - tested
    rest = f" Not tested: {total} in all: {'; '.join(untested)}." if untested else ""
    return (f"This report tests {tested} comparison(s) with the reference (per task and metric: Welch's t-test, "
            "for steps to threshold Gehan's test for censored times; aggregate IQM and mean: "
            f"{permutation_wording(permutations_exact(differences, improvement))}), corrected together "
            "by Holm-Bonferroni for a family-wise error rate of "
            f"{ALPHA:g}: a difference is called higher or lower only when its corrected p is below it, and "
            "'suggestive only' when just the uncorrected p is. Probabilities of improvement are descriptive, not "
            f"tested.{rest}")


def _ci(lo: float, hi: float) -> str:
    """'95% CI [lo, hi]', or 'no interval at this n' (below :data:`MIN_SEEDS` seeds), as the Conclusion says."""
    return f"95% CI {interval(lo, hi)}" if math.isfinite(lo) and math.isfinite(hi) else "no interval at this n"


def _net_conflict(lo: float, hi: float) -> str:
    """What a between-task cosine's interval says about net conflict; without one, nothing shown either way."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return "no net conflict shown"
    if lo >= 0.0:
        return "≥ 0: no net conflict (near-orthogonal or aligned gradients)"
    if hi < 0.0:
        return "below 0: net conflict, the tasks' gradients oppose on average"
    return "its interval holds 0: no net conflict shown"


def _pair_verdict(lo: float, hi: float) -> str:
    """A pair's cosine interval against 0, in a few words (:func:`_net_conflict`'s, for one pair)."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return "nothing shown"
    return "no net conflict" if lo >= 0.0 else "net conflict" if hi < 0.0 else "holds 0"


def _pair_clause(r) -> str:
    """One pair's cosine and conflict fraction, each with its interval over seeds (the pooled mean can hide a
    pair in conflict among aligned ones), beside both tasks' own noise baselines over the same steps."""
    def own(task: str, share: float, degenerate: bool, null: float) -> str:
        return (f"{task} degenerate (same-task null {num(null)}: its gradient direction does not change, no "
                "baseline)" if degenerate else f"{task} {num(share)}")
    return (f"{r.task_a}–{r.task_b}: cosine {num(r.mean)} ({_ci(r.lo, r.hi)}: {_pair_verdict(r.lo, r.hi)}), "
            f"conflict fraction {num(r.conflict)} ({_ci(r.conflict_lo, r.conflict_hi)}) vs "
            f"{own(r.task_a, r.noise_a, r.degenerate_a, r.null_a)}, "
            f"{own(r.task_b, r.noise_b, r.degenerate_b, r.null_b)}")


def conflict_sentence(row: pd.Series, pairs: pd.DataFrame | None = None) -> str:
    """Gradient conflict of one variant from a `conflict_summary_table` row: the mean between-task cosine
    against 0 (net conflict or not), the conflict fraction against 0.5 (independent directions), and each task
    pair beside its own two tasks' noise baselines over the same steps (`pairs`: the variant's
    `conflict_pairs_table` rows), degenerate tasks named, never averaged in."""
    if int(row["n_pairs"]) == 0:  # every pair has a degenerate task: no mean to read against 0 or 0.5
        head = (f"Gradient conflict in `{row['variant']}`: no pair of two non-degenerate tasks, so no mean cosine "
                "or conflict fraction between learning tasks")
    else:
        head = (f"Gradient conflict in `{row['variant']}` (on each task's gradient before the strategy combines "
                f"them): mean between-task cosine of shared-parameter gradients {num(row['cosine_mean'])} "
                f"({_ci(float(row['cosine_lo']), float(row['cosine_hi']))}), "
                f"{_net_conflict(float(row['cosine_lo']), float(row['cosine_hi']))}; conflict fraction (share of "
                f"updates whose task-pair gradients have cosine < 0) {num(row['conflict_fraction'])} "
                f"({_ci(float(row['conflict_lo']), float(row['conflict_hi']))}), against 0.5 for independent random "
                f"directions; over {row['n_pairs']} task pair(s) of non-degenerate tasks, n = {row['n']} seeds")
    if pairs is None or not len(pairs) or "conflict" not in pairs:
        noise = float(row.get("noise_conflict", float("nan")))
        baseline = f"; noise baseline (same-task pairs with cosine < 0) {num(noise)}" if math.isfinite(noise) else ""
        return head + baseline + "."
    steps = str(pairs["steps"].iloc[0])
    return (head + f". Per pair, over the same {steps}, beside each task's own share of same-task minibatch pairs "
            "with cosine < 0 (its noise baseline): " + "; ".join(_pair_clause(r) for r in pairs.itertuples())
            + ". A fraction above the tasks' own shares but near 0.5 with a cosine interval at or above 0 reads as "
            "near-orthogonal gradients, not as conflict; the tasks' shares are means over seeds, without an "
            "interval.")


def aggregate_method(n: int, n_reference: int) -> str:
    """How an aggregate comparison of ``n`` against ``n_reference`` runs was estimated and tested."""
    test = permutation_wording(permutation_is_exact(n, n_reference))
    return f"rliable percentile stratified bootstrap, which under-covers at small n (see Aggregates); p from {test}"


def _poi_sentence(row: pd.Series) -> str:
    return (f"Probability that `{row['variant']}` beats `{row['reference']}` on a task "
            f"(normalized final score): {num(row['poi'])} ({_ci(float(row['poi_lo']), float(row['poi_hi']))}, "
            f"rliable percentile stratified bootstrap, n = {row['n']} vs {row['n_reference']} seeds); 0.5 means a tie"
            f"{_ties(row)}; descriptive, not tested.")


def _ties(row: pd.Series) -> str:
    share = float(row.get("poi_ties", float("nan")))
    if not math.isfinite(share) or share == 0.0:
        return "; no tied run pairs"
    return f"; {share:.0%} of run pairs tie (equal normalized scores) and count one half each"


def _get(row: pd.Series, key: str) -> float:
    """A float column of a findings row, NaN when the table predates it."""
    value = row.get(key, float("nan"))
    return float(value) if value is not None else float("nan")


def _uncorrected(p: float) -> str:
    """A left-out test's own p, where it has one: uncorrected, and below alpha only suggestive."""
    if not math.isfinite(p):
        return ""
    return f" (its p {pvalue(p)}, uncorrected{': suggestive only' if p < ALPHA else ''})"


def _in_family(row: pd.Series, p: str) -> bool:
    """Whether the test of ``row`` whose p is column ``p`` is in the Holm family (:func:`tables.in_family`)."""
    return bool(in_family(row.to_frame().T, p)[0])


def _aggregate_sentences(row: pd.Series, reference: str) -> list[str]:
    """The aggregate IQM and mean comparisons (each tested, or left out by Tarone's rule) and P(improvement)."""
    what = f"normalized final score over {row['n_tasks']} task(s), fixed anchors"
    v, n, nr = row["variant"], int(row["n"]), int(row["n_reference"])
    out = []
    for label, key in (("IQM", "iqm"), ("mean", "mean")):
        diff = Estimate(row[f"{key}_diff"], row[f"{key}_diff_lo"], row[f"{key}_diff_hi"], n)
        if not _in_family(row, f"{key}_p") and math.isfinite(_get(row, f"{key}_p_min")):  # Tarone left it out
            out.append(f"Aggregate {label} of {what}: not tested, `{v}` − `{reference}` {signed(diff.value)} "
                       f"(95% CI {interval(diff.lo, diff.hi)}, {aggregate_method(n, nr)}, n = {n} vs {nr} seeds): "
                       "no split "
                       f"of these runs could give the permutation test a p below {pvalue(_get(row, f'{key}_p_min'))}, "
                       f"above {ALPHA:g}/K = {ALPHA:g}/{int(_get(row, 'tarone_k'))}, the level Tarone's rule sets, "
                       f"so it is left out of the comparisons{_uncorrected(_get(row, f'{key}_p'))}.")
        else:
            out.append(compare_sentence(f"Aggregate {label} of {what}", v, reference, diff, n, nr,
                                        aggregate_method(n, nr),
                                        p=_get(row, f"{key}_p"), p_holm=_get(row, f"{key}_p_holm")))
    return [*out, _poi_sentence(row)]


def _one_seed_sentence(what: str, row: pd.Series) -> str:
    """A comparison where every seed of both sides but one gave the same value: the values, not a test."""
    n, nr = int(row["n"]), int(row["n_reference"])
    return (f"{what}: not tested, it rests on a single seed ({row.get('deviating', 1)}/{n + nr} seeds of "
            f"`{row['variant']}` and `{row['reference']}` together differ from the rest; per seed "
            f"`{row['variant']}` {row['values']} vs `{row['reference']}` {row['values_reference']}; difference "
            f"{signed(row['diff'])}): Welch's t is 1 there whatever the deviation, so no p, Hedges' g or "
            "detectable difference is given and it is not counted among the comparisons.")


def _steps_sentence(what: str, row: pd.Series) -> str:
    """Steps to threshold as censored times: the share of seeds that reached it and Gehan's test."""
    v, ref, n, nr = row["variant"], row["reference"], int(row["n"]), int(row["n_reference"])
    reached = f"reached by {int(row['reached'])}/{n} seeds of `{v}` and {int(row['reached_reference'])}/{nr} of `{ref}`"
    per_seed = f"per seed `{v}` {row['values']} vs `{ref}` {row['values_reference']}"
    if row.get("untested", "") == "uninformative":
        return (f"{what}: not informative at this budget: {reached}; not counted among the comparisons.")
    if row.get("untested", "") == "few_seeds":
        return f"{what}: {reached} ({per_seed}); not tested, fewer than {MIN_SEEDS} seeds on a side."
    if row.get("untested", "") == "unattainable":
        return (f"{what}: {reached} ({per_seed}); not tested: no split of these runs could give Gehan's test a p "
                f"below {pvalue(_get(row, 'p_min'))} with n = {n} vs {nr} seeds, above {ALPHA:g}/K = "
                f"{ALPHA:g}/{int(_get(row, 'tarone_k'))}, so it cannot reach significance at the level Tarone's "
                f"rule sets and is left out of the comparisons{_uncorrected(_get(row, 'p'))}.")
    p, p_holm = _get(row, "p"), _get(row, "p_holm")
    # the direction Gehan's test tested: its concordance's sign, which the restricted means can contradict (two
    # unreached seeds counted at the budget can outweigh eight faster ones)
    c = _get(row, "effect")
    slower = c > 0 if math.isfinite(c) and c != 0 else row["diff"] > 0
    verdict = ("no clear difference" if not (math.isfinite(p) and p < ALPHA) else
               f"`{v}` {'slower' if slower else 'faster'}, suggestive only" if not p_holm < ALPHA else
               f"`{v}` {'slower' if slower else 'faster'} than `{ref}`")
    return (f"{what}: {verdict}: {reached} ({per_seed}); restricted mean steps (unreached counted as the "
            f"budget) differ by {signed(row['diff'], steps)}; Gehan's test for censored times by permutation "
            f"{p_is(p)}, Holm-corrected {p_is(p_holm)}{_concordance(row)}, n = {n} vs {nr} seeds.")


def _concordance(row: pd.Series) -> str:
    """'; Gehan's concordance c -0.84 (...)': the steps' standardized effect, where the table has it."""
    c = _get(row, "effect")
    if not math.isfinite(c):
        return ""
    lo, hi, unordered = _get(row, "effect_lo"), _get(row, "effect_hi"), _get(row, "unordered")
    ci, how = ("", "")
    if math.isfinite(lo):
        ci, how = f" [{lo:+.2f}, {hi:+.2f}]", "95% CI: percentile bootstrap over seeds, which under-covers at small n; "
    tied = (f"; {unordered:.0%} of the pairs are tied or left unordered by censoring and count 0"
            if math.isfinite(unordered) and unordered > 0 else "")
    return (f"; Gehan's concordance c {c:+.2f}{ci} ({how}pairs of runs in which `{row['variant']}` certainly "
            f"reached it later minus earlier, of all pairs{tied})")


def _difference_sentence(row: pd.Series) -> str:
    """One per-task comparison's finding; on a task neither side learned (``near_random``), said so after it."""
    sentence = _comparison(row)
    flag = row.get("near_random", False)
    if isinstance(flag, (bool, np.bool_)) and flag:  # NaN (a table that lacks it for some rows): not known
        sentence += (f" Neither `{row['variant']}` nor `{row['reference']}` learned {row['task']}: both mean final "
                     f"returns are less than {NEAR_RANDOM:.0%} of the way from a random policy's to the reference "
                     "anchor, so this difference is not about what sharing does to learning.")
    return sentence


def _comparison(row: pd.Series) -> str:
    what = f"{METRICS[row['metric']]} on {row['task']}"
    if row["metric"] == "final_discounted":
        what = f"{METRICS[row['metric']]} (γ {gamma(row['gamma'])}) on {row['task']}"
    show = steps if row["metric"] == "steps_to_threshold" else num
    if row["metric"] == "steps_to_threshold" and "untested" in row and row.get("test", "") != "welch":
        return _steps_sentence(what, row)
    if row["metric"] == "steps_to_threshold":
        what += " (unreached counted as the whole budget)"
    if row.get("untested", "") == "one_seed":
        return _one_seed_sentence(what, row)
    diff = Estimate(row["diff"], row["lo"], row["hi"], int(row["n"]))
    return compare_sentence(what, row["variant"], row["reference"], diff, int(row["n"]), int(row["n_reference"]),
                            "Welch t within the metric's range", p=_get(row, "p"), p_holm=_get(row, "p_holm"),
                            effect=_get(row, "effect"), estimable=bool(row.get("estimable", True)),
                            mde=float(row["mde"]), mde_alpha=_get(row, "mde_alpha") if "mde_alpha" in row else ALPHA,
                            max_diff=float(row["max_diff"]),
                            seeds=(row["values"], row["values_reference"]), show=show)


def findings(
    reference: str,
    variants: tuple[str, ...],
    improvement: pd.DataFrame,
    differences: pd.DataFrame,
    conflict: pd.DataFrame,
    headline: str = "final_return",
    pairs: pd.DataFrame | None = None,
) -> list[str]:
    """All findings: the comparison count first, then grouped per non-reference variant in `variants` order.

    `improvement` is `tables.aggregate_tables`'s second frame, `differences`
    is `tables.difference_table`, `conflict` is `why.conflict_summary_table`, `pairs`
    `why.conflict_pairs_table` (each pair beside its tasks' nulls).
    Within a variant the per-task differences follow the table's metric order;
    with `headline` "final_discounted" its sentences lead, before the aggregates
    (which stay on the undiscounted normalized score).
    """
    out: list[str] = []
    if reference not in variants:
        out.append(f"No comparison with the reference: `{reference}` did not finish (see Cells), so there are "
                   "no differences, normalized scores or probabilities of improvement.")
    elif len(improvement) or len(differences):
        out.append(multiplicity_sentence(differences, improvement))
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
        mine = pairs[pairs["variant"] == row["variant"]] if pairs is not None else None
        out.append(conflict_sentence(row, mine))
    return out
