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
    s = p.add_argument_group("scale (block streaming)")
    s.add_argument("--dtype", choices=("float32", "bfloat16", "float16"),
                   help="dtype of the block being pruned and of the calibration activations (default: float32 on "
                        "cpu, bfloat16 on cuda); allocation logits, clipping parameters and losses stay float32")
    s.add_argument("--activations", choices=("auto", "device", "cpu"), default="auto",
                   help="where the calibration activations live: on the compute device, or in CPU RAM when they do "
                        "not fit there (auto: decided from the memory estimate)")
    s.add_argument("--blocks", type=int, metavar="N",
                   help="prune only the first N blocks (for time/memory measurements; eval and simulate refuse it)")
    s.add_argument("--resume", action="store_true",
                   help="continue an interrupted prune into --out from its last finished block (same settings)")
    s.add_argument("--no-estimate", action="store_true",
                   help="skip the memory check that refuses a prune which would not fit")
    p.add_argument("--overwrite", action="store_true", help="replace an existing RUN_DIR (or discard an "
                   "unfinished prune into it)")
    p.add_argument("--out", required=True, help="run folder to create")
    p.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    from besa_hw.models import check_context, resolve_device, resolve_model
    from besa_hw.outdir import check_out_dir, partial_dir, staged_dir
    from besa_hw.runs import prune_to_run
    from pruning.calibration import check_source

    cfg, calib = build_configs(args)
    if args.blocks is not None and args.blocks < 1:
        raise ValueError(f"--blocks must be >= 1, got {args.blocks}")
    check_out_dir(args.out, args.overwrite)
    device = resolve_device(args.device)
    dtype = args.dtype or ("float32" if device == "cpu" else "bfloat16")
    spec = resolve_model(args.model, args.gguf_file)
    check_context(spec, seqlen=calib.seqlen)
    _check_blocks(args.blocks, spec)
    if cfg.method != "magnitude":
        check_source(calib.source)
    partial = partial_dir(args.out)
    if (partial / "progress.json").is_file() and not (args.resume or args.overwrite):
        raise ValueError(f"an unfinished prune into {args.out} exists ({partial}); pass --resume to continue it "
                         "or --overwrite to start over")
    activations = _activation_device(args, spec, cfg, calib, device, dtype)
    # Built beside --out and swapped in when complete: a failed prune keeps the old run; finished
    # blocks stay in the partial folder for --resume.
    try:
        with staged_dir(args.out, "run", overwrite=args.overwrite) as stage:
            prune_to_run(args.model, args.gguf_file, cfg, calib, stage, device=device,
                         save_model=args.save_model, progress=True, dtype=dtype, blocks=args.blocks,
                         checkpoint_dir=partial, resume=args.resume, activations=activations)
    except BaseException:
        _keep_if_resumable(partial, args.out)
        raise
    print(f"wrote {args.out}")
    return 0


def _check_blocks(blocks: int | None, spec) -> None:
    """--blocks against the model's block count, before anything loads (when the config tells it)."""
    from besa_hw.estimate import shape_of

    if blocks is None:
        return
    try:
        shape = shape_of(spec.source if spec.gguf_file is None else spec.model_id)
    except ValueError:
        return
    if shape is not None and blocks > shape.num_hidden_layers:
        raise ValueError(f"--blocks {blocks} exceeds the model's {shape.num_hidden_layers} blocks")


def _activation_device(args: argparse.Namespace, spec, cfg, calib, device: str, dtype: str) -> str | None:
    """The estimate decides where activations live (``--activations auto``) and refuses a prune that
    would not fit; None keeps them on the compute device."""
    from besa_hw.estimate import check_fits

    where = check_fits(spec, cfg, calib, device=device, dtype=dtype, activations=args.activations,
                       skip=args.no_estimate)
    return "cpu" if where == "cpu" and device != "cpu" else None


def _keep_if_resumable(partial, out) -> None:
    """After a failure: keep the finished blocks for --resume (and say so), or remove the folder
    when no block finished (nothing is left behind)."""
    import json
    import shutil
    import sys

    try:
        done = len(json.loads((partial / "progress.json").read_text())["blocks"])
    except (OSError, ValueError, KeyError, TypeError):
        done = 0
    if not done:
        shutil.rmtree(partial, ignore_errors=True)
        return
    print(f"{done} finished block(s) kept in {partial}; continue with the same command and --resume",
          file=sys.stderr)
