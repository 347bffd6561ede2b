"""``besa-hw prune``: prune a LLaMA-style model into a run folder (masks + manifest [+ model])."""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

logger = logging.getLogger(__name__)

PRESET_DIR = Path(__file__).resolve().parents[1] / "configs" / "prune"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("prune", help="prune a model with BESA / Wanda / SparseGPT / magnitude",
                              description="Prune the q/k/v/o/gate/up/down Linears of every decoder block.")
    add_prune_args(p, method_default=None)
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", dest="prune_set",
                   help="override any PruneConfig field, e.g. besa_samples=24 or besa_reconstruct=true")
    p.add_argument("--overwrite", action="store_true", help="replace an existing RUN_DIR")
    p.add_argument("--out", required=True, help="run folder to create")
    p.set_defaults(func=handle)


def add_prune_args(p: argparse.ArgumentParser, method_default: str | None = None, nsamples: int = 32,
                   seqlen: int = 512) -> None:
    g = p.add_argument_group("pruning")
    g.add_argument("--model", default="smollm2-135m", help="HF folder, hub id, .gguf file or smollm2-135m")
    g.add_argument("--gguf-file", help="GGUF file name inside the --model folder")
    g.add_argument("--method", default=method_default, required=method_default is None,
                   choices=("besa", "wanda", "sparsegpt", "magnitude"))
    g.add_argument("--preset", help="TOML preset (path or name in configs/prune), overridden by flags")
    g.add_argument("--sparsity", type=float, help="target sparsity in [0, 1) (default 0.5)")
    g.add_argument("--allocation", choices=("row", "layer"), help="BESA allocation granularity (default row)")
    g.add_argument("--importance", choices=("wanda", "magnitude", "sparsegpt"), help="BESA weight ranking")
    g.add_argument("--reconstruct", action="store_true", default=None,
                   help="BESA: rebuild kept weights with SparseGPT's OBS update after learning the allocation")
    g.add_argument("--nm", help="N:M pattern, e.g. 2:4 (keep N of every M)")
    g.add_argument("--profile", help="per-layer sparsity JSON {module_path: sparsity} or a run manifest.json")
    g.add_argument("--calib", default="pydoc",
                   help="pydoc | FILE | wikitext2 | c4 (default pydoc); segments come from the first 75%% of "
                        "pydoc or FILE (the last 25%% is held out for evaluation), the train split of wikitext2")
    g.add_argument("--nsamples", type=int, default=nsamples, help=f"calibration segments (default {nsamples})")
    g.add_argument("--seqlen", type=int, default=seqlen, help=f"tokens per segment (default {seqlen})")
    g.add_argument("--epochs", type=int, help="BESA epochs (default 1)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    g.add_argument("--save-model", action="store_true",
                   help="also save the pruned model (safetensors; with --wbits in compressed-tensors pack-quantized "
                        "format)")
    q = p.add_argument_group("quantization (weight-only, asymmetric, per group of inputs)")
    q.add_argument("--wbits", type=int, choices=(2, 3, 4, 8), help="quantize every pruned Linear to B bits")
    q.add_argument("--group-size", type=int, help="inputs per quantization group, -1 = per output channel (default 64)")
    q.add_argument("--quantizer", choices=("rtn", "lwc", "obs"),
                   help="rtn: min-max; lwc: learnable clipping (joint with the allocation for besa); obs: GPTQ-style "
                        "inside SparseGPT's OBS loop (default: lwc for besa, obs for sparsegpt, rtn otherwise)")


def _preset(name: str | None) -> dict:
    if name is None:
        return {}
    from simulator.config import read_document

    path = Path(name)
    if not path.exists():
        path = PRESET_DIR / f"{name.removesuffix('.toml')}.toml"
        if not path.is_file():
            raise FileNotFoundError(f"preset not found: {name}")
    fields = read_document(path, "preset", fmt="toml").get("prune", {})
    if not isinstance(fields, dict):
        raise ValueError(f"preset {path}: 'prune' must be a [prune] table of PruneConfig fields")
    unknown = sorted(set(fields) - _settable_fields())
    if unknown:
        raise ValueError(f"preset {path}: unknown field {unknown[0]!r}; valid: {', '.join(sorted(_settable_fields()))}")
    return dict(fields)


def _settable_fields() -> set[str]:
    """PruneConfig fields a preset or --set may give (method, seed and profile have their own flags)."""
    import dataclasses

    from pruning.config import PruneConfig

    return {f.name for f in dataclasses.fields(PruneConfig)} - {"method", "seed", "profile"}


