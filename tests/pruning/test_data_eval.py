"""Calibration sampling (SparseGPT-style, seeded) from a part disjoint from evaluation, and windowed perplexity."""

import math
import platform
import random

import pytest
import torch

from pruning.calibration import (calibration_part, check_disjoint, describe_split, evaluation_part, get_calibration,
                                 load_text, recorded_part, sample_segments, segment_starts, split_point, tokenize)
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


@pytest.mark.parametrize("source", ["pydoc", "file"])
def test_calibration_and_evaluation_are_disjoint(source, text_file, byte_tokenizer):
    """Token ranges of the calibration segments and of the evaluation windows never meet
    (the run defaults: 16 x 256 calibration segments, 16 x 512 evaluation windows, seed 0)."""
    src = "pydoc" if source == "pydoc" else str(text_file)
    nsamples, seqlen, eval_seqlen, eval_windows = (16, 256, 512, 16) if source == "pydoc" else (8, 64, 128, 8)
    whole = tokenize(byte_tokenizer, load_text(src))
    calib = tokenize(byte_tokenizer, load_text(src, "first"))
    held_out = tokenize(byte_tokenizer, load_text(src, "held-out"))
    assert torch.equal(torch.cat([calib, held_out]), whole)  # two parts of one token stream
    cut = calib.numel()  # first token of the held-out part in the whole stream
    starts = segment_starts(calib.numel(), nsamples, seqlen, seed=0)
    segs = get_calibration(byte_tokenizer, CalibConfig(src, nsamples, seqlen, 0, part="first"))
    assert torch.equal(segs, torch.stack([whole[s:s + seqlen] for s in starts]))
    wins = windows(held_out, eval_seqlen, eval_windows)
    assert wins.shape == (eval_windows, eval_seqlen)
    assert torch.equal(wins.reshape(-1), whole[cut:cut + eval_windows * eval_seqlen])
    assert max(s + seqlen for s in starts) <= cut  # every calibration token before the held-out part


def test_split_is_recorded(text_file):
    text = load_text(str(text_file))
    cut = split_point(text)
    assert 0.75 * len(text) <= cut <= len(text) and text[cut - 1] == "\n"
    calib = describe_split(str(text_file), "calibration", "first")
    held = describe_split(str(text_file), "evaluation", "held-out")
    whole = describe_split(str(text_file), "evaluation", "all")
    assert calib["part"] == "first" and calib["split"].startswith(f"characters 0-{cut:,} of {len(text):,} (the first 75%")
    assert held["split"].startswith(f"characters {cut:,}-{len(text):,} of {len(text):,} (the held-out last 25%")
    assert whole == {"part": "all", "split": f"characters 0-{len(text):,} of {len(text):,} (the whole text, from its start)"}
    assert describe_split("pydoc", "calibration", "first")["python"] == platform.python_version()
    assert describe_split("wikitext2", "evaluation", None) == {"split": "wikitext-2-raw-v1 test split"}


def test_parts_split_only_a_text_both_sides_read(text_file, tmp_path):
    """auto: pydoc and a text read by both are split; two different files are each read whole."""
    other = tmp_path / "other.txt"
    other.write_text("x")
    assert calibration_part("pydoc") == "first"
    assert calibration_part(str(text_file)) == "all"
    assert calibration_part(str(text_file), eval_source=str(text_file)) == "first"
    assert calibration_part(str(text_file), eval_source=str(other)) == "all"
    assert calibration_part(str(text_file), "first") == "first"
    assert calibration_part("wikitext2") is None
    assert evaluation_part("pydoc") == "held-out"
    assert evaluation_part(str(other)) == "all"
    split_run = {"dataset": str(text_file), "part": "first"}
    assert evaluation_part(str(text_file), calibration=split_run) == "held-out"
    assert evaluation_part(str(other), calibration=split_run) == "all"
    assert evaluation_part(str(text_file), calibration={"dataset": str(text_file), "part": "all"}) == "all"
    assert evaluation_part(str(other), "held-out") == "held-out"
    # manifests written before parts were recorded: a split means the first 75%, none the whole text
    assert recorded_part({"dataset": "pydoc", "split": "characters 0-10 of 20"}) == "first"
    assert recorded_part({"dataset": "pydoc"}) == "all"
    with pytest.raises(ValueError, match="--eval-part applies to pydoc and files"):
        evaluation_part("wikitext2", "all")
    with pytest.raises(ValueError, match="--calib-part applies to pydoc and files"):
        calibration_part("c4", "first")
    with pytest.raises(ValueError, match="calibration part must be one of"):
        CalibConfig(part="held-out")


def test_overlapping_texts_are_refused(text_file, tmp_path):
    assert "split, no overlap" in check_disjoint(str(text_file), "first", str(text_file), "held-out")
    assert "split, no overlap" in check_disjoint("pydoc", "first", "pydoc", "held-out")
    for calib_part, eval_part in (("all", "held-out"), ("first", "all"), ("all", "all")):
        with pytest.raises(ValueError, match="split the text"):
            check_disjoint(str(text_file), calib_part, str(text_file), eval_part)
    # a file whose held-out tail is calibration text of another source overlaps
    leaky = tmp_path / "leaky.txt"
    leaky.write_text(load_text(str(text_file), "first"))  # its last 25% lies inside text_file's first 75%
    with pytest.raises(ValueError, match="overlaps the calibration text"):
        check_disjoint(str(text_file), "first", str(leaky), "held-out")
    with pytest.raises(ValueError, match="overlaps the calibration text"):  # and so does all of it
        check_disjoint(str(text_file), "all", str(leaky), "all")
    other = tmp_path / "other.txt"
    other.write_text("\n".join(f"line {i} of a text that shares nothing" for i in range(2000)))
    assert "no shared passage" in check_disjoint(str(text_file), "all", str(other), "all")
