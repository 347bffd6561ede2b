"""Calibration and evaluation text: seeded random calibration segments (SparseGPT, arXiv 2301.00774)
drawn from a part of the text that evaluation never sees.

Sources: ``pydoc`` (Python's bundled ``pydoc_data.topics``, the offline default), a local text
file, or ``wikitext2`` / ``c4`` through the ``datasets`` library (needs internet; imported lazily).

Held-out split: ``pydoc`` and a file are one text each, cut at the first line break after 75% of
its characters; calibration segments come only from the first part and evaluation windows only
from the last 25%. The same source (or the same file) given for both is therefore disjoint by
construction. ``wikitext2`` calibrates on its train split and evaluates on its test split; ``c4``
on a train shard and on a validation shard.
"""

from __future__ import annotations

import logging
import os
import platform
import random
from pathlib import Path

import torch

from pruning.config import CalibConfig

logger = logging.getLogger(__name__)

HUB_SOURCES = ("wikitext2", "c4")
PARTS = ("calibration", "evaluation")
HELD_OUT = 0.25  # the last quarter of a single text is kept for evaluation
_HUB_SPLITS = {("wikitext2", "calibration"): "wikitext-2-raw-v1 train split",
               ("wikitext2", "evaluation"): "wikitext-2-raw-v1 test split",
               ("c4", "calibration"): "c4 en train shard 00000, first 20000 documents",
               ("c4", "evaluation"): "c4 en validation shard 00000, first 1100 documents"}


def pydoc_text() -> str:
    """The Python documentation topics shipped with CPython, joined into one string
    (the text changes between Python versions, which the manifest records)."""
    from pydoc_data import topics

    return "\n\n".join(topics.topics.values())


def _hub_text(name: str, part: str) -> str:
    try:
        from datasets import load_dataset
    except ImportError as exc:
        raise ValueError(f"text source {name} needs the 'datasets' package (pip install besa-hw[hub])") from exc
    if name == "wikitext2":
        split = "train" if part == "calibration" else "test"
        return "\n\n".join(load_dataset("wikitext", "wikitext-2-raw-v1", split=split)["text"])
    if part == "calibration":
        data = load_dataset("allenai/c4", data_files={"train": "en/c4-train.00000-of-01024.json.gz"}, split="train")
        return "\n\n".join(data["text"][:20000])
    data = load_dataset("allenai/c4", data_files={"validation": "en/c4-validation.00000-of-00008.json.gz"},
                        split="validation")
    return "\n\n".join(data["text"][:1100])


def split_point(text: str) -> int:
    """Index of the first character of the held-out evaluation part: just after the first line
    break at or after 75% of the text (or exactly 75% when there is none)."""
    cut = int(len(text) * (1 - HELD_OUT))
    brk = text.find("\n", cut)
    return brk + 1 if brk != -1 else cut


def _whole_text(source: str) -> str:
    if source == "pydoc":
        return pydoc_text()
    path = Path(source)
    if path.is_dir():
        raise ValueError(f"text file {source} is a folder, not a file")
    if not path.is_file():
        raise FileNotFoundError(f"text file not found: {source} (or use pydoc, wikitext2, c4)")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"text file {source} is not UTF-8 text (byte {exc.start} cannot be decoded)") from None


def load_text(source: str, part: str | None = None) -> str:
    """Text of ``pydoc``, ``wikitext2``, ``c4`` or a file path: its ``calibration`` part, its
    held-out ``evaluation`` part, or (``None``, single texts only) all of it."""
    if part is not None and part not in PARTS:
        raise ValueError(f"part must be one of {', '.join(PARTS)}, got {part!r}")
    if source in HUB_SOURCES:
        return _hub_text(source, part or "calibration")
    text = _whole_text(source)
    if part is None:
        return text
    cut = split_point(text)
    return text[:cut] if part == "calibration" else text[cut:]


def describe_split(source: str, part: str) -> dict:
    """What ``part`` of ``source`` is, for a manifest: the split, and the Python version for pydoc."""
    if source in HUB_SOURCES:
        return {"split": _HUB_SPLITS[source, part]}
    text = _whole_text(source)
    n, cut = len(text), split_point(text)
    first, last = (0, cut) if part == "calibration" else (cut, n)
    what = (f"the first {1 - HELD_OUT:.0%}; evaluation uses the rest" if part == "calibration"
            else f"the held-out last {HELD_OUT:.0%}; calibration uses the rest")
    info = {"split": f"characters {first:,}-{last:,} of {n:,} ({what})"}
    if source == "pydoc":
        info["python"] = platform.python_version()
    return info


