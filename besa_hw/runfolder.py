"""Run folders: reading and checking what a prune wrote (manifest, masks, codes, saved model), and
the pruned model it stands for, in memory or block by block.

Used by every command that takes a run folder (eval, run --reuse, simulate through the simulator's
own torch-free reader, compare, the report). No argparse here.
"""

from __future__ import annotations

import logging
from pathlib import Path

logger = logging.getLogger(__name__)

__all__ = ["read_manifest", "check_run", "is_finished_run", "saved_model_dir", "read_finished_run", "load_run_model",
           "apply_codes", "apply_masks", "block_preparer"]


def read_manifest(run_dir: str | Path) -> dict:
    """A run folder's manifest, checked as a JSON object (the simulator's torch-free reader)."""
    from simulator.workload import read_manifest as read

    return read(run_dir)


def check_run(run_dir: str | Path, need_model_id: bool = True) -> dict:
    """Validate a finished run folder before any work: its manifest (naming the base model when
    ``need_model_id``), its layers and a readable masks file. Returns the manifest."""
    from simulator.workload import run_ops

    manifest = read_manifest(run_dir)
    run_ops(run_dir, 1)  # manifest model dims and layers, masks file header; no mask is read
    if need_model_id and not manifest["model"].get("id"):
        raise ValueError(f"{Path(run_dir) / 'manifest.json'}: 'model' lacks the key 'id' (the base model)")
    return manifest


def is_finished_run(run_dir: str | Path) -> bool:
    run_dir = Path(run_dir)
    return (run_dir / "manifest.json").is_file() and (run_dir / "masks.safetensors").is_file()


def saved_model_dir(run_dir: str | Path) -> Path | None:
    """The run's saved pruned model, or None when masks (and codes) on the base model reproduce it.

    Raises ValueError for a run that changed weights (sparsegpt, --reconstruct) without saving them
    or their quantized codes.
    """
    from pruning.export import MODEL_DIR
    from pruning.quant_export import QUANT

    saved = Path(run_dir) / MODEL_DIR
    if saved.is_dir():
        return saved
    manifest = read_manifest(run_dir)
    if manifest.get("hyperparameters", {}).get("weights_updated") and not (Path(run_dir) / QUANT).is_file():
        raise ValueError(f"run {run_dir} updated weights ({manifest['method']}) but has no saved model; "
                         "re-run prune with --save-model")
    return None


def read_finished_run(run_dir: str | Path) -> tuple[dict, dict]:
    """(masks, manifest) of a run folder that pruned every block (ValueError for a ``prune --blocks``
    measurement run, with the simulator's wording and check)."""
    from pruning.export import read_run
    from simulator.workload import check_complete

    check_complete(read_manifest(run_dir), run_dir)
    return read_run(run_dir)


def load_run_model(run_dir: str | Path, device: str = "cpu", base=None):
    """(model, tokenizer, manifest) of a run: its saved model, or the base model with the masks applied.

    ``base`` is an already loaded (model, tokenizer) of the base model, masked in place instead of
    loading it again.
    """
    from besa_hw.models import load_model

    saved = saved_model_dir(run_dir)
    masks, manifest = read_finished_run(run_dir)
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


def block_preparer(run_dir: str | Path, manifest: dict):
    """``prepare(i, block)`` for a block-by-block evaluation: zero block i's pruned weights and put
    its quantized codes in, reading only that block's masks and codes from the run folder."""
    import torch
    from safetensors import safe_open

    from pruning.export import MASKS
    from pruning.quant_export import QUANT, load_quant

    layers = manifest.get("layers") or {}
    quant = Path(run_dir) / QUANT

    @torch.no_grad()
    def prepare(index: int, block) -> None:
        prefix = f"model.layers.{index}."
        mine = {k: v for k, v in layers.items() if k.startswith(prefix)}
        modules = dict(block.named_modules())
        with safe_open(str(Path(run_dir) / MASKS), framework="pt", device="cpu") as fh:
            for key in mine:
                w = modules[key[len(prefix):]].weight
                mask = fh.get_tensor(key)
                if tuple(w.shape) != tuple(mask.shape):
                    raise ValueError(f"mask {key} {tuple(mask.shape)} does not match the model")
                w.mul_(mask.to(w.device, w.dtype))
        if quant.is_file():
            for key, q in load_quant(quant, mine).items():
                w = modules[key[len(prefix):]].weight
                w.copy_(q.dequantize().to(w.device, w.dtype))
    return prepare
