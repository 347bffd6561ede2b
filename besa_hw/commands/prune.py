"""``besa-hw prune``: prune a LLaMA-style model into a run folder (masks + manifest [+ model])."""

from __future__ import annotations

import argparse

from besa_hw.options import add_prune_args, add_scale_args, build_configs, compute_dtype


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("prune", help="prune a model with BESA / Wanda / SparseGPT / magnitude / search",
                              description="Prune the q/k/v/o/gate/up/down Linears of every decoder block.")
    add_prune_args(p, method_default=None)
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", dest="prune_set",
                   help="override any PruneConfig field, e.g. besa_samples=24 or besa_reconstruct=true")
    add_scale_args(p)
    p.add_argument("--overwrite", action="store_true", help="replace an existing RUN_DIR (or discard an "
                   "unfinished prune into it)")
    p.add_argument("--out", required=True, help="run folder to create")
    p.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    from besa_hw.models import check_context, resolve_device, resolve_model
    from besa_hw.outdir import check_out_dir, staged_dir
    from besa_hw.runs import activation_device, check_blocks, check_unfinished, keep_if_resumable, prune_to_run
    from pruning.calibration import check_source

    cfg, calib = build_configs(args)
    check_out_dir(args.out, args.overwrite)
    device = resolve_device(args.device)
    dtype = compute_dtype(args, device)
    spec = resolve_model(args.model, args.gguf_file)
    check_blocks(args.blocks, spec)
    if cfg.needs_data:
        check_context(spec, seqlen=calib.seqlen)
        check_source(calib.source)
    partial = check_unfinished(args.out, args.resume, args.overwrite)
    activations = activation_device(spec, cfg, calib, device, dtype, args.activations, args.no_estimate)
    # Built beside --out and swapped in when complete: a failed prune keeps the old run; finished
    # blocks stay in the partial folder for --resume.
    try:
        with staged_dir(args.out, "run", overwrite=args.overwrite) as stage:
            prune_to_run(args.model, args.gguf_file, cfg, calib, stage, device=device,
                         save_model=args.save_model, progress=True, dtype=dtype, blocks=args.blocks,
                         checkpoint_dir=partial, resume=args.resume, activations=activations)
    except BaseException:
        keep_if_resumable(partial, args.out)
        raise
    print(f"wrote {args.out}")
    return 0
