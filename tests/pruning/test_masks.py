"""Hand-computed masks on nn.Linear(8, 1) with weights 1..8 (cf. pytorch/ao test_wanda.py)."""

import json

import pytest
import torch
from torch import nn

from pruning.masks import (load_profile, mask_from_row_counts, nm_mask, row_sparsity_summary, rowwise_mask)
from pruning.metrics import magnitude_score, wanda_score
from pruning.stats import collect_input_stats


def _linear_1_to_8() -> nn.Linear:
    lin = nn.Linear(8, 1, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.arange(1, 9, dtype=torch.float32).unsqueeze(0))
    return lin


def test_magnitude_mask_keeps_largest_half():
    mask = rowwise_mask(magnitude_score(_linear_1_to_8().weight), 0.5)
    assert mask.tolist() == [[False, False, False, False, True, True, True, True]]


def test_wanda_mask_uses_input_norms():
    lin = _linear_1_to_8()
    x = torch.ones(1, 8)
    x[0, 0] = 10.0  # channel 0 norm 10 -> score 10; others 2..8
    with collect_input_stats({"q_proj": lin}, want_hessian=False) as stats:
        lin(x)
    score = wanda_score(lin.weight, stats["q_proj"].sq_mean)
    assert torch.allclose(score, torch.tensor([[10.0, 2, 3, 4, 5, 6, 7, 8]]))
    mask = rowwise_mask(score, 0.5)
    assert mask.tolist() == [[True, False, False, False, False, True, True, True]]


def test_nm_mask_2_4():
    mask = nm_mask(magnitude_score(_linear_1_to_8().weight), 2, 4)
    assert mask.tolist() == [[False, False, True, True, False, False, True, True]]
    with pytest.raises(ValueError, match="does not divide"):
        nm_mask(torch.rand(2, 6), 2, 4)


def test_row_counts_are_per_row():
    score = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    mask = mask_from_row_counts(score, torch.tensor([0, 1, 3]))
    assert mask.sum(dim=1).tolist() == [4, 3, 1]
    assert mask[2].tolist() == [False, False, False, True]
    summary = row_sparsity_summary(mask)
    assert summary["min"] == 0.0 and summary["max"] == 0.75


def test_profile_flat_and_manifest(tmp_path):
    flat = tmp_path / "p.json"
    flat.write_text(json.dumps({"model.layers.0.mlp.up_proj": 0.4}))
    assert load_profile(flat) == {"model.layers.0.mlp.up_proj": 0.4}
    man = tmp_path / "manifest.json"
    man.write_text(json.dumps({"layers": {"a": {"achieved_sparsity": 0.3}}}))
    assert load_profile(man) == {"a": 0.3}
    flat.write_text(json.dumps({"a": 1.2}))
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        load_profile(flat)
    with pytest.raises(FileNotFoundError):
        load_profile(tmp_path / "missing.json")
