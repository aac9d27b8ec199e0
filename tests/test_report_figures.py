"""The referee's figure defects in the report (`mtdqn report`), checked on the matplotlib objects the plotting
functions build from hand-made tables: no training, no study on disk.

Each test fails on the plotting code before its fix: lines that overlapped or reused one another's markers, axes
fixed or clipped where a point sat, a caption and an axis label that named the wrong thing.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import LineCollection
from helpers import labels_outside
from matplotlib.lines import Line2D

from mtdqn.analysis import captions, plots

STEPS = np.arange(1, 21) * 10_000  # 20 evaluations, as in the classic-experts study
TASKS = ("CartPole-v1", "Acrobot-v1", "MountainCar-v0")
PAIRS = (("CartPole-v1", "Acrobot-v1"), ("CartPole-v1", "MountainCar-v0"), ("Acrobot-v1", "MountainCar-v0"))


def _rows(values, **keys) -> list[dict]:
    """Curve rows (step, mean, a ±0.01 band) for one line, `keys` its identifying columns."""
    return [{**keys, "step": int(s), "mean": float(m), "lo": float(m) - 0.01, "hi": float(m) + 0.01, "n": 10}
            for s, m in zip(STEPS, values)]


def _conflict_curve(pair_level: float = 0.003) -> pd.DataFrame:
    """One variant's conflict curve: three pairs within 0.002 of `pair_level`, each task's same-task null
    between 0.3 and 1.0 and its noise share, and the conflict fraction."""
    rows = []
    for k, (a, b) in enumerate(PAIRS):
        rows += _rows(np.full(STEPS.size, pair_level + 0.001 * k), variant="shared", quantity="cosine",
                      task_a=a, task_b=b)
    for k, task in enumerate(TASKS):
        rows += _rows(np.linspace(1.0 - 0.2 * k, 0.3, STEPS.size), variant="shared", quantity="null",
                      task_a=task, task_b=task)
        rows += _rows(np.linspace(0.0, 0.3, STEPS.size), variant="shared", quantity="noise", task_a=task,
                      task_b=task)
    rows += _rows(np.full(STEPS.size, 0.45), variant="shared", quantity="conflict_fraction", task_a="*", task_b="*")
    return pd.DataFrame(rows)


def _lines(ax, has: str) -> list[Line2D]:
    """The lines of `ax` whose legend label contains `has`."""
    return [ln for ln in ax.get_lines() if has in str(ln.get_label())]


def _hollow(line: Line2D) -> bool:
    return str(line.get_markerfacecolor()) == "none"


def _marked_x(line: Line2D) -> set[float]:
    """The x positions `line` draws a marker at."""
    x = np.asarray(line.get_xdata(), dtype=float)
    every = line.get_markevery()
    start, step = every if isinstance(every, tuple) else (0, every or 1)
    return set(x[start::step].tolist())


def _distinct_where_equal(lines: list[Line2D]) -> bool:
    """Lines drawing the same values can still be told apart: no two mark the same points with the same marker
    and line style (the one on top would hide the other)."""
    for i, a in enumerate(lines):
        for b in lines[i + 1:]:
            same_look = a.get_marker() == b.get_marker() or a.get_linestyle() == b.get_linestyle()
            if same_look and _marked_x(a) & _marked_x(b):
                return False
    return True


# ---------------------------------------------------------------- 1. conflict curves


def test_conflict_pairs_and_nulls_never_share_a_marker_or_a_look():
    """Pairs: filled markers, solid lines, each its own shape; same-task nulls and noise baselines: hollow
    markers of shapes no pair uses, dotted. Before, circle/square/triangle marked both a pair and a null."""
    fig = plots.conflict_curves(_conflict_curve(), "shared")
    pairs = [ln for ax in fig.axes for ln in _lines(ax, " / ")]
    refs = [ln for ax in fig.axes for ln in _lines(ax, "same-task")]
    assert len(pairs) >= 3 and len(refs) == 6  # three nulls, three noise baselines
    assert all(not _hollow(ln) and ln.get_linestyle() == "-" for ln in pairs)
    assert all(_hollow(ln) and ln.get_linestyle() not in ("-", "None") for ln in refs)
    assert not {ln.get_marker() for ln in pairs} & {ln.get_marker() for ln in refs}
    for ax in fig.axes:  # within a panel every pair and every null has its own shape
        for kind in (" / ", "same-task"):
            shapes = [ln.get_marker() for ln in _lines(ax, kind)]
            assert len(shapes) == len(set(shapes))


def test_conflict_pairs_near_zero_get_an_axis_fitted_to_them_with_a_stated_minimum_span():
    """The pairs lay within 0.01 of 0 on a 0-1 axis (the nulls set it). A panel now shows them alone, y fitted
    to them but at least MIN_SPAN of the cosine's range wide, so noise near 0 is not stretched either."""
    fig = plots.conflict_curves(_conflict_curve(), "shared")
    alone = [ax for ax in fig.axes if len(_lines(ax, " / ")) == 3 and not _lines(ax, "same-task")]
    assert alone, "no panel shows the between-task pairs without the nulls"
    lo, hi = alone[0].get_ylim()
    min_span = 2 * plots.MIN_SPAN  # of [-1, 1]
    assert min_span - 1e-9 <= hi - lo < 0.5  # fitted, not 0-1, and not zoomed below the stated span
    assert lo < 0.0 and hi > 0.006
    assert f"{min_span:g}" in alone[0].get_ylabel()  # the span is stated on the panel


