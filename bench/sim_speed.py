"""Simulator speed benchmark: whole decoder steps of LLaMA-7B and LLaMA2-70B, one op at a time.

Targets (issue 8 D), 2-core machine, the whole decoder step included (attention over a
2048-token KV cache, vector ops, lm_head): LLaMA-7B decode and prefill 2048 each within 2x
of the bare-numpy floor measured in the same run (generate LLaMA-7B's 224 synthetic masks
and count them); LLaMA2-70B decode < 60 s and prefill 2048 < 120 s; peak RSS < 1 GB for all.
Synthetic masks' statistics are drawn from their distributions by default
(simulator/sampled.py); the ``exact`` rows materialise every mask and count it.
Each case runs in its own process so that its peak RSS is its own.

    python bench/sim_speed.py [--skip-70b-exact]
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

CASES = [  # (name, shape, phase, tokens, exact masks, compute only)
    ("floor: generate + count masks", "llama-7b", "floor", 1, True, False),
    ("decode, ctx 2048", "llama-7b", "decode", 1, False, False),
    ("decode, ctx 2048, exact", "llama-7b", "decode", 1, True, False),
    ("decode, compute-only", "llama-7b", "decode", 1, False, True),
    ("prefill 2048", "llama-7b", "prefill", 2048, False, False),
    ("prefill 2048, exact", "llama-7b", "prefill", 2048, True, False),
    ("decode, ctx 2048", "llama2-70b", "decode", 1, False, False),
    ("prefill 2048", "llama2-70b", "prefill", 2048, False, False),
    ("decode, ctx 2048, exact", "llama2-70b", "decode", 1, True, False),
]


def case(shape: str, phase: str, tokens: int, exact: bool, compute_only: bool) -> dict:
    import numpy as np

    from besa_hw.pipeline import WorkloadSpec, build_ops, simulate
    from simulator import load_hardware, step_metrics
    from simulator.synthetic import AllocationProfile

    profile = AllocationProfile(0.5, exact_masks=exact)
    start = time.perf_counter()
    if phase == "floor":
        ops = build_ops(WorkloadSpec(shape=shape, profile=profile, linear_only=True))
        nnz = sum(int(np.count_nonzero(op.mask())) for op in ops)
        speedup = float("nan")
    else:
        hw = load_hardware()
        ops = build_ops(WorkloadSpec(shape=shape, phase=phase, tokens=tokens, profile=profile))
        layers, summary = simulate(ops, hw, compute_only=compute_only)
        nnz, speedup = int(layers.nnz.sum()), step_metrics(summary, hw, tokens)["speedup_e2e"]
    seconds = time.perf_counter() - start
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"ops": len(ops), "nnz": nnz, "seconds": seconds, "peak_rss_mb": rss_mb, "speedup": speedup}


def run_isolated(args: tuple) -> dict:
    out = subprocess.run([sys.executable, __file__, "--case", json.dumps(args)], check=True,
                         capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--skip-70b-exact", action="store_true", help="skip materialising LLaMA2-70B's masks (~1 min)")
    p.add_argument("--case", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.case:
        print(json.dumps(case(*json.loads(args.case))))
        return
    threads = os.environ.get("OMP_NUM_THREADS", "unset")
    print(f"simulator speed: synthetic 50% masks, besa-64x64, whole decoder step; {os.cpu_count()} CPUs, "
          f"OMP_NUM_THREADS={threads}, load {os.getloadavg()[0]:.2f} at start")
    print("| model | case | ops | seconds | x floor | peak RSS MB | end-to-end speedup |\n|---|---|---|---|---|---|---|")
    floor = None
    for name, shape, phase, tokens, exact, compute_only in CASES:
        if args.skip_70b_exact and shape == "llama2-70b" and exact:
            continue
        r = run_isolated((shape, phase, tokens, exact, compute_only))
        floor = r["seconds"] if phase == "floor" else floor
        ratio = f"{r['seconds'] / floor:.2f}" if shape == "llama-7b" else "—"
        speed = "—" if r["speedup"] != r["speedup"] else f"{r['speedup']:.3f}x"
        print(f"| {shape} | {name} | {r['ops']} | {r['seconds']:.2f} | {ratio} | {r['peak_rss_mb']:.0f} | {speed} |",
              flush=True)
    print(f"load {os.getloadavg()[0]:.2f} at end")


if __name__ == "__main__":
    main()
