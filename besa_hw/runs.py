"""Run folders and models: prune a model into a run folder, and load a run's pruned model back.

Library functions shared by several commands (prune, run, eval); no argparse here.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

logger = logging.getLogger(__name__)

__all__ = ["prune_to_run", "write_result", "saved_model_dir", "read_finished_run", "load_run_model", "apply_codes",
           "apply_masks"]


def prune_to_run(model: str, gguf_file: str | None, cfg, calib, out: str | Path, *, device: str | None = None,
                 save_model: bool = False, progress: bool = False, dtype: str = "float32",
                 blocks: int | None = None, checkpoint_dir: str | Path | None = None, resume: bool = False,
                 activations: str | None = None) -> Path:
    """Library entry point: prune ``model`` with ``cfg`` on ``calib`` data into the run folder ``out``
    (which must not exist or be empty).

    A local safetensors folder is streamed one block at a time (:mod:`pruning.streaming`), unless
    ``save_model`` with quantization needs the whole model for the compressed-tensors export; other
    models (GGUF, hub ids) are loaded whole. ``checkpoint_dir`` receives every finished block (a
    streamed prune needs one; ``resume`` continues from it); it is removed once ``out`` is written.
    ``blocks`` prunes only the first N blocks (a measurement run: eval and simulate refuse it).
    ``activations``: device of the calibration activations (None: the compute device).
    """
    from besa_hw.models import check_context, load_model, resolve_device, resolve_model
    from pruning import prune_model
    from pruning.calibration import get_calibration
    from pruning.checkpoint import BlockCheckpoint
    from pruning.sequential import check_model_fits
    from pruning.streaming import StreamedModel, is_streamable, parse_dtype

    device = resolve_device(device)
    t0 = time.perf_counter()
    spec = resolve_model(model, gguf_file)
    if spec.gguf_file is None and is_streamable(spec.source) and not (save_model and cfg.wbits):
        from transformers import AutoTokenizer

        src = StreamedModel(spec.source, device=device, dtype=parse_dtype(dtype))
        tok, lm = AutoTokenizer.from_pretrained(spec.source), src.model
    else:
        lm, tok, spec = load_model(model, gguf_file, device=device, dtype=dtype)
        src = lm
    check_model_fits(lm, cfg)
    check_context(lm, seqlen=calib.seqlen)
    checkpoint = None
    if checkpoint_dir is not None:
        checkpoint = BlockCheckpoint(checkpoint_dir, _fingerprint(spec, cfg, calib, dtype, device), resume=resume)
    ids = get_calibration(tok, calib).to(device) if cfg.method != "magnitude" else None
    result = prune_model(src, ids, cfg, progress=progress, checkpoint=checkpoint, blocks=blocks,
                         act_device=activations)
    path = write_result(out, lm, tok, spec, cfg, calib, result, time.perf_counter() - t0,
                        save_model=save_model, checkpoint=checkpoint if src is not lm else None,
                        source=src if src is not lm else None)
    if checkpoint is not None:
        checkpoint.remove()
    return path


def _fingerprint(spec, cfg, calib, dtype: str, device: str) -> dict:
    """What decides a prune's result: a checkpoint is resumed only under the same fingerprint."""
    import dataclasses

    return {"model": spec.model_id, "gguf_file": spec.gguf_file, "method": cfg.method,
            "hyperparameters": cfg.hyperparameters(), "profile": dict(cfg.profile or {}),
            "calibration": dataclasses.asdict(calib), "dtype": dtype, "device": str(device).split(":")[0]}


def cuda_memory() -> dict:
    """This process's CUDA memory when it used a GPU: the allocator's peaks and the context
    (memory in use on the device beyond the allocator's reservation; assumes no other process)."""
    import torch

    if not (torch.cuda.is_available() and torch.cuda.is_initialized()):
        return {}
    free, total = torch.cuda.mem_get_info()
    reserved = torch.cuda.memory_reserved()
    return {"cuda_peak_allocated_gb": round(torch.cuda.max_memory_allocated() / 1e9, 3),
            "cuda_peak_reserved_gb": round(torch.cuda.max_memory_reserved() / 1e9, 3),
            "cuda_context_gb": round(max(total - free - reserved, 0) / 1e9, 3)}


def write_result(out, lm, tok, spec, cfg, calib, result, wall_seconds: float, *,
                 save_model: bool = False, checkpoint=None, source=None) -> Path:
    """Build the manifest for ``result`` and write the run folder atomically.

    For a streamed prune, ``checkpoint`` holds the masks and codes (streamed into the run's files)
    and ``source`` (the :class:`pruning.streaming.StreamedModel`) the base weights for ``model/``.
    """
    import dataclasses

    from besa_hw.models import model_info
    from besa_hw.provenance import environment
    from pruning.calibration import calibration_part, describe_split
    from pruning.export import build_manifest, write_run

    env = environment()
    manifest = build_manifest(
        model_info=model_info(lm, spec.model_id, spec.gguf_file), method=cfg.method,
        hyperparameters=cfg.hyperparameters(), target_sparsity=cfg.sparsity,
        achieved_sparsity=result.achieved_sparsity, layers=result.layers,
        calibration=None if cfg.method == "magnitude" else dataclasses.asdict(calib) | {"dataset": calib.source},
        seed=cfg.seed, versions=env["versions"], wall_seconds=round(wall_seconds, 3))
    manifest.update(command=env["command"], git_commit=env["git_commit"])
    n_blocks = lm.config.num_hidden_layers
    manifest["blocks_pruned"] = result.blocks or n_blocks
    if cfg.hw_target is not None:
        manifest["hw_target"] = hw_target_record(cfg.hw_target, result.layers)
    manifest["streamed"] = source is not None
    manifest["block_seconds"] = result.block_seconds
    manifest.update(cuda_memory())
    if manifest["calibration"] is not None:
        manifest["calibration"] = {**{k: manifest["calibration"][k] for k in ("dataset", "nsamples", "seqlen", "seed")},
                                   **describe_split(calib.source, "calibration",
                                                   calibration_part(calib.source, calib.part))}

    def saver(path: Path) -> None:
        if source is not None:
            from pruning.streaming import save_streamed_model
            save_streamed_model(source, checkpoint, path, blocks=manifest["blocks_pruned"])
            return
        if result.quant:
            from pruning.quant_export import save_compressed_tensors
            save_compressed_tensors(lm, tok, result.quant, path)
            return
        lm.save_pretrained(path, safe_serialization=True)
        tok.save_pretrained(path)

    return write_run(out, result.masks, manifest, saver if save_model else None, quant=result.quant,
                     checkpoint=checkpoint)


def hw_target_record(latency, layers: dict) -> dict:
    """The hardware target of a run and the speedup its latency table predicts for the result."""
    cycles = latency.other + sum(latency.cycles(rec["op"], rec["achieved_sparsity"], rec.get("format"))
                                 for rec in layers.values())
    formats = [rec.get("format") for rec in layers.values()]
    return {**latency.summary(), "predicted_speedup": round(latency.dense_total / cycles, 4),
            "formats": {f: formats.count(f) for f in sorted(set(formats) - {None})}}


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


def read_finished_run(run_dir: str | Path) -> tuple[dict, dict]:
    """(masks, manifest) of a run folder that pruned every block (ValueError for a ``prune --blocks``
    measurement run, with the simulator's wording and check)."""
    from pruning.export import read_manifest, read_run
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
