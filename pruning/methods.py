"""Per-block pruning rules. Each takes a :class:`BlockJob` and returns op -> keep mask,
updating the block's weights in place (mask applied, and for SparseGPT the OBS update)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from pruning.besa import AllocationLearner, learn_allocation
from pruning.config import PruneConfig
from pruning.masks import nm_mask, rowwise_mask
from pruning.metrics import magnitude_score, sparsegpt_diag_score, wanda_score
from pruning.quantizers import make_clip, obs_quant, param_names
from pruning.hw_target import FormatGates, latency_penalty, price_rows, round_to_budget
from pruning.search import BlockError, prune_search
from pruning.sparsegpt import sparsegpt_prune, sparsegpt_quant_prune
from pruning.stats import InputStats

logger = logging.getLogger(__name__)


@dataclass
class BlockJob:
    """What a method sees of one block."""

    index: int
    block: nn.Module
    linears: dict[str, nn.Linear]
    targets: dict[str, float]               # op -> target sparsity
    config: PruneConfig
    stats: dict[str, InputStats] = field(default_factory=dict)
    inputs: torch.Tensor | None = None      # (N, T, H) block inputs (outputs of pruned blocks before)
    dense_out: torch.Tensor | None = None   # (N, T, H) outputs of this block while still dense
    kwargs: dict = field(default_factory=dict)
    info: dict = field(default_factory=dict)  # method-specific results to log/report
    carry: dict = field(default_factory=dict)  # state a method passes from block to block
    quant: dict = field(default_factory=dict)  # op -> QuantParams of the Linears already quantized
    clip: nn.Module | None = None             # ClipLearner trained jointly with the allocation (BESA + lwc)


def _score_mask(job: BlockJob, op: str, score: torch.Tensor) -> torch.Tensor:
    cfg = job.config
    if cfg.nm is not None:
        return nm_mask(score, *cfg.nm)
    return rowwise_mask(score, job.targets[op])


def prune_magnitude(job: BlockJob) -> dict[str, torch.Tensor]:
    """|W| ranked within each row (no data needed)."""
    return {op: _score_mask(job, op, magnitude_score(lin.weight)) for op, lin in job.linears.items()}


def prune_wanda(job: BlockJob) -> dict[str, torch.Tensor]:
    """Wanda (arXiv 2306.11695): |W| * ||X||_2 ranked within each output row."""
    return {op: _score_mask(job, op, wanda_score(lin.weight, job.stats[op].sq_mean))
            for op, lin in job.linears.items()}


def prune_sparsegpt(job: BlockJob) -> dict[str, torch.Tensor]:
    """SparseGPT (arXiv 2301.00774): OBS pruning with weight update, per Linear; with the ``obs``
    quantizer each column is also quantized inside the loop (the paper's joint variant, Sec. 3.5)."""
    cfg, masks = job.config, {}
    for op, lin in job.linears.items():
        choice = dict(sparsity=job.targets[op], nm=cfg.nm, blocksize=cfg.sparsegpt_blocksize,
                      percdamp=cfg.sparsegpt_percdamp)
        masks[op] = _obs_update(job, op, lin, choice, quantize=cfg.quant_method == "obs")
    return masks


def _obs_update(job: BlockJob, op: str, lin, choice: dict, quantize: bool) -> torch.Tensor:
    """SparseGPT's OBS pruning and weight update of ``lin`` in place (each column quantized inside the
    loop when ``quantize``); returns the keep-mask."""
    if quantize:
        w, keep, job.quant[op] = sparsegpt_quant_prune(lin.weight.data, job.stats[op].hessian,
                                                       obs_quant(job, op), **choice)
    else:
        w, keep = sparsegpt_prune(lin.weight.data, job.stats[op].hessian, **choice)
    lin.weight.data.copy_(w)
    return keep


def _importance(job: BlockJob, op: str) -> torch.Tensor:
    kind, w = job.config.besa_importance, job.linears[op].weight
    if kind == "wanda":
        return wanda_score(w, job.stats[op].sq_mean)
    if kind == "sparsegpt":
        return sparsegpt_diag_score(w, job.stats[op].hessian, job.config.sparsegpt_percdamp)
    return magnitude_score(w)


class _LazyScores(dict):
    """param name -> importance score of its Linear, computed when looked up (and not kept)."""

    def __init__(self, job: BlockJob, ops: dict[str, str]) -> None:
        super().__init__()
        self.job, self.ops = job, ops

    def __missing__(self, name: str) -> torch.Tensor:
        return _importance(self.job, self.ops[name])


def _carry_d(cfg: PruneConfig) -> bool:
    """On SmolLM2-135M carrying Prodigy's d helped row allocation (52.1 -> 50.4 ppl, same settings)
    and hurt layer allocation (73.5 ppl with it, 61.6 without), so by default it is on for rows only."""
    return cfg.besa_carry_d if cfg.besa_carry_d is not None else cfg.besa_allocation == "row"


def prune_besa(job: BlockJob) -> dict[str, torch.Tensor]:
    """BESA (arXiv 2402.16880): learned row/layer sparsity, optionally followed by OBS reconstruction;
    with a hardware target, a latency penalty and, where the preset gains from 2:4, learned format
    gates (:mod:`pruning.hw_target`)."""
    cfg, target = job.config, job.config.sparsity
    names = param_names(job.block, job.linears)
    latency, gated = cfg.hw_target, []
    if latency is not None:  # start from the uniform sparsity that meets the block's latency budget
        budget = latency.block_budget + job.carry.get("latency_slack", 0.0)
        dense = sum(latency.dense[op] for op in job.linears)
        if budget >= dense:  # the block may stay dense (earlier blocks saved enough)
            job.carry["latency_slack"] = budget - dense
            job.info["formats"] = {op: "dense" for op in job.linears}
            target = 0.0
        else:
            target, aim = latency.start(list(job.linears), budget)
            gated = [op for op in job.linears if cfg.besa_nm_gates and latency.gains_nm(op)]
    if target == 0.0 and not gated:
        return {op: torch.ones_like(lin.weight, dtype=torch.bool) for op, lin in job.linears.items()}
    # Scores are computed one Linear at a time as the learner ranks them (a 7B block's are 0.8 GB).
    scores = _LazyScores(job, {names[op]: op for op in job.linears})
    learner = AllocationLearner({names[op]: lin.weight for op, lin in job.linears.items()}, scores, target,
                                allocation=cfg.besa_allocation, step=cfg.besa_step,
                                smoothing=cfg.besa_smoothing, init_width=cfg.besa_init_width,
                                max_sparsity=cfg.besa_max_sparsity)
    if gated:
        learner = FormatGates(learner, {names[op]: nm_mask(scores[names[op]], 2, 4) for op in gated},
                              lr=cfg.besa_gate_lr)
    if cfg.quant_method == "lwc" and cfg.lwc_stage != "after":
        # joint: clipping trains with the allocation, initialised on its start mask
        start = learner.hard_masks()
        job.clip = learner.clip = make_clip(job, {op: lin.weight for op, lin in job.linears.items()},
                                            {op: start[names[op]] for op in job.linears}, names)
    with torch.enable_grad():
        losses = learn_allocation(job.block, learner, job.inputs, job.dense_out, job.kwargs, target=target,
                                  epochs=cfg.besa_epochs, beta=cfg.besa_beta, batch=cfg.besa_batch,
                                  optimizer=cfg.besa_optimizer, lr=cfg.besa_lr, d_coef=cfg.besa_d_coef,
                                  seed=cfg.seed + job.index, samples=cfg.besa_samples,
                                  carry=job.carry if _carry_d(cfg) else None, clip_lr=cfg.lwc_lr,
                                  penalty=None if latency is None else latency_penalty(
                                      latency, cfg.besa_beta, list(job.linears), aim))
    formats = {}
    if latency is None:
        counts = learner.final_counts(target)
        keep = dict(zip(job.linears, learner.count_masks(counts)))
    else:
        counts, keep, formats, cycles = round_to_budget(learner, latency, budget, BlockError(job))
        job.carry["latency_slack"] = budget - cycles
        job.info["formats"] = formats
    job.info["besa_loss"] = (losses[0], losses[-1]) if losses else None
    job.info["prodigy_d"] = job.carry.get("d")
    masks = {}
    for (op, lin), cnt in zip(job.linears.items(), counts):
        if cfg.besa_reconstruct:
            # "counts": BESA decides how many weights each row loses, OBS picks which;
            # "mask": BESA's own mask is kept and OBS only updates the surviving weights (always for 2:4).
            choice = ({"row_prune_counts": cnt} if cfg.besa_reconstruct_mode == "counts" and formats.get(op) != "2:4"
                      else {"keep_mask": keep[op]})
            choice.update(blocksize=cfg.sparsegpt_blocksize, percdamp=cfg.sparsegpt_percdamp)
            # Quantize inside the OBS update (with the learned clipping for lwc).
            masks[op] = _obs_update(job, op, lin, choice, quantize=cfg.quant_method in ("lwc", "obs"))
        else:
            masks[op] = keep[op]
    if latency is not None and latency.row_cost is not None:
        price_rows(job, latency, budget, formats, masks)
    return masks


METHOD_FNS: dict[str, Callable[[BlockJob], dict[str, torch.Tensor]]] = {
    "magnitude": prune_magnitude, "wanda": prune_wanda, "sparsegpt": prune_sparsegpt, "besa": prune_besa,
    "search": prune_search,
}
