"""Where a streamed prune's GPU memory and time go, phase by phase (CUDA only).

Prunes the first blocks of a checkpoint (e.g. `besa-hw make-model --shape llama-7b --layers 3`)
in this process and times each phase of each block: loading the block from the shards, the
block forwards (`run_block`: the dense pass with its statistics hooks, and the pruned stream),
and the method itself. For each phase it prints the seconds and, for its call with the highest
peak, what was allocated when the call began (held), the peak above that (transient, the output
included) and their sum, plus the caching allocator's reservation. The allocator's peak
counters are reset at each call, so the process's peaks are the maxima over the phases. Run
without the CLI, this uses PyTorch's allocator settings as given (the CLI sets expandable segments
unless PYTORCH_CUDA_ALLOC_CONF is set). Compare with `besa-hw estimate`'s components.

    python bench/gpu_probe.py --model /tmp/llama-7b-3layers --methods wanda,sparsegpt,besa
    PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True python bench/gpu_probe.py ...
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

import pruning.sequential as seq  # noqa: E402
from pruning.calibration import get_calibration  # noqa: E402
from pruning.checkpoint import BlockCheckpoint  # noqa: E402
from pruning.config import CalibConfig, PruneConfig  # noqa: E402
from pruning.streaming import StreamedModel  # noqa: E402

GB = 1e9
DEVICE = "cuda"


def _timed(name: str, fn, log: list):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        out = fn(*args, **kwargs)
        torch.cuda.synchronize()
        log.append((name, time.perf_counter() - t0, base / GB, (torch.cuda.max_memory_allocated() - base) / GB,
                    torch.cuda.max_memory_reserved() / GB))
        return out
    return wrapper


def probe(model: str, method: str, calib: CalibConfig, blocks: int) -> dict:
    from transformers import AutoTokenizer

    log: list = []
    originals = (seq.run_block, seq.METHOD_FNS[method], StreamedModel.load_block)
    seq.run_block = _timed("block forward", seq.run_block, log)
    seq.METHOD_FNS[method] = _timed(f"{method} (method)", seq.METHOD_FNS[method], log)
    StreamedModel.load_block = _timed("load block", StreamedModel.load_block, log)
    try:
        ids = get_calibration(AutoTokenizer.from_pretrained(model), calib).to(DEVICE)
        torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="gpu-probe-") as tmp:
            seq.prune_model(StreamedModel(model, device=DEVICE, dtype=torch.bfloat16), ids, PruneConfig(method=method),
                            checkpoint=BlockCheckpoint(tmp, {"method": method}), blocks=blocks)
        torch.cuda.synchronize()
        wall = time.perf_counter() - t0
    finally:
        seq.run_block, seq.METHOD_FNS[method], StreamedModel.load_block = originals
    phases: dict = defaultdict(lambda: {"calls": 0, "seconds": 0.0, "transient_gb": 0.0, "held_gb": 0.0,
                                        "peak_gb": 0.0, "reserved_gb": 0.0})
    for name, secs, base, transient, reserved in log:
        p = phases[name]
        p["calls"] += 1
        p["seconds"] += secs
        if base + transient >= p["peak_gb"]:  # the call with the highest peak: what it held and added
            p["held_gb"], p["transient_gb"], p["peak_gb"] = base, transient, base + transient
        p["reserved_gb"] = max(p["reserved_gb"], reserved)
    return {"method": method, "wall_s": wall, "phases": dict(phases),
            "peak_allocated_gb": max(p["peak_gb"] for p in phases.values()),
            "peak_reserved_gb": max(p["reserved_gb"] for p in phases.values())}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True)
    p.add_argument("--methods", default="wanda,sparsegpt,besa")
    p.add_argument("--blocks", type=int, default=2)
    p.add_argument("--nsamples", type=int, default=128)
    p.add_argument("--seqlen", type=int, default=2048)
    p.add_argument("--json", default=None, help="also write the rows here")
    args = p.parse_args()
    alloc = os.environ.get("PYTORCH_CUDA_ALLOC_CONF", "default")
    print(f"# {torch.cuda.get_device_name()}, {args.nsamples} x {args.seqlen}, bfloat16, {args.blocks} blocks, "
          f"allocator: {alloc}")
    print("| method | phase | calls | s | held at start (GB) | transient (GB) | peak allocated (GB) | reserved (GB) |")
    print("|---|---|---|---|---|---|---|---|")
    rows = []
    for method in args.methods.split(","):
        torch.cuda.empty_cache()
        row = probe(args.model, method, CalibConfig(nsamples=args.nsamples, seqlen=args.seqlen), args.blocks)
        rows.append(row)
        for name, ph in row["phases"].items():
            print(f"| {method} | {name} | {ph['calls']} | {ph['seconds']:.2f} | {ph['held_gb']:.2f} | "
                  f"{ph['transient_gb']:.2f} | {ph['peak_gb']:.2f} | {ph['reserved_gb']:.2f} |")
        print(f"| {method} | whole prune_model | 1 | {row['wall_s']:.2f} | | | {row['peak_allocated_gb']:.2f} | "
              f"{row['peak_reserved_gb']:.2f} |", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
