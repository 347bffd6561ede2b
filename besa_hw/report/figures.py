"""Figures of one simulated run: latency, speedup, allocation, time breakdown, roofline, energy.

Every function takes pandas DataFrames (the ``layers.csv`` / ``summary.csv`` tables of
``simulator.results_frame``), writes one PNG and returns its path. Sweep and comparison
figures live in :mod:`besa_hw.report.explore`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Mapping

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from besa_hw.report.scales import plain_ticks, ratio_axis  # noqa: E402

log = logging.getLogger(__name__)

__all__ = ["OP_ORDER", "latency_per_layer", "speedup_by_op", "allocation_heatmap",
           "row_sparsity_distribution", "time_breakdown", "roofline", "roofline_points", "energy_by_op"]

OP_ORDER = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
OP_COLORS = dict(zip(OP_ORDER, plt.get_cmap("tab10").colors))
PHASE_COLORS = {"decode": "tab:blue", "prefill": "tab:orange"}
PHASE_MARKERS = {"decode": "o", "prefill": "s"}
DPI = 130


def save(fig: plt.Figure, path: str | Path) -> Path:
    """Write ``fig`` as a PNG, close it and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    log.debug("wrote %s", path)
    return path


def linear_rows(layers: pd.DataFrame) -> pd.DataFrame:
    """The seven prunable projections (every row of tables written before op kinds existed)."""
    return layers[layers.kind.eq("linear")] if "kind" in layers else layers


def block_rows(layers: pd.DataFrame) -> pd.DataFrame:
    """The ops inside transformer blocks (not the embedding, final norm and lm_head)."""
    return layers[~layers.kind.isin(["embedding", "lm_head"]) & ~layers.op.eq("final_norm")] \
        if "kind" in layers else layers


def ordered(layers: pd.DataFrame) -> pd.DataFrame:
    """Layers in model order: block-major, ops q, k, v, o, gate, up, down."""
    rank = {op: i for i, op in enumerate(OP_ORDER)}
    key = layers.op.map(lambda op: rank.get(op, len(rank)))
    return layers.assign(_rank=key).sort_values(["block", "_rank"], kind="stable").drop(
        columns="_rank").reset_index(drop=True)


def ops_in(df: pd.DataFrame) -> list[str]:
    """Op types present, in model order (unknown ops last)."""
    present = list(dict.fromkeys(df.op))
    return [op for op in OP_ORDER if op in present] + [op for op in present if op not in OP_ORDER]


def phase_color(phase: str, i: int) -> str:
    return PHASE_COLORS.get(phase, f"C{i + 2}")


def _freq_mhz(layers: pd.DataFrame) -> float:
    """Clock in MHz recovered from ``latency_us = sparse_cycles / freq_mhz``."""
    return float(layers.sparse_cycles.sum() / layers.latency_us.sum())


def _mark_blocks(ax: plt.Axes, layers: pd.DataFrame) -> None:
    """Light vertical lines at block starts; ticks labelled with the block number."""
    starts = layers.index[layers.block.ne(layers.block.shift())].to_numpy()
    for x in starts[1:]:
        ax.axvline(x - 0.5, color="0.85", lw=0.6, zorder=0)
    step = max(1, int(np.ceil(len(starts) / 16)))
    ax.set_xticks(starts[::step])
    ax.set_xticklabels(layers.block.iloc[starts[::step]].astype(str))


