"""Pruning quality/speed benchmark with the fixed protocol of issue 3.

SmolLM2-135M-Instruct (bundled Q4_1 GGUF, fp32); calibration = 32 x 512 tokens from
``wikitext-2/wiki.valid.tokens`` (random.seed(0), start = randint(0, n - 513)); evaluation = the
first 40 non-overlapping 512-token windows of ``wikitext-2-raw/wiki.test.raw``; ppl = exp(mean NLL);
50 % unstructured on q/k/v/o/gate/up/down of all 30 blocks.

Each method runs in its own subprocess (fresh model, honest peak RSS). Prints one Markdown table row
per method: method | ppl | achieved sparsity | prune seconds | peak RSS | threads.

    python bench/prune_quality.py --methods dense,magnitude,wanda,sparsegpt,besa-row
    python bench/prune_quality.py --methods besa-row --set besa_epochs=2 --data-dir /path/to/data
    python bench/prune_quality.py --methods besa-rtn,sparsegpt-obs,besa-lwc --set wbits=3   # issue 10
    python bench/prune_quality.py --methods besa-rtn,besa-lwc --blocks 4   # timing only, first 4 blocks
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from dataclasses import fields
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

W4G64 = {"wbits": 4, "group_size": 64}
SPECS = {
    "dense": None,
    "magnitude": {"method": "magnitude"},
    "wanda": {"method": "wanda"},
    "sparsegpt": {"method": "sparsegpt"},
    # BESA rows use 24 of the 32 calibration segments per block for the allocation learning
    # (all 32 for statistics and targets) to stay inside the time budget on 2 CPU threads.
    "besa-row": {"method": "besa", "besa_allocation": "row", "besa_samples": 24},
    "besa-layer": {"method": "besa", "besa_allocation": "layer", "besa_samples": 24},  # d not carried
    "besa-row-recon": {"method": "besa", "besa_samples": 24, "besa_reconstruct": True,
                       "besa_reconstruct_mode": "mask"},
    "besa-row-recon-counts": {"method": "besa", "besa_samples": 24, "besa_reconstruct": True,
                              "besa_reconstruct_mode": "counts"},
    "besa-row-sgptscore": {"method": "besa", "besa_samples": 24, "besa_importance": "sparsegpt"},
    "besa-row-magscore": {"method": "besa", "besa_samples": 24, "besa_importance": "magnitude"},
    "besa-row-blocktarget": {"method": "besa", "besa_samples": 24, "besa_target": "block"},
    # Closest to the authors' code: block target, sigmoid smoothing, all samples, fresh Prodigy per block.
    "besa-row-paper": {"method": "besa", "besa_target": "block", "besa_smoothing": "sigmoid",
                       "besa_carry_d": False},
    # Issue 10: weight quantization, 4 bits, groups of 64 (rounded zero point). `--set wbits=3` for W3.
    # Groups of 32 with an unrounded minimum would reproduce the Q4_1 source weights exactly.
    "dense-rtn": {"method": "magnitude", "sparsity": 0.0, **W4G64, "quantizer": "rtn"},
    "dense-lwc": {"method": "wanda", "sparsity": 0.0, **W4G64, "quantizer": "lwc"},
    "besa-rtn": {"method": "besa", "besa_samples": 24, **W4G64, "quantizer": "rtn"},
    "sparsegpt-obs": {"method": "sparsegpt", **W4G64, "quantizer": "obs"},
    "besa-lwc": {"method": "besa", "besa_samples": 24, **W4G64, "quantizer": "lwc"},
    # BESA's mask (learned without quantization), then GPTQ-style quantization of the kept weights
    # (OBS error feedback among them); and the same quantizer on the dense model
    "besa-obs": {"method": "besa", "besa_samples": 24, **W4G64, "quantizer": "obs"},
    "dense-obs": {"method": "wanda", "sparsity": 0.0, **W4G64, "quantizer": "obs"},
    # where the clipping learns: after BESA's mask is final, or joint and then again on the final mask
    "besa-then-lwc": {"method": "besa", "besa_samples": 24, **W4G64, "quantizer": "lwc", "lwc_stage": "after"},
    "besa-lwc-refine": {"method": "besa", "besa_samples": 24, **W4G64, "quantizer": "lwc", "lwc_stage": "refine"},
    "besa-lwc-recon": {"method": "besa", "besa_samples": 24, **W4G64, "quantizer": "lwc",
                       "besa_reconstruct": True, "besa_reconstruct_mode": "mask"},
    # Issue 17 D: BESA with no row past 90% (at 70% with the authors' grid some rows lose every weight)
    "besa-row-cap90": {"method": "besa", "besa_samples": 24, "besa_max_sparsity": 0.9},
    "besa-row-recon-cap90": {"method": "besa", "besa_samples": 24, "besa_max_sparsity": 0.9,
                             "besa_reconstruct": True, "besa_reconstruct_mode": "mask"},
    # Issue 17 D: OWL's per-block allocation (M = 5; lambda from --set owl_lambda=..., chosen with --tune)
    "owl-wanda": {"method": "wanda", "owl_m": 5.0},
    "owl-sparsegpt": {"method": "sparsegpt", "owl_m": 5.0},
}
HEADER = ("| method | ppl | achieved sparsity | prune s | prune CPU s | peak RSS GB | threads | load |\n"
          "|---|---|---|---|---|---|---|---|")


def parse_sets(items: list[str]) -> dict:
    """``key=value`` overrides checked against PruneConfig fields (values parsed as JSON when possible)."""
    from pruning.config import PruneConfig

    names = {f.name for f in fields(PruneConfig)}
    out = {}
    for item in items:
        key, _, raw = item.partition("=")
        if key not in names:
            raise SystemExit(f"unknown PruneConfig field {key!r}")
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


def _cpu_seconds() -> float:
    """User + system CPU time of this process (a load-robust companion to wall time)."""
    use = resource.getrusage(resource.RUSAGE_SELF)
    return use.ru_utime + use.ru_stime


def allocation_summary(layers: dict) -> dict:
    """Where the sparsity went: mean per op, per block third, and the span of per-row sparsities."""
    ops, thirds, lo, hi = {}, {0: [], 1: [], 2: []}, 1.0, 0.0
    n_blocks = 1 + max(v["block"] for v in layers.values())
    for rec in layers.values():
        ops.setdefault(rec["op"], []).append(rec["achieved_sparsity"])
        thirds[min(2, 3 * rec["block"] // n_blocks)].append(rec["achieved_sparsity"])
        lo, hi = min(lo, rec["row_sparsity"]["min"]), max(hi, rec["row_sparsity"]["max"])
    def mean(xs: list[float]) -> float:
        return round(sum(xs) / len(xs), 4)

    return {"per_op": {k: mean(v) for k, v in ops.items()},
            "per_third": {k: mean(v) for k, v in thirds.items() if v}, "row_min": round(lo, 4), "row_max": round(hi, 4)}


def _load() -> str:
    return " / ".join(f"{v:.1f}" for v in os.getloadavg())


def prune_in_process(name: str, args: argparse.Namespace):
    """Load the default model and prune it with method ``name`` under this bench's protocol;
    returns (model, tokenizer, row of prune measurements)."""
    import torch

    torch.set_num_threads(args.threads)
    from besa_hw.models import load_model
    from pruning import CalibConfig, PruneConfig, prune_model
    from pruning.calibration import get_calibration

    data = Path(args.data_dir)
    model, tok, _ = load_model()
    if getattr(args, "blocks", 0):  # timing only: prune the first N blocks, no perplexity
        model.model.layers = model.model.layers[:args.blocks]
        model.config.num_hidden_layers = args.blocks
    row = {"method": name, "threads": torch.get_num_threads(), "sparsity": 0.0, "prune_s": 0.0, "prune_cpu_s": 0.0}
    if SPECS[name] is None:
        return model, tok, row
    cfg = PruneConfig(**{"sparsity": args.sparsity, "seed": 0, **SPECS[name], **parse_sets(args.set)})
    # the CLI's calibration: `--calib wiki.valid.tokens --nsamples 32 --seqlen 512` (all of the file);
    # --tune: its first 75% only, the rest held out to choose hyperparameters on
    calib = get_calibration(tok, CalibConfig(str(data / "wikitext-2/wiki.valid.tokens"), 32, 512, 0,
                                             part="first" if getattr(args, "tune", False) else "all"))
    t0, c0 = time.perf_counter(), _cpu_seconds()
    result = prune_model(model, calib, cfg, progress=getattr(args, "progress", False))
    row["prune_s"] = time.perf_counter() - t0
    row["prune_cpu_s"] = _cpu_seconds() - c0
    row["load"] = _load()  # 1/5/15-min load averages right after pruning
    row["sparsity"] = result.achieved_sparsity
    row["allocation"] = allocation_summary(result.layers)
    print("ALLOC " + json.dumps({"method": name, **row["allocation"]}), file=sys.stderr, flush=True)
    # The evaluation needs the pruned model only: drop the result's in-memory masks and codes (a run
    # folder would have them on disk) and hand the allocator's freed pages back before it.
    del result, calib
    import gc

    from pruning.streaming import return_freed_memory
    gc.collect()
    return_freed_memory()
    return model, tok, row


def run_one(name: str, args: argparse.Namespace) -> dict:
    """Load, (prune), evaluate one method in this process; returns the table row as a dict."""
    from pruning.calibration import text_of, tokenize
    from pruning.eval import perplexity

    data = Path(args.data_dir)
    model, tok, row = prune_in_process(name, args)
    # the CLI's evaluation: `--data wiki.test.raw --seqlen 512 --max-windows 40` (from the start of the file)
    test = None if args.blocks else (
        text_of(str(data / "wikitext-2/wiki.valid.tokens"), "evaluation", "held-out") if args.tune
        else text_of(str(data / "wikitext-2-raw/wiki.test.raw"), "evaluation", "all"))
    row["ppl"] = float("nan") if args.blocks else perplexity(model, tokenize(tok, test), seqlen=512,
                                                              max_windows=args.windows)
    row.setdefault("load", _load())
    row["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return row


def fmt(row: dict) -> str:
    return (f"| {row['method']} | {row['ppl']:.2f} | {100 * row['sparsity']:.2f}% | {row['prune_s']:.1f} | "
            f"{row['prune_cpu_s']:.1f} | {row['peak_rss_gb']:.2f} | {row['threads']} | {row['load']} |")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--methods", default="dense,magnitude,wanda,sparsegpt,besa-row",
                   help=f"comma list from: {', '.join(SPECS)}")
    p.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="PruneConfig override")
    p.add_argument("--progress", action="store_true")
    p.add_argument("--blocks", type=int, default=0, help="timing only: prune the first N blocks, skip perplexity")
    p.add_argument("--windows", type=int, default=40, help="evaluation windows of 512 tokens (default 40)")
    p.add_argument("--sparsity", type=float, default=0.5, help="target sparsity (default 0.5)")
    p.add_argument("--tune", action="store_true",
                   help="for choosing hyperparameters: calibrate on the first 75%% of wiki.valid.tokens and "
                        "evaluate on its held-out last 25%% (never on the test windows)")
    p.add_argument("--one", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        print("ROW " + json.dumps(run_one(args.one, args)), flush=True)
        return 0
    names = [m.strip() for m in args.methods.split(",") if m.strip()]
    bad = [n for n in names if n not in SPECS]
    if bad:
        raise SystemExit(f"unknown method(s) {bad}; choose from {list(SPECS)}")
    where = ("tuning: calibration on the first 75% of wiki.valid.tokens, ppl on its held-out last 25%" if args.tune
             else "ppl on wiki.test.raw")
    print(f"# load: {os.getloadavg()[0]:.2f}  sparsity: {args.sparsity}  overrides: {args.set or 'none'}  {where}\n"
          f"{HEADER}", flush=True)
    for name in names:
        cmd = [sys.executable, __file__, "--one", name, "--data-dir", args.data_dir, "--threads", str(args.threads),
               "--windows", str(args.windows), "--sparsity", str(args.sparsity)] + (["--tune"] if args.tune else [])
        cmd += [a for s in args.set for a in ("--set", s)] + (["--progress"] if args.progress else [])
        cmd += ["--blocks", str(args.blocks)] if args.blocks else []
        out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout
        row = json.loads(next(line[4:] for line in out.splitlines() if line.startswith("ROW ")))
        print(fmt(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
