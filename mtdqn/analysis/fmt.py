"""Number formatting shared by the findings and the rendered tables.

One place decides how many digits a number gets, so the Markdown, the HTML
and the findings sentences always agree.
"""

from __future__ import annotations

import math

from .stats import MIN_SEEDS

__all__ = ["num", "interval", "values", "value_lists", "estimate", "steps", "detectable", "gamma", "pvalue", "p_is"]


def _finite(x: float | None) -> bool:
    """A finite real number (numpy scalars of any width included)."""
    try:
        return x is not None and not isinstance(x, (str, bool)) and math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


def _digits(scale: float) -> int:
    """Decimals for about three significant digits at magnitude ``scale``."""
    return 0 if scale >= 100 else 1 if scale >= 10 else 2 if scale >= 1 else 3


def _resolving(lo: float, hi: float, scale: float) -> int:
    """Decimals at ``scale``, more (up to 6) while the two ends of a real interval would print as one number: a
    referee read '1.07 [1.07, 1.07]' as a degenerate interval where the data gave [1.066, 1.074]."""
    digits = _digits(scale)
    while lo < hi and f"{lo:.{digits}f}" == f"{hi:.{digits}f}" and digits < 6:
        digits += 1
    return digits


def num(x: float | None, scale: float | None = None, digits: int | None = None) -> str:
    """About three significant digits: 1234 -> '1234', 421.3 -> '421', -79.05 -> '-79.0', 0.1234 -> '0.123'.

    Returns from 10 greedy episodes and a handful of seeds carry no more than
    that. `scale` (default |x|) picks the digits, so both ends of an interval share them.
    """
    if not _finite(x):
        return "n/a"
    if digits is None:
        digits = _digits(abs(float(x)) if scale is None else abs(float(scale)))
    out = f"{float(x):.{digits}f}"
    return "0" + out[2:] if out.startswith("-0") and float(out) == 0 else out


def interval(lo: float | None, hi: float | None) -> str:
    """'[lo, hi]' or 'n/a' when the interval is undefined (e.g. one seed)."""
    if not (_finite(lo) and _finite(hi)):
        return "n/a"
    scale = max(abs(float(lo)), abs(float(hi)))
    digits = _resolving(float(lo), float(hi), scale)
    return f"[{num(lo, digits=digits)}, {num(hi, digits=digits)}]"


def values(xs, env_steps: bool = False, *, censored: float | None = None) -> str:
    """Per-seed values, in seed order: '500, 421, 37' (or '50k, 1.2M' for env steps).

    ``censored`` (a budget in env steps) marks steps-to-threshold values: a seed that never reached the
    threshold (NaN) is shown as '>60k', a lower bound, not as a number it never had.
    """
    return value_lists(xs, env_steps=env_steps, censored=censored)[0]


def value_lists(*lists, env_steps: bool = False, censored: float | None = None) -> tuple[str, ...]:
    """Several lists of per-seed values (:func:`values`) with one precision, from the largest value of them all,
    for a sentence that compares them: 'shared 9.67, 9.67 vs independent 10.7, 9.7' printed one 9.6667 two ways."""
    lists = [[float(x) for x in xs] for xs in lists]
    if censored is not None:
        return tuple(", ".join(steps(x) if math.isfinite(x) else f">{steps(censored)}" for x in xs) for xs in lists)
    if env_steps:
        return tuple(", ".join(steps(x) for x in xs) for xs in lists)
    scale = max((abs(x) for xs in lists for x in xs if math.isfinite(x)), default=0.0)
    return tuple(", ".join(num(x, scale) for x in xs) for xs in lists)


def estimate(mean: float | None, lo: float | None, hi: float | None, seeds: str = "") -> str:
    """'mean [lo, hi]' when the interval exists, else 'mean (seeds: a, b)' (small n: the seeds themselves)."""
    if not _finite(mean):
        return "n/a"
    if _finite(lo) and _finite(hi):
        scale = max(abs(float(mean)), abs(float(lo)), abs(float(hi)))
        digits = _resolving(float(lo), float(hi), scale)
        return f"{num(mean, digits=digits)} [{num(lo, digits=digits)}, {num(hi, digits=digits)}]"
    return f"{num(mean)} (seeds: {seeds})" if seeds else num(mean)


def gamma(g: float | None) -> str:
    """A discount factor as given ('0.99', '0.95'), or 'not recorded'."""
    return f"{float(g):g}" if _finite(g) else "not recorded"


def steps(x: float | None) -> str:
    """Env steps as readable text: 50000 -> '50k', 1200000 -> '1.2M'."""
    if not _finite(x):
        return "n/a"
    v = float(x)
    for div, unit in ((1e6, "M"), (1e3, "k")):
        if abs(v) >= div:
            return f"{v / div:.3g}{unit}"
    return f"{v:.0f}"


def detectable(mde: float | None, max_diff: float | None, show=None, n: int | None = None) -> str:
    """The smallest detectable difference, or why there is none: fewer than MIN_SEEDS seeds in a group (`n`, the
    smaller group's count: their spread sizes nothing), no spread observed, or larger than any difference the
    metric's range allows."""
    show = show or num
    if not _finite(mde):
        if n is not None and n < MIN_SEEDS:
            return f"n/a (n < {MIN_SEEDS} seeds: the seeds' values are shown instead)"
        return "n/a (no spread observed)"
    if _finite(max_diff) and float(mde) > float(max_diff):
        return f"none within the range (needs {show(mde)}, range allows {show(max_diff)})"
    return show(mde)


def p_is(p: float | None) -> str:
    """'p = 0.012', 'p < 0.001' (not 'p = < 0.001'), 'p n/a': a p-value in a sentence."""
    text = pvalue(p)
    return f"p {text}" if text.startswith("<") else f"p = {text}" if text != "n/a" else "p n/a"


def pvalue(p: float | None) -> str:
    """A p-value to three decimals, '< 0.001' below that, 'n/a' when no test was made."""
    if not _finite(p):
        return "n/a"
    return "< 0.001" if float(p) < 0.001 else f"{float(p):.3f}"
