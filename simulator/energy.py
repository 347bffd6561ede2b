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
* **Static** (``static_mw`` 0 = 10% of the PE array's peak MAC power, an assumption, not a
  measurement: set it for your process) times the op's latency. The only published figure
  found is a lower bound: the leakage of the arithmetic alone, 0.6% of a 32-bit MAC's
  full-rate power at 1 GHz in 40 nm (Aladdin, Shao et al., ISCA 2014: multiplier 12.68 pJ
  and 80 uW, adder 0.21 pJ and 2.4 uW); SRAM leakage and the clock tree come on top. The
  upper end is a whole chip without power gating: TPU v1 drew 88% of its full-load power at
  10% load (Jouppi et al., ISCA 2017, "energy proportionality"; 40 W per die incremental at
  full load), so a fit P(load) = S + load * D puts about 87% of its full-load power in S.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from simulator.config import HardwareConfig

__all__ = ["EnergyBreakdown", "mac_pj", "sram_pj_per_byte", "static_mw", "op_energy"]

# (buffer size in KiB, pJ per 64-bit access): Horowitz, ISSCC 2014.
_SRAM_POINTS = ((8.0, 10.0), (32.0, 20.0), (1024.0, 100.0))
STATIC_FRACTION = 0.10


@dataclass(frozen=True)
class EnergyBreakdown:
    mac_pj: float
    sram_pj: float
    dram_pj: float
    static_pj: float

    @property
    def total_pj(self) -> float:
        return self.mac_pj + self.sram_pj + self.dram_pj + self.static_pj


def mac_pj(hw: HardwareConfig) -> float:
    """Energy of one multiply-accumulate (see the module rules)."""
    if hw.mac_pj > 0:
        return hw.mac_pj
    width = max(hw.weight_bits, hw.act_bits)
    if width <= 8:
        return 0.2 * hw.weight_bits * hw.act_bits / 64 + 0.03
    return 1.1 + 0.4 if width <= 16 else 3.7 + 0.9


def sram_pj_per_byte(hw: HardwareConfig, kib: float) -> float:
    """Energy per byte of one access to a buffer of ``kib`` KiB (see the module rules)."""
    if hw.sram_pj_per_byte > 0:
        return hw.sram_pj_per_byte
    pts = [(math.log(k), math.log(e)) for k, e in _SRAM_POINTS]
    x = math.log(max(kib, 1e-6))
    (x0, y0), (x1, y1) = (pts[0], pts[1]) if x <= pts[1][0] else (pts[1], pts[2])
    return math.exp(y0 + (y1 - y0) * (x - x0) / (x1 - x0)) / 8


def static_mw(hw: HardwareConfig) -> float:
    """Static power in mW (see the module rules)."""
    if hw.static_mw > 0:
        return hw.static_mw
    return STATIC_FRACTION * hw.num_pes * mac_pj(hw) * hw.freq_mhz * 1e-3  # pJ x MHz = uW


def op_energy(hw: HardwareConfig, macs: float, weight_bytes: float, index_bytes: float, act_bytes: float,
              out_bytes: float, cycles: float) -> EnergyBreakdown:
    """An op's energy from its MACs, the DRAM bytes through each buffer and its latency in cycles."""
    sram = 2 * (weight_bytes * sram_pj_per_byte(hw, hw.weight_sram_kib)
                + index_bytes * sram_pj_per_byte(hw, hw.index_sram_kib)
                + act_bytes * sram_pj_per_byte(hw, hw.act_sram_kib)
                + out_bytes * sram_pj_per_byte(hw, hw.out_sram_kib))
    dram = (weight_bytes + index_bytes + act_bytes + out_bytes) * hw.dram_pj_per_byte
    static = static_mw(hw) * cycles * 1e3 / hw.freq_mhz  # mW x us = nJ = 1e3 pJ
    return EnergyBreakdown(macs * mac_pj(hw), sram, dram, static)
