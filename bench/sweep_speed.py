"""Sweep benchmark: a 100-point hardware grid over the whole decoder step of LLaMA-7B (decode, context 2048).

Issue 4 target: minutes, not hours, on a 2-core machine.

    python bench/sweep_speed.py [--workers 2] [--shape llama-7b] [--sweep-file configs/sweep/llama7b-100.toml]
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    from besa_hw.pipeline import WorkloadSpec, build_ops
    from simulator import load_hardware
    from simulator.sweep import grid_points, load_sweep_file, run_sweep

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shape", default="llama-7b")
    p.add_argument("--sweep-file", default=str(ROOT / "configs" / "sweep" / "llama7b-100.toml"))
    p.add_argument("--workers", type=int, default=os.cpu_count())
    args = p.parse_args()
    _, grid = load_sweep_file(args.sweep_file)
    points = grid_points(load_hardware(), grid)
    ops = build_ops(WorkloadSpec(shape=args.shape))
    start = time.perf_counter()
    tidy, totals = run_sweep(ops, points, workers=args.workers)
    seconds = time.perf_counter() - start
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"sweep benchmark: {args.shape}, decode (whole decoder step, context 2048), {len(points)} points x "
          f"{len(ops)} ops, "
          f"{args.workers} workers, load {os.getloadavg()[0]:.2f}")
    print(f"{'points':>7}{'ops':>6}{'rows':>8}{'seconds':>9}{'s/point':>9}{'peak RSS MB (parent/worker)':>29}")
    print(f"{len(points):>7}{len(ops):>6}{len(tidy):>8}{seconds:>9.1f}{seconds / len(points):>9.2f}"
          f"{rss:>16.0f} / {child:.0f}")
    for col, what in (("speedup_linear", "Linear-only"), ("speedup_e2e", "end-to-end")):
        print(f"{what} speedup range over the grid: {totals[col].min():.3f}x .. {totals[col].max():.3f}x")


if __name__ == "__main__":
    main()
