"""Figures of hardware sweeps and allocation comparisons (``besa-hw sweep`` / ``besa-hw compare``).

Same conventions as :mod:`besa_hw.report.figures`: DataFrames in, one PNG out, the path returned.
"""

from __future__ import annotations

import logging
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle

from besa_hw.report.figures import OP_ORDER, PHASE_MARKERS, ops_in, ordered, phase_color, save
from besa_hw.report.scales import color_limits, plain_ticks, ratio_axis, spread_note

log = logging.getLogger(__name__)

__all__ = ["SWEEP_METRICS", "sweep_metrics", "sweep_lines", "sweep_heatmap", "tradeoff", "allocation_overlay"]

SPEEDUP_LABEL = "end-to-end speedup vs dense (×)"
MEMORY_BOUND = "memory-bound (≥ 50% of ops)"
OP_MARKERS = dict(zip(OP_ORDER, "o^vsDPX"))
LINESTYLES = ("-", "--", ":", "-.")
RATIO_METRICS = ("speedup_e2e", "speedup_linear", "energy_saving")
# Rows of a sweep figure: metric -> (axis label, title, column of the dense model on the same point).
SWEEP_METRICS = {"speedup_e2e": (SPEEDUP_LABEL, "end-to-end speedup", None),
                 "speedup_linear": ("Linear-only speedup vs dense (×)", "Linear-only speedup", None),
                 "latency_us": ("end-to-end latency (µs, lower is better)", "latency", "dense_latency_us"),
                 "energy_uj": ("energy (µJ, lower is better)", "energy", "dense_energy_uj")}


def sweep_metrics(points: pd.DataFrame) -> pd.DataFrame:
    """``points.csv`` plus latency (µs) and energy (µJ) of the dense model on each point."""
    dense_latency = points.latency_us * points.dense_cycles / points.sparse_cycles.clip(lower=1)
    return points.assign(dense_latency_us=dense_latency, energy_uj=points.energy_pj / 1e6,
                         dense_energy_uj=points.dense_energy_pj / 1e6)


def _axis_values(values: pd.Series) -> tuple[np.ndarray, list, bool]:
    """Plot positions for a parameter's values: numeric as is (log2 axis if they span 8×), else 0..k-1."""
    uniq = sorted(values.unique(), key=lambda v: (isinstance(v, str), v))
    numeric = pd.api.types.is_numeric_dtype(values)
    pos = np.asarray(uniq, float) if numeric else np.arange(len(uniq), dtype=float)
    log_axis = bool(numeric and pos.min() > 0 and pos.max() / pos.min() >= 8)
    return pos, uniq, log_axis


def _shade_memory_bound(ax: plt.Axes, pos: np.ndarray, fraction: np.ndarray, log_axis: bool) -> None:
    """Shade the x-range around values where most ops are memory-bound (cell edges at midpoints)."""
    t = np.log(pos) if log_axis else pos
    mids = (t[1:] + t[:-1]) / 2
    half = (mids[0] - t[0]) if len(t) > 1 else 0.5
    edges = np.concatenate([[t[0] - half], mids, [t[-1] + (t[-1] - mids[-1] if len(t) > 1 else 0.5)]])
    edges = np.exp(edges) if log_axis else edges
    for i, f in enumerate(fraction):
        if f >= 0.5:
            ax.axvspan(edges[i], edges[i + 1], color="tab:red", alpha=0.08, lw=0)
    ax.set_xlim(edges[0], edges[-1])  # half a cell on both sides, shaded or not


def _line_groups(points: pd.DataFrame, param: str, params: list[str]) -> list[tuple[str, pd.DataFrame]]:
    """One line per value of the single other parameter (if it has <= 6 values), else the mean."""
    others = [p for p in params if p != param]
    if len(others) == 1 and points[others[0]].nunique() <= 6:
        return [(f"{others[0]}={v}", g) for v, g in points.groupby(others[0], sort=True)]
    return [("mean over " + ", ".join(others) if others else "sweep", points)]


