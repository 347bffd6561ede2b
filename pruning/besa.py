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

import contextlib
import logging
import math
from dataclasses import dataclass
from typing import Callable, Iterator

import torch
from torch import nn
from torch.func import functional_call
from torch.nn import functional as F

from pruning.masks import row_ranks

logger = logging.getLogger(__name__)


@dataclass
class _LayerAlloc:
    """Learnable allocation state of one Linear."""

    param_name: str          # e.g. "self_attn.q_proj.weight" relative to the block
    weight: torch.Tensor     # (out, in), frozen
    ranks: torch.Tensor      # (out, in) int16 (int32 past 32767 inputs), 0 = least important in its row
    kmax: torch.Tensor       # (in,) int64: for rank j, the last candidate index that keeps the weight
    logits: nn.Parameter     # (out or 1, K+1)


def candidate_grid(step: float) -> torch.Tensor:
    """Candidate sparsities 0, step, ..., 1 (float64 rounded to avoid drift)."""
    n = int(round(1.0 / step))
    return torch.arange(n + 1, dtype=torch.float64) / n


def _last_keeping_candidate(cols: int, cands: torch.Tensor, device) -> torch.Tensor:
    """For each rank j in 0..cols-1, the largest candidate index k with round(c_k * cols) <= j."""
    thresholds = torch.round(cands * cols).long().to(device)  # (K+1,)
    return torch.searchsorted(thresholds, torch.arange(cols, device=device), right=True) - 1


_CHUNK = 1 << 22  # weights per row chunk of the straight-through mask (16 MB of float32)


