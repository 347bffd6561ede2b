"""``besa-hw compare``: several sparsity allocations side by side on the same hardware."""

from __future__ import annotations

import argparse
from pathlib import Path

from besa_hw.options import add_hardware_args, add_phase_args, hardware, phase_tokens

SHOWN = ["run", "method", "ppl", "achieved_sparsity", "speedup_linear_decode", "speedup_e2e_decode",
         "speedup_linear_prefill", "speedup_e2e_prefill", "tokens_per_s_e2e_decode", "power_mw_decode",
         "load_imbalance_decode"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compare", help="compare sparsity allocations (runs or profiles) on the same hardware",
                       description="Simulate several pruning runs, or per-layer allocation profiles on a model "
                                   "shape, on the same hardware and report them side by side.")
    p.add_argument("runs", nargs="*", metavar="RUN_DIR", help="pruning run folders")
    p.add_argument("--names", nargs="+", help="labels for the runs (default: folder names)")
    p.add_argument("--shape", help="model shape for --profiles (synthetic masks)")
    p.add_argument("--profiles", nargs="+", metavar="FILE.json", help="per-layer sparsity profiles to compare")
    p.add_argument("--sparsity", type=float, default=0.5, help="profiles: sparsity of layers a profile omits")
    p.add_argument("--seed", type=int, default=0, help="profiles: mask seed")
    add_phase_args(p)
    p.add_argument("--blocks", type=int, help="only the first N transformer blocks")
    add_hardware_args(p)
    p.add_argument("--out", metavar="DIR", required=True,
                   help="write DIR/compare.csv, allocations.csv, layers.csv and figures")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out folder written by besa-hw")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from besa_hw import compare as cmp
    from besa_hw.report import explore as figures
    from besa_hw.outdir import check_out_dir, staged_dir
    from besa_hw.pipeline import write_table
    from besa_hw.report.compare_report import write_compare_report
    from simulator.synthetic import AllocationProfile

    phases = phase_tokens(args)
    if args.runs and (args.shape or args.profiles):
        raise ValueError("give either run folders or --shape with --profiles, not both")
    if args.runs:
        cands = cmp.candidates_from_runs(args.runs, phases, args.names, args.blocks, args.context, args.linear_only)
    elif args.shape and args.profiles:
        cands = cmp.candidates_from_profiles(args.shape, args.profiles, AllocationProfile(args.sparsity, seed=args.seed),
                                             phases, args.blocks, args.context, args.linear_only)
    else:
        raise ValueError("nothing to compare: give run folders, or --shape NAME --profiles A.json B.json")
    hw = hardware(args)
    check_out_dir(args.out, args.overwrite)
    table, alloc, layers = cmp.compare(cands, hw, args.compute_only, progress=True)
    with staged_dir(args.out, "compare", overwrite=args.overwrite) as stage:
        write_table(table, stage / "compare.csv")
        write_table(alloc, stage / "allocations.csv")
        write_table(layers, stage / "layers.csv")
        drawn = [figures.tradeoff(table, stage / "tradeoff.png", hw.name),
                 figures.allocation_overlay(alloc, stage / "allocations.png"),
                 figures.pareto(table, stage / "pareto.png", hw.name)]
        drew = drawn[-1] is not None
        write_compare_report(stage, table, hw, phases, [p for p in drawn if p is not None])
    out = Path(args.out)
    shown = [c for c in SHOWN if c in table.columns]
    print(table[shown].to_string(index=False, na_rep="-", float_format=lambda v: f"{v:.3f}"))
    print(f"\n{len(table)} allocations on {hw.name}; wrote {out}/compare.csv, allocations.csv, layers.csv, "
          "tradeoff.png, allocations.png" + (", pareto.png" if drew else "") + ", report.md, report.html")
    return 0
