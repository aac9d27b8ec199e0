"""`build_report(study_dir)`: stored study results -> `study_dir/report/`.

Outputs: report.html (self-contained), report.md + figures/*.png, results.md
(paste-ready tables) and the tidy tables under data/ as parquet and csv.
The same inputs and arguments give the same tables byte for byte.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pandas as pd

from . import display, outputs, plots, tables, why
from .findings import findings
from .load import Study, load_study
from .render import Bullets, Image, Section, Table, Text, table_markdown, to_html, to_markdown

__all__ = ["build_report"]


@dataclasses.dataclass(frozen=True)
class _Computed:
    """Every tidy table of one report, keyed by its data/ file stem."""

    data: dict[str, pd.DataFrame]
    findings: list[str]


def _compute(study: Study, window: int, reps: int, seed: int) -> _Computed:
    smoothed = tables.smoothed_curves(study, window)
    per_seed = tables.per_seed_table(study, smoothed)
    norm = tables.normalization_table(study)
    agg, imp = tables.aggregate_tables(tables.normalized_scores(study, norm), study.reference, reps, seed)
    d = {
        "cells": tables.cells_table(study),
        "per_seed": per_seed,
        "per_task": tables.per_task_table(per_seed),
        "final_diff": tables.final_difference_table(per_seed, study.reference)
        if study.cells[study.reference].ok else pd.DataFrame(),
        "curves": tables.curves_table(smoothed),
        "normalization": norm,
        "aggregates": agg,
        "improvement": imp,
        "cost": tables.cost_table(study),
        "conflict_summary": why.conflict_summary_table(study),
        "conflict_pairs": why.conflict_pairs_table(study),
        "conflict_curve": why.conflict_curve_table(study),
        "cosine_snapshots": why.cosine_snapshots_table(study),
        "grad_tasks_curve": why.grad_tasks_curve(study),
        "grad_tasks_summary": why.grad_tasks_summary(study),
        "cka": why.cka_table(study),
    }
    if d["final_diff"].empty:
        d["final_diff"] = pd.DataFrame(columns=["variant", "reference", "task", "diff", "lo", "hi", "n", "n_reference"])
    fnd = findings(study.reference, study.ok_variants, imp, d["final_diff"], d["conflict_summary"])
    return _Computed(d, fnd)


def _slug(name: str) -> str:
    """A file-name-safe form of a variant name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def _overview(study: Study, c: _Computed) -> Section:
    failed = [f"Variant `{r.variant}` {r.status.upper()}: {r.error} — excluded from all statistics."
              for r in c.data["cells"].itertuples() if r.status != "ok"]
    blocks = [
        Text(f"Tasks: {', '.join(study.tasks)}. Variants: {', '.join(f'`{v}`' for v in study.variants)}; "
             f"reference `{study.reference}`. Seeds: {len(study.seeds)} ({', '.join(map(str, study.seeds))}). "
             f"Budget: {study.steps:,} env steps per task."),
        Table("Cells", display.cells(c.data["cells"])),
    ]
    return Section("Study", tuple(blocks + ([Bullets(tuple(failed))] if failed else [])))


def _performance(study: Study, c: _Computed, window: int) -> list[Section]:
    d, ok = c.data, study.ok_variants
    curves: list = [Text("No learning-curve data (metrics.parquet) for any ok variant.")]
    if len(d["curves"]):
        curves = [Image("learning_curves", f"Episode return vs env steps per task: trailing moving average over "
                        f"{window} logging windows within each seed (windows without a finished episode skipped), "
                        "then mean over seeds (line) and 95% t-interval (band).",
                        plots.to_png(plots.learning_curves(d["curves"], study.tasks, ok, window)))]
    per_task = [
        Table("Per-task results", display.per_task(d["per_task"]),
              "Final return: greedy evaluation at the end of training. AUC: mean return over training "
              "(normalized trapezoid of each seed's curve). Both mean ± 95% t-interval half-width over seeds. "
              "Steps to threshold: first step whose smoothed return ≥ threshold; median over all seeds with "
              "unreached seeds counted as never."),
        Table("Final return difference to the reference", display.final_diff(d["final_diff"])),
    ]
    return [Section("Learning curves", tuple(curves)), Section("Per task", tuple(per_task))]


