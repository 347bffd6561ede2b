"""Perplexity over non-overlapping windows: ppl = exp(mean next-token NLL), as in SparseGPT/Wanda."""

from __future__ import annotations

import logging
import math

import torch
from torch import nn
from torch.nn import functional as F
from tqdm.auto import tqdm

logger = logging.getLogger(__name__)


def windows(ids: torch.Tensor, seqlen: int, max_windows: int | None) -> torch.Tensor:
    """The first ``max_windows`` non-overlapping windows (W, seqlen) of 1-D ``ids``."""
    n = ids.numel() // seqlen
    if max_windows is not None:
        n = min(n, max_windows)
    if n == 0:
        raise ValueError(f"evaluation text has {ids.numel()} tokens, fewer than one window of {seqlen}")
    return ids[: n * seqlen].reshape(n, seqlen)


@torch.no_grad()
def perplexity(model: nn.Module, ids: torch.Tensor, seqlen: int = 512, max_windows: int | None = 40,
               batch: int = 1, progress: bool = False) -> float:
    """Perplexity of ``model`` on 1-D token ids ``ids``; each window predicts tokens 1..seqlen-1."""
    device = next(model.parameters()).device
    wins = windows(ids, seqlen, max_windows)
    nll, count = 0.0, 0
    model.eval()
    for i in tqdm(range(0, wins.shape[0], batch), desc="eval", unit="batch", disable=not progress):
        x = wins[i:i + batch].to(device)
        logits = model(input_ids=x, use_cache=False).logits[:, :-1].float()
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1), reduction="sum")
        nll += loss.item()
        count += x[:, 1:].numel()
    ppl = math.exp(nll / count)
    logger.info("perplexity %.3f over %d windows of %d tokens", ppl, wins.shape[0], seqlen)
    return ppl
