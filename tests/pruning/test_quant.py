"""Quantizers: hand-computed RTN codes, exact zeros, LWC at g=+inf is RTN, OBS joint, joint BESA."""

import pytest
import torch

from pruning import PruneConfig, prune_model
from pruning.besa import AllocationLearner
from pruning.lwc import ClipLearner
from pruning.quant import fake_quant, quantize
from pruning.sparsegpt import ObsQuant, sparsegpt_prune, sparsegpt_quant_prune


def test_rtn_hand_computed_2bit_group4():
    # group 1: max 0.9, min -0.6 -> scale 1.5 / 3 = 0.5, zero round(0.6 / 0.5) = 1
    # group 2: no negative weight, the range still contains 0 -> scale 3 / 3 = 1, zero 0
    w = torch.tensor([[0.0, 0.3, -0.6, 0.9, 0.0, 0.0, 1.5, 3.0]])
    q = quantize(w, bits=2, group=4)
    assert q.codes.tolist() == [[1, 2, 0, 3, 0, 0, 2, 3]]
    assert q.zeros.tolist() == [[1, 0]]
    torch.testing.assert_close(q.scales, torch.tensor([[0.5, 1.0]]))
    torch.testing.assert_close(q.dequantize(), torch.tensor([[0.0, 0.5, -0.5, 1.0, 0.0, 0.0, 2.0, 3.0]]))
    assert q.dequantize()[0, [0, 4, 5]].eq(0).all()  # exactly zero, not merely close


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
@pytest.mark.parametrize("group", [4, 16, -1])
def test_pruned_weights_stay_exactly_zero(bits, group):
    g = torch.Generator().manual_seed(bits)
    w = torch.randn(8, 32, generator=g) + 0.3
    keep = torch.rand(8, 32, generator=g) > 0.5
    q = quantize(w * keep, bits, group)
    deq = q.dequantize()
    assert (deq[~keep] == 0).all()
    assert q.codes.max() <= 2**bits - 1 and q.scales.shape == (8, 1 if group == -1 else 32 // group)
    torch.testing.assert_close(fake_quant(w * keep, bits, group), deq)


def test_lwc_at_infinity_is_rtn():
    w = torch.randn(6, 16, generator=torch.Generator().manual_seed(1))
    clip = ClipLearner({"a.weight": (6, 16)}, bits=3, group=8, init=float("inf"))
    rtn = quantize(w, 3, 8)
    assert torch.equal(clip("a.weight", w), rtn.dequantize())
    assert torch.equal(clip.quantize("a.weight", w).codes, rtn.codes)


def test_lwc_gradients_reach_both_clipping_logits():
    w = torch.randn(4, 16, generator=torch.Generator().manual_seed(2))
    clip = ClipLearner({"a.weight": (4, 16)}, bits=2, group=8)
    (clip("a.weight", w) - w).pow(2).sum().backward()
    assert clip.lo.grad.abs().sum() > 0 and clip.hi.grad.abs().sum() > 0


def test_obs_joint_on_grid_and_better_than_rtn_after_pruning():
    g = torch.Generator().manual_seed(0)
    mix = torch.eye(128) + 0.5 * torch.randn(128, 128, generator=g) / 128**0.5  # correlated inputs
    x = (torch.randn(1024, 128, generator=g) * torch.linspace(0.3, 2.0, 128)) @ mix
    w = torch.randn(64, 128, generator=g)
    h = x.t() @ x / x.shape[0]
    wq, keep, q = sparsegpt_quant_prune(w, h, ObsQuant(3, 32), sparsity=0.5, blocksize=64)
    assert abs(1 - keep.float().mean().item() - 0.5) < 0.05
    assert torch.equal(q.dequantize(), wq) and (wq[~keep] == 0).all()
    ws, _ = sparsegpt_prune(w, h, sparsity=0.5, blocksize=64)
    err_joint = ((wq - w) @ x.t()).pow(2).mean()                                  # measured 16.7
    err_then_rtn = ((quantize(ws, 3, 32).dequantize() - w) @ x.t()).pow(2).mean()  # measured 17.2
    assert err_joint < err_then_rtn


def test_joint_besa_trains_both_parameter_sets():
    g = torch.Generator().manual_seed(4)
    weights = {"a.weight": torch.randn(6, 32, generator=g), "b.weight": torch.randn(3, 16, generator=g)}
    clip = ClipLearner({k: tuple(v.shape) for k, v in weights.items()}, bits=3, group=8)
    learner = AllocationLearner(weights, {k: v.abs() for k, v in weights.items()}, target=0.5, step=0.05, clip=clip)
    masked, s = learner.masked_weights()
    (sum(m.pow(2).sum() for m in masked.values()) + s).backward()
    for p in learner.allocation_parameters() + list(clip.parameters()):
        assert p.grad is not None and p.grad.abs().sum() > 0


@pytest.mark.parametrize("kw", [
    dict(method="besa", besa_epochs=2, besa_optimizer="adamw", besa_lr=0.05),  # joint BESA + LWC (default)
    dict(method="besa", besa_reconstruct=True),                                # + OBS update with the learned clipping
    dict(method="sparsegpt"),                                                  # joint OBS (default for sparsegpt)
    dict(method="wanda"),                                                      # rtn (default for the others)
    dict(method="wanda", quantizer="lwc"),
    dict(method="besa", lwc_stage="after"),                                    # BESA's mask, then LWC alone
    dict(method="besa", lwc_stage="refine"),                                   # joint, then LWC on the final mask
])
def test_every_method_quantizes_on_target(tiny_model, calib_ids, kw):
    result = prune_model(tiny_model, calib_ids, PruneConfig(sparsity=0.5, wbits=4, group_size=32, **kw))
    for s in result.block_sparsity:
        assert abs(s - 0.5) < 0.01
    for path, q in result.quant.items():
        w = tiny_model.get_submodule(path).weight
        assert torch.equal(q.dequantize(), w) and (w[~result.masks[path]] == 0).all()
    layer = result.layers["model.layers.0.mlp.up_proj"]["quant"]
    assert layer["bits"] == 4 and layer["group_size"] == 32
    assert layer["quantizer"] == PruneConfig(sparsity=0.5, wbits=4, **kw).quant_method


def test_quant_config_validation(tiny_model, calib_ids):
    assert PruneConfig(method="besa", wbits=4).quant_method == "lwc"
    assert PruneConfig(method="sparsegpt", wbits=4).quant_method == "obs"
    assert PruneConfig(method="magnitude", wbits=4).quant_method == "rtn"
    with pytest.raises(ValueError, match="wbits"):
        PruneConfig(wbits=5)
    with pytest.raises(ValueError, match="needs a bit width"):
        PruneConfig(quantizer="rtn")
    with pytest.raises(ValueError, match="does not divide"):
        prune_model(tiny_model, calib_ids, PruneConfig(method="magnitude", wbits=4, group_size=48))


def test_lwc_hand_written_backward_matches_autograd():
    """The custom backward gives the clipping logits exactly autograd's straight-through gradient."""
    g = torch.Generator().manual_seed(5)
    w, keep = torch.randn(8, 32, generator=g, dtype=torch.float64), torch.rand(8, 32, generator=g) > 0.4
    clip = ClipLearner({"a": (8, 32)}, bits=3, group=8).double()
    with torch.no_grad():
        for p in clip.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64) * 2)
    grad_out = torch.randn(8, 32, generator=g, dtype=torch.float64)
    lo, hi = clip.factors("a")
    (fake_quant(w * keep, 3, 8, lo, hi) * grad_out).sum().backward()
    expected = [p.grad.clone() for p in clip.parameters()]
    clip.zero_grad()
    out = clip("a", w, keep=keep) * keep
    (out * grad_out).sum().backward()
    assert torch.equal(out, fake_quant(w * keep, 3, 8, lo, hi).detach())
    for e, p in zip(expected, clip.parameters()):
        torch.testing.assert_close(p.grad, e)


