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
"""

from __future__ import annotations

import torch

from pruning.metrics import damped_hessian


def _hinv_upper(hessian: torch.Tensor, percdamp: float) -> torch.Tensor:
    """Upper Cholesky factor of the inverse of the dampened Hessian."""
    h = damped_hessian(hessian, percdamp)
    hinv = torch.cholesky_inverse(torch.linalg.cholesky(h))
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
            err = (w1[:, i] - q) / d
            w1[:, i:] -= err.unsqueeze(1) * h1[i, i:].unsqueeze(0)
            w1[:, i] = q
            err1[:, i] = err
        w[:, i1:i2] = w1
        prune[:, i1:i2] = p1
        w[:, i2:] -= err1 @ hinv[i1:i2, i2:]
    w[prune] = 0.0
    return w.to(weight.dtype), ~prune
