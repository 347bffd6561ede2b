"""``besa-hw estimate``: peak memory per component and time of a prune, before starting it."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("estimate", help="peak memory and time of a prune, before starting it",
                              description="Estimate the peak memory (per component) and the time of "
                                          "`besa-hw prune` with block streaming; see README 'Estimating a prune'.")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", help="model folder (config.json) or smollm2-135m")
    src.add_argument("--shape", help="a known shape: smollm2-135m, llama-7b, llama2-7b, llama-13b, llama-30b, "
                                     "llama2-70b")
    p.add_argument("--method", default="besa", choices=("besa", "wanda", "sparsegpt", "magnitude"))
    p.add_argument("--nsamples", type=int, default=128, help="calibration segments (default 128, the paper's)")
    p.add_argument("--seqlen", type=int, default=2048, help="tokens per segment (default 2048)")
    p.add_argument("--dtype", choices=("float32", "bfloat16", "float16"),
                   help="compute dtype (default: float32 on cpu, bfloat16 otherwise)")
    p.add_argument("--device", default="a100-80gb", help="cpu, cuda[:N], or a named device: "
                   "a100-80gb, a100-40gb, h100-80gb, h200-141gb, rtx4090 (default a100-80gb)")
    p.add_argument("--activations", choices=("device", "cpu"), default="device",
                   help="where the calibration activations live (cpu: in host RAM, not on the GPU)")
    p.add_argument("--wbits", type=int, choices=(2, 3, 4, 8), help="with quantization")
    p.add_argument("--json", action="store_true", help="print the estimate as JSON")
    p.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    import json

    from besa_hw.estimate import DEVICES, estimate, shape_of
    from pruning.config import CalibConfig, PruneConfig

    if args.device not in DEVICES and not args.device.startswith("cuda"):
        raise ValueError(f"--device {args.device!r}: choose cpu, cuda[:N] or one of {', '.join(DEVICES)}")
    shape = shape_of(args.model, args.shape)
    if shape is None:
        raise ValueError(f"--model {args.model}: no config.json to read the dimensions from (give --shape)")
    cfg = PruneConfig(method=args.method, wbits=args.wbits)
    calib = CalibConfig(nsamples=args.nsamples, seqlen=args.seqlen)
    dtype = args.dtype or ("float32" if args.device == "cpu" else "bfloat16")
    est = estimate(shape, cfg, calib, device=args.device, dtype=dtype, activations=args.activations)
    if args.json:
        print(json.dumps({"shape": shape.name, "device": args.device, "dtype": dtype,
                          "components_gb": {k: round(v / 1e9, 3) for k, v in est.components.items()},
                          "peak_gb": round(est.peak / 1e9, 3), "seconds_per_block": round(est.seconds_per_block, 2),
                          "blocks": est.blocks, "fits": est.fits, "notes": list(est.notes)}))
        return 0
    print(f"{shape.name}: {args.method}, {args.nsamples} x {args.seqlen} tokens, {dtype}, {args.device}")
    print("\n".join(est.lines()))
    return 0
