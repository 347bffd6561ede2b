"""Simulator speed benchmark: all Linear ops of a model, streamed one layer at a time.

Target (issue 2): all 224 Linear ops of LLaMA-7B (decode, synthetic 50% masks,
mask generation and statistics included) in under 20 s on a 2-core machine, peak
RSS under 2 GB.  The floor is a bare numpy pass that generates the same masks and
only counts their nonzeros.  Each case runs in its own process so that its peak
RSS is its own.

    python bench/sim_speed.py [--shape llama-7b] [--prefill-tokens 2048]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def case(kind: str, shape: str, tokens: int) -> dict:
    import numpy as np

    from besa_hw.pipeline import WorkloadSpec, build_ops, simulate
    from simulator import load_hardware

    ops = build_ops(WorkloadSpec(shape=shape, tokens=tokens))
    start = time.perf_counter()
    if kind == "floor":
        nnz = sum(int(np.count_nonzero(op.mask())) for op in ops)
        speedup = float("nan")
    else:
        layers, summary = simulate(ops, load_hardware(), compute_only=(kind == "compute-only"))
        nnz, speedup = int(layers.nnz.sum()), float(summary.speedup.iloc[-1])
    seconds = time.perf_counter() - start
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"case": kind, "tokens": tokens, "ops": len(ops), "nnz": nnz, "seconds": seconds,
            "peak_rss_mb": rss_mb, "speedup": speedup}


def run_isolated(kind: str, shape: str, tokens: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--case", kind, "--shape", shape, "--tokens", str(tokens)],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shape", default="llama-7b")
    p.add_argument("--prefill-tokens", type=int, default=2048)
    p.add_argument("--case", help=argparse.SUPPRESS)
    p.add_argument("--tokens", type=int, default=1, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.case:
        print(json.dumps(case(args.case, args.shape, args.tokens)))
        return
    rows = [run_isolated(k, args.shape, t) for k, t in
            [("floor", 1), ("decode", 1), ("compute-only", 1), ("prefill", args.prefill_tokens)]]
    floor = rows[0]["seconds"]
    print(f"simulator speed, {args.shape}, synthetic 50% masks, besa-64x64, "
          f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}")
    print(f"{'case':<14}{'tokens':>7}{'ops':>5}{'seconds':>9}{'x floor':>9}{'peak RSS MB':>13}{'speedup':>9}")
    for r in rows:
        print(f"{r['case']:<14}{r['tokens']:>7}{r['ops']:>5}{r['seconds']:>9.2f}{r['seconds'] / floor:>9.2f}"
              f"{r['peak_rss_mb']:>13.0f}{r['speedup']:>9.3f}")


if __name__ == "__main__":
    main()
