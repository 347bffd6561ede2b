"""``besa-hw prune``: prune a LLaMA-style model into a run folder (masks + manifest [+ model])."""

from __future__ import annotations

import argparse

from besa_hw.options import add_prune_args, build_configs


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("prune", help="prune a model with BESA / Wanda / SparseGPT / magnitude",
                              description="Prune the q/k/v/o/gate/up/down Linears of every decoder block.")
    add_prune_args(p, method_default=None)
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", dest="prune_set",
                   help="override any PruneConfig field, e.g. besa_samples=24 or besa_reconstruct=true")
    p.add_argument("--overwrite", action="store_true", help="replace an existing RUN_DIR")
    p.add_argument("--out", required=True, help="run folder to create")
    p.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    from besa_hw.models import check_context, resolve_device, resolve_model
    from besa_hw.outdir import check_out_dir, staged_dir
    from besa_hw.runs import prune_to_run
    from pruning.calibration import check_source

    cfg, calib = build_configs(args)
    check_out_dir(args.out, args.overwrite)
    device = resolve_device(args.device)
    check_context(resolve_model(args.model, args.gguf_file), seqlen=calib.seqlen)
    if cfg.method != "magnitude":
        check_source(calib.source)
    # Built beside --out and swapped in when complete: a failed prune keeps the old run.
    with staged_dir(args.out, "run", overwrite=args.overwrite) as stage:
        prune_to_run(args.model, args.gguf_file, cfg, calib, stage, device=device,
                     save_model=args.save_model, progress=True)
    print(f"wrote {args.out}")
    return 0
