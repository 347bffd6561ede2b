"""Command-line option groups shared by several commands (hardware, phases, workloads).

Each command module registers its own parser; the option groups that more than one command
offers live here, so that no command borrows from a sibling command.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_hardware_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--hw", default="besa-64x64", metavar="PRESET|FILE.toml",
                   help="hardware preset name or TOML file (default: besa-64x64)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a HardwareConfig field, e.g. --set dram_gbps=25.6 (repeatable)")
    p.add_argument("--compute-only", action="store_true",
                   help="ignore memory time, as the BESA paper's simulator does")


def add_phase_args(p: argparse.ArgumentParser) -> None:
    """--phases/--decode-tokens/--prefill-tokens, for commands that simulate several phases."""
    p.add_argument("--phases", default="decode,prefill", help="comma-separated: decode, prefill")
    p.add_argument("--decode-tokens", type=int, default=1, help="batch size of the decode phase (default 1)")
    p.add_argument("--prefill-tokens", type=int, default=2048,
                   help="prompt length of the prefill phase (default 2048)")
    p.add_argument("--context", type=int, default=2048,
                   help="decode: cached tokens each sequence attends to (default 2048)")
    p.add_argument("--linear-only", action="store_true",
                   help="simulate only the seven projections of each block (no attention, vector ops, head)")


def phase_tokens(args: argparse.Namespace) -> dict[str, int]:
    """{phase: tokens} from add_phase_args' flags, validated."""
    tokens = {"decode": args.decode_tokens, "prefill": args.prefill_tokens}
    if args.context < 1:
        raise ValueError(f"--context must be >= 1, got {args.context}")
    names = [s.strip() for s in args.phases.split(",") if s.strip()]
    bad = [n for n in names if n not in tokens]
    if bad or not names:
        raise ValueError(f"--phases takes decode and/or prefill, got {args.phases!r}")
    from simulator.workload import check_tokens

    return {n: check_tokens(tokens[n], f"--{n}-tokens") for n in names}


def add_workload_args(p: argparse.ArgumentParser, require_source: bool = True) -> None:
    src = p.add_mutually_exclusive_group(required=require_source)
    src.add_argument("--run", metavar="RUN_DIR", help="a pruning run folder (masks.safetensors + manifest.json)")
    src.add_argument("--shape", metavar="NAME", help="model shape with synthetic masks "
                     "(smollm2-135m, llama-7b, llama-13b, llama-30b, llama2-70b)")
    p.add_argument("--sparsity", type=float, default=0.5, help="synthetic masks: sparsity (default 0.5)")
    p.add_argument("--profile", metavar="FILE.json", help="synthetic masks: per-layer sparsities "
                   "({module_path_or_op: s}, or a run's manifest.json)")
    p.add_argument("--row-dist", choices=("none", "uniform", "normal"), default="none",
                   help="synthetic masks: how the sparsity of each weight row varies around the layer's "
                        "sparsity: none (every row the same; the default), uniform (each row within "
                        "+/- S of it) or normal (standard deviation S), with S set by --row-spread")
    p.add_argument("--nm", metavar="N:M", help="synthetic masks: N:M structured sparsity, e.g. 2:4 "
                   "(N kept in every group of M inputs; sets the sparsity to 1 - N/M)")
    p.add_argument("--wbits", type=int, choices=(2, 3, 4, 8), help="synthetic masks: quantize the pruned "
                   "Linears' weights to B bits (one fp16 scale and a B-bit zero point per group)")
    p.add_argument("--group-size", type=int, default=-1, help="with --wbits: inputs per group (-1: per row)")
    p.add_argument("--row-spread", type=float, default=0.0, metavar="S",
                   help="synthetic masks: half-width (uniform) or standard deviation (normal) of the "
                        "per-row sparsity, e.g. 0.08 (default 0)")
    p.add_argument("--seed", type=int, default=0, help="synthetic masks: random seed")
    p.add_argument("--exact-masks", action="store_true",
                   help="synthetic masks: materialise every mask and count it, instead of drawing its "
                        "statistics from their distributions (slower; same cycles within 0.5%%)")
    p.add_argument("--phase", choices=("decode", "prefill"), default="decode",
                   help="decode: --tokens defaults to 1; prefill: to 2048")
    p.add_argument("--tokens", type=int, help="tokens per op (batch for decode, prompt length for prefill)")
    p.add_argument("--context", type=int, help="decode: cached tokens each sequence attends to (default 2048)")
    p.add_argument("--linear-only", action="store_true",
                   help="only the seven projections of each block (no attention, vector ops, lm_head, embedding)")
    p.add_argument("--blocks", type=int, help="only the first N transformer blocks")


def workload_spec(args: argparse.Namespace):
    from besa_hw.pipeline import WorkloadSpec
    from simulator.synthetic import AllocationProfile, load_profile
    from simulator.workload import parse_nm_text

    if args.run is not None:
        if not Path(args.run).is_dir():
            raise FileNotFoundError(f"run folder not found: {args.run}")
        synthetic = {"--sparsity": args.sparsity != 0.5, "--profile": args.profile is not None,
                     "--row-dist": args.row_dist != "none", "--row-spread": args.row_spread != 0.0,
                     "--nm": args.nm is not None, "--wbits": args.wbits is not None}
        used = [flag for flag, given in synthetic.items() if given]
        if used:
            raise ValueError(f"{used[0]} applies to synthetic masks (--shape), not to --run")
    per_layer = load_profile(args.profile) if args.profile else {}
    nm = parse_nm_text(args.nm)
    sparsity = 1 - nm[0] / nm[1] if nm else args.sparsity
    if args.group_size == 0 or args.group_size < -1:
        raise ValueError(f"--group-size must be -1 (per row) or a positive number of inputs, got {args.group_size}")
    profile = AllocationProfile(sparsity, per_layer, args.row_dist, args.row_spread, args.seed,
                                exact_masks=args.exact_masks, nm=nm, wbits=args.wbits,
                                group_size=args.group_size if args.wbits else None)
    return WorkloadSpec(run_dir=args.run, shape=args.shape, profile=profile, phase=args.phase,
                        tokens=args.tokens, blocks=args.blocks, context=args.context,
                        linear_only=args.linear_only)


def hardware(args: argparse.Namespace):
    from simulator.config import load_hardware, parse_overrides

    return load_hardware(args.hw, parse_overrides(args.overrides))
