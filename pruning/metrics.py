"""Weight-importance scores (pure tensor functions).

* magnitude: |W|.
* Wanda (Sun et al., arXiv 2306.11695): |W_ij| * ||X_j||_2, compared within each output row.
* SparseGPT diagonal (Frantar & Alistarh, arXiv 2301.00774): W_ij^2 / [H^-1]_jj^2, the OBS
  saliency of removing one weight with H = X^T X (used as a static score by BESA's ablation).
"""

from __future__ import annotations

import torch


def magnitude_score(weight: torch.Tensor) -> torch.Tensor:
    """|W|, shape (out, in)."""
    return weight.detach().abs().float()


def wanda_score(weight: torch.Tensor, input_sq_mean: torch.Tensor) -> torch.Tensor:
    """|W| * ||X_j||_2 with ``input_sq_mean`` the per-input-channel mean of x^2, shape (in,).

    The token count only rescales every score equally, so the mean is as good as the sum.
    """
    return weight.detach().abs().float() * input_sq_mean.float().clamp_min(0).sqrt().unsqueeze(0)


def damped_hessian(hessian: torch.Tensor, percdamp: float = 0.01) -> torch.Tensor:
    """H + percdamp * mean(diag H) * I with dead input channels (zero diagonal) set to 1."""
    h = hessian.float().clone()
    diag = torch.diagonal(h)
    diag[diag == 0] = 1.0
    diag += percdamp * diag.mean()
    return h


def sparsegpt_diag_score(weight: torch.Tensor, hessian: torch.Tensor, percdamp: float = 0.01) -> torch.Tensor:
    """OBS saliency W_ij^2 / [H^-1]_jj^2 with a dampened Hessian."""
    hinv = torch.cholesky_inverse(torch.linalg.cholesky(damped_hessian(hessian, percdamp)))
    return weight.detach().float().pow(2) / torch.diagonal(hinv).pow(2).unsqueeze(0)
