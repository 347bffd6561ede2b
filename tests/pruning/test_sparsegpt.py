"""SparseGPT (OBS with weight update) must beat magnitude on output error at equal sparsity."""

import torch

from pruning.masks import mask_sparsity, rowwise_mask
from pruning.metrics import magnitude_score
from pruning.sparsegpt import sparsegpt_prune


def _layer_and_inputs(dead: int | None = None):
    g = torch.Generator().manual_seed(0)
    w = torch.randn(32, 64, generator=g)
    mix = torch.randn(64, 64, generator=g) / 8
    x = torch.randn(1024, 64, generator=g) @ (torch.eye(64) + mix)  # correlated inputs
    if dead is not None:
        x[:, dead] = 0.0
    return w, x, x.t() @ x / x.shape[0]


def _err(x, w, w_hat):
    return (x @ w.t() - x @ w_hat.t()).pow(2).mean().item()


def test_sparsegpt_beats_magnitude():
    w, x, h = _layer_and_inputs()
    w_sg, keep = sparsegpt_prune(w, h, sparsity=0.5, blocksize=16)
    w_mag = w * rowwise_mask(magnitude_score(w), 0.5)
    assert abs(mask_sparsity(keep) - 0.5) < 1e-6
    assert torch.equal(w_sg == 0, ~keep) or bool((w_sg[~keep] == 0).all())
    assert _err(x, w, w_sg) < 0.8 * _err(x, w, w_mag)


def test_sparsegpt_dead_columns_and_nm():
    w, x, h = _layer_and_inputs(dead=5)
    w_sg, keep = sparsegpt_prune(w, h, nm=(2, 4))
    assert torch.isfinite(w_sg).all()
    assert (keep.reshape(32, 16, 4).sum(-1) == 2).all()
    assert (w_sg[:, 5] == 0).all()


def test_sparsegpt_fixed_mask_and_row_counts():
    w, x, h = _layer_and_inputs()
    keep = rowwise_mask(magnitude_score(w), 0.5)
    w_fixed, keep_out = sparsegpt_prune(w, h, keep_mask=keep)
    assert torch.equal(keep_out, keep)
    assert _err(x, w, w_fixed) < _err(x, w, w * keep)  # reconstruction helps on the same mask
    counts = torch.arange(32) % 5 + 20
    _, keep_rc = sparsegpt_prune(w, h, row_prune_counts=counts)
    assert torch.equal((~keep_rc).sum(dim=1), counts)