def _value_axis(ax: plt.Axes, metric: str, values: np.ndarray) -> None:
    """Ratios: an honest ratio axis (1.0× included). Absolute values: from 0, or log when they span 30×."""
    if metric in RATIO_METRICS:
        ratio_axis(ax, values)
        return
    v = values[np.isfinite(values)]
    if len(v) and v.min() > 0 and v.max() / v.min() > 30:
        ax.set_yscale("log")
    else:
        ax.set_ylim(0, (v.max() if len(v) else 1.0) * 1.1)
        plain_ticks(ax)


def _sweep_panel(ax: plt.Axes, points: pd.DataFrame, param: str, params: list[str], metric: str) -> None:
    """``metric`` vs ``param``: one line per group, hollow markers where most ops are memory-bound,
    dashed: the dense model on the same hardware."""
    pos, uniq, log_axis = _axis_values(points[param])
    where = dict(zip(uniq, pos))
    label, title, dense_col = SWEEP_METRICS.get(metric, (metric, metric, None))
    groups, shown = _line_groups(points, param, params), []
    for i, (name, g) in enumerate(groups):
        cols = [metric, "memory_bound_fraction"] + ([dense_col] if dense_col else [])
        agg = g.groupby(param)[cols].mean().reindex(uniq).dropna()
        x, y, color = agg.index.map(where).to_numpy(float), agg[metric], f"C{i}"
        ax.plot(x, y, "-", color=color, label=name)
        mem = agg.memory_bound_fraction.to_numpy() >= 0.5
        ax.plot(x[~mem], y[~mem], "o", color=color)
        ax.plot(x[mem], y[mem], "o", mfc="white", color=color)
        shown.append(y.to_numpy())
        if dense_col:
            ax.plot(x, agg[dense_col], "--", color=color, lw=1, alpha=0.7)
            shown.append(agg[dense_col].to_numpy())
        if name.startswith("mean") and len(g) > len(agg):  # spread of the other parameters
            spread = g.groupby(param)[metric].agg(["min", "max"]).reindex(agg.index)
            ax.fill_between(x, spread["min"], spread["max"], color=color, alpha=0.15, lw=0)
            shown.append(spread.to_numpy().ravel())
    if len(groups) == 1:  # one line: shade its memory-bound stretch (several lines: markers only)
        frac = points.groupby(param).memory_bound_fraction.mean().reindex(uniq).to_numpy()
        _shade_memory_bound(ax, pos, frac, log_axis)
    if log_axis:
        ax.set_xscale("log", base=2)
    ax.set_xticks(pos, [str(v) for v in uniq])
    ax.minorticks_off()
    _value_axis(ax, metric, np.concatenate(shown))
    ax.set_xlabel(param_label(param))
    ax.set_ylabel(label)
    note = spread_note(points[metric], "×" if metric in RATIO_METRICS else "")
    ax.set_title(f"{title} vs {param}" + (f"\n({note})" if note else ""), fontsize=10)


_UNITS = {"_gbps": "GB/s", "_kib": "KiB", "_mhz": "MHz", "_bits": "bits", "_pj": "pJ", "_pj_per_byte": "pJ/B"}


def param_label(field: str) -> str:
    """Axis label for a HardwareConfig field: ``dram_gbps`` -> ``dram (GB/s) [dram_gbps]``."""
    for suffix, unit in sorted(_UNITS.items(), key=lambda kv: -len(kv[0])):
        if field.endswith(suffix):
            return f"{field[: -len(suffix)].replace('_', ' ')} ({unit}) [{field}]"
    return field