def test_conflict_pairs_lying_on_one_another_mark_different_points():
    """Three equal pair curves: before, every pair's markers sat on the same points and the top pair hid the
    others; now each pair's markers are staggered."""
    fig = plots.conflict_curves(_conflict_curve(), "shared")
    with_pairs = [ax for ax in fig.axes if _lines(ax, " / ")]
    assert with_pairs, "no panel draws the pairs"  # else the loop below checks nothing
    for ax in with_pairs:
        marked = [_marked_x(ln) for ln in _lines(ax, " / ")]
        assert len(marked) == 3 and all(not (marked[i] & marked[j]) for i in range(3) for j in range(i + 1, 3))


def test_conflict_null_at_one_is_drawn_whole():
    """A null of 1.0 (a degenerate task) sits on the cosine's bound: the axis is widened past it."""
    fig = plots.conflict_curves(_conflict_curve(), "shared")
    with_nulls = [ax for ax in fig.axes if _lines(ax, "same-task null")]
    lo, hi = with_nulls[0].get_ylim()
    assert hi > 1.0 + 0.02 * (hi - lo)


# ---------------------------------------------------------------- 2. final scores


def _final_per_seed() -> pd.DataFrame:
    """Six seeds per variant, some at CartPole's 500 and MountainCar's -200."""
    values = {"CartPole-v1": [500, 500, 500, 430, 480, 270], "MountainCar-v0": [-200, -200, -150, -120, -200, -190]}
    return pd.DataFrame([{"variant": v, "task": t, "seed": s, "gamma": 0.99, "final_return": float(x)}
                         for v in ("shared", "moe") for t, xs in values.items()
                         for s, x in enumerate(xs)])


@pytest.mark.parametrize("task,bound", [("CartPole-v1", 500.0), ("MountainCar-v0", -200.0)])
def test_final_scores_at_a_bound_are_drawn_whole(task, bound):
    """A seed at the task's bound was half a dot: the axis ended on the bound. Now it is widened past it by
    more than a dot's radius (2% of the span) on that side."""
    fig = plots.final_strips(_final_per_seed(), (task,), ("shared", "moe"))
    lo, hi = fig.axes[0].get_ylim()
    room = 0.02 * (hi - lo)
    assert (hi >= bound + room) if bound > 0 else (lo <= bound - room)


