"""The dense and the sparse compute engines: cycle arithmetic and SimPy behaviour.

Cycle counts are closed-form arithmetic over mask statistics (no per-MAC loops);
each PE performs one MAC per cycle.  Tile times are kept fractional (the engines
are pipelined across tiles, so a tile of 1.5 cycles of work does not cost 2);
totals are rounded up once per op.

Dense engine: ``P_d`` PEs share the tile's MACs evenly, zeros included:
``tokens * rows * dense_cols / P_d``.

Sparse engine, row-to-lane assignment: a tile of R rows is spread over
``L = min(R, P_s)`` lanes, row r of the tile going to lane ``r mod L``; each lane
gets ``P_s / L`` PEs that split its nonzero MACs (over tokens and nonzeros)
evenly.  The tile takes as long as its most-loaded lane:
``tokens * cycles_per_nnz * max_lane_nnz * L / P_s``.  Rows with uneven sparsity
therefore cost more than even rows with the same total, which is the load
imbalance that BESA's row-wise allocation can create.
"""

from __future__ import annotations

import numpy as np
import simpy

__all__ = ["split_pes", "dense_step_cycles", "sparse_lanes", "sparse_step_cycles", "Engine"]


def split_pes(total: int, dense_work: float, sparse_work: float, policy: str,
              dense_fraction: float) -> tuple[int, int]:
    """PEs of (dense, sparse) engine.

    "proportional" (ViTCoD) gives each engine PEs in proportion to its work, at
    least one PE to an engine that has work; "fixed" keeps ``dense_fraction``.
    """
    if policy == "fixed":
        p_dense = min(total - 1, max(1, round(total * dense_fraction)))
        return p_dense, total - p_dense
    if sparse_work <= 0:
        return total, 0
    if dense_work <= 0:
        return 0, total
    p_dense = round(total * dense_work / (dense_work + sparse_work))
    p_dense = min(total - 1, max(1, p_dense))
    return p_dense, total - p_dense


def dense_step_cycles(tokens: np.ndarray, rows: np.ndarray, cols: np.ndarray, pes: int) -> np.ndarray:
    """Cycles of the dense engine on each tile (zeros in the dense columns included)."""
    macs = np.asarray(rows, dtype=np.float64) * tokens * cols
    if pes == 0:
        if np.any(macs):
            raise ValueError("dense columns but no dense PEs")
        return np.zeros_like(macs)
    return macs / pes


def sparse_lanes(row_nnz: np.ndarray, rows_per_tile: int, pes: int) -> tuple[np.ndarray, np.ndarray]:
    """Max lane load (nonzeros) and PEs per lane of each tile of ``rows_per_tile`` rows.

    Returns two arrays of length n_tiles = ceil(len(row_nnz) / rows_per_tile).
    """
    n_rows = row_nnz.size
    n_tiles = -(-n_rows // rows_per_tile)
    padded = np.zeros(n_tiles * rows_per_tile, dtype=np.int64)
    padded[:n_rows] = row_nnz
    tiles = padded.reshape(n_tiles, rows_per_tile)  # (tiles, R)
    rows_in_tile = np.full(n_tiles, rows_per_tile, dtype=np.int64)
    rows_in_tile[-1] = n_rows - (n_tiles - 1) * rows_per_tile
    if pes == 0:
        return tiles.max(axis=1), np.zeros(n_tiles)
    lanes = min(rows_per_tile, pes)
    if rows_per_tile > pes:  # several rows per lane: round-robin, sum per lane
        width = -(-rows_per_tile // lanes) * lanes
        wide = np.zeros((n_tiles, width), dtype=np.int64)
        wide[:, :rows_per_tile] = tiles
        lane_load = wide.reshape(n_tiles, width // lanes, lanes).sum(axis=1).max(axis=1)
    else:
        lane_load = tiles.max(axis=1)
    pes_per_lane = pes / np.minimum(rows_in_tile, pes)
    return lane_load, pes_per_lane


def sparse_step_cycles(tokens: np.ndarray, lane_load: np.ndarray, pes_per_lane: np.ndarray,
                       cycles_per_nnz: float) -> np.ndarray:
    """Cycles of the sparse engine on each tile: its most-loaded lane."""
    work = np.asarray(lane_load, dtype=np.float64) * tokens * cycles_per_nnz
    busy = lane_load > 0
    if np.any(busy & (pes_per_lane == 0)):
        raise ValueError("sparse columns but no sparse PEs")
    out = np.zeros_like(work)
    np.divide(work, pes_per_lane, out=out, where=busy)
    return out


class Engine:
    """A compute engine in the SimPy model: processes one tile per `run` call."""

    def __init__(self, env: simpy.Environment, name: str, step_cycles: np.ndarray) -> None:
        self.env = env
        self.name = name
        self.step_cycles = step_cycles
        self.busy_cycles = 0.0

    def analytic_cycles(self) -> float:
        """Closed form: the engine's busy cycles are the sum of its tile cycles."""
        return float(self.step_cycles.sum())

    def run(self, step: int) -> simpy.Timeout:
        """The event that fires when the engine has finished its share of tile `step`."""
        cycles = float(self.step_cycles[step])
        self.busy_cycles += cycles
        return self.env.timeout(cycles)
