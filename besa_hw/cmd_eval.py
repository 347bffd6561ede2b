"""``besa-hw eval``: perplexity of a run folder's pruned model, or of any model, on a text file."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

logger = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("eval", help="perplexity of a pruned run or a model",
                              description="Perplexity over non-overlapping windows: exp(mean token NLL).")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--run", help="run folder written by `besa-hw prune` (its manifest gets the result)")
    src.add_argument("--model", help="HF folder, hub id, .gguf file or smollm2-135m")
    p.add_argument("--gguf-file", help="GGUF file name inside the --model folder")
    p.add_argument("--data", required=True,
                   help="evaluation text: FILE | wikitext2 | c4 | pydoc; only its held-out part is used (the last "
                        "25%% of FILE or pydoc, the test split of wikitext2, a validation shard of c4)")
    p.add_argument("--seqlen", type=int, default=512)
    p.add_argument("--max-windows", type=int, default=40, help="bound on windows (CPU time); 0 = all")
    p.add_argument("--dense", action="store_true", help="with --run: also evaluate the unpruned model")
    p.add_argument("--device", default=None)
    p.set_defaults(func=handle)


def saved_model_dir(run_dir: str | Path) -> Path | None:
    """The run's saved pruned model, or None when masks (and codes) on the base model reproduce it.

    Raises ValueError for a run that changed weights (sparsegpt, --reconstruct) without saving them
    or their quantized codes.
    """
    from pruning.export import MODEL_DIR, read_manifest
    from pruning.quant_export import QUANT

    saved = Path(run_dir) / MODEL_DIR
    if saved.is_dir():
        return saved
    manifest = read_manifest(run_dir)
    if manifest.get("hyperparameters", {}).get("weights_updated") and not (Path(run_dir) / QUANT).is_file():
        raise ValueError(f"run {run_dir} updated weights ({manifest['method']}) but has no saved model; "
                         "re-run prune with --save-model")
    return None


def load_run_model(run_dir: str | Path, device: str = "cpu", base=None):
    """(model, tokenizer, manifest) of a run: its saved model, or the base model with the masks applied.

    ``base`` is an already loaded (model, tokenizer) of the base model, masked in place instead of
    loading it again.
    """
    from besa_hw.models import load_model
    from pruning.export import read_run

    saved = saved_model_dir(run_dir)
    masks, manifest = read_run(run_dir)
    if saved is not None:
        lm, tok, _ = load_model(str(saved), device=device)
        return lm, tok, manifest
    spec = manifest["model"]
    lm, tok = base if base is not None else load_model(spec["id"], spec.get("gguf_file"), device=device)[:2]
    apply_masks(lm, masks)
    apply_codes(lm, run_dir, manifest)
    return lm, tok, manifest


def apply_codes(lm, run_dir: str | Path, manifest: dict) -> None:
    """Replace quantized Linears' weights by their dequantized codes (a run's quant.safetensors, if any)."""
    import torch

    from pruning.quant_export import QUANT, load_quant

    path = Path(run_dir) / QUANT
    if not path.is_file():
        return
    modules = dict(lm.named_modules())
    with torch.no_grad():
        for key, q in load_quant(path, manifest.get("layers") or {}).items():
            w = modules[key].weight
            if tuple(w.shape) != tuple(q.codes.shape):
                raise ValueError(f"{path}: codes of {key} {tuple(q.codes.shape)} do not match the model")
            w.copy_(q.dequantize().to(w.device, w.dtype))


def apply_masks(lm, masks: dict) -> None:
    """Zero the pruned weights of ``lm`` in place (mask True = kept)."""
    import torch

    modules = dict(lm.named_modules())
    with torch.no_grad():
        for path, mask in masks.items():
            if path not in modules or tuple(modules[path].weight.shape) != tuple(mask.shape):
                raise ValueError(f"mask {path} {tuple(mask.shape)} does not match the model")
            w = modules[path].weight
            w.mul_(mask.to(w.device, w.dtype))


def handle(args: argparse.Namespace) -> int:
    from besa_hw.models import check_context, load_model, resolve_device, resolve_model
    from besa_hw.runjob import EvalConfig, check_run, evaluate_run
    from pruning.calibration import check_source, describe_split, load_text, tokenize
    from pruning.eval import perplexity

    if args.seqlen < 2:
        raise ValueError(f"--seqlen must be >= 2, got {args.seqlen}")
    if args.max_windows < 0:
        raise ValueError(f"--max-windows must be >= 0 (0 = all), got {args.max_windows}")
    if args.run:
        check_run(args.run)
    else:
        resolve_model(args.model, args.gguf_file)
    check_source(args.data, "evaluation text")
    device = resolve_device(args.device)
    windows = args.max_windows or None
    if args.model:
        check_context(resolve_model(args.model, args.gguf_file), seqlen=args.seqlen)
        lm, tok, _ = load_model(args.model, args.gguf_file, device=device)
        check_context(lm, seqlen=args.seqlen)
        ppl = perplexity(lm, tokenize(tok, load_text(args.data, "evaluation")), args.seqlen, windows, progress=True)
        print(f"evaluated on {args.data}: {describe_split(args.data, 'evaluation')['split']}")
        print(f"perplexity: {ppl:.4f}")
        return 0
    ppl = evaluate_run(args.run, EvalConfig(args.data, args.seqlen, windows), device, dense=args.dense,
                       progress=True)
    if ppl["dense"] is not None:
        print(f"dense perplexity: {ppl['dense']:.4f}")
    print(f"perplexity: {ppl['pruned']:.4f}")
    return 0
