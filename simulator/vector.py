"""The vector unit: RMSNorm, RoPE, softmax, SiLU x up, residual adds, and the embedding gather.

Rule: an op touches ``E = repeat * tokens * width`` elements; the unit performs
``vector_lanes`` element operations per cycle, so it computes for
``E * ops_per_element / vector_lanes`` cycles.  Its ``inputs`` input tensors are read
from DRAM at activation precision (the embedding reads table rows at ``weight_bits``)
and its output is written back, in chunks that fill the activation buffer, double
buffered like the matmuls' tiles.  The same SimPy model executes the chunks.
"""

from __future__ import annotations

import numpy as np

from simulator.config import HardwareConfig
from simulator.tiling import Plan, merge_steps

__all__ = ["plan_vector"]


def plan_vector(elements: int, ops_per_element: float, inputs: int, hw: HardwareConfig,
                in_bits: int | None = None, max_steps: int = 256) -> Plan:
    """The chunks of a vector op (or a gather when ``ops_per_element`` is 0)."""
    in_b = (hw.act_bits if in_bits is None else in_bits) / 8 * inputs
    out_b = hw.act_bits / 8
    chunk = max(1, int(hw.buffer_bytes("act") // (in_b + out_b)))  # elements per chunk
    n = -(-elements // chunk)
    sizes = np.full(n, chunk, dtype=np.float64)
    sizes[-1] = elements - chunk * (n - 1)
    cycles = sizes * ops_per_element / hw.vector_lanes
    arrays = merge_steps({"load": sizes * in_b, "write": sizes * out_b, "step": cycles}, max_steps)
    zeros = np.zeros_like(arrays["step"])
    ops = round(elements * ops_per_element)
    return Plan(arrays["load"], arrays["write"], zeros, zeros, arrays["step"], 0, 0, 0, ops, 0, 0.0,
                f"chunks of {chunk}", "stream", act_bytes=float(arrays["load"].sum()),
                out_bytes=float(arrays["write"].sum()))