def sweep_lines(points: pd.DataFrame, params: list[str], path: str | Path,
                metrics: tuple[str, ...] = tuple(SWEEP_METRICS)) -> Path:
    """Speedup, latency and energy (rows) vs each swept parameter (columns).

    A bigger array can lower the speedup while cutting the latency 3×: the latency row shows it.
    Hollow markers / shading: memory-bound points; dashed: the dense model on the same point.
    """
    data = sweep_metrics(points)
    fig, axes = plt.subplots(len(metrics), len(params), figsize=(4.8 * len(params) + 0.6, 3.2 * len(metrics) + 1),
                             squeeze=False, constrained_layout=True)
    for col, param in enumerate(params):
        for row, metric in enumerate(metrics):
            _sweep_panel(axes[row, col], data, param, params, metric)
        handles, _ = axes[-1, col].get_legend_handles_labels()
        handles += [Line2D([], [], ls="", marker="o", color="0.3", label="compute-bound"),
                    Line2D([], [], ls="", marker="o", color="0.3", mfc="white", label=MEMORY_BOUND)]
        if any(SWEEP_METRICS.get(m, (0, 0, None))[2] for m in metrics):
            handles.append(Line2D([], [], ls="--", color="0.3", label="dense, same hardware"))
        if len(_line_groups(data, param, params)) == 1:  # a single line: its memory-bound stretch is shaded
            handles.append(Patch(color="tab:red", alpha=0.15, label="memory-bound region"))
        axes[-1, col].legend(handles=handles, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2)
    fig.suptitle(f"Hardware sweep: {len(points)} points; lower latency and energy are better")
    return save(fig, path)


def _heatmap_panel(fig: plt.Figure, ax: plt.Axes, points: pd.DataFrame, x: str, y: str, metric: str) -> None:
    grid = points.pivot_table(index=y, columns=x, values=metric, aggfunc="mean").sort_index().sort_index(axis=1)
    frac = points.pivot_table(index=y, columns=x, values="memory_bound_fraction",
                              aggfunc="mean").reindex_like(grid)
    ratio = metric in RATIO_METRICS
    top = np.nanmax(np.abs(grid.values))
    digits = 2 if ratio or top < 10 else 1 if top < 100 else 0  # one format for every cell
    vmin, vmax = color_limits(grid.values, ratio)  # values within 1%: a flat colour scale
    im = ax.imshow(grid.values, origin="lower", aspect="auto", cmap="viridis" if ratio else "viridis_r",
                   vmin=vmin, vmax=vmax)
    for (r, c), v in np.ndenumerate(grid.values):
        if np.isnan(v):
            continue
        hatched = frac.values[r, c] >= 0.5
        if hatched:
            ax.add_patch(Rectangle((c - 0.5, r - 0.5), 1, 1, fill=False, hatch="//",
                                   edgecolor="tab:red", lw=0))
        bright = im.norm(v) if ratio else 1 - im.norm(v)  # viridis_r: low values are bright
        light = hatched or bright >= 0.6  # black text on bright cells and on its own white box
        ax.text(c, r, f"{v:,.{digits}f}" + ("×" if ratio else ""), ha="center", va="center", fontsize=8,
                color="k" if light else "w", zorder=3,
                bbox=dict(boxstyle="round", fc="w", ec="none", alpha=0.85) if hatched else None)
    ax.set_xticks(np.arange(grid.shape[1]), [str(v) for v in grid.columns])
    ax.set_yticks(np.arange(grid.shape[0]), [str(v) for v in grid.index])
    ax.set_xlabel(param_label(x))
    ax.set_ylabel(param_label(y))
    label, title, _ = SWEEP_METRICS.get(metric, (metric, metric, None))
    note = spread_note(grid.values, "×" if ratio else "")
    ax.set_title(title + (f"\n({note}; flat colour scale)" if note else ""), fontsize=10)
    bar = fig.colorbar(im, ax=ax, label=label)
    plain_ticks(bar.ax, "y")


def sweep_heatmap(points: pd.DataFrame, x: str, y: str, path: str | Path,
                  metrics: tuple[str, ...] = tuple(SWEEP_METRICS)) -> Path:
    """Speedup, latency and energy over a two-parameter grid, cells annotated, memory-bound cells hatched."""
    data = sweep_metrics(points)
    cells = data.groupby([x, y]).ngroups
    ncol, nrow = data[x].nunique(), data[y].nunique()
    fig, axes = plt.subplots(1, len(metrics), figsize=(len(metrics) * (0.9 * ncol + 3.0), 0.6 * nrow + 2.6),
                             squeeze=False, constrained_layout=True)
    for ax, metric in zip(axes[0], metrics):
        _heatmap_panel(fig, ax, data, x, y, metric)
    mean = " (mean over the other parameters)" if len(points) > cells else ""
    fig.suptitle(f"Sweep over {y} × {x}{mean}; bright = better")
    fig.legend(handles=[Patch(fill=False, hatch="//", edgecolor="tab:red", label=MEMORY_BOUND)],
               loc="outside lower left", fontsize=8, frameon=False)
    return save(fig, path)


