"""Up-front structural check of a GGUF file: header, metadata, tensor table and data extent.

A truncated or foreign file fails here, with a message naming it, before a model loader meets
it deep inside transformers. The layout follows the GGUF spec (ggml ``docs/gguf.md``, versions 2
and 3, little-endian): magic, version, tensor count, metadata count, the metadata key/values, the
tensor infos (name, dims, type, offset), padding to ``general.alignment``, then the tensor data.
The file is memory-mapped, so only the header pages are read.
"""

from __future__ import annotations

import mmap
import struct
from pathlib import Path

__all__ = ["check_gguf"]

_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_STRING, _ARRAY = 8, 9


class _Truncated(Exception):
    pass


class _Reader:
    def __init__(self, buf) -> None:
        self.buf, self.pos = buf, 0

    def take(self, fmt: str):
        size = struct.calcsize("<" + fmt)
        if self.pos + size > len(self.buf):
            raise _Truncated
        value = struct.unpack_from("<" + fmt, self.buf, self.pos)[0]
        self.pos += size
        return value

    def skip(self, n: int) -> None:
        if self.pos + n > len(self.buf):
            raise _Truncated
        self.pos += n

    def string(self) -> bytes:
        n = self.take("Q")
        self.skip(n)
        return bytes(self.buf[self.pos - n:self.pos])

    def value(self, kind: int):
        if kind in _SCALARS:
            return self.take(_SCALARS[kind])
        if kind == _STRING:
            return self.string()
        if kind != _ARRAY:
            raise ValueError(f"unknown metadata value type {kind}")
        item, n = self.take("I"), self.take("Q")
        if item in _SCALARS:
            self.skip(n * struct.calcsize("<" + _SCALARS[item]))
        else:
            for _ in range(n):
                self.value(item)
        return None


def _tensor_bytes(dims: list[int], ggml_type: int) -> int:
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    try:
        block, size = GGML_QUANT_SIZES[GGMLQuantizationType(ggml_type)]
    except (ValueError, KeyError):
        raise ValueError(f"unknown tensor type {ggml_type}") from None
    n = 1
    for d in dims:
        n *= d
    return n // block * size


def _data_end(r: _Reader) -> int:
    """Bytes the file needs: header, then every tensor's data (its offset + size past the aligned header)."""
    if r.take("4s") != b"GGUF":
        raise ValueError("not a GGUF file (it does not start with the GGUF magic)")
    version = r.take("I")
    if version not in (2, 3):
        raise ValueError(f"unsupported GGUF version {version}")
    n_tensors, n_kv = r.take("Q"), r.take("Q")
    alignment = 32
    for _ in range(n_kv):
        key, value = r.string(), r.value(r.take("I"))
        if key == b"general.alignment" and isinstance(value, int) and value > 0:
            alignment = value
    end = 0
    for _ in range(n_tensors):
        r.string()
        dims = [r.take("Q") for _ in range(r.take("I"))]
        ggml_type, offset = r.take("I"), r.take("Q")
        end = max(end, offset + _tensor_bytes(dims, ggml_type))
    return -(-r.pos // alignment) * alignment + end


def check_gguf(path: str | Path) -> None:
    """ValueError naming ``path`` when it is not a complete GGUF file."""
    path = Path(path)
    size = path.stat().st_size
    if size == 0:
        raise ValueError(f"GGUF file {path} is empty")
    with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        r = _Reader(buf)
        try:
            need = _data_end(r)
        except _Truncated:
            raise ValueError(f"GGUF file {path} is truncated inside its header (at byte {r.pos} of {size})") from None
        except ValueError as exc:
            raise ValueError(f"GGUF file {path}: {exc}") from None
    if need > size:
        raise ValueError(f"GGUF file {path} is truncated: its tensors need {need} bytes, the file has {size}")