def test_final_scores_caption_and_label_name_the_mark_drawn():
    """The mean is drawn as a short horizontal line (hlines), not a bar: the axis label and the caption say so."""
    fig = plots.final_strips(_final_per_seed(), ("CartPole-v1",), ("shared", "moe"))
    ax = fig.axes[0]
    assert any(isinstance(c, LineCollection) for c in ax.collections) and not ax.patches  # a line, no bar
    assert "bar" not in ax.get_xlabel() and "line: mean" in ax.get_xlabel()
    caption = captions.final_scores("final return")
    assert "bar" not in caption and "horizontal line" in caption


# ---------------------------------------------------------------- 3. the normalized-score axis


VARIANTS = ("shared", "moore", "moe", "pcgrad")


def _aggregates(values=(0.96, 1.07)) -> pd.DataFrame:
    return pd.DataFrame([{"variant": v, "metric": m, "value": x, "lo": x - 0.01, "hi": x + 0.01}
                         for v, x in zip(VARIANTS, values) for m in ("IQM", "mean")])


@pytest.mark.parametrize("values", [(0.96,), (0.96, 1.07), (0.96, 1.07, 0.91, 0.5)])
def test_normalized_score_axis_names_the_reference_anchor_not_the_reference_variant(values):
    """'1 = reference' read as the study's reference variant; it is the normalization's fixed anchor."""
    fig = plots.aggregate_intervals(_aggregates(values), VARIANTS[:len(values)])
    for ax in fig.axes:
        label = ax.get_xlabel()
        assert "reference anchor" in label and "0 = random" in label and "1 = reference anchor" in label
    assert labels_outside(fig) == []


def test_normalized_score_axis_spans_both_anchors():
    """A gap of 0.1 between variants filled the panel; the axis now always runs from the random anchor (0) to the
    reference anchor (1) at least, the scale the score is read on."""
    fig = plots.aggregate_intervals(_aggregates(), VARIANTS[:2])
    for ax in fig.axes:
        lo, hi = ax.get_xlim()
        assert lo < 0.0 and hi > 1.07


# ---------------------------------------------------------------- 4. the other figures


def test_probability_of_improvement_labels_both_axes_inside_the_figure():
    imp = pd.DataFrame({"variant": ["moore", "moe"], "reference": "shared", "poi": [0.85, 0.5],
                        "poi_lo": [0.78, 0.37], "poi_hi": [0.93, 0.64]})
    fig = plots.improvement_bars(imp, ("shared", "moe", "moore"))
    assert fig.axes[0].get_ylabel() and fig.axes[0].get_xlabel()
    assert labels_outside(fig) == []


def _grad_tasks_curve() -> pd.DataFrame:
    """Every task's weight 1 throughout (a static weighting), norms differing."""
    rows = []
    for k, task in enumerate(TASKS):
        rows += _rows(np.full(STEPS.size, 1.0), variant="shared", task=task, quantity="weight")
        rows += _rows(np.linspace(1.0, 5.0 + k, STEPS.size), variant="shared", task=task, quantity="grad_norm")
    return pd.DataFrame(rows)


def test_equal_weights_of_every_task_stay_distinguishable_on_an_axis_from_zero():
    """Three weight-1 lines lay on one another (only the top one showed) on a ±0.04 zoom of nothing."""
    fig = plots.grad_norms_weights(_grad_tasks_curve(), "shared", TASKS)
    weights = fig.axes[1]
    lines = [ln for ln in weights.get_lines() if ln.get_label() in TASKS]
    assert len(lines) == 3 and _distinct_where_equal(lines)
    for ax in fig.axes:
        lo, hi = ax.get_ylim()
        assert lo == 0.0 and hi >= 1.0 and ax.get_xlabel() and ax.get_ylabel()


