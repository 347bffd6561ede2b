"""BESA on a tiny random LLaMA: exact target per block, and lower block error than Wanda."""

import pytest
import torch

from pruning import PruneConfig, prune_model
from pruning.besa import AllocationLearner, candidate_grid, channel_normalised_mse
from pruning.sequential import capture_block_inputs, run_block


def _block0_error(model, dense_out, hidden, kwargs) -> float:
    pred = run_block(model.model.layers[0], hidden, kwargs, batch=8)
    denom = dense_out.pow(2).reshape(-1, dense_out.shape[-1]).mean(0)
    return channel_normalised_mse(pred, dense_out, denom).item()


def _dense_block0(model_factory, ids):
    model = model_factory()
    hidden, kwargs = capture_block_inputs(model, ids)
    return hidden, kwargs, run_block(model.model.layers[0], hidden, kwargs, batch=8)


@pytest.mark.parametrize("allocation", ["row", "layer"])
def test_besa_hits_target_and_beats_wanda(allocation, calib_ids):
    from besa_hw.models import tiny_llama

    hidden, kwargs, dense = _dense_block0(tiny_llama, calib_ids)
    wanda_model = tiny_llama()
    prune_model(wanda_model, calib_ids, PruneConfig(method="wanda", sparsity=0.5))
    besa_model = tiny_llama()
    cfg = PruneConfig(method="besa", sparsity=0.5, besa_allocation=allocation, besa_epochs=8,
                      besa_optimizer="adamw", besa_lr=0.05)
    result = prune_model(besa_model, calib_ids, cfg)
    for s in result.block_sparsity:
        assert abs(s - 0.5) < 0.01
    assert _block0_error(besa_model, dense, hidden, kwargs) < _block0_error(wanda_model, dense, hidden, kwargs)
    if allocation == "row":  # rows really get different sparsities
        rows = [v["row_sparsity"] for v in result.layers.values()]
        assert max(r["max"] - r["min"] for r in rows) > 0.02


def test_soft_mask_gradient_and_exact_counts():
    g = torch.Generator().manual_seed(0)
    weights = {"a.weight": torch.randn(6, 40, generator=g), "b.weight": torch.randn(3, 20, generator=g)}
    scores = {k: v.abs() for k, v in weights.items()}
    learner = AllocationLearner(weights, scores, target=0.3, allocation="row", step=0.05)
    masked, s = learner.masked_weights()
    (masked["a.weight"].pow(2).sum() + s).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in learner.parameters())
    with torch.no_grad():
        for p in learner.parameters():
            p.add_(torch.randn(p.shape, generator=g))
    counts = learner.final_counts(0.3)
    assert int(sum(c.sum() for c in counts)) == round(0.3 * (6 * 40 + 3 * 20))
    assert len(candidate_grid(0.01)) == 101


def test_max_sparsity_caps_every_row():
    """besa_max_sparsity: candidates stop there, so no row loses more, and the block still hits its target."""
    g = torch.Generator().manual_seed(0)
    weights = {"a.weight": torch.randn(8, 40, generator=g), "b.weight": torch.randn(4, 20, generator=g)}
    learner = AllocationLearner(weights, {k: v.abs() for k, v in weights.items()}, target=0.7, step=0.05,
                                max_sparsity=0.8)
    assert float(learner.cands[-1]) == pytest.approx(0.8)
    with torch.no_grad():
        for p in learner.parameters():
            p.add_(3 * torch.randn(p.shape, generator=g))  # push rows toward the extremes
    counts = learner.final_counts(0.7)
    assert int(sum(c.sum() for c in counts)) == round(0.7 * (8 * 40 + 4 * 20))
    assert max(float(c.max()) / w.shape[1] for c, w in zip(counts, weights.values())) <= 0.8
    with pytest.raises(ValueError, match="exceeds the largest candidate"):
        learner.final_counts(0.85)
    with pytest.raises(ValueError, match="besa_max_sparsity must be in"):
        PruneConfig(method="besa", sparsity=0.7, besa_max_sparsity=0.6)


def test_besa_sigmoid_smoothing_limits_range():
    """The paper's softmax(sigmoid(logits)) cannot leave ~[0.377, 0.623] (issue 3's analysis note)."""
    w = {"a.weight": torch.randn(4, 100)}
    learner = AllocationLearner(w, {"a.weight": w["a.weight"].abs()}, 0.5, smoothing="sigmoid")
    with torch.no_grad():
        next(learner.parameters()).copy_(torch.where(candidate_grid(0.01) > 0.5, 1e3, -1e3).float())
    s = learner.row_sparsity(learner.layers[0])
    assert 0.6 < s.max().item() < 0.63


@pytest.mark.parametrize("rows_of_logits", ["row", "layer"])
@pytest.mark.parametrize("chunk", [1 << 22, 7])
def test_straight_through_mask_matches_plain_autograd(monkeypatch, rows_of_logits, chunk):
    """The memory-lean straight-through mask gives autograd's values and gradients bit for bit,
    whole or in row chunks (hard + soft - soft.detach() with soft gathered from cumsum(p))."""
    import pruning.besa as besa

    monkeypatch.setattr(besa, "_CHUNK", chunk)
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(6, 40, generator=gen)
    cands = besa.candidate_grid(0.1)
    ranks = torch.argsort(torch.argsort(torch.rand(6, 40, generator=gen), dim=1), dim=1)
    kmax = besa._last_keeping_candidate(40, cands, "cpu")
    logits = torch.randn(6 if rows_of_logits == "row" else 1, len(cands), generator=gen, requires_grad=True)
    hard = ranks >= 17
    up = torch.randn(6, 40, generator=gen)

    def run(lean: bool):
        logits.grad = None
        cum = torch.cumsum(torch.softmax(logits, dim=1), dim=1)
        if lean:
            out = besa._StraightThroughMask.apply(cum, w, hard, ranks.to(torch.int16), kmax)
        else:
            soft = cum.expand(6, -1).gather(1, kmax[ranks])
            out = w * (hard.float() + soft - soft.detach())
        (out * up).sum().backward()
        return out.detach(), logits.grad.clone()

    (a, ga), (b, gb) = run(True), run(False)
    assert torch.equal(a, b) and torch.equal(ga, gb)
    assert ga.abs().sum() > 0  # the gradient reaches the logits
