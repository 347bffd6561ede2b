"""Learnable weight clipping (OmniQuant's LWC, Shao et al., ICLR 2024, arXiv 2308.13137).

Each group of each Linear gets two logits: xmax = sigmoid(g1) * max(W), xmin = sigmoid(g0) * min(W)
(see :mod:`pruning.quant` for the rest of the quantizer). The logits start at ``init`` (OmniQuant: 4,
sigmoid(4) = 0.982); g = +inf is plain min-max RTN. The module is a drop-in weight transform: BESA's
allocation learner applies it after masking (joint training), and it is also used
alone on fixed masks (:class:`FixedMaskClip`: LWC after magnitude / Wanda / SparseGPT, or on a dense model).

The fake quantization has a hand-written backward (:class:`LwcFakeQuant`): autograd through the
dozen elementwise ops of :func:`pruning.quant.fake_quant` tripled the cost of a BESA step's weight
transform. Its gradients are the straight-through ones of ``fake_quant`` except that the group's
max/min are constants with respect to ``w`` (the range comes from the current hard mask); the
clipping factors get the exact gradient.
"""

from __future__ import annotations

import torch
from torch import nn

from pruning.quant import QuantParams, group_width, grouped, quantize


class LwcFakeQuant(torch.autograd.Function):
    """w_hat = (clamp(round(w / s) + z, 0, qmax) - z) * s, s and z from lo * wmin and hi * wmax.

    ``wmax``/``wmin`` (out, groups) are the group's max(w, 0) and min(w, 0), given as constants
    (computed on the kept weights). Straight-through gradients per element (u = w / s):
    inside the range d w_hat = dw + (w_hat - w) / s ds; clamped (low or high)
    d w_hat = dxmin + (w_hat - xmin) / s ds; and ds = (dxmax - dxmin) / qmax.
    """

    @staticmethod
    def forward(ctx, w, lo, hi, wmax, wmin, bits: int, group: int):  # noqa: D102
        qmax = 2**bits - 1
        xmin = lo * wmin
        s = ((hi * wmax - xmin) / qmax).clamp_min(1e-8)
        z = torch.round(-xmin / s).clamp(0, qmax)
        t = torch.round(grouped(w, group) / s.unsqueeze(-1)).add_(z.unsqueeze(-1))
        inside = (t >= 0) & (t <= qmax)
        out = t.clamp_(0, qmax).sub_(z.unsqueeze(-1)).mul_(s.unsqueeze(-1))
        ctx.save_for_backward(w, out, inside, s, xmin, wmax, wmin)
        ctx.bits, ctx.group = bits, group
        return out.reshape(w.shape)

    @staticmethod
    def backward(ctx, grad_out):  # noqa: D102
        w, out, inside, s, xmin, wmax, wmin = ctx.saved_tensors
        qmax = 2**ctx.bits - 1
        go = grouped(grad_out, ctx.group)
        diff = torch.where(inside, grouped(w, ctx.group), xmin.unsqueeze(-1))
        torch.sub(out, diff, out=diff)  # w_hat - (w inside, xmin clamped)
        grad_s = torch.linalg.vecdot(go, diff) / s
        grad_xmin = torch.where(inside, 0.0, go).sum(-1) - grad_s / qmax
        grad_xmax = grad_s / qmax
        grad_w = (go * inside).reshape(w.shape) if ctx.needs_input_grad[0] else None
        return grad_w, grad_xmin * wmin, grad_xmax * wmax, None, None, None, None


class ClipLearner(nn.Module):
    """Per-group clipping logits of the Linears of one block, keyed by parameter name.

    All groups of all Linears live in two flat parameters (one entry per group, in Linear order),
    so that when every Linear has the same group width the whole block is fake-quantized by one
    call (:meth:`forward_all`): a few dozen tensor ops per training step instead of a few hundred.
    """

    def __init__(self, shapes: dict[str, tuple[int, int]], bits: int, group: int, init: float = 4.0,
                 device: torch.device | str | None = None) -> None:
        super().__init__()
        self.bits, self.group = bits, group
        self.spans: dict[str, tuple[int, int, int]] = {}  # name -> (first group, rows, groups per row)
        total = 0
        for name, (out, cols) in shapes.items():
            n = cols // group_width(cols, group)
            self.spans[name] = (total, out, n)
            total += out * n
        self.widths = {cols // self.spans[name][2] for name, (_, cols) in shapes.items()}
        self.lo = nn.Parameter(torch.full((total,), float(init), device=device))
        self.hi = nn.Parameter(torch.full((total,), float(init), device=device))

    def logits(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(g0, g1) of one Linear as (out, groups) views of the flat parameters."""
        start, out, n = self.spans[name]
        return self.lo[start:start + out * n].view(out, n), self.hi[start:start + out * n].view(out, n)

    def factors(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Clipping factors (sigmoid(g0), sigmoid(g1)) of one Linear, each (out, groups)."""
        lo, hi = self.logits(name)
        return torch.sigmoid(lo), torch.sigmoid(hi)

    def forward(self, name: str, weight: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """Fake-quantized ``weight`` with straight-through rounding; the group ranges come from the
        kept weights (``weight * keep``, or ``weight`` itself when it is already masked)."""
        lo, hi = self.factors(name)
        return _fake_quant(weight, keep, lo, hi, self.bits, self.group)

    def forward_all(self, weights: dict[str, torch.Tensor],
                    keeps: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """:meth:`forward` of every Linear, fused into one call when all group widths are equal."""
        if len(self.widths) != 1:
            return {n: self(n, w, None if keeps is None else keeps[n]) for n, w in weights.items()}
        width = next(iter(self.widths))
        flat = torch.cat([w.reshape(-1, width) for w in weights.values()])  # (all groups, width)
        keep = None if keeps is None else torch.cat([keeps[n].reshape(-1, width) for n in weights])
        lo, hi = torch.sigmoid(self.lo).unsqueeze(1), torch.sigmoid(self.hi).unsqueeze(1)
        out = _fake_quant(flat, keep, lo, hi, self.bits, width).split([w.numel() // width for w in weights.values()])
        return {n: o.reshape(w.shape) for o, (n, w) in zip(out, weights.items())}

    @torch.no_grad()
    def quantize(self, name: str, weight: torch.Tensor) -> QuantParams:
        """Codes, scales and zeros of the final (masked) weight with the learned clipping."""
        lo, hi = self.factors(name)
        return quantize(weight, self.bits, self.group, lo, hi)


def _fake_quant(w: torch.Tensor, keep: torch.Tensor | None, lo: torch.Tensor, hi: torch.Tensor, bits: int,
                group: int) -> torch.Tensor:
    with torch.no_grad():
        g = grouped(w if keep is None else w * keep, group)
        wmax, wmin = g.amax(dim=-1).clamp_min(0), g.amin(dim=-1).clamp_max(0)
    return LwcFakeQuant.apply(w, lo, hi, wmax, wmin, bits, group)


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
        return self.clip.forward_all(self.weights), None
