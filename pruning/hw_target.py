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
  ((block_cycles - aim) / (dense_block_cycles - aim))^2``: the miss in units of the saving asked
  for, which is BESA's ``((s - target) / target)^2`` exactly where cycles are proportional to the
  kept weights. Learning starts at the uniform sparsity that meets the budget exactly, and the aim
  is the envelope's cycles of that allocation (:meth:`LatencyModel.start`; the budget itself where
  only 2:4 pays), so the envelope's optimism does not shift the learned level.
- Rounding: the learned per-row sparsities are scaled (as BESA scales them to a parameter target)
  to the smallest parameter sparsity whose *exact* cost, each op in its cheapest format at its
  achieved sparsity, fits the budget (bisection). A Linear left below its sparse path's break-even
  runs dense and so keeps all its weights (its zeros would buy nothing).
- Format: each op runs in its cheapest format at its achieved sparsity: ``dense`` (stored dense,
  zeros computed) or ``sparse`` (the preset's path); the run records it per layer.
- 2:4, where the preset gains from it (a systolic array with an N:M path, CSR at 50%): each such
  Linear also has a learned gate q = sigmoid(a) scoring a 2:4 mask of the same importance scores
  against BESA's unstructured mask (:class:`FormatGates`). The gates are scored, not switched: the
  forward pass keeps the unstructured weight, so BESA's allocation learns as it would without gates,
  and q's gradient is the first-order change of the loss were the Linear 2:4 instead,
  ``<dL/dW, W_24 - W_u>``. The gates' penalty is on ``(1 - q) * envelope(s) + q * cycles(2:4)`` with
  the sparsities held fixed, so a gate is pulled by the cycles it would save beyond what the
  allocation already saves and pushed back by the error it would add; the allocation's own penalty
  is the one without gates, so with every gate closed the result is BESA's without gates. Rounding tries 2:4 on the k Linears
  with the largest q (k = 0, 1, ... until the 2:4 Linears alone meet the budget; that last set drops
  the members it can do without, smallest q first), the rest unstructured as above, and keeps the
  option with the least block reconstruction error on ``search_samples`` calibration segments (the
  training loss without its penalty).
- Budget carried over: a block that lands under (over) its budget passes the difference to the next
  (``latency_slack``), so the whole model lands on the target within about one Linear's saving
  rather than one per block.
- Row spread: the table prices a sparsity, not how a row-wise allocation spreads it over rows, which
  a lane-parallel engine pays for in prefill (simulator/latency_table.py). Given ``row_cost`` (the
  simulator's cycles of a Linear with its real keep mask, passed in as a function), a block's
  sparse-format Linears are priced by it once rounded, and that is what the block hands on as its
  slack, so later blocks make up what the spread cost; the run records those cycles per layer.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Callable, Mapping

import numpy as np
import torch
from torch import nn

__all__ = ["FormatGates", "LatencyModel", "MaxNormSGD", "hull", "latency_penalty", "round_to_budget"]


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
    # (op, keep mask as a bool numpy array) -> the simulator's cycles of that Linear on the sparse path
    row_cost: Callable[[str, np.ndarray], float] | None = field(default=None, compare=False, repr=False)

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
    def from_rows(cls, rows: list[Mapping], target_speedup: float, row_cost=None) -> "LatencyModel":
        """From latency-table rows (dicts with op, format, sparsity, cycles, blocks, hardware, phase);
        ``row_cost`` as the field."""
        sparse = {}
        for r in sorted((r for r in rows if r["format"] == "sparse"), key=lambda r: r["sparsity"]):
            sparse.setdefault(r["op"], []).append(float(r["cycles"]))
        grid = sorted({float(r["sparsity"]) for r in rows if r["format"] == "sparse"})
        dense = {r["op"]: float(r["cycles"]) for r in rows if r["format"] == "dense" and r["op"] != "other"}
        other = sum(float(r["cycles"]) for r in rows if r["op"] == "other")
        nm = {r["op"]: float(r["cycles"]) for r in rows if r["format"] == "2:4"}
        first = rows[0]
        return cls(target_speedup, tuple(grid), dense, {k: tuple(v) for k, v in sparse.items()}, other,
                   int(first["blocks"]), str(first.get("hardware", "")), str(first.get("phase", "")), nm, row_cost)

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

    def pruned_cycles(self, formats: Mapping[str, str], keep: Mapping[str, torch.Tensor]) -> dict[str, float]:
        """Cycles of each of a block's pruned Linears (op -> format, op -> keep mask): a sparse-format
        one by ``row_cost`` when given (its rows' spread counted), every other from the table."""
        out = {}
        for op, fmt in formats.items():
            if fmt == "sparse" and self.row_cost is not None:
                out[op] = float(self.row_cost(op, keep[op].detach().to("cpu", torch.bool).numpy()))
            else:
                out[op] = self.cycles(op, 1.0 - float(keep[op].float().mean()), fmt)
        return out

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

    def _smallest_fitting(self, cost, budget: float) -> float:
        """The smallest uniform sparsity on [0, grid end] whose ``cost(s)`` (non-increasing) fits ``budget``
        (bisection; the grid's end when none does)."""
        lo, hi = 0.0, self.grid[-1]
        for _ in range(40):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if cost(mid) > budget else (lo, mid)
        return hi

    def gains_nm(self, op: str) -> bool:
        """Whether a 2:4 mask runs ``op`` faster than dense on this preset."""
        return self.nm.get(op, math.inf) < self.dense[op]

    def _envelope_nm(self, op: str, s: float) -> float:
        """The convex envelope of every option of ``op``: unstructured on the grid and 2:4 at 0.5."""
        pts = sorted([(x, min(self.dense[op], c)) for x, c in zip(self.grid, self.sparse[op])]
                     + ([(0.5, self.nm[op])] if self.gains_nm(op) else []))
        return _interp(*hull([p[0] for p in pts], [p[1] for p in pts]), s)

    def uniform_sparsity(self, ops: list[str], budget: float | None = None) -> float:
        """Where BESA's unstructured allocation starts: the uniform sparsity s whose relaxed block cost,
        every option of every op relaxed together (2:4 included), meets the budget; 0 when the
        unstructured path itself gains nothing at s (CSR at low sparsity, a systolic array): the 2:4
        gates then carry the saving, and the reconstruction does not start from a mask that buys nothing."""
        budget = self.block_budget if budget is None else budget
        hi = self._smallest_fitting(lambda s: sum(self._envelope_nm(op, s) for op in ops), budget)
        if any(self.gains_nm(op) for op in ops) and sum(self.best(op, hi)[1] for op in ops) >= sum(
                self.dense[op] for op in ops):
            return 0.0
        return hi

    def start(self, ops: list[str], budget: float) -> tuple[float, float]:
        """(sparsity the learning starts from, relaxed block cycles the penalty aims at).

        Where unstructured sparsity pays at the start (:meth:`uniform_sparsity` > 0): the exact
        uniform sparsity that meets ``budget``, and the *relaxed* cycles of that uniform allocation. The
        envelope lies below the exact cost between its corners (a bitmap's index makes the sparse path
        cost more than the chord from dense), so aiming the relaxed cycles at the budget itself would
        learn an allocation short of the budget, which rounding then scales up row by row; aimed at the
        relaxed cycles of the allocation that meets it, the learned level is the one rounding keeps.
        Elsewhere (only 2:4 pays, or no uniform sparsity meets the budget): (that start, ``budget``)."""
        s = self.uniform_sparsity(ops, budget)
        if s == 0.0 or sum(self.best(op, self.grid[-1])[1] for op in ops) > budget:
            return s, budget
        hi = self._smallest_fitting(lambda s: sum(self.best(op, s)[1] for op in ops), budget)
        return hi, sum(float(self.relaxed(op, torch.tensor(hi, dtype=torch.float64))) for op in ops)

    def summary(self) -> dict:
        return {"hardware": self.hardware, "phase": self.phase, "target_speedup": self.target_speedup,
                "block_budget_cycles": round(self.block_budget, 1), "dense_cycles": round(self.dense_total, 1)}


def price_rows(job, latency: LatencyModel, budget: float, formats: Mapping[str, str],
               masks: Mapping[str, torch.Tensor]) -> None:
    """A block's Linears priced with their real masks (module docstring, "Row spread"): the slack the
    block hands on (``job.carry``) and the cycles recorded per layer (``job.info``)."""
    cycles = latency.pruned_cycles(formats, masks)
    job.carry["latency_slack"] = budget - sum(cycles.values())
    job.info["cycles"] = cycles


def _op_of(param_name: str) -> str:
    return param_name.split(".")[-2]  # "self_attn.q_proj.weight" -> "q_proj"


class MaxNormSGD(torch.optim.Optimizer):
    """Gradient descent whose step is scaled so that the largest move is ``lr``.

    For the format gates: their order is what rounding uses, and Adam's per-parameter normalisation
    would move every gate whose gradient keeps its sign by about ``lr`` a step, tying them. Here the
    relative sizes of the gradients survive. ``lr`` 0.25 with BESA's 24 steps a block lets a gate
    cross the whole range (logit 0 to 6, q 0.5 to 0.998) within one epoch; it was set so, not tuned.
    """

    def __init__(self, params, lr: float) -> None:
        super().__init__(params, {"lr": lr})

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None and (top := p.grad.abs().max()) > 0:
                    p.sub_(group["lr"] * p.grad / top)


class FormatGates(nn.Module):
    """BESA's allocation learner plus a learned choice of the 2:4 format per Linear (module docstring).

    Wraps an :class:`pruning.besa.AllocationLearner` and offers what :func:`pruning.besa.learn_allocation`
    uses of it (``weight_makers``, ``allocation_parameters``, ``layer_sparsities``), plus the gates.
    """

    def __init__(self, learner: nn.Module, masks24: dict[str, torch.Tensor], lr: float) -> None:
        super().__init__()
        self.learner = learner
        self.clip = None  # joint LWC with gates is refused by PruneConfig
        self.layers = learner.layers
        self.names = list(masks24)
        self.masks24 = masks24
        dev = next(iter(masks24.values())).device if masks24 else None
        self.logits = nn.Parameter(torch.zeros(len(self.names), device=dev))  # q = 0.5
        self.lr = lr

    def probs(self) -> dict[str, torch.Tensor]:
        """Probability of the 2:4 format per gated Linear (differentiable), keyed by parameter name."""
        q = torch.sigmoid(self.logits)
        return {name: q[i] for i, name in enumerate(self.names)}

    def allocation_parameters(self) -> list[nn.Parameter]:
        return self.learner.allocation_parameters()

    def gate_optimizer(self) -> torch.optim.Optimizer:
        return MaxNormSGD([self.logits], lr=self.lr)

    def layer_sparsities(self) -> dict[str, torch.Tensor]:
        return self.learner.layer_sparsities()

    def weight_makers(self):
        makers, s = self.learner.weight_makers()
        weights = {la.param_name: la.weight for la in self.layers}
        probs = self.probs()

        def gated(name: str, base):
            def make() -> torch.Tensor:
                # scored, not switched: the value is the unstructured weight, and q's gradient is the
                # first-order change of the loss were the Linear 2:4 instead (d/dq = <dL/dW, W_24 - W_u>)
                w = base()
                q = probs[name].to(w.dtype)
                w24 = weights[name] * self.masks24[name].to(weights[name].dtype)
                return w + (q - q.detach()) * (w24 - w).detach()
            return make

        return {name: gated(name, make) if name in probs else make for name, make in makers.items()}, s


def relaxed_cycles(learner: nn.Module, latency: LatencyModel) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A learner's relaxed block cycles, twice: (every Linear on its envelope at its expected sparsity,
    as without gates; the same with each gated Linear moved towards its 2:4 cycles by its gate's
    probability, the sparsities held fixed, or None without gates). The first trains the allocation,
    the second the gates, so the allocation learns exactly as it would without gates and the gates
    compete for the saving the allocation has not yet made."""
    gates = learner.probs() if isinstance(learner, FormatGates) else {}
    alloc, mixed = 0.0, 0.0
    for name, s in learner.layer_sparsities().items():
        op = _op_of(name)
        c = latency.relaxed(op, s)
        alloc = alloc + c
        mixed = mixed + (c.detach() + gates[name].double() * (latency.nm[op] - c.detach()) if name in gates
                         else c.detach())
    return alloc, mixed if gates else None


def latency_penalty(latency: LatencyModel, beta: float, ops: list[str], budget: float):
    """``beta * ((relaxed block cycles - budget) / (dense block cycles - budget))^2`` of a learner: the
    miss in units of the saving the target asks for, so that where latency is proportional to the kept
    weights this is BESA's own ``((s - target) / target)^2``; with gates, the same of their cycles too
    (:func:`relaxed_cycles`)."""
    saving = sum(latency.dense[op] for op in ops) - budget

    def penalty(learner) -> torch.Tensor:
        return sum(beta * ((c - budget) / saving) ** 2 for c in relaxed_cycles(learner, latency)
                   if c is not None).float()
    return penalty


@torch.no_grad()
def round_to_budget(learner: nn.Module, latency: LatencyModel, budget: float, block_error, iters: int = 30):
    """Per-Linear keep masks, formats and exact table cycles of one block within ``budget`` (module
    docstring). ``block_error(masks)`` measures the block's reconstruction error with those keep masks
    (op -> bool mask); it is called only when more than one 2:4 choice fits.

    Returns (per-row prune counts per Linear, keep masks by op, formats by op, cycles).
    """
    gates = learner.probs() if isinstance(learner, FormatGates) else {}
    base = learner.learner if isinstance(learner, FormatGates) else learner
    layers = base.layers
    ops = [_op_of(la.param_name) for la in layers]
    numel = [la.weight.numel() for la in layers]
    order = sorted((i for i, la in enumerate(layers) if la.param_name in gates),
                   key=lambda i: -float(gates[layers[i].param_name]))
    top = min(max(latency.grid), base.max_sparsity)

    def sparse_cycles(i: int, counts: list[torch.Tensor]) -> float:
        return latency.best(ops[i], float(counts[i].sum()) / numel[i])[1]

    def rest(two4: set[int]) -> list[int]:
        return [i for i in range(len(layers)) if i not in two4]

    def unstructured(free: list[int], budget_left: float):
        """(counts, cycles of ``free``, whether they need no pruning) within ``budget_left``; None if out of reach."""
        none = base.final_counts(0.0, free)
        if sum(sparse_cycles(i, none) for i in free) <= budget_left:
            return none, sum(sparse_cycles(i, none) for i in free), True
        if sum(sparse_cycles(i, base.final_counts(top, free)) for i in free) > budget_left:
            return None
        lo, hi = 0.0, top
        for _ in range(iters):
            mid = (lo + hi) / 2
            counts = base.final_counts(mid, free)
            lo, hi = (mid, hi) if sum(sparse_cycles(i, counts) for i in free) > budget_left else (lo, mid)
        counts = dense_unpruned(base.final_counts(hi, free))
        return counts, sum(sparse_cycles(i, counts) for i in free), False

    def dense_unpruned(counts: list[torch.Tensor]) -> list[torch.Tensor]:
        """A Linear whose sparsity is too low for its sparse path to pay runs dense: its zeros buy no
        cycles, so it keeps its weights (the same cycles, less error)."""
        return [torch.zeros_like(c) if latency.best(ops[i], float(c.sum()) / numel[i])[0] == "dense" else c
                for i, c in enumerate(counts)]

    def nm_cycles(two4: set[int]) -> float:
        return sum(latency.nm[ops[i]] for i in two4)

    options = []  # (2:4 set, counts, cycles)
    for k in range(len(order) + 1):
        two4 = set(order[:k])
        found = unstructured(rest(two4), budget - nm_cycles(two4))
        if found is not None and found[2]:  # fits with no unstructured pruning: more 2:4 would only add error;
            for i in order[:k][::-1]:  # and so would any 2:4 Linear it can do without (a small one ranked first)
                if nm_cycles(two4 - {i}) + sum(latency.dense[ops[j]] for j in rest(two4 - {i})) <= budget:
                    two4 = two4 - {i}
            found = unstructured(rest(two4), budget - nm_cycles(two4))
            options.append((two4, found[0], nm_cycles(two4) + found[1]))
            break
        if found is not None:
            options.append((two4, found[0], nm_cycles(two4) + found[1]))
    if not options:  # out of reach in this block (the slack of earlier blocks): the fastest it can be
        two4 = set(order)
        counts = dense_unpruned(base.final_counts(top, rest(two4)))
        options = [(two4, counts, nm_cycles(two4) + sum(sparse_cycles(i, counts) for i in rest(two4)))]

    def masks_of(option) -> dict[str, torch.Tensor]:
        two4, counts, _ = option
        return {ops[i]: learner.masks24[la.param_name] if i in two4 else base.keep_mask(la, counts[i])
                for i, la in enumerate(layers)}

    best = options[0] if len(options) == 1 else min(options, key=lambda o: block_error(masks_of(o)))
    formats = {ops[i]: "2:4" if i in best[0] else latency.best(ops[i], float(best[1][i].sum()) / numel[i])[0]
               for i in range(len(layers))}
    return best[1], masks_of(best), formats, best[2]
