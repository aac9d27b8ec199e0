"""`build_report(study_dir)`: stored study results -> `study_dir/report/`.

Outputs: report.html (self-contained), report.md + figures/*.png, results.md
(paste-ready tables) and the tidy tables under data/ as parquet and csv.
The same inputs and arguments give the same tables byte for byte.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
import pandas as pd

from mtdqn.rundir import FINAL_SCORE_EVALS

from . import captions, display, experts, fmt, methods, outputs, plots, scores, sensitivity, stats, tables, why
from .conclusion import conclusion
from .findings import findings
from .load import Study, load_study
from .permutation import permutations_exact
from .render import Bullets, Image, Section, Table, Text, table_markdown, to_html, to_markdown

__all__ = ["build_report"]


@dataclasses.dataclass(frozen=True)
class _Computed:
    """Every tidy table of one report, keyed by its data/ file stem."""

    data: dict[str, pd.DataFrame]
    findings: list[str]
    curve_source: str  # "evaluation" | "training": what the main learning curves and AUC are computed on
    training_per_seed: pd.DataFrame  # smoothed training-return curves per seed (the secondary figure)
    window: int  # the moving-average window used: the one asked for, capped at MAX_WINDOW_SHARE of the run
    headline_metric: str  # "final_return" | "final_discounted": the final score the report leads with


def _compute(study: Study, window: int, reps: int, seed: int) -> _Computed:
    window = tables.capped_window(study, window)
    source = tables.curve_source(study)
    smoothed = tables.smoothed_curves(study, window)
    curves = tables.eval_curves(study) if source == "evaluation" else smoothed
    # Steps to threshold on greedy evaluations need the level held over the evaluations a final score averages.
    reach = tables.trailing_mean(curves, FINAL_SCORE_EVALS) if source == "evaluation" else smoothed
    per_seed = tables.per_seed_table(study, curves, reach)
    budget = max((int(study.cells[v].summary.get("env_steps", study.steps)) for v in study.ok_variants),
                 default=study.steps)  # steps round up to whole logging chunks: the last evaluation is there
    norm = tables.normalization_table(study)
    agg, imp = tables.aggregate_tables(tables.normalized_scores(study, norm), study.reference, reps, seed)
    ref_ok = study.cells[study.reference].ok
    headline = scores.headline_metric(study)
    d = {
        "cells": tables.cells_table(study),
        "per_seed": per_seed,
        "per_task": tables.per_task_table(per_seed, reps, seed, budget),
        "differences": tables.difference_table(per_seed, study.reference, budget, reps, seed,
                                               scores.metric_order(headline))
        if ref_ok else pd.DataFrame(columns=tables.DIFF_COLUMNS),
        "curves": tables.curves_table(curves, reps, seed),
        "curves_per_seed": curves,
        "training_curves": tables.curves_table(smoothed, reps, seed) if source == "evaluation"
        else pd.DataFrame(columns=["variant", "task", "step", "mean", "lo", "hi", "n"]),
        "ranges": scores.ranges_table(study),
        "normalization": norm,
        "aggregates": agg,
        "improvement": imp,
        "cost": tables.cost_table(study),
        "conflict_summary": why.conflict_summary_table(study),
        "conflict_pairs": why.conflict_pairs_table(study),
        "conflict_curve": why.conflict_curve_table(study),
        "affinity": why.affinity_table(study),
        "affinity_curve": why.affinity_curve_table(study),
        "grad_probe": why.probe_table(study),
        "grad_tasks_curve": why.grad_tasks_curve(study),
        "grad_tasks_summary": why.grad_tasks_summary(study),
        "cka": why.cka_table(study),
        "cka_own": why.cka_table(study, "own"),
        "experts": experts.experts_summary_table(study),
        "expert_weights": experts.final_weights_table(study),
        "experts_curve": experts.experts_curve_table(study),
        "mixing_curve": experts.mixing_curve_table(study),
        "methods": methods.methods_table(study),
        "config": methods.config_table(study),
        "final_window": sensitivity.final_window_table(study),
    }
    d["differences"], d["improvement"] = tables.correct_for_multiplicity(d["differences"], imp)
    fnd = findings(study.reference, study.ok_variants, d["improvement"], d["differences"], d["conflict_summary"],
                   headline, d["conflict_pairs"])
    return _Computed(d, fnd, source, smoothed, window, headline)


def _slug(name: str) -> str:
    """A file-name-safe form of a variant name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def _seed_counts(study: Study) -> list[int]:
    return [len(study.cells[v].summary.get("seeds", [])) for v in study.ok_variants]


