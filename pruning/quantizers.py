"""The quantization step of the block loop: after a method's masks, quantize the block's Linears.

* ``rtn``: min-max per group of the masked weights.
* ``lwc``: learnable clipping (OmniQuant, arXiv 2308.13137). With BESA the clipping already trained
  jointly with the allocation (``job.clip``); after any other method it trains here alone, on the
  same block-reconstruction loss with the masks fixed.
* ``obs``: GPTQ-style quantization inside SparseGPT's OBS loop on the fixed mask (for SparseGPT
  itself the method does it while choosing the mask: its joint variant).

Each quantized Linear's weight is replaced by its dequantized codes (pruned weights stay exactly 0)
and the codes land in ``job.quant``.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from pruning.besa import learn_allocation
from pruning.lwc import ClipLearner, FixedMaskClip
from pruning.quant import QuantParams, fake_quant, grouped, quantize
from pruning.sparsegpt import ObsQuant, sparsegpt_quant_prune

logger = logging.getLogger(__name__)

SEARCH_RATIOS = torch.linspace(1.0, 0.5, 11)  # candidate clipping factors of the grid-search init


def param_names(block: nn.Module, linears: dict[str, nn.Linear]) -> dict[str, str]:
    """op -> weight parameter name relative to the block (``self_attn.q_proj.weight``)."""
    return {op: f"{n}.weight" for op in linears for n, m in block.named_modules() if m is linears[op]}


@torch.no_grad()
def search_init(w: torch.Tensor, col_weight: torch.Tensor | None, bits: int, group: int) -> torch.Tensor:
    """Per-group clipping logit (out, groups) minimising the activation-weighted error sum_j E[x_j^2] (w - q)^2.

    A starting point for LWC that a short per-block training (tens of steps) can refine; plain
    min-max (ratio 1) is among the candidates.
    """
    cw = torch.ones(w.shape[1], device=w.device) if col_weight is None else col_weight.float().to(w.device)
    cw = grouped(cw.unsqueeze(0), group)  # (1, groups, width)
    best_err, best = None, None
    for r in SEARCH_RATIOS.tolist():
        err = (grouped((w - fake_quant(w, bits, group, r, r)).pow(2), group) * cw).sum(-1)  # (out, groups)
        if best_err is None:
            best_err, best = err, torch.full_like(err, r)
        else:
            better = err < best_err
            best_err, best = torch.where(better, err, best_err), torch.where(better, r, best)
    return torch.logit(best.clamp(max=1 - 1e-4))


def make_clip(job, weights: dict[str, torch.Tensor], masks: dict[str, torch.Tensor], names: dict[str, str]) -> ClipLearner:
    """A ClipLearner for the block's Linears (keyed by parameter name), initialised by grid search
    on the masked weights (``lwc_search``) or at OmniQuant's logit 4."""
    cfg = job.config
    dev = next(iter(weights.values())).device
    clip = ClipLearner({names[op]: tuple(w.shape) for op, w in weights.items()}, cfg.wbits, cfg.group_size,
                       device=dev)
    if cfg.lwc_search:
        for op, w in weights.items():
            stats = job.stats.get(op)
            logit = search_init(w.detach().float() * masks[op].to(w.dtype), None if stats is None else stats.sq_mean,
                                cfg.wbits, cfg.group_size)
            for param in clip.logits(names[op]):
                param.data.copy_(logit)
    return clip


def _train_clip_alone(job, masks: dict[str, torch.Tensor], clip: ClipLearner | None = None) -> ClipLearner:
    """LWC on fixed masks: the block-reconstruction loop with only the clipping logits training
    (from ``clip``'s logits when given, else a fresh initialisation)."""
    cfg, names = job.config, param_names(job.block, job.linears)
    weights = {op: lin.weight for op, lin in job.linears.items()}
    clip = clip if clip is not None else make_clip(job, weights, masks, names)
    learner = FixedMaskClip({names[op]: w for op, w in weights.items()},
                            {names[op]: m.to(weights[op].device) for op, m in masks.items()}, clip)
    with torch.enable_grad():
        losses = learn_allocation(job.block, learner, job.inputs, job.dense_out, job.kwargs, target=None,
                                  epochs=cfg.besa_epochs, beta=0.0, batch=cfg.besa_batch, optimizer=cfg.besa_optimizer,
                                  lr=cfg.besa_lr, d_coef=cfg.besa_d_coef, seed=cfg.seed + job.index,
                                  samples=cfg.besa_samples, clip_lr=cfg.lwc_lr)
    job.info["lwc_loss"] = (losses[0], losses[-1]) if losses else None
    return clip


def obs_quant(job, op: str) -> ObsQuant:
    """The in-loop quantizer for ``op``: plain min-max, or the learned clipping of ``job.clip``."""
    cfg = job.config
    if job.clip is None:
        return ObsQuant(cfg.wbits, cfg.group_size)
    lo, hi = job.clip.factors(param_names(job.block, {op: job.linears[op]})[op])
    return ObsQuant(cfg.wbits, cfg.group_size, lo.detach(), hi.detach())


@torch.no_grad()
def quantize_block(job, masks: dict[str, torch.Tensor]) -> dict[str, QuantParams]:
    """Quantize the block's Linears not yet quantized by the method; returns op -> codes (also in ``job.quant``)."""
    cfg, kind = job.config, job.config.quant_method
    todo = [op for op in job.linears if op not in job.quant]
    if kind is None or not todo:
        return job.quant
    if kind == "lwc" and (job.clip is None or cfg.lwc_stage == "refine"):
        job.clip = _train_clip_alone(job, {op: masks[op] for op in job.linears}, job.clip)
    names = param_names(job.block, job.linears)
    for op in todo:
        lin, mask = job.linears[op], masks[op].to(job.linears[op].weight.device)
        w = lin.weight.detach().float() * mask
        if kind == "obs":
            _, _, params = sparsegpt_quant_prune(lin.weight.data, job.stats[op].hessian, obs_quant(job, op),
                                                   keep_mask=mask, blocksize=cfg.sparsegpt_blocksize,
                                                   percdamp=cfg.sparsegpt_percdamp)
        else:
            params = job.clip.quantize(names[op], w) if kind == "lwc" else quantize(w, cfg.wbits, cfg.group_size)
        lin.weight.data.copy_(params.dequantize().to(lin.weight.dtype))
        job.quant[op] = params
    return job.quant
