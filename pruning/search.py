"""Search-based allocation under a latency budget (SPDY, Frantar & Alistarh, ICML 2022, arXiv
2201.13096; ZipLM, arXiv 2302.04089), block by block, from the simulator's latency table.

The rule. For each Linear of a block and each candidate (a sparsity every ``search_step`` of the
table's grid with a Wanda mask, run in its cheapest format; and a 2:4 Wanda mask where the preset gains from 2:4),
the error is the block's output error with that Linear alone pruned so, the others dense:
the channel-normalised MSE of BESA's loss against the dense block's outputs, on
``search_samples`` calibration segments. Errors are taken as additive (SPDY's assumption), and a
dynamic programme over the seven Linears picks one candidate each, minimising the summed error with
the summed table cycles within the block's budget (:class:`pruning.hw_target.LatencyModel`), the
cycles counted in units of 1/2000 of the budget (rounded up, so the choice never exceeds it). The
budget a block leaves unused passes to the next (``latency_slack``, as in :mod:`pruning.hw_target`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from pruning.besa import channel_normalised_mse
from pruning.hw_target import price_rows
from pruning.masks import nm_mask, rowwise_mask
from pruning.metrics import wanda_score

__all__ = ["BlockError", "Candidate", "candidates", "knapsack", "prune_search"]

UNITS = 2000  # budget resolution of the dynamic programme


@dataclass(frozen=True)
class Candidate:
    sparsity: float
    fmt: str      # dense | sparse | 2:4
    cycles: float


def candidates(latency, op: str, step: float | None = None) -> list[Candidate]:
    """The options of ``op``: each grid sparsity (every ``step``, None: all) in its cheapest format, and
    2:4 where tabled."""
    grid = [s for s in latency.grid if step is None or abs(s / step - round(s / step)) < 1e-6]
    out = [Candidate(s, *latency.best(op, s)) for s in grid]
    if op in latency.nm:
        out.append(Candidate(0.5, "2:4", latency.nm[op]))
    return out


def knapsack(errors: dict[str, list[float]], costs: dict[str, list[float]], budget: float) -> dict[str, int]:
    """Index of one option per key minimising the summed error with summed cost <= budget (ValueError
    when even the cheapest options exceed it)."""
    best = {0: (0.0, {})}  # units used -> (error, choice)
    for key in errors:
        nxt: dict[int, tuple[float, dict]] = {}
        for used, (err, choice) in best.items():
            for i, (e, c) in enumerate(zip(errors[key], costs[key])):
                u = used + math.ceil(c / budget * UNITS - 1e-9)
                if u <= UNITS and (u not in nxt or err + e < nxt[u][0]):
                    nxt[u] = (err + e, {**choice, key: i})
        if not nxt:
            raise ValueError("no allocation of the block fits its latency budget")
        best = nxt
    return min(best.values(), key=lambda v: v[0])[1]


def _mask(score: torch.Tensor, cand: Candidate) -> torch.Tensor:
    return nm_mask(score, 2, 4) if cand.fmt == "2:4" else rowwise_mask(score, cand.sparsity)


class BlockError:
    """The block's output error with given keep masks, against its dense outputs, on ``search_samples``
    seeded calibration segments (BESA's channel-normalised MSE)."""

    def __init__(self, job) -> None:
        self.job = job
        n = min(job.config.search_samples, job.inputs.shape[0])
        gen = torch.Generator().manual_seed(job.config.seed + job.index)
        self.samples = torch.randperm(job.inputs.shape[0], generator=gen)[:n]
        target = job.dense_out[self.samples].float()
        self.device = next(job.block.parameters()).device
        self.denom = target.pow(2).reshape(-1, target.shape[-1]).mean(dim=0).clamp_min(1e-8).to(self.device)

    @torch.no_grad()
    def __call__(self, masks: dict[str, torch.Tensor]) -> float:
        """Error with ``masks`` (op -> keep mask) applied; the weights are restored afterwards."""
        job, saved = self.job, {}
        for op, keep in masks.items():
            w = job.linears[op].weight.data
            saved[op] = w.clone()
            w.mul_(keep.to(w.device, w.dtype))
        try:
            pred = job.block(job.inputs[self.samples].to(self.device), **job.kwargs)
            pred = pred[0] if isinstance(pred, tuple) else pred
            return float(channel_normalised_mse(pred, job.dense_out[self.samples].to(self.device), self.denom))
        finally:
            for op, w in saved.items():
                job.linears[op].weight.data.copy_(w)


@torch.no_grad()
def prune_search(job) -> dict[str, torch.Tensor]:
    """Masks of one block from the search (see the module docstring); records each op's format."""
    latency, cfg = job.config.hw_target, job.config
    error = BlockError(job)
    budget = latency.block_budget + job.carry.get("latency_slack", 0.0)
    options, errors, scores = {}, {}, {}
    for op, lin in job.linears.items():
        scores[op] = wanda_score(lin.weight, job.stats[op].sq_mean)
        options[op] = candidates(latency, op, cfg.search_step)
        errors[op] = [error({op: _mask(scores[op], cand)}) for cand in options[op]]
    pick = knapsack(errors, {op: [c.cycles for c in opts] for op, opts in options.items()}, budget)
    chosen = {op: options[op][i] for op, i in pick.items()}
    job.info["formats"] = {op: c.fmt for op, c in chosen.items()}
    masks = {op: _mask(scores[op], chosen[op]) for op in job.linears}
    if latency.row_cost is not None:
        price_rows(job, latency, budget, job.info["formats"], masks)
    else:
        job.carry["latency_slack"] = budget - sum(c.cycles for c in chosen.values())
    return masks
