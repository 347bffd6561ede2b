"""``besa-hw simulate``: per-layer latency and speedup vs dense on the simulated accelerator."""

from __future__ import annotations

import argparse
import time

from besa_hw.options import add_hardware_args, add_workload_args, hardware, workload_spec

PREVIEW = ["block", "op", "kind", "out_features", "in_features", "sparsity", "dense_cycles", "sparse_cycles",
           "speedup", "utilization", "bound", "tiling"]






def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("simulate", help="simulate a model's Linear layers on the sparse accelerator",
                       description=__doc__.replace("``", ""))
    add_workload_args(p)
    add_hardware_args(p)
    p.add_argument("--out", metavar="DIR",
                   help="write DIR/layers.csv, summary.csv (per op type), blocks.csv, hardware.json")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out folder written by besa-hw")
    p.add_argument("--quiet", action="store_true", help="print only the summary")
    p.set_defaults(func=run)




def run(args: argparse.Namespace) -> int:
    from besa_hw.outdir import check_out_dir, staged_dir
    from besa_hw.pipeline import build_ops, simulate, write_json, write_table
    from simulator import step_metrics, summarize
    from simulator.simulate import area_power_words, saving_words, traffic

    if args.out:
        check_out_dir(args.out, args.overwrite)
    hw = hardware(args)
    spec = workload_spec(args)
    check_datapath(hw, spec, args.compute_only)
    ops = build_ops(spec)
    start = time.perf_counter()
    layers, summary = simulate(ops, hw, compute_only=args.compute_only, progress=True)
    seconds = time.perf_counter() - start
    if not args.quiet:
        print(layers[PREVIEW].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
        print()
    print(summary[["op", "count", "sparsity", "dense_cycles", "sparse_cycles", "speedup",
                   "memory_cycles", "energy_saving"]].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    m = step_metrics(summary, hw, spec.n_tokens)
    mode = "compute-only" if args.compute_only else "with memory"
    scope = "Linear layers only" if spec.linear_only else (
        f"whole decoder step, context {spec.attention_context}" if spec.phase == "decode" else "whole decoder step")
    print(f"\n{hw.name}, {spec.phase} ({spec.n_tokens} tokens, {scope}), {mode}: {len(layers)} ops; "
          f"speedup vs dense: Linear-only {m['speedup_linear']:.3f}x, end-to-end {m['speedup_e2e']:.3f}x"
          + (f" (vs dense fp16: {m['speedup_e2e_vs_fp16']:.3f}x)" if "speedup_e2e_vs_fp16" in m else "") + "; "
          f"{m['latency_ms']:.3f} ms per step, {m['tokens_per_s']:.1f} tokens/s "
          f"(dense {m['dense_tokens_per_s']:.1f}); simulated in {seconds:.1f} s")
    shares = ", ".join(f"{name} {m[f'energy_{name.lower()}_share'] * 100:.2g}%"
                       for name in ("MAC", "SRAM", "DRAM", "static"))
    print(f"energy: {m['energy_mj']:.3f} mJ per step (dense {m['dense_energy_mj']:.3f} mJ, "
          f"{saving_words(m['energy_saving'])}), {m['energy_per_token_mj']:.4f} mJ per token, "
          f"{m['tokens_per_joule']:.1f} tokens/J; {shares}")
    print(area_power_words(m))
    t = traffic(layers, hw)
    print(f"DRAM traffic: {t['dram_mb']:.2f} MB per step (weights {t['weights_mb']:.2f}, "
          f"KV cache {t['kv_cache_mb']:.2f}, activations {t['activations_mb']:.2f}); "
          f"achieved {t['achieved_gbps']:.1f} GB/s of {t['peak_gbps']:g} peak")
    print(f"SRAM accesses by the engines per step: read {t['sram_weights_mb']:.2f} MB of weights, "
          f"{t['sram_kv_cache_mb']:.2f} of KV cache, {t['sram_index_mb']:.2f} of indices, "
          f"{t['sram_activations_mb']:.2f} of activations; wrote {t['sram_outputs_mb']:.2f} MB of outputs "
          "(buffer fills = the DRAM traffic above)")
    if args.out:
        with staged_dir(args.out, "simulate", overwrite=args.overwrite) as out:
            write_table(layers, out / "layers.csv")
            write_table(summary, out / "summary.csv")
            write_table(summarize(layers, by="block"), out / "blocks.csv")
            write_json(hw, out / "hardware.json")
        print(f"wrote {args.out}/layers.csv, summary.csv, blocks.csv, hardware.json")
    return 0


def check_datapath(hw, spec, compute_only: bool) -> None:
    """Refuse weights wider than the datapath; say when a preset is used outside what it reproduces."""
    import logging

    wbits = spec.profile.wbits
    if wbits and wbits > hw.weight_bits:
        raise ValueError(f"--wbits {wbits} exceeds the datapath's {hw.weight_bits}-bit weights "
                         f"(set weight_bits={wbits} or more for a wider datapath)")
    if hw.name == "besa-paper" and not compute_only:
        logging.getLogger(__name__).warning("besa-paper reproduces the BESA authors' compute-only simulator; its rules "
                                            "make memory-bound ops slower than dense: use --compute-only "
                                            "--linear-only --tokens 1 as the paper does")