def latency_per_layer(layers_by_phase: Mapping[str, pd.DataFrame], path: str | Path,
                      freq_mhz: float | None = None) -> Path:
    """Dense vs sparse latency (µs) of every Linear in model order, one subplot per phase."""
    fig, axes = plt.subplots(len(layers_by_phase), 1, figsize=(11, 3.4 * len(layers_by_phase)),
                             squeeze=False, constrained_layout=True)
    for ax, (phase, raw) in zip(axes[:, 0], layers_by_phase.items()):
        df = ordered(linear_rows(raw))
        freq = freq_mhz or _freq_mhz(df)
        dense, sparse = df.dense_cycles / freq, df.sparse_cycles / freq
        x = np.arange(len(df))
        ax.bar(x, dense, 1.0, color="0.78", label="dense")
        ax.bar(x, sparse, 0.7, color=phase_color(phase, 0), label="sparse")
        both = pd.concat([dense, sparse])
        if both.min() > 0 and both.max() / both.min() > 30:
            ax.set_yscale("log")
        plain_ticks(ax)  # linear axes only
        _mark_blocks(ax, df)
        tokens = int(df.tokens.iloc[0]) if "tokens" in df else None
        ax.set_title(f"{phase}" + (f" ({tokens} token{'s' * (tokens != 1)})" if tokens else "")
                     + f": latency of each Linear layer; all Linears {dense.sum():,.0f} µs dense -> "
                     f"{sparse.sum():,.0f} µs sparse")
        ax.set_ylabel("latency (µs)")
        ax.set_xlabel("transformer block (7 Linear layers each: q, k, v, o, gate, up, down)")
        ax.set_xlim(-1, len(df))
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    return save(fig, path)


def _speedup(df: pd.DataFrame, by: str) -> pd.Series:
    sums = df.groupby(by, sort=False)[["dense_cycles", "sparse_cycles"]].sum()
    return sums.dense_cycles / sums.sparse_cycles.clip(lower=1)


def speedup_by_op(layers_by_phase: Mapping[str, pd.DataFrame], path: str | Path) -> Path:
    """Speedup per op type (grouped bars) and per block (lines), end-to-end as horizontal lines."""
    fig, (ax_op, ax_blk) = plt.subplots(1, 2, figsize=(12, 4.2), constrained_layout=True,
                                        gridspec_kw={"width_ratios": [1.1, 1]})
    ops = ops_in(pd.concat(list(layers_by_phase.values())))
    width, shown = 0.8 / len(layers_by_phase), []
    for i, (phase, df) in enumerate(layers_by_phase.items()):
        color = phase_color(phase, i)
        total = df.dense_cycles.sum() / max(df.sparse_cycles.sum(), 1)
        lin = linear_rows(df)
        linear = lin.dense_cycles.sum() / max(lin.sparse_cycles.sum(), 1)
        per_op = _speedup(df, "op").reindex(ops)
        x = np.arange(len(ops)) + (i - (len(layers_by_phase) - 1) / 2) * width
        bars = ax_op.bar(x, per_op, width, color=color, label=f"{phase} per op type")
        # Ops that pruning does not touch sit at exactly 1.00x: label only the others, upright so that
        # the labels of neighbouring bars never run into each other.
        ax_op.bar_label(bars, labels=[f"{v:.2f}" if abs(v - 1.0) > 5e-4 else "" for v in per_op.fillna(1.0)],
                        fontsize=7, padding=2, rotation=90)
        per_block = _speedup(block_rows(df), "block").sort_index()
        shown += [per_op.to_numpy(), per_block.to_numpy()]
        ax_blk.plot(per_block.index, per_block, marker=".", color=color, label=f"{phase} per block")
        for ax in (ax_op, ax_blk):
            ax.axhline(total, color=color, ls="--", lw=1.2, label=f"{phase} end-to-end {total:.2f}×")
            if len(lin) < len(df):
                ax.axhline(linear, color=color, ls=":", lw=1.2, label=f"{phase} Linear-only {linear:.2f}×")
    ax_op.set_xticks(np.arange(len(ops)), [op.replace("_proj", "") for op in ops],
                     rotation=45 if len(ops) > 8 else 0, ha="right" if len(ops) > 8 else "center")
    ax_op.set_xlabel("op type")
    ax_op.set_title("Speedup per op type (sum over blocks)")
    ax_blk.set_xlabel("transformer block")
    ax_blk.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax_blk.set_title("Speedup per block (dashed: end-to-end, dotted: Linear-only)")
    for ax in (ax_op, ax_blk):
        ax.set_ylabel("speedup vs dense (dense / sparse cycles)")
        ratio_axis(ax, np.concatenate(shown), zero=True, headroom=0.15)  # headroom for the bar labels
    # one legend under both panels, so that it never covers a bar or its label
    handles = {label: h for ax in (ax_op, ax_blk) for h, label in zip(*ax.get_legend_handles_labels())}
    fig.legend(handles.values(), handles.keys(), fontsize=8, loc="outside lower center",
               ncol=min(4, len(handles)))
    return save(fig, path)