def _speedup_columns(compare: pd.DataFrame) -> list[tuple[str, str]]:
    """(panel label, column): for each phase the Linear-only speedup (what pruning changes, where the
    allocations differ) and the end-to-end one (the whole step), where the columns have numbers."""
    out = []
    for c in compare.columns:
        if c.startswith("speedup_e2e_") and compare[c].notna().any():
            phase = c.removeprefix("speedup_e2e_")
            linear = f"speedup_linear_{phase}"
            if linear in compare and compare[linear].notna().any():
                out.append((f"{phase}, Linear-only", linear))
            out.append((f"{phase}, end-to-end", c))
    return out


def _place_labels(ax: plt.Axes, names: list[str], xs: list[float], ys: list[float]) -> None:
    """Label points, trying four offsets per label so that labels do not overlap each other."""
    ax.figure.canvas.draw()  # settle the axis limits and layout before measuring text
    renderer = ax.figure.canvas.get_renderer()
    placed = []
    offsets = [((5, 4), "left"), ((5, -11), "left"), ((-5, 4), "right"), ((-5, -11), "right"), ((5, 14), "left")]
    for name, x, y in zip(names, xs, ys):
        for (dx, dy), ha in offsets:
            text = ax.annotate(name, (x, y), xytext=(dx, dy), textcoords="offset points", fontsize=8, ha=ha)
            box = text.get_window_extent(renderer)
            if not any(box.overlaps(other) for other in placed):
                break
            text.remove()
        else:
            text = ax.annotate(name, (x, y), xytext=(5, 4), textcoords="offset points", fontsize=8)
            box = text.get_window_extent(renderer)
        placed.append(box)


def tradeoff(compare: pd.DataFrame, path: str | Path, hardware: str | None = None) -> Path:
    """Perplexity vs simulated speedup per run: per phase a Linear-only panel (what pruning changes) and an
    end-to-end one (the whole step), two panels a row.

    Without any perplexity (profile-only comparisons) it plots speedup vs achieved sparsity instead.
    """
    with_ppl = "ppl" in compare and compare.ppl.notna().any()
    phases = _speedup_columns(compare)
    cols = min(2, len(phases))
    rows = -(-len(phases) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.5 * cols, 4.3 * rows), squeeze=False,
                             constrained_layout=True, sharey=with_ppl)
    for ax in axes.flat[len(phases):]:
        ax.set_visible(False)
    for i, (ax, (phase, col)) in enumerate(zip(axes.flat, phases)):
        df = compare.dropna(subset=[col, "ppl" if with_ppl else "achieved_sparsity"])
        x, y = (df[col], df.ppl) if with_ppl else (df.achieved_sparsity, df[col])
        name = phase.split(",")[0]
        ax.scatter(x, y, s=40, marker=PHASE_MARKERS.get(name, "o"), color=phase_color(name, i), zorder=3)
        if with_ppl and "dense_ppl" in df and df.dense_ppl.notna().any():
            ax.axhline(df.dense_ppl.dropna().iloc[0], color="0.5", ls=":", label="dense perplexity")
            ax.legend(fontsize=8, loc="upper right")
        if with_ppl and y.min() > 0 and y.max() / y.min() > 4:  # one bad run would flatten the rest
            ax.set_yscale("log")
        ax.margins(0.2)
        ratio_axis(ax, df[col], "x" if with_ppl else "y", headroom=0.2)  # 1.0× (dense) in view
        _place_labels(ax, [str(n) for n in df.run], list(x), list(y))
        what = f"{phase} speedup vs dense (×)"
        ax.set_xlabel(what if with_ppl else "achieved sparsity (fraction pruned)")
        ax.set_ylabel("perplexity (lower is better)" if with_ppl else what)
        note = spread_note(df[col], "×")
        ax.set_title(f"{phase}" + (f" (speedups {note})" if note else ""), fontsize=10)
        ax.grid(alpha=0.3)
    missing = int(compare.ppl.isna().sum()) if with_ppl else 0
    on = f" on {hardware}" if hardware else ""
    fig.suptitle(f"Quality vs simulated speedup{on}" + (f" ({missing} runs without perplexity omitted)"
                                                       if missing else "") if with_ppl else
                 f"Speedup vs achieved sparsity{on} (perplexity not evaluated)")
    return save(fig, path)


