"""OWL: Outlier Weighed Layerwise sparsity (Yin et al., ICML 2024, arXiv 2310.05175).

The rule. On the dense model (calibration inputs propagated through dense blocks), each block's
outlier ratio D_l is the percentage of its Linears' Wanda scores |W_ij| * ||X_j||_2 above M times
their mean. The ratios are rescaled to [0, 2 lambda] and centred, and block l gets sparsity
``S - (D_l' - mean(D'))`` for the target S: blocks with more outliers are pruned less, the mean
stays S. Every Linear of a block gets its block's sparsity, and the method (Wanda, SparseGPT,
magnitude) prunes with that profile. M and lambda are the paper's two hyperparameters (its
LLaMA defaults: M = 5, lambda = 0.08).
"""

from __future__ import annotations

import logging

import torch

from pruning.arch import block_linears, module_path
from pruning.metrics import wanda_score
from pruning.stats import collect_input_stats

logger = logging.getLogger(__name__)

__all__ = ["outlier_ratio", "owl_sparsities", "owl_profile"]


def outlier_ratio(scores: list[torch.Tensor], m: float) -> float:
    """Percentage of the scores (all Linears of a block together) above ``m`` times their mean."""
    flat = torch.cat([s.flatten().float() for s in scores])
    return 100.0 * float((flat > m * flat.mean()).sum()) / flat.numel()


def owl_sparsities(ratios: list[float], target: float, lmbda: float) -> list[float]:
    """Per-block sparsity from the blocks' outlier ratios (ValueError if one leaves [0, 1))."""
    lo, hi = min(ratios), max(ratios)
    scaled = [(r - lo) / (hi - lo) * 2 * lmbda if hi > lo else 0.0 for r in ratios]
    mean = sum(scaled) / len(scaled)
    out = [target - (d - mean) for d in scaled]
    if min(out) < 0 or max(out) >= 1:
        raise ValueError(f"OWL sparsities {min(out):.3f}-{max(out):.3f} leave [0, 1): lower owl_lambda ({lmbda})")
    return out


@torch.no_grad()
def owl_profile(model, calib_ids: torch.Tensor, target: float, m: float, lmbda: float,
                forward_batch: int = 1, act_device=None) -> dict[str, float]:
    """{module path: sparsity} for every Linear, from one dense pass of ``calib_ids`` (a model or a
    streamed model, one block at a time)."""
    from pruning.sequential import as_blocks, capture_block_inputs, run_block

    src = as_blocks(model)
    with src.embedding():
        hidden, kwargs = capture_block_inputs(src.model, calib_ids, act_device)
    ratios, ops = [], []
    for i in range(len(src)):
        block = src.load_block(i)
        linears = block_linears(block)
        with collect_input_stats(linears, False) as stats:
            out = run_block(block, hidden, kwargs, forward_batch)
        ratios.append(outlier_ratio([wanda_score(lin.weight, stats[op].sq_mean) for op, lin in linears.items()], m))
        ops.append(list(linears))
        hidden = out
        del block
        src.release_block(i)
    sparsities = owl_sparsities(ratios, target, lmbda)
    logger.info("OWL outlier ratios %s%% -> block sparsities %s", [round(r, 2) for r in ratios],
                [round(s, 3) for s in sparsities])
    return {module_path(i, op): s for i, (s, names) in enumerate(zip(sparsities, ops)) for op in names}