def allocation_heatmap(alloc: pd.DataFrame, path: str | Path) -> Path:
    """Achieved sparsity per (block, op type) as a heatmap with a colour bar."""
    grid = alloc.pivot_table(index="block", columns="op", values="sparsity").reindex(columns=ops_in(alloc))
    n_blocks = len(grid)
    fig, ax = plt.subplots(figsize=(6.4, min(12, max(3.2, 1.8 + 0.2 * n_blocks))), constrained_layout=True)
    lo, hi = np.nanmin(grid.values), np.nanmax(grid.values)
    pad = max(0.02, 0.05 * (hi - lo))
    im = ax.imshow(grid.values, aspect="auto", cmap="viridis", interpolation="nearest",
                   vmin=max(0.0, lo - pad), vmax=min(1.0, hi + pad))
    ax.set_xticks(np.arange(grid.shape[1]), [op.replace("_proj", "") for op in grid.columns])
    step = max(1, int(np.ceil(n_blocks / 20)))
    ax.set_yticks(np.arange(0, n_blocks, step), grid.index[::step])
    if n_blocks <= 12:  # small grids: print the numbers too
        for (r, c), v in np.ndenumerate(grid.values):
            ax.text(c, r, f"{v:.2f}", ha="center", va="center", fontsize=7,
                    color="k" if im.norm(v) > 0.6 else "w")
    ax.set_xlabel("op type (Linear layer)")
    ax.set_ylabel("transformer block")
    ax.set_title(f"Sparsity allocation (layer mean {np.nanmean(grid.values):.3f}, "
                 f"range {lo:.2f}-{hi:.2f})", fontsize=10)
    fig.colorbar(im, ax=ax, label="sparsity (fraction pruned)")
    return save(fig, path)


def row_sparsity_distribution(row_sparsity: Mapping[str, np.ndarray], path: str | Path) -> Path:
    """Violins of per-row sparsity: one per layer (<= 14 layers) or pooled per op type."""
    names = list(row_sparsity)
    if len(names) <= 14:
        labels = [n.split(".")[-1].replace("_proj", "") if n.count(".") else n for n in names]
        data, what = [np.asarray(row_sparsity[n], float) for n in names], _layers_title(names)
    else:  # too many layers for one violin each: pool the rows per op type
        pooled: dict[str, list[np.ndarray]] = {}
        for n in names:
            pooled.setdefault(n.split(".")[-1], []).append(np.asarray(row_sparsity[n], float))
        ops = ops_in(pd.DataFrame({"op": list(pooled)}))
        labels, data = [op.replace("_proj", "") for op in ops], [np.concatenate(pooled[op]) for op in ops]
        what = f"rows of {len(names)} layers pooled per op type"
    fig, ax = plt.subplots(figsize=(max(6.0, 0.8 * len(data) + 2), 4), constrained_layout=True)
    ax.violinplot(data, showmeans=True, showextrema=True)
    for i, d in enumerate(data, start=1):
        ax.text(i, 1.02, f"σ={d.std():.3f}", ha="center", fontsize=7, transform=ax.get_xaxis_transform())
    ax.set_xticks(np.arange(1, len(data) + 1), labels)
    ax.set_xlabel("Linear layer (op type)")
    ax.set_ylabel("row sparsity (fraction pruned per output row)")
    ax.set_title(f"Per-row sparsity within layers: {what} (σ: std over rows)", pad=16)
    return save(fig, path)


