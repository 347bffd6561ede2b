"""Learnable weight clipping (OmniQuant's LWC, Shao et al., ICLR 2024, arXiv 2308.13137).

Each group of each Linear gets two logits: xmax = sigmoid(g1) * max(W), xmin = sigmoid(g0) * min(W)
(see :mod:`pruning.quant` for the rest of the quantizer). The logits start at ``init`` (OmniQuant: 4,
sigmoid(4) = 0.982); g = +inf is plain min-max RTN. The module is a drop-in weight transform: BESA's
allocation learner applies it after masking (joint training), and :func:`clip_only_weights` uses it
alone on fixed masks (LWC after magnitude / Wanda / SparseGPT, or on a dense model).
"""

from __future__ import annotations

import torch
from torch import nn

from pruning.quant import QuantParams, fake_quant, group_width, quantize


class ClipLearner(nn.Module):
    """Per-group clipping logits of the Linears of one block, keyed by parameter name."""

    def __init__(self, shapes: dict[str, tuple[int, int]], bits: int, group: int, init: float = 4.0,
                 device: torch.device | str | None = None) -> None:
        super().__init__()
        self.bits, self.group, self.names = bits, group, list(shapes)
        self.lo, self.hi = nn.ParameterList(), nn.ParameterList()
        for out, cols in shapes.values():
            n = cols // group_width(cols, group)
            self.lo.append(nn.Parameter(torch.full((out, n), float(init), device=device)))
            self.hi.append(nn.Parameter(torch.full((out, n), float(init), device=device)))

    def factors(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Clipping factors (sigmoid(g0), sigmoid(g1)) of one Linear, each (out, groups)."""
        i = self.names.index(name)
        return torch.sigmoid(self.lo[i]), torch.sigmoid(self.hi[i])

    def forward(self, name: str, weight: torch.Tensor) -> torch.Tensor:
        """Fake-quantized ``weight`` (already masked) with straight-through rounding."""
        lo, hi = self.factors(name)
        return fake_quant(weight, self.bits, self.group, lo, hi)

    @torch.no_grad()
    def quantize(self, name: str, weight: torch.Tensor) -> QuantParams:
        """Codes, scales and zeros of the final (masked) weight with the learned clipping."""
        lo, hi = self.factors(name)
        return quantize(weight, self.bits, self.group, lo, hi)


class FixedMaskClip(nn.Module):
    """LWC alone: the weights of a block under fixed masks, quantized with learnable clipping.

    Has the allocation learner's interface (``masked_weights() -> (weights, None)``) so the same
    block-reconstruction loop trains it.
    """

    def __init__(self, weights: dict[str, torch.Tensor], masks: dict[str, torch.Tensor], clip: ClipLearner) -> None:
        super().__init__()
        self.clip = clip
        self.weights = {n: (w.detach() * masks[n].to(w.dtype)) for n, w in weights.items()}

    def masked_weights(self) -> tuple[dict[str, torch.Tensor], None]:
        return {n: self.clip(n, w) for n, w in self.weights.items()}, None