def _tiny():
    from besa_hw.models import tiny_llama

    return tiny_llama(hidden=64, layers=2, heads=4, kv_heads=2, intermediate=128, vocab=256, seed=0)


def test_lwc_stages(calib_ids):
    """In block 0, "after" keeps BESA-alone's masks (the clipping does not see the allocation);
    "refine" keeps the joint masks and retrains the clipping on them, so only its codes differ."""
    base = dict(method="besa", sparsity=0.5, besa_epochs=1)
    alone = prune_model(_tiny(), calib_ids, PruneConfig(**base))
    quant = dict(base, wbits=4, group_size=32)
    after = prune_model(_tiny(), calib_ids, PruneConfig(**quant, lwc_stage="after"))
    joint = prune_model(_tiny(), calib_ids, PruneConfig(**quant))
    refine = prune_model(_tiny(), calib_ids, PruneConfig(**quant, lwc_stage="refine"))
    block0 = [k for k in alone.masks if k.startswith("model.layers.0.")]  # block 1 sees quantized inputs
    assert all(torch.equal(after.masks[k], alone.masks[k]) for k in block0)
    assert all(torch.equal(refine.masks[k], joint.masks[k]) for k in block0)
    assert any(not torch.equal(refine.quant[k].codes, joint.quant[k].codes) for k in block0)
    with pytest.raises(ValueError, match="lwc_stage"):
        PruneConfig(lwc_stage="later")
    for bad in (dict(method="besa"), dict(method="wanda", wbits=4, quantizer="lwc"),
                dict(method="besa", wbits=4, quantizer="rtn"), dict(method="besa", wbits=4, besa_reconstruct=True)):
        with pytest.raises(ValueError, match="applies to --method besa"):
            PruneConfig(**bad, lwc_stage="refine")