def _layers_title(names: list[str]) -> str:
    """"block 3" when every name is ``model.layers.3.…``, else the layer count."""
    blocks = {n.split(".")[2] for n in names if n.startswith("model.layers.") and n.count(".") >= 3}
    return f"block {blocks.pop()}" if len(blocks) == 1 else f"{len(names)} layers"


def time_breakdown(layers: pd.DataFrame, path: str | Path, phase: str = "") -> Path:
    """Stacked compute + stall cycles per op type and per block; DRAM transfer time as markers."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2), constrained_layout=True,
                             gridspec_kw={"width_ratios": [1, 1.6]})
    for ax, by in zip(axes, ("op", "block")):
        sums = layers.groupby(by, sort=False)[["compute_cycles", "stall_cycles", "memory_cycles",
                                                "sparse_cycles"]].sum()
        sums = sums.reindex(ops_in(layers)) if by == "op" else sums.sort_index()
        x, scale = np.arange(len(sums)), 1e-3
        ax.bar(x, sums.compute_cycles * scale, 0.75, color="tab:blue", label="compute")
        ax.bar(x, sums.stall_cycles * scale, 0.75, bottom=sums.compute_cycles * scale,
               color="tab:red", alpha=0.75, label="stall (memory not hidden)")
        ax.plot(x, sums.memory_cycles * scale, "_", color="k", ms=12 if by == "op" else 6, mew=2,
                label="DRAM transfer time")
        ax.set_ylabel("cycles (thousands)")
        ax.set_ylim(0, max(sums.sparse_cycles.max(), sums.memory_cycles.max()) * scale * 1.2)
        ax.set_title(f"per {'op type' if by == 'op' else 'block'}", fontsize=10)
        if by == "op":
            # op names rotated, so that a whole step's 16 op types never overlap
            ax.set_xticks(x, [op.replace("_proj", "") for op in sums.index], rotation=45, ha="right", fontsize=8)
            ax.set_xlabel("op type (sum over blocks)")
        else:
            kinds = layers.groupby("block")["kind"].agg(set) if "kind" in layers else {}
            names = {b: "embed" if b < 0 else "head" if "linear" not in kinds.get(b, {"linear"}) else str(b)
                     for b in sums.index}
            step = max(1, int(np.ceil(len(x) / 16)))
            ticks = sorted(set(range(0, len(x), step)) | {0, len(x) - 1})
            ax.set_xticks(x[ticks], [names[sums.index[i]] for i in ticks], fontsize=8)
            ax.set_xlabel("block (all its ops); embed = embedding gather, head = final norm + LM head")
    compute, total = layers.compute_cycles.sum(), layers.sparse_cycles.sum()
    fig.suptitle(f"Where time goes{f' ({phase})' if phase else ''}: total = compute + stall = "
                 f"{total:,.0f} cycles, {compute / max(total, 1):.0%} compute")
    axes[0].legend(fontsize=8, loc="upper left")
    return save(fig, path)


def roofline_points(df: pd.DataFrame, hw: Mapping) -> tuple[pd.Series, pd.Series]:
    """(x, y) of each op of a layers table on the roofline of ``hw``, consistent with its ``bound``.

    x is the op's compute time per DRAM byte in MACs of the full array,
    ``peak x compute_cycles / DRAM bytes``, computed as ``ridge x compute_cycles / memory_cycles``
    (the DRAM channel moves ``bytes per cycle``): for a dense op at full utilisation it is the
    arithmetic intensity (MAC/B); for a sparse op it also counts the engines' index and
    load-imbalance cycles. So x < ridge exactly when memory_cycles > compute_cycles, the
    simulator's ``bound == "memory"``. y is the attained useful MAC/cycle.
    """
    peak, bpc = _peak_and_bandwidth(hw)
    ridge = peak / bpc
    macs = df.utilization * peak * df.sparse_cycles
    memory = df.memory_cycles.astype(float)
    # Compute-only simulations move no data in time (memory_cycles 0): every op is compute-bound.
    unmodelled = np.maximum(ridge, peak * df.compute_cycles / df.dram_bytes.clip(lower=1))
    x = (ridge * df.compute_cycles / memory.where(memory > 0)).fillna(unmodelled)
    return x, macs / df.sparse_cycles.clip(lower=1)


def _peak_and_bandwidth(hw: Mapping) -> tuple[float, float]:
    """(peak MAC/cycle of the whole array, DRAM bytes per cycle)."""
    return float(hw["pe_rows"] * hw["pe_cols"]), hw["dram_gbps"] * 1e9 / (hw["freq_mhz"] * 1e6)


def roofline(layers: pd.DataFrame | Mapping[str, pd.DataFrame], hw: Mapping, path: str | Path) -> Path:
    """Each matmul on the roofline of ``hw``; left of the ridge = memory-bound as in layers.csv's ``bound``."""
    by_phase = {"": layers} if isinstance(layers, pd.DataFrame) else dict(layers)
    peak, bpc = _peak_and_bandwidth(hw)
    ridge = peak / bpc
    fig, ax = plt.subplots(figsize=(7.5, 5.2), constrained_layout=True)
    xs, counts, others = [], [], set()
    for phase, df in by_phase.items():
        if "kind" in df:  # the PE array's roofline: matmuls only (vector ops run on the vector unit)
            df = df[df.kind.isin(("linear", "attention", "lm_head")) & (df.compute_cycles > 0)]
        x, y = roofline_points(df, hw)
        xs.append(x)
        counts.append(f"{phase + ' ' if phase else ''}{int(df.bound.eq('memory').sum())}/{len(df)}")
        if phase:
            ax.annotate(phase, (x.median(), y.median()), xytext=(6, -14), textcoords="offset points",
                        fontsize=8, color="0.3")
        ax.scatter(x, y, c=[OP_COLORS.get(op, "0.3") for op in df.op], s=24, alpha=0.7,
                   marker=PHASE_MARKERS.get(phase, "o"), edgecolors="none")
        # the textbook arithmetic intensity (useful MACs per DRAM byte) of the same ops, for reference
        intensity = df.utilization * peak * df.sparse_cycles / df.dram_bytes.where(df.dram_bytes > 0)
        ax.scatter(intensity, y, s=10, marker="|", color="0.5", alpha=0.6)
        others |= set(df.op) - set(OP_COLORS)
    allx = pd.concat(xs)
    grid = np.logspace(np.log10(min(allx.min(), ridge) / 3), np.log10(max(allx.max(), ridge) * 3), 200)
    ax.plot(grid, np.minimum(peak, grid * bpc), color="k", lw=1.5)
    ax.plot([ridge], [peak], "kD", ms=6)
    ax.annotate(f"ridge point: {ridge:.1f} MAC/B", (ridge, peak), xytext=(-8, 8), ha="right",
                textcoords="offset points", fontsize=8)
    ax.axvspan(grid[0], ridge, color="tab:red", alpha=0.05, lw=0)
    ax.text(0.02, 0.97, "memory-bound\n(DRAM time > compute time)", transform=ax.transAxes, fontsize=8,
            color="tab:red", va="top")
    ax.text(0.98, 0.97, "compute-bound", transform=ax.transAxes, fontsize=8, ha="right", va="top")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_ylim(min(grid[0] * bpc, peak) / 2, peak * 3)
    ax.set_xlabel("compute time per DRAM byte, in MACs of the full array\n"
                  "(= arithmetic intensity, MAC/B, for a dense op at full utilisation)")
    ax.set_ylabel("attained performance (useful MAC/cycle)")
    ax.set_title(f"Roofline of {hw.get('name', 'the accelerator')}: {peak:.0f} MAC/cycle peak, "
                 f"{bpc:.1f} B/cycle DRAM\nmemory-bound matmuls (of the matmuls only): {', '.join(counts)}",
                 fontsize=10)
    handles = [Line2D([], [], ls="", marker="o", color=c, label=op.replace("_proj", ""))
               for op, c in OP_COLORS.items() if any(op in set(d.op) for d in by_phase.values())]
    if others:
        handles.append(Line2D([], [], ls="", marker="o", color="0.3", label=" / ".join(sorted(others))))
    handles.append(Line2D([], [], ls="", marker="|", color="0.5", label="arithmetic intensity (useful MAC/B)"))
    handles += [Line2D([], [], ls="", marker=PHASE_MARKERS.get(p, "o"), color="0.4", mfc="none", label=p)
                for p in by_phase if p]
    ax.legend(handles=handles, fontsize=8, loc="lower right", ncol=2)
    return save(fig, path)


