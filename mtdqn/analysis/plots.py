"""Figures for the report, one function per figure, each returning a matplotlib Figure.

Built on `matplotlib.figure.Figure` with an explicit Agg canvas rather than
pyplot, so importing this module never changes the process-wide backend and
no figure leaks into pyplot's global registry.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from . import fmt, ranges

__all__ = [
    "to_png",
    "learning_curves",
    "final_strips",
    "aggregate_intervals",
    "improvement_bars",
    "conflict_curves",
    "affinity_curves",
    "grad_norms_weights",
    "cka_pairs",
    "mixing_weights",
    "expert_curves",
]

_PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
            "#bcbd22", "#17becf"]


def _color(i: int) -> str:
    return _PALETTE[i % len(_PALETTE)]


def _figure(ncols: int, nrows: int = 1, width: float = 4.2, height: float = 3.2) -> tuple[Figure, np.ndarray]:
    fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    return fig, axes


def to_png(fig: Figure, dpi: int = 100) -> bytes:
    """PNG bytes of `fig` with no timestamp/software metadata, so reruns give identical files."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
    return buf.getvalue()


def _steps_axis(ax) -> None:
    """Env-step ticks as 50k / 1M instead of 50000 / 1000000 (and no offset text)."""
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: fmt.steps(x)))
    ax.set_xlabel("env steps (per task)")


_MARKERS = ["o", "s", "^", "P", "X", "*", "p", "h"]
_HOLLOW_MARKERS = ["D", "v", "<", ">", "d", "8"]
"""Shapes for reference lines (a same-task null, a noise baseline), drawn hollow: none is a shape of
:data:`_MARKERS`, so a reference never reads as one of the filled data lines it is drawn beside."""


def _marker(i: int) -> str:
    """A marker per line, so lines that overlap stay distinguishable without colour."""
    return _MARKERS[i % len(_MARKERS)]


def _hollow_marker(i: int) -> str:
    """A reference line's marker, drawn with ``mfc="none"``: never one of :func:`_marker`'s shapes."""
    return _HOLLOW_MARKERS[i % len(_HOLLOW_MARKERS)]


_LINESTYLES = ["-", (0, (5, 2)), (0, (2, 1.5)), (0, (6, 2, 1, 2)), (0, (1, 1))]


def _linestyle(i: int) -> object:
    """A line style per line: lines lying on one another still show each one's dashes."""
    return _LINESTYLES[i % len(_LINESTYLES)]


MARKS_PER_LINE = 10
"""About this many markers on each line (a marker on every point would hide the line)."""


