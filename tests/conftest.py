"""Shared fixtures: a tiny random LLaMA (GQA, 2 blocks, hidden 64) and a byte-level tokenizer."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch


def _byte_tokenizer():
    """A 256-token byte-level tokenizer built offline (one token per byte)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {ch: i for i, ch in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=list(vocab)[0])


@pytest.fixture(scope="session")
def byte_tokenizer():
    """The byte-level tokenizer: token i of a text is its byte i."""
    return _byte_tokenizer()


@pytest.fixture
def tiny_model():
    """Fresh tiny ``LlamaForCausalLM``: 2 blocks, hidden 64, 4 heads / 2 kv heads, vocab 256."""
    from besa_hw.models import tiny_llama

    return tiny_llama(hidden=64, layers=2, heads=4, kv_heads=2, intermediate=128, vocab=256, seed=0)


@pytest.fixture
def calib_ids() -> torch.Tensor:
    """8 random calibration segments of 32 tokens."""
    return torch.randint(0, 256, (8, 32), generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A saved tiny model + tokenizer folder (what ``--model PATH`` points at)."""
    from besa_hw.models import tiny_llama

    path = tmp_path_factory.mktemp("tiny-llama")
    tiny_llama(seed=0).save_pretrained(path)
    _byte_tokenizer().save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def text_file(tmp_path_factory) -> Path:
    """A local calibration/evaluation text file of a few thousand bytes."""
    from pruning.calibration import pydoc_text

    path = tmp_path_factory.mktemp("data") / "calib.txt"
    path.write_text(pydoc_text()[:20000])
    return path
