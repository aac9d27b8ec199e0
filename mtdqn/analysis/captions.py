"""Captions of the report's tables and figures that define what a number is: how steps to threshold and the
AUC are read off the curves, where thresholds come from, what each test and detectable difference is, what a
percentile bootstrap's interval is worth, what a strategy's applied weight is. Each is written from the same
constants and tables the numbers come from, so the words cannot drift from the code.
"""

from __future__ import annotations

import pandas as pd

from mtdqn import taskfacts
from mtdqn.errors import count
from mtdqn.rundir import FINAL_SCORE_EVALS

from . import fmt, plots, stats
from .findings import ALPHA, alpha_text
from .load import Study
from .permutation import permutation_wording, permutations_exact

__all__ = ["auc_steps", "thresholds_text", "reach_definition", "differences_note", "PERCENTILE_COVERAGE",
           "percentile_caveat",
           "WEIGHT_WORD", "final_scores", "conflict_curves"]


def auc_steps(curves: pd.DataFrame, source: str) -> str:
    """Which steps the AUC's trapezoid runs over: the curve's first to last point (no evaluation at step 0)."""
    if not len(curves):
        return "the curve's points"
    steps = sorted(int(x) for x in pd.unique(curves["step"]))
    what = "evaluation" if source == "evaluation" else "logging"
    if len(steps) == 1:  # no trapezoid ("from the first, 5.01k, to the last, 5.01k (1 points)"): its value
        return f"no span (the curve has one point, the {what} step {fmt.steps(steps[0])}: the AUC is its value)"
    return (f"the {what} steps from the first, {fmt.steps(steps[0])}, to the last, {fmt.steps(steps[-1])} "
            f"({len(steps)} points; there is no {what} at step 0, so the untrained start is not in it)")


def thresholds_text(study: Study) -> str:
    """Each task's threshold and where it comes from: mtdqn's default level for the task (taskfacts) or the
    study's own."""
    parts = []
    for task in study.tasks:
        values = {float(study.cells[v].summary["thresholds"][task]) for v in study.ok_variants
                  if task in study.cells[v].summary.get("thresholds", {})}
        if not values:
            continue
        value = values.pop() if len(values) == 1 else float("nan")
        f = taskfacts.facts(task)
        default = f is not None and f.threshold is not None and value == float(f.threshold)
        parts.append(f"{task} {fmt.num(value)} ({'mtdqn default' if default else 'set by the study'})")
    if not parts:
        return ""
    return ("Thresholds: " + ", ".join(parts) + "; mtdqn's defaults (mtdqn/taskfacts.py) are our own levels "
            "below each task's solved score (CartPole-v1 500 steps, Gymnasium's reward_threshold elsewhere), "
            "not a published benchmark's.")


def reach_definition(source: str, study: Study | None = None) -> str:
    """How steps to threshold are read off the curves (the one `_compute` applies) and where thresholds come from."""
    how = (f"the first evaluation step at which the mean of the last {FINAL_SCORE_EVALS} greedy evaluations "
           f"(from the {_ordinal(FINAL_SCORE_EVALS)} evaluation on; a run of fewer: the mean of all of them) "
           "reaches the threshold: the window's mean, so "
           "one high evaluation counts only with the evaluations beside it (it can lift a window whose others sit "
           "just below)"
           if source == "evaluation" else
           "the first logging step at which the smoothed training-return curve reaches the threshold")
    thresholds = thresholds_text(study) if study is not None else \
        "Thresholds: each run's summary.json (mtdqn's default per task in mtdqn/taskfacts.py, or the study's own)."
    lag = f" {_window_lag(study)}" if source == "evaluation" else ""
    return (f"Steps to threshold: {how}.{lag} {thresholds} Median over all seeds with unreached seeds counted as "
            "never (of an even number of seeds, the midpoint of the middle two: not necessarily an evaluation "
            "step); where that is unreached, '>x' is the most the median is known to exceed (unreached seeds "
            "counted as the budget). 'Seeds reached' is the share that reached it within the budget.")