def _marks(n_points: int, i: int, n_lines: int) -> tuple[int, int]:
    """Matplotlib ``markevery`` for line i of n_lines: every ``n_points // MARKS_PER_LINE``-th point (at least every
    n_lines-th), starting i/n_lines of that stride in, so lines with equal values (every task's weight 1) put their
    markers on different points instead of stacking them where only the top one shows."""
    every = max(1, n_lines, n_points // MARKS_PER_LINE)
    return (i * every // max(1, n_lines)) % every, every


def _band(ax, x: np.ndarray, g: pd.DataFrame, color: str, label: str, marker: str | None = None,
          style: object = "-", marks: tuple[int, int] | None = None) -> None:
    """Mean line (markers at ``marks``, a matplotlib ``markevery``; by default about ten of its points from the
    first, line style ``style``) and, where the interval exists, its band."""
    ax.plot(x, g["mean"].to_numpy(), color=color, label=label, lw=1.8, marker=marker, ms=4,
            markevery=marks or _marks(len(x), 0, 1), ls=style)
    lo, hi = g["lo"].to_numpy(dtype=float), g["hi"].to_numpy(dtype=float)
    if np.isfinite(lo).any():
        ax.fill_between(x, lo, hi, color=color, alpha=0.2, lw=0)


DODGE = 0.015
"""Largest sideways shift of a variant's mean curve in :func:`learning_curves`, as a share of the run."""

MIN_SPAN = 0.1
"""A zoomed y axis spans at least this share of the quantity's feasible range (when it is bounded), so
differences smaller than the task's noise never fill a whole panel."""


def _zoom(ax, values: np.ndarray, bounds: tuple[float, float], pad: float = 0.1) -> None:
    """Y limits around the data (with a margin), at least MIN_SPAN of the feasible range wide, never past it."""
    v = values[np.isfinite(values)]
    if not v.size:
        return
    lo, hi = float(v.min()), float(v.max())
    margin = max((hi - lo) * pad, 1e-3)
    lo, hi = lo - margin, hi + margin
    width = bounds[1] - bounds[0]
    if np.isfinite(width) and hi - lo < MIN_SPAN * width:
        grow = (MIN_SPAN * width - (hi - lo)) / 2
        lo, hi = lo - grow, hi + grow
        lo, hi = (bounds[0], bounds[0] + MIN_SPAN * width) if lo < bounds[0] else (lo, hi)
        lo, hi = (bounds[1] - MIN_SPAN * width, bounds[1]) if hi > bounds[1] else (lo, hi)
    ax.set_ylim(max(lo, bounds[0]), min(hi, bounds[1]))


def _show_edges(ax, bounds: tuple[float, float], share: float = 0.04) -> None:
    """Widen the y axis by `share` of its span past a feasible bound it ends on, and mark that bound with a thin
    grey line: a curve lying on the bound (MountainCar's -200) is drawn, not hidden under the axis spine."""
    lo, hi = ax.get_ylim()
    margin = share * (hi - lo)
    for edge in bounds:
        if np.isfinite(edge) and (edge == lo or edge == hi):
            ax.axhline(edge, color="grey", lw=0.6)
    ax.set_ylim(lo - margin if lo == bounds[0] else lo, hi + margin if hi == bounds[1] else hi)


def learning_curves(curves: pd.DataFrame, per_seed: pd.DataFrame, tasks: tuple[str, ...],
                    variants: tuple[str, ...], ylabel: str) -> Figure:
    """Per task: each seed's curve as a thin line, the mean over seeds bold, the 95% Student-t band
    where there are enough seeds for one; y limited to the task's return range. Each variant's mean has its own
    marker and line style, and its points are dodged sideways by up to ±:data:`DODGE` of the run (variant i of
    k at (i - (k-1)/2) * DODGE * 2 / max(k-1, 1)), so variants with equal curves (MountainCar at -200 in every
    seed) stay visible side by side instead of one line hiding the others."""
    fig, axes = _figure(len(tasks))
    k = len(variants)
    for ax, task in zip(axes, tasks):
        steps = curves.loc[curves["task"] == task, "step"].to_numpy(dtype=float)
        span = float(np.ptp(steps)) if steps.size else 0.0  # a task without a curve point: nothing to dodge
        for i, v in enumerate(variants):
            for _, s in per_seed[(per_seed["variant"] == v) & (per_seed["task"] == task)].groupby("seed"):
                ax.plot(s["step"].to_numpy(), s["value"].to_numpy(), color=_color(i), lw=0.6, alpha=0.45)
            g = curves[(curves["variant"] == v) & (curves["task"] == task)]
            if len(g):
                shift = (i - (k - 1) / 2) * 2 * DODGE / max(k - 1, 1) * span
                _band(ax, g["step"].to_numpy() + shift, g, _color(i), v, _marker(i), _linestyle(i))
        vals = per_seed[per_seed["task"] == task]["value"].to_numpy(dtype=float)
        _zoom(ax, vals, ranges.return_bounds(task), pad=0.05)
        _show_edges(ax, ranges.return_bounds(task))
        ax.set(title=task, ylabel=ylabel)
        _steps_axis(ax)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    return fig


MEAN_MARK_WORD = "line"
"""What :func:`final_strips` draws the mean over seeds as (a short horizontal line), in its axis label and caption."""


def final_strips(per_seed: pd.DataFrame, tasks: tuple[str, ...], variants: tuple[str, ...],
                 column: str = "final_return") -> Figure:
    """Per task: every seed's final score as a dot per variant, the mean as a short black horizontal line: the
    data behind each number. Where the axis reaches a bound of the task's range (CartPole's 500, MountainCar's
    -200) it is widened past it, so a seed at the bound is drawn as a whole dot, not half of one.

    `column`: ``final_return`` or ``final_discounted`` (then zoomed within the task's discounted range).
    """
    fig, axes = _figure(len(tasks), width=3.2)
    for ax, task in zip(axes, tasks):
        names = [v for v in variants if ((per_seed["variant"] == v) & (per_seed["task"] == task)).any()]
        mine = per_seed[per_seed["task"] == task]
        bounds, label = ranges.return_bounds(task), "final return"
        if column == "final_discounted":
            gammas = set(mine["gamma"])
            bounds = ranges.discounted_bounds(task, gammas.pop()) if len(gammas) == 1 else ranges.UNBOUNDED
            label = "final discounted return"
        for x, v in enumerate(names):
            vals = mine[mine["variant"] == v][column].to_numpy(float)
            jitter = np.linspace(-0.12, 0.12, vals.size) if vals.size > 1 else np.zeros(1)
            ax.plot(x + jitter, vals, "o", color=_color(variants.index(v)), alpha=0.7, ms=5)
            ax.hlines(vals.mean(), x - 0.25, x + 0.25, color="black", lw=1.5)
        ax.set_xticks(range(len(names)), names, rotation=20, ha="right", fontsize=8)
        ax.set_xlim(-0.6, len(names) - 0.4)
        _zoom(ax, mine[column].to_numpy(float), bounds)
        _show_edges(ax, bounds)
        ax.set(title=task, ylabel=label, xlabel=f"variant (dots: seeds; {MEAN_MARK_WORD}: mean)")
        ax.grid(alpha=0.3, axis="y")
    return fig


NORMALIZED_LABEL = "normalized score\n(0 = random, 1 = reference anchor)"
"""The normalized-score axis: 1 is the task's fixed reference *anchor* (mtdqn/analysis/anchors.py), not the
study's reference variant, in the words the report's normalization text and table use."""

ANCHORS: tuple[float, float] = (0.0, 1.0)
"""The normalized scores of the random and the reference anchor; a normalized-score axis always shows both, so it
spans at least their distance and a gap between variants reads against it, not against its own noise."""


def _span_anchors(ax, values: np.ndarray, pad: float = 0.05) -> None:
    """X limits around the data and both :data:`ANCHORS`, widened by `pad` of that span on each side."""
    v = np.append(values[np.isfinite(values)], ANCHORS)
    lo, hi = float(v.min()), float(v.max())
    ax.set_xlim(lo - pad * (hi - lo), hi + pad * (hi - lo))


def aggregate_intervals(agg: pd.DataFrame, variants: tuple[str, ...]) -> Figure:
    """IQM and mean of normalized score per variant with 95% rliable stratified-bootstrap CIs as error bars
    (when there are any), on an axis from the random anchor (0, dotted) to the reference anchor (1, dashed) at
    least."""
    fig, axes = _figure(2, width=4.0, height=0.5 + 0.45 * max(2, len(variants)))
    for ax, metric in zip(axes, ("IQM", "mean")):
        g = agg[agg["metric"] == metric].set_index("variant")
        names = [v for v in variants if v in g.index]
        for y, v in enumerate(names):
            r = g.loc[v]
            err = [[r["value"] - r["lo"]], [r["hi"] - r["value"]]] if np.isfinite(r["lo"]) else None
            ax.errorbar(r["value"], y, xerr=err, fmt="o", color=_color(variants.index(v)), capsize=4)
        ax.set_yticks(range(len(names)), names)
        ax.set_ylabel("variant")
        ax.set_ylim(-0.5, len(names) - 0.5)
        ax.axvline(ANCHORS[0], color="grey", ls=":", lw=0.8)
        ax.axvline(ANCHORS[1], color="grey", ls="--", lw=0.8)
        _span_anchors(ax, g.loc[names, ["value", "lo", "hi"]].to_numpy(dtype=float).ravel())
        ax.set(title=metric, xlabel=NORMALIZED_LABEL)
        ax.grid(alpha=0.3, axis="x")
    return fig


def improvement_bars(imp: pd.DataFrame, variants: tuple[str, ...]) -> Figure:
    """Probability of improvement over the reference per variant with 95% rliable stratified-bootstrap CIs."""
    fig, axes = _figure(1, width=5.0, height=1.0 + 0.45 * max(2, len(imp)))
    ax = axes[0]
    for y, r in enumerate(imp.itertuples()):
        ax.barh(y, r.poi, color=_color(variants.index(r.variant)), alpha=0.7)
        if np.isfinite(r.poi_lo):
            ax.errorbar(r.poi, y, xerr=[[r.poi - r.poi_lo], [r.poi_hi - r.poi]], fmt="none", color="black",
                        capsize=4)
    ax.set_yticks(range(len(imp)), [f"P({v} > {ref})" for v, ref in zip(imp["variant"], imp["reference"])])
    ax.axvline(0.5, color="grey", ls="--", lw=0.8)
    ax.set(xlim=(0, 1), xlabel="probability of improvement", ylabel="comparison",
           title="variant vs reference (0.5: a tie)")
    return fig


def _pair_lines(ax, pairs: pd.DataFrame) -> None:
    """Each task pair's mean cosine (and band): its own colour, a filled marker and a solid line, its markers
    staggered against the other pairs' so pairs lying on one another all show."""
    groups = list(pairs.groupby(["task_a", "task_b"], sort=False))
    for i, ((a, b), g) in enumerate(groups):
        _band(ax, g["step"].to_numpy(), g, _color(i), f"{a} / {b}", _marker(i),
              marks=_marks(len(g), i, len(groups)))


def _reference_lines(ax, rows: pd.DataFrame, shapes: dict[str, str], label: Callable[[str], str]) -> np.ndarray:
    """Each task's reference curve (same-task null or noise baseline) in black, dotted, with the task's hollow
    marker from `shapes` (staggered like :func:`_pair_lines`); `label(task)` is its legend entry. Returns the
    values drawn, for the axis limits."""
    groups = list(rows.groupby("task_a", sort=False))
    for i, (task, g) in enumerate(groups):
        ax.plot(g["step"].to_numpy(), g["mean"].to_numpy(), color="black", ls=":", lw=1.0, marker=shapes[task],
                mfc="none", ms=4, markevery=_marks(len(g), i, len(groups)), label=label(task))
    return rows["mean"].to_numpy(dtype=float)


COSINE_MIN_SPAN = MIN_SPAN * (ranges.COSINE[1] - ranges.COSINE[0])
"""The least y span of a cosine panel (:func:`_zoom` on [-1, 1]): between-task cosines within a few hundredths
of 0 stay a few hundredths apart on it, not stretched over the panel."""


def conflict_curves(curve: pd.DataFrame, variant: str, null_cosine: float = float("nan"),
                    noise_conflict: float = float("nan"), degenerate: tuple[str, ...] = ()) -> Figure:
    """Three panels. Left: cosine per task pair over training (a coloured solid line with a filled marker per
    pair), y fitted to the pairs and 0, at least :data:`COSINE_MIN_SPAN` wide, so pairs near 0 are told apart.
    Middle: the same pairs beside each task's same-task null on the probe schedule (black, dotted, a hollow marker
    per task, shapes no pair uses; runs that probed only at the end: the end's mean as a flat line), y fitted to
    all of them. Right: conflict fraction in [0, 1] with each non-degenerate task's noise baseline (its same-task
    minibatch pairs with cosine < 0; the task's hollow marker) over training dotted, and 0.5, independent
    directions, dashed. Tasks in `degenerate` (their gradient direction never changes) get no noise line."""
    fig, axes = _figure(3)
    c = curve[curve["variant"] == variant]
    pairs, nulls = c[c["quantity"] == "cosine"], c[c["quantity"] == "null"]
    noise = c[(c["quantity"] == "noise") & ~c["task_a"].isin(degenerate)]
    shapes = {t: _hollow_marker(i) for i, t in enumerate(dict.fromkeys([*nulls["task_a"], *noise["task_a"]]))}
    shown = np.append(pairs[["mean", "lo", "hi"]].to_numpy(dtype=float).ravel(), 0.0)
    for ax in axes[:2]:
        _pair_lines(ax, pairs)
        ax.axhline(0.0, color="grey", ls="--", lw=0.8)
    _zoom(axes[0], shown, ranges.COSINE)
    _show_edges(axes[0], ranges.COSINE)
    axes[0].set(title=f"{variant}: cosine between tasks", ylabel=f"cosine (y span ≥ {COSINE_MIN_SPAN:g})")
    shown = np.append(shown, _reference_lines(
        axes[1], nulls, shapes, lambda t: f"{t} same-task null" + (" (degenerate)" if t in degenerate else "")))
    if np.isfinite(null_cosine) and not len(nulls):
        axes[1].axhline(null_cosine, color="black", ls=":", lw=1.0, label="same-task null (end)")
        shown = np.append(shown, null_cosine)
    _zoom(axes[1], shown, ranges.COSINE)
    _show_edges(axes[1], ranges.COSINE)
    axes[1].set(title=f"{variant}: beside same-task nulls", ylabel="cosine")
    frac = c[c["quantity"] == "conflict_fraction"]
    _band(axes[2], frac["step"].to_numpy(), frac, "#d62728", "conflict fraction")
    axes[2].axhline(0.5, color="grey", ls="--", lw=0.8, label="0.5: independent directions")
    _reference_lines(axes[2], noise, shapes, lambda t: f"{t}: same-task share < 0")
    if np.isfinite(noise_conflict) and not len(c[c["quantity"] == "noise"]):
        axes[2].axhline(noise_conflict, color="black", ls=":", lw=1.0, label="noise baseline (end)")
    axes[2].set(title=f"{variant}: share of updates with cosine < 0", ylabel="share of updates", ylim=ranges.FRACTION)
    _show_edges(axes[2], ranges.FRACTION)
    for ax in axes:
        _steps_axis(ax)
        ax.grid(alpha=0.3)
    _legend_below(fig, axes)
    return fig


def _legend_below(fig: Figure, axes: np.ndarray, ncols: int = 3) -> None:
    """One legend under the panels with every labelled line once: drawn over the panels, it hid the curves."""
    entries: dict[str, object] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            entries.setdefault(label, handle)
    fig.legend(list(entries.values()), list(entries), loc="outside lower center", ncols=ncols, fontsize=7)


def affinity_curves(curve: pd.DataFrame, variant: str, tasks: tuple[str, ...]) -> Figure:
    """One panel per task j: Z_{i->j} over training, a line (and 95% band) per task i whose step is taken, each
    with its own marker (staggered, so equal curves all show), the task's own step (i == j) dashed; 0 marked:
    above it i's step lowers j's loss."""
    c = curve[curve["variant"] == variant]
    shown = [j for j in tasks if (c["task_j"] == j).any()]
    fig, axes = _figure(max(1, len(shown)))
    for ax, j in zip(axes, shown):
        for k, i in enumerate(tasks):
            g = c[(c["task_i"] == i) & (c["task_j"] == j)]
            if len(g):
                _band(ax, g["step"].to_numpy(), g, _color(k), f"step on {i}", _marker(k), "--" if i == j else "-",
                      _marks(len(g), k, len(tasks)))
        ax.axhline(0.0, color="grey", ls=":", lw=0.8)
        ax.set(title=f"{variant}: loss of {j}", ylabel="lookahead affinity Z")
        _steps_axis(ax)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    return fig


def _from_zero(ax, values: np.ndarray, pad: float = 0.05) -> None:
    """Y from 0 to the largest value plus `pad` of it, for a non-negative quantity read as a ratio (a norm, a
    weight): a constant weight of 1 is drawn at 1 on 0–1.05, not as a flat line across a ±0.04 zoom of noise."""
    v = values[np.isfinite(values)]
    top = float(v.max()) if v.size else 0.0
    ax.set_ylim(0.0, top * (1 + pad) if top > 0 else 1.0)


def grad_norms_weights(curve: pd.DataFrame, variant: str, tasks: tuple[str, ...]) -> Figure:
    """Per-task gradient norm on shared params and the weight the strategy applied, over training: a marker and
    line style per task, markers staggered (a static weight is the same line for every task), each y axis from 0."""
    fig, axes = _figure(2)
    c = curve[curve["variant"] == variant]
    for ax, q, label in zip(axes, ("grad_norm", "weight"), ("gradient L2 norm", "applied weight")):
        for i, task in enumerate(tasks):
            g = c[(c["task"] == task) & (c["quantity"] == q)]
            if len(g):
                _band(ax, g["step"].to_numpy(), g, _color(i), task, _marker(i), _linestyle(i),
                      _marks(len(g), i, len(tasks)))
        _from_zero(ax, c.loc[c["quantity"] == q, ["mean", "lo", "hi"]].to_numpy(dtype=float).ravel())
        ax.set(title=f"{variant}: {label}", ylabel=label)
        _steps_axis(ax)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    return fig


def cka_pairs(cka: pd.DataFrame, variants: tuple[str, ...]) -> Figure:
    """Linear CKA per task pair (one row each) and variant: trained (dot, with seeds as small marks when
    recorded) beside the untrained network (hollow marker) and, where recorded, the chance level (x: the
    trained features with the states' pairing shuffled), on [0, 1], widened to the left where a value is
    negative (the debiased estimator's unrelated features scatter around 0)."""
    pairs = list(dict.fromkeys(zip(cka["task_a"], cka["task_b"])))
    fig, axes = _figure(1, width=7.5, height=1.4 + 0.35 * len(pairs) * max(1, len(variants)))
    ax = axes[0]
    names = [v for v in variants if (cka["variant"] == v).any()]
    step = 0.8 / max(1, len(names))
    for i, v in enumerate(names):
        g = cka[cka["variant"] == v]
        for j, (a, b) in enumerate(pairs):
            r = g[(g["task_a"] == a) & (g["task_b"] == b)]
            if not len(r):
                continue
            y = j + (i - (len(names) - 1) / 2) * step
            r = r.iloc[0]
            if np.isfinite(r["lo"]):
                ax.errorbar(r["mean"], y, xerr=[[r["mean"] - r["lo"]], [r["hi"] - r["mean"]]], fmt="none",
                            color=_color(variants.index(v)), capsize=3)
            ax.plot(r["mean"], y, "o", color=_color(variants.index(v)), label=v if j == 0 else None)
            if np.isfinite(r["init_mean"]):
                ax.plot(r["init_mean"], y, "o", mfc="none", color=_color(variants.index(v)),
                        label=f"{v} at init" if j == 0 else None)
            if np.isfinite(r.get("chance_mean", np.nan)):
                ax.plot(r["chance_mean"], y, "x", color=_color(variants.index(v)),
                        label=f"{v} chance (pairing shuffled)" if j == 0 else None)
    ax.set_yticks(range(len(pairs)), [f"{a} / {b}" for a, b in pairs], fontsize=8)
    ax.set_ylabel("task pair")
    shown = cka[[c for c in ("lo", "mean", "init_mean", "chance_mean") if c in cka]].to_numpy(dtype=float)
    left = min(0.0, float(np.nanmin(shown, initial=0.0)) - 0.05)
    ax.set(xlim=(left, 1.0), ylim=(-0.6, len(pairs) - 0.4), xlabel="linear CKA of trunk features")
    ax.grid(alpha=0.3, axis="x")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return fig


def mixing_weights(curve: pd.DataFrame, variant: str, tasks: tuple[str, ...]) -> Figure:
    """One panel per task: its softmax mixing weight on each expert over training (a line and 95% band per
    expert, each with its own marker and line style, markers staggered), on [0, 1] widened past a bound a line
    reaches; the even mixture 1/K dotted."""
    c = curve[curve["variant"] == variant]
    shown = [t for t in tasks if (c["task"] == t).any()]
    fig, axes = _figure(max(1, len(shown)))
    k = int(c["expert"].nunique()) if len(c) else 1
    for ax, task in zip(axes, shown):
        g = c[c["task"] == task]
        ranked = "ranked" in g and bool(g["ranked"].any())
        for e, ge in g.groupby("expert", sort=True):
            label = f"rank {int(e) + 1}" if ranked else f"expert {int(e)}"  # moe: labels switch between seeds
            _band(ax, ge["step"].to_numpy(), ge, _color(int(e)), label, _marker(int(e)),
                  _linestyle(int(e)), _marks(len(ge), int(e), k))
        ax.axhline(1.0 / k, color="grey", ls=":", lw=0.8)
        ax.set(title=f"{variant}: {task}", ylabel="mixing weight", ylim=ranges.FRACTION)
        _show_edges(ax, ranges.FRACTION)
        _steps_axis(ax)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    return fig


def expert_curves(curve: pd.DataFrame, variants: tuple[str, ...]) -> Figure:
    """Two panels, a line and 95% band per variant: the mixing weights' entropy as a share of log K (1: the even
    mixture, 0: one expert per task) and the mean pairwise cosine between the experts (dashed: before
    Gram–Schmidt, where that differs: ``moore``; hollow markers). Markers are staggered between variants, so
    equal curves (two variants' experts at cosine 0) all show."""
    fig, axes = _figure(2)
    for i, v in enumerate(variants):
        c = curve[curve["variant"] == v]
        if not len(c):
            continue
        ent = c[c["quantity"] == "entropy_share"]
        marks = _marks(len(ent), i, len(variants))
        _band(axes[0], ent["step"].to_numpy(), ent, _color(i), v, _marker(i), marks=marks)
        cos, raw = c[c["quantity"] == "cosine"], c[c["quantity"] == "cosine_raw"]
        _band(axes[1], cos["step"].to_numpy(), cos, _color(i), v, _marker(i), marks=marks)
        if not np.allclose(cos["mean"].to_numpy(), raw["mean"].to_numpy(), atol=1e-6):
            _band(axes[1], raw["step"].to_numpy(), raw, _color(i), f"{v}, before Gram–Schmidt", _marker(i), "--",
                  marks)
            axes[1].lines[-1].set_markerfacecolor("none")
    axes[0].set(title="concentration", ylabel="entropy of the mixing weights / log K", ylim=ranges.FRACTION)
    _show_edges(axes[0], ranges.FRACTION)
    axes[1].set(title="expert collapse", ylabel="mean cosine between experts")
    axes[1].set_ylim(top=1.02)  # 1: collapsed experts, the scale a cosine reads against
    axes[1].axhline(0.0, color="grey", ls=":", lw=0.8)
    for ax in axes:
        _steps_axis(ax)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return fig
