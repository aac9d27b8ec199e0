"""Learning-curve summaries: a trailing moving average, the area under a curve, the steps to a threshold.

Each reduces one seed's logged curve (steps, values) to what the report
tabulates per seed; the intervals over seeds are :mod:`mtdqn.analysis.stats`'
job.  NaN marks a logging window in which no episode ended and is skipped.
The average is trailing (a smoothed value never looks into the future) so
that :func:`steps_to_threshold` on the smoothed curve stays honest; the area
is divided by its step span, so it reads as the mean return over training
(the score a tune optimizes, :mod:`mtdqn.tune.objective`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .stats import finite_values

__all__ = ["moving_average", "auc", "steps_to_threshold"]


def moving_average(values: np.ndarray | list[float], window: int) -> np.ndarray:
    """Trailing moving average (partial windows at the start), NaN entries skipped.

    NaN marks a logging window in which no episode ended; those points are
    dropped, so the result is shorter than the input by the number of NaNs.
    Trailing (not centred) so a smoothed value never looks into the future,
    which keeps steps-to-threshold honest.
    """
    if window < 1:
        raise ValueError(f"moving_average: window must be >= 1, got {window}")
    x = finite_values(values)
    return pd.Series(x).rolling(window, min_periods=1).mean().to_numpy()


def auc(steps: np.ndarray | list[float], values: np.ndarray | list[float]) -> float:
    """Area under a learning curve divided by its step span: mean return over training.

    Trapezoid over the logged steps; points with a NaN value are dropped first.
    A single point returns that value; no points returns NaN.
    """
    s = np.asarray(steps, dtype=np.float64).ravel()
    v = np.asarray(values, dtype=np.float64).ravel()
    if s.shape != v.shape:
        raise ValueError(f"auc: steps {s.shape} and values {v.shape} differ in shape")
    keep = np.isfinite(v) & np.isfinite(s)
    s, v = s[keep], v[keep]
    if s.size == 0:
        return float("nan")
    order = np.argsort(s, kind="stable")
    s, v = s[order], v[order]
    span = s[-1] - s[0]
    if span <= 0:
        return float(v.mean())
    return float(np.sum((v[1:] + v[:-1]) * np.diff(s)) / 2.0 / span)


def steps_to_threshold(
    steps: np.ndarray | list[float], values: np.ndarray | list[float], threshold: float
) -> float:
    """First step whose value reaches `threshold` (>=); NaN if it never does.

    Pass the smoothed curve: a single lucky logging window should not count.
    """
    s = np.asarray(steps, dtype=np.float64).ravel()
    v = np.asarray(values, dtype=np.float64).ravel()
    hit = np.flatnonzero(np.isfinite(v) & (v >= threshold))
    return float(s[hit[0]]) if hit.size else float("nan")
