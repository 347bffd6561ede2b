"""BESA: Blockwise Parameter-Efficient Sparsity Allocation (Xu et al., ICLR 2024, arXiv 2402.16880).

For one decoder block, each Linear's weights are ranked once by an importance score (Wanda by
default). For every row (``allocation="row"``) or every layer (``"layer"``) a learnable logit
vector over candidate sparsities ``0, step, 2*step, ..., 1`` gives a softmax distribution ``p``;
its mean is the expected sparsity ``s``. A weight of rank ``j`` (ascending importance) survives
candidate ``k`` iff ``j >= round(c_k * in)``, so its soft keep-probability is a cumulative sum
of ``p`` (one gather, no loop over rows). The forward pass uses the hard mask that prunes the
``round(s * in)`` least important weights, with a straight-through gradient through the soft mask.

Loss = per-output-channel normalised block reconstruction MSE
       + beta * ((s_block - target) / target)^2,
with ``s_block`` the parameter-weighted expected sparsity of the block. Only the logits train
(weights stay frozen). After training, per-row prune counts are rescaled and rounded
(largest remainder) so the block lands exactly on the target.

Joint sparsification and quantization (the paper's joint optimisation with quantization): with a
:class:`pruning.lwc.ClipLearner` the masked weights are also fake-quantized with learnable
clipping, and the clipping logits train in the same loss and the same steps as the allocation
logits (each parameter set with its own optimizer).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call

from pruning.masks import row_ranks

logger = logging.getLogger(__name__)


@dataclass
class _LayerAlloc:
    """Learnable allocation state of one Linear."""

    param_name: str          # e.g. "self_attn.q_proj.weight" relative to the block
    weight: torch.Tensor     # (out, in), frozen
    ranks: torch.Tensor      # (out, in) int16 (int32 past 32767 inputs), 0 = least important in its row
    bucket: torch.Tensor     # (out, in) int32, last candidate index that keeps the weight
    logits: nn.Parameter     # (out or 1, K+1)


def candidate_grid(step: float) -> torch.Tensor:
    """Candidate sparsities 0, step, ..., 1 (float64 rounded to avoid drift)."""
    n = int(round(1.0 / step))
    return torch.arange(n + 1, dtype=torch.float64) / n


def _buckets(ranks: torch.Tensor, cands: torch.Tensor) -> torch.Tensor:
    """For each weight, the largest candidate index k with round(c_k * in) <= rank."""
    cols = ranks.shape[1]
    thresholds = torch.round(cands * cols).long().to(ranks.device)  # (K+1,)
    kmax = torch.searchsorted(thresholds, torch.arange(cols, device=ranks.device), right=True) - 1
    return kmax[ranks]


def _init_logits(rows: int, cands: torch.Tensor, target: float, width: float) -> torch.Tensor:
    """Gaussian-shaped logits centred on the target sparsity (expected sparsity ~ target)."""
    logits = -((cands - target) ** 2) / (2 * width**2)
    return logits.float().unsqueeze(0).repeat(rows, 1)


class AllocationLearner(nn.Module):
    """Learned per-row / per-layer sparsity of the Linears of one block."""

    def __init__(self, named_weights: dict[str, torch.Tensor], scores: dict[str, torch.Tensor],
                 target: float, allocation: str = "row", step: float = 0.01,
                 smoothing: str = "none", init_width: float = 0.1, clip: nn.Module | None = None) -> None:
        super().__init__()
        self.clip = clip  # optional ClipLearner: fake-quantizes each masked weight
        self.cands = candidate_grid(step).float()
        self.smoothing = smoothing
        self.layers: list[_LayerAlloc] = []
        dev = next(iter(named_weights.values())).device
        self.cands = self.cands.to(dev)
        for i, (name, w) in enumerate(named_weights.items()):
            ranks = row_ranks(scores[name])
            bucket = _buckets(ranks, self.cands.double()).to(torch.int32)
            # Compact index dtypes: 6 bytes per weight instead of 16 (a LLaMA-7B block has 202M weights).
            ranks = ranks.to(torch.int16 if w.shape[1] <= torch.iinfo(torch.int16).max else torch.int32)
            rows = w.shape[0] if allocation == "row" else 1
            logits = nn.Parameter(_init_logits(rows, self.cands.double(), target, init_width).to(dev))
            self.register_parameter(f"logits_{i}", logits)
            self.layers.append(_LayerAlloc(name, w.detach(), ranks, bucket, logits))
        self.total = sum(la.weight.numel() for la in self.layers)

    def probs(self, la: _LayerAlloc) -> torch.Tensor:
        """Softmax over candidates, (rows, K+1); sigmoid smoothing reproduces the paper's code."""
        z = torch.sigmoid(la.logits) if self.smoothing == "sigmoid" else la.logits
        return torch.softmax(z, dim=1)

    def row_sparsity(self, la: _LayerAlloc) -> torch.Tensor:
        """Expected sparsity per row (out,) (broadcast for layer-wise allocation)."""
        s = self.probs(la) @ self.cands
        return s.expand(la.weight.shape[0])

    def masked_weights(self) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Hard-masked weights with straight-through soft-mask gradients, and the block's expected sparsity.

        The float soft masks are built one Linear at a time, right before their product, so only
        the masked weights (held by the forward) add up over the block, not the masks as well.
        """
        probs, hards, pruned = {}, {}, 0.0
        for la in self.layers:
            p = self.probs(la)
            rows, cols = la.weight.shape
            s = (p @ self.cands).expand(rows)
            hards[la.param_name] = la.ranks >= torch.round(s.detach() * cols).to(la.ranks.dtype).unsqueeze(1)
            probs[la.param_name] = p
            pruned = pruned + s.sum() * cols
        weights = {la.param_name: la.weight for la in self.layers}
        if self.clip is not None:
            # Quantizing then masking equals masking then quantizing (a pruned 0 quantizes to exactly 0)
            # and lets the range come from the kept weights without differentiating through it.
            weights = self.clip.forward_all(weights, hards)
        out = {}
        for la in self.layers:
            name, rows = la.param_name, la.weight.shape[0]
            soft = torch.cumsum(probs[name], dim=1).expand(rows, -1).gather(1, la.bucket)  # keep-probability
            ste = hards.pop(name).to(soft.dtype) + soft - soft.detach()  # float32, like the logits
            del soft
            out[name] = weights.pop(name) * ste.to(la.weight.dtype)  # the cast is a no-op for float32
        return out, pruned / self.total

    def allocation_parameters(self) -> list[nn.Parameter]:
        return [la.logits for la in self.layers]

    @torch.no_grad()
    def hard_masks(self) -> dict[str, torch.Tensor]:
        """The current hard masks (True = kept), keyed by parameter name."""
        return {la.param_name: self.keep_mask(la, torch.round(self.row_sparsity(la) * la.weight.shape[1]))
                for la in self.layers}

    @staticmethod
    def keep_mask(la: _LayerAlloc, prune_counts: torch.Tensor) -> torch.Tensor:
        """Keep all but the ``prune_counts[r]`` least important weights of each row r (bool (out, in))."""
        return la.ranks >= prune_counts.to(la.ranks.device, la.ranks.dtype).unsqueeze(1)

    def count_masks(self, counts: list[torch.Tensor]) -> list[torch.Tensor]:
        """:meth:`keep_mask` of every Linear for per-row prune counts (as from :meth:`final_counts`)."""
        return [self.keep_mask(la, c) for la, c in zip(self.layers, counts)]

    @torch.no_grad()
    def final_counts(self, target: float) -> list[torch.Tensor]:
        """Integer prune counts per row so the block prunes exactly round(target * params) weights."""
        cols = torch.cat([torch.full((la.weight.shape[0],), la.weight.shape[1], device=la.weight.device)
                          for la in self.layers]).double()
        cont = torch.cat([self.row_sparsity(la) for la in self.layers]).double() * cols
        need = int(round(target * self.total))
        for _ in range(10):  # rescale; clipping at [0, cols] may need a few passes
            cont = torch.minimum((cont * need / cont.sum().clamp_min(1e-12)).clamp_min(0), cols)
            if abs(cont.sum().item() - need) < 0.5:
                break
        base = torch.floor(cont)
        rem = need - int(base.sum().item())
        frac = (cont - base).masked_fill(base >= cols, -1.0)
        if rem > 0:
            base[torch.topk(frac, rem).indices] += 1
        elif rem < 0:
            base[torch.topk(frac.masked_fill(base <= 0, 2.0), -rem, largest=False).indices] -= 1
        return list(torch.split(base.long(), [la.weight.shape[0] for la in self.layers]))


def channel_normalised_mse(pred: torch.Tensor, target: torch.Tensor, denom: torch.Tensor) -> torch.Tensor:
    """Mean over output channels of MSE_c / E[y_c^2]: every channel of the block output counts equally."""
    err = (pred.float() - target.float()).pow(2).reshape(-1, target.shape[-1]).mean(dim=0)
    return (err / denom).mean()


def _make_optimizer(params: list[nn.Parameter], name: str, lr: float, d_coef: float,
                    d0: float | None) -> torch.optim.Optimizer:
    if name == "prodigy":
        from prodigyopt import Prodigy
        return Prodigy(params, lr=lr, d_coef=d_coef, weight_decay=0.0, d0=d0 or 1e-6)
    return torch.optim.AdamW(params, lr=lr, weight_decay=0.0)


def _optimizers(learner: nn.Module, optimizer: str, lr: float, d_coef: float, carry: dict,
                clip_lr: float) -> list[torch.optim.Optimizer]:
    """Prodigy/AdamW for the allocation logits, AdamW (OmniQuant's choice) for clipping logits.

    Prodigy cannot give two parameter groups different step sizes, and the two sets live on very
    different scales, so each set has its own optimizer; both step on every loss.
    """
    opts = []
    alloc = learner.allocation_parameters() if hasattr(learner, "allocation_parameters") else []
    if alloc:
        opts.append(_make_optimizer(alloc, optimizer, lr, d_coef, carry.get("d")))
    clip = getattr(learner, "clip", None)
    if clip is not None:
        opts.append(torch.optim.AdamW(list(clip.parameters()), lr=clip_lr, weight_decay=0.0))
    return opts


def learn_allocation(block: nn.Module, learner: nn.Module, inputs: torch.Tensor,
                     targets: torch.Tensor, kwargs: dict, *, target: float | None, epochs: int, beta: float,
                     batch: int, optimizer: str, lr: float, d_coef: float, seed: int,
                     samples: int | None = None, carry: dict | None = None, clip_lr: float = 0.0) -> list[float]:
    """Train the learner's logits (allocation and/or clipping) on block reconstruction; returns the losses.

    ``learner.masked_weights()`` gives the block's weights and its expected sparsity (None for a
    clipping-only learner: no sparsity penalty). Each epoch visits ``samples`` (default: all)
    calibration segments in a seeded random order. ``carry`` (shared across blocks) passes
    Prodigy's step-size estimate d on to the next block, so a short run per block does not spend
    its first steps re-growing d from 1e-6.
    """
    carry = {} if carry is None else carry
    for p in block.parameters():
        p.requires_grad_(False)
    device = next(block.parameters()).device  # activations may live on the CPU, the block on a GPU
    denom = targets.float().pow(2).reshape(-1, targets.shape[-1]).mean(dim=0).clamp_min(1e-8).to(device)
    opts = _optimizers(learner, optimizer, lr, d_coef, carry, clip_lr)
    gen = torch.Generator().manual_seed(seed)
    losses = []
    for _ in range(epochs):
        order = torch.randperm(inputs.shape[0], generator=gen)[:samples]
        for j in range(0, len(order), batch):
            idx = order[j:j + batch].to(inputs.device)
            weights, s = learner.masked_weights()
            pred = functional_call(block, weights, (inputs[idx].to(device),), kwargs)
            pred = pred[0] if isinstance(pred, tuple) else pred
            loss = channel_normalised_mse(pred, targets[idx].to(device), denom)
            if s is not None:
                loss = loss + beta * ((s - target) / target) ** 2
            for opt in opts:
                opt.zero_grad(set_to_none=True)
            loss.backward()
            for opt in opts:
                opt.step()
            losses.append(loss.item())
    if opts and "d" in opts[0].param_groups[0]:
        carry["d"] = float(opts[0].param_groups[0]["d"])
    if losses and not math.isfinite(losses[-1]):
        raise ValueError("BESA loss became NaN/inf; check the calibration activations")
    return losses