def smoke_test_note(study: Study) -> str:
    """The report's first line when a variant has fewer than MIN_SEEDS seeds; '' otherwise."""
    counts = _seed_counts(study)
    if counts and min(counts) >= stats.MIN_SEEDS:
        return ""
    return captions.smoke_test_text(min(counts) if counts else 0, "variant")


def training_source_note(study: Study, c: _Computed) -> str:
    """Said at the top of report.md and results.md where the AUC and steps to threshold read the ε-greedy
    training returns ('' where they read greedy evaluations): a smoke test's greedy returns of 0 stood beside
    "reached by 1/2 seeds" with only the Methods saying the reach came from training episodes."""
    ok = study.ok_variants
    if c.curve_source == "evaluation" or not ok:  # no ok variant: no metric read from anything
        return ""
    without = [v for v in ok if not tables.has_eval_curve(study.cells[v])]
    who = (f"{', '.join(f'`{v}`' for v in without)} stored" if 0 < len(without) < len(ok) else
           "The runs stored")
    return (f"**AUC and steps to threshold read ε-greedy training returns.** {who} no greedy evaluations during "
            "training (evaluated at the end alone), so these two metrics come from the returns of the training "
            "episodes (exploring, smoothed over logging windows), not from the greedy policy the final scores "
            "measure: they can disagree (a seed 'reaching' a threshold its greedy policy does not). Evaluations "
            "during training (`eval_every` below the budget) give every variant a greedy curve.")


def discount_line(study: Study, c: _Computed) -> str:
    """Which final score leads, and each task's discount."""
    per_task = c.data["per_task"]
    if not len(per_task) or not per_task["disc_mean"].notna().any():
        return ""
    gammas = per_task.groupby("task", sort=False)["gamma"].agg(lambda g: "/".join(fmt.gamma(x) for x in pd.unique(g)))
    each = ", ".join(f"{t} {gammas[t]}" for t in study.tasks if t in gammas.index)
    lead = ("Headline metric: the **discounted** final return J = Σ_t γ^t r_t of the greedy episodes, each task "
            "with its own γ (D'Eramo et al. 2020's metric); the undiscounted final return stands beside it. "
            if c.headline_metric == "final_discounted" else
            "Every per-task final score is given undiscounted and discounted (J = Σ_t γ^t r_t of the same greedy "
            "episodes, each task with its own γ). ")
    return lead + f"Discount γ per task: {each}. Aggregates stay on the undiscounted return's fixed anchors."


def _not_ok(c: _Computed) -> list[str]:
    """One line per failed or missing cell, for report.md and results.md alike (each is read alone)."""
    return [f"Variant `{r.variant}` {r.status.upper()}: {r.error} — excluded from all statistics."
            for r in c.data["cells"].itertuples() if r.status != "ok"]


def _overview(study: Study, c: _Computed) -> Section:
    failed = _not_ok(c)
    notes = [Text(text) for text in (smoke_test_note(study), training_source_note(study, c)) if text]
    blocks = notes + [
        Text(f"Tasks: {', '.join(study.tasks)}. Variants: {', '.join(f'`{v}`' for v in study.variants)}; "
             f"reference `{study.reference}`. Seeds: {len(study.seeds)} ({', '.join(map(str, study.seeds))}). "
             f"Budget: {methods.budget_text(study)}."),
        *([Text(line)] if (line := discount_line(study, c)) else []),
        Table("Cells", display.cells(c.data["cells"])),
    ]
    return Section("Study", tuple(blocks + ([Bullets(tuple(failed))] if failed else [])))


def _window_text(window: int, smoothed: pd.DataFrame) -> str:
    """The moving-average window in logging windows and as a share of the run's logging windows."""
    if not len(smoothed):
        return f"{window} logging windows"
    total = int(smoothed.groupby(["variant", "task", "seed"]).size().max())
    cap = (f"; capped at {tables.MAX_WINDOW_SHARE:.0%} of the run so it stays a local average, not a "
           "cumulative mean")
    raw = " (no smoothing: the run is too short for a window within that cap)" if window == 1 else ""
    return f"{window} logging window(s) ({min(window, total) / total:.0%} of the run's {total}{cap}){raw}"


