"""The SimPy model of the accelerator executing one op's plan.

1 time unit = 1 cycle; a fresh `simpy.Environment` per op.  After the op's fixed
overhead (``op_overhead_us``: a GPU kernel's launch, ramp-up and drain), a loader streams
tiles from DRAM into free tile buffers (two with double buffering), the dense and
sparse engines consume each tile concurrently and synchronise at its end, and a
writer sends the outputs back over the same DRAM channel, so memory stalls,
overlap and engine imbalance all show in the completion time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import simpy

from simulator import recurrence
from simulator.config import HardwareConfig
from simulator.engines import Engine
from simulator.memory import DramChannel
from simulator.tiling import Plan

__all__ = ["SimResult", "Accelerator"]


@dataclass(frozen=True)
class SimResult:
    """Cycle counts of one op (rounded up to whole cycles)."""

    total_cycles: int
    dense_engine_cycles: int  # busy cycles of the dense engine
    sparse_engine_cycles: int  # busy cycles of the sparse engine
    compute_cycles: int  # cycles in which a tile was being computed
    memory_cycles: int  # cycles the DRAM channel was busy
    stall_cycles: int  # total - compute: the op's fixed overhead, waiting for data, pipeline fill and drain


def _engine_busy(step_cycles: np.ndarray) -> float:
    """An engine's busy cycles summed step by step, as the SimPy model accounts them (a running sum, not
    numpy's pairwise sum, so that the float result is the same)."""
    return float(np.cumsum(step_cycles, dtype=np.float64)[-1]) if len(step_cycles) else 0.0


def _whole(cycles: float) -> int:
    """Round up, forgiving float noise from summing fractional tile times."""
    return int(math.ceil(cycles - 1e-6))


class Accelerator:
    """Runs plans on a `HardwareConfig`; ``compute_only`` ignores memory time."""

    def __init__(self, hw: HardwareConfig, compute_only: bool = False) -> None:
        self.hw = hw
        self.compute_only = compute_only

    @property
    def bytes_per_cycle(self) -> float | None:
        return None if self.compute_only else self.hw.dram_bytes_per_cycle

    def run(self, plan: Plan, fast: bool = False) -> SimResult:
        """The op's cycles: the SimPy model, or with ``fast`` the same pipeline as a recurrence
        (``pipeline_result``; tests/simulator/test_fast_path.py holds the two equal)."""
        if fast:
            result = self.pipeline_result(plan)
            if result is not None:
                return result
        env = simpy.Environment()
        dram = DramChannel(env, self.bytes_per_cycle)
        dense = Engine(env, "dense", plan.dense_cycles)
        sparse = Engine(env, "sparse", plan.sparse_cycles)
        free = simpy.Store(env, capacity=2 if self.hw.double_buffer else 1)
        free.items.extend(range(free.capacity))  # empty tile buffers
        ready = simpy.Store(env)  # filled tile buffers, in order
        loads = [dram.cycles(b) for b in plan.load_bytes]
        writes = [dram.cycles(b) for b in plan.write_bytes]
        env.process(self._loader(env, dram, free, ready, loads, self.hw.op_overhead_cycles))
        compute = env.process(self._compute(env, dram, free, ready, dense, sparse, plan.step_cycles, writes))
        env.run()
        total, busy = _whole(env.now), _whole(compute.value)
        return SimResult(total, _whole(dense.busy_cycles), _whole(sparse.busy_cycles), busy,
                         _whole(dram.busy_cycles), max(0, total - busy))

    def pipeline_result(self, plan: Plan) -> SimResult | None:
        """The SimPy model's answer without SimPy (``recurrence.compiled``), or None where it cannot be
        sure of SimPy's order: a write and a load requested at the same instant are served in the order
        SimPy's event queue happens to hold them, which real plans, whose times are sums of fractional
        cycles, almost never have."""
        bpc = self.bytes_per_cycle
        steps = np.asarray(plan.step_cycles, dtype=np.float64)
        loads, writes = (np.zeros(len(b)) if bpc is None else
                         np.where(b > 0, np.asarray(b, dtype=np.float64) / bpc, 0.0)
                         for b in (plan.load_bytes, plan.write_bytes))
        t0 = self.hw.op_overhead_cycles if self.hw.op_overhead_cycles > 0 else 0.0
        total, busy, dram_busy = recurrence.compiled(loads, writes, steps, 2 if self.hw.double_buffer else 1,
                                                     float(t0))
        if total == recurrence.TIE:
            return None
        return SimResult(_whole(total), _whole(_engine_busy(plan.dense_cycles)), _whole(_engine_busy(plan.sparse_cycles)),
                         _whole(busy), _whole(dram_busy), max(0, _whole(total) - _whole(busy)))

    @staticmethod
    def _loader(env, dram: DramChannel, free: simpy.Store, ready: simpy.Store, loads: list[int],
                overhead: float):
        if overhead > 0:
            yield env.timeout(overhead)  # nothing moves or computes before the op has started
        for step, cycles in enumerate(loads):
            buf = yield free.get()
            yield from dram.transfer(cycles)
            yield ready.put((step, buf))

    @staticmethod
    def _compute(env, dram: DramChannel, free: simpy.Store, ready: simpy.Store, dense: Engine,
                 sparse: Engine, step_cycles: np.ndarray, writes: list[int]):
        busy = 0.0
        for _ in range(len(writes)):
            step, buf = yield ready.get()
            cycles = float(step_cycles[step])
            dense.account(step)  # both engines work within the step (their share never exceeds it)
            sparse.account(step)
            yield env.timeout(cycles)
            busy += cycles
            yield free.put(buf)
            env.process(dram.transfer(writes[step]))
        return busy
