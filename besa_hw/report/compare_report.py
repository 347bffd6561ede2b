"""The report of `besa-hw compare`: what was compared, on which hardware, by which command and commit,
the comparison table and its figures, as report.md and a self-contained report.html."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd

from besa_hw.provenance import environment
from besa_hw.report.render import kv_table, to_html, to_markdown

__all__ = ["write_compare_report"]

SHOWN = ["run", "method", "ppl", "achieved_sparsity", "speedup_linear_decode", "speedup_e2e_decode",
         "tokens_per_s_e2e_decode", "energy_per_token_uj_decode", "power_mw_decode", "speedup_linear_prefill",
         "speedup_e2e_prefill", "tokens_per_s_e2e_prefill"]
CAPTIONS = {"pareto.png": "Perplexity against simulated end-to-end tokens/s, a curve per method, the dense model a "
                          "star and the Pareto front dashed.",
            "tradeoff.png": "Perplexity against simulated speedup, Linear-only and end-to-end, per phase.",
            "allocations.png": "Where each run put its sparsity: per layer in model order, and the mean per op type."}


def write_compare_report(out: Path, table: pd.DataFrame, hw, phases: dict[str, int], figures: list[Path]) -> Path:
    """Write ``out``/report.md and report.html; returns the HTML path."""
    from simulator.area import area

    env = environment()
    facts = {"hardware": f"{hw.name}: {hw.pe_rows}x{hw.pe_cols} PEs at {hw.freq_mhz:g} MHz, DRAM {hw.dram_gbps:g} "
                         f"GB/s, {hw.weight_bits}-bit weights, {hw.sparse_format} format, {hw.row_schedule} rows, "
                         f"area {area(hw).total_mm2:.4g} mm2",
             "phases": ", ".join(f"{ph} ({n} tokens)" for ph, n in phases.items()),
             "command": f"`{env['command']}`", "commit": env["git_commit"],
             "versions": ", ".join(f"{k} {v}" for k, v in env["versions"].items())}
    doc: list[tuple] = [("h", 1, f"besa-hw compare: {len(table)} runs on {hw.name}"),
                        ("table", kv_table(facts, "compared")),
                        ("table", table[[c for c in SHOWN if c in table.columns]]),
                        ("p", "Full table: [compare.csv](compare.csv); per layer: [layers.csv](layers.csv), "
                              "[allocations.csv](allocations.csv). Hardware: every key in the table below.")]
    for fig in figures:
        doc.append(("img", fig.name, CAPTIONS.get(fig.name, fig.stem)))
    doc += [("h", 2, "Hardware"), ("table", kv_table(dataclasses.asdict(hw), "key"))]
    (out / "report.md").write_text(to_markdown(doc))
    (out / "report.html").write_text(to_html(doc, out, doc[0][2]))
    return out / "report.html"
