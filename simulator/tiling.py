"""Tiling and dataflow of one Linear op: the list of steps the accelerator executes.

Weights are tiled by output rows: a tile holds as many rows as fit the weight and
index buffers (half of each when double buffering).  A row too wide for a buffer
is cut into column chunks (each chunk assumed to hold an equal share of the
row's nonzeros, rounded up).  Activations (tokens x in_features) stay resident
when they fit the activation buffer; otherwise the cheaper (in DRAM bytes) of two
loop orders is used:

* ``weight-stationary``: each weight tile is loaded once and all activations are
  re-streamed for it;
* ``token-chunked``: as many tokens as fit the buffer are loaded, and all weights
  are streamed once per chunk of tokens.

Outputs (tokens x out_features, at activation precision) are written back once.
Consecutive tiles are merged, the same number into every step, into at most
``max_steps`` SimPy steps (their bytes and cycles add up), which bounds the event
count; merging only coarsens pipeline fill/drain, by at most one step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from simulator.config import HardwareConfig
from simulator.engines import dense_step_cycles, sparse_lanes, sparse_step_cycles, split_pes
from simulator.memory import row_bytes

__all__ = ["Plan", "plan_op", "MAX_TILE_STEPS"]

# Tile steps one op may unroll before they are merged (tiles x passes): ~2**26 steps already
# take gigabytes and seconds per plan; beyond that a workload is refused rather than exhaust memory.
MAX_TILE_STEPS = 1 << 26


@dataclass(frozen=True)
class Plan:
    """What one op costs, step by step (arrays) and in total (scalars)."""

    load_bytes: np.ndarray  # (steps,) DRAM -> SRAM: weights, indices, activations
    write_bytes: np.ndarray  # (steps,) SRAM -> DRAM: outputs
    dense_cycles: np.ndarray  # (steps,)
    sparse_cycles: np.ndarray  # (steps,)
    step_cycles: np.ndarray  # (steps,) compute time of a step: engines synchronise per tile
    dense_pes: int
    sparse_pes: int
    dense_cols: int
    rows_per_tile: int
    col_chunks: int
    passes: int
    dataflow: str
    macs: int  # MACs performed (zeros in dense columns included)
    sparse_macs: int  # of which on the sparse engine (nonzeros only)

    @property
    def dram_bytes(self) -> float:
        return float(self.load_bytes.sum() + self.write_bytes.sum())

    @property
    def compute_cycles(self) -> float:
        """Closed form with free memory: the sum over tiles of the slower engine."""
        return float(self.step_cycles.sum())

    def estimate_cycles(self, bytes_per_cycle: float | None, double_buffer: bool) -> float:
        """Cheap latency estimate used to pick the column split (SimPy gives the real one)."""
        if bytes_per_cycle is None:
            return float(self.compute_cycles)
        memory = self.dram_bytes / bytes_per_cycle
        return max(self.compute_cycles, memory) if double_buffer else self.compute_cycles + memory


def _rows_per_tile(hw: HardwareConfig, values: np.ndarray, index: np.ndarray, out_f: int) -> tuple[int, int]:
    """(rows per tile, column chunks per row) so a tile fits the weight and index buffers."""
    w_cap, i_cap = hw.buffer_bytes("weight"), hw.buffer_bytes("index")
    v_max, i_max = float(values.max()), float(index.max())
    need = max(v_max / w_cap, i_max / i_cap if i_max > 0 else 0.0)
    if need > 1.0:
        return 1, math.ceil(need)
    rows = int(w_cap // v_max) if v_max > 0 else out_f
    if i_max > 0:
        rows = min(rows, int(i_cap // i_max))
    return max(1, min(rows, out_f)), 1


def _tile_sums(per_row: np.ndarray, rows: int, out_f: int) -> np.ndarray:
    if per_row.size == 1:  # same bytes in every row (dense)
        counts = np.full(-(-out_f // rows), rows, dtype=np.float64)
        counts[-1] = out_f - rows * (counts.size - 1)
        return counts * float(per_row[0])
    return np.add.reduceat(per_row.astype(np.float64), np.arange(0, out_f, rows))


def _dataflow(hw: HardwareConfig, in_f: int, tokens: int, weight_bytes: float,
              n_row_tiles: int) -> tuple[str, int]:
    """Loop order and tokens per pass; raises when one token's input does not fit."""
    act_vec = in_f * hw.act_bits / 8
    act_cap = hw.buffer_bytes("act")
    if tokens * act_vec <= act_cap:
        return "resident", tokens
    per_chunk = int(act_cap // act_vec)
    if per_chunk < 1:
        raise ValueError(
            f"activation buffer ({hw.act_sram_kib} KiB) cannot hold one token's {in_f}-wide input "
            f"({act_vec / 1024:.1f} KiB); raise act_sram_kib")
    passes = -(-tokens // per_chunk)
    weight_stationary = weight_bytes + n_row_tiles * tokens * act_vec
    token_chunked = passes * weight_bytes + tokens * act_vec
    if weight_stationary <= token_chunked:
        return "weight-stationary", tokens
    return "token-chunked", per_chunk


def plan_op(out_f: int, in_f: int, tokens: int, hw: HardwareConfig, dense_cols: int,
            row_nnz_sparse: np.ndarray | None, max_steps: int = 256) -> Plan:
    """Tile one op.  ``row_nnz_sparse`` None means the dense baseline (every PE dense)."""
    dense = row_nnz_sparse is None
    values, index = row_bytes(hw, in_f, dense_cols, row_nnz_sparse)
    rows, chunks = _rows_per_tile(hw, values, index, out_f)
    tile_bytes = (_tile_sums(values, rows, out_f) + _tile_sums(index, rows, out_f)) / chunks
    n_rt = tile_bytes.size
    rows_t = np.full(n_rt, rows, dtype=np.int64)
    rows_t[-1] = out_f - rows * (n_rt - 1)
    nnz_s = np.zeros(out_f, dtype=np.int64) if dense else row_nnz_sparse
    if dense:
        p_dense, p_sparse = hw.num_pes, 0
    else:
        p_dense, p_sparse = split_pes(hw.num_pes, out_f * dense_cols,
                                      hw.sparse_cycles_per_nnz * float(nnz_s.sum()),
                                      hw.split_policy, hw.dense_pe_fraction)
    lane_load, pes_per_lane = sparse_lanes(nnz_s, rows, p_sparse)
    # One entry per (row tile, column chunk), row-tile major.
    base = {
        "bytes": np.repeat(tile_bytes, chunks),
        "rows": np.repeat(rows_t, chunks),
        "lane": np.repeat(-(-lane_load // chunks), chunks),
        "ppl": np.repeat(pes_per_lane, chunks),
        "last": np.tile(np.arange(chunks) == chunks - 1, n_rt),
    }
    dataflow, per_pass = _dataflow(hw, in_f, tokens, float(tile_bytes.sum() * chunks), n_rt)
    full, rest = divmod(tokens, per_pass)
    # Only the token-chunked loop order has several passes, and all its full passes are identical.
    passes = [(per_pass, full)] + ([(rest, 1)] if rest else [])
    n_steps = base["bytes"].size * (full + bool(rest))
    if n_steps > MAX_TILE_STEPS:
        raise ValueError(
            f"{tokens} tokens through a {out_f}x{in_f} Linear need {n_steps} tile steps ({dataflow}), more than "
            f"the simulator's limit of {MAX_TILE_STEPS}; lower the tokens or raise act_sram_kib/weight_sram_kib")
    steps = [_pass_steps(base, t, dataflow, in_f, -(-dense_cols // chunks), chunks, p_dense, hw)
             for t, _ in passes]
    arrays = {k: np.concatenate([np.tile(st[k], n) for st, (_, n) in zip(steps, passes)]) for k in steps[0]}
    arrays = _merge(arrays, max_steps)
    sparse_macs = tokens * int(nnz_s.sum())
    macs = tokens * out_f * dense_cols + sparse_macs
    return Plan(arrays["load"], arrays["write"], arrays["dense"], arrays["sparse"], arrays["step"],
                p_dense, p_sparse,
                dense_cols, rows, chunks, full + bool(rest), dataflow, macs, sparse_macs)


def _pass_steps(base: dict, tokens: int, dataflow: str, in_f: int, cols: int,
                chunks: int, p_dense: int, hw: HardwareConfig) -> dict[str, np.ndarray]:
    """One pass of `tokens` tokens over every tile; each pass loads its activations."""
    ab = hw.act_bits / 8
    load = base["bytes"].copy()
    if dataflow == "weight-stationary":
        load += tokens * in_f * ab / chunks  # activations re-streamed for every tile
    else:  # resident (one pass) or token-chunked: loaded with the pass's first tile
        load[0] += tokens * in_f * ab
    dense = dense_step_cycles(tokens, base["rows"], cols, p_dense)
    sparse = sparse_step_cycles(tokens, base["lane"], base["ppl"], hw.sparse_cycles_per_nnz)
    return {"load": load, "write": base["rows"] * tokens * ab * base["last"],
            "dense": dense, "sparse": sparse, "step": np.maximum(dense, sparse)}


def _merge(arrays: dict[str, np.ndarray], max_steps: int) -> dict[str, np.ndarray]:
    """Merge every ``g`` consecutive tiles into one step, ``g`` the same for all steps.

    Equal groups act like a ``g``-times larger tile buffer; unequal groups would
    alternate long and short steps and create pipeline bubbles that do not exist.
    """
    n = next(iter(arrays.values())).size
    if n <= max_steps:
        return arrays
    group = -(-n // max_steps)
    starts = np.arange(0, n, group)
    return {k: np.add.reduceat(v, starts) for k, v in arrays.items()}
