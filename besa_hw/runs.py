"""The prune pipeline: a model pruned into a run folder, streamed block by block where it can be,
with a checkpoint per finished block (resume) and one manifest. The one path `prune` and `run` take.

Reading a run folder back is :mod:`besa_hw.runfolder`; no argparse here.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

logger = logging.getLogger(__name__)

__all__ = ["prune_to_run", "write_result", "hw_target_record"]


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
    if cfg.needs_data:  # magnitude pruning reads no calibration text: its length does not matter
        check_context(lm, seqlen=calib.seqlen)
    checkpoint = None
    if checkpoint_dir is not None:
        checkpoint = BlockCheckpoint(checkpoint_dir, _fingerprint(spec, cfg, calib, dtype, device), resume=resume)
    ids = get_calibration(tok, calib).to(device) if cfg.needs_data else None
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
    from besa_hw.models import model_info
    from besa_hw.provenance import environment
    from pruning.calibration import calibration_part, describe_split
    from pruning.export import build_manifest, write_run

    env = environment()
    calibration = None
    if cfg.needs_data:
        calibration = {"dataset": calib.source, "nsamples": calib.nsamples, "seqlen": calib.seqlen, "seed": calib.seed,
                       **describe_split(calib.source, "calibration", calibration_part(calib.source, calib.part))}
    extra = {"hw_target": hw_target_record(cfg.hw_target, result.layers)} if cfg.hw_target is not None else {}
    manifest = build_manifest(
        model_info=model_info(lm, spec.model_id, spec.gguf_file), method=cfg.method,
        hyperparameters=cfg.hyperparameters(), target_sparsity=cfg.sparsity,
        achieved_sparsity=result.achieved_sparsity, layers=result.layers, calibration=calibration,
        seed=cfg.seed, versions=env["versions"], wall_seconds=round(wall_seconds, 3), command=env["command"],
        git_commit=env["git_commit"], blocks_pruned=result.blocks or lm.config.num_hidden_layers,
        streamed=source is not None, block_seconds=result.block_seconds, extra=extra | cuda_memory())

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
    """The hardware target of a run and the speedup it predicts for the result: each layer at the cycles
    it was priced at with its real mask where recorded, else at its latency table's."""
    cycles = latency.other + sum(rec["cycles"] if "cycles" in rec else
                                 latency.cycles(rec["op"], rec["achieved_sparsity"], rec.get("format"))
                                 for rec in layers.values())
    formats = [rec.get("format") for rec in layers.values()]
    return {**latency.summary(), "predicted_speedup": round(latency.dense_total / cycles, 4),
            "formats": {f: formats.count(f) for f in sorted(set(formats) - {None})}}


def check_blocks(blocks: int | None, spec) -> None:
    """--blocks against the model's block count, before anything loads (when the config tells it)."""
    from besa_hw.estimate import shape_of

    if blocks is None:
        return
    if blocks < 1:
        raise ValueError(f"--blocks must be >= 1, got {blocks}")
    try:
        shape = shape_of(spec.source if spec.gguf_file is None else spec.model_id)
    except ValueError:
        return
    if shape is not None and blocks > shape.num_hidden_layers:
        raise ValueError(f"--blocks {blocks} exceeds the model's {shape.num_hidden_layers} blocks")


def check_unfinished(out: str | Path, resume: bool, overwrite: bool) -> Path:
    """The folder of an unfinished prune into ``out`` (its checkpoint); refused when one exists and
    neither ``resume`` nor ``overwrite`` says what to do with it."""
    from besa_hw.outdir import partial_dir

    partial = partial_dir(out)
    if (partial / "progress.json").is_file() and not (resume or overwrite):
        raise ValueError(f"an unfinished prune into {out} exists ({partial}); pass --resume to continue it "
                         "or --overwrite to start over")
    return partial


def activation_device(spec, cfg, calib, device: str, dtype: str, activations: str, skip: bool) -> str | None:
    """The estimate decides where activations live (``activations`` auto) and refuses a prune that
    would not fit; None keeps them on the compute device."""
    from besa_hw.estimate import check_fits

    where = check_fits(spec, cfg, calib, device=device, dtype=dtype, activations=activations, skip=skip)
    return "cpu" if where == "cpu" and device != "cpu" else None


def keep_if_resumable(partial: Path, out: str | Path) -> None:
    """After a failure: keep the finished blocks for --resume (and say so), or remove the folder
    when no block finished (nothing is left behind). An unreadable progress file is left as it is."""
    import json
    import shutil
    import sys

    progress = partial / "progress.json"
    if not progress.is_file():
        shutil.rmtree(partial, ignore_errors=True)
        return
    try:
        done = len(json.loads(progress.read_text())["blocks"])
    except (OSError, ValueError, KeyError, TypeError):
        print(f"{progress} cannot be read; the unfinished prune in {partial} is left as it was", file=sys.stderr)
        return
    if not done:
        shutil.rmtree(partial, ignore_errors=True)
        return
    print(f"{done} finished block(s) kept in {partial}; continue with the same command and --resume",
          file=sys.stderr)
