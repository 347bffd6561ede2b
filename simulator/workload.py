"""Workloads: the Linear layers of a LLaMA-family transformer as a list of `LayerOp`s.

Masks are loaded lazily, one op at a time, so whole 7B/70B models stream through
the simulator with one layer's mask in memory.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

__all__ = [
    "OP_NAMES",
    "MAX_TOKENS",
    "ModelShape",
    "SHAPES",
    "LayerOp",
    "get_shape",
    "model_ops",
    "run_ops",
    "read_manifest",
    "mask_keys",
    "check_tokens",
]

# Tokens per op: beyond any context window (2**20 = 1M tokens); keeps the planner's arrays bounded.
MAX_TOKENS = 1 << 20
OP_NAMES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
MaskLoader = Callable[[], np.ndarray]
# safetensors dtype names a mask may be stored as (integers must hold only 0 and 1).
_MASK_DTYPES = ("BOOL", "U8", "I8", "U16", "I16", "U32", "I32", "U64", "I64")


@dataclass(frozen=True)
class ModelShape:
    """The dimensions of a LLaMA-style decoder (GQA aware)."""

    name: str
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int = 0  # 0: hidden_size // num_attention_heads

    def __post_init__(self) -> None:
        for f in ("hidden_size", "intermediate_size", "num_hidden_layers",
                  "num_attention_heads", "num_key_value_heads"):
            if int(getattr(self, f)) <= 0:
                raise ValueError(f"model shape {self.name}: {f} must be positive")
        if self.head_dim <= 0:
            object.__setattr__(self, "head_dim", self.hidden_size // self.num_attention_heads)

    def op_shapes(self) -> dict[str, tuple[int, int]]:
        """(out_features, in_features) of each Linear in one block."""
        h, i = self.hidden_size, self.intermediate_size
        q = self.num_attention_heads * self.head_dim
        kv = self.num_key_value_heads * self.head_dim
        return {"q_proj": (q, h), "k_proj": (kv, h), "v_proj": (kv, h), "o_proj": (h, q),
                "gate_proj": (i, h), "up_proj": (i, h), "down_proj": (h, i)}

    @classmethod
    def from_dict(cls, name: str, d: dict) -> "ModelShape":
        return cls(name=name, hidden_size=int(d["hidden_size"]),
                   intermediate_size=int(d["intermediate_size"]),
                   num_hidden_layers=int(d["num_hidden_layers"]),
                   num_attention_heads=int(d["num_attention_heads"]),
                   num_key_value_heads=int(d.get("num_key_value_heads") or d["num_attention_heads"]),
                   head_dim=int(d.get("head_dim") or 0))


# Published configurations (HF config.json of each model).
SHAPES: dict[str, ModelShape] = {s.name: s for s in (
    ModelShape("smollm2-135m", 576, 1536, 30, 9, 3, 64),
    ModelShape("llama-7b", 4096, 11008, 32, 32, 32, 128),
    ModelShape("llama-13b", 5120, 13824, 40, 40, 40, 128),
    ModelShape("llama-30b", 6656, 17920, 60, 52, 52, 128),
    ModelShape("llama2-70b", 8192, 28672, 80, 64, 8, 128),
)}


def get_shape(name: str) -> ModelShape:
    if name not in SHAPES:
        raise ValueError(f"unknown model shape {name!r}; choose one of {', '.join(SHAPES)}")
    return SHAPES[name]


def module_path(block: int, op: str) -> str:
    group = "self_attn" if op in OP_NAMES[:4] else "mlp"
    return f"model.layers.{block}.{group}.{op}"


@dataclass(frozen=True)
class LayerOp:
    """One Linear (out_features x in_features) applied to `tokens` tokens.

    `load_mask` returns the bool keep-mask, shape (out_features, in_features); None
    means dense.
    """

    block: int
    op: str
    out_features: int
    in_features: int
    tokens: int
    load_mask: MaskLoader | None = field(default=None, compare=False, repr=False)
    name: str = ""

    def __post_init__(self) -> None:
        if self.out_features <= 0 or self.in_features <= 0:
            raise ValueError(f"{self.name or self.op}: Linear sizes must be positive, "
                             f"got {self.out_features}x{self.in_features}")
        check_tokens(self.tokens)
        if not self.name:
            object.__setattr__(self, "name", module_path(self.block, self.op))

    def mask(self) -> np.ndarray | None:
        if self.load_mask is None:
            return None
        m = np.asarray(self.load_mask())
        if m.shape != (self.out_features, self.in_features):
            raise ValueError(f"{self.name}: mask shape {tuple(m.shape)} does not match the Linear "
                             f"({self.out_features}, {self.in_features})")
        if m.dtype == np.bool_:
            return m
        if m.dtype.kind not in "iu" or not np.isin(m, (0, 1)).all():
            raise ValueError(f"{self.name}: mask has dtype {m.dtype} with values other than 0/1; "
                             "masks must be bool (or 0/1 integers)")
        return m != 0


def check_tokens(tokens: int, what: str = "tokens") -> int:
    """``tokens`` if it is an integer in [1, MAX_TOKENS], else ValueError naming ``what``."""
    if not isinstance(tokens, int) or isinstance(tokens, bool) or tokens <= 0:
        raise ValueError(f"{what} must be a positive integer, got {tokens!r}")
    if tokens > MAX_TOKENS:
        raise ValueError(f"{what} must be at most {MAX_TOKENS} (2**20), got {tokens}")
    return tokens


def model_ops(shape: ModelShape, tokens: int,
              mask_for: Callable[[int, str, tuple[int, int]], MaskLoader | None] | None = None,
              blocks: range | None = None) -> list[LayerOp]:
    """All q,k,v,o,gate,up,down ops of every block; `mask_for(block, op, shape)` gives loaders."""
    ops = []
    for b in blocks if blocks is not None else range(shape.num_hidden_layers):
        for op, (out_f, in_f) in shape.op_shapes().items():
            loader = mask_for(b, op, (out_f, in_f)) if mask_for else None
            ops.append(LayerOp(b, op, out_f, in_f, tokens, loader))
    return ops


def read_manifest(run_dir: str | Path) -> dict:
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise NotADirectoryError(f"{run_dir} is a file, not a run folder")
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run folder not found: {run_dir}")
    manifest = run_dir / "manifest.json"
    if not manifest.is_file():
        raise FileNotFoundError(f"{run_dir} is not a run folder: manifest.json is missing")
    try:
        meta = json.loads(manifest.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ValueError(f"{manifest}: not a UTF-8 text JSON file") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{manifest}: invalid JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{manifest}: expected a JSON object, got {type(meta).__name__}")
    return meta


def mask_keys(masks_path: str | Path) -> dict[str, tuple[str, list[int]]]:
    """{name: (dtype, shape)} of the masks in a safetensors file, from its header (no tensor is read);
    ValueError naming the file when it cannot be read."""
    from safetensors import SafetensorError, safe_open  # numpy backend: no torch needed

    masks_path = Path(masks_path)
    if not masks_path.is_file():
        raise FileNotFoundError(f"{masks_path.parent}: masks.safetensors is missing (not a finished pruning run)")
    try:
        with safe_open(str(masks_path), framework="np") as fh:
            return {k: (fh.get_slice(k).get_dtype(), fh.get_slice(k).get_shape()) for k in fh.keys()}
    except SafetensorError as exc:
        raise ValueError(f"{masks_path}: damaged or truncated safetensors file ({exc})") from None


def _manifest_layers(run_dir: Path, meta: dict) -> tuple[ModelShape, dict]:
    """(model shape, layers) of a run manifest; ValueError naming the manifest and the bad key."""
    where = run_dir / "manifest.json"
    for key in ("model", "layers"):
        if key not in meta:
            raise ValueError(f"{where} lacks the key {key!r}")
        if not isinstance(meta[key], dict):
            raise ValueError(f"{where}: {key!r} must be a JSON object, got {type(meta[key]).__name__}")
    try:
        shape = ModelShape.from_dict(str(meta["model"].get("id", run_dir.name)), meta["model"])
    except KeyError as exc:
        raise ValueError(f"{where}: 'model' lacks the key {exc.args[0]!r}") from None
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where}: bad 'model' dimensions ({exc})") from None
    for key, info in meta["layers"].items():
        if not (isinstance(info, dict) and {"block", "op", "shape"} <= set(info)):
            raise ValueError(f"{where}: layer {key!r} needs block, op and shape")
    return shape, meta["layers"]


def run_ops(run_dir: str | Path, tokens: int) -> tuple[ModelShape, list[LayerOp]]:
    """Ops of a pruning run folder (masks.safetensors + manifest.json), masks read lazily."""
    from safetensors import safe_open  # numpy backend: no torch needed

    run_dir = Path(run_dir)
    meta = read_manifest(run_dir)
    masks_path = run_dir / "masks.safetensors"
    stored = mask_keys(masks_path)
    shape, layers = _manifest_layers(run_dir, meta)
    missing = [k for k in layers if k not in stored]
    if missing:
        raise ValueError(f"{masks_path}: no mask for {missing[0]} ({len(missing)} missing)")
    for key, info in layers.items():
        dtype, dims = stored[key]
        if dtype not in _MASK_DTYPES:
            raise ValueError(f"{masks_path}: mask {key} has dtype {dtype}; masks must be bool (or 0/1 integers)")
        if list(dims) != [int(n) for n in info["shape"]]:
            raise ValueError(f"{masks_path}: mask {key} has shape {tuple(dims)}, the layer is {tuple(info['shape'])}")

    def loader(key: str) -> MaskLoader:
        def load() -> np.ndarray:
            with safe_open(str(masks_path), framework="np") as fh:
                return fh.get_tensor(key)
        return load

    ops = [LayerOp(int(info["block"]), info["op"], int(info["shape"][0]), int(info["shape"][1]),
                   tokens, loader(key), name=key) for key, info in layers.items()]
    return shape, ops


def iter_blocks(ops: list[LayerOp]) -> Iterator[int]:
    return iter(sorted({op.block for op in ops}))
