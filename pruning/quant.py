"""Weight-only uniform asymmetric quantization, per group of ``group`` consecutive inputs of a row.

For one group with weights w and clipping factors a_lo, a_hi in (0, 1] (1 = plain min-max, RTN):
    xmax = a_hi * max(max(w), 0),  xmin = a_lo * min(min(w), 0)
    scale = (xmax - xmin) / (2^b - 1),  zero = round(-xmin / scale)  (an integer in [0, 2^b - 1])
    code = clamp(round(w / scale) + zero, 0, 2^b - 1),  w_hat = (code - zero) * scale.
The range always contains 0 and the zero point is rounded, so a pruned weight (w = 0) gets the code
``zero`` and dequantizes to exactly 0: the sparse format never has to store it. Because the range
contains 0 anyway, taking max/min over the kept weights only or over the whole (masked) group is the
same thing; the pruned zeros never widen a group's range.

The learnable clipping factors are OmniQuant's LWC (Shao et al., ICLR 2024, arXiv 2308.13137):
a = sigmoid(g), trained through a straight-through round (:func:`fake_quant`).
``group = -1`` means one group per output channel (the whole row).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

BITS = (2, 3, 4, 8)


@dataclass
class QuantParams:
    """Integer codes of one Linear and their per-group scales and zero points."""

    codes: torch.Tensor   # (out, in) uint8, 0 .. 2^bits - 1
    scales: torch.Tensor  # (out, groups) float32
    zeros: torch.Tensor   # (out, groups) uint8, the code of an exact 0
    bits: int
    group: int            # inputs per group (-1: whole row)

    def dequantize(self) -> torch.Tensor:
        """(codes - zero) * scale, float32 (out, in)."""
        q = grouped(self.codes.float(), self.group)
        return ((q - self.zeros.float().unsqueeze(-1)) * self.scales.unsqueeze(-1)).reshape(self.codes.shape)


def group_width(cols: int, group: int) -> int:
    """Inputs per group for a layer with ``cols`` inputs (ValueError when ``group`` does not divide it)."""
    width = cols if group == -1 else group
    if width < 1 or cols % width:
        raise ValueError(f"quantization group size {group} does not divide the input width {cols}; "
                         "use a divisor or -1 (one group per output channel)")
    return width


def grouped(w: torch.Tensor, group: int) -> torch.Tensor:
    """View (out, in) as (out, groups, width)."""
    width = group_width(w.shape[1], group)
    return w.reshape(w.shape[0], w.shape[1] // width, width)


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """round() in the forward pass, identity gradient (straight-through estimator)."""
    return x + (torch.round(x) - x).detach()


def group_range(w: torch.Tensor, bits: int, group: int, lo: torch.Tensor | float = 1.0,
                hi: torch.Tensor | float = 1.0, ste: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, zero) per group, each (out, groups); ``lo``/``hi`` are clipping factors in (0, 1]."""
    g = grouped(w, group)
    xmax = g.amax(dim=-1).clamp_min(0) * hi
    xmin = g.amin(dim=-1).clamp_max(0) * lo
    scale = ((xmax - xmin) / (2**bits - 1)).clamp_min(1e-8)  # an all-zero group keeps a valid scale
    zero = -xmin / scale
    zero = (round_ste(zero) if ste else torch.round(zero)).clamp(0, 2**bits - 1)
    return scale, zero


def quantize_codes(w: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, bits: int, group: int) -> torch.Tensor:
    """Integer codes (out, in) as float for given per-group ``scale`` and ``zero``, (out, groups)."""
    q = torch.round(grouped(w, group) / scale.unsqueeze(-1)) + zero.unsqueeze(-1)
    return q.clamp(0, 2**bits - 1).reshape(w.shape)


def fake_quant(w: torch.Tensor, bits: int, group: int, lo: torch.Tensor | float = 1.0,
               hi: torch.Tensor | float = 1.0) -> torch.Tensor:
    """Quantize-dequantize with straight-through rounding; differentiable in ``w``, ``lo`` and ``hi``."""
    scale, zero = group_range(w, bits, group, lo, hi, ste=True)
    q = (round_ste(grouped(w, group) / scale.unsqueeze(-1)) + zero.unsqueeze(-1)).clamp(0, 2**bits - 1)
    return ((q - zero.unsqueeze(-1)) * scale.unsqueeze(-1)).reshape(w.shape)


@torch.no_grad()
def quantize(w: torch.Tensor, bits: int, group: int, lo: torch.Tensor | float = 1.0,
             hi: torch.Tensor | float = 1.0) -> QuantParams:
    """Codes, scales and zero points of ``w`` (out, in); ``lo = hi = 1`` is plain min-max RTN."""
    w = w.detach().float()
    scale, zero = group_range(w, bits, group, lo, hi)
    codes = quantize_codes(w, scale, zero, bits, group)
    return QuantParams(codes.to(torch.uint8), scale, zero.to(torch.uint8), bits, group)


@torch.no_grad()
def codes_on_grid(w: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, bits: int, group: int) -> QuantParams:
    """QuantParams of weights already on the grid of (scale, zero) (e.g. after GPTQ-style OBS quantization)."""
    codes = quantize_codes(w.detach().float(), scale, zero, bits, group)
    return QuantParams(codes.to(torch.uint8), scale.float(), zero.to(torch.uint8), bits, group)
