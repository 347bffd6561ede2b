"""Calibration data: seeded random token segments, sampled as in SparseGPT (arXiv 2301.00774).

Sources: ``pydoc`` (Python's bundled ``pydoc_data.topics``, the offline default), a local text
file, or ``wikitext2`` / ``c4`` through the ``datasets`` library (needs internet; imported lazily).
"""

from __future__ import annotations

import logging
import random
from pathlib import Path

import torch

from pruning.config import CalibConfig

logger = logging.getLogger(__name__)

HUB_SOURCES = ("wikitext2", "c4")


def pydoc_text() -> str:
    """The Python documentation topics shipped with CPython, joined into one string."""
    from pydoc_data import topics

    return "\n\n".join(topics.topics.values())


def _hub_text(name: str) -> str:
    try:
        from datasets import load_dataset
    except ImportError as exc:
        raise ValueError(f"calibration source {name} needs the 'datasets' package (pip install besa-hw[hub])") from exc
    if name == "wikitext2":
        data = load_dataset("wikitext", "wikitext-2-raw-v1", split="train")
        return "\n\n".join(data["text"])
    data = load_dataset("allenai/c4", data_files={"train": "en/c4-train.00000-of-01024.json.gz"}, split="train")
    return "\n\n".join(data["text"][:20000])


def load_text(source: str) -> str:
    """Text of a calibration/evaluation source: ``pydoc``, ``wikitext2``, ``c4`` or a file path."""
    if source == "pydoc":
        return pydoc_text()
    if source in HUB_SOURCES:
        return _hub_text(source)
    path = Path(source)
    if path.is_dir():
        raise ValueError(f"text file {source} is a folder, not a file")
    if not path.is_file():
        raise FileNotFoundError(f"text file not found: {source} (or use pydoc, wikitext2, c4)")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"text file {source} is not UTF-8 text (byte {exc.start} cannot be decoded)") from None


def check_source(source: str, what: str = "calibration text") -> None:
    """Up-front validation of a source name/path (before loading a model): a local file must be
    non-empty UTF-8 text."""
    if source in ("pydoc", *HUB_SOURCES):
        return
    if not Path(source).exists():
        raise FileNotFoundError(f"{what} not found: {source} (or use pydoc, wikitext2, c4)")
    if not load_text(source).strip():
        raise ValueError(f"{what} {source} is empty")


def tokenize(tokenizer, text: str) -> torch.Tensor:
    """Token ids of ``text`` as one 1-D int64 tensor."""
    ids = tokenizer(text, return_tensors="pt", add_special_tokens=False, verbose=False).input_ids
    return ids[0].long()


def sample_segments(ids: torch.Tensor, nsamples: int, seqlen: int, seed: int) -> torch.Tensor:
    """``nsamples`` segments of ``seqlen`` tokens: ``random.seed(seed)``, start ``randint(0, n - seqlen - 1)``."""
    n = ids.numel()
    if n - seqlen - 1 < 0:
        raise ValueError(f"calibration text has {n} tokens, fewer than one segment of {seqlen} + 1")
    random.seed(seed)
    starts = [random.randint(0, n - seqlen - 1) for _ in range(nsamples)]
    return torch.stack([ids[i:i + seqlen] for i in starts])


def get_calibration(tokenizer, cfg: CalibConfig) -> torch.Tensor:
    """Calibration token ids (nsamples, seqlen) for ``cfg``."""
    ids = tokenize(tokenizer, load_text(cfg.source))
    logger.info("calibration %s: %d tokens, %d x %d samples", cfg.source, ids.numel(), cfg.nsamples, cfg.seqlen)
    return sample_segments(ids, cfg.nsamples, cfg.seqlen, cfg.seed)
