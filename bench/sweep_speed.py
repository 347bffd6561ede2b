"""Sweep benchmark: a hardware grid over the whole decoder step of LLaMA-7B with synthetic 50% masks,
decode at context 2048 and a 2048-token prefill, with three paths side by side:

- **SimPy**: a SimPy run per op, every plan made per point (the reference model);
- **recurrence (Python)**: the pipeline as a Python loop, every plan made per point (what `sweep`
  did before issue 20 C: "today's cost" in the issue);
- **compiled + shared plans**: the same loop compiled by Numba, and each op's plans made once for
  the points that differ only in fields no plan reads (DRAM bandwidth here; what `sweep` does now).

The last runs every point of the grid; the first two, the floor, run ``--baseline N`` points spread
evenly over the grid and are scaled per point. All three must give identical per-point totals on
the points they share.

Issue 20 C target: 1,000 points, both phases, within 5 minutes on this 2-core machine.

    python bench/sweep_speed.py                                     # the 1,000-point grid, 20 baseline points
    python bench/sweep_speed.py --sweep-file configs/sweep/llama7b-100.toml --baseline 10
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


def timed(ops, points, workers: int, fast: bool = True, share_plans: bool = True, python_loop: bool = False):
    from simulator import recurrence
    from simulator.sweep import run_sweep

    compiled = recurrence.compiled
    if python_loop:
        recurrence.compiled = recurrence.pipeline  # the loop as it ran before it was compiled
    try:
        start = time.perf_counter()
        _, totals = run_sweep(ops, points, workers=workers, fast=fast, share_plans=share_plans)
        return time.perf_counter() - start, totals.drop(columns="point")
    finally:
        recurrence.compiled = compiled


def main() -> int:
    from besa_hw.pipeline import WorkloadSpec, build_ops
    from simulator import load_hardware
    from simulator.sweep import grid_points, load_sweep_file

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shape", default="llama-7b")
    p.add_argument("--sweep-file", default=str(ROOT / "configs" / "sweep" / "llama7b-1000.toml"))
    p.add_argument("--workers", type=int, default=os.cpu_count())
    p.add_argument("--phases", default="decode,prefill")
    p.add_argument("--baseline", type=int, default=20, help="points (spread over the grid) timed on the two reference paths (0: none)")
    args = p.parse_args()
    _, grid = load_sweep_file(args.sweep_file)
    points = grid_points(load_hardware(), grid)
    print(f"sweep benchmark: {args.shape}, whole decoder step, synthetic 50% masks, {len(points)} points "
          f"({Path(args.sweep_file).name}), {args.workers} workers, load {os.getloadavg()[0]:.2f} at start\n")
    print("| phase | points | path | seconds | s/point | per 1,000 points (s) | identical totals |")
    print("|---|---:|---|---:|---:|---:|---|")
    paths = {"SimPy": dict(fast=False, share_plans=False), "recurrence (Python)": dict(share_plans=False, python_loop=True)}
    per_1000 = {"compiled + shared plans": 0.0, **{k: 0.0 for k in paths}}
    for phase in args.phases.split(","):
        spec = WorkloadSpec(shape=args.shape, phase=phase, tokens=2048 if phase == "prefill" else None,
                            context=2048 if phase == "decode" else None)
        ops = build_ops(spec)
        seconds, totals = timed(ops, points, args.workers)
        per_1000["compiled + shared plans"] += seconds / len(points) * 1000
        same = "-"
        if args.baseline:
            picked = list(range(0, len(points), max(1, len(points) // args.baseline)))[:args.baseline]
            fast = totals.iloc[picked].reset_index(drop=True)
            same = "yes"
            for path, how in paths.items():
                t, base = timed(ops, [points[i] for i in picked], args.workers, **how)
                per_1000[path] += t / len(picked) * 1000
                ok = base.equals(fast)
                same = same if ok else "NO"
                print(f"| {phase} | {len(picked)} | {path} | {t:.1f} | {t / len(picked):.3f} | "
                      f"{t / len(picked) * 1000:.0f} | {'yes' if ok else 'NO'} |")
        print(f"| {phase} | {len(points)} | compiled + shared plans | {seconds:.1f} | {seconds / len(points):.3f} | "
              f"{seconds / len(points) * 1000:.0f} | {same} |")
    phases = " and ".join(args.phases.split(","))
    print(f"\n1,000 points, {phases}, {args.workers} workers: "
          + ", ".join(f"{k} {v / 60:.1f} min" for k, v in per_1000.items() if v)
          + (f"; speed-up over the Python recurrence {per_1000['recurrence (Python)'] / per_1000['compiled + shared plans']:.1f}x"
             if per_1000["recurrence (Python)"] else "")
          + f"; load {os.getloadavg()[0]:.2f} at end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
