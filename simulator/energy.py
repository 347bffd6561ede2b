"""Energy of an op: MACs, SRAM, DRAM and static power.

Rules (45 nm, M. Horowitz, "Computing's energy problem", ISSCC 2014, unless set in the config):

* **MAC** (``mac_pj`` 0 = from the operand widths): operands of at most 8 bits are integers,
  an 8 x 8-bit multiply costs 0.2 pJ and scales with the product of the widths (an array
  multiplier's area), plus an 8-bit add of 0.03 pJ; up to 16 bits, fp16 (multiply 1.1 pJ +
  add 0.4 pJ); wider, fp32 (3.7 + 0.9 pJ). The wider of ``weight_bits`` and ``act_bits`` picks
  the datapath (weight-only quantized weights are dequantized to the activations' format).
  An element operation of the vector unit costs one MAC.
* **SRAM** (``sram_pj_per_byte`` 0 = from each buffer's size): a 64-bit access costs 10 pJ at
  8 KB, 20 pJ at 32 KB and 100 pJ at 1 MB, interpolated (and extrapolated) linearly in log-log;
  per byte, an eighth of that. Every DRAM byte is written into its buffer (weights and
  indices, activations, outputs) once and read from it once; per-MAC operand reads from
  registers are not counted.
* **DRAM**: ``dram_pj_per_byte`` per byte moved (default 160 pJ/B, the low end of Horowitz's
  1.3-2.6 nJ per 64-bit access).
* **Static** (``static_mw`` 0 = the leakage of the MACs and the buffers; no clock tree):
  times the op's latency. Every PE and vector lane leaks 6.39 uW per pJ of its MAC energy,
  the ratio of Aladdin's 40 nm characterisation (Shao et al., ISCA 2014, as tabulated in
  Accelergy's hwcomponents library: a 32-bit multiplier 12.68 pJ and 80 uW, a 32-bit adder
  0.21 pJ and 2.4 uW at 1 GHz). Each buffer leaks what CACTI 7 gives for a 45 nm scratch
  RAM of its size, 64-bit port, one bank, 300 K, with ``sram_device``'s ITRS cells
  (``SRAM_LEAK_MW``, from ``bench/validate_cacti.py``; interpolated log-log). The default,
  itrs-lstp, is what Accelergy's CACTI plug-in uses; itrs-lop and itrs-hp cells leak about
  850 and 19,000 times more. The clock tree and control draw power whether or not a MAC
  fires and are not modelled: a whole chip without power gating is the other extreme, TPU v1
  drew 88% of its full-load power at 10% load (Jouppi et al., ISCA 2017), about 87%
  load-independent in a linear fit. Set ``static_mw`` to your chip's figure to replace the
  rule.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

from simulator.config import HardwareConfig

__all__ = ["EnergyBreakdown", "datapath", "mac_pj", "sram_pj_per_byte", "sram_leak_mw", "static_mw", "op_energy"]

# (buffer size in KiB, pJ per 64-bit access): Horowitz, ISSCC 2014.
_SRAM_POINTS = ((8.0, 10.0), (32.0, 20.0), (1024.0, 100.0))
# Leakage per pJ of MAC energy, uW/pJ: Aladdin's 32-bit multiplier + adder (see the rules).
MAC_LEAK_UW_PER_PJ = (80.0 + 2.4) / (12.68 + 0.21)
# (KiB, mW of subthreshold + gate leakage per bank): CACTI 7, 45 nm, see bench/validate_cacti.py.
SRAM_LEAK_KIB = (8, 16, 32, 64, 128, 256, 512, 1024, 4096, 32768)
SRAM_LEAK_MW = {
    "itrs-hp": (5.12, 10.1, 18.9, 37.9, 69.1, 138, 276, 553, 2210, 17600),
    "itrs-lop": (0.251, 0.443, 0.886, 1.54, 3.09, 6.17, 11.6, 24.6, 96.8, 778),
    "itrs-lstp": (0.000285, 0.000515, 0.00101, 0.00185, 0.00371, 0.00741, 0.014, 0.0279, 0.111, 0.886),
}


@dataclass(frozen=True)
class EnergyBreakdown:
    mac_pj: float
    sram_pj: float
    dram_pj: float
    static_pj: float

    @property
    def total_pj(self) -> float:
        return self.mac_pj + self.sram_pj + self.dram_pj + self.static_pj


def datapath(hw: HardwareConfig) -> str:
    """The arithmetic the operand widths pick: "int" (at most 8 bits), "fp16" (at most 16) or "fp32"; the
    wider of weight_bits and act_bits decides (weight-only quantized weights are dequantized)."""
    width = max(hw.weight_bits, hw.act_bits)
    return "int" if width <= 8 else "fp16" if width <= 16 else "fp32"


def mac_pj(hw: HardwareConfig) -> float:
    """Energy of one multiply-accumulate (see the module rules)."""
    if hw.mac_pj > 0:
        return hw.mac_pj
    kind = datapath(hw)
    if kind == "int":
        return 0.2 * hw.weight_bits * hw.act_bits / 64 + 0.03
    return 1.1 + 0.4 if kind == "fp16" else 3.7 + 0.9


def _log_log(points: tuple[tuple[float, float], ...], x: float) -> float:
    """Piecewise-linear in log-log through ``points`` (sorted by x), the end segments extended."""
    x = math.log(max(x, 1e-6))
    logs = [(math.log(a), math.log(b)) for a, b in points]
    i = next((i for i in range(1, len(logs) - 1) if x <= logs[i][0]), len(logs) - 1)
    (x0, y0), (x1, y1) = logs[i - 1], logs[i]
    return math.exp(y0 + (y1 - y0) * (x - x0) / (x1 - x0))


def sram_pj_per_byte(hw: HardwareConfig, kib: float) -> float:
    """Energy per byte of one access to a buffer of ``kib`` KiB (see the module rules)."""
    if hw.sram_pj_per_byte > 0:
        return hw.sram_pj_per_byte
    return _log_log(_SRAM_POINTS, kib) / 8


def sram_leak_mw(device: str, kib: float) -> float:
    """Leakage in mW of a ``kib`` KiB buffer of ITRS ``device`` cells (CACTI 7, 45 nm, 300 K)."""
    return _log_log(tuple(zip(SRAM_LEAK_KIB, SRAM_LEAK_MW[device])), kib)


def static_mw(hw: HardwareConfig) -> float:
    """Static power in mW (see the module rules)."""
    if hw.static_mw > 0:
        return hw.static_mw
    logic = (hw.num_pes + hw.vector_lanes) * mac_pj(hw) * MAC_LEAK_UW_PER_PJ * 1e-3
    buffers = sum(sram_leak_mw(hw.sram_device, getattr(hw, f"{kind}_sram_kib"))
                  for kind in ("weight", "index", "act", "out"))
    return logic + buffers


@functools.lru_cache(maxsize=256)
def _rates(hw: HardwareConfig) -> tuple[float, float, float, float, float, float]:
    """Per-hardware constants of op_energy, computed once per configuration: pJ per MAC, pJ per byte of
    the weight, index, activation and output buffers, and the static power in mW."""
    return (mac_pj(hw), sram_pj_per_byte(hw, hw.weight_sram_kib), sram_pj_per_byte(hw, hw.index_sram_kib),
            sram_pj_per_byte(hw, hw.act_sram_kib), sram_pj_per_byte(hw, hw.out_sram_kib), static_mw(hw))


def op_energy(hw: HardwareConfig, macs: float, weight_bytes: float, index_bytes: float, act_bytes: float,
              out_bytes: float, cycles: float) -> EnergyBreakdown:
    """An op's energy from its MACs, the DRAM bytes through each buffer and its latency in cycles."""
    mac, w_pj, i_pj, a_pj, o_pj, static_power = _rates(hw)
    sram = 2 * (weight_bytes * w_pj + index_bytes * i_pj + act_bytes * a_pj + out_bytes * o_pj)
    dram = (weight_bytes + index_bytes + act_bytes + out_bytes) * hw.dram_pj_per_byte
    static = static_power * cycles * 1e3 / hw.freq_mhz  # mW x us = nJ = 1e3 pJ
    return EnergyBreakdown(macs * mac, sram, dram, static)
