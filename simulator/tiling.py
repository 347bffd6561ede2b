"""The steps the accelerator executes for one matmul: its mapping's tiles, as arrays for SimPy.

``dataflow.best_mapping`` picks the tile sizes and loop order with the fewest DRAM
bytes (closed form); this module lays the mapping's tiles out in loop order, each
with the bytes it loads (a weight tile, an activation tile, or nothing when that
operand stays resident), the outputs it writes (after the last reduction tile) and
its compute time.  The engines work decoupled over the whole op (``engines.py``),
so an op's compute time is fixed by the mask and the PE array alone, never by the
tiling; each tile gets the share of it that its MACs are of the op's.

Consecutive tiles are merged, the same number into every step, into at most
``max_steps`` SimPy steps (their bytes and cycles add up), which bounds the event
count; merging only coarsens pipeline fill/drain, by at most one step.

An op may repeat (``repeat``: one matmul per KV head in attention) and may be causal
(prefill attention): a causal op skips the tiles above the diagonal, approximated
by scaling its MACs and its weight-side operand reads by ``(M + 1) / (2M)``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from simulator.config import HardwareConfig
from simulator.dataflow import Mapping, best_mapping
from simulator.engines import dense_cycles, sparse_cycles, split_pes, systolic_cycles
from simulator.memory import row_bytes

__all__ = ["Plan", "plan_op", "plan_steps", "merge_steps", "plan_key", "MAX_TILE_STEPS", "PLAN_FREE_FIELDS"]

# Tiles one op may unroll before they are merged: ~2**26 already take gigabytes and seconds per
# plan; beyond that a workload is refused rather than exhaust memory.
MAX_TILE_STEPS = 1 << 26

# Hardware fields that neither plan_op nor vector.plan_vector reads (tests/simulator/test_plan_cache.py
# records every field they read): the time the pipeline takes and the energy and area figures, not the plan.
PLAN_FREE_FIELDS = ("name", "freq_mhz", "dram_gbps", "dram_efficiency", "op_overhead_us", "mac_pj",
                    "sram_pj_per_byte", "dram_pj_per_byte", "static_mw", "sram_device", "logic_area_factor",
                    "area_mm2", "column_split", "dense_column_threshold")


def plan_key(hw: HardwareConfig) -> tuple:
    """The hardware as a plan sees it: every field but ``PLAN_FREE_FIELDS``."""
    return tuple(getattr(hw, f.name) for f in dataclasses.fields(hw) if f.name not in PLAN_FREE_FIELDS)


@dataclass(frozen=True)
class Plan:
    """What one op costs, step by step (arrays) and in total (scalars)."""

    load_bytes: np.ndarray  # (steps,) DRAM -> SRAM: weights, indices, activations
    write_bytes: np.ndarray  # (steps,) SRAM -> DRAM: outputs
    dense_cycles: np.ndarray  # (steps,)
    sparse_cycles: np.ndarray  # (steps,)
    step_cycles: np.ndarray  # (steps,) compute time of a step (the slower engine's share)
    dense_pes: int
    sparse_pes: int
    dense_cols: int
    macs: int  # MACs performed (zeros in dense columns included)
    sparse_macs: int  # of which on the sparse engine (nonzeros only)
    sparse_total: float  # the sparse engine's cycles over the op (its most-loaded lane)
    tiling: str = ""  # the chosen mapping, e.g. "n>m>k m13 n6 k4096"
    dataflow: str = ""  # its loop order
    # DRAM bytes through each buffer (they add up to dram_bytes): for the energy model.
    weight_bytes: float = 0.0
    index_bytes: float = 0.0
    act_bytes: float = 0.0
    out_bytes: float = 0.0
    # The op's weights as stored (values with their scales, and indices), once: what the engines read
    # from the weight and index buffers per pass (simulator/sram_traffic.py).
    stored_weight_bytes: float = 0.0
    stored_index_bytes: float = 0.0

    @property
    def dram_bytes(self) -> float:
        return float(self.load_bytes.sum() + self.write_bytes.sum())

    @property
    def compute_cycles(self) -> float:
        """Closed form with free memory: the slower engine over the whole op."""
        return float(self.step_cycles.sum())

    def estimate_cycles(self, bytes_per_cycle: float | None, double_buffer: bool) -> float:
        """Cheap latency estimate used to pick the column split (SimPy gives the real one)."""
        if bytes_per_cycle is None:
            return float(self.compute_cycles)
        memory = self.dram_bytes / bytes_per_cycle
        return max(self.compute_cycles, memory) if double_buffer else self.compute_cycles + memory


def _extents(total: int, tile: int) -> np.ndarray:
    n = -(-total // tile)
    out = np.full(n, tile, dtype=np.int64)
    out[-1] = total - tile * (n - 1)
    return out


def plan_steps(mp: Mapping, m: int, n: int, k: int, row_bytes_all: np.ndarray, row_work: np.ndarray,
               act_bytes: float, out_bytes: float) -> dict[str, np.ndarray]:
    """The tiles of ``mp`` in loop order: load and write bytes and a work weight per tile.

    ``row_bytes_all`` (n,) or (1,): each weight row's stored bytes over all of K; ``row_work``
    (n,) or (1,): each row's compute per token (cycles, summed over both engines' shares).
    """
    em, en, ek = _extents(m, mp.tm), _extents(n, mp.tn), _extents(k, mp.tk)
    starts = np.arange(0, n, mp.tn)
    if row_bytes_all.size == 1:
        w_tile, work_tile = en * float(row_bytes_all[0]), en * float(row_work[0])
    else:
        w_tile = np.add.reduceat(row_bytes_all.astype(np.float64), starts)
        work_tile = np.add.reduceat(row_work.astype(np.float64), starts)
    kf = ek / k  # share of K in each reduction tile
    # Broadcast to (outer, middle, k) in loop order.
    if mp.order == "n>m>k":
        w = (w_tile[:, None, None] * kf[None, None, :])
        w = w * ((np.arange(em.size)[None, :, None] == 0) | (mp.weight_reads > 1))
        a = em[None, :, None] * ek[None, None, :] * act_bytes
        a = a * ((np.arange(en.size)[:, None, None] == 0) | (mp.act_reads > 1))
        o = (en[:, None, None] * em[None, :, None]) * out_bytes * (np.arange(ek.size) == ek.size - 1)
        work = work_tile[:, None, None] * em[None, :, None] * kf[None, None, :]
    else:
        a = em[:, None, None] * ek[None, None, :] * act_bytes
        a = a * ((np.arange(en.size)[None, :, None] == 0) | (mp.act_reads > 1))
        w = w_tile[None, :, None] * kf[None, None, :]
        w = w * ((np.arange(em.size)[:, None, None] == 0) | (mp.weight_reads > 1))
        o = (em[:, None, None] * en[None, :, None]) * out_bytes * (np.arange(ek.size) == ek.size - 1)
        work = em[:, None, None] * work_tile[None, :, None] * kf[None, None, :]
    shape = np.broadcast_shapes(w.shape, a.shape, o.shape, work.shape)
    return {"w": np.broadcast_to(w, shape).ravel(), "a": np.broadcast_to(a, shape).ravel(),
            "write": np.broadcast_to(o, shape).ravel(), "work": np.broadcast_to(work, shape).ravel()}


def merge_steps(arrays: dict[str, np.ndarray], max_steps: int) -> dict[str, np.ndarray]:
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


def plan_op(out_f: int, in_f: int, tokens: int, hw: HardwareConfig, dense_cols: int,
            row_nnz_sparse: np.ndarray | None, max_steps: int = 256, *, weight_bits: int | None = None,
            repeat: int = 1, causal: bool = False, nm: tuple[int, int] | None = None,
            group_size: int | None = None) -> Plan:
    """Map one matmul (``repeat`` times).  ``row_nnz_sparse`` None means dense (every PE dense).

    ``weight_bits`` overrides the weight-side operand's precision (the KV cache in attention).
    ``nm``: the mask is N:M; a systolic dense engine then runs it compressed (its reduction
    shrinks by M/N, sparse-tensor-core style) and the positions take ceil(log2 M) bits.
    ``group_size``: quantized weights, one fp16 scale and a ``weight_bits`` zero point per group
    of inputs of every row; dequantisation is fused into the accumulation (each group's partial
    sum is scaled once: one extra MAC per token, row and group, on the whole array).
    """
    dense = row_nnz_sparse is None
    systolic = hw.dense_engine != "lanes"
    nm_dense = bool(nm) and systolic and not dense
    wb = hw.weight_bits if weight_bits is None else weight_bits
    values, index = row_bytes(hw, in_f, dense_cols, row_nnz_sparse, weight_bits=wb, nm=nm, nm_dense=nm_dense)
    groups = -(-in_f // group_size) if group_size else 0
    values = values + groups * (16 + wb) / 8  # scales (fp16) and zero points per row
    nnz_s = np.zeros(1, dtype=np.int64) if dense else np.asarray(row_nnz_sparse, dtype=np.int64)
    sparse_nnz = int(nnz_s.sum())
    if hw.sparse_compute == "dense" and not dense:
        # load as sparse, compute as dense: every sparse column's MACs, zeros included (N/M of them for N:M)
        cols = in_f - dense_cols
        nnz_s = np.full(out_f, -(-cols * nm[0] // nm[1]) if nm else cols, dtype=np.int64)
        sparse_nnz = int(nnz_s.sum())
    k_dense = -(-dense_cols * nm[0] // nm[1]) if nm_dense else dense_cols  # reduction the dense engine runs
    if dense:
        p_dense, p_sparse = hw.num_pes, 0
    else:
        p_dense, p_sparse = split_pes(hw.num_pes, out_f * k_dense, hw.sparse_cycles_per_nnz * sparse_nnz,
                                      hw.split_policy, hw.dense_pe_fraction,
                                      hw.pe_cols if hw.split_granularity == "column" or systolic else 0)
    frac = (tokens + 1) / (2 * tokens) if causal else 1.0
    if systolic:
        d_total = frac * systolic_cycles(tokens, k_dense, out_f if p_dense else 0, hw.pe_rows,
                                         max(1, p_dense // hw.pe_rows), hw.dense_engine.removeprefix("systolic-"))
    else:
        d_total = frac * dense_cycles(tokens, out_f, dense_cols, p_dense)
    s_total = frac * sparse_cycles(tokens, nnz_s, p_sparse, hw.lanes, hw.row_schedule, hw.sparse_cycles_per_nnz)
    ab, ob = hw.act_bits / 8, hw.act_bits / 8
    rows = out_f if values.size == 1 else 1  # a (1,) row_bytes stands for every row
    total_bytes = float(values.sum() + index.sum()) * rows
    mp = best_mapping(tokens, out_f, in_f, hw, float(values.max()), float(index.max()), total_bytes, ab, ob)
    if mp.tiles * repeat > MAX_TILE_STEPS:
        raise ValueError(
            f"{tokens} tokens through a {out_f}x{in_f} matmul need {mp.tiles * repeat} tiles ({mp.label}), more "
            f"than the simulator's limit of {MAX_TILE_STEPS}; lower the tokens or raise the SRAM sizes")
    # Per-row work per token: the dense columns on P_d PEs, the row's nonzeros on P_s PEs.
    row_work = k_dense / p_dense if p_dense else 0.0
    row_work = row_work + (hw.sparse_cycles_per_nnz * nnz_s / p_sparse if p_sparse else 0.0)
    row_work = np.broadcast_to(np.atleast_1d(row_work), values.shape)
    steps = plan_steps(mp, tokens, out_f, in_f, values + index, row_work, ab, ob)
    share = steps["work"] / steps["work"].sum() if steps["work"].sum() > 0 else np.full(steps["work"].size,
                                                                                     1 / steps["work"].size)
    dequant = tokens * out_f * groups / hw.num_pes  # fused dequantisation: one MAC per (token, row, group)
    arrays = {"load": steps["w"] * frac + steps["a"], "write": steps["write"],
              "dense": d_total * share, "sparse": s_total * share,
              "step": (max(d_total, s_total) + dequant) * share}
    if repeat > 1:
        arrays = {key: np.tile(v, repeat) for key, v in arrays.items()}
    arrays = merge_steps(arrays, max_steps)
    macs = repeat * round(frac * tokens * (out_f * k_dense + sparse_nnz))
    w_read = repeat * float(steps["w"].sum()) * frac
    idx_share = float(index.sum()) / max(float(values.sum() + index.sum()), 1e-12)
    return Plan(arrays["load"], arrays["write"], arrays["dense"], arrays["sparse"], arrays["step"],
                p_dense, p_sparse, dense_cols, macs, repeat * round(frac * tokens * sparse_nnz),
                repeat * s_total, mp.label, mp.order, w_read * (1 - idx_share), w_read * idx_share,
                repeat * float(steps["a"].sum()), repeat * float(steps["write"].sum()),
                repeat * float(values.sum()) * rows, repeat * float(index.sum()) * rows)
