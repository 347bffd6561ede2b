"""Storage formats of weight tiles and the shared DRAM channel."""

from __future__ import annotations

import math

import numpy as np
import simpy

from simulator.config import HardwareConfig

__all__ = ["row_bytes", "DramChannel"]


def row_bytes(hw: HardwareConfig, in_features: int, dense_cols: int, row_nnz_sparse: np.ndarray | None,
              weight_bits: int | None = None, nm: tuple[int, int] | None = None,
              nm_dense: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Bytes each weight row occupies in the weight and in the index buffer.

    Dense columns are stored as plain values (zeros included).  The sparse part is
    stored as values plus either CSR column indices (one index per nonzero and one
    row pointer), a bitmap (one bit per sparse column) or, for an N:M mask (``nm``), the
    position of each kept value in its group of M (ceil(log2 M) bits: 2 for 2:4).
    ``nm_dense``: the dense engine runs the N:M mask compressed (a sparse-tensor-core style
    systolic array), so dense columns store only their N of M values, with positions.
    ``row_nnz_sparse`` is None for a fully dense op.  ``weight_bits`` overrides
    ``hw.weight_bits`` (e.g. a KV cache).
    """
    wb = (hw.weight_bits if weight_bits is None else weight_bits) / 8
    if row_nnz_sparse is None:
        return np.array([in_features * wb]), np.array([0.0])
    pos_bytes = math.ceil(math.log2(nm[1])) / 8 if nm else 0.0
    kept_dense = dense_cols * nm[0] / nm[1] if nm_dense else dense_cols
    values = kept_dense * wb + row_nnz_sparse * wb  # (rows,)
    index = np.full_like(values, kept_dense * pos_bytes if nm_dense else 0.0)
    sparse_cols = in_features - dense_cols
    if sparse_cols == 0:
        pass
    elif nm:
        index = index + row_nnz_sparse * pos_bytes
    elif hw.sparse_format == "csr":
        index = index + (row_nnz_sparse + 1) * hw.index_bits / 8
    elif hw.sparse_format == "macko":
        values, index = _macko(values, index, row_nnz_sparse, sparse_cols, wb)
    else:  # bitmap
        index = index + math.ceil(sparse_cols / 8)
    return values, index


def _macko(values: np.ndarray, index: np.ndarray, nnz: np.ndarray, cols: int,
           wb: float) -> tuple[np.ndarray, np.ndarray]:
    """MACKO (vlejd/macko_spmv): each stored value has a 4-bit delta to the previous column; a gap
    longer than 16 is bridged by stored zeros, and each row has a 32-bit pointer. With a row's
    nonzeros spread at random (density d), the expected stored entries are nnz (1 + z / (1 - z)),
    z = (1 - d)^16 (the format's own average-case analysis)."""
    d = np.clip(nnz / max(cols, 1), 1e-12, 1.0)
    z = (1.0 - d) ** 16
    stored = nnz * (1.0 + z / np.maximum(1.0 - z, 1e-12))
    return values + (stored - nnz) * wb, index + stored * 0.5 + 4.0


class DramChannel:
    """One DRAM channel shared by the tile loader and the output writer (a SimPy resource)."""

    def __init__(self, env: simpy.Environment, bytes_per_cycle: float | None) -> None:
        self.env = env
        self.bytes_per_cycle = bytes_per_cycle  # None: memory is not modelled (compute-only)
        self.port = simpy.Resource(env, capacity=1)
        self.busy_cycles = 0.0

    def cycles(self, nbytes: float) -> float:
        if self.bytes_per_cycle is None or nbytes <= 0:
            return 0.0
        return nbytes / self.bytes_per_cycle

    def transfer(self, cycles: float):
        """Hold the channel for `cycles` (a generator for `env.process`)."""
        if cycles <= 0:
            return
        with self.port.request() as req:
            yield req
            yield self.env.timeout(cycles)
            self.busy_cycles += cycles
