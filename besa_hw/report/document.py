"""The run report: ``RUN_DIR/report/`` with report.md, a self-contained report.html, PNG figures, CSVs.

Every number comes from the run folder (manifest.json, sim/*.csv, sim/hardware.json, the masks);
nothing is typed in by hand. The document is built once as a list of blocks and rendered twice,
to Markdown and to HTML.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from besa_hw.report import explore as figures_explore, figures
from besa_hw.provenance import environment
from besa_hw.report.render import MISSING, kv_table, markdown_table, to_html, to_markdown

log = logging.getLogger(__name__)

__all__ = ["RunData", "load_run", "build_report", "markdown_table", "speed_table"]

PHASES = ("decode", "prefill")
SUMMARY_COLUMNS = ["op", "count", "sparsity", "dense_cycles", "sparse_cycles", "speedup", "compute_cycles",
                   "stall_cycles", "memory_cycles", "dram_mb", "dense_energy_uj", "energy_uj", "energy_saving"]


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

    @property
    def shown_dir(self) -> Path:
        """The run folder as the user named it (the run may be built in a staging copy)."""
        return Path(self.label) if self.label else self.run_dir


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


# --- tables --------------------------------------------------------------------------------------

def summary_table(summary: pd.DataFrame) -> pd.DataFrame:
    """The per-op-type summary with DRAM in MB and energy in µJ (derived from summary.csv)."""
    df = summary.assign(dram_mb=summary.dram_bytes / 1e6, energy_uj=summary.energy_pj / 1e6,
                        dense_energy_uj=summary.dense_energy_pj / 1e6)
    return df[[c for c in SUMMARY_COLUMNS if c in df]]


# --- document -------------------------------------------------------------------------------------
# A document is a list of blocks: ("h", level, text), ("p", text), ("table", df), ("img", file, caption).

def _bits(m: dict) -> object:
    """Weight quantization when the run records it (``--wbits``), e.g. "W4, groups of 64 (lwc)", else None."""
    hp = m.get("hyperparameters") or {}
    if hp.get("wbits") is None:
        return None
    group = hp.get("group_size")
    groups = "per output channel" if group in (None, -1) else f"groups of {group}"
    return f"W{hp['wbits']}, {groups}" + (f" ({hp['quantizer']})" if hp.get("quantizer") else "")


def _footprint(run: RunData) -> str | None:
    """Bytes of the pruned Linears' weights (values, indices, scales) against dense fp16, from decode,
    which reads each weight once."""
    layers = run.layers.get("decode")
    if layers is None or "weight_dram_bytes" not in layers or "kind" not in layers:
        return None
    lin = layers[layers.kind.eq("linear")]
    fp16 = float((lin.out_features * lin.in_features).sum()) * 2
    return (f"{fp16 / 1e6:,.4g} MB dense fp16 -> {lin.weight_dram_bytes.sum() / 1e6:,.4g} MB stored at the "
            f"simulated widths ({fp16 / max(lin.weight_dram_bytes.sum(), 1):.2f}x smaller; the seven projections)")


def _perplexity_line(ppl: dict | None) -> str:
    if not ppl or ppl.get("pruned") is None:
        dense = f" (dense model {ppl['dense']:.2f})" if ppl and ppl.get("dense") is not None else ""
        return f"not evaluated{dense}"
    windows = f", {ppl['windows']} x {ppl['seqlen']} tokens" if ppl.get("windows") and ppl.get("seqlen") else ""
    split = f", {ppl['split']}" if ppl.get("split") else ""
    dense = f"dense {ppl['dense']:.2f} -> " if ppl.get("dense") is not None else ""
    change = f" ({ppl['pruned'] / ppl['dense'] - 1:+.1%})" if ppl.get("dense") else ""
    return f"{dense}pruned {ppl['pruned']:.2f}{change} on {ppl.get('data') or '?'}{windows}{split}"


def _linear(layers: pd.DataFrame) -> pd.DataFrame:
    """The seven prunable projections of every block (all rows for tables written before kinds)."""
    return layers[layers.kind.eq("linear")] if "kind" in layers else layers


def _scope(layers: pd.DataFrame, phase: str) -> str:
    """What a phase's simulation covers, in words."""
    if "kind" not in layers or not layers.kind.ne("linear").any():
        return "Linear layers only"
    attn = layers[layers.op.eq("attn_scores")]
    if phase == "decode" and not attn.empty:
        return f"whole decoder step, context {int(attn.out_features.iloc[0])}"
    return "whole decoder step"


