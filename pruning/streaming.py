"""Block streaming: a model whose decoder blocks are materialised one at a time.

:class:`StreamedModel` reads a Hugging Face folder of safetensors shards (memory-mapped, never
loaded whole). Its skeleton lives on the ``meta`` device; :meth:`StreamedModel.load_block` puts
one block's weights on the compute device in the compute dtype and :meth:`release_block` returns
them to ``meta``. The token embedding is materialised only while block 0's inputs are captured;
the rotary embedding is rebuilt on the device (it has no weights). :class:`LoadedModel` gives the
same interface for a model already in memory (a GGUF file, a hub id, a test model), so one
block loop (:func:`pruning.sequential.prune_model`) serves both.
"""

from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path
from typing import Iterator

import torch
from torch import nn

from pruning.arch import decoder_layers

logger = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def parse_dtype(name: str) -> torch.dtype:
    """``float32|bfloat16|float16`` -> torch dtype (ValueError naming the choices)."""
    if name not in DTYPES:
        raise ValueError(f"--dtype {name!r}: choose one of {', '.join(DTYPES)}")
    return DTYPES[name]


def shard_index(folder: str | Path) -> dict[str, Path]:
    """Tensor name -> shard file of a safetensors model folder (sharded with an index, or one file)."""
    folder = Path(folder)
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{index}: not a valid safetensors index ({exc})") from None
        return {name: folder / file for name, file in weight_map.items()}
    single = folder / "model.safetensors"
    if single.is_file():
        from safetensors import safe_open

        with safe_open(str(single), framework="pt") as fh:
            return {name: single for name in fh.keys()}
    raise FileNotFoundError(f"no safetensors weights in {folder} (model.safetensors or its index)")


def is_streamable(folder: str | Path) -> bool:
    """True for a local folder with config.json and safetensors weights (no GGUF, no hub id)."""
    folder = Path(folder)
    return folder.is_dir() and (folder / "config.json").is_file() and (
        (folder / "model.safetensors.index.json").is_file() or (folder / "model.safetensors").is_file())


