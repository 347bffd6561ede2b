"""Synthetic masks for model shapes that cannot be pruned here (LLaMA-7B/13B/70B).

An allocation profile gives each op a target sparsity: uniform, per layer (a JSON
file), and optionally per row, drawn around the layer's sparsity from a
distribution (to mimic BESA's row-wise allocation).  Masks are Bernoulli draws
with a 1/65536 resolution, generated from raw PCG64 output (fast enough to stream
all of LLaMA-7B).  Each op gets its own seed, so a mask does not depend on which
other ops are simulated.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from simulator.config import read_document
from simulator.sampled import sampled_stats
from simulator.workload import OP_NAMES, MaskLoader, ModelShape, model_ops, module_path, LayerOp

__all__ = ["AllocationProfile", "load_profile", "synthetic_ops", "bernoulli_mask"]

ROW_DISTRIBUTIONS = ("none", "uniform", "normal")


@dataclass(frozen=True)
class AllocationProfile:
    """Target sparsity per op: ``per_layer`` (module path or op type) overrides ``sparsity``.

    ``row_spread`` > 0 draws each row's sparsity around the layer's: uniform on
    [s - spread, s + spread] or normal with std ``spread``, clipped to [0, 0.99]
    and recentred so the layer keeps its target.
    """

    sparsity: float = 0.5
    per_layer: dict[str, float] = field(default_factory=dict)
    row_distribution: str = "none"
    row_spread: float = 0.0
    seed: int = 0
    # False: the simulator draws the masks' statistics from their distributions (sampled.py);
    # True: it materialises every mask bit by bit and counts (exact, much slower for big models).
    exact_masks: bool = False
    nm: tuple[int, int] | None = None  # N:M masks (N kept in every group of M); sparsity is then 1 - N/M
    wbits: int | None = None  # quantized weights of the pruned Linears (None: the hardware's weight_bits)
    group_size: int | None = None  # inputs per quantization group (-1: one group per row)

    def __post_init__(self) -> None:
        if not _is_number(self.sparsity) or not 0.0 <= self.sparsity < 1.0:
            raise ValueError(f"--sparsity must be in [0, 1), got {self.sparsity!r}")
        for key, s in self.per_layer.items():
            if not _is_number(s) or not 0.0 <= s < 1.0:
                raise ValueError(f"profile: sparsity of {key} must be in [0, 1), got {s!r}")
        if self.row_distribution not in ROW_DISTRIBUTIONS:
            raise ValueError(f"profile: row distribution must be one of {', '.join(ROW_DISTRIBUTIONS)}")
        if not _is_number(self.row_spread) or not 0.0 <= self.row_spread < 0.5:
            raise ValueError(f"profile: row spread must be in [0, 0.5), got {self.row_spread}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or not 0 <= self.seed < 2**63:
            raise ValueError(f"profile: seed must be an integer in [0, 2**63), got {self.seed!r}")

    def layer_sparsity(self, block: int, op: str) -> float:
        path = module_path(block, op)
        return float(self.per_layer.get(path, self.per_layer.get(op, self.sparsity)))


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def load_profile(path: str | Path) -> dict[str, float]:
    """Per-layer sparsities from JSON: ``{module_path_or_op: s}`` or a run's manifest.json.

    An empty object ``{}`` lists no layer, so every layer gets the default sparsity (``--sparsity``):
    the uniform baseline of a comparison.
    """
    data = read_document(path, "profile")
    if isinstance(data, dict) and isinstance(data.get("layers"), dict):  # a manifest.json
        data = {k: v.get("achieved_sparsity", v.get("target_sparsity")) if isinstance(v, dict) else v
                for k, v in data["layers"].items()}
    if not isinstance(data, dict):
        raise ValueError(f"profile {path}: expected a JSON object mapping layer names to sparsities "
                         f"(e.g. {{\"q_proj\": 0.3}}), got a {type(data).__name__}")
    bad = [k for k in data if k not in OP_NAMES and not k.startswith("model.layers.")]
    if bad:
        raise ValueError(f"profile {path}: {bad[0]!r} is neither an op type ({', '.join(OP_NAMES)}) "
                         "nor a module path like model.layers.0.mlp.down_proj")
    for key, value in data.items():
        if not _is_number(value) or not 0.0 <= value < 1.0:
            raise ValueError(f"profile {path}: sparsity of {key} must be a number in [0, 1), got {value!r}")
    return {k: float(v) for k, v in data.items()}


def _row_sparsity(rng: np.random.Generator, rows: int, s: float, profile: AllocationProfile) -> np.ndarray:
    if profile.row_distribution == "none" or profile.row_spread == 0.0:
        return np.full(rows, s)
    if profile.row_distribution == "uniform":
        r = rng.uniform(s - profile.row_spread, s + profile.row_spread, rows)
    else:
        r = rng.normal(s, profile.row_spread, rows)
    r = np.clip(r - (r.mean() - s), 0.0, 0.99)
    return r


def bernoulli_mask(shape: tuple[int, int], row_sparsity: np.ndarray | float,
                   rng: np.random.Generator) -> np.ndarray:
    """Keep-mask with P(keep) = 1 - sparsity (per row when an array is given)."""
    out_f, in_f = shape
    n = out_f * in_f
    words = rng.bit_generator.random_raw(-(-n // 4))  # 4 uint16 draws per uint64
    u = words.view(np.uint16)[:n].reshape(out_f, in_f)
    thresh = np.round(np.asarray(row_sparsity, dtype=np.float64) * 65536).astype(np.uint32)
    if thresh.ndim == 0:
        return u >= thresh
    return u >= thresh[:, None].astype(np.uint16) if thresh.max() < 65536 else u >= thresh[:, None]


def _rng(block: int, op: str, profile: AllocationProfile) -> np.random.Generator:
    key = zlib.crc32(module_path(block, op).encode())
    return np.random.Generator(np.random.PCG64([profile.seed, key]))


def nm_mask(shape: tuple[int, int], nm: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Keep-mask with N random positions kept in every group of M along the input dimension."""
    out_f, in_f = shape
    n, m = nm
    if in_f % m:
        raise ValueError(f"N:M {n}:{m} does not divide the input width {in_f}")
    order = rng.random((out_f, in_f // m, m)).argsort(axis=2)
    return (order < n).reshape(out_f, in_f)


def _loader(shape: tuple[int, int], block: int, op: str, profile: AllocationProfile) -> MaskLoader:
    def load() -> np.ndarray:
        rng = _rng(block, op, profile)
        if profile.nm:
            return nm_mask(shape, profile.nm, rng)
        rows = _row_sparsity(rng, shape[0], profile.layer_sparsity(block, op), profile)
        return bernoulli_mask(shape, rows if profile.row_spread else float(rows[0]), rng)
    return load


def _stats_loader(shape: tuple[int, int], block: int, op: str, profile: AllocationProfile):
    """Statistics drawn from the mask's distribution (``sampled.py``), seeded like the mask."""
    def load(hw):
        rng = _rng(block, op, profile)
        rows = _row_sparsity(rng, shape[0], profile.layer_sparsity(block, op), profile)
        keep = 1.0 - np.round(rows * 65536) / 65536  # the masks' 1/65536 resolution
        return sampled_stats(keep, shape[1], rng, hw, profile.nm)
    return load


def synthetic_ops(shape: ModelShape, tokens: int, profile: AllocationProfile, blocks: range | None = None,
                  context: int | None = None, linear_only: bool = False) -> list[LayerOp]:
    """Ops of `shape` with lazily generated masks following `profile` (``context``/``linear_only``
    as in `model_ops`)."""
    ops = model_ops(shape, tokens, lambda b, op, s: _loader(s, b, op, profile), blocks, context, linear_only)
    if profile.nm:
        bad = [op for op in ops if op.load_mask is not None and op.in_features % profile.nm[1]]
        if bad:
            raise ValueError(f"N:M {profile.nm[0]}:{profile.nm[1]} does not divide the input width "
                             f"{bad[0].in_features} of {bad[0].op}")
        ops = [replace(op, nm=profile.nm) if op.load_mask is not None else op for op in ops]
    if profile.wbits:
        ops = [replace(op, weight_bits=profile.wbits, group_size=op.in_features if (profile.group_size or -1) < 0
                       else profile.group_size) if op.load_mask is not None else op for op in ops]
    if profile.exact_masks:
        return ops
    return [replace(op, load_stats=_stats_loader((op.out_features, op.in_features), op.block, op.op, profile))
            if op.load_mask is not None else op for op in ops]
