"""Hardware-targeted allocation: BESA's sparsity penalty replaced by a latency penalty from a
simulator latency table (FBNet's differentiable latency table, arXiv 1812.03443; SPDY's and
ZipLM's per-layer timings, arXiv 2201.13096 / 2302.04089), fed as plain numbers so that
``pruning/`` never imports the simulator.

The rule. A table (simulator/latency_table.py) gives, per Linear op type, the cycles of its dense
form and of the preset's sparse path at a grid of sparsities, and the cycles of every other op of
the step (constant ``other``). A target speedup X on that preset sets the step's budget
``dense_total / X``; with the constant part removed and every block of a LLaMA shape alike, each
block gets ``(dense_total / X - other) / blocks`` cycles for its seven Linears.

- Learning: an op's cost at expected sparsity s is the lower convex envelope of
  ``min(dense, sparse(s))`` over the grid, linear between its corners. A format that gains nothing
  until high sparsity (CSR with 16-bit indices, a systolic array) is then still a slope the
  gradient can follow, where the exact cost is flat. Loss = reconstruction + ``beta *
  ((block_cycles - budget) / (dense_block_cycles - budget))^2``: the miss in units of the saving
  asked for, which is BESA's ``((s - target) / target)^2`` exactly where cycles are proportional to
  the kept weights.
- Rounding: the learned per-row sparsities are scaled (as BESA scales them to a parameter target)
  to the smallest parameter sparsity whose *exact* cost, each op in its cheapest format at its
  achieved sparsity, fits the budget (bisection).
- Format: each op runs in its cheapest format at its achieved sparsity: ``dense`` (stored dense,
  zeros computed) or ``sparse`` (the preset's path); the run records it per layer.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Mapping

import torch

__all__ = ["LatencyModel", "hull"]


def hull(xs: list[float], ys: list[float]) -> tuple[list[float], list[float]]:
    """Lower convex envelope of the points (xs increasing): its corners (Andrew's monotone chain)."""
    pts: list[tuple[float, float]] = []
    for p in zip(xs, ys):
        while len(pts) >= 2:
            (x1, y1), (x2, y2) = pts[-2], pts[-1]
            if (x2 - x1) * (p[1] - y1) - (y2 - y1) * (p[0] - x1) <= 0:  # pts[-1] lies on or above the chord
                pts.pop()
            else:
                break
        pts.append(p)
    return [p[0] for p in pts], [p[1] for p in pts]


def _interp(xs: list[float], ys: list[float], s: float) -> float:
    if s <= xs[0]:
        return ys[0]
    for (x0, y0), (x1, y1) in zip(zip(xs, ys), zip(xs[1:], ys[1:])):
        if s <= x1:
            return y0 + (s - x0) / (x1 - x0) * (y1 - y0)
    return ys[-1]


def _interp_torch(xs: torch.Tensor, ys: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """Piecewise-linear interpolation, differentiable in ``s`` (constant beyond the ends)."""
    s = s.clamp(float(xs[0]), float(xs[-1]))
    i = torch.searchsorted(xs, s.detach().reshape(1), right=True).clamp(1, len(xs) - 1)[0]
    x0, x1, y0, y1 = xs[i - 1], xs[i], ys[i - 1], ys[i]
    return y0 + (s - x0) / (x1 - x0) * (y1 - y0)


@dataclass(frozen=True)
class LatencyModel:
    """A latency table as numbers, and the speedup it is asked for (see the module docstring)."""

    target_speedup: float
    grid: tuple[float, ...]
    dense: Mapping[str, float]                 # op -> cycles of its dense form (one block)
    sparse: Mapping[str, tuple[float, ...]]    # op -> cycles of the sparse path on the grid
    other: float                               # every non-Linear op of the step
    blocks: int
    hardware: str = ""
    phase: str = ""
    nm: Mapping[str, float] = field(default_factory=dict)  # op -> cycles of a 2:4 mask, where the preset gains

    def __post_init__(self) -> None:
        if not self.target_speedup > 1.0:
            raise ValueError(f"target speedup must be > 1 (a speedup over dense), got {self.target_speedup}")
        floor = self.other + self.blocks * sum(min(self.dense[op], min(c), self.nm.get(op, math.inf))
                                               for op, c in self.sparse.items())
        if self.dense_total / self.target_speedup < floor:
            raise ValueError(f"target speedup {self.target_speedup:g}x is out of reach on {self.hardware or 'this'} "
                             f"{self.phase}: at most {self.dense_total / floor:.3f}x with every Linear at its fastest "
                             f"sparsity ({self.grid[-1]:g})")

    @classmethod
    def from_rows(cls, rows: list[Mapping], target_speedup: float) -> "LatencyModel":
        """From latency-table rows (dicts with op, format, sparsity, cycles, blocks, hardware, phase)."""
        sparse = {}
        for r in sorted((r for r in rows if r["format"] == "sparse"), key=lambda r: r["sparsity"]):
            sparse.setdefault(r["op"], []).append(float(r["cycles"]))
        grid = sorted({float(r["sparsity"]) for r in rows if r["format"] == "sparse"})
        dense = {r["op"]: float(r["cycles"]) for r in rows if r["format"] == "dense" and r["op"] != "other"}
        other = sum(float(r["cycles"]) for r in rows if r["op"] == "other")
        nm = {r["op"]: float(r["cycles"]) for r in rows if r["format"] == "2:4"}
        first = rows[0]
        return cls(target_speedup, tuple(grid), dense, {k: tuple(v) for k, v in sparse.items()}, other,
                   int(first["blocks"]), str(first.get("hardware", "")), str(first.get("phase", "")), nm)

    @property
    def dense_total(self) -> float:
        return self.other + self.blocks * sum(self.dense.values())

    @property
    def block_budget(self) -> float:
        """Cycles a block's Linears may take for the step to reach the target speedup."""
        return (self.dense_total / self.target_speedup - self.other) / self.blocks

    def best(self, op: str, sparsity: float) -> tuple[str, float]:
        """(format, cycles) of the cheapest way to run ``op`` at ``sparsity``."""
        sparse = _interp(list(self.grid), list(self.sparse[op]), sparsity)
        return ("sparse", sparse) if sparse < self.dense[op] else ("dense", self.dense[op])

    def cycles(self, op: str, sparsity: float, fmt: str | None = None) -> float:
        """Cycles of ``op`` at ``sparsity`` in ``fmt`` (None: the cheapest of dense and sparse)."""
        if fmt == "2:4":
            return self.nm[op]
        if fmt == "dense":
            return self.dense[op]
        if fmt == "sparse":
            return _interp(list(self.grid), list(self.sparse[op]), sparsity)
        return self.best(op, sparsity)[1]

    def block_cycles(self, sparsities: Mapping[str, float]) -> float:
        """Exact table cycles of one block's Linears, each in its cheapest format."""
        return sum(self.best(op, s)[1] for op, s in sparsities.items())

    @functools.cached_property
    def _hulls(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Per op, the corners of the convex envelope of min(dense, sparse(s)) (computed once, not per step)."""
        out = {}
        for op, cycles in self.sparse.items():
            xs, ys = hull(list(self.grid), [min(self.dense[op], c) for c in cycles])
            out[op] = (torch.tensor(xs, dtype=torch.float64), torch.tensor(ys, dtype=torch.float64))
        return out

    def relaxed(self, op: str, sparsity: torch.Tensor) -> torch.Tensor:
        """The convex relaxation of ``op``'s cycles at expected ``sparsity``, differentiable."""
        xs, ys = self._hulls[op]
        if len(xs) == 1:
            return sparsity * 0 + float(ys[0])
        dev = sparsity.device
        return _interp_torch(xs.to(dev), ys.to(dev), sparsity.double())

    def uniform_sparsity(self, ops: list[str]) -> float:
        """The uniform sparsity whose relaxed block cost meets the budget (where the learning starts)."""
        lo, hi = 0.0, self.grid[-1]
        for _ in range(40):
            mid = (lo + hi) / 2
            cost = sum(float(self.relaxed(op, torch.tensor(mid))) for op in ops)
            lo, hi = (mid, hi) if cost > self.block_budget else (lo, mid)
        return hi

    def summary(self) -> dict:
        return {"hardware": self.hardware, "phase": self.phase, "target_speedup": self.target_speedup,
                "block_budget_cycles": round(self.block_budget, 1), "dense_cycles": round(self.dense_total, 1)}
