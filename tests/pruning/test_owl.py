"""OWL (pruning/owl.py): outlier ratios and the per-block sparsities, by hand; a run on the tiny model."""

import pytest
import torch

from pruning import PruneConfig, prune_model
from pruning.owl import outlier_ratio, owl_sparsities


def test_outlier_ratio_by_hand():
    # mean of [1, 1, 1, 1, 1, 1, 1, 1, 1, 11] is 2; with M = 5 only 11 > 10 is an outlier: 10%
    scores = [torch.ones(3, 3), torch.tensor([11.0])]
    assert outlier_ratio(scores, 5.0) == pytest.approx(10.0)
    assert outlier_ratio(scores, 6.0) == 0.0


def test_sparsities_keep_the_mean_and_spare_outlier_blocks():
    # ratios 1, 2, 3 -> scaled 0, lambda, 2 lambda -> centred -lambda, 0, +lambda
    s = owl_sparsities([1.0, 2.0, 3.0], 0.7, 0.08)
    assert s == pytest.approx([0.78, 0.70, 0.62])
    assert owl_sparsities([2.0, 2.0], 0.5, 0.08) == [0.5, 0.5]  # no spread: uniform
    with pytest.raises(ValueError, match="lower owl_lambda"):
        owl_sparsities([0.0, 1.0], 0.05, 0.1)


def test_owl_prunes_blocks_by_their_outliers(tiny_model, calib_ids):
    cfg = PruneConfig(method="wanda", sparsity=0.6, owl_m=3.0, owl_lambda=0.1)
    result = prune_model(tiny_model, calib_ids, cfg)
    per_block = {}
    for rec in result.layers.values():
        per_block.setdefault(rec["block"], set()).add(round(rec["target_sparsity"], 6))
    assert all(len(v) == 1 for v in per_block.values())  # one sparsity per block
    targets = [v.pop() for _, v in sorted(per_block.items())]
    assert sum(targets) / len(targets) == pytest.approx(0.6) and max(targets) - min(targets) == pytest.approx(0.2)
    assert result.achieved_sparsity == pytest.approx(0.6, abs=0.01)


def test_owl_is_refused_where_it_does_not_apply():
    with pytest.raises(ValueError, match="OWL allocates the sparsity of wanda"):
        PruneConfig(method="besa", owl_m=5.0)
    with pytest.raises(ValueError, match="owl_m > 0"):
        PruneConfig(method="wanda", owl_m=5.0, owl_lambda=0.7)