def speed_table(run: RunData) -> pd.DataFrame:
    """Per phase: Linear-only and end-to-end speedup, latency and tokens/s, dense and sparse.

    tokens/s = tokens / (the step's cycles / freq); "end-to-end" is every simulated op of the step.
    """
    freq_hz = float(run.hardware["freq_mhz"]) * 1e6
    rows = []
    for phase, layers in run.layers.items():
        tokens = int(_linear(layers).tokens.iloc[0])
        lin = _linear(layers)
        dense, sparse = layers.dense_cycles.sum(), layers.sparse_cycles.sum()
        rows.append({"phase": phase, "tokens": tokens, "simulated": _scope(layers, phase),
                     "speedup, Linear-only": lin.dense_cycles.sum() / max(lin.sparse_cycles.sum(), 1),
                     "speedup, end-to-end": dense / max(sparse, 1),
                     **({"end-to-end vs dense fp16 (assumes the bits)": layers.dense_fp16_cycles.sum() / max(sparse, 1)}
                        if "dense_fp16_cycles" in layers else {}),
                     "dense latency (ms)": dense / freq_hz * 1e3, "sparse latency (ms)": sparse / freq_hz * 1e3,
                     "dense tokens/s": tokens * freq_hz / dense, "sparse tokens/s": tokens * freq_hz / sparse,
                     **({"energy per token (uJ)": layers.energy_pj.sum() / 1e6 / tokens,
                         "average power (mW)": layers.energy_pj.sum() * 1e-9 / (sparse / freq_hz)}
                        if "energy_pj" in layers and sparse > 0 else {}),
                     "memory-bound ops": f"{int(layers.bound.eq('memory').sum())} of {len(layers)}"})
    return pd.DataFrame(rows)


def _datapath(m: dict, hw: dict) -> str | None:
    """The simulated datapath's widths, and whether the weight width was evaluated: a run that did not
    quantize was evaluated with fp32 weights, so a narrower datapath is an assumption."""
    wb, ab = hw.get("weight_bits"), hw.get("act_bits")
    if wb is None:
        return None
    text = f"{wb}-bit weights, {ab}-bit activations (simulated)"
    if _bits(m) is None and wb < 16:
        text += f"; assumed: the perplexity is of fp32 weights, no {wb}-bit quantization was evaluated"
    return text


def _area_line(hw: dict) -> str | None:
    """The simulated chip's area and its breakdown (simulator/area.py), or None for a hardware record this
    version cannot read."""
    import dataclasses

    from simulator import HardwareConfig
    from simulator.area import area

    names = {f.name for f in dataclasses.fields(HardwareConfig)}
    try:
        a = area(HardwareConfig(**{k: v for k, v in hw.items() if k in names}))
    except (TypeError, ValueError):
        return None
    if a.given_mm2:
        return f"{a.total_mm2:.4g} mm2 (the preset's published chip area)"
    return (f"{a.total_mm2:.4g} mm2 at 45 nm: PEs {a.pe_mm2:.3g}, vector unit {a.vector_mm2:.3g}, sparse-engine "
            f"extras {a.sparse_extra_mm2:.3g}, SRAM {a.sram_mm2:.3g} (cell areas; see docs/exploration.md)")


def headline_block(speed: pd.DataFrame) -> pd.DataFrame:
    """The speed table turned on its side (one column per phase) so that it fits a 1366 px window."""
    def cell(name: str, value) -> str:
        if not isinstance(value, (int, float, np.number)) or isinstance(value, bool):
            return str(value)
        if "speedup" in name or "vs dense" in name:
            return f"{value:.3f}x"
        if "latency" in name or "(uJ)" in name or "(mW)" in name:  # 4 significant digits, never e-notation
            return f"{value:,.{max(0, 3 - int(np.floor(np.log10(abs(value)))))}f}" if value else "0"
        return f"{value:,.1f}" if "tokens/s" in name else f"{value:,}"

    table = speed.set_index("phase")
    rows = [{"per phase": col, **{ph: cell(col, table.at[ph, col]) for ph in table.index}} for col in table.columns]
    return pd.DataFrame(rows)


def _title(run: RunData) -> list[tuple]:
    m = run.manifest
    return [("h", 1, f"besa-hw report: {(m.get('model') or {}).get('id', run.shown_dir.name)}"),
            ("p", f"Run folder `{run.shown_dir}`" + (f" (created {m['created']})" if m.get("created") else "")
                  + f"; report generated {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC.")]