def return_freed_memory() -> None:
    """Give the C allocator's freed pages back to the system (glibc ``malloc_trim``): without it a
    finished block's freed buffers stay in the process's heap and the next block's peak adds up."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        # the same for PyTorch's CUDA caching allocator: a block's cached, unused segments go back
        # to the device, so the next block's peak does not stack on this one's fragments
        torch.cuda.empty_cache()


class LoadedModel:
    """A model already in memory: every block is materialised; nothing is released."""

    streamed = False

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.layers = decoder_layers(model)

    def __len__(self) -> int:
        return len(self.layers)

    def load_block(self, index: int) -> nn.Module:
        return self.layers[index]

    def release_block(self, index: int) -> None:
        """Blocks stay in memory: the caller keeps the pruned model."""

    @contextlib.contextmanager
    def embedding(self) -> Iterator[None]:
        yield

    @contextlib.contextmanager
    def head(self) -> Iterator[None]:
        """The output head (final norm, lm_head) for the duration; always there in memory."""
        yield


class StreamedModel(LoadedModel):
    """A safetensors model folder read one block at a time (see the module docstring)."""

    streamed = True

    def __init__(self, folder: str | Path, device: str = "cpu", dtype: torch.dtype = torch.float32) -> None:
        from transformers import AutoConfig, AutoModelForCausalLM

        self.folder, self.device, self.dtype = Path(folder), torch.device(device), dtype
        self.files = shard_index(self.folder)
        config = AutoConfig.from_pretrained(self.folder)
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config, dtype=dtype)
        self.model, self.layers = model.eval(), decoder_layers(model)
        inner = model.model
        # Rotary tables have no weights: rebuild them on the device (the meta copy holds nothing).
        inner.rotary_emb = type(inner.rotary_emb)(config).to(self.device)
        self._materialise(inner.norm, "model.norm.")
        for p in model.parameters():
            p.requires_grad_(False)

    def _read(self, name: str) -> torch.Tensor:
        from safetensors import safe_open

        if name not in self.files:
            raise ValueError(f"{self.folder}: the checkpoint has no tensor {name}")
        with safe_open(str(self.files[name]), framework="pt", device="cpu") as fh:
            return fh.get_tensor(name)

    def _materialise(self, module: nn.Module, prefix: str) -> None:
        state = {}
        for name, p in module.named_parameters():
            t = self._read(prefix + name)
            if tuple(t.shape) != tuple(p.shape):
                raise ValueError(f"{self.folder}: {prefix + name} has shape {tuple(t.shape)}, "
                                 f"config.json implies {tuple(p.shape)}")
            state[name] = t.to(self.device, self.dtype)
            del t
        module.load_state_dict(state, strict=True, assign=True)
        for p in module.parameters():
            p.requires_grad_(False)

    def load_block(self, index: int) -> nn.Module:
        block = self.layers[index]
        self._materialise(block, f"model.layers.{index}.")
        return block

    def release_block(self, index: int) -> None:
        self.layers[index].to("meta")
        return_freed_memory()

    @contextlib.contextmanager
    def embedding(self) -> Iterator[None]:
        """The token embedding, materialised for the duration (LLaMA-7B: 0.5 GB fp32 with SmolLM2's
        vocabulary)."""
        embed = self.model.model.embed_tokens
        self._materialise(embed, "model.embed_tokens.")
        try:
            yield
        finally:
            embed.to("meta")

    @contextlib.contextmanager
    def head(self) -> Iterator[None]:
        """lm_head materialised for the duration (the final norm always is); a tied head is the
        embedding's table."""
        lm_head = self.model.lm_head
        tied = "lm_head.weight" not in self.files
        self._materialise(lm_head, "model.embed_tokens." if tied else "lm_head.")
        try:
            yield
        finally:
            lm_head.to("meta")
            return_freed_memory()

    def read_tensor(self, name: str) -> torch.Tensor:
        """One tensor of the checkpoint as stored (for writing a pruned copy)."""
        return self._read(name)


def save_streamed_model(src: StreamedModel, checkpoint, path: str | Path, blocks: int) -> None:
    """A Hugging Face folder of the pruned model, written one block at a time: config, tokenizer and
    other small files copied from the source folder; per block one shard with the final weights (the
    checkpoint's updated weights, or the source weights with the masks applied) in the source dtype;
    one shard for everything outside the blocks; the index. Blocks past ``blocks`` stay as they were.
    """
    import shutil

    from safetensors.torch import save_file

    from pruning.arch import module_path

    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    for f in src.folder.iterdir():
        if f.is_file() and not f.name.endswith(".safetensors") and f.name != "model.safetensors.index.json":
            shutil.copy2(f, out / f.name)
    prefix = "model.layers."
    by_block: dict[int, list[str]] = {}
    rest = []
    for name in src.files:
        if name.startswith(prefix):
            by_block.setdefault(int(name[len(prefix):].split(".", 1)[0]), []).append(name)
        else:
            rest.append(name)
    weight_map = {}
    shards = [("rest", rest)] + [(f"{i:05d}", by_block[i]) for i in sorted(by_block)]
    for tag, names in shards:
        tensors = {n: src.read_tensor(n) for n in names}
        if tag != "rest" and int(tag) < blocks:
            index = int(tag)
            masks, _quant, weights = checkpoint.load(index)
            for op, mask in masks.items():
                key = module_path(index, op) + ".weight"
                w = weights[op] if op in weights else tensors[key] * mask.to(tensors[key].dtype)
                tensors[key] = w.to(tensors[key].dtype).contiguous()
        file = f"model-{tag}.safetensors"
        save_file(tensors, str(out / file), metadata={"format": "pt"})
        weight_map.update({n: file for n in names})
        del tensors
    (out / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map},
                                                                 indent=2) + "\n")