def _ordinal(n: int) -> str:
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


def _window_lag(study: Study | None) -> str:
    """What the trailing window costs in time: the step reported is the window's last evaluation."""
    every = sorted({int(c.summary["eval_every_used"]) for c in (study.cells.values() if study else ())
                    if c.ok and c.summary.get("eval_every_used")})
    interval = (f" ({FINAL_SCORE_EVALS - 1} × {' or '.join(f'{e:,}' for e in every)} = "
                f"{' or '.join(f'{(FINAL_SCORE_EVALS - 1) * e:,}' for e in every)} env steps per task here)"
                if every else "")
    return (f"The step reported is the window's last evaluation: never earlier than the first single evaluation at "
            f"the threshold, and at most {FINAL_SCORE_EVALS - 1} evaluation intervals later{interval} when the level "
            "is held from there on (at the crossing itself when the evaluations before it were near the threshold "
            "already); later when it dips again, so a variant whose evaluations are noisier is reported later "
            "than its first crossing by more.")


def _degenerate_rows_note(diffs: pd.DataFrame) -> str:
    """What the table's degenerate labels mean, for the labels this table shows (a referee found the 6-vs-6
    explanation of a case that did not occur in a 10-vs-10 study)."""
    out = ""
    if "estimable" in diffs and (~diffs["estimable"].astype(bool)).any():
        out += (" 'Not estimable (no variation)': every seed of both sides gave one value, so there is no "
                "interval and no test.")
    if "untested" in diffs and (diffs["untested"] == "one_seed").any():
        out += (" 'Not tested (1/N seeds differ)': every seed of both sides but one gave the same value; Welch's "
                "t is then exactly 1 whatever that seed's deviation (p 0.363 at 6 vs 6), so the row gets no p, g or "
                "detectable difference and stays out of the Holm family.")
    return out


def differences_note(diffs: pd.DataFrame) -> str:
    """The caption of the difference table: each test, the family, and the level the detectable size uses."""
    level = float(diffs["mde_alpha"].iloc[0]) if len(diffs) and "mde_alpha" in diffs else ALPHA
    return ("Variant mean minus reference mean per task and metric, unpaired: seed i of every variant starts "
            "from the same key and meets the same evaluation episodes, but trains its own network, and the tests "
            "treat the variants' seeds as independent samples: conservative where matched seeds' scores "
            "correlate positively, somewhat liberal where they correlate negatively. 95% CI: Welch's t-interval "
            "(unequal variances) clipped to the "
            "metric's range; p: Welch's two-sided t-test; p (Holm): Holm-Bonferroni over every test of this "
            f"report, the one a finding needs below {ALPHA:g}; effect: Hedges' g (g), the difference over the "
            "pooled seed SD with the small-sample correction, and for steps to threshold tested as censored times "
            "Gehan's concordance (c, in [-1, 1]): over every pair of a variant's and a reference's seed, the share "
            "in which the variant's certainly reached the threshold later minus the share earlier (negative: "
            "faster), with its 95% percentile-bootstrap interval over seeds (pairs tied or left unordered by "
            f"censoring count 0, so they pull c toward 0).{_degenerate_rows_note(diffs)} "
            "Steps to threshold are censored times: a seed that never "
            "reached the threshold is known "
            "only to need more than the budget (shown '>' the budget), one that reached it at the last "
            "evaluation did reach it; the difference is that of restricted means (unreached counted as the "
            f"budget), tested with Gehan's generalized Wilcoxon test for censored data by "
            f"{permutation_wording(permutations_exact(diffs))}, without an interval; a threshold no "
            "seed of either side reached is 'not informative at "
            "this budget' and not tested. Detectable difference: the smallest true difference a two-sided "
            f"two-sample test would find with power 0.8 at α = {alpha_text(level)}, the level the smallest p "
            "must pass at Holm's first and strictest step (later steps are more lenient, so a finding may need "
            "less), from the observed spread and seed "
            "counts (normal-theory power analysis with t quantiles); n/a below "
            f"{stats.MIN_SEEDS} seeds in a group (the seeds' values are shown instead) or when no seed-to-seed "
            "spread was observed. The discounted return is compared within its range at the task's γ.")