def parse_overrides(items: list[str]) -> dict:
    """``FIELD=VALUE`` pairs checked against PruneConfig fields; values parsed as JSON when they can be."""
    import json

    names = _settable_fields()
    out = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or key not in names:
            raise ValueError(f"--set {item!r}: expected FIELD=VALUE with FIELD one of {', '.join(sorted(names))}")
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    if isinstance(out.get("nm"), str):
        from pruning.config import parse_nm
        out["nm"] = parse_nm(out["nm"])
    return out


def build_configs(args: argparse.Namespace):
    """(PruneConfig, CalibConfig) from preset + flags; raises ValueError on bad input."""
    from pruning.config import CalibConfig, PruneConfig, parse_nm
    from pruning.masks import load_profile

    fields = _preset(args.preset)
    flags = {"sparsity": args.sparsity, "besa_allocation": args.allocation, "besa_importance": args.importance,
             "besa_reconstruct": args.reconstruct, "besa_epochs": args.epochs, "wbits": args.wbits,
             "group_size": args.group_size, "quantizer": args.quantizer}
    fields.update({k: v for k, v in flags.items() if v is not None})
    if isinstance(fields.get("nm"), str):
        fields["nm"] = parse_nm(fields["nm"])
    nm = parse_nm(args.nm)
    if nm is not None:
        fields["nm"] = nm
        fields.setdefault("sparsity", 1 - nm[0] / nm[1])
    if args.profile:
        fields["profile"] = load_profile(args.profile)
    fields.update(parse_overrides(getattr(args, "prune_set", None) or []))
    try:
        cfg = PruneConfig(method=args.method, seed=args.seed, **fields)
    except TypeError as exc:
        raise ValueError(f"bad preset field: {exc}") from exc
    return cfg, CalibConfig(args.calib, args.nsamples, args.seqlen, args.seed)


def handle(args: argparse.Namespace) -> int:
    from besa_hw.models import check_context, resolve_device, resolve_model
    from besa_hw.outdir import check_out_dir, staged_dir
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


def prune_to_run(model: str, gguf_file: str | None, cfg, calib, out: str | Path, *, device: str | None = None,
                 save_model: bool = False, progress: bool = False) -> Path:
    """Library entry point: load ``model``, prune it with ``cfg`` on ``calib`` data, write the run folder
    ``out`` (which must not exist or be empty)."""
    from besa_hw.models import check_context, load_model, resolve_device
    from pruning import prune_model
    from pruning.calibration import get_calibration
    from pruning.sequential import check_model_fits

    device = resolve_device(device)
    t0 = time.perf_counter()
    lm, tok, spec = load_model(model, gguf_file, device=device)
    check_model_fits(lm, cfg)
    check_context(lm, seqlen=calib.seqlen)
    ids = get_calibration(tok, calib).to(device) if cfg.method != "magnitude" else None
    result = prune_model(lm, ids, cfg, progress=progress)
    return write_result(out, lm, tok, spec, cfg, calib, result, time.perf_counter() - t0,
                        save_model=save_model)


def write_result(out, lm, tok, spec, cfg, calib, result, wall_seconds: float, *,
                 save_model: bool = False) -> Path:
    """Build the manifest for ``result`` and write the run folder atomically."""
    import dataclasses

    from besa_hw.models import model_info
    from besa_hw.provenance import environment
    from pruning.calibration import describe_split
    from pruning.export import build_manifest, write_run

    env = environment()
    manifest = build_manifest(
        model_info=model_info(lm, spec.model_id, spec.gguf_file), method=cfg.method,
        hyperparameters=cfg.hyperparameters(), target_sparsity=cfg.sparsity,
        achieved_sparsity=result.achieved_sparsity, layers=result.layers,
        calibration=None if cfg.method == "magnitude" else dataclasses.asdict(calib) | {"dataset": calib.source},
        seed=cfg.seed, versions=env["versions"], wall_seconds=round(wall_seconds, 3))
    manifest.update(command=env["command"], git_commit=env["git_commit"])
    if manifest["calibration"] is not None:
        manifest["calibration"] = {**{k: manifest["calibration"][k] for k in ("dataset", "nsamples", "seqlen", "seed")},
                                   **describe_split(calib.source, "calibration")}

    def saver(path: Path) -> None:
        if result.quant:
            from pruning.quant_export import save_compressed_tensors
            save_compressed_tensors(lm, tok, result.quant, path)
            return
        lm.save_pretrained(path, safe_serialization=True)
        tok.save_pretrained(path)

    return write_run(out, result.masks, manifest, saver if save_model else None, quant=result.quant)
