"""The run report: ``RUN_DIR/report/`` with report.md, a self-contained report.html, PNG figures, CSVs.

Every number comes from the run folder (manifest.json, sim/*.csv, sim/hardware.json, the masks);
nothing is typed in by hand. The document is built once as a list of blocks and rendered twice,
to Markdown and to HTML.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from besa_hw import figures, figures_explore

log = logging.getLogger(__name__)

__all__ = ["RunData", "load_run", "build_report", "markdown_table"]

PHASES = ("decode", "prefill")
SUMMARY_COLUMNS = ["op", "count", "sparsity", "dense_cycles", "sparse_cycles", "speedup", "compute_cycles",
                   "stall_cycles", "memory_cycles", "dram_mb", "dense_energy_uj", "energy_uj", "energy_saving"]
CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.2em;font-size:.9em}th,td{border:1px solid #ccc;padding:.25em .6em}
th{background:#f2f2f2}td{text-align:right}td:first-child{text-align:left}img{max-width:100%}
figure{margin:1em 0}figcaption{color:#555;font-size:.9em}code{background:#f4f4f4;padding:0 .2em}"""


@dataclass
class RunData:
    """What a report is built from: the run's manifest, hardware and per-phase simulation tables."""

    run_dir: Path
    manifest: dict
    hardware: dict
    layers: dict[str, pd.DataFrame]
    summary: dict[str, pd.DataFrame]
    blocks: dict[str, pd.DataFrame]
    notes: list[str] = field(default_factory=list)
    label: str | None = None  # the folder as the user named it (the run may be built in a staging copy)

    @property
    def masks_path(self) -> Path:
        return self.run_dir / "masks.safetensors"


def _hardware(sim: Path, phases: list[str]) -> dict:
    """sim/hardware.json, or the one ``besa-hw simulate --out sim/<phase>`` wrote."""
    for path in [sim / "hardware.json"] + [sim / p / "hardware.json" for p in phases]:
        if path.is_file():
            return json.loads(path.read_text())
    raise FileNotFoundError(f"{sim}: hardware.json is missing (simulate the run first)")


def load_run(run_dir: str | Path) -> RunData:
    """Read a run folder; raise FileNotFoundError/ValueError with a clear message if it is incomplete."""
    from simulator import summarize
    from simulator.workload import read_manifest

    run_dir = Path(run_dir)
    manifest = read_manifest(run_dir)
    if not (run_dir / "masks.safetensors").is_file():
        raise FileNotFoundError(f"{run_dir}: masks.safetensors is missing (not a finished pruning run)")
    sim = run_dir / "sim"
    phases = [p for p in PHASES if (sim / p / "layers.csv").is_file() and (sim / p / "summary.csv").is_file()]
    if not phases:
        raise FileNotFoundError(f"{run_dir}: no simulation results (expected sim/decode/layers.csv and "
                                f"summary.csv); run `besa-hw simulate --run {run_dir} --out {sim}/decode`")
    layers = {p: pd.read_csv(sim / p / "layers.csv") for p in phases}
    if any(df.empty for df in layers.values()):
        raise ValueError(f"{run_dir}: a sim/<phase>/layers.csv has no rows")
    blocks = {p: pd.read_csv(sim / p / "blocks.csv") if (sim / p / "blocks.csv").is_file()
              else summarize(layers[p], by="block") for p in phases}
    notes = [f"{p}: not simulated (no sim/{p}/layers.csv), skipped." for p in PHASES if p not in phases]
    return RunData(run_dir, manifest, _hardware(sim, phases), layers,
                   {p: pd.read_csv(sim / p / "summary.csv") for p in phases}, blocks, notes)


def row_sparsity(masks_path: Path, names: list[str]) -> dict[str, np.ndarray]:
    """Per-row sparsity (fraction of pruned weights in each output row) of the named masks."""
    from safetensors import safe_open

    with safe_open(str(masks_path), framework="np") as fh:
        return {n: 1.0 - fh.get_tensor(n).mean(axis=1, dtype=np.float64) for n in names}  # (out,)


# --- formatting -----------------------------------------------------------------------------------

def _fmt(v: object) -> str:
    if isinstance(v, (bool, np.bool_)) or v is None:
        return str(v)
    if isinstance(v, (int, np.integer)):
        return f"{v:,}"
    if isinstance(v, (float, np.floating)):
        if np.isnan(v):
            return "n/a"
        return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.3f}"
    return str(v)


def formatted(df: pd.DataFrame) -> pd.DataFrame:
    """All cells as display strings (ints with separators, floats to 3 decimals, big floats rounded)."""
    return pd.DataFrame({c: [_fmt(v) for v in df[c].tolist()] for c in df.columns}, index=df.index)