def _row_chunks(rows: int, cols: int) -> list[tuple[int, int]]:
    step = max(1, _CHUNK // max(cols, 1))
    return [(r, min(r + step, rows)) for r in range(0, rows, step)]


class _StraightThroughMask(torch.autograd.Function):
    """``weight * (hard + soft - soft.detach())`` with ``soft = cumsum(p)[bucket(rank)]``, row chunk
    by row chunk, and nothing of the weight's size saved for backward.

    The plain autograd graph of that expression keeps an int64 bucket index per weight (8 bytes;
    a LLaMA-7B block has 202M weights) and builds several float masks of the weight's size. Here
    the bucket is recomputed from the int16 ranks per chunk, in forward and in backward. The
    arithmetic is the same operations in the same order as autograd's (gather's backward is a
    scatter-add into zeros; an expanded row is summed), so the result is bit for bit the same.
    """

    @staticmethod
    def forward(ctx, cum: torch.Tensor, weight: torch.Tensor, hard: torch.Tensor, ranks: torch.Tensor,
                kmax: torch.Tensor) -> torch.Tensor:
        rows, cols = weight.shape
        out = torch.empty_like(weight)
        for r0, r1 in _row_chunks(rows, cols):
            out[r0:r1] = weight[r0:r1] * _ste(cum, hard, ranks, kmax, r0, r1).to(weight.dtype)
        ctx.save_for_backward(cum, weight, hard if ctx.needs_input_grad[1] else None, ranks, kmax)
        return out

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        cum, weight, hard, ranks, kmax = ctx.saved_tensors
        rows, cols = weight.shape
        grad_cum = grad_w = None
        if ctx.needs_input_grad[0]:
            full = torch.zeros((rows, cum.shape[1]), dtype=cum.dtype, device=cum.device)
            for r0, r1 in _row_chunks(rows, cols):
                g = (grad_out[r0:r1] * weight[r0:r1]).to(cum.dtype)
                full[r0:r1].scatter_add_(1, kmax[ranks[r0:r1].long()], g)
            grad_cum = full if cum.shape[0] == rows else full.sum(0, keepdim=True)
        if ctx.needs_input_grad[1]:  # weights fake-quantized by learnable clipping
            grad_w = torch.empty_like(grad_out)
            for r0, r1 in _row_chunks(rows, cols):
                grad_w[r0:r1] = grad_out[r0:r1] * _ste(cum, hard, ranks, kmax, r0, r1).to(weight.dtype)
        return grad_cum, grad_w, None, None, None


def _ste(cum: torch.Tensor, hard: torch.Tensor, ranks: torch.Tensor, kmax: torch.Tensor,
         r0: int, r1: int) -> torch.Tensor:
    """Rows r0:r1 of hard + soft - soft (float32; the value of the straight-through mask)."""
    c = cum.expand(ranks.shape[0], -1)[r0:r1]
    soft = c.gather(1, kmax[ranks[r0:r1].long()])
    return hard[r0:r1].to(soft.dtype) + soft - soft


def _init_logits(rows: int, cands: torch.Tensor, target: float, width: float) -> torch.Tensor:
    """Gaussian-shaped logits centred on the target sparsity (expected sparsity ~ target)."""
    logits = -((cands - target) ** 2) / (2 * width**2)
    return logits.float().unsqueeze(0).repeat(rows, 1)


class AllocationLearner(nn.Module):
    """Learned per-row / per-layer sparsity of the Linears of one block."""

    def __init__(self, named_weights: dict[str, torch.Tensor], scores: dict[str, torch.Tensor],
                 target: float, allocation: str = "row", step: float = 0.01,
                 smoothing: str = "none", init_width: float = 0.1, clip: nn.Module | None = None,
                 max_sparsity: float = 1.0) -> None:
        super().__init__()
        self.clip = clip  # optional ClipLearner: fake-quantizes each masked weight
        # candidates 0, step, ..., max_sparsity (1.0: the authors' grid, where a row may lose every weight)
        grid = candidate_grid(step)
        self.cands = grid[grid <= max_sparsity + 1e-9].float()
        self.max_sparsity = float(self.cands[-1])
        self.smoothing = smoothing
        self.layers: list[_LayerAlloc] = []
        dev = next(iter(named_weights.values())).device
        self.cands = self.cands.to(dev)
        for i, (name, w) in enumerate(named_weights.items()):
            # Ranks as int16 (2 bytes per weight instead of 8: a LLaMA-7B block has 202M weights).
            ranks = row_ranks(scores[name])
            ranks = ranks.to(torch.int16 if w.shape[1] <= torch.iinfo(torch.int16).max else torch.int32)
            kmax = _last_keeping_candidate(w.shape[1], self.cands.double(), dev)
            rows = w.shape[0] if allocation == "row" else 1
            logits = nn.Parameter(_init_logits(rows, self.cands.double(), target, init_width).to(dev))
            self.register_parameter(f"logits_{i}", logits)
            self.layers.append(_LayerAlloc(name, w.detach(), ranks, kmax, logits))
        self.total = sum(la.weight.numel() for la in self.layers)

    def probs(self, la: _LayerAlloc) -> torch.Tensor:
        """Softmax over candidates, (rows, K+1); sigmoid smoothing reproduces the paper's code."""
        z = torch.sigmoid(la.logits) if self.smoothing == "sigmoid" else la.logits
        return torch.softmax(z, dim=1)

    def row_sparsity(self, la: _LayerAlloc) -> torch.Tensor:
        """Expected sparsity per row (out,) (broadcast for layer-wise allocation)."""
        s = self.probs(la) @ self.cands
        return s.expand(la.weight.shape[0])

    def weight_makers(self) -> tuple[dict[str, Callable[[], torch.Tensor]], torch.Tensor]:
        """Per Linear, a function giving its hard-masked weight with straight-through soft-mask
        gradients; and the block's expected sparsity.

        The masked weights are made when each Linear runs (:func:`learn_allocation` patches the
        Linears), so in backward each mask's gradient is reduced to its logits right after its
        Linear's, instead of every Linear's weight gradient waiting for the masks made first.
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

        def maker(la: _LayerAlloc) -> Callable[[], torch.Tensor]:
            name = la.param_name  # keep-probability of a weight: cumsum(p) at its bucket (see class docs)
            # popped when used: a hard mask the backward does not need is freed after its Linear runs
            return lambda: _StraightThroughMask.apply(torch.cumsum(probs[name], dim=1), weights.pop(name),
                                                      hards.pop(name), la.ranks, la.kmax)

        return {la.param_name: maker(la) for la in self.layers}, pruned / self.total

    def masked_weights(self) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Every hard-masked weight at once (see :meth:`weight_makers`), and the expected sparsity."""
        makers, s = self.weight_makers()
        return {name: make() for name, make in makers.items()}, s

    def layer_sparsities(self) -> dict[str, torch.Tensor]:
        """Expected sparsity of each Linear (differentiable), keyed by parameter name."""
        return {la.param_name: self.row_sparsity(la).mean() for la in self.layers}

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
    def final_counts(self, target: float, only: list[int] | None = None) -> list[torch.Tensor]:
        """Integer prune counts per row so the block prunes exactly round(target * params) weights
        (``only``: of those Linears, by index; the others get zero counts)."""
        chosen = [self.layers[i] for i in (range(len(self.layers)) if only is None else only)]
        if not chosen:
            return [torch.zeros(la.weight.shape[0], dtype=torch.long, device=la.weight.device) for la in self.layers]
        cols = torch.cat([torch.full((la.weight.shape[0],), la.weight.shape[1], device=la.weight.device)
                          for la in chosen]).double()
        cont = torch.cat([self.row_sparsity(la) for la in chosen]).double() * cols
        need = int(round(target * sum(la.weight.numel() for la in chosen)))
        most = torch.floor(cols * self.max_sparsity)  # no row past the largest candidate
        if need > most.sum():
            raise ValueError(f"target sparsity {target:g} exceeds the largest candidate sparsity {self.max_sparsity:g}")
        for _ in range(10):  # rescale; clipping at [0, most] may need a few passes
            cont = torch.minimum((cont * need / cont.sum().clamp_min(1e-12)).clamp_min(0), most)
            if abs(cont.sum().item() - need) < 0.5:
                break
        if need - cont.sum().item() >= 0.5:  # rows learned at 0 do not scale up: share the rest by each row's room
            room = most - cont
            cont = cont + room * ((need - cont.sum()) / room.sum())
        base = torch.floor(cont)
        rem = need - int(base.sum().item())
        frac = (cont - base).masked_fill(base >= most, -1.0)
        if rem > 0:
            base[torch.topk(frac, rem).indices] += 1
        elif rem < 0:
            base[torch.topk(frac.masked_fill(base <= 0, 2.0), -rem, largest=False).indices] -= 1
        parts = dict(zip(map(id, chosen), torch.split(base.long(), [la.weight.shape[0] for la in chosen])))
        return [parts.get(id(la), torch.zeros(la.weight.shape[0], dtype=torch.long, device=la.weight.device))
                for la in self.layers]


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
    if hasattr(learner, "gate_optimizer"):  # a hardware target's format gates (pruning.hw_target.FormatGates)
        opts.append(learner.gate_optimizer())
    return opts


@contextlib.contextmanager
def _weights_made_on_use(block: nn.Module, makers: dict[str, Callable[[], torch.Tensor]]) -> Iterator[None]:
    """Run ``block``'s Linears with the weights ``makers[param name]()`` made when each one runs."""
    patched = []
    for name, make in makers.items():
        lin = block.get_submodule(name.rsplit(".", 1)[0])
        lin.forward = lambda x, lin=lin, make=make: F.linear(x, make(), lin.bias)
        patched.append(lin)
    try:
        yield
    finally:
        for lin in patched:
            del lin.forward  # the class's forward again


def learn_allocation(block: nn.Module, learner: nn.Module, inputs: torch.Tensor,
                     targets: torch.Tensor, kwargs: dict, *, target: float | None, epochs: int, beta: float,
                     batch: int, optimizer: str, lr: float, d_coef: float, seed: int,
                     samples: int | None = None, carry: dict | None = None, clip_lr: float = 0.0,
                     penalty: Callable[[nn.Module], torch.Tensor] | None = None) -> list[float]:
    """Train the learner's logits (allocation and/or clipping) on block reconstruction; returns the losses.

    ``learner.masked_weights()`` gives the block's weights and its expected sparsity (None for a
    clipping-only learner: no sparsity penalty). Each epoch visits ``samples`` (default: all)
    calibration segments in a seeded random order. ``carry`` (shared across blocks) passes
    Prodigy's step-size estimate d on to the next block, so a short run per block does not spend
    its first steps re-growing d from 1e-6. ``penalty(learner)``, when given, replaces the sparsity
    penalty (a hardware target's latency penalty, :mod:`pruning.hw_target`).
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
            if hasattr(learner, "weight_makers"):
                makers, s = learner.weight_makers()
                with _weights_made_on_use(block, makers):
                    pred = block(inputs[idx].to(device), **kwargs)
            else:
                weights, s = learner.masked_weights()
                pred = functional_call(block, weights, (inputs[idx].to(device),), kwargs)
            pred = pred[0] if isinstance(pred, tuple) else pred
            loss = channel_normalised_mse(pred, targets[idx].to(device), denom)
            if penalty is not None:
                loss = loss + penalty(learner)
            elif s is not None:
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
