"""Per-block results written as soon as a block is done, so a prune can resume and memory stays bounded.

A checkpoint folder holds ``block-NNNNN.safetensors`` per finished block (``mask.<op>`` bool;
``weight.<op>`` in the compute dtype when the method changed kept weights; ``codes/scales/zeros.<op>``
when quantized) and ``progress.json``: the run's fingerprint (everything that decides the result),
then per finished block its layer records, sparsity, and the state a method carries to the next
block. A block counts as finished only once ``progress.json`` lists it (each file is written to a
temporary name and renamed). At the end :meth:`BlockCheckpoint.write_masks` and
:meth:`write_quant` stream every block's tensors into the run folder's single files without
holding them all in memory.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Iterable, Iterator

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from pruning.quant import QuantParams

PROGRESS = "progress.json"
_ST_DTYPES = {torch.bool: "BOOL", torch.uint8: "U8", torch.int8: "I8", torch.int32: "I32", torch.int64: "I64",
              torch.float16: "F16", torch.bfloat16: "BF16", torch.float32: "F32"}


def _atomic_json(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    os.replace(tmp, path)


class BlockCheckpoint:
    """Finished blocks of one prune (see the module docstring)."""

    def __init__(self, folder: str | Path, fingerprint: dict, resume: bool = False) -> None:
        self.folder, self.fingerprint = Path(folder), json.loads(json.dumps(fingerprint))
        self.blocks: list[dict] = []
        progress = self.folder / PROGRESS
        if resume and progress.is_file():
            try:
                data = json.loads(progress.read_text())
                data["blocks"], data.get("fingerprint")
            except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
                raise ValueError(f"cannot resume: {progress} cannot be read ({type(exc).__name__}); the finished "
                                 f"blocks are left in {self.folder}; repair it, or start over with --overwrite") from None
            if data.get("fingerprint") != self.fingerprint:
                changed = sorted(k for k in set(data.get("fingerprint", {})) | set(self.fingerprint)
                                 if data.get("fingerprint", {}).get(k) != self.fingerprint.get(k))
                raise ValueError(f"cannot resume: the unfinished prune in {self.folder} used other settings "
                                 f"({', '.join(changed[:4])}); rerun with its settings or with --overwrite")
            self.blocks = data["blocks"]
        else:
            self.folder.mkdir(parents=True, exist_ok=True)
            for old in self.folder.glob("block-*.safetensors"):
                old.unlink()
            self._write_progress()

    @property
    def done(self) -> int:
        """Number of finished blocks (always the first ones)."""
        return len(self.blocks)

    def _file(self, index: int) -> Path:
        return self.folder / f"block-{index:05d}.safetensors"

    def _write_progress(self) -> None:
        _atomic_json(self.folder / PROGRESS, {"fingerprint": self.fingerprint, "blocks": self.blocks})

    def save(self, index: int, masks: dict[str, torch.Tensor], quant: dict[str, QuantParams],
             weights: dict[str, torch.Tensor] | None, record: dict) -> None:
        """Write block ``index`` (the next unfinished one) and mark it finished."""
        if index != self.done:
            raise ValueError(f"checkpoint: block {index} saved after {self.done} finished blocks")
        tensors = {f"mask.{op}": m.detach().to("cpu", torch.bool).contiguous() for op, m in masks.items()}
        for op, q in quant.items():
            tensors.update({f"codes.{op}": q.codes.to("cpu", torch.uint8).contiguous(),
                            f"scales.{op}": q.scales.to("cpu", torch.float32).contiguous(),
                            f"zeros.{op}": q.zeros.to("cpu", torch.uint8).contiguous()})
        for op, w in (weights or {}).items():
            tensors[f"weight.{op}"] = w.detach().to("cpu").contiguous()
        tmp = self._file(index).with_suffix(".tmp")
        save_file(tensors, str(tmp))
        os.replace(tmp, self._file(index))
        self.blocks.append({"index": index, **json.loads(json.dumps(record))})
        self._write_progress()

    def load(self, index: int) -> tuple[dict[str, torch.Tensor], dict[str, QuantParams], dict[str, torch.Tensor]]:
        """(masks, quant, weights) of finished block ``index``."""
        masks, parts, weights = {}, {}, {}
        with safe_open(str(self._file(index)), framework="pt") as fh:
            for key in fh.keys():
                kind, op = key.split(".", 1)
                t = fh.get_tensor(key)
                if kind == "mask":
                    masks[op] = t
                elif kind == "weight":
                    weights[op] = t
                else:
                    parts.setdefault(op, {})[kind] = t
        bits = {op: rec["quant"] for op, rec in self._layer_records(index).items() if "quant" in rec}
        quant = {op: QuantParams(p["codes"], p["scales"], p["zeros"], bits[op]["bits"], bits[op]["group_size"])
                 for op, p in parts.items()}
        return masks, quant, weights

    def _layer_records(self, index: int) -> dict[str, dict]:
        return {rec["op"]: rec for rec in self.blocks[index]["layers"].values()}

    def record(self, index: int) -> dict:
        return self.blocks[index]

    def remove(self) -> None:
        """Delete the checkpoint (after the run folder is published)."""
        import shutil

        shutil.rmtree(self.folder, ignore_errors=True)

    # -- the run folder's single files, streamed block by block --------------------------------
    def _entries(self, kinds: tuple[str, ...], rename) -> Iterator[tuple[str, Path, str]]:
        for index in range(self.done):
            with safe_open(str(self._file(index)), framework="pt") as fh:
                keys = list(fh.keys())
            for op in self._layer_records(index):
                for kind in kinds:
                    if f"{kind}.{op}" in keys:
                        yield rename(index, op, kind), self._file(index), f"{kind}.{op}"

    def write_masks(self, path: str | Path, path_of) -> None:
        """``masks.safetensors``: every block's masks keyed by ``path_of(block, op)``."""
        write_streamed(path, self._entries(("mask",), lambda i, op, _k: path_of(i, op)))

    def write_quant(self, path: str | Path, path_of, metadata: dict) -> bool:
        """``quant.safetensors`` (layout of :mod:`pruning.quant_export`); False when nothing was quantized."""
        entries = list(self._entries(("codes", "scales", "zeros"), lambda i, op, k: f"{path_of(i, op)}.{k}"))
        if entries:
            write_streamed(path, entries, metadata)
        return bool(entries)