def markdown_table(df: pd.DataFrame) -> str:
    """A GitHub Markdown table (no ``tabulate`` dependency); numeric columns right-aligned."""
    cells = formatted(df)
    align = ["---:" if pd.api.types.is_numeric_dtype(df[c]) else ":---" for c in df.columns]
    lines = ["| " + " | ".join(str(c) for c in df.columns) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(str(v).replace("|", "\\|") for v in row) + " |" for row in cells.values]
    return "\n".join(lines)


def kv_table(d: dict, key: str = "field") -> pd.DataFrame:
    """A two-column table of a dict, values shown as written (nested ones as JSON)."""
    values = [json.dumps(v) if isinstance(v, (dict, list)) else str(v) for v in d.values()]
    return pd.DataFrame({key: [str(k) for k in d], "value": values})  # values as written in the JSON


def summary_table(summary: pd.DataFrame) -> pd.DataFrame:
    """The per-op-type summary with DRAM in MB and energy in µJ (derived from summary.csv)."""
    df = summary.assign(dram_mb=summary.dram_bytes / 1e6, energy_uj=summary.energy_pj / 1e6,
                        dense_energy_uj=summary.dense_energy_pj / 1e6)
    return df[[c for c in SUMMARY_COLUMNS if c in df]]


# --- document -------------------------------------------------------------------------------------
# A document is a list of blocks: ("h", level, text), ("p", text), ("table", df), ("img", file, caption).

def _header(run: RunData) -> list[tuple]:
    m = run.manifest
    model = m.get("model") or {}
    doc: list[tuple] = [("h", 1, f"besa-hw report: {model.get('id', Path(run.label or run.run_dir).name)}"),
                        ("p", f"Run folder `{run.label or run.run_dir}`"
                              + (f" (created {m['created']})" if m.get("created") else "")
                              + f"; report generated {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC.")]
    totals = ", ".join(f"{p} {s.speedup.iloc[-1]:.3f}×" for p, s in run.summary.items())
    doc += [("p", f"End-to-end simulated speedup vs dense on {run.hardware.get('name', 'the accelerator')}: "
                  f"{totals}.")]
    doc += [("h", 2, "Model"), ("table", kv_table(model))]
    sparsity = {k: m[k] for k in ("target_sparsity", "achieved_sparsity", "seed", "wall_seconds") if k in m}
    doc += [("h", 2, f"Method: {m.get('method', 'unknown')}"),
            ("table", kv_table({**(m.get("hyperparameters") or {}), **sparsity}, "hyper-parameter"))]
    if m.get("calibration"):
        doc += [("h", 3, "Calibration"), ("table", kv_table(m["calibration"]))]
    doc += [("h", 2, "Hardware"), ("table", kv_table(run.hardware))]
    doc += [("h", 2, "Versions"), ("table", kv_table(m.get("versions") or {}, "package"))
            if m.get("versions") else ("p", "Versions: not recorded in the manifest.")]
    return doc


def _quality(run: RunData, compare: pd.DataFrame | None) -> list[tuple]:
    ppl = run.manifest.get("perplexity")
    doc: list[tuple] = [("h", 2, "Quality")]
    if not ppl or ppl.get("pruned") is None:
        dense = f" (dense model: {_fmt(ppl['dense'])})" if ppl and ppl.get("dense") is not None else ""
        doc.append(("p", f"Perplexity: not evaluated{dense}."))
    else:
        where = ", ".join(f"{k} {ppl[k]}" for k in ("data", "seqlen", "windows") if ppl.get(k) is not None)
        change = (ppl["pruned"] / ppl["dense"] - 1) if ppl.get("dense") else float("nan")
        doc.append(("p", f"Perplexity ({where}): dense {_fmt(ppl.get('dense'))} -> pruned "
                         f"{_fmt(ppl['pruned'])} ({change:+.1%})."))
    if compare is not None and not compare.empty:
        doc += [("h", 3, "Compared runs"), ("table", compare)]
    return doc