PERCENTILE_COVERAGE = {5: 0.89, 6: 0.90, 8: 0.91, 10: 0.93, 15: 0.93, 20: 0.93}
"""Seeds per side -> how often the percentile bootstrap's nominal 95% interval of a difference of means held the
truth (normal data, 1,500 simulated studies, Monte Carlo SE ~0.7 points; tests/test_report_inference.py checks
two of them)."""


def percentile_caveat(seeds: int, exact: bool = True) -> str:
    """Why the aggregate intervals are descriptive, at the coverage measured for ``seeds`` (the study's smallest
    seed count; the simulated count at or below it), and how the aggregate differences are tested instead."""
    n = max([k for k in PERCENTILE_COVERAGE if k <= seeds] or [min(PERCENTILE_COVERAGE)])
    return ("Percentile bootstraps are known to under-cover at small n: in the coverage simulation of "
            "tests/test_report_inference.py the percentile bootstrap of a difference of means held the truth about "
            f"{PERCENTILE_COVERAGE[n]:.0%} of the time at {n} seeds per side for a nominal 95% (the per-task Welch "
            "intervals 93-99% at 5 and 10). That simulation is of a plain bootstrap on unbounded data, not of "
            "rliable's stratified IQM bootstrap on scores that pile up at a task's bounds, which was not "
            "simulated: it says which way these intervals err, not by how much; read them as narrower than their "
            "label. They are "
            f"descriptive: the aggregate differences are tested by {permutation_wording(exact)}, and only "
            "those tests enter the findings' Holm family.")


WEIGHT_WORD = {"pcgrad": "weight: w_k Σ_i C_ik, task k's total coefficient after the projections",
               "sum": "weight: the static task weight", "cagrad": "weight: w_i (1/K + λ x_i)",
               "unit-norm": "weight: w_i / ||g_i||"}


def final_scores(which: str) -> str:
    """The caption of :func:`plots.final_strips`, naming the mean's mark as the figure draws it; `which` is the
    final score shown ("final return" or "discounted final return")."""
    return (f"The {which} of every seed (dots) and the mean over seeds (short black horizontal "
            f"{plots.MEAN_MARK_WORD}), per task and variant; where the axis reaches a bound of the task's range it "
            "is widened past it (thin grey line: the bound), so seeds at the bound are drawn whole.")


def conflict_curves(variant: str) -> str:
    """The caption of :func:`plots.conflict_curves`: what each of its three panels and its line styles are."""
    return (f"`{variant}`: cosine per task pair over training (a coloured solid line with a filled marker per pair; "
            f"left: the pairs alone, the y axis fitted to them and at least {plots.COSINE_MIN_SPAN:g} wide, so "
            "seed noise near 0 is not stretched over the panel; middle: the same pairs beside each task's same-task "
            "null, black, dotted, a hollow marker per task, at every evaluation, or, for runs that probed only at "
            "the end, the mean null at the end) and the share of updates with cosine < 0 (right; dotted, the task's "
            "hollow marker: its own noise baseline over training, the share of its same-task minibatch pairs with "
            "cosine < 0, degenerate tasks left out; dashed: 0.5, what two independent random directions give).")


def smoke_test_text(seeds: int, each: str) -> str:
    """The first line of a report (study or groups) below MIN_SEEDS seeds per ``each`` (variant, run)."""
    return (f"**Smoke test, not evidence.** This study has {count(seeds, 'seed')} per {each}, fewer than the "
            f"{stats.MIN_SEEDS} this report needs for an interval: no interval is drawn, the seeds' own values "
            "are shown instead, and no difference below can be told from seed-to-seed noise. Rerun with at least "
            f"`--seeds {stats.MIN_SEEDS}` (the fewest that give an interval and a test) before reading anything "
            f"into it; `--seeds {2 * stats.MIN_SEEDS}` resolves differences about a third smaller.")