def allocation_overlay(alloc: pd.DataFrame, path: str | Path) -> Path:
    """Per-layer sparsity in model order, one line per run (markers: op type); below, means per op type."""
    fig, (ax, ax_op) = plt.subplots(2, 1, figsize=(11, 7), constrained_layout=True,
                                    gridspec_kw={"height_ratios": [1.4, 1]})
    names = list(dict.fromkeys(alloc.run))
    ops = ops_in(alloc)
    width = 0.6 / len(names)
    for i, name in enumerate(names):
        df = ordered(alloc[alloc.run == name])
        ax.plot(np.arange(len(df)), df.sparsity, LINESTYLES[i % 4], lw=0.9, color=f"C{i}", label=name)
        for op, g in df.groupby("op"):
            ax.plot(g.index, g.sparsity, ls="", marker=OP_MARKERS.get(op, "."), ms=3, color=f"C{i}")
        means = df.groupby("op").sparsity.mean().reindex(ops)
        ax_op.plot(np.arange(len(ops)) + (i - (len(names) - 1) / 2) * width, means, "o", ms=6,
                   color=f"C{i}", label=name)
    first = ordered(alloc[alloc.run == names[0]])
    starts = first.index[first.block.ne(first.block.shift())].to_numpy()
    step = max(1, int(np.ceil(len(starts) / 16)))
    ax.set_xticks(starts[::step], first.block.iloc[starts[::step]].astype(str))
    ax.set_xlabel("transformer block (Linear layers in order q, k, v, o, gate, up, down)")
    ax.set_ylabel("layer sparsity (fraction pruned)")
    ax.set_title(f"Sparsity allocation of {len(names)} runs")
    op_handles = [Line2D([], [], ls="", marker=OP_MARKERS.get(op, "."), color="0.3",
                         label=op.replace("_proj", "")) for op in ops]
    ax.add_artist(ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0), title="run"))
    ax.legend(handles=op_handles, fontsize=8, loc="lower left", bbox_to_anchor=(1.0, 0.0), title="op")
    ax_op.set_xticks(np.arange(len(ops)), [op.replace("_proj", "") for op in ops])
    ax_op.set_xlabel("op type")
    ax_op.set_ylabel("mean sparsity over blocks")
    ax_op.grid(axis="y", alpha=0.3)
    ax_op.set_title("Mean sparsity per op type (identical runs overlap in the panel above)", fontsize=10)
    ax_op.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0), title="run")
    return save(fig, path)


def pareto_front(x: pd.Series, y: pd.Series) -> list[int]:
    """Positions of the points no other point beats on both axes (higher x, lower y), by x."""
    order = sorted(range(len(x)), key=lambda i: (-x.iloc[i], y.iloc[i]))
    front, best = [], float("inf")
    for i in order:
        if y.iloc[i] < best:
            front.append(i)
            best = y.iloc[i]
    return sorted(front, key=lambda i: x.iloc[i])