def write_streamed(path: str | Path, entries: Iterable[tuple[str, Path, str]], metadata: dict | None = None) -> None:
    """Write a safetensors file from tensors read one at a time: ``entries`` are (name, source file,
    source key). The header (8-byte length, JSON with dtype, shape and byte offsets, padded to 8
    bytes) is built from the sources' headers first, then each tensor's bytes are appended."""
    entries = list(entries)
    layout = []
    for name, src, key in entries:
        with safe_open(str(src), framework="pt") as fh:
            sl = fh.get_slice(key)
            layout.append((name, sl.get_dtype(), sl.get_shape()))
    tmp = Path(str(path) + ".tmp")
    with open(tmp, "wb") as out:
        out.write(safetensors_header(layout, metadata))
        for name, src, key in entries:
            with safe_open(str(src), framework="pt") as fh:
                t = fh.get_tensor(key).contiguous()
            out.write(_tensor_bytes(t))
    os.replace(tmp, path)


_SIZES = {"BOOL": 1, "U8": 1, "I8": 1, "I32": 4, "I64": 8, "F16": 2, "BF16": 2, "F32": 4}


def safetensors_header(layout: Iterable[tuple[str, str, Iterable[int]]], metadata: dict | None = None) -> bytes:
    """The bytes a safetensors file starts with, for tensors ``(name, dtype, shape)`` stored in that
    order: a little-endian u64 length, then JSON (dtype, shape, byte offsets of each tensor;
    ``__metadata__``) padded with spaces to a multiple of 8 bytes. The tensors' raw bytes follow."""
    header: dict = {"__metadata__": {str(k): str(v) for k, v in metadata.items()}} if metadata else {}
    offset = 0
    for name, dtype, shape in layout:
        size = _nbytes(dtype, list(shape))
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw


def _nbytes(dtype: str, shape: list[int]) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n * _SIZES[dtype]


def _tensor_bytes(t: torch.Tensor) -> bytes:
    """The raw little-endian bytes of ``t`` (any dtype, bf16 included, which numpy lacks)."""
    return t.cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
