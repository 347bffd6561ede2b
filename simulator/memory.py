"""Storage formats of weight tiles and the shared DRAM channel."""

from __future__ import annotations

import math

import numpy as np
import simpy

from simulator.config import HardwareConfig

__all__ = ["row_bytes", "DramChannel"]


def row_bytes(hw: HardwareConfig, in_features: int, dense_cols: int,
              row_nnz_sparse: np.ndarray | None, weight_bits: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Bytes each weight row occupies in the weight and in the index buffer.

    Dense columns are stored as plain values (zeros included).  The sparse part is
    stored as values plus either CSR column indices (one index per nonzero and one
    row pointer) or a bitmap (one bit per sparse column).  ``row_nnz_sparse`` is
    None for a fully dense op.  ``weight_bits`` overrides ``hw.weight_bits`` (e.g. a KV cache).
    """
    wb = (hw.weight_bits if weight_bits is None else weight_bits) / 8
    if row_nnz_sparse is None:
        return np.array([in_features * wb]), np.array([0.0])
    values = dense_cols * wb + row_nnz_sparse * wb  # (rows,)
    sparse_cols = in_features - dense_cols
    if sparse_cols == 0:
        index = np.zeros_like(values)
    elif hw.sparse_format == "csr":
        index = (row_nnz_sparse + 1) * hw.index_bits / 8
    else:  # bitmap
        index = np.full_like(values, math.ceil(sparse_cols / 8))
    return values, index


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