def _curve_caption(source: str, window: int, headline: str = "final_return",
                   smoothed: pd.DataFrame | None = None, without_curve: tuple[str, ...] = ()) -> tuple[str, str]:
    """(figure caption, y label) of the main learning curves."""
    band = (f"mean over seeds (bold, a marker per variant) with a 95% Student-t band clipped to the task's return "
            f"range when a variant has at least {stats.MIN_SEEDS} seeds; each seed's own curve as a thin line. "
            f"The y axis spans at least {plots.MIN_SPAN:.0%} of the task's return range. Each variant's mean has its "
            f"own marker and line style and is shifted sideways by up to ±{plots.DODGE:.1%} of the run, so equal "
            "curves (a task no variant learned) show side by side instead of one hiding another.")
    span = _window_text(window, smoothed if smoothed is not None else pd.DataFrame())
    if source == "evaluation":
        what = ("(undiscounted; the headline discounted final score is the discounted return of the same greedy "
                "episodes)" if headline == "final_discounted" else
                "(the metric of every headline number, measured during training)")
        return (f"Greedy evaluation return vs env steps per task {what}: " + band, "greedy return")
    why = (f"{', '.join(f'`{v}`' for v in without_curve)} stored no greedy-evaluation curve during training, and "
           "one source serves all variants" if without_curve else
           "these runs stored no greedy evaluation during training")
    return (f"Episode return of the epsilon-greedy training policy vs env steps ({why}): trailing moving average "
            f"over {span} within each seed, "
            + band, ("training return" if window == 1 else f"training return (MA{window})"))


def _performance(study: Study, c: _Computed, window: int) -> list[Section]:
    d, ok = c.data, study.ok_variants
    curves: list = [Text("No learning-curve data for any ok variant.")]
    if len(d["curves"]):
        without = tuple(v for v in ok if not tables.has_eval_curve(study.cells[v]))
        caption, ylabel = _curve_caption(c.curve_source, window, c.headline_metric, c.training_per_seed,
                                         without if len(without) < len(ok) else ())
        curves = [Image("learning_curves", caption, plots.to_png(
            plots.learning_curves(d["curves"], d["curves_per_seed"], study.tasks, ok, ylabel)))]
    if len(d["training_curves"]):
        curves.append(Image("training_curves", f"Secondary: episode return of the epsilon-greedy training policy, "
                            f"trailing moving average over {_window_text(window, c.training_per_seed)}; thin "
                            "lines are seeds.",
                            plots.to_png(plots.learning_curves(d["training_curves"], c.training_per_seed,
                                                               study.tasks, ok, ("training return" if window == 1 else f"training return (MA{window})")))))
    curve = "greedy-evaluation curve" if c.curve_source == "evaluation" else "training-return curve"
    which = "discounted final return" if c.headline_metric == "final_discounted" else "final return"
    per_task = [
        Image("final_scores", captions.final_scores(which), plots.to_png(plots.final_strips(d["per_seed"], study.tasks, ok, c.headline_metric))),
        Table("Per-task results", display.per_task(d["per_task"], d["per_seed"], c.headline_metric),
              f"Final return: {methods.final_definition(study)}. Final discounted return: the same episodes' "
              "Σ_t γ^t r_t with the task's γ (column γ). AUC: area under each seed's "
              f"{curve} divided by its step span (the mean undiscounted return over training): the trapezoid "
              f"over {captions.auc_steps(c.data['curves_per_seed'], c.curve_source)}. Mean over seeds "
              "with a 95% Student-t interval clipped to the metric's feasible range (table below; no interval "
              "where every seed gave one value), or, "
              f"below {stats.MIN_SEEDS} seeds, the seeds' own values. {captions.reach_definition(c.curve_source, study)}"),
        *_window_blocks(d["final_window"], study.reference),
        Table("Feasible ranges", display.ranges(d["ranges"]),
              "The range each task's return can take, which no interval leaves (mtdqn/analysis/ranges.py): with "
              "every reward in [lo, hi] (lo ≤ 0 ≤ hi) and at most N of an episode's rewards nonzero, the "
              "discounted return lies in [lo·S, hi·S], S = 1 + γ + … + γ^(N−1) = (1 − γ^N)/(1 − γ), since the "
              "k-th nonzero reward comes at step k or later; γ = 1 gives the undiscounted range (S = N)."),
        Table("Difference to the reference", display.differences(d["differences"]), captions.differences_note(d["differences"])),
    ]
    return [Section("Learning curves", tuple(curves)), Section("Per task", tuple(per_task))]


