"""Sweep benchmark: a hardware grid over the whole decoder step of LLaMA-7B with synthetic 50% masks,
decode at context 2048 and a 2048-token prefill, timed with the pipeline recurrence (what `sweep` uses)
and, as the floor in the same run, with a SimPy run per op (the reference model; ``--baseline N`` times it
on the first N points only and scales per point). The two must give identical points.csv rows on the
points both ran.

Issue 20 C target: 1,000 points, both phases, within 5 minutes on this 2-core machine.

    python bench/sweep_speed.py --sweep-file configs/sweep/llama7b-1000.toml --baseline 20
    python bench/sweep_speed.py --sweep-file configs/sweep/llama7b-100.toml --baseline 100
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def timed(ops, points, workers: int, fast: bool):
    from simulator.sweep import run_sweep

    start = time.perf_counter()
    _, totals = run_sweep(ops, points, workers=workers, fast=fast)
    return time.perf_counter() - start, totals


def main() -> int:
    from besa_hw.pipeline import WorkloadSpec, build_ops
    from simulator import load_hardware
    from simulator.sweep import grid_points, load_sweep_file

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shape", default="llama-7b")
    p.add_argument("--sweep-file", default=str(ROOT / "configs" / "sweep" / "llama7b-1000.toml"))
    p.add_argument("--workers", type=int, default=os.cpu_count())
    p.add_argument("--phases", default="decode,prefill")
    p.add_argument("--baseline", type=int, default=20, help="points timed with SimPy as the floor (0: none)")
    args = p.parse_args()
    _, grid = load_sweep_file(args.sweep_file)
    points = grid_points(load_hardware(), grid)
    print(f"sweep benchmark: {args.shape}, whole decoder step, synthetic 50% masks, {len(points)} points "
          f"({Path(args.sweep_file).name}), {args.workers} workers, load {os.getloadavg()[0]:.2f} at start\n")
    print("| phase | points | path | seconds | s/point | per 1,000 points (s) | identical to SimPy |")
    print("|---|---:|---|---:|---:|---:|---|")
    total = {"recurrence": 0.0, "SimPy": 0.0}
    for phase in args.phases.split(","):
        spec = WorkloadSpec(shape=args.shape, phase=phase, tokens=2048 if phase == "prefill" else None,
                            context=2048 if phase == "decode" else None)
        ops = build_ops(spec)
        seconds, totals = timed(ops, points, args.workers, fast=True)
        total["recurrence"] += seconds / len(points) * 1000
        same = "-"
        if args.baseline:  # both paths on the same first points: same mask-statistics overhead, a fair ratio
            some = points[:args.baseline]
            base_s, base = timed(ops, some, args.workers, fast=False)
            fast_s, fast = timed(ops, some, args.workers, fast=True)
            total["SimPy"] += base_s / fast_s * seconds / len(points) * 1000
            same = "yes" if totals.head(len(some)).equals(base) and fast.equals(base) else "NO"
            for path, t in (("SimPy", base_s), ("recurrence", fast_s)):
                print(f"| {phase} | {len(some)} | {path} | {t:.1f} | {t / len(some):.3f} | "
                      f"{t / len(some) * 1000:.0f} | |")
        print(f"| {phase} | {len(points)} | recurrence | {seconds:.1f} | {seconds / len(points):.3f} | "
              f"{seconds / len(points) * 1000:.0f} | {same} |")
    print(f"\n1,000 points, {' and '.join(args.phases.split(','))}: recurrence {total['recurrence'] / 60:.1f} min"
          + (f", SimPy {total['SimPy'] / 60:.1f} min (scaled by the ratio on the same first points: "
             f"{total['SimPy'] / total['recurrence']:.1f}x)"
             if total["SimPy"] else "") + f"; load {os.getloadavg()[0]:.2f} at end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
