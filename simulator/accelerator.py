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

    def run(self, plan: Plan) -> SimResult:
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
