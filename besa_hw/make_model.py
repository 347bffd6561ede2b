"""Randomly initialised LLaMA checkpoints with a real model's architecture and sizes (``besa-hw make-model``).

No 7B-70B weights can be downloaded here, so pruning's memory and time are measured on a checkpoint
that has the real shapes and random weights. The dimensions come from the simulator's shape table
(:data:`simulator.workload.SHAPES`, plus a ``tiny`` shape for tests); the tensor names and shapes from
``LlamaForCausalLM`` built on the meta device (no memory); the tokenizer is the bundled SmolLM2 one, so
``vocab_size`` is its vocabulary (49152): the decoder blocks, which pruning touches, are exact, only the
embedding and lm_head rows follow the tokenizer.

Weights are drawn as Hugging Face's ``_init_weights`` does for LLaMA: N(0, initializer_range) for Linear
and embedding weights (the padding token's embedding row zero), ones for RMSNorm gains. Each tensor has
its own generator seeded from (seed, name) and is drawn in chunks of rows written straight into its shard
(the safetensors header is known in advance), so memory holds one chunk, never a block or the model,
and the bytes depend only on the seed.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

from simulator.workload import SHAPES, ModelShape

__all__ = ["TINY", "TensorSpec", "shape_names", "get_model_shape", "bundled_tokenizer", "saved_tokenizer",
           "llama_config", "tensor_plan", "shard_plan", "checkpoint_bytes", "check_disk", "write_checkpoint"]

logger = logging.getLogger(__name__)

TINY = ModelShape("tiny", 64, 128, 2, 4, 2, 16)  # for tests: q 64x64, k/v 32x64, gate/up 128x64, down 64x128
# What the shape table lacks for a Hugging Face config (each model's published config.json).
_LLAMA1 = {"max_position_embeddings": 2048, "rms_norm_eps": 1e-6}
_LLAMA2 = {"max_position_embeddings": 4096, "rms_norm_eps": 1e-5}
ARCH_EXTRAS = {
    "smollm2-135m": {"max_position_embeddings": 8192, "rms_norm_eps": 1e-5, "rope_theta": 100000.0,
                     "tie_word_embeddings": True},
    "llama-7b": _LLAMA1, "llama-13b": _LLAMA1, "llama-30b": _LLAMA1,
    "llama2-7b": _LLAMA2, "llama2-70b": _LLAMA2,
    "tiny": {"max_position_embeddings": 1024, "rms_norm_eps": 1e-6},
}
DTYPES = {"float16": "F16", "bfloat16": "BF16", "float32": "F32"}  # --dtype -> safetensors dtype
DTYPE_BYTES = {"float16": 2, "bfloat16": 2, "float32": 4}
MAX_SHARD_BYTES = 2 * 10**9  # ~2 GB shards, as Hugging Face's save_pretrained cuts them
CHUNK_ELEMENTS = 1 << 22  # rows drawn at a time: 16 MB of fp32; changing it changes the bytes of a seed
TOKENIZER_BYTES = 64 * 2**20  # room kept for the tokenizer and config files when checking the disk


@dataclass(frozen=True)
class TensorSpec:
    """One tensor of the checkpoint and how it is initialised (``normal`` or ``ones``)."""

    name: str
    shape: tuple[int, ...]
    init: str
    zero_row: int | None = None  # the embedding's padding row

    @property
    def numel(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n


def shape_names() -> list[str]:
    return [*SHAPES, TINY.name]


def get_model_shape(name: str) -> ModelShape:
    shapes = {**SHAPES, TINY.name: TINY}
    if name not in shapes:
        raise ValueError(f"unknown model shape {name!r}; choose one of {', '.join(shapes)}")
    return shapes[name]


@functools.lru_cache(maxsize=1)
def bundled_tokenizer():
    """The SmolLM2 tokenizer of the bundled default model (read from its GGUF file; a few seconds)."""
    from transformers import AutoTokenizer

    from besa_hw.models import DEFAULT_GGUF, bundled_model_dir

    folder = bundled_model_dir()
    if not (folder / DEFAULT_GGUF).is_file():
        raise FileNotFoundError(f"bundled GGUF file not found: {folder / DEFAULT_GGUF}")
    return AutoTokenizer.from_pretrained(folder, gguf_file=DEFAULT_GGUF)


def saved_tokenizer(folder: str):
    """A tokenizer saved with ``save_pretrained`` (``--tokenizer DIR``)."""
    from transformers import AutoTokenizer

    path = Path(folder)
    if not path.is_dir():
        raise FileNotFoundError(f"--tokenizer {folder}: no such folder")
    try:
        return AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as exc:
        raise ValueError(f"--tokenizer {folder}: not a saved Hugging Face tokenizer "
                         f"({str(exc).splitlines()[0][:200]})") from None


def llama_config(shape: ModelShape, tokenizer, dtype: str = "float16"):
    """The ``LlamaConfig`` of ``shape``, its vocabulary and special tokens those of ``tokenizer``."""
    from transformers import LlamaConfig

    extras = {"max_position_embeddings": 2048, "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
              "tie_word_embeddings": False, **ARCH_EXTRAS.get(shape.name, {})}
    return LlamaConfig(hidden_size=shape.hidden_size, intermediate_size=shape.intermediate_size,
                       num_hidden_layers=shape.num_hidden_layers, num_attention_heads=shape.num_attention_heads,
                       num_key_value_heads=shape.num_key_value_heads, head_dim=shape.head_dim,
                       vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                       eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                       initializer_range=0.02, dtype=dtype, **extras)


def tensor_plan(config) -> list[TensorSpec]:
    """Every tensor ``save_pretrained`` would write for ``config``, in its order (tied lm_head left out)."""
    import torch
    from torch import nn
    from transformers import LlamaForCausalLM

    with torch.device("meta"):
        model = LlamaForCausalLM(config)
    tied = set(model._tied_weights_keys or {}) if config.tie_word_embeddings else set()
    kinds = {}
    for prefix, module in model.named_modules():
        if isinstance(module, (nn.Linear, nn.Embedding)):
            pad = getattr(module, "padding_idx", None)
            kinds[f"{prefix}.weight"] = ("normal", pad)
        elif type(module).__name__.endswith("RMSNorm"):
            kinds[f"{prefix}.weight"] = ("ones", None)
    specs = []
    for name, tensor in model.state_dict().items():
        if name in tied:
            continue
        if name not in kinds:  # a LLaMA has no other parameters; a new transformers might
            raise ValueError(f"no initialisation rule for {name} (transformers {_version()})")
        init, pad = kinds[name]
        specs.append(TensorSpec(name, tuple(tensor.shape), init, pad))
    return specs


def shard_plan(specs: list[TensorSpec], dtype: str, max_shard_bytes: int = MAX_SHARD_BYTES) -> list[list[TensorSpec]]:
    """Tensors in order, cut into shards of at most ``max_shard_bytes`` (a bigger tensor gets its own)."""
    shards: list[list[TensorSpec]] = [[]]
    size = 0
    for spec in specs:
        nbytes = spec.numel * DTYPE_BYTES[dtype]
        if shards[-1] and size + nbytes > max_shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append(spec)
        size += nbytes
    return shards


def _header(specs: list[TensorSpec], dtype: str) -> bytes:
    """The safetensors header of a shard (see :func:`pruning.checkpoint.safetensors_header`)."""
    from pruning.checkpoint import safetensors_header

    return safetensors_header([(spec.name, DTYPES[dtype], spec.shape) for spec in specs], {"format": "pt"})


def checkpoint_bytes(shards: list[list[TensorSpec]], dtype: str) -> int:
    """Bytes of all the shard files (headers included)."""
    return sum(len(_header(s, dtype)) + sum(t.numel for t in s) * DTYPE_BYTES[dtype] for s in shards)


def check_disk(out: Path, need: int, what: str) -> None:
    """ValueError before anything is written when the file system of ``out`` has less than ``need`` bytes free."""
    above = Path(out).absolute()
    while not above.exists():
        above = above.parent
    free = shutil.disk_usage(above).free
    if free < need:
        raise ValueError(f"{what} needs {need / 1e9:.1f} GB but {above} has only {free / 1e9:.1f} GB free; "
                         "choose another --out or a smaller --shape")


def _tensor_seed(seed: int, name: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:{name}".encode()).digest()[:8], "little") >> 1


def _write_tensor(f, spec: TensorSpec, dtype: str, seed: int, std: float, bar) -> None:
    """Draw ``spec`` chunk by chunk of rows and append its bytes to the open shard ``f``."""
    import torch

    rows = spec.shape[0]
    cols = spec.numel // rows
    step = max(1, CHUNK_ELEMENTS // cols)
    gen = torch.Generator().manual_seed(_tensor_seed(seed, spec.name))
    for r0 in range(0, rows, step):
        r1 = min(rows, r0 + step)
        chunk = torch.empty(r1 - r0, cols, dtype=torch.float32)  # (rows, cols)
        if spec.init == "ones":
            chunk.fill_(1.0)
        else:
            chunk.normal_(0.0, std, generator=gen)
            if spec.zero_row is not None and r0 <= spec.zero_row < r1:
                chunk[spec.zero_row - r0] = 0.0
        data = chunk.to(getattr(torch, dtype)).reshape(-1).view(torch.uint8).numpy()
        f.write(memoryview(data))
        if bar is not None:
            bar.update(data.nbytes)


def write_checkpoint(folder: Path, config, tokenizer, shards: list[list[TensorSpec]], seed: int = 0,
                     progress: bool = False) -> dict:
    """Write shards, ``model.safetensors.index.json``, config, generation config and tokenizer into
    ``folder``; returns the index's metadata (``total_size``, ``total_parameters``)."""
    from transformers import GenerationConfig

    dtype = str(config.dtype).removeprefix("torch.")
    folder = Path(folder)
    n = len(shards)
    weight_map = {}
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=checkpoint_bytes(shards, dtype), desc="make-model", unit="B", unit_scale=True,
                   disable=None)
    try:
        for i, specs in enumerate(shards, 1):
            name = f"model-{i:05d}-of-{n:05d}.safetensors"
            with open(folder / name, "wb") as f:
                header = _header(specs, dtype)
                f.write(header)
                if bar is not None:
                    bar.update(len(header))
                for spec in specs:
                    _write_tensor(f, spec, dtype, seed, config.initializer_range, bar)
                    weight_map[spec.name] = name
    finally:
        if bar is not None:
            bar.close()
    specs = [s for shard in shards for s in shard]
    meta = {"total_parameters": sum(s.numel for s in specs),
            "total_size": sum(s.numel for s in specs) * DTYPE_BYTES[dtype]}
    index = {"metadata": meta, "weight_map": dict(sorted(weight_map.items()))}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")
    config.save_pretrained(folder)
    _add_torch_dtype(folder / "config.json", dtype)
    GenerationConfig.from_model_config(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return meta


def _add_torch_dtype(path: Path, dtype: str) -> None:
    """transformers 5 writes ``dtype``; readers built on older ones (and other tools) read ``torch_dtype``."""
    config = json.loads(path.read_text())
    config["torch_dtype"] = dtype
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def _version() -> str:
    import transformers

    return transformers.__version__