def _window_blocks(window: pd.DataFrame, reference: str) -> list:
    """The final score beside the end-of-training evaluation alone (mtdqn/analysis/sensitivity.py), when they
    differ in definition, and which comparisons they tell apart."""
    if window.empty:
        return []
    split, unsettled = sensitivity.window_disagreements(window), sensitivity.unsettled_tasks(window)
    verdict = (f"The two read differently (an interval excluding 0 under one only, or differences of opposite "
               f"sign) for {', '.join(split)}." if split else
               "Every comparison to the reference reads the same under both (same sign; its interval excludes 0 "
               "under both or under neither).")
    if unsettled:
        verdict += (f" On {', '.join(unsettled)} a final-score interval is over {sensitivity.UNSETTLED_WIDTH:g}× as "
                    "wide as the end-of-training evaluation's: the greedy policy's level moved inside the window "
                    "(a task still being learned, or greedy policies collapsing and recovering between evaluations: "
                    "see each seed's curve above), so there the final score is an average over that stretch of "
                    "training, not the final policy's level, and the sizes it gives are the window's spread.")
    return [Table("Final score against the end-of-training evaluation alone",
                  sensitivity.window_display(window, reference),
                  "How much the headline depends on its window: the final score averages the greedy evaluations "
                  "listed, the last of them the end-of-training one, which the next column shows alone. Means "
                  "with 95% Student-t intervals in the task's range (below 5 seeds, or with no spread, the seeds' "
                  "own values instead); differences to the reference with Welch intervals, none where a difference "
                  "rests on one seed (every other seed of both sides one value) or has no spread, as in the "
                  "difference table. Descriptive: these are "
                  "not tests and add none to the Holm family. " + verdict)]


def _constant_tasks_note(study: Study, normalization: pd.DataFrame) -> str:
    """The aggregates' tasks where every run of every variant scored the same: by the fixed anchors they stay in
    the aggregates, where they say nothing about sharing and pull every variant's IQM and difference toward that
    one value (a statistician's review: MT3's RedBlueDoors, 0 in all 70 runs, diluted `shared+rms`'s IQM
    difference from -0.23 on the two other tasks to -0.16, unsaid)."""
    constant = []
    for task in normalization.loc[normalization["used"].astype(bool), "task"]:
        values = np.asarray([x for v in study.ok_variants for x in scores.final_scores(study, v, task)], float)
        if values.size and np.isfinite(values).all() and np.ptp(values) == 0:
            constant.append(f"{task} ({fmt.num(float(values[0]))})")
    if not constant:
        return ""
    it, says = ("they", "say") if len(constant) > 1 else ("it", "says")
    return (f"Every run of every variant scored the same on {', '.join(constant)}: {it} {says} nothing about "
            f"sharing, yet the anchors, fixed before the study, keep {'them' if it == 'they' else 'it'} in the "
            "aggregates below, where every variant gets the same normalized score there: each IQM and mean is "
            "pulled toward that score, and each difference to the reference and probability of improvement toward "
            "no difference. The per-task tables show the other tasks alone.")


def _aggregates(study: Study, c: _Computed, reps: int, seed: int) -> Section:
    d = c.data
    blocks: list = [
        Text("Normalized score per task, on the undiscounted final return whatever the headline metric: "
             "(x − random anchor) / (reference anchor − random anchor), with fixed "
             "anchors per task that do not come from this study's seeds (table below, sources in "
             "`mtdqn/analysis/anchors.py`): 0 = uniform-random policy, 1 = the task's reference anchor (a fixed "
             "score, not this study's reference variant). Tasks without "
             "anchors are left out. IQM and mean across tasks and seeds, and their differences to the "
             f"reference, with 95% percentile stratified-bootstrap CIs from rliable ({reps} resamples, numpy seed "
             f"{seed}; none below {stats.MIN_SEEDS} seeds). {_percentile_caveat(d)} Probability of "
             "improvement is P(variant's score > reference's) per task (Mann-Whitney), averaged over tasks."),
        Table("Normalization", display.normalization(d["normalization"])),
    ]
    if note := _constant_tasks_note(study, d["normalization"]):
        blocks.append(Text(note))
    if d["aggregates"].empty:
        return Section("Aggregates across tasks", tuple(blocks + [
            Text("No aggregate: no task of this study has usable fixed anchors (see Notes).")]))
    blocks += [Table("Aggregate normalized score", display.aggregates(d["aggregates"])),
               Image("aggregate_intervals", "IQM and mean normalized final score, 95% percentile-bootstrap CIs "
                     "(they under-cover at small n: see above) "
                     f"(points only below {stats.MIN_SEEDS} seeds).",
                     plots.to_png(plots.aggregate_intervals(d["aggregates"], study.variants)))]
    if len(d["improvement"]):
        blocks += [Table("Improvement over the reference", display.improvement(d["improvement"])),
                   Image("probability_of_improvement", "Probability of improvement over the reference, 95% percentile-bootstrap CIs (descriptive; they under-cover at small n).",
                         plots.to_png(plots.improvement_bars(d["improvement"], study.variants)))]
    return Section("Aggregates across tasks", tuple(blocks))