def check_source(source: str, what: str = "calibration text") -> None:
    """Up-front validation of a source name/path (before loading a model): a local file must be
    non-empty UTF-8 text."""
    if source in ("pydoc", *HUB_SOURCES):
        return
    if not Path(source).exists():
        raise FileNotFoundError(f"{what} not found: {source} (or use pydoc, wikitext2, c4)")
    if not load_text(source).strip():
        raise ValueError(f"{what} {source} is empty")


def _same_text(a: str, b: str) -> bool:
    if a == b:
        return True
    return Path(a).is_file() and Path(b).is_file() and os.path.samefile(a, b)


def check_disjoint(calib_source: str, eval_source: str, probes: int = 32, width: int = 200) -> str:
    """Raise ValueError when the evaluation part of ``eval_source`` shares a passage with the
    calibration part of ``calib_source``; return how the two are kept apart.

    The same source (or file) is split, so it never overlaps. Two different local texts are
    compared by looking up ``probes`` passages of ``width`` characters of the evaluation part
    in the calibration part. Hub datasets are not downloaded for this check.
    """
    if _same_text(calib_source, eval_source):
        if calib_source in HUB_SOURCES:
            return f"{calib_source}: calibration on its {_HUB_SPLITS[calib_source, 'calibration']}, " \
                   f"evaluation on its {_HUB_SPLITS[calib_source, 'evaluation']}"
        return (f"{calib_source}: calibration uses the first {1 - HELD_OUT:.0%} of the text, evaluation "
                f"the held-out last {HELD_OUT:.0%} (same text, split automatically, no overlap)")
    if calib_source in HUB_SOURCES or eval_source in HUB_SOURCES:
        return f"different sources ({calib_source}, {eval_source}); overlap not checked for hub datasets"
    calib, held_out = load_text(calib_source, "calibration"), load_text(eval_source, "evaluation")
    step = max(width, (len(held_out) - width) // probes)
    for start in range(0, max(len(held_out) - width, 0) + 1, step):
        passage = held_out[start:start + width]
        if len(passage.strip()) >= width // 2 and passage in calib:
            raise ValueError(f"evaluation text {eval_source} overlaps the calibration text {calib_source} "
                             f"(a passage at character {start:,} of its held-out part is in the calibration "
                             "part); use the same source for both (it is split automatically) or disjoint texts")
    return f"different texts ({calib_source}, {eval_source}); no shared passage found"


def tokenize(tokenizer, text: str) -> torch.Tensor:
    """Token ids of ``text`` as one 1-D int64 tensor."""
    ids = tokenizer(text, return_tensors="pt", add_special_tokens=False, verbose=False).input_ids
    return ids[0].long()


def segment_starts(n: int, nsamples: int, seqlen: int, seed: int) -> list[int]:
    """Start indices of ``nsamples`` segments in ``n`` tokens: ``random.seed(seed)``, ``randint(0, n - seqlen - 1)``."""
    if n - seqlen - 1 < 0:
        raise ValueError(f"calibration text has {n} tokens, fewer than one segment of {seqlen} + 1")
    random.seed(seed)
    return [random.randint(0, n - seqlen - 1) for _ in range(nsamples)]


def sample_segments(ids: torch.Tensor, nsamples: int, seqlen: int, seed: int) -> torch.Tensor:
    """``nsamples`` segments (nsamples, seqlen) of 1-D ``ids`` at :func:`segment_starts`."""
    return torch.stack([ids[i:i + seqlen] for i in segment_starts(ids.numel(), nsamples, seqlen, seed)])


def get_calibration(tokenizer, cfg: CalibConfig) -> torch.Tensor:
    """Calibration token ids (nsamples, seqlen) for ``cfg``, from the calibration part of its source."""
    ids = tokenize(tokenizer, load_text(cfg.source, "calibration"))
    logger.info("calibration %s (calibration part): %d tokens, %d x %d samples", cfg.source, ids.numel(),
                cfg.nsamples, cfg.seqlen)
    return sample_segments(ids, cfg.nsamples, cfg.seqlen, cfg.seed)
