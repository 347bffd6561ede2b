"""Workloads: the ops of a LLaMA-family decoder step as a list of `LayerOp`s.

Every op has a ``kind``:

* ``linear``: the seven prunable projections of a block (q, k, v, o, gate, up, down);
* ``attention``: the activation x activation matmuls, ``attn_scores`` (Q K^T) and
  ``attn_values`` (softmax(.) V), one matmul per KV head (GQA: the query heads that share
  a KV head batch together as extra rows), the KV cache being the operand read from
  DRAM at ``kv_bits``.  Decode reads a cache of ``context`` tokens per sequence (the new
  K/V row is the output of k_proj/v_proj, already written); prefill is causal over the
  prompt;
* ``vector``: RMSNorm (two per block and a final one), RoPE on q and k, softmax, SiLU x up
  and the two residual adds, on the vector unit;
* ``lm_head`` (dense unless the run pruned it; in prefill only the last position's logits,
  as a generating server computes them) and ``embedding`` (a gather of the tokens' rows).

No op is fused with another: each reads its inputs from DRAM and writes its outputs back
(a fused attention kernel would keep the scores on chip; not modelled).  Masks are loaded
lazily, one op at a time, so whole 7B/70B models stream through the simulator with one
layer's mask in memory.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from simulator.config import read_document

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
KINDS = ("linear", "attention", "vector", "lm_head", "embedding")
# Element operations of each vector op (exp counted as one, as a LUT-based unit does it):
# RMSNorm: square, accumulate, scale by 1/rms, multiply by the gain; RoPE: x cos + rot(x) sin;
# softmax: max, subtract, exp, sum, divide; SiLU x up: exp, add 1, divide, multiply; add: 1.
VECTOR_OPS = {"rmsnorm": 4.0, "rope": 3.0, "softmax": 5.0, "silu_mul": 4.0, "residual": 1.0}
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
    vocab_size: int = 0  # 0: unknown (no lm_head or embedding ops)

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
                   head_dim=int(d.get("head_dim") or 0), vocab_size=int(d.get("vocab_size") or 0))


# Published configurations (HF config.json of each model).
SHAPES: dict[str, ModelShape] = {s.name: s for s in (
    ModelShape("smollm2-135m", 576, 1536, 30, 9, 3, 64, 49152),
    ModelShape("llama-7b", 4096, 11008, 32, 32, 32, 128, 32000),
    ModelShape("llama2-7b", 4096, 11008, 32, 32, 32, 128, 32000),
    ModelShape("llama-13b", 5120, 13824, 40, 40, 40, 128, 32000),
    ModelShape("llama-30b", 6656, 17920, 60, 52, 52, 128, 32000),
    ModelShape("llama2-70b", 8192, 28672, 80, 64, 8, 128, 32000),
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
    """One op of the decoder step (see the module docstring for the kinds).

    Matmul kinds apply an (out_features x in_features) operand to `tokens` rows, `repeat`
    times; `load_mask` returns a Linear's bool keep-mask (None: dense).  A vector op or the
    embedding touches `tokens x out_features` elements per repeat, `inputs` tensors of them
    in and one out, at `ops_per_element`.  `weight_bits` overrides the precision of the
    weight-side operand (the KV cache; the embedding table).
    """

    block: int
    op: str
    out_features: int
    in_features: int
    tokens: int
    load_mask: MaskLoader | None = field(default=None, compare=False, repr=False)
    name: str = ""
    kind: str = "linear"
    repeat: int = 1
    causal: bool = False
    weight_bits: int | None = None
    ops_per_element: float = 0.0
    inputs: int = 1
    # Synthetic masks: ``load_stats(hw)`` draws the mask's statistics without the mask (sampled.py).
    load_stats: Callable | None = field(default=None, compare=False, repr=False)
    nm: tuple[int, int] | None = None  # the mask is N:M (N kept in every group of M along the input)
    # Quantized weights (with weight_bits): one fp16 scale and a weight_bits zero point per group
    # of group_size inputs of every row.
    group_size: int | None = None

    def __post_init__(self) -> None:
        if self.out_features <= 0 or self.in_features <= 0:
            raise ValueError(f"{self.name or self.op}: sizes must be positive, "
                             f"got {self.out_features}x{self.in_features}")
        check_tokens(self.tokens)
        if self.repeat <= 0:
            raise ValueError(f"{self.op}: repeat must be a positive integer, got {self.repeat}")
        if self.kind not in KINDS:
            raise ValueError(f"{self.op}: kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if not self.name:
            object.__setattr__(self, "name", module_path(self.block, self.op) if self.kind == "linear"
                               else f"model.layers.{self.block}.{self.op}" if self.block >= 0 else f"model.{self.op}")

    @property
    def is_matmul(self) -> bool:
        return self.kind in ("linear", "attention", "lm_head")

    @property
    def weights(self) -> int:
        """Prunable weights of the op (0 for attention and vector ops)."""
        return self.out_features * self.in_features if self.kind in ("linear", "lm_head") else 0

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


MaskFor = Callable[[int, str, tuple[int, int]], MaskLoader | None]


def model_ops(shape: ModelShape, tokens: int, mask_for: MaskFor | None = None,
              blocks: range | None = None, context: int | None = None, linear_only: bool = False) -> list[LayerOp]:
    """The ops of one decoder step; `mask_for(block, op, shape)` gives the Linears' mask loaders.

    ``context`` None: prefill of a ``tokens``-long prompt (causal attention); else decode of
    ``tokens`` sequences (batch) each attending to ``context`` cached tokens.  ``linear_only``
    keeps just the seven projections of every block.
    """
    blocks = blocks if blocks is not None else range(shape.num_hidden_layers)
    ops = []
    if not linear_only and shape.vocab_size and blocks and blocks[0] == 0:
        ops.append(_vector("embedding", -1, shape.hidden_size, tokens, 0.0, kind="embedding"))
    for b in blocks:
        linear = {op: LayerOp(b, op, o, i, tokens, mask_for(b, op, (o, i)) if mask_for else None)
                  for op, (o, i) in shape.op_shapes().items()}
        ops += list(linear.values()) if linear_only else _block_ops(shape, b, tokens, context, linear)
    if not linear_only and shape.vocab_size and blocks and blocks[-1] == shape.num_hidden_layers - 1:
        last = tokens if context is not None else 1  # prefill: only the last position's logits
        ops.append(_vector("final_norm", shape.num_hidden_layers, shape.hidden_size, tokens, VECTOR_OPS["rmsnorm"]))
        ops.append(LayerOp(shape.num_hidden_layers, "lm_head", shape.vocab_size, shape.hidden_size, last,
                           name="lm_head", kind="lm_head"))
    return ops


def _vector(op: str, block: int, width: int, rows: int, ops_per_element: float, inputs: int = 1,
            repeat: int = 1, kind: str = "vector") -> LayerOp:
    return LayerOp(block, op, width, width, rows, kind=kind, ops_per_element=ops_per_element, inputs=inputs,
                   repeat=repeat)


def _block_ops(shape: ModelShape, b: int, tokens: int, context: int | None, lin: dict[str, LayerOp]) -> list[LayerOp]:
    """A block in execution order, Linears from ``lin``."""
    h, hd, nkv = shape.hidden_size, shape.head_dim, shape.num_key_value_heads
    group = shape.num_attention_heads // nkv
    causal = context is None
    q_len, seqs, ctx = (tokens, 1, tokens) if causal else (1, tokens, context)
    rows = q_len * group  # query rows per KV head and sequence
    frac = (ctx + 1) / (2 * ctx) if causal else 1.0
    norm, add = VECTOR_OPS["rmsnorm"], VECTOR_OPS["residual"]
    return [
        _vector("input_norm", b, h, tokens, norm), lin["q_proj"], lin["k_proj"], lin["v_proj"],
        _vector("rope", b, (shape.num_attention_heads + nkv) * hd, tokens, VECTOR_OPS["rope"]),
        LayerOp(b, "attn_scores", ctx, hd, rows, kind="attention", repeat=nkv * seqs, causal=causal),
        _vector("softmax", b, ctx, max(1, round(rows * frac)), VECTOR_OPS["softmax"], repeat=nkv * seqs),
        LayerOp(b, "attn_values", hd, ctx, rows, kind="attention", repeat=nkv * seqs, causal=causal),
        lin["o_proj"], _vector("attn_residual", b, h, tokens, add, inputs=2),
        _vector("post_norm", b, h, tokens, norm), lin["gate_proj"], lin["up_proj"],
        _vector("silu_mul", b, shape.intermediate_size, tokens, VECTOR_OPS["silu_mul"], inputs=2),
        lin["down_proj"], _vector("mlp_residual", b, h, tokens, add, inputs=2),
    ]


def read_manifest(run_dir: str | Path) -> dict:
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise NotADirectoryError(f"{run_dir} is a file, not a run folder")
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run folder not found: {run_dir}")
    manifest = run_dir / "manifest.json"
    if not manifest.is_file():
        raise FileNotFoundError(f"{run_dir} is not a run folder: manifest.json is missing")
    meta = read_document(manifest, "run manifest", fmt="json")
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


def parse_nm_text(text, where: object = "--nm") -> tuple[int, int] | None:
    """``"2:4"`` -> (2, 4); None for None; ValueError naming ``where`` otherwise."""
    if text in (None, ""):
        return None
    n, sep, m = str(text).partition(":")
    try:
        n_, m_ = int(n), int(m)
    except ValueError:
        n_ = m_ = 0
    if not sep or not 0 < n_ < m_:
        raise ValueError(f"{where}: N:M pattern must look like 2:4 (0 < N < M), got {text!r}")
    return n_, m_


def check_complete(manifest: dict, run_dir: str | Path) -> None:
    """ValueError for a measurement run that pruned only its first blocks (``prune --blocks N``)."""
    done, total = manifest.get("blocks_pruned"), (manifest.get("model") or {}).get("num_hidden_layers")
    if isinstance(done, int) and isinstance(total, int) and done < total:
        raise ValueError(f"run {run_dir} pruned only the first {done} of {total} blocks (prune --blocks): "
                         "it is a measurement run, not a model to evaluate or simulate")


def run_ops(run_dir: str | Path, tokens: int, context: int | None = None, linear_only: bool = False,
            blocks: int | None = None) -> tuple[ModelShape, list[LayerOp]]:
    """Ops of a pruning run folder (masks.safetensors + manifest.json), masks read lazily.

    ``context``/``linear_only`` as in `model_ops`; ``blocks``: only the first N blocks.
    Linears the run did not prune are dense.
    """
    from safetensors import safe_open  # numpy backend: no torch needed

    run_dir = Path(run_dir)
    meta = read_manifest(run_dir)
    check_complete(meta, run_dir)
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

    keys = {(int(info["block"]), info["op"]): key for key, info in layers.items()}
    for (block, op), key in keys.items():
        if block >= shape.num_hidden_layers or op not in OP_NAMES:
            raise ValueError(f"{run_dir}/manifest.json: layer {key} is not a Linear of the model's blocks")

    def mask_for(block: int, op: str, _shape: tuple[int, int]) -> MaskLoader | None:
        key = keys.get((block, op))
        # a layer whose chosen format is dense (a hardware target's choice) stores and computes its zeros
        return None if key is None or layers[key].get("format") == "dense" else loader(key)

    n = min(blocks or shape.num_hidden_layers, shape.num_hidden_layers)
    ops = model_ops(shape, tokens, mask_for, range(n), context=context, linear_only=linear_only)
    nm = parse_nm_text((meta.get("hyperparameters") or {}).get("nm"), run_dir / "manifest.json")
    if nm:
        ops = [replace(op, nm=nm) if op.name in keys.values() else op for op in ops]
    # 2:4 chosen per layer (a hardware target's search): those masks run on the N:M path
    ops = [replace(op, nm=(2, 4)) if op.name in layers and layers[op.name].get("format") == "2:4" else op
           for op in ops]
    quant = {key: info["quant"] for key, info in layers.items() if isinstance(info.get("quant"), dict)}
    ops = [replace(op, weight_bits=int(quant[op.name]["bits"]), group_size=int(quant[op.name]["group_size"]))
           if op.name in quant else op for op in ops]
    # A Linear's shape is the one its mask was recorded with.
    sized = {key: tuple(int(d) for d in layers[key]["shape"]) for key in keys.values()}
    return shape, [replace(op, out_features=sized[op.name][0], in_features=sized[op.name][1])
                   if op.name in sized else op for op in ops]


def iter_blocks(ops: list[LayerOp]) -> Iterator[int]:
    return iter(sorted({op.block for op in ops}))
