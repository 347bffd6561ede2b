"""Calibration sampling (SparseGPT-style, seeded) and windowed perplexity."""

import math
import random

import pytest
import torch

from pruning.calibration import load_text, sample_segments
from pruning.config import CalibConfig
from pruning.eval import perplexity, windows


def test_sampling_matches_reference_protocol():
    ids = torch.arange(1000)
    segs = sample_segments(ids, 4, 100, seed=0)
    random.seed(0)
    starts = [random.randint(0, 1000 - 100 - 1) for _ in range(4)]
    assert segs[:, 0].tolist() == starts
    assert torch.equal(segs, sample_segments(ids, 4, 100, seed=0))
    with pytest.raises(ValueError, match="fewer than one segment"):
        sample_segments(torch.arange(50), 1, 64, 0)


def test_sources(text_file):
    assert len(load_text("pydoc")) > 100_000
    assert load_text(str(text_file)).startswith(load_text("pydoc")[:50])
    with pytest.raises(FileNotFoundError, match="not found"):
        load_text("/no/such/file.txt")
    with pytest.raises(ValueError):
        CalibConfig(nsamples=0)


def test_perplexity_windows(tiny_model):
    ids = torch.randint(0, 256, (300,), generator=torch.Generator().manual_seed(1))
    assert windows(ids, 64, 3).shape == (3, 64)
    assert windows(ids, 64, None).shape == (4, 64)
    ppl = perplexity(tiny_model, ids, seqlen=64, max_windows=3)
    assert math.isfinite(ppl) and 100 < ppl < 1000  # random model ~ uniform over 256 tokens
    with pytest.raises(ValueError, match="fewer than one window"):
        windows(ids[:10], 64, 3)