def _cost(c: _Computed) -> Section:
    return Section("Cost", (Table(
        "Cost", display.cost(c.data["cost"]),
        "One measurement per cell: all seeds of a variant train as one vmapped program, so wall time and "
        "throughput (aggregate over tasks and seeds) have no spread across seeds. Env steps/s counts the training "
        "loop alone: the evaluations during training have their own column (n/a: a cell from before it was "
        "recorded)."),))


def _without_updates(study: Study) -> list[str]:
    """Ok variants whose runs made no gradient update: their gradient table was written with no rows."""
    return [v for v in study.ok_variants if study.cells[v].grad_tasks is not None and study.cells[v].grad_tasks.empty]


def _why(study: Study, c: _Computed) -> Section:
    d = c.data
    blocks: list = [Text("Gradient conflict: cosine similarity between two tasks' gradients on the shared "
                         "parameters, measured on each task's own gradient before any strategy combines them (for "
                         "`pcgrad`: before the projection, so surgery does not hide the conflict it acts on); "
                         "< 0 means the tasks pull the trunk in opposing directions. Logging windows "
                         "without a gradient update (before learning starts) are left out. Per-seed averages over "
                         "training, then the mean over seeds with a 95% Student-t CI clipped to [-1, 1] "
                         f"(none below {stats.MIN_SEEDS} seeds). References: a mean between-task cosine ≥ 0 "
                         "means no net conflict (near 0: near-orthogonal gradients); two independent random "
                         f"directions have cosine < 0 half the time, so a conflict fraction near "
                         f"{why.INDEPENDENT_CONFLICT} is what unrelated gradients give. Baseline: the cosine "
                         "between one task's gradients on two independent minibatches (same-task null) and its "
                         "share < 0, probed at every evaluation and compared with the between-task quantities "
                         "over the same steps, each pair beside its own two tasks. A task whose same-task null "
                         f"averages ≥ {why.DEGENERATE_NULL} is degenerate: its gradient direction does not change "
                         "between minibatches (a task that never learned: every reward the same), so its share "
                         "< 0 is ~0 by construction, not a noise level; it gets no baseline and is left out of "
                         "the means over tasks.")]
    idle = _without_updates(study)
    if idle:
        blocks.append(Text(f"No updates: {', '.join(f'`{v}`' for v in idle)} made no gradient update (the budget "
                           "ended before learning started), so there are no gradient diagnostics for "
                           f"{'it' if len(idle) == 1 else 'them'}, and {'its' if len(idle) == 1 else 'their'} "
                           "returns are those of an untrained network."))
    if d["conflict_summary"].empty:
        if not idle:
            blocks.append(Text("No gradient-pair data: no ok variant with shared parameters stored "
                               "grad_pairs.parquet (variants without shared parameters have no shared gradient)."))
    else:
        blocks += [Table("Gradient conflict summary", display.conflict_summary(d["conflict_summary"])),
                   Table("Per task pair, beside its own tasks over the same steps", display.conflict_pairs(d["conflict_pairs"]))]
        if len(d["grad_probe"]):
            blocks.append(Table("End-of-training gradient probe", display.probe(d["grad_probe"]),
                                why.probe_caption(d["grad_probe"])))
        for r in d["conflict_summary"].itertuples():
            degenerate = tuple(t for t in study.tasks if t in str(getattr(r, "degenerate", "")))
            blocks.append(Image(f"conflict_curves_{_slug(r.variant)}", captions.conflict_curves(r.variant),
                                plots.to_png(plots.conflict_curves(d["conflict_curve"], r.variant, r.null_cosine,
                                                                   getattr(r, "noise_conflict", float("nan")),
                                                                   degenerate))))
    blocks += _affinity_blocks(study, c)
    blocks += _expert_blocks(study, c)
    if d["grad_tasks_summary"].empty:
        if not idle:
            blocks.append(Text("No per-task gradient data for a variant with shared parameters."))
    else:
        blocks.append(Table("Per-task gradient norm and applied weight", display.grad_summary(d["grad_tasks_summary"]),
                            "Grad norm: the L2 norm of the task's gradient on the shared parameters, before the "
                            f"strategy combines them. {methods.weight_definitions(study)} {methods.STRATEGY_SCOPE}"))
        for v in pd.unique(d["grad_tasks_summary"]["variant"]):
            blocks.append(Image(f"grad_norms_weights_{_slug(v)}", f"`{v}`: per-task gradient norm on shared parameters "
                                "(before the strategy) and the weight the strategy applied, over training ("
                                f"{captions.WEIGHT_WORD.get(study.cells[v].summary.get('strategy'), 'see the table above')}).",
                                plots.to_png(plots.grad_norms_weights(d["grad_tasks_curve"], v, study.tasks))))
    if d["cka"].empty:
        blocks.append(Text("No representation-similarity data (cka.parquet) for any ok variant."))
    else:
        # the own probe in the figure only when every variant recorded it (runs before it did not)
        own_for_all = set(d["cka_own"]["variant"]) == set(d["cka"]["variant"])
        shown = d["cka_own"] if own_for_all else d["cka"]
        if not d["cka_own"].empty:
            blocks.append(Table("Linear CKA of trunk features between tasks, on each task's own states",
                                display.cka(d["cka_own"]), _cka_caption(d["cka_own"])))
        blocks += [Table("Linear CKA of trunk features between tasks, on every task's states pooled",
                         display.cka(d["cka"]), _cka_caption(d["cka"])),
                   Image("cka", f"Linear CKA per task pair ({_CKA_PROBE[shown['states'].iloc[0]]}): trained "
                         "(filled), at initialization (hollow) and, where the runs recorded it, chance (x: the "
                         "trained features with the states' pairing shuffled).",
                         plots.to_png(plots.cka_pairs(shown, study.variants)))]
    return Section("Why: gradient conflict, affinity and representations", tuple(blocks))


