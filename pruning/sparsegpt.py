"""SparseGPT: one-shot OBS pruning with weight reconstruction (Frantar & Alistarh, arXiv 2301.00774).

Columns are processed left to right in blocks of ``blocksize``; each pruned weight's error is
spread over the not-yet-processed columns through the upper Cholesky factor of H^-1, with
H = X^T X dampened by ``percdamp`` of its mean diagonal. Dead input channels (zero Hessian
diagonal) get weight 0 and a unit diagonal, as in the paper's code.

Mask selection modes (exactly one applies):
* unstructured ``sparsity``: adaptive mask per column block, threshold over all rows of the block;
* ``nm=(n, m)``: keep n of every m consecutive weights, chosen when the group is reached;
* ``row_prune_counts``: per-row totals (e.g. learned by BESA), spread evenly over column blocks;
* ``keep_mask``: a fixed mask; only the reconstruction of the kept weights happens.

Joint sparsification and quantization (SparseGPT Sec. 3.5, GPTQ-style, arXiv 2210.17323): with
:class:`ObsQuant` every column is pruned *and* quantized before its error is spread, so the later
columns compensate the quantization error too. The scales and zero points are static, taken from
an unquantized OBS pass first (min-max of its pruned, updated weights per group, optionally shrunk
by learned clipping factors): ranges set from the weights *before* the pruning updates (as GPTQ
does when it reaches a group) clip the weights those updates grow, which at 50 % sparsity made
the joint result worse than pruning then rounding (measured on a hand-built layer).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from pruning.metrics import damped_hessian
from pruning.quant import QuantParams, codes_on_grid, group_range, group_width


@dataclass
class ObsQuant:
    """Quantizer applied inside the OBS loop; ``lo``/``hi`` are clipping factors (out, groups) or 1."""

    bits: int
    group: int
    lo: torch.Tensor | float = 1.0
    hi: torch.Tensor | float = 1.0

    def ranges(self, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Static (scale, zero), each (out, groups), of the pruned weights ``w``."""
        return group_range(w, self.bits, self.group, self.lo, self.hi)


def _hinv_upper(hessian: torch.Tensor, percdamp: float) -> torch.Tensor:
    """Upper Cholesky factor of the inverse of the dampened Hessian."""
    # Each step drops its input as soon as it is used: at most two (in, in) matrices at a time
    # besides ``hessian`` (LLaMA-7B's down_proj: 0.5 GB each in fp32).
    factor = torch.linalg.cholesky(damped_hessian(hessian, percdamp))
    hinv = torch.cholesky_inverse(factor)
    del factor
    return torch.linalg.cholesky(hinv, upper=True)


def _select_block_mask(w1: torch.Tensor, d1: torch.Tensor, i1: int, i2: int, cols: int,
                       sparsity: float | None, row_counts: torch.Tensor | None) -> torch.Tensor:
    """Prune mask (True = prune) of one column block from the OBS saliency w^2 / d^2."""
    sal = w1.pow(2) / d1.pow(2).unsqueeze(0)  # (out, width)
    if row_counts is not None:
        # Cumulative rounding keeps each row's total exactly at its count.
        k = (torch.round(row_counts * i2 / cols) - torch.round(row_counts * i1 / cols)).long()
        ranks = torch.argsort(torch.argsort(sal, dim=1), dim=1)
        return ranks < k.unsqueeze(1)
    k = int(sal.numel() * sparsity)
    if k == 0:
        return torch.zeros_like(sal, dtype=torch.bool)
    thresh = torch.kthvalue(sal.flatten(), k).values
    return sal <= thresh


def sparsegpt_prune(weight: torch.Tensor, hessian: torch.Tensor, *, sparsity: float | None = None,
                    nm: tuple[int, int] | None = None, row_prune_counts: torch.Tensor | None = None,
                    keep_mask: torch.Tensor | None = None, blocksize: int = 128,
                    percdamp: float = 0.01) -> tuple[torch.Tensor, torch.Tensor]:
    """Prune ``weight`` (out, in) given H (in, in); returns (new weight, keep mask), weight in its dtype."""
    w, keep, _ = _obs(weight, hessian, sparsity, nm, row_prune_counts, keep_mask, blocksize, percdamp, None)
    return w, keep


def sparsegpt_quant_prune(weight: torch.Tensor, hessian: torch.Tensor, quant: ObsQuant, *,
                          sparsity: float | None = None, nm: tuple[int, int] | None = None,
                          row_prune_counts: torch.Tensor | None = None, keep_mask: torch.Tensor | None = None,
                          blocksize: int = 128, percdamp: float = 0.01,
                          ) -> tuple[torch.Tensor, torch.Tensor, QuantParams]:
    """Joint OBS pruning and quantization; returns (dequantized weight, keep mask, codes)."""
    args = (sparsity, nm, row_prune_counts, keep_mask, blocksize, percdamp)
    pre, _, _ = _obs(weight, hessian, *args, None)
    scale, zero = quant.ranges(pre.float())
    w, keep, _ = _obs(weight, hessian, *args, (quant.bits, group_width(weight.shape[1], quant.group), scale, zero))
    return w, keep, codes_on_grid(w.float(), scale, zero, quant.bits, quant.group)


def _obs(weight, hessian, sparsity, nm, row_prune_counts, keep_mask, blocksize, percdamp, quant):
    """The OBS column loop; ``quant`` = (bits, group width, scales, zeros) quantizes each column."""
    w = weight.detach().float().clone()
    out, cols = w.shape
    dead = torch.diagonal(hessian) == 0
    w[:, dead] = 0
    hinv = _hinv_upper(hessian, percdamp)
    prune = torch.zeros_like(w, dtype=torch.bool)
    counts = None if row_prune_counts is None else row_prune_counts.float().to(w.device)
    for i1 in range(0, cols, blocksize):
        i2 = min(i1 + blocksize, cols)
        w1, h1 = w[:, i1:i2].clone(), hinv[i1:i2, i1:i2]
        err1 = torch.zeros_like(w1)
        if keep_mask is not None:
            p1 = ~keep_mask[:, i1:i2].to(w.device)
        elif nm is None:
            p1 = _select_block_mask(w1, torch.diagonal(h1), i1, i2, cols, sparsity, counts)
        else:
            p1 = torch.zeros_like(w1, dtype=torch.bool)
        for i in range(i2 - i1):
            d = h1[i, i]
            if nm is not None and i % nm[1] == 0:
                sal = w1[:, i:i + nm[1]].pow(2) / torch.diagonal(h1)[i:i + nm[1]].pow(2)
                drop = torch.topk(sal, nm[1] - nm[0], dim=1, largest=False).indices
                p1[:, i:i + nm[1]].scatter_(1, drop, True)
            q = w1[:, i].masked_fill(p1[:, i], 0.0)
            if quant is not None:
                bits, width, scales, zeros = quant
                s_g, z_g = scales[:, (i1 + i) // width], zeros[:, (i1 + i) // width]
                q = ((torch.round(q / s_g) + z_g).clamp(0, 2**bits - 1) - z_g) * s_g
            err = (w1[:, i] - q) / d
            w1[:, i:] -= err.unsqueeze(1) * h1[i, i:].unsqueeze(0)
            w1[:, i] = q
            err1[:, i] = err
        w[:, i1:i2] = w1
        prune[:, i1:i2] = p1
        w[:, i2:] -= err1 @ hinv[i1:i2, i2:]
    w[prune] = 0.0
    return w.to(weight.dtype), ~prune, None
