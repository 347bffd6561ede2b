"""Perplexity over non-overlapping windows: ppl = exp(mean next-token NLL), as in SparseGPT/Wanda.

Two ways to run the same computation: the whole model at once (:func:`perplexity`), or block by
block like pruning (:func:`blockwise_perplexity`): every window passes through one decoder block at a
time, only that block materialised (a :class:`pruning.streaming.StreamedModel`), so a model larger
than memory is evaluated in the memory of one block plus the windows' activations.
"""

from __future__ import annotations

import logging
import math
from typing import Callable

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


@torch.no_grad()
def blockwise_perplexity(src, ids: torch.Tensor, seqlen: int = 512, max_windows: int | None = 40,
                         prepare: Callable[[int, nn.Module], None] | None = None, batch: int = 1,
                         progress: bool = False) -> float:
    """:func:`perplexity` computed block by block on ``src`` (a LoadedModel or StreamedModel);
    ``prepare(i, block)`` edits each block once it is loaded (a run's masks and quantized codes)."""
    from pruning.sequential import capture_block_inputs, run_block

    wins = windows(ids, seqlen, max_windows)
    device = next(p.device for p in src.model.parameters() if p.device.type != "meta")
    with src.embedding():
        hidden, kwargs = capture_block_inputs(src.model, wins.to(device))
    for i in tqdm(range(len(src)), desc="eval (blocks)", unit="block", disable=not progress):
        block = src.load_block(i)
        if prepare is not None:
            prepare(i, block)
        hidden = run_block(block, hidden, kwargs, batch)
        del block
        src.release_block(i)
    nll, count = 0.0, 0
    with src.head():
        inner = src.model.model
        for w in range(wins.shape[0]):
            h = inner.norm(hidden[w:w + 1].to(device))
            logits = src.model.lm_head(h)[:, :-1].float()
            target = wins[w:w + 1, 1:].to(device)
            nll += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1), reduction="sum").item()
            count += target.numel()
    ppl = math.exp(nll / count)
    logger.info("perplexity %.3f over %d windows of %d tokens (block by block)", ppl, wins.shape[0], seqlen)
    return ppl
