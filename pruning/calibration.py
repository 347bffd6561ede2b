"""Calibration and evaluation text: seeded random calibration segments (SparseGPT, arXiv 2301.00774)
and the evaluation text, kept apart.

Sources: ``pydoc`` (Python's bundled ``pydoc_data.topics``, the offline default), a local text
file, or ``wikitext2`` / ``c4`` through the ``datasets`` library (needs internet; imported lazily).

Which part of a single text (pydoc or a file) each side reads, its *part*:

- ``all``: the whole text, from its start (the literature's protocol: calibrate on one text,
  e.g. WikiText-2 validation, evaluate on the first windows of another, e.g. WikiText-2 test);
- ``first`` (calibration) / ``held-out`` (evaluation): the text cut at the first line break after
  75% of its characters; calibration samples only the first part, evaluation reads only the rest.

``auto`` (the default) splits a text only when calibration and evaluation read the same one:
pydoc (the default of both) is always split, a file given to both is split, and two different
files are each read whole. A run's manifest records the part each side read. ``wikitext2``
calibrates on its train split and evaluates on its test split; ``c4`` on a train shard and on a
validation shard (parts do not apply to them).
"""

from __future__ import annotations

import logging
import os
import platform
import random
from pathlib import Path

import torch

from pruning.config import CALIB_PARTS, EVAL_PARTS, CalibConfig

logger = logging.getLogger(__name__)

HUB_SOURCES = ("wikitext2", "c4")
ROLES = ("calibration", "evaluation")
PARTS = ("all", "first", "held-out")
HELD_OUT = 0.25  # the last quarter of a split text is kept for evaluation
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
    """Index of the first character of the held-out part: just after the first line
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


def load_text(source: str, part: str = "all") -> str:
    """Text of ``pydoc`` or a file: ``all`` of it, its ``first`` 75% or its ``held-out`` last 25%."""
    if part not in PARTS:
        raise ValueError(f"part must be one of {', '.join(PARTS)}, got {part!r}")
    if source in HUB_SOURCES:
        raise ValueError(f"{source} is read by role (calibration or evaluation), not by part")
    text = _whole_text(source)
    if part == "all":
        return text
    cut = split_point(text)
    return text[:cut] if part == "first" else text[cut:]


def text_of(source: str, role: str, part: str | None) -> str:
    """What ``role`` (calibration or evaluation) reads of ``source``: a hub dataset's split for that
    role, or ``part`` (all, first or held-out) of a single text."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    if source in HUB_SOURCES:
        return _hub_text(source, role)
    return load_text(source, part)


def same_text(a: str, b: str) -> bool:
    """Whether two sources name the same text (the same name, or two paths of one file)."""
    if a == b:
        return True
    return Path(a).is_file() and Path(b).is_file() and os.path.samefile(a, b)


def calibration_part(source: str, requested: str = "auto", eval_source: str | None = None) -> str | None:
    """The part of ``source`` calibration samples (None for hub datasets): ``requested`` unless
    ``auto``, which splits pydoc and a text that evaluation (``eval_source``) also reads."""
    if requested not in CALIB_PARTS:
        raise ValueError(f"calibration part must be one of {', '.join(CALIB_PARTS)}, got {requested!r}")
    if source in HUB_SOURCES:
        if requested != "auto":
            raise ValueError(f"--calib-part applies to pydoc and files, not to {source} (its train split)")
        return None
    if requested != "auto":
        return requested
    split = source == "pydoc" or (eval_source is not None and same_text(source, eval_source))
    return "first" if split else "all"


def recorded_part(calibration: dict | None) -> str | None:
    """The calibration part a manifest records; runs written before parts were recorded sampled the
    first 75% when they record a split, and the whole text before that."""
    if not calibration or calibration.get("dataset") in HUB_SOURCES:
        return None
    if "part" in calibration:
        return calibration["part"]
    return "first" if "split" in calibration else "all"