_CKA_PROBE = {"own": "on each task's own states", "pooled": "on every task's states pooled"}


def _cka_estimator_text(cka: pd.DataFrame) -> str:
    """Which estimator of linear CKA the table's runs recorded (:mod:`mtdqn.analysis.cka`) and what it means for
    reading a level and a difference; older runs (the biased estimator) named where a study mixes them."""
    biased = sorted(set(cka.loc[cka["estimator"] == "biased", "variant"]))
    debiased = (" Debiased linear CKA (Song et al.'s unbiased HSIC in Kornblith et al.'s ratio): unrelated features "
                "score ~0 whatever their spectrum, slightly negative values being noise around 0.")
    bias = ("biased upward on few states by an amount set by how each side's variance is spread (two independent "
            "isotropic random 128-feature matrices give ~0.5 on 128 states; trained features, their variance in "
            "few directions, far less), so a level is read against its chance column and a difference of two "
            "(trained and at initialization; a variant and another) carries the difference of their biases")
    if not biased:
        return debiased
    if len(biased) == cka["variant"].nunique():
        return f" These runs recorded Kornblith et al.'s biased estimator (before the debiased one), {bias}."
    return (f"{debiased} The runs of {', '.join(f'`{v}`' for v in biased)} recorded the biased one (before it), "
            f"{bias}: their rows do not compare with the others'.")


def _cka_caption(cka: pd.DataFrame) -> str:
    """What the CKA table's probe is and what its baselines take out."""
    reference = next((r for r in cka["reference"] if r), "")
    if cka["states"].iloc[0] == "own":
        text = ("For tasks a and b: the mean of the CKA between their trunk features on a's replay observations "
                "and on b's, so that how much the two tasks' inputs differ is not part of it (the pooled probe "
                "below mixes it in); b's trunk still reads a's observations (zero-padded where b's are wider). "
                "Its level is not comparable with the pooled table's (this probe has each task's states alone); "
                "read it against its own baselines. Change from "
                "initialization: trained minus the same network untrained (same keys, same probe states), per seed.")
    else:
        text = ("The probe feeds every task's trunk the same states (every task's replay observations pooled), so "
                "much of any CKA is the inputs' own structure: states of different tasks differ, and two "
                "representations of them differ alike. Change from initialization: trained minus the same "
                "network untrained (same keys, same probe states), per seed.")
    text += _cka_estimator_text(cka)
    if "chance_mean" in cka and np.isfinite(cka["chance_mean"].to_numpy(dtype=float)).any():
        text += (" Chance: the same trained features with one side's probe states shuffled (the pairing of states "
                 "broken, the widths, the number of states and each side's spectrum kept), mean over seeds: the "
                 "level unrelated representations reach here (~0 debiased); a CKA near it says nothing about "
                 "shared structure.")
    else:
        text += (" These runs did not record the chance level (runs before it was measured): a level cannot be "
                 "told from what unrelated features give on this probe, so read only the changes and contrasts.")
    first = sorted(set(cka.loc[cka["probe"] == "first", "variant"]))  # runs before the probe sampled the replay
    old_probe = ("the first slots of each task's replay at the end (recorded before the probe sampled the whole "
                 "replay): a few consecutive steps of a few environments, of random play or of one point in training")
    if len(first) == cka["variant"].nunique():
        text += f" Probe: up to 128 replay observations per task, {old_probe}."
    else:
        text += (" Probe: up to 128 replay observations per task, drawn uniformly from each task's replay at the "
                 "end (the same slots for every task of a seed)")
        text += f"; the runs of {', '.join(f'`{v}`' for v in first)} took {old_probe}." if first else "."
    if reference:
        return (f"{text} Minus `{reference}`: the difference from separate per-task trunks probed alike (on their "
                "own run's replay: its policies' states, not the variant's), whose CKA is what the inputs and "
                "training alone give; a variant's excess over it is what its "
                "trunk, shared and trained as the variant trains it, adds (a Welch interval over seeds, descriptive: "
                "not among the report's tests; none where the two recorded CKA with another estimator or probe).")
    return f"{text} The study has no `independent` variant to contrast with: the levels are not sharing's doing alone."


