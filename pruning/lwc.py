"""Learnable weight clipping (OmniQuant's LWC, Shao et al., ICLR 2024, arXiv 2308.13137).

Each group of each Linear gets two logits: xmax = sigmoid(g1) * max(W), xmin = sigmoid(g0) * min(W)
(see :mod:`pruning.quant` for the rest of the quantizer). The logits start at ``init`` (OmniQuant: 4,
sigmoid(4) = 0.982); g = +inf is plain min-max RTN. The module is a drop-in weight transform: BESA's
allocation learner applies it after masking (joint training), and :func:`clip_only_weights` uses it
alone on fixed masks (LWC after magnitude / Wanda / SparseGPT, or on a dense model).

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
    (computed on the kept weights). Straight-through gradients per element (u = w / s, r = round(u)):
    inside the range d w_hat = dw + (r - u) ds; clamped low d w_hat = dxmin - (z + xmin / s) ds;
    clamped high d w_hat = dxmin + (qmax - z - xmin / s) ds; ds = (dxmax - dxmin) / qmax.
    """

    @staticmethod
    def forward(ctx, w, lo, hi, wmax, wmin, bits: int, group: int):  # noqa: D102
        qmax = 2**bits - 1
        xmin = lo * wmin
        s = ((hi * wmax - xmin) / qmax).clamp_min(1e-8)
        z = torch.round(-xmin / s).clamp(0, qmax)
        out = torch.round(grouped(w, group) / s.unsqueeze(-1)).add_(z.unsqueeze(-1)).clamp_(0, qmax)
        ctx.save_for_backward(w, s, z, xmin, wmax, wmin)
        ctx.bits, ctx.group = bits, group
        return out.sub_(z.unsqueeze(-1)).mul_(s.unsqueeze(-1)).reshape(w.shape)

    @staticmethod
    def backward(ctx, grad_out):  # noqa: D102
        w, s, z, xmin, wmax, wmin = ctx.saved_tensors
        qmax = 2**ctx.bits - 1
        s3, z3 = s.unsqueeze(-1), z.unsqueeze(-1)
        u = grouped(w, ctx.group) / s3
        r = torch.round(u)
        t = r + z3
        inside = (t >= 0) & (t <= qmax)
        go = grouped(grad_out, ctx.group)
        edge = (xmin / s).unsqueeze(-1) + z3  # z + xmin / s
        coef = torch.where(inside, r.sub_(u), torch.where(t < 0, -edge, qmax - edge))
        grad_s = (go * coef).sum(-1)
        go_inside = go * inside
        grad_xmin = (go.sum(-1) - go_inside.sum(-1)) - grad_s / qmax
        grad_xmax = grad_s / qmax
        grad_w = go_inside.reshape(w.shape) if ctx.needs_input_grad[0] else None
        return grad_w, grad_xmin * wmin, grad_xmax * wmax, None, None, None, None


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

    def forward(self, name: str, weight: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """Fake-quantized ``weight`` with straight-through rounding; the group ranges come from the
        kept weights (``weight * keep``, or ``weight`` itself when it is already masked)."""
        lo, hi = self.factors(name)
        with torch.no_grad():
            g = grouped(weight if keep is None else weight * keep, self.group)
            wmax, wmin = g.amax(dim=-1).clamp_min(0), g.amin(dim=-1).clamp_max(0)
        return LwcFakeQuant.apply(weight, lo, hi, wmax, wmin, self.bits, self.group)

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