def _aggregates(study: Study, c: _Computed, reps: int, seed: int) -> Section:
    d = c.data
    blocks: list = [
        Text("Normalized score per task: (x − random return) / (mean reference final return − random return); "
             f"0 = uniform-random policy, 1 = `{study.reference}`. IQM and mean across tasks and seeds with 95% "
             f"stratified-bootstrap CIs from rliable ({reps} resamples, numpy seed {seed}); probability of "
             "improvement is P(variant's score > reference's) per task (Mann-Whitney), averaged over tasks."),
        Table("Normalization", display.normalization(d["normalization"])),
    ]
    if d["aggregates"].empty:
        return Section("Aggregates across tasks", tuple(blocks + [
            Text("No aggregate: the reference cell is not ok or no task has a usable normalization.")]))
    blocks += [Table("Aggregate normalized score", display.aggregates(d["aggregates"])),
               Image("aggregate_intervals", "IQM and mean normalized final score, 95% bootstrap CIs.",
                     plots.to_png(plots.aggregate_intervals(d["aggregates"], study.variants)))]
    if len(d["improvement"]):
        blocks += [Table("Improvement over the reference", display.improvement(d["improvement"])),
                   Image("probability_of_improvement", "Probability of improvement over the reference, 95% CIs.",
                         plots.to_png(plots.improvement_bars(d["improvement"], study.variants)))]
    return Section("Aggregates across tasks", tuple(blocks))


def _cost(c: _Computed) -> Section:
    return Section("Cost", (Table(
        "Cost", display.cost(c.data["cost"]),
        "One measurement per cell: all seeds of a variant train as one vmapped program, so wall time and "
        "throughput (aggregate over tasks and seeds) have no spread across seeds."),))


def _why(study: Study, c: _Computed) -> Section:
    d = c.data
    blocks: list = [Text("Gradient conflict: cosine similarity between two tasks' gradients on the shared "
                         "parameters; < 0 means the tasks pull the trunk in opposing directions. Per-seed averages "
                         "over training, then mean ± 95% t-interval over seeds.")]
    if d["conflict_summary"].empty:
        blocks.append(Text("No gradient-pair data: no ok variant stored a non-empty grad_pairs.parquet "
                           "(variants without shared parameters have none)."))
    else:
        blocks += [Table("Gradient conflict summary", display.conflict_summary(d["conflict_summary"])),
                   Table("Mean cosine per task pair", display.conflict_pairs(d["conflict_pairs"]))]
        for v in pd.unique(d["conflict_summary"]["variant"]):
            blocks += [
                Image(f"conflict_curves_{_slug(v)}", f"`{v}`: cosine per task pair and conflict fraction over training "
                      "(mean over seeds, 95% t-CI).", plots.to_png(plots.conflict_curves(d["conflict_curve"], v))),
                Image(f"cosine_heatmaps_{_slug(v)}", f"`{v}`: pairwise gradient cosine early / middle / late "
                      "(mean over seeds).", plots.to_png(plots.cosine_heatmaps(d["cosine_snapshots"], v, study.tasks))),
            ]
    if d["grad_tasks_summary"].empty:
        blocks.append(Text("No per-task gradient data (grad_tasks.parquet) for any ok variant."))
    else:
        blocks.append(Table("Per-task gradient norm and applied weight", display.grad_summary(d["grad_tasks_summary"])))
        for v in pd.unique(d["grad_tasks_summary"]["variant"]):
            blocks.append(Image(f"grad_norms_weights_{_slug(v)}", f"`{v}`: per-task gradient norm on shared parameters and "
                                "applied weight over training (mean over seeds, 95% t-CI).",
                                plots.to_png(plots.grad_norms_weights(d["grad_tasks_curve"], v, study.tasks))))
    if d["cka"].empty:
        blocks.append(Text("No representation-similarity data (cka.parquet) for any ok variant."))
    else:
        blocks += [Table("Linear CKA of trunk features between tasks", display.cka(d["cka"])),
                   Image("cka", "Linear CKA between tasks' trunk features on probe states (mean over seeds).",
                         plots.to_png(plots.cka_heatmaps(d["cka"], study.variants, study.tasks)))]
    return Section("Why: gradient conflict and representations", tuple(blocks))


def _notes(study: Study, c: _Computed) -> Section:
    notes = list(study.notes) + [f"Task {r.task}: {r.note}." for r in c.data["normalization"].itertuples() if r.note]
    return Section("Notes", (Bullets(tuple(notes)) if notes else Text("None: every expected file was present."),))


def _results_md(study: Study, c: _Computed) -> str:
    d = c.data
    parts = [f"# Results: {study.name}", "",
             f"Mean ± 95% CI over seeds; n = seeds per cell. Reference: `{study.reference}`.", ""]
    for t in (Table("Per-task results", display.per_task(d["per_task"])),
              Table("Aggregate normalized score", display.aggregates(d["aggregates"])),
              Table("Improvement over the reference", display.improvement(d["improvement"])),
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
    c = _compute(study, smooth_window, reps, seed)
    sections = [_overview(study, c), Section("Findings", (Bullets(tuple(c.findings)),) if c.findings
                                             else (Text("No comparison possible (needs an ok reference and another ok variant)."),))]
    sections += _performance(study, c, smooth_window)
    sections += [_aggregates(study, c, reps, seed), _cost(c), _why(study, c), _notes(study, c)]
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