def _expert_blocks(study: Study, c: _Computed) -> list:
    """A mixture of experts' mixing weights, concentration, specialization (between tasks) and collapse
    (:mod:`.experts`), for variants that trained one (else none)."""
    d = c.data
    if d["experts"].empty:
        return []
    blocks: list = [
        Table(experts.SUMMARY_TITLE, experts.summary_display(d["experts"], d["expert_weights"]),
              experts.summary_caption()),
        Image("experts_curves", "Mixture-of-experts variants over training: entropy of the mixing weights as a share "
              "of log K (mean over tasks; low: concentrated, not necessarily specialized) and the mean cosine between "
              "experts (dashed: before Gram–Schmidt), 95% bands over seeds.",
              plots.to_png(plots.expert_curves(d["experts_curve"], study.variants)))]
    for v in pd.unique(d["experts"]["variant"]):
        blocks.append(Image(f"mixing_weights_{_slug(v)}",
                            experts.mixing_caption(d["experts"], v),
                            plots.to_png(plots.mixing_weights(d["mixing_curve"], v, study.tasks))))
    return blocks


def _affinity_blocks(study: Study, c: _Computed) -> list:
    """The lookahead affinity matrix and its curves, for variants trained with --affinity-every (else none)."""
    d = c.data
    if d["affinity"].empty:
        return []
    unit = display.affinity_unit(d["affinity"])
    blocks: list = [Table(
        "Lookahead affinity Z_{i→j} between tasks", display.affinity(d["affinity"], study.tasks, unit),
        "TAG's lookahead affinity (Fifty et al. 2021): Z_{i→j} = 1 − L_j(θ_s − η ∇L_i) / L_j(θ_s), on the update's "
        "own minibatch with its TD targets held fixed, η the run's --lr (not a schedule's decayed rate; runs "
        "before 2026-12-07 took the decayed rate) (a plain gradient step on the "
        "shared parameters; each task's own parameters stay). > 0: a step on task i's loss (row) lowers task j's "
        "loss (column); the diagonal, a task's step on its own loss, is the scale a column reads against. Measured "
        "every --affinity-every updates; per seed the mean over training's logging windows, then the mean over "
        f"seeds with a 95% Student-t CI (none below {stats.MIN_SEEDS} seeds)"
        + (f"; shown in units of 10^{unit}." if unit else "."))]
    for v in pd.unique(d["affinity"]["variant"]):
        blocks.append(Image(f"affinity_curves_{_slug(v)}",
                            f"`{v}`: lookahead affinity over training, one panel per task whose loss changes, a line "
                            "per task whose step is taken (dashed: the task's own step); above 0 the step helps.",
                            plots.to_png(plots.affinity_curves(d["affinity_curve"], v, study.tasks))))
    return blocks


def _notes(study: Study, c: _Computed) -> Section:
    idle = [f"Variant `{v}` made no gradient update (its budget ended before learning started): its results are "
            "those of an untrained network." for v in _without_updates(study)]
    checked = tables.permutation_check(c.data["differences"])
    notes = (list(study.notes) + idle + ([checked] if checked else []) + methods.revision_notes(study)
             + methods.rounding_notes(study) + scores.discount_notes(study)
             + scores.missing_final_notes(study, tuple(c.data["normalization"].query("used")["task"]))) + [
        f"Task {r.task}: {r.note}." for r in c.data["normalization"].itertuples() if r.note]
    return Section("Notes", (Bullets(tuple(notes)) if notes else Text("None: every expected file was present."),))


def _percentile_caveat(d: dict) -> str:
    """captions.percentile_caveat at this study's smallest seed count and its aggregate tests' kind."""
    counts = d["aggregates"]["n_seeds"] if "n_seeds" in d["aggregates"] else pd.Series(dtype=float)
    seeds = int(counts.min()) if len(counts) else stats.MIN_SEEDS
    return captions.percentile_caveat(seeds, permutations_exact(d["improvement"]))


