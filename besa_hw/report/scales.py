"""Honest scales for figures of ratios (speedup, energy saving) and for heatmaps.

A ratio axis always contains the dense baseline 1.0× (bars also 0), so a 0.03% difference
cannot fill the plot; its tick labels are plain numbers, never an offset such as "+1.6".
A heatmap whose values differ by less than 1% of their mean gets a colour scale at least ±1%
wide around the mean (so the cells look alike, as they are) and says so in its title.
"""

from __future__ import annotations

import matplotlib.ticker
import numpy as np

__all__ = ["RATIO_BASELINE", "FLAT_SPAN", "plain_ticks", "ratio_axis", "color_limits", "spread_note"]

RATIO_BASELINE = 1.0  # dense / dense
FLAT_SPAN = 0.01  # values within 1% of their mean are shown as equal


def _finite(values) -> np.ndarray:
    v = np.asarray(values, dtype=float).ravel()
    return v[np.isfinite(v)]


def plain_ticks(ax, axis: str = "y") -> None:
    """Plain tick labels on a linear axis: no offset ("+1.6") and no scientific multiplier."""
    target = ax.yaxis if axis == "y" else ax.xaxis
    if (ax.get_yscale() if axis == "y" else ax.get_xscale()) != "linear":
        return
    fmt = matplotlib.ticker.ScalarFormatter(useOffset=False)
    fmt.set_scientific(False)
    target.set_major_formatter(fmt)


def ratio_axis(ax, values, axis: str = "y", zero: bool = False, headroom: float = 0.08,
               baseline_line: bool = True) -> tuple[float, float]:
    """Make ``axis`` of ``ax`` an honest ratio axis for ``values``; returns the limits set.

    The limits contain 1.0× (and 0 when ``zero``, for bars) plus ``headroom`` of the span on
    top; a thin grey line marks 1.0× (dense).
    """
    v = _finite(values)
    lo = min(v.min(initial=RATIO_BASELINE), RATIO_BASELINE)
    hi = max(v.max(initial=RATIO_BASELINE), RATIO_BASELINE)
    lo = 0.0 if zero else lo
    span = hi - lo if hi > lo else max(abs(hi), 1.0) * 0.1
    limits = (lo if zero else lo - 0.08 * span, hi + headroom * span)
    (ax.set_ylim if axis == "y" else ax.set_xlim)(*limits)
    if baseline_line:
        (ax.axhline if axis == "y" else ax.axvline)(RATIO_BASELINE, color="0.6", lw=0.8, zorder=0)
    plain_ticks(ax, axis)
    return limits


def spread_note(values, unit: str = "") -> str:
    """"" or, when the values differ by less than 1% of their mean, a note such as
    "all within 0.03%: 1.5958-1.5962×" for a title."""
    v = _finite(values)
    if len(v) < 2:
        return ""
    mean = abs(v.mean())
    rel = (v.max() - v.min()) / mean if mean > 0 else 0.0
    if rel >= FLAT_SPAN:
        return ""
    digits = 4 if mean < 100 else 1
    if v.max() == v.min():
        return f"all equal: {v.max():,.{digits}f}{unit}"
    return f"all within {rel:.2%}: {v.min():,.{digits}f}-{v.max():,.{digits}f}{unit}"


def color_limits(values, ratio: bool = False) -> tuple[float, float]:
    """(vmin, vmax) of a colour scale: the data range (from 1.0× for a ``ratio``), widened to
    ±1% around the mean when the values differ by less than 1% (every cell then gets about the
    same colour)."""
    v = _finite(values)
    if len(v) == 0:
        return 0.0, 1.0
    lo, hi, mean = float(v.min()), float(v.max()), float(v.mean())
    if ratio and hi - lo >= FLAT_SPAN * abs(mean):
        lo, hi = min(lo, RATIO_BASELINE), max(hi, RATIO_BASELINE)
    half = FLAT_SPAN * abs(mean) or FLAT_SPAN
    if hi - lo < 2 * half:
        lo, hi = min(lo, mean - half), max(hi, mean + half)
    return lo, hi