def evaluation_part(source: str, requested: str = "auto", calibration: dict | None = None) -> str | None:
    """The part of ``source`` evaluation reads (None for hub datasets): ``requested`` unless ``auto``,
    which reads the held-out part of pydoc and of a text the run (``calibration``, its manifest
    entry) split for calibration, and the whole of any other text, from its start."""
    if requested not in EVAL_PARTS:
        raise ValueError(f"evaluation part must be one of {', '.join(EVAL_PARTS)}, got {requested!r}")
    if source in HUB_SOURCES:
        if requested != "auto":
            raise ValueError(f"--eval-part applies to pydoc and files, not to {source} (its test split)")
        return None
    if requested != "auto":
        return requested
    calib_source = (calibration or {}).get("dataset")
    split_for_calibration = (calib_source is not None and calib_source not in HUB_SOURCES
                             and recorded_part(calibration) == "first" and same_text(calib_source, source))
    return "held-out" if source == "pydoc" or split_for_calibration else "all"


def describe_split(source: str, role: str, part: str | None) -> dict:
    """What ``role`` reads of ``source``, for a manifest: the part, its character range, and the
    Python version for pydoc."""
    if source in HUB_SOURCES:
        return {"split": _HUB_SPLITS[source, role]}
    text = _whole_text(source)
    n, cut = len(text), split_point(text)
    first, last = {"all": (0, n), "first": (0, cut), "held-out": (cut, n)}[part]
    what = {"all": "the whole text, from its start",
            "first": f"the first {1 - HELD_OUT:.0%}; the rest is held out for evaluation",
            "held-out": f"the held-out last {HELD_OUT:.0%}; the first part is for calibration"}[part]
    info = {"part": part, "split": f"characters {first:,}-{last:,} of {n:,} ({what})"}
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


def check_disjoint(calib_source: str, calib_part: str | None, eval_source: str, eval_part: str | None,
                   probes: int = 32, width: int = 200) -> str:
    """Raise ValueError when what evaluation reads of ``eval_source`` shares a passage with what
    calibration sampled of ``calib_source``; return how the two are kept apart.

    One text is disjoint only as (first, held-out). Two different local texts are compared by
    looking up ``probes`` passages of ``width`` characters of the evaluated part in the calibration
    part. Hub datasets are not downloaded for this check.
    """
    if calib_source in HUB_SOURCES or eval_source in HUB_SOURCES:
        if calib_source == eval_source:
            return (f"{calib_source}: calibration on its {_HUB_SPLITS[calib_source, 'calibration']}, "
                    f"evaluation on its {_HUB_SPLITS[calib_source, 'evaluation']}")
        return f"different sources ({calib_source}, {eval_source}); overlap not checked for hub datasets"
    if same_text(calib_source, eval_source):
        if (calib_part, eval_part) != ("first", "held-out"):
            raise ValueError(f"evaluation would read {eval_part} of {eval_source}, where calibration sampled "
                             f"{calib_part} of it; split the text (--calib-part first, --eval-part held-out) or "
                             "evaluate on another text")
        return (f"{calib_source}: calibration uses the first {1 - HELD_OUT:.0%} of the text, evaluation "
                f"the held-out last {HELD_OUT:.0%} (same text, split, no overlap)")
    calib, evaluated = load_text(calib_source, calib_part), load_text(eval_source, eval_part)
    step = max(width, (len(evaluated) - width) // probes)
    for start in range(0, max(len(evaluated) - width, 0) + 1, step):
        passage = evaluated[start:start + width]
        if len(passage.strip()) >= width // 2 and passage in calib:
            raise ValueError(f"evaluation text {eval_source} overlaps the calibration text {calib_source} "
                             f"(a passage at character {start:,} of the evaluated part ({eval_part}) is in the "
                             f"calibration part ({calib_part})); use disjoint texts, or one text split")
    return f"different texts ({calib_source}: {calib_part}, {eval_source}: {eval_part}); no shared passage found"


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
    """Calibration token ids (nsamples, seqlen) for ``cfg``, from the part of its source that
    :func:`calibration_part` gives."""
    part = calibration_part(cfg.source, cfg.part)
    ids = tokenize(tokenizer, text_of(cfg.source, "calibration", part))
    logger.info("calibration %s (%s): %d tokens, %d x %d samples", cfg.source, part or "train split", ids.numel(),
                cfg.nsamples, cfg.seqlen)
    return sample_segments(ids, cfg.nsamples, cfg.seqlen, cfg.seed)
