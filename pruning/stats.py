"""Per-Linear input statistics gathered with forward hooks during the shared block loop.

* ``sq_mean``: per-input-channel mean of x^2 (Wanda's ||X_j||_2, up to a constant).
* ``hessian``: X^T X / n_tokens, the layer-wise reconstruction Hessian of SparseGPT/OBS.

Projections that read the same tensor (k/v share q's input, up shares gate's) are hooked once.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

import torch
from torch import nn

from pruning.arch import SHARED_INPUT


@dataclass
class InputStats:
    """Running statistics of the inputs of one Linear."""

    in_features: int
    want_hessian: bool
    n_tokens: int = 0
    sq_sum: torch.Tensor | None = None
    xtx: torch.Tensor | None = None
    finite: bool = field(default=True)
    normalised: bool = False  # xtx already divided by n_tokens (see ``hessian``)

    def add(self, x: torch.Tensor) -> None:
        """Accumulate a batch of inputs (..., in)."""
        if self.normalised:
            raise RuntimeError("inputs added after the Hessian was read")
        x = x.detach().reshape(-1, self.in_features).float()
        if not torch.isfinite(x).all():
            self.finite = False
            return
        sq = x.pow(2).sum(dim=0)
        self.sq_sum = sq if self.sq_sum is None else self.sq_sum + sq
        if self.want_hessian:
            xtx = x.t() @ x  # (in, in)
            self.xtx = xtx if self.xtx is None else self.xtx + xtx
        self.n_tokens += x.shape[0]

    @property
    def sq_mean(self) -> torch.Tensor:
        return self.sq_sum / max(self.n_tokens, 1)

    @property
    def hessian(self) -> torch.Tensor:
        """X^T X / tokens, normalised in place on first use (no second (in, in) copy): read it only
        once collection is over. Callers must not modify it."""
        if self.xtx is None:
            raise RuntimeError("Hessian was not collected for this layer")
        if not self.normalised:
            self.xtx.div_(max(self.n_tokens, 1))
            self.normalised = True
        return self.xtx


@contextmanager
def collect_input_stats(linears: dict[str, nn.Linear], want_hessian: bool) -> Iterator[dict[str, InputStats]]:
    """Hook ``linears`` while the body runs forwards; yields op -> stats (shared inputs share one object)."""
    stats: dict[str, InputStats] = {}
    handles = []
    for op, lin in linears.items():
        if op in SHARED_INPUT and SHARED_INPUT[op] in linears:
            continue
        st = InputStats(lin.in_features, want_hessian)
        stats[op] = st
        handles.append(lin.register_forward_pre_hook(lambda _m, args, st=st: st.add(args[0])))
    for op, src in SHARED_INPUT.items():
        if op in linears and src in stats:
            stats[op] = stats[src]
    try:
        yield stats
    finally:
        for h in handles:
            h.remove()


def check_finite(stats: dict[str, InputStats], block_index: int) -> None:
    """Raise ValueError when a block saw NaN/inf activations (a broken model or fp16 overflow)."""
    bad = sorted(op for op, st in stats.items() if not st.finite)
    if bad:
        raise ValueError(f"NaN/inf activations at the inputs of block {block_index} ({', '.join(bad)})")
