"""The dense and the sparse compute engines: cycle arithmetic and SimPy behaviour.

Cycle counts are closed-form arithmetic over mask statistics (no per-MAC loops);
each PE performs one MAC per cycle.  The two engines work through their own share
of an op's weights concurrently (ViTCoD: denser columns on the dense engine, the
rest on the sparse one) and meet at the end of the op, so the op's compute time is
the slower engine's.  Neither engine's time depends on how the op is tiled.

Dense engine: ``P_d`` PEs share the op's MACs evenly, zeros included:
``tokens * rows * dense_cols / P_d``.

Sparse engine: ``L`` lanes, a property of the PE array (``HardwareConfig.lanes``,
one per PE row unless set), each owning ``P_s / L`` PEs (at least one).  Whole
weight rows are assigned to lanes for the whole op by a stated scheduler:
"round-robin" sends row r to lane ``r mod L``; "balanced" is a compiler's static
schedule (rows in decreasing nonzero count, each round of ``L`` rows onto the
lanes in increasing load; the round-robin order is kept where it is better, so
"balanced" is never slower).  A lane's PEs split its nonzero MACs (over tokens
and nonzeros) evenly, and the engine takes as long as its most-loaded lane:
``tokens * cycles_per_nnz * max_lane_nnz / (P_s / L)``.  Rows with uneven sparsity
therefore cost more than even rows with the same total: the load imbalance that
BESA's row-wise allocation can create.
"""

from __future__ import annotations

import numpy as np
import simpy

__all__ = ["split_pes", "dense_cycles", "systolic_cycles", "lane_loads", "sparse_cycles", "Engine"]


def split_pes(total: int, dense_work: float, sparse_work: float, policy: str,
              dense_fraction: float, columns: int = 0) -> tuple[int, int]:
    """PEs of (dense, sparse) engine.

    "proportional" (ViTCoD) gives each engine PEs in proportion to its work, at
    least one PE to an engine that has work; "fixed" keeps ``dense_fraction``.
    ``columns`` > 0 splits whole columns of a ``columns``-wide array instead of single PEs,
    the dense engine's share rounded down (as the BESA authors' simulator does), at least
    one column to an engine that has work.
    """
    unit = total // columns if columns else 1
    units = total // unit
    if policy == "fixed":
        share = dense_fraction
    elif sparse_work <= 0:
        return total, 0
    elif dense_work <= 0:
        return 0, total
    else:
        share = dense_work / (dense_work + sparse_work)
    d = int(units * share) if columns else round(units * share)
    d = min(units - 1, max(1, d))
    return d * unit, total - d * unit


def dense_cycles(tokens: float, rows: int, cols: int, pes: int) -> float:
    """Cycles of the dense engine on an op: every MAC of its columns, zeros included."""
    macs = float(tokens) * rows * cols
    if pes == 0:
        if macs:
            raise ValueError("dense columns but no dense PEs")
        return 0.0
    return macs / pes


def systolic_cycles(m: int, k: int, n: int, rows: int, cols: int, dataflow: str) -> float:
    """Stall-free cycles of an (m x k) @ (k x n) GEMM on a rows x cols systolic array, as
    SCALE-Sim v3 counts them (bench/validate_scalesim.py checks it on every run).

    Output-stationary: ceil(m/rows) x ceil(n/cols) folds, each streaming all of k, a fold
    taking k + rows + cols - 2 cycles; weight-stationary: ceil(k/rows) x ceil(n/cols) folds,
    each streaming all m tokens, a fold taking m + 2 rows + cols - 2 cycles; minus one (the
    last output is written in the last cycle). A GEMV (m = 1) keeps one row of an
    output-stationary array busy.
    """
    if min(m, k, n) <= 0:
        return 0.0
    if dataflow == "os":
        return float(-(-m // rows) * -(-n // cols) * (k + rows + cols - 2) - 1)
    return float(-(-k // rows) * -(-n // cols) * (m + 2 * rows + cols - 2) - 1)


def lane_loads(row_nnz: np.ndarray, lanes: int, schedule: str = "round-robin") -> np.ndarray:
    """Nonzeros assigned to each of ``lanes`` lanes, whole rows at a time (see the module doc)."""
    row_nnz = np.asarray(row_nnz, dtype=np.int64)
    rr = np.bincount(np.arange(row_nnz.size) % lanes, weights=row_nnz, minlength=lanes)
    if schedule == "round-robin" or row_nnz.size <= lanes:
        return rr
    order = np.sort(row_nnz)[::-1]  # longest rows first
    rounds = -(-order.size // lanes)
    padded = np.zeros(rounds * lanes, dtype=np.int64)
    padded[: order.size] = order
    loads = np.zeros(lanes, dtype=np.float64)
    for chunk in padded.reshape(rounds, lanes):  # chunk is in decreasing order
        loads[np.argsort(loads, kind="stable")] += chunk  # largest row onto the least-loaded lane
    return loads if loads.max() <= rr.max() else rr


def sparse_cycles(tokens: float, row_nnz: np.ndarray, pes: int, lanes: int, schedule: str,
                  cycles_per_nnz: float) -> float:
    """Cycles of the sparse engine on an op: its most-loaded lane (see the module doc)."""
    row_nnz = np.asarray(row_nnz)
    if not row_nnz.any():
        return 0.0
    if pes == 0:
        raise ValueError("sparse columns but no sparse PEs")
    lanes = max(1, min(lanes, pes))
    return float(tokens) * cycles_per_nnz * float(lane_loads(row_nnz, lanes, schedule).max()) * lanes / pes


class Engine:
    """A compute engine in the SimPy model: its per-step cycles and the busy time it accumulates."""

    def __init__(self, env: simpy.Environment, name: str, step_cycles: np.ndarray) -> None:
        self.env = env
        self.name = name
        self.step_cycles = step_cycles
        self.busy_cycles = 0.0

    def analytic_cycles(self) -> float:
        """Closed form: the engine's busy cycles are the sum of its tile cycles."""
        return float(self.step_cycles.sum())

    def account(self, step: int) -> None:
        """Record the engine's busy cycles in step `step`; the step's own timeout (the slower
        engine's share) covers them, so no event of its own is needed."""
        self.busy_cycles += float(self.step_cycles[step])