def _headline(run: RunData, compare: pd.DataFrame | None) -> list[tuple]:
    """What a reader wants first: model, method, sparsity, perplexity, speedup and tokens/s."""
    m, hw = run.manifest, run.hardware
    model = m.get("model") or {}
    arch = ", ".join(str(v) for v in (model.get("architecture"), model.get("num_hidden_layers") and
                                      f"{model['num_hidden_layers']} blocks") if v)
    achieved = m.get("achieved_sparsity")
    facts = {"model": f"{model.get('id', run.shown_dir.name)}" + (f" ({arch})" if arch else ""),
             "method": m.get("method", "unknown"),
             "sparsity": f"target {m.get('target_sparsity', '?')}, achieved "
                         + (f"{achieved:.4f}" if isinstance(achieved, (int, float)) else MISSING),
             "bits": _bits(m), "perplexity": _perplexity_line(m.get("perplexity")),
             "hardware": f"{hw.get('name', '?')}: {hw.get('pe_rows')}x{hw.get('pe_cols')} PEs at "
                         f"{hw.get('freq_mhz')} MHz, DRAM {hw.get('dram_gbps')} GB/s"}
    facts["datapath"] = _datapath(m, hw)
    facts["area"] = _area_line(hw)
    facts["weights"] = _footprint(run)
    for key in ("bits", "weights", "datapath", "area"):
        if facts[key] is None:
            del facts[key]
    doc: list[tuple] = [("h", 2, "Summary"), ("table", kv_table(facts, "run")),
                        ("table", headline_block(speed_table(run))),
                        ("p", "Linear-only: the seven pruned projections (q, k, v, o, gate, up, down) of every "
                              "block, what pruning changes. End-to-end: every simulated op of the decoder step "
                              "(with the whole step: the projections, attention over the KV cache, RMSNorm, "
                              "RoPE, softmax, SiLU x up, residual adds, the embedding gather and the LM head), "
                              "so latency and tokens/s are those of the whole step. Speedup is against a dense "
                              "run on the same hardware.")]
    if m.get("tasks"):
        doc += _zero_shot(m["tasks"])
    if compare is not None and not compare.empty:
        doc += [("h", 3, "Compared runs"), ("table", compare)]
    return doc


def _zero_shot(tasks: dict) -> list[tuple]:
    """The run's zero-shot accuracy (``besa-hw eval --tasks``), as recorded in the manifest."""
    from besa_hw.tasks import tasks_mean, tasks_table

    versions = sorted({str(t.get("lm_eval")) for t in tasks.values() if t.get("lm_eval")})
    shots = sorted({t.get("num_fewshot") for t in tasks.values() if t.get("num_fewshot") is not None})
    limits = sorted({t["limit"] for t in tasks.values() if t.get("limit")})
    dense = any(t.get("dense") for t in tasks.values())
    note = (f"Zero-shot accuracy measured with lm-eval {', '.join(versions) or '?'} on the pruned model"
            + (" and on the dense base model (dense columns)" if dense else "")
            + f", {'/'.join(map(str, shots)) or '?'}-shot. acc: the choice with the highest log-likelihood is "
              "right; acc_norm: the same with log-likelihoods divided by the choice's length in characters; stderr: "
              "standard error over the n documents"
            + (f" (at most {'/'.join(map(str, limits))} per task, --limit)" if limits else "") + ".")
    mean = tasks_mean(tasks)
    return [("h", 3, "Zero-shot tasks"), ("table", tasks_table(tasks))] + ([("p", mean[0].upper() + mean[1:] + ".")] if mean
                                                                           else []) + [("p", note)]


def _configuration(run: RunData) -> list[tuple]:
    m = run.manifest
    doc: list[tuple] = [("h", 2, "Configuration"), ("h", 3, "Model"), ("table", kv_table(m.get("model") or {}))]
    sparsity = {k: m[k] for k in ("target_sparsity", "achieved_sparsity", "seed", "wall_seconds") if k in m}
    doc += [("h", 3, f"Method: {m.get('method', 'unknown')}"),
            ("table", kv_table({**(m.get("hyperparameters") or {}), **sparsity}, "hyper-parameter"))]
    if m.get("calibration"):
        doc += [("h", 3, "Calibration"), ("table", kv_table(m["calibration"]))]
    if m.get("perplexity"):
        doc += [("h", 3, "Perplexity evaluation"), ("table", kv_table(m["perplexity"]))]
    return doc + [("h", 3, "Hardware"), ("table", kv_table(hardware_shown(run.hardware)))]