def _aggregate_note(d: dict) -> str:
    """results.md's note under its aggregate tables: the file is read without the report beside it (a second
    referee found its percentile intervals there without the caveat the report gives them)."""
    return ("95% percentile stratified-bootstrap intervals from rliable (report.md, Aggregates, defines the "
            "normalization). " + _percentile_caveat(d))


def _no_aggregate(study: Study, d: dict, improvement: bool) -> str:
    """Why results.md's aggregate table (``improvement``: its improvement table) has no rows, or ''."""
    table = d["improvement"] if improvement else d["aggregates"]
    if len(table):
        return ""
    if d["aggregates"].empty:
        return "No rows: no task of this study has usable fixed anchors (report.md, Notes, says why)."
    if study.reference not in study.ok_variants:
        return (f"No rows: the reference `{study.reference}` has no results ({study.cells[study.reference].status}), "
                "and every improvement is over it.")
    return "No rows: no finished variant besides the reference to compare with it."


def _results_md(study: Study, c: _Computed) -> str:
    d = c.data
    parts = [f"# Results: {study.name}", "",
             f"Mean [95% CI] over seeds (the seeds' values below {stats.MIN_SEEDS} seeds); n = seeds per cell. "
             f"Reference: `{study.reference}`.", ""]
    if (not_ok := _not_ok(c)):
        parts += [f"- {line}" for line in not_ok] + [""]
    for line in (discount_line(study, c), training_source_note(study, c), smoke_test_note(study)):
        if line:  # each before the last: the smoke-test note first
            parts[2:2] = [line, ""]
    for t in (Table("Per-task results", display.per_task(d["per_task"], d["per_seed"], c.headline_metric)),
              Table("Aggregate normalized score", display.aggregates(d["aggregates"]),
                    _no_aggregate(study, d, False) or _aggregate_note(d)),
              Table("Improvement over the reference", display.improvement(d["improvement"]),
                    _no_aggregate(study, d, True) or _aggregate_note(d)),
              Table("Cost", display.cost(d["cost"]))):
        parts.append(table_markdown(t))
    return "\n".join(parts).rstrip() + "\n"


def build_report(study_dir: Path, *, smooth_window: int = 5, reps: int = 2000, seed: int = 0) -> Path:
    """Write `study_dir/report/` from the stored study results and return that folder.

    `smooth_window`: logging windows in the within-seed moving average of the
    learning curves. `reps`/`seed`: bootstrap resamples and numpy seed for the
    rliable intervals (fixed so reruns are identical).
    """
    study_dir = Path(study_dir)
    study = load_study(study_dir)
    if all(cell.status == "missing" for cell in study.cells.values()):  # a report of nothing said "0 seeds"
        raise ValueError(f"{study_dir}: no cell has finished or failed yet ({len(study.cells)} variants, none with a "
                         "summary.json): nothing to report; rerunning the study trains them")
    c = _compute(study, smooth_window, reps, seed)
    structures = {v: study.cells[v].sharing + ("+rms" if study.cells[v].feature_norm == "rms" else "")
                  for v in study.ok_variants}
    summary = conclusion(study.reference, c.data["differences"], c.data["improvement"], c.data["conflict_summary"],
                         c.headline_metric, structures, c.data["grad_tasks_summary"]) \
        if study.reference in study.ok_variants else ""
    sections = [_overview(study, c), Section("Findings", ((Text(summary),) if summary else ())
                                             + ((Bullets(tuple(c.findings)),) if c.findings else
                                                (Text("No comparison possible (needs an ok reference and another "
                                                      "ok variant)."),)))]
    sections += _performance(study, c, c.window)
    sections += [_aggregates(study, c, reps, seed),
                 methods.methods_section(study, c.data["methods"], c.data["config"]), _cost(c),
                 _why(study, c), _notes(study, c)]
    out = study_dir / "report"
    figs = [outputs.write_bytes(out / "figures" / f"{b.name}.png", b.png)
            for s in sections for b in s.blocks if isinstance(b, Image)]
    outputs.remove_stale(out / "figures", figs, (".png",))
    data = [p for stem, df in c.data.items() for p in outputs.write_frame(out / "data", stem, df)]
    outputs.remove_stale(out / "data", data, (".parquet", ".csv"))
    title = f"Study report: {study.name}"
    outputs.write_text(out / "report.md", to_markdown(title, sections))
    outputs.write_text(out / "report.html", to_html(title, sections))
    outputs.write_text(out / "results.md", _results_md(study, c))
    return out