def test_equal_mixing_weights_stay_distinguishable_and_whole():
    """Two experts at the even mixture throughout: each shows, and a weight at 0 or 1 is drawn inside."""
    rows = []
    for e in (0, 1):
        rows += _rows(np.full(STEPS.size, 0.5), variant="moe", task="CartPole-v1", expert=e)
    rows += _rows(np.full(STEPS.size, 1.0), variant="moe", task="Acrobot-v1", expert=0)
    rows += _rows(np.full(STEPS.size, 0.0), variant="moe", task="Acrobot-v1", expert=1)
    fig = plots.mixing_weights(pd.DataFrame(rows), "moe", ("CartPole-v1", "Acrobot-v1"))
    lines = _lines(fig.axes[0], "expert")
    assert len(lines) == 2 and _distinct_where_equal(lines)
    lo, hi = fig.axes[1].get_ylim()
    assert lo < 0.0 and hi > 1.0


def test_expert_curves_equal_across_variants_stay_distinguishable():
    """Two variants whose experts both sit at cosine 0 (moore orthonormalizes): each variant's markers show; the
    before-Gram–Schmidt line is marked too, hollow."""
    rows = []
    for v, raw in (("moe", 0.0), ("moore", 0.3)):
        rows += _rows(np.full(STEPS.size, 0.8), variant=v, quantity="entropy_share")
        rows += _rows(np.zeros(STEPS.size), variant=v, quantity="cosine")
        rows += _rows(np.full(STEPS.size, raw), variant=v, quantity="cosine_raw")
    fig = plots.expert_curves(pd.DataFrame(rows), ("moe", "moore"))
    for ax in fig.axes:
        lines = [ln for ln in ax.get_lines() if ln.get_label() in ("moe", "moore")]
        assert len(lines) == 2 and _distinct_where_equal(lines)
    raw = _lines(fig.axes[1], "before Gram")
    assert len(raw) == 1 and raw[0].get_marker() not in (None, "None", "") and _hollow(raw[0])


def test_affinity_lines_have_their_own_markers():
    """The affinity curves were told apart by colour alone; equal curves hid one another."""
    rows = []
    for i in TASKS[:2]:
        for j in TASKS[:2]:
            rows += _rows(np.full(STEPS.size, 0.01), variant="shared", task_i=i, task_j=j)
    fig = plots.affinity_curves(pd.DataFrame(rows), "shared", TASKS[:2])
    for ax in fig.axes:
        lines = _lines(ax, "step on")
        assert len(lines) == 2 and all(ln.get_marker() not in (None, "None", "") for ln in lines)
        assert _distinct_where_equal(lines) and ax.get_xlabel() and ax.get_ylabel()


def test_every_axis_of_every_figure_is_labelled():
    """Every panel names its x and y quantity (a figure read without its caption still says what it shows)."""
    imp = pd.DataFrame({"variant": ["moore"], "reference": "shared", "poi": [0.85], "poi_lo": [0.78],
                        "poi_hi": [0.93]})
    figs = [plots.conflict_curves(_conflict_curve(), "shared"),
            plots.grad_norms_weights(_grad_tasks_curve(), "shared", TASKS),
            plots.aggregate_intervals(_aggregates(), VARIANTS[:2]),
            plots.final_strips(_final_per_seed(), ("CartPole-v1",), ("shared", "moe")),
            plots.improvement_bars(imp, ("shared", "moore"))]
    for fig in figs:
        for ax in fig.axes:
            assert ax.get_xlabel() and ax.get_ylabel(), ax.get_title()


def test_cka_figure_draws_the_chance_level_where_recorded():
    """Third referee: cka.png had no chance reference; an x marks it where the runs recorded it."""
    from mtdqn.analysis.plots import cka_pairs

    row = {"variant": "shared", "task_a": "A", "task_b": "B", "mean": 0.6, "lo": 0.5, "hi": 0.7, "n": 5,
           "init_mean": 0.9}
    with_chance = cka_pairs(pd.DataFrame([{**row, "chance_mean": 0.45}]), ("shared",))
    markers = [line.get_marker() for line in with_chance.axes[0].get_lines()]
    assert "x" in markers
    without = cka_pairs(pd.DataFrame([row]), ("shared",))
    assert "x" not in [line.get_marker() for line in without.axes[0].get_lines()]