def _figures(run: RunData, out: Path, compare: pd.DataFrame | None) -> list[tuple]:
    """Draw every figure into ``out``; return the document blocks that show them."""
    first = next(iter(run.layers.values()))
    doc: list[tuple] = [("h", 2, "Figures")]

    def show(path: Path, caption: str) -> None:
        doc.append(("img", path.name, caption))

    show(figures.latency_per_layer(run.layers, out / "latency_per_layer.png"),
         "Per-layer latency of every Linear, dense vs sparse.")
    show(figures.speedup_by_op(run.layers, out / "speedup_by_op.png"),
         "Speedup per op type and per block; dashed: end to end.")
    show(figures.allocation_heatmap(first[["block", "op", "sparsity"]], out / "allocation_heatmap.png"),
         "Achieved sparsity allocation, blocks x op types.")
    blocks = sorted(first.block.unique())
    middle = first[first.block == blocks[len(blocks) // 2]]
    show(figures.row_sparsity_distribution(row_sparsity(run.masks_path, list(middle.name)),
                                           out / "row_sparsity.png"),
         f"Distribution of per-row sparsity within the Linear layers of block {blocks[len(blocks) // 2]}.")
    for phase, df in run.layers.items():
        show(figures.time_breakdown(df, out / f"time_breakdown_{phase}.png", phase),
             f"Where time goes ({phase}): compute vs stall cycles, DRAM transfer time.")
    show(figures.roofline(run.layers, run.hardware, out / "roofline.png"),
         "Each op on the roofline of the configured hardware.")
    show(figures.energy_by_op(run.layers, out / "energy_by_op.png"), "Energy per op type, dense vs sparse.")
    if compare is not None and not compare.empty:
        show(figures_explore.tradeoff(compare, out / "tradeoff.png"), "Perplexity vs simulated speedup.")
    return doc


def _tables(run: RunData, out: Path) -> list[tuple]:
    """Copy the simulation tables next to the report and show the per-op-type summaries."""
    doc: list[tuple] = [("h", 2, "Tables")]
    for phase in run.layers:
        for kind, df in (("layers", run.layers[phase]), ("summary", run.summary[phase]),
                         ("blocks", run.blocks[phase])):
            df.to_csv(out / f"{kind}_{phase}.csv", index=False)
        tokens = int(run.layers[phase].tokens.iloc[0])
        doc += [("h", 3, f"{phase} ({tokens} token{'s' * (tokens != 1)}): per op type"),
                ("table", summary_table(run.summary[phase])),
                ("p", f"Per-layer table: [layers_{phase}.csv](layers_{phase}.csv); per block: "
                      f"[blocks_{phase}.csv](blocks_{phase}.csv); summary: [summary_{phase}.csv](summary_{phase}.csv).")]
    doc += [("p", note) for note in run.notes]
    return doc


# --- rendering ------------------------------------------------------------------------------------

def to_markdown(doc: list[tuple]) -> str:
    parts = []
    for block in doc:
        kind = block[0]
        if kind == "h":
            parts.append("#" * block[1] + " " + block[2])
        elif kind == "p":
            parts.append(block[1])
        elif kind == "table":
            parts.append(markdown_table(block[1]))
        elif kind == "img":
            parts.append(f"![{block[2]}]({block[1]})\n\n*{block[2]}*")
    return "\n\n".join(parts) + "\n"


def _inline(text: str) -> str:
    """Markdown-lite to HTML: `code` and [text](link)."""
    text = html.escape(text)
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", text)
    return re.sub(r"\[([^\]]+)\]\(([^)]+)\)", r'<a href="\2">\1</a>', text)


def to_html(doc: list[tuple], out: Path, title: str) -> str:
    """A self-contained HTML page: figures embedded as base64 PNG data URIs."""
    body = []
    for block in doc:
        kind = block[0]
        if kind == "h":
            body.append(f"<h{block[1]}>{_inline(block[2])}</h{block[1]}>")
        elif kind == "p":
            body.append(f"<p>{_inline(block[1])}</p>")
        elif kind == "table":
            body.append(formatted(block[1]).to_html(index=False, border=0))
        elif kind == "img":
            data = base64.b64encode((out / block[1]).read_bytes()).decode("ascii")
            body.append(f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(block[2])}">'
                        f"<figcaption>{html.escape(block[2])}</figcaption></figure>")
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def build_report(run_dir: str | Path, out_dir: str | Path | None = None,
                 compare: pd.DataFrame | None = None, label: str | None = None) -> Path:
    """Write report.md, report.html, figures and CSVs for a simulated run; return the report folder.

    ``label``: the run folder's name as shown to the user (default ``run_dir``).
    """
    run = load_run(run_dir)
    run.label = label
    out = Path(out_dir) if out_dir is not None else run.run_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    doc = _header(run) + _quality(run, compare) + _tables(run, out) + _figures(run, out, compare)
    (out / "report.md").write_text(to_markdown(doc))
    title = doc[0][2]
    (out / "report.html").write_text(to_html(doc, out, title))
    log.info("wrote report to %s", out)
    return out