def pareto(compare: pd.DataFrame, path: str | Path, hardware: str) -> Path | None:
    """Perplexity vs simulated end-to-end tokens/s, one panel per phase: each method a curve over its
    runs, the dense model a star, the Pareto front a dashed line. None without perplexities."""
    if "ppl" not in compare or not compare.ppl.notna().any():
        return None
    phases = [c.removeprefix("tokens_per_s_e2e_") for c in compare.columns if c.startswith("tokens_per_s_e2e_")]
    fig, axes = plt.subplots(1, len(phases), figsize=(6 * len(phases), 4.8), squeeze=False, constrained_layout=True)
    for ax, phase in zip(axes[0], phases):
        col = f"tokens_per_s_e2e_{phase}"
        df = compare.dropna(subset=[col, "ppl"]).reset_index(drop=True)
        for i, (method, group) in enumerate(df.groupby("method", sort=False)):
            group = group.sort_values(col)
            ax.plot(group[col], group.ppl, marker="o", ms=5, lw=1.2, color=f"C{i}", label=method or "run")
        front = pareto_front(df[col], df.ppl)
        ax.plot(df[col].iloc[front], df.ppl.iloc[front], ls="--", lw=2.5, color="0.3", alpha=0.5,
                label="Pareto front", zorder=1)
        dense = df.dropna(subset=["dense_ppl"])
        if not dense.empty and f"dense_{col}" in dense:
            ax.scatter([dense[f"dense_{col}"].iloc[0]], [dense.dense_ppl.iloc[0]], marker="*", s=160, color="k",
                       zorder=4, label="dense")
        if df.ppl.min() > 0 and df.ppl.max() / df.ppl.min() > 4:
            ax.set_yscale("log")
        ax.set_xlabel(f"{phase}: simulated end-to-end tokens/s on {hardware}")
        ax.set_ylabel("perplexity (lower is better)")
        ax.set_title(f"{phase} on {hardware}", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"Quality vs simulated throughput on {hardware} (lower right is better)")
    return save(fig, path)


def knee(x: np.ndarray, y: np.ndarray) -> int:
    """Index of the knee of a front sorted by x: the point farthest from the chord between its ends
    (both axes scaled to [0, 1])."""
    if len(x) < 3:
        return len(x) - 1
    xs = (x - x.min()) / max(np.ptp(x), 1e-12)
    ys = (y - y.min()) / max(np.ptp(y), 1e-12)
    dx, dy = xs[-1] - xs[0], ys[-1] - ys[0]
    dist = np.abs(dy * (xs - xs[0]) - dx * (ys - ys[0])) / max(np.hypot(dx, dy), 1e-12)
    return int(np.argmax(dist))


def sweep_pareto(totals: pd.DataFrame, path: str | Path, hardware: str = "the swept hardware") -> Path:
    """Tokens/s against area (where the points have one), energy per token and average power: the Pareto
    front of the points within budget drawn and its knee marked; dominated and over-budget points faded."""
    ok = totals.within_budget if "within_budget" in totals else pd.Series(True, index=totals.index)
    costs = [("area_mm2", "area (mm2, 45 nm)")] if "area_mm2" in totals else []
    costs += [("energy_per_token_uj", "energy per token (uJ)"), ("power_mw", "average power (mW)")]
    fig, axes = plt.subplots(1, len(costs), figsize=(5.5 * len(costs), 4.5), constrained_layout=True)
    for ax, (cost, label) in zip(axes, costs):
        inside = totals[ok].reset_index(drop=True)
        ax.scatter(totals[~ok][cost], totals[~ok].tokens_per_s, s=14, color="0.75", marker="x", label="over budget")
        front = pareto_front(-inside[cost], -inside.tokens_per_s) if len(inside) else []
        dominated = inside.drop(index=front)
        ax.scatter(dominated[cost], dominated.tokens_per_s, s=18, color="C0", alpha=0.3, label="dominated")
        if front:
            f = inside.iloc[front].sort_values(cost)
            ax.plot(f[cost], f.tokens_per_s, "o-", color="C3", ms=5, label="Pareto front")
            k = knee(f[cost].to_numpy(), f.tokens_per_s.to_numpy())
            ax.scatter([f[cost].iloc[k]], [f.tokens_per_s.iloc[k]], s=160, facecolors="none", edgecolors="k",
                       linewidths=1.5, zorder=4, label="knee")
        values = totals[cost]
        if values.max() > 0 and np.ptp(values) / values.max() < 0.05:  # a 0.1% spread must not fill the axis
            ax.set_xlim(0, values.max() * 1.08)
            label += f", within {100 * np.ptp(values) / values.max():.2g}% of each other"
        ax.set_xlabel(f"{label} (lower is better)")
        ax.set_ylabel("tokens/s (higher is better)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"Sweep of {hardware}: throughput against {'area, ' if len(costs) == 3 else ''}energy and power "
                 f"({int(ok.sum())} of {len(totals)} "
                 "points within budget)")
    return save(fig, path)
