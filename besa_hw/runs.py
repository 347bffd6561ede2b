"""Run folders and models: prune a model into a run folder, and load a run's pruned model back.

Library functions shared by several commands (prune, run, eval); no argparse here.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

logger = logging.getLogger(__name__)

__all__ = ["prune_to_run", "write_result", "saved_model_dir", "load_run_model", "apply_codes", "apply_masks"]


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