ENERGY_PARTS = {"energy_mac_pj": ("MAC", "tab:blue"), "energy_sram_pj": ("SRAM", "tab:green"),
                "energy_dram_pj": ("DRAM", "tab:red"), "energy_static_pj": ("static", "0.45")}


def energy_by_op(layers: pd.DataFrame | Mapping[str, pd.DataFrame], path: str | Path) -> Path:
    """Dense (grey) vs sparse energy (µJ) per op type, the sparse bar stacked by component
    (MAC, SRAM, DRAM, static); one subplot per phase."""
    by_phase = {"": layers} if isinstance(layers, pd.DataFrame) else dict(layers)
    fig, axes = plt.subplots(1, len(by_phase), figsize=(7.5 * len(by_phase), 4.6), squeeze=False,
                             constrained_layout=True)
    for ax, (phase, df) in zip(axes[0], by_phase.items()):
        ops = ops_in(df)
        parts = [c for c in ENERGY_PARTS if c in df]
        sums = df.groupby("op")[["dense_energy_pj", "energy_pj", *parts]].sum().reindex(ops) * 1e-6
        x = np.arange(len(ops))
        ax.bar(x - 0.2, sums.dense_energy_pj, 0.4, color="0.8", label="dense (total)")
        bottom = np.zeros(len(ops))
        for col in parts or ["energy_pj"]:
            label, color = ENERGY_PARTS.get(col, ("sparse", phase_color(phase or "decode", 0)))
            ax.bar(x + 0.2, sums[col], 0.4, bottom=bottom, color=color, label=f"sparse: {label}")
            bottom += sums[col].to_numpy()
        ratio = sums.dense_energy_pj / sums.energy_pj.clip(lower=1e-12)
        for xi, top, r in zip(x, bottom, ratio):
            ax.annotate(f"{r:.2f}×", (xi + 0.2, top), xytext=(0, 2), textcoords="offset points", ha="center",
                        fontsize=6)
        many = len(ops) > 8
        ax.set_xticks(x, [op.replace("_proj", "") for op in ops], rotation=45 if many else 0,
                      ha="right" if many else "center", fontsize=7 if many else 9)
        ax.set_xlabel("op type (sum over blocks; label: dense / sparse energy)")
        ax.set_ylabel("energy (µJ)")
        ax.yaxis.set_major_formatter(matplotlib.ticker.StrMethodFormatter("{x:,.0f}"))
        total = df.dense_energy_pj.sum() / max(df.energy_pj.sum(), 1e-12)
        ax.set_title(f"Energy per op type{f' ({phase})' if phase else ''}: {total:.2f}× less overall")
        ax.set_ylim(0, max(sums.dense_energy_pj.max(), bottom.max()) * 1.15)
        ax.legend(fontsize=7, loc="upper left")
    return save(fig, path)
