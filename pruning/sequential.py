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
from pruning.config import PruneConfig
from pruning.methods import METHOD_FNS, BlockJob, needs_data, needs_hessian, needs_targets
from pruning.masks import mask_sparsity, row_sparsity_summary
from pruning.quant import QuantParams, group_width
from pruning.quantizers import quantize_block
from pruning.stats import check_finite, collect_input_stats

logger = logging.getLogger(__name__)


@dataclass
class PruneResult:
    """Masks (module path -> bool keep mask, on CPU), codes when quantized, per-layer records in model order."""

    masks: dict[str, torch.Tensor] = field(default_factory=dict)
    quant: dict[str, QuantParams] = field(default_factory=dict)
    layers: dict[str, dict] = field(default_factory=dict)
    block_sparsity: list[float] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def achieved_sparsity(self) -> float:
        kept = sum(int(m.sum()) for m in self.masks.values())
        total = sum(m.numel() for m in self.masks.values())
        return 1.0 - kept / max(total, 1)


@torch.no_grad()
def capture_block_inputs(model: nn.Module, calib_ids: torch.Tensor) -> tuple[torch.Tensor, dict]:
    """Hidden states (N, T, H) entering block 0 and the block's keyword arguments (captured once)."""
    layers = decoder_layers(model)
    inner = model.model
    captured: list[torch.Tensor] = []
    kwargs: dict = {}

    def hook(_mod: nn.Module, args: tuple, kw: dict) -> None:
        hidden = args[0] if args else kw["hidden_states"]
        captured.append(hidden.detach())
        if not kwargs:
            kwargs.update({k: v for k, v in kw.items() if k != "hidden_states"})

    handle = layers[0].register_forward_pre_hook(hook, with_kwargs=True)
    inner.layers = nn.ModuleList([layers[0]])  # run embeddings + rotary + block 0 only
    try:
        for row in calib_ids:
            inner(input_ids=row.unsqueeze(0), use_cache=False)
    finally:
        inner.layers = layers
        handle.remove()
    kwargs["use_cache"] = False
    kwargs.pop("cache", None)
    kwargs.pop("past_key_values", None)
    return torch.cat(captured, dim=0), kwargs


@torch.no_grad()
def run_block(block: nn.Module, hidden: torch.Tensor, kwargs: dict, batch: int) -> torch.Tensor:
    """Forward ``hidden`` (N, T, H) through ``block`` in chunks of ``batch`` samples."""
    outs = []
    for i in range(0, hidden.shape[0], batch):
        out = block(hidden[i:i + batch], **kwargs)
        outs.append(out[0] if isinstance(out, tuple) else out)
    return torch.cat(outs, dim=0)


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
            quant: dict[str, QuantParams], quantizer: str | None) -> None:
    kept = total = 0
    for op, mask in masks.items():
        path = module_path(index, op)
        mask = mask.detach().to("cpu", torch.bool)
        result.masks[path] = mask
        result.layers[path] = {"block": index, "op": op, "shape": list(mask.shape),
                               "target_sparsity": targets[op], "achieved_sparsity": mask_sparsity(mask),
                               "row_sparsity": row_sparsity_summary(mask)}
        if op in quant:
            q = quant[op]
            result.quant[path] = QuantParams(q.codes.cpu(), q.scales.cpu(), q.zeros.cpu(), q.bits, q.group)
            result.layers[path]["quant"] = {"bits": q.bits, "group_size": q.group, "quantizer": quantizer}
        kept, total = kept + int(mask.sum()), total + mask.numel()
    result.block_sparsity.append(1.0 - kept / total)


def _uses_dense_stream(cfg: PruneConfig) -> bool:
    return cfg.method == "besa" and cfg.besa_target == "dense"


def _training_subset(n: int, cfg: PruneConfig) -> torch.Tensor | None:
    """Fixed seeded subset of segments for BESA's learning when only the dense stream needs them all.

    With a dense-stream target and no OBS step, the pruned stream only feeds the allocation
    learning, so it is propagated for ``besa_samples`` segments instead of all of them
    (statistics and targets still use every segment).
    """
    if not (_uses_dense_stream(cfg) and not needs_hessian(cfg) and cfg.besa_samples and cfg.besa_samples < n):
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
    with collect_input_stats(job.linears, needs_hessian(cfg) and dense_stream is None) as job.stats:
        dense = run_block(job.block, src, job.kwargs, cfg.forward_batch)
    if dense_stream is not None and needs_hessian(cfg):
        with collect_input_stats(job.linears, True) as job.stats:
            run_block(job.block, hidden, job.kwargs, cfg.forward_batch)
    check_finite(job.stats, job.index)
    if needs_targets(cfg):
        job.dense_out = dense if subset is None else dense[subset.to(dense.device)]
    return dense


@torch.no_grad()
def _apply_masks(linears: dict[str, nn.Linear], masks: dict[str, torch.Tensor]) -> None:
    for op, lin in linears.items():
        lin.weight.mul_(masks[op].to(lin.weight.device, lin.weight.dtype))


def prune_model(model: nn.Module, calib_ids: torch.Tensor | None, cfg: PruneConfig,
                progress: bool = False) -> PruneResult:
    """Prune ``model`` in place, block by block; ``calib_ids`` (N, T) token ids on the model's device.

    Returns masks keyed by module path plus per-layer records for the run manifest.
    """
    check_model_fits(model, cfg)
    layers, all_targets = decoder_layers(model), layer_targets(model, cfg)
    result, t0, carry = PruneResult(), time.perf_counter(), {}
    hidden, kwargs = (None, {})
    if needs_data(cfg):
        if calib_ids is None:
            raise ValueError(f"method {cfg.method} needs calibration data")
        hidden, kwargs = capture_block_inputs(model, calib_ids)
    # BESA may fit each pruned block to the *dense model's* block outputs (a dense stream kept
    # alongside), so later blocks can compensate the error of earlier ones.
    dense_stream = hidden.clone() if hidden is not None and _uses_dense_stream(cfg) else None
    subset = None if hidden is None else _training_subset(hidden.shape[0], cfg)
    if subset is not None:
        hidden = hidden[subset.to(hidden.device)]
    for i in tqdm(range(len(layers)), desc=f"prune {cfg.method}", unit="block", disable=not progress):
        linears = block_linears(layers[i])
        targets = {op: all_targets[module_path(i, op)] for op in linears}
        job = BlockJob(i, layers[i], linears, targets, cfg, inputs=hidden, kwargs=kwargs, carry=carry)
        if hidden is not None:
            dense = _dense_pass(job, hidden, dense_stream, subset)
            dense_stream = None if dense_stream is None else dense
        masks = METHOD_FNS[cfg.method](job)
        _apply_masks(linears, masks)
        quantize_block(job, masks)  # no-op without wbits; pruned weights stay exactly 0
        _record(result, i, masks, targets, job.quant, cfg.quant_method)
        logger.debug("block %d: sparsity %.4f %s", i, result.block_sparsity[-1], job.info)
        if hidden is not None:
            hidden = run_block(layers[i], hidden, kwargs, cfg.forward_batch)
            if not torch.isfinite(hidden).all():
                raise ValueError(f"NaN/inf activations at the outputs of pruned block {i}")
    result.seconds = time.perf_counter() - t0
    logger.info("pruned %d blocks with %s: sparsity %.4f in %.1f s", len(layers), cfg.method,
                result.achieved_sparsity, result.seconds)
    return result
