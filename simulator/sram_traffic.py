"""Reads and writes of each on-chip buffer, per op, counted as SCALE-Sim v3 counts them.

**Fills and drains.** The weight, index and activation buffers are written with the op's DRAM bytes
through each (the plan's ``weight_bytes``, ``index_bytes``, ``act_bytes``) and the output buffer is
read out with its ``out_bytes``: the DRAM columns of layers.csv are also the buffers' fills.

**Array-side accesses** of an M x K x N matmul (M tokens, K inputs, N outputs, ``repeat`` times) on
an R x C array (``pe_rows`` x ``pe_cols``), in SCALE-Sim's counts (``bench/validate_scalesim.py``
checks them against SCALE-Sim's own ``sram_ifmap_reads`` and ``sram_filter_reads`` on its 21 runs):

* activations: M·K·ceil(N/C) read (every input row re-read once per fold of C output columns);
* weights: output-stationary (and the MAC lanes, which broadcast the same way): K·N·ceil(M/R), the
  weights re-read once per fold of R tokens; weight-stationary: K·N, each read once. Sparse weights
  are read as stored (values, scales and indices), so the bytes are the stored bytes per pass;
* outputs: M·N written (partial sums stay in the PEs).

A causal attention op touches the causal fraction of each. A vector op reads ``inputs`` elements per
element and writes one. Operand reuse inside the PEs beyond these folds is not modelled, and the energy
model charges SRAM per DRAM byte (docs/simulator.md), not per access counted here.
"""

from __future__ import annotations

from simulator.config import HardwareConfig
from simulator.tiling import Plan

__all__ = ["array_accesses", "ACCESS_COLUMNS"]

ACCESS_COLUMNS = ("weight_sram_read_bytes", "index_sram_read_bytes", "act_sram_read_bytes", "out_sram_write_bytes")


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


def array_accesses(hw: HardwareConfig, plan: Plan, *, tokens: int, out_features: int, in_features: int,
                   repeat: int = 1, causal: bool = False, matmul: bool = True, inputs: int = 1) -> dict[str, float]:
    """Bytes the engines read from the weight, index and activation buffers and write to the output
    buffer during one op (see the module rules)."""
    act = hw.act_bits / 8
    if not matmul:
        elements = repeat * tokens * out_features
        return dict(zip(ACCESS_COLUMNS, (0.0, 0.0, elements * inputs * act, elements * act)))
    frac = (tokens + 1) / (2 * tokens) if causal else 1.0
    passes = 1 if hw.dense_engine == "systolic-ws" else _ceil(tokens, hw.pe_rows)
    acts = repeat * tokens * in_features * _ceil(out_features, hw.pe_cols) * act
    outs = repeat * tokens * out_features * act
    return dict(zip(ACCESS_COLUMNS, (plan.stored_weight_bytes * passes * frac, plan.stored_index_bytes * passes * frac,
                                     acts * frac, outs * frac)))
