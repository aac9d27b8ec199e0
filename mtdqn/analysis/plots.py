"""Figures for the report, one function per figure, each returning a matplotlib Figure.

Built on `matplotlib.figure.Figure` with an explicit Agg canvas rather than
pyplot, so importing this module never changes the process-wide backend and
no figure leaks into pyplot's global registry.
"""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = [
    "to_png",
    "learning_curves",
    "aggregate_intervals",
    "improvement_bars",
    "conflict_curves",
    "cosine_heatmaps",
    "grad_norms_weights",
    "cka_heatmaps",
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


def _band(ax, x: np.ndarray, g: pd.DataFrame, color: str, label: str) -> None:
    ax.plot(x, g["mean"].to_numpy(), color=color, label=label, lw=1.5)
    lo, hi = g["lo"].to_numpy(dtype=float), g["hi"].to_numpy(dtype=float)
    ax.fill_between(x, lo, hi, color=color, alpha=0.2, lw=0)


def learning_curves(curves: pd.DataFrame, tasks: tuple[str, ...], variants: tuple[str, ...], window: int) -> Figure:
    """Smoothed return vs env steps per task; line = mean over seeds, band = 95% t-CI."""
    fig, axes = _figure(len(tasks))
    for ax, task in zip(axes, tasks):
        for i, v in enumerate(variants):
            g = curves[(curves["variant"] == v) & (curves["task"] == task)]
            if len(g):
                _band(ax, g["step"].to_numpy(), g, _color(i), v)
        ax.set(title=task, xlabel="env steps (per task)", ylabel=f"return (MA{window})")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    return fig


def aggregate_intervals(agg: pd.DataFrame, variants: tuple[str, ...]) -> Figure:
    """IQM and mean of normalized score per variant with 95% bootstrap CIs as error bars."""
    fig, axes = _figure(2, width=4.0, height=0.5 + 0.45 * max(2, len(variants)))
    for ax, metric in zip(axes, ("IQM", "mean")):
        g = agg[agg["metric"] == metric].set_index("variant")
        names = [v for v in variants if v in g.index]
        for y, v in enumerate(names):
            r = g.loc[v]
            ax.errorbar(r["value"], y, xerr=[[r["value"] - r["lo"]], [r["hi"] - r["value"]]], fmt="o",
                        color=_color(variants.index(v)), capsize=4)
        ax.set_yticks(range(len(names)), names)
        ax.set_ylim(-0.5, len(names) - 0.5)
        ax.axvline(1.0, color="grey", ls="--", lw=0.8)
        ax.set(title=metric, xlabel="normalized score (1 = reference)")
        ax.grid(alpha=0.3, axis="x")
    return fig


def improvement_bars(imp: pd.DataFrame, variants: tuple[str, ...]) -> Figure:
    """Probability of improvement over the reference per variant with 95% bootstrap CIs."""
    fig, axes = _figure(1, width=5.0, height=0.5 + 0.45 * max(2, len(imp)))
    ax = axes[0]
    for y, r in enumerate(imp.itertuples()):
        ax.barh(y, r.poi, color=_color(variants.index(r.variant)), alpha=0.7)
        ax.errorbar(r.poi, y, xerr=[[r.poi - r.poi_lo], [r.poi_hi - r.poi]], fmt="none", color="black", capsize=4)
    ax.set_yticks(range(len(imp)), [f"P({v} > {ref})" for v, ref in zip(imp["variant"], imp["reference"])])
    ax.axvline(0.5, color="grey", ls="--", lw=0.8)
    ax.set(xlim=(0, 1), xlabel="probability of improvement")
    return fig


def conflict_curves(curve: pd.DataFrame, variant: str) -> Figure:
    """Left: cosine per task pair over training; right: conflict fraction. Mean and 95% CI over seeds."""
    fig, axes = _figure(2)
    c = curve[curve["variant"] == variant]
    pairs = c[c["quantity"] == "cosine"]
    for i, ((a, b), g) in enumerate(pairs.groupby(["task_a", "task_b"], sort=False)):
        _band(axes[0], g["step"].to_numpy(), g, _color(i), f"{a} / {b}")
    axes[0].axhline(0.0, color="grey", ls="--", lw=0.8)
    axes[0].set(title=f"{variant}: gradient cosine", xlabel="env steps (per task)", ylabel="cosine",
                ylim=(-1.05, 1.05))  # t-bands can overshoot the valid range with few seeds
    axes[0].legend(fontsize=7)
    frac = c[c["quantity"] == "conflict_fraction"]
    _band(axes[1], frac["step"].to_numpy(), frac, "#d62728", "conflict fraction")
    axes[1].set(title=f"{variant}: share of pairs with cosine < 0", xlabel="env steps (per task)", ylim=(-0.05, 1.05))
    for ax in axes:
        ax.grid(alpha=0.3)
    return fig


def _matrix(df: pd.DataFrame, tasks: tuple[str, ...], diag: float) -> np.ndarray:
    idx = {t: i for i, t in enumerate(tasks)}
    m = np.full((len(tasks), len(tasks)), np.nan)
    np.fill_diagonal(m, diag)
    for r in df.itertuples():
        m[idx[r.task_a], idx[r.task_b]] = m[idx[r.task_b], idx[r.task_a]] = r.mean
    return m


def _heatmap(fig: Figure, ax, m: np.ndarray, tasks: tuple[str, ...], vmin: float, vmax: float, cmap: str,
             title: str) -> None:
    im = ax.imshow(m, vmin=vmin, vmax=vmax, cmap=cmap)
    ax.set_xticks(range(len(tasks)), tasks, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(tasks)), tasks, fontsize=8)
    for (i, j), val in np.ndenumerate(m):
        if np.isfinite(val):
            shade = abs(val) if vmin < 0 else (val - vmin) / (vmax - vmin)
            dark = shade > 0.6 if vmin < 0 else shade < 0.4  # RdBu is dark at both ends, viridis at the low end
            ax.text(j, i, f"{val:.2f}", ha="center", va="center", fontsize=7, color="white" if dark else "black")
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, shrink=0.8)


