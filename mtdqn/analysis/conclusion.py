"""The conclusion at the top of the findings: whether the variants differ from the reference, by how much the
study could have told, and what the gradient diagnostics show, generated from the report's own tables.

It restates, never adds: every number in it is in a findings sentence or a table below (the gradient sizes:
the table's norms to two significant figures, and their ratios), and at small n it says what "no difference
found" does not mean.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from . import ranges, stats
from .findings import ALPHA, alpha_text, signed
from .tables import family_size
from .fmt import interval, num, pvalue, steps
from .tables import METRICS

__all__ = ["conclusion"]


def _holm_rows(differences: pd.DataFrame, improvement: pd.DataFrame) -> pd.DataFrame:
    """Every comparison with its p and Holm p, per task and metric and for the aggregates, as one table."""
    columns = ["variant", "task", "metric", "diff", "p", "p_holm"]
    parts = [differences[columns],
             improvement.assign(task="aggregate", metric="IQM", diff=improvement["iqm_diff"],
                                p=improvement["iqm_p"], p_holm=improvement["iqm_p_holm"])[columns],
             improvement.assign(task="aggregate", metric="mean", diff=improvement["mean_diff"],
                                p=improvement["mean_p"], p_holm=improvement["mean_p_holm"])[columns]]
    numbers = {c: np.float64 for c in ("diff", "p", "p_holm")}  # one dtype each: an all-NaN part decides none
    parts = [part.astype(numbers) for part in parts if len(part)]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)


def _whether(differences: pd.DataFrame, improvement: pd.DataFrame, reference: str) -> str:
    tested = family_size(differences, improvement)
    if not tested:
        return ("Whether: not tested; no comparison has a test (see the first finding for why), so this study "
                "cannot say whether the variants differ.")
    holm = _holm_rows(differences, improvement)
    found = holm[holm["p_holm"] < ALPHA]
    # in the family (a Holm p) but not past it; a test Tarone's rule leaves out has its own finding
    hint = holm[(holm["p"] < ALPHA) & holm["p_holm"].notna() & ~(holm["p_holm"] < ALPHA)]

    def name(r) -> str:
        what = METRICS.get(r.metric, f"aggregate {r.metric}").lower() if r.task != "aggregate" else \
            f"aggregate {r.metric} normalized score"
        where = "" if r.task == "aggregate" else f" on {r.task}"
        diff = signed(r.diff, steps) if r.metric == "steps_to_threshold" else signed(r.diff)  # '-92k', as tables
        return f"`{r.variant}` {diff} in {what}{where} (Holm p {pvalue(r.p_holm)})"

    head = (f"Whether: {len(found)} of the {tested} tested difference(s) to `{reference}` survive(s) the Holm "
            f"correction: " + "; ".join(name(r) for r in found.itertuples()) if len(found) else
            f"Whether: none of the {tested} tested differences to `{reference}` survives the Holm correction")
    if len(hint):
        head += (f"; {len(hint)} {'passes' if len(hint) == 1 else 'pass'} only uncorrected (suggestive, not a "
                 "finding): "
                 + "; ".join(name(r) for r in hint.itertuples()))
    return head + "." + _related(found)


def _related(found: pd.DataFrame) -> str:
    """How many distinct effects the surviving tests are: several metrics of one variant on one task (the final
    return and its discounted form are the same episodes) and the aggregates (built from the per-task scores)
    are related tests, not independent findings (a referee counted 8 survivors resting on 2 task effects)."""
    per_task = found[found["task"] != "aggregate"]
    pairs = per_task[["variant", "task"]].drop_duplicates()
    aggregates = int((found["task"] == "aggregate").sum())
    if len(found) <= 1 or (len(pairs) == len(per_task) and not (aggregates and len(pairs))):
        return ""
    where = "; ".join(f"`{v}` on {', '.join(g['task'])}" for v, g in pairs.groupby("variant", sort=False))
    agg = (f", and {aggregates} aggregate test(s) computed from those same per-task scores" if aggregates and len(pairs)
           else "")
    several = " tested on several metrics of the same runs" if len(per_task) > len(pairs) else ""
    return (f" These {len(found)} tests are related, not independent findings: they rest on {len(pairs)} "
            f"variant–task effect(s) ({where}){several}{agg}.")


def _how_much(differences: pd.DataFrame, headline: str, found: frozenset[tuple[str, str]] = frozenset()) -> str:
    """The detectable differences of the headline metric per task (at the Holm first-step level), as a share
    of the task's range, and the tasks where no variant left a testable spread; ``found``: the (variant, task)
    pairs with a test past Holm on any metric, which the seeds-needed advice leaves to the Whether."""
    rows = differences[differences["metric"] == headline]
    if not len(rows):
        return ""
    level = float(rows["mde_alpha"].iloc[0]) if "mde_alpha" in rows else ALPHA
    parts, silent = [], _silent_tasks(differences, headline)
    for task, g in rows.groupby("task", sort=False):
        mde = g["mde"].to_numpy(dtype=float)
        mde = mde[np.isfinite(mde)]
        if not mde.size:
            continue
        lo, hi = ranges.return_bounds(task)
        width = hi - lo if np.isfinite(hi - lo) else float("nan")
        share = f" ({_share_of_range(mde.min(), mde.max(), width)})" if math.isfinite(width) else ""
        size = num(mde.min()) if mde.min() == mde.max() else f"{num(mde.min())}–{num(mde.max())}"
        diffs = ", ".join(f"`{r.variant}` {signed(r.diff)}" for r in g.itertuples())
        reference_mean = float(g["reference_mean"].iloc[0]) if "reference_mean" in g else float("nan")
        parts.append(f"{size} on {task}{share}, against observed {diffs}"
                     + _headroom(mde.min(), reference_mean, lo, hi, headline))
    what = METRICS[headline].lower()
    out = ""
    if parts:
        out = (f"By how much: at power 0.8 and Holm's first-step level, the strictest a finding may need "
               f"(α {alpha_text(level)}), this study "
               f"could resolve differences in {what} of about " + "; ".join(parts) + ". " + _seeds_needed(rows, found))
    if silent:
        out += (f" {', '.join(silent)}: no test on the {what}: every seed of every variant at one value, or all "
                "but one, so it says nothing about sharing.")
    return out.strip()


def _silent_tasks(differences: pd.DataFrame, headline: str) -> list[str]:
    """The tasks where no variant left a testable spread in ``headline`` (every seed of every variant at one
    value, or all but one; not for want of seeds): they say nothing about sharing."""
    silent = []
    for task, g in differences[differences["metric"] == headline].groupby("task", sort=False):
        if not np.isfinite(g["mde"].to_numpy(dtype=float)).any() \
                and (g.get("untested", pd.Series("", index=g.index)) != "few_seeds").all():
            silent.append(task)
    return silent


def _share_of_range(smallest: float, largest: float, width: float) -> str:
    """'9% to 23% of its range', one share when both print alike, a decimal under 10% ('0.8%', not '1% to 1%')."""
    def share(x: float) -> str:
        return f"{x / width:.0%}" if x / width >= 0.1 else f"{x / width:.1%}"

    first, last = share(smallest), share(largest)
    return f"{first} of its range" if first == last else f"{first} to {last} of its range"


def _headroom(detectable: float, reference_mean: float, lo: float, hi: float, headline: str) -> str:
    """Where the reference's mean sits so near a bound of the return that a difference of the detectable size
    cannot happen on that side: a referee found a CartPole detectable difference of 47 beside a reference at
    482 of a 500 cap (normal-theory power means little for scores piled at a ceiling)."""
    if headline != "final_return" or not math.isfinite(reference_mean):
        return ""
    room = [(side, gap) for side, gap in (("above", hi - reference_mean), ("below", reference_mean - lo))
            if math.isfinite(gap) and gap < detectable]
    if not room:
        return ""
    side, gap = room[0]
    bound = hi if side == "above" else lo
    return (f" (the reference's mean {num(reference_mean)} is {num(gap)} from the task's bound {num(bound)}: no "
            f"difference {side} it can reach the detectable size, and seeds piled at the bound make this "
            "normal-theory power a rough guide)")


def _seeds_needed(rows: pd.DataFrame, found: frozenset[tuple[str, str]] = frozenset()) -> str:
    """Said plainly when the budget cannot answer: every observed difference smaller than what its test could
    resolve, with the seeds per variant that would resolve the largest of them
    (:func:`stats.seeds_to_detect`: the detectable difference's power analysis at the spread seen, a rough
    guide).  The variant–task pairs in ``found``
    passed a test (a difference can pass below its detectable size, or on another metric of the same
    episodes): the sentence is about the others, and says so (a review's report said the budget could not tell
    whether `moore` +183 on CartPole was real beside its discounted return there surviving Holm)."""
    sized = rows[np.isfinite(rows["mde"].to_numpy(dtype=float)) & np.isfinite(rows["diff"].to_numpy(dtype=float))]
    sized = sized[[(v, t) not in found for v, t in zip(sized["variant"], sized["task"])]]
    if not len(sized) or (sized["diff"].abs() >= sized["mde"]).any():
        return ""
    others = "Besides the variant–task effects found above, every other" if found else "Every"
    big = sized.loc[sized["diff"].abs().idxmax()]
    if big["diff"] == 0:
        return (f"{others} observed difference is 0 where a test could be sized: this budget cannot say whether "
                "the variants differ" + (" there." if found else "."))
    n = int(min(big["n"], big["n_reference"]))
    se, dof = float(big.get("se", np.nan)), float(big.get("dof", np.nan))
    cannot = (f"{others} observed difference is smaller than what its test could resolve, so this budget cannot "
              "say whether they are real")
    if not (math.isfinite(se) and math.isfinite(dof)):  # a table without the test's spread: no size to give
        return cannot + "."
    needed = stats.seeds_to_detect(float(big["diff"]), se, dof, n, alpha=float(big["mde_alpha"]))
    size = f"about {needed:,} seeds per variant" if needed else "more than a million seeds per variant"
    return (f"{cannot}: resolving the largest, `{big['variant']}` {signed(big['diff'])} on {big['task']}, would "
            f"take {size} (the same power analysis at the spread seen: the standard error shrinks as 1/√n and the "
            "t quantiles with the degrees of freedom).")


def _why(conflict: pd.DataFrame, found: bool) -> str:
    """The gradient-conflict reading, and where the tasks' gradients are near-orthogonal while differences were
    found, that conflict does not explain them (a referee found the Why saying nothing about the findings)."""
    if conflict is None or not len(conflict):
        return ""
    parts = []
    for r in conflict.itertuples():
        lo, hi = float(r.cosine_lo), float(r.cosine_hi)
        reading = ("no net conflict" if math.isfinite(lo) and lo >= 0 else
                   "net conflict" if math.isfinite(hi) and hi < 0 else "no net conflict shown")
        ci = f"{interval(lo, hi)} ({reading})" if math.isfinite(lo) else f"(no interval at this n; {reading})"
        parts.append(f"`{r.variant}` mean between-task cosine {num(r.cosine_mean)} {ci}, conflict fraction "
                     f"{num(r.conflict_fraction)} against 0.5 for independent directions")
    near = all(abs(float(r.cosine_mean)) < 0.1 for r in conflict.itertuples())
    tail = (": the tasks' gradients on the shared trunk are near-orthogonal, neither net interference nor net "
            "alignment between tasks" if near else "")
    if near and found:
        tail += ", so conflict between the tasks' gradients does not explain the differences found"
    return "Why: " + "; ".join(parts) + tail + "."


def _magnitude(norms: pd.DataFrame | None, silent: list[str] = ()) -> str:
    """How far apart the tasks' gradient norms on the shared trunk are, for each variant whose update is their
    plain sum (every task's applied weight the same: the table "Per-task gradient norm and applied weight").
    There the tasks with the larger gradients set more of the trunk's update: the mechanism to look at when
    conflict is not one (a referee asked what does explain a difference once the cosines do not).  Left out: a
    variant whose strategy rescales the gradients (unit-norm, PCGrad, learned or static unequal weights: its
    update is not the plain sum; the clause names those the study has), and the ``silent`` tasks, which no
    variant left a testable spread in (a task never learned has a small gradient for that reason alone).  The
    norms are given to two significant figures, so that their ratio can be checked from the sentence itself."""
    if norms is None or not len(norms):
        return ""
    parts, rescaled = [], []
    for variant, g in norms.groupby("variant", sort=False):
        g = g[~g["task"].isin(list(silent))]
        g = g[np.isfinite(g["grad_norm_mean"].to_numpy(dtype=float)) & (g["grad_norm_mean"] > 0)]
        weights = g["weight_mean"].to_numpy(dtype=float)
        if len(g) < 2 or not np.all(np.isfinite(weights)) or not np.max(np.abs(weights)) > 0:
            continue
        if np.ptp(weights) > 1e-9 * np.max(np.abs(weights)):
            rescaled.append(f"`{variant}`")
            continue
        hi, lo = g.loc[g["grad_norm_mean"].idxmax()], g.loc[g["grad_norm_mean"].idxmin()]
        parts.append(f"`{variant}` {hi['grad_norm_mean'] / lo['grad_norm_mean']:.1f}× ({hi['task']} "
                     f"{hi['grad_norm_mean']:.2g} against {lo['task']} {lo['grad_norm_mean']:.2g})")
    if not parts:
        return ""
    left_out = f", leaving out {', '.join(silent)} (no testable spread there)" if silent else ""
    test = (f"{', '.join(rescaled)} {'rescales' if len(rescaled) == 1 else 'rescale'} them, but this report compares "
            "each variant with the reference only" if rescaled else
            "a variant that rescales them, such as `unit-norm`, against its plain-sum twin would")
    return ("Gradient sizes, the largest task's mean norm on the shared trunk over the smallest's where the update "
            f"is their plain sum{left_out}: " + "; ".join(parts) + ". There the tasks with the larger gradients set "
            f"more of the trunk's update: a candidate mechanism this study does not test ({test}).")


def _normalized(structure: str) -> bool:
    """Whether a variant's features come at unit-RMS scale: ``moore:K`` (its basis) or ``--feature-norm rms``."""
    return structure.startswith("moore:") or structure.endswith("+rms")


def _confounds(found_variants: list[str], structures: dict[str, str], reference: str) -> str:
    """What else a variant with a finding changes beside what its name says, from its recorded structure
    (``--sharing``, with '+rms' for ``--feature-norm rms``): MOORE's Gram–Schmidt comes with unit-RMS scaled
    expert outputs and K expert trunks, so a finding against a reference without that scale is not yet about
    orthogonality (the third referee's point; the ablations are named)."""
    out = []
    for v in found_variants:
        structure = structures.get(v, "")
        if structure.startswith("moore:") and not _normalized(structures.get(reference, "")):
            k = structure.split(":", 1)[1].split("+", 1)[0]
            what = ("sharing itself (its experts are shared by every task), and beyond sharing in more than "
                    "orthogonal experts" if structures.get(reference, "").startswith("independent")
                    else "more than orthogonal experts")
            out.append(f"`{v}` differs from `{reference}` in {what}: it also scales each "
                       f"expert's orthonormalized output to unit RMS before the mixing and trains {k} expert trunks; "
                       f"`--feature-norm rms` gives the same scale without Gram–Schmidt (on a shared trunk, or on "
                       f"`moe:{k}`, which is then `{v}` without its orthogonality): the ablations that separate "
                       "orthogonality from normalization.")
    return " ".join(out)


def conclusion(reference: str, differences: pd.DataFrame, improvement: pd.DataFrame, conflict: pd.DataFrame,
               headline: str = "final_return", structures: dict[str, str] | None = None,
               norms: pd.DataFrame | None = None) -> str:
    """'**Conclusion** (n vs n seeds).' whether / by how much / why, and what small n does not allow;
    ``structures`` (variant -> its recorded ``--sharing``) names what a variant with a finding also changes;
    ``norms`` (the per-task gradient norms and weights, :func:`mtdqn.analysis.why.grad_tasks_summary`) gives the
    Why its gradient sizes."""
    if not len(differences) and not len(improvement):
        return ""
    n = sorted({int(x) for x in pd.concat([differences["n"], differences["n_reference"]])}) if len(differences) \
        else sorted({int(x) for x in pd.concat([improvement["n"], improvement["n_reference"]])})
    seeds = "/".join(map(str, n))
    survivors = (_holm_rows(differences, improvement).query("p_holm < @ALPHA")
                 if family_size(differences, improvement) else pd.DataFrame(columns=["variant", "task"]))
    per_task = survivors[survivors["task"] != "aggregate"]  # an aggregate's finding leaves each task's open
    how = _how_much(differences, headline, frozenset(zip(per_task["variant"], per_task["task"])))
    caveat = (f"At {seeds} seeds per variant, 'no difference found' is not 'no difference': a true difference "
              "smaller than those sizes would most likely go unseen; more seeds shrink them roughly as 1/√n."
              if "could resolve" in how else
              f"At {seeds} seeds per variant nothing above is evidence either way.")
    found = survivors["variant"].unique().tolist()
    parts = [_whether(differences, improvement, reference), how, _why(conflict, bool(found)),
             _magnitude(norms, _silent_tasks(differences, headline) if len(differences) else []),
             _confounds(found, structures or {}, reference), caveat]
    return f"**Conclusion** ({seeds} seeds per variant). " + " ".join(p for p in parts if p)
