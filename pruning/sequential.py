"""The one shared block-by-block loop used by every method.

The inputs of block 0 are captured with a ``forward_pre_hook(with_kwargs=True)`` that keeps every
keyword argument (``position_embeddings``, ``attention_mask``, ...). The forward is stopped without
exceptions: the decoder runs with its layer list temporarily cut to block 0, and through the base
model (no LM head). Each block then sees the outputs of the already-pruned blocks before it
(as in SparseGPT, arXiv 2301.00774, and BESA, arXiv 2402.16880).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import torch
from torch import nn
from tqdm.auto import tqdm

from pruning.arch import block_linears, decoder_layers, module_path
from pruning.checkpoint import BlockCheckpoint
from pruning.config import PruneConfig
from pruning.methods import METHOD_FNS, BlockJob
from pruning.masks import mask_sparsity, row_sparsity_summary
from pruning.quant import QuantParams, group_width
from pruning.quantizers import quantize_block
from pruning.stats import check_finite, collect_input_stats
from pruning.streaming import LoadedModel

logger = logging.getLogger(__name__)


@dataclass
class PruneResult:
    """Masks (module path -> bool keep mask, on CPU), codes when quantized, per-layer records in model order."""

    masks: dict[str, torch.Tensor] = field(default_factory=dict)
    quant: dict[str, QuantParams] = field(default_factory=dict)
    layers: dict[str, dict] = field(default_factory=dict)
    block_sparsity: list[float] = field(default_factory=list)
    seconds: float = 0.0
    blocks: int = 0  # blocks pruned (all of the model's unless ``prune_model(blocks=N)``)
    block_seconds: list[float] = field(default_factory=list)  # wall time of each block (load to release)
    kept: int = 0    # kept weights over every pruned Linear (counted as each block finishes)
    total: int = 0

    @property
    def achieved_sparsity(self) -> float:
        return 1.0 - self.kept / max(self.total, 1)


class _Catcher(nn.Module):
    """Stands in for the decoder layers while block 0's inputs are captured: records the hidden
    states and keyword arguments it is called with and passes the hidden states through."""

    def __init__(self) -> None:
        super().__init__()
        self.hidden: list[torch.Tensor] = []
        self.kwargs: dict = {}

    def forward(self, hidden_states: torch.Tensor, **kwargs) -> torch.Tensor:
        self.hidden.append(hidden_states.detach())
        if not self.kwargs:
            self.kwargs.update(kwargs)
        return hidden_states


@torch.no_grad()
def capture_block_inputs(model: nn.Module, calib_ids: torch.Tensor,
                         act_device: torch.device | str | None = None) -> tuple[torch.Tensor, dict]:
    """Hidden states (N, T, H) entering block 0 (kept on ``act_device``, default the model's) and the
    block's keyword arguments (captured once, on the model's device).

    The decoder runs embeddings, rotary set-up and the mask with its layer list replaced by a
    catcher, so no block needs to be materialised (block streaming) and none is run.
    """
    layers = decoder_layers(model)
    inner, catcher = model.model, _Catcher()
    inner.layers = nn.ModuleList([catcher])
    out = None
    try:
        for n, row in enumerate(calib_ids):
            inner(input_ids=row.unsqueeze(0), use_cache=False)
            h = catcher.hidden.pop()
            if out is None:  # filled in place: no second copy of the activations
                out = torch.empty((len(calib_ids), *h.shape[1:]), dtype=h.dtype, device=act_device or h.device)
            out[n] = h[0]
    finally:
        inner.layers = layers
    kwargs = catcher.kwargs
    kwargs["use_cache"] = False
    kwargs.pop("cache", None)
    kwargs.pop("past_key_values", None)
    return out, kwargs


@torch.no_grad()
def run_block(block: nn.Module, hidden: torch.Tensor, kwargs: dict, batch: int) -> torch.Tensor:
    """Forward ``hidden`` (N, T, H) through ``block`` in chunks of ``batch`` samples; each chunk is
    moved to the block's device and its output back to ``hidden``'s (activations may live on the CPU)."""
    device, result = next(block.parameters()).device, torch.empty_like(hidden)  # no second copy via cat
    for i in range(0, hidden.shape[0], batch):
        out = block(hidden[i:i + batch].to(device), **kwargs)
        result[i:i + batch] = out[0] if isinstance(out, tuple) else out
    return result


def all_finite(hidden: torch.Tensor, batch: int) -> bool:
    """``torch.isfinite(hidden).all()``, a chunk of samples at a time: the whole-stream check makes
    temporaries of the stream's size (a bool tensor; more on CUDA) at the block's peak."""
    return all(bool(torch.isfinite(hidden[i:i + batch]).all()) for i in range(0, hidden.shape[0], batch))


def layer_targets(model: nn.Module, cfg: PruneConfig) -> dict[str, float]:
    """Target sparsity per module path (profile entries override the uniform sparsity)."""
    paths = [module_path(i, op) for i in range(len(decoder_layers(model))) for op in block_linears(model.model.layers[0])]
    if cfg.profile is None:
        return {p: cfg.sparsity for p in paths}
    unknown = sorted(set(cfg.profile) - set(paths))
    if unknown:
        raise ValueError(f"profile names modules this model does not have: {', '.join(unknown[:3])}")
    missing = [p for p in paths if p not in cfg.profile]
    if missing:
        logger.warning("profile misses %d layers; they use the uniform sparsity %g", len(missing), cfg.sparsity)
    return {p: float(cfg.profile.get(p, cfg.sparsity)) for p in paths}


def check_model_fits(model: nn.Module, cfg: PruneConfig) -> None:
    """Validate the config against the model before any work (N:M must divide every input width)."""
    layers = decoder_layers(model)
    if cfg.wbits is not None:
        for lin in block_linears(layers[0]).values():
            group_width(lin.in_features, cfg.group_size)
    if cfg.nm is not None:
        for op, lin in block_linears(layers[0]).items():
            if lin.in_features % cfg.nm[1]:
                raise ValueError(f"N:M {cfg.nm[0]}:{cfg.nm[1]} does not divide the input width "
                                 f"{lin.in_features} of {op}")
    layer_targets(model, cfg)


def _record(result: PruneResult, index: int, masks: dict[str, torch.Tensor], targets: dict[str, float],
            quant: dict[str, QuantParams], quantizer: str | None, keep: bool = True,
            formats: dict[str, str] | None = None, cycles: dict[str, float] | None = None) -> None:
    """Per-layer records of block ``index`` into ``result``; masks and codes too when ``keep``
    (a streamed prune leaves them in its checkpoint); ``formats``: the storage format a hardware
    target chose per op; ``cycles``: what it priced each at with the real mask."""
    kept = total = 0
    for op, mask in masks.items():
        path = module_path(index, op)
        mask = mask.detach().to("cpu", torch.bool)
        if keep:
            result.masks[path] = mask
        result.layers[path] = {"block": index, "op": op, "shape": list(mask.shape),
                               "target_sparsity": targets[op], "achieved_sparsity": mask_sparsity(mask),
                               "row_sparsity": row_sparsity_summary(mask)}
        if formats:
            result.layers[path]["format"] = formats[op]
        if cycles and op in cycles:
            result.layers[path]["cycles"] = round(cycles[op], 1)
        if op in quant:
            q = quant[op]
            if keep:
                result.quant[path] = QuantParams(q.codes.cpu(), q.scales.cpu(), q.zeros.cpu(), q.bits, q.group)
            result.layers[path]["quant"] = {"bits": q.bits, "group_size": q.group, "quantizer": quantizer}
        kept, total = kept + int(mask.sum()), total + mask.numel()
    result.block_sparsity.append(1.0 - kept / total)
    result.kept, result.total = result.kept + kept, result.total + total


def _uses_dense_stream(cfg: PruneConfig) -> bool:
    return cfg.method == "besa" and cfg.besa_target == "dense"


def _training_subset(n: int, cfg: PruneConfig) -> torch.Tensor | None:
    """Fixed seeded subset of segments for BESA's learning when only the dense stream needs them all.

    With a dense-stream target and no OBS step, the pruned stream only feeds the allocation
    learning, so it is propagated for ``besa_samples`` segments instead of all of them
    (statistics and targets still use every segment).
    """
    if not (_uses_dense_stream(cfg) and not cfg.needs_hessian and cfg.besa_samples and cfg.besa_samples < n):
        return None
    return torch.randperm(n, generator=torch.Generator().manual_seed(cfg.seed))[: cfg.besa_samples]


def _dense_pass(job: BlockJob, hidden: torch.Tensor, dense_stream: torch.Tensor | None,
                subset: torch.Tensor | None) -> torch.Tensor:
    """Run the still-dense block, collecting its input statistics into ``job``; returns its outputs.

    With a dense stream (BESA's default target) the block runs on the dense model's inputs; OBS
    (SparseGPT update / score) still needs X^T X of the real, pruned-stream inputs: one more pass.
    """
    cfg = job.config
    src = hidden if dense_stream is None else dense_stream
    with collect_input_stats(job.linears, cfg.needs_hessian and dense_stream is None) as job.stats:
        dense = run_block(job.block, src, job.kwargs, cfg.forward_batch)
    if dense_stream is not None and cfg.needs_hessian:
        with collect_input_stats(job.linears, True) as job.stats:
            run_block(job.block, hidden, job.kwargs, cfg.forward_batch)
    check_finite(job.stats, job.index)
    if cfg.needs_targets:
        job.dense_out = dense if subset is None else dense[subset.to(dense.device)]
    return dense


@torch.no_grad()
def _apply_masks(linears: dict[str, nn.Linear], masks: dict[str, torch.Tensor]) -> None:
    for op, lin in linears.items():
        lin.weight.mul_(masks[op].to(lin.weight.device, lin.weight.dtype))


@torch.no_grad()
def _restore_block(linears: dict[str, nn.Linear], saved: tuple) -> None:
    """Put a finished block's final weights back (resume): saved weights, or the masks applied."""
    masks, _quant, weights = saved
    if weights:
        for op, lin in linears.items():
            lin.weight.copy_(weights[op].to(lin.weight.device, lin.weight.dtype))
    else:
        _apply_masks(linears, masks)


def _prune_block(i: int, block: nn.Module, targets: dict, hidden, dense_stream, subset, kwargs: dict,
                 cfg: PruneConfig, carry: dict, checkpoint: BlockCheckpoint | None, result: PruneResult, *,
                 keep: bool, last: bool, started: float) -> tuple:
    """Prune block ``i`` in place, record it (and write it to ``checkpoint``); returns the pruned
    stream after the block (unless ``last``) and the dense stream."""
    linears = block_linears(block)
    job = BlockJob(i, block, linears, targets, cfg, inputs=hidden, kwargs=kwargs, carry=carry)
    if hidden is not None:
        dense = _dense_pass(job, hidden, dense_stream, subset)
        dense_stream = None if dense_stream is None else dense
        del dense
    masks = METHOD_FNS[cfg.method](job)
    _apply_masks(linears, masks)
    quantize_block(job, masks)  # no-op without wbits; pruned weights stay exactly 0
    _record(result, i, masks, targets, job.quant, cfg.quant_method, keep=keep, formats=job.info.get("formats"),
            cycles=job.info.get("cycles"))
    logger.debug("block %d: sparsity %.4f %s", i, result.block_sparsity[-1], job.info)
    if hidden is not None and not last:
        hidden = run_block(block, hidden, kwargs, cfg.forward_batch)
        if not all_finite(hidden, cfg.forward_batch):
            raise ValueError(f"NaN/inf activations at the outputs of pruned block {i}")
    result.block_seconds.append(round(time.perf_counter() - started, 3))
    if checkpoint is not None:
        layer_recs = {module_path(i, op): result.layers[module_path(i, op)] for op in linears}
        checkpoint.save(i, masks, job.quant,
                        {op: lin.weight for op, lin in linears.items()} if cfg.updates_weights else None,
                        {"layers": layer_recs, "carry": dict(carry), "seconds": result.block_seconds[-1]})
    return hidden, dense_stream


def _replay_block(i: int, block: nn.Module, targets: dict, hidden, dense_stream, kwargs: dict, cfg: PruneConfig,
                  checkpoint: BlockCheckpoint, result: PruneResult, *, keep: bool, last: bool) -> tuple:
    """Block ``i`` finished before an interruption: its dense output (dense stream), its saved final
    weights, its pruned output; returns (pruned stream, dense stream, carry) as the prune left them."""
    if dense_stream is not None:
        dense_stream = run_block(block, dense_stream, kwargs, cfg.forward_batch)
    saved = checkpoint.load(i)
    _restore_block(block_linears(block), saved)
    rec = checkpoint.record(i)
    _record(result, i, saved[0], targets, saved[1], cfg.quant_method, keep=keep)
    result.block_seconds.append(rec.get("seconds", 0.0))
    if hidden is not None and not last:
        hidden = run_block(block, hidden, kwargs, cfg.forward_batch)
    return hidden, dense_stream, dict(rec.get("carry", {}))


def as_blocks(model) -> LoadedModel:
    return model if isinstance(model, LoadedModel) else LoadedModel(model)


def prune_model(model, calib_ids: torch.Tensor | None, cfg: PruneConfig, progress: bool = False, *,
                checkpoint: BlockCheckpoint | None = None, blocks: int | None = None,
                act_device: torch.device | str | None = None) -> PruneResult:
    """Prune ``model`` block by block; ``calib_ids`` (N, T) token ids on the model's device.

    ``model`` is an ``nn.Module`` (pruned in place) or a :class:`pruning.streaming.StreamedModel`
    (one block materialised at a time; results go to ``checkpoint`` only). With ``checkpoint``
    every finished block is written out at once, and a checkpoint opened with ``resume`` skips its
    finished blocks: they are replayed (one forward each) to rebuild the activations, so the result
    equals an uninterrupted run's. ``blocks`` prunes only the first N blocks (measurements).
    ``act_device`` keeps the calibration activations there (e.g. ``cpu`` when they do not fit on
    the GPU); chunks move to the block's device for each forward.

    Returns masks keyed by module path (in memory unless streamed) plus per-layer records.
    """
    src = as_blocks(model)
    if src.streamed and checkpoint is None:
        raise ValueError("a streamed model needs a checkpoint folder for its results")
    check_model_fits(src.model, cfg)
    if cfg.owl_m is not None:  # OWL: per-block sparsity from a dense pass, then the method as usual
        from dataclasses import replace

        from pruning.owl import owl_profile
        if calib_ids is None:
            raise ValueError("OWL needs calibration data")
        cfg = replace(cfg, profile=owl_profile(model, calib_ids, cfg.sparsity, cfg.owl_m, cfg.owl_lambda,
                                               cfg.forward_batch, act_device), owl_m=None)
    all_targets = layer_targets(src.model, cfg)
    n_blocks = len(src) if blocks is None else blocks
    if not 1 <= n_blocks <= len(src):
        raise ValueError(f"--blocks must be in [1, {len(src)}] (the model's blocks), got {blocks}")
    result, t0, carry = PruneResult(), time.perf_counter(), {}
    hidden, kwargs = (None, {})
    if cfg.needs_data:
        if calib_ids is None:
            raise ValueError(f"method {cfg.method} needs calibration data")
        with src.embedding():
            hidden, kwargs = capture_block_inputs(src.model, calib_ids, act_device)
    # BESA may fit each pruned block to the *dense model's* block outputs (a dense stream kept
    # alongside), so later blocks can compensate the error of earlier ones.
    dense_stream = hidden.clone() if hidden is not None and _uses_dense_stream(cfg) else None
    subset = None if hidden is None else _training_subset(hidden.shape[0], cfg)
    if subset is not None:
        hidden = hidden[subset.to(hidden.device)]
    start = 0 if checkpoint is None else min(checkpoint.done, n_blocks)
    if start:
        logger.info("resuming after %d finished blocks", start)
    bar = tqdm(range(n_blocks), desc=f"prune {cfg.method}", unit="block", disable=not progress)
    for i in bar:
        tb = time.perf_counter()
        block = src.load_block(i)
        targets = {op: all_targets[module_path(i, op)] for op in block_linears(block)}
        last = i + 1 == n_blocks
        if i < start:  # finished before an interruption: replay it to rebuild the activations
            hidden, dense_stream, carry = _replay_block(i, block, targets, hidden, dense_stream, kwargs, cfg,
                                                        checkpoint, result, keep=not src.streamed, last=last)
        else:
            hidden, dense_stream = _prune_block(i, block, targets, hidden, dense_stream, subset, kwargs, cfg,
                                                carry, checkpoint, result, keep=not src.streamed, last=last,
                                                started=tb)
        # Helpers return before the block goes: nothing of it outlives the release.
        del block
        src.release_block(i)
    result.seconds = time.perf_counter() - t0
    result.blocks = n_blocks
    logger.info("pruned %d blocks with %s: sparsity %.4f in %.1f s", n_blocks, cfg.method,
                result.achieved_sparsity, result.seconds)
    return result