def cosine_heatmaps(snapshots: pd.DataFrame, variant: str, tasks: tuple[str, ...]) -> Figure:
    """Pairwise gradient cosine (mean over seeds) early, middle and late in training."""
    s = snapshots[snapshots["variant"] == variant]
    moments = list(pd.unique(s["moment"]))
    fig, axes = _figure(len(moments), width=3.6, height=3.2)
    for ax, moment in zip(axes, moments):
        g = s[s["moment"] == moment]
        _heatmap(fig, ax, _matrix(g, tasks, 1.0), tasks, -1.0, 1.0, "RdBu",
                 f"{variant}: {moment} (step {int(g['step'].iloc[0])})")
    return fig


def grad_norms_weights(curve: pd.DataFrame, variant: str, tasks: tuple[str, ...]) -> Figure:
    """Per-task gradient norm on shared params and the weight the strategy applied, over training."""
    fig, axes = _figure(2)
    c = curve[curve["variant"] == variant]
    for ax, q, label in zip(axes, ("grad_norm", "weight"), ("gradient L2 norm", "applied weight")):
        for i, task in enumerate(tasks):
            g = c[(c["task"] == task) & (c["quantity"] == q)]
            if len(g):
                _band(ax, g["step"].to_numpy(), g, _color(i), task)
        ax.set(title=f"{variant}: {label}", xlabel="env steps (per task)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    return fig


def cka_heatmaps(cka: pd.DataFrame, variants: tuple[str, ...], tasks: tuple[str, ...]) -> Figure:
    """Linear CKA of trunk features between tasks, one heatmap per variant (mean over seeds)."""
    names = [v for v in variants if (cka["variant"] == v).any()]
    fig, axes = _figure(len(names), width=3.6, height=3.2)
    for ax, v in zip(axes, names):
        _heatmap(fig, ax, _matrix(cka[cka["variant"] == v], tasks, 1.0), tasks, 0.0, 1.0, "viridis", f"{v}: CKA")
    return fig