def hardware_shown(hw: dict) -> dict:
    """The hardware as simulated: a 0 that means "derived" shows the derived value, and a key the
    chosen configuration does not use says so."""
    from simulator import HardwareConfig
    from simulator.energy import mac_pj, sram_pj_per_byte, static_mw

    try:
        cfg = HardwareConfig(**hw)
    except (TypeError, ValueError):  # a hardware.json of an older version: show it as written
        return dict(hw)
    shown = dict(hw)
    if not cfg.mac_pj:
        shown["mac_pj"] = f"{mac_pj(cfg):.3g} (derived from the operand widths)"
    if not cfg.sram_pj_per_byte:
        shown["sram_pj_per_byte"] = (f"{sram_pj_per_byte(cfg, cfg.weight_sram_kib):.3g} for the weight buffer "
                                     "(derived per buffer from its size)")
    if not cfg.static_mw:
        shown["static_mw"] = f"{static_mw(cfg):.3g} (derived: MAC and buffer leakage)"
    if not cfg.area_mm2:
        from simulator.area import area

        shown["area_mm2"] = f"{area(cfg).total_mm2:.3g} (modelled: simulator/area.py)"
    if not cfg.kv_bits:
        shown["kv_bits"] = f"{cfg.act_bits} (act_bits)"
    if not cfg.sparse_lanes:
        shown["sparse_lanes"] = f"{cfg.lanes} (one per PE row)"
    if cfg.sparse_format != "csr":
        shown["index_bits"] = f"{cfg.index_bits} (unused: {cfg.sparse_format} format)"
    if cfg.split_policy != "fixed":
        shown["dense_pe_fraction"] = f"{cfg.dense_pe_fraction} (unused: {cfg.split_policy} split)"
    if cfg.column_split != "threshold":
        shown["dense_column_threshold"] = f"{cfg.dense_column_threshold} (unused: {cfg.column_split} split)"
    return shown


def _reproducibility(run: RunData) -> list[tuple]:
    """The commands, versions and git commits of the run and of this report."""
    m, now = run.manifest, environment()
    recorded = m.get("versions") or {}
    names = list(dict.fromkeys([*now["versions"], *recorded]))
    versions = pd.DataFrame({"package": names, "this report": [now["versions"].get(n) for n in names],
                             "the run (manifest)": [recorded.get(n) for n in names]})
    run_cmd = f"`{m['command']}`" if m.get("command") else "not recorded in the manifest"
    run_git = m.get("git_commit") or "not recorded in the manifest"
    return [("h", 2, "Reproducibility"),
            ("p", f"Report command: `{now['command']}`; git commit {now['git_commit']}."),
            ("p", f"Run command: {run_cmd}; git commit {run_git}."),
            ("table", versions),
            ("p", "The run's manifest is copied next to this report: [manifest.json](manifest.json).")]


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
    first = _linear(first)
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
    show(figures.energy_by_op(run.layers, out / "energy_by_op.png"), "Energy per op type, dense vs sparse; the sparse bar split into MAC, SRAM, DRAM and static energy.")
    if compare is not None and not compare.empty:
        show(figures_explore.tradeoff(compare, out / "tradeoff.png"), "Perplexity vs simulated speedup.")
    return doc


def _tables(run: RunData, out: Path) -> list[tuple]:
    """Copy the simulation tables next to the report and show the per-op-type summaries."""
    doc: list[tuple] = [("h", 2, "Per op type")]
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


def build_report(run_dir: str | Path, out_dir: str | Path | None = None,
                 compare: pd.DataFrame | None = None, label: str | None = None) -> Path:
    """Write report.md, report.html, figures and CSVs for a simulated run; return the report folder.

    ``label``: the run folder's name as shown to the user (default ``run_dir``).
    """
    run = load_run(run_dir)
    run.label = label
    out = Path(out_dir) if out_dir is not None else run.run_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(run.run_dir / "manifest.json", out / "manifest.json")
    doc = (_title(run) + _headline(run, compare) + _tables(run, out) + _figures(run, out, compare)
           + _configuration(run) + _reproducibility(run))
    (out / "report.md").write_text(to_markdown(doc))
    title = doc[0][2]
    (out / "report.html").write_text(to_html(doc, out, title))
    log.info("wrote report to %s", out)
    return out
