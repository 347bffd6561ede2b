"""Silicon area of the accelerator at 45 nm, per component.

Rules (the same sources as simulator/energy.py; see docs/exploration.md for the validation):

* **PE**: a ``weight_bits`` x ``act_bits`` multiplier, an accumulator adder and the PE's registers.
  Arithmetic areas are M. Horowitz's 45 nm table ("Computing's energy problem", ISSCC 2014), the
  figures the energy model's pJ come from: an 8 x 8-bit integer multiply 282 um2, scaled with the
  product of the widths for narrower or mixed integer operands (as the energy is); products of
  operands of at most 8 bits are summed in 32 bits (a 32-bit add, 137 um2); up to 16 bits the
  datapath is fp16 (multiply 1,640 um2, add 1,360 um2), wider fp32 (7,700 + 4,184 um2). Registers
  (the PE's weight, activation and partial sum) cost 5.98 um2 a bit, Aladdin's 40 nm register
  (Shao et al., ISCA 2014, as tabulated in Accelergy's hwcomponents library).
* **Vector lane**: one multiplier and one adder of the datapath (no PE registers).
* **Sparse-engine extras**: an assumption, not a published breakdown. Every PE may be on the sparse
  side of an op (the dense/sparse split is per op), so each PE holds an ``index_bits`` index
  register and each sparse lane an ``index_bits``-wide adder for its address generation (Horowitz's
  adder, linear in width). ``bench/validate_area.py`` prints the total with these at 0x and 2x.
* **SRAM**: CACTI 7's data-array area at 45 nm (``SRAM_AREA_MM2``, written by
  ``bench/validate_cacti.py``) of a buffer of the configured size with one read and one write port
  (it is filled while the engines read it) as wide as its engine reads a cycle: ``pe_rows`` x
  ``act_bits`` for activations, ``pe_cols`` x ``weight_bits`` / ``index_bits`` / the accumulator
  width for weights, indices and outputs; rounded up to a power of two within 64-8,192 bits;
  interpolated log-log in size and in width. ``sram_device`` picks the ITRS cell, as for leakage.
* **What is left out**: wiring, clock tree, placement utilisation, control, I/O and the DRAM PHY.
  ``logic_area_factor`` (default 1.0: cell area only) multiplies the PE, lane and sparse-engine
  area for the first three; the TPU v1 check in bench/validate_area.py shows how far cell area
  is from a placed array.
* A chip whose area is published rather than modelled (a GPU) sets ``area_mm2`` in its preset; that
  number is then the area, with no breakdown.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from simulator.config import HardwareConfig
from simulator.energy import _log_log, datapath

__all__ = ["AreaBreakdown", "area", "pe_um2", "lane_um2", "port_bits", "sram_area_mm2",
           "SRAM_AREA_KIB", "SRAM_AREA_PORT_BITS", "SRAM_AREA_MM2"]

REGISTER_UM2_PER_BIT = 5.98  # Aladdin 40 nm register, per bit
INT8_MULT_UM2, INT32_ADD_UM2 = 282.0, 137.0  # Horowitz 45 nm
FP16_MULT_UM2, FP16_ADD_UM2 = 1640.0, 1360.0
FP32_MULT_UM2, FP32_ADD_UM2 = 7700.0, 4184.0
INT_ACC_BITS = 32  # products of operands of at most 8 bits are summed in 32 bits

# CACTI 7, 45 nm, 300 K, scratch RAM, one read + one write port of each width, 1 bank, ED^2
# (bench/validate_cacti.py --save): mm2 per (device, port bits), one value per SRAM_AREA_KIB size.
SRAM_AREA_KIB = tuple(2 ** i for i in range(3, 16))  # 8 KiB .. 32 MiB
SRAM_AREA_PORT_BITS = tuple(2 ** i for i in range(6, 14))  # 64 .. 8192 bits
MIN_ROWS = 256  # a buffer is at least this many port-wide words deep (see max_port_bits)
SRAM_AREA_MM2: dict[str, dict[int, tuple[float | None, ...]]] = {
    "itrs-hp": {
        64: (0.0601, 0.111, 0.213, 0.458, 0.961, 1.76, 3.5, 7.02, 13.9, 27.6, 54.9, 104, 208),
        128: (0.0657, 0.117, 0.223, 0.507, 0.927, 1.92, 3.81, 7.65, 15, 27.7, 54.7, 109, 216),
        256: (0.0772, 0.128, 0.245, 0.44, 1.08, 1.93, 3.82, 7.91, 15.3, 30.8, 59.8, 113, 222),
        512: (None, 0.192, 0.29, 0.485, 0.936, 2.35, 4.16, 8.82, 17.4, 32, 64.7, 122, 238),
        1024: (None, None, 0.544, 0.733, 1.11, 1.86, 5.48, 9.2, 18, 40.8, 72.3, 138, 252),
        2048: (None, None, None, 1.75, 2.12, 2.86, 4.33, 13.1, 21.8, 48.3, 87.2, 162, 293),
        4096: (None, None, None, None, 11.7, 12.4, 13.9, 16.8, 22.8, 51.2, 121, 245, 384),
        8192: (None, None, None, None, None, 45.1, 46.6, 49.5, 55.5, 67.5, 146, 322, 481),
    },
    "itrs-lop": {
        64: (0.0599, 0.115, 0.249, 0.517, 0.961, 1.95, 3.85, 7.65, 13.9, 27.6, 54.9, 109, 217),
        128: (0.0655, 0.126, 0.286, 0.525, 1.09, 1.92, 4.15, 7.65, 14.5, 28.9, 57.2, 109, 225),
        256: (0.077, 0.148, 0.245, 0.474, 1.08, 2.28, 4.13, 8.4, 16.6, 29.5, 57.9, 115, 227),
        512: (None, 0.192, 0.29, 0.56, 1.41, 2.35, 5.29, 8.83, 17.4, 35.1, 67.9, 123, 238),
        1024: (None, None, 0.547, 0.735, 1.11, 3.34, 5.49, 12.1, 20.2, 40.8, 77, 138, 261),
        2048: (None, None, None, 1.76, 2.13, 2.87, 4.34, 13.1, 21.6, 47.8, 87.3, 162, 293),
        4096: (None, None, None, None, 11.7, 12.4, 13.9, 16.9, 34.2, 52, 121, 244, 384),
        8192: (None, None, None, None, None, 45.1, 46.6, 49.6, 55.5, 67.5, 136, 322, 481),
    },
    "itrs-lstp": {
        64: (0.06, 0.115, 0.249, 0.47, 0.961, 1.95, 3.71, 7.38, 14.7, 26.8, 53.4, 106, 212),
        128: (0.0656, 0.117, 0.223, 0.524, 0.927, 1.92, 4.15, 7.31, 14.5, 28.9, 57.2, 106, 210),
        256: (0.0772, 0.128, 0.245, 0.474, 1.08, 2.28, 4.13, 8.4, 14.7, 29.5, 57.9, 115, 227),
        512: (None, 0.192, 0.29, 0.485, 0.936, 2.35, 4.17, 8.83, 16.1, 32, 62, 123, 238),
        1024: (None, None, 0.545, 0.733, 1.11, 1.86, 5.49, 9.2, 20.7, 34.7, 71.2, 138, 249),
        2048: (None, None, None, 1.76, 2.13, 2.86, 4.34, 13.1, 21.6, 47.8, 79.8, 161, 277),
        4096: (None, None, None, None, 6.18, 6.92, 8.38, 11.3, 17.2, 52, 86.3, 192, 318),
        8192: (None, None, None, None, None, 44.7, 46.2, 49.1, 55, 66.8, 90.5, 203, 481),
    },
}


@dataclass(frozen=True)
class AreaBreakdown:
    """Area in mm2 per component (``given_mm2``: a published chip area that replaces the model)."""

    pe_mm2: float = 0.0
    vector_mm2: float = 0.0
    sparse_extra_mm2: float = 0.0
    weight_sram_mm2: float = 0.0
    index_sram_mm2: float = 0.0
    act_sram_mm2: float = 0.0
    out_sram_mm2: float = 0.0
    given_mm2: float = 0.0

    @property
    def logic_mm2(self) -> float:
        return self.pe_mm2 + self.vector_mm2 + self.sparse_extra_mm2

    @property
    def sram_mm2(self) -> float:
        return self.weight_sram_mm2 + self.index_sram_mm2 + self.act_sram_mm2 + self.out_sram_mm2

    @property
    def total_mm2(self) -> float:
        return self.given_mm2 or self.logic_mm2 + self.sram_mm2

    def as_dict(self) -> dict[str, float]:
        """The breakdown and its total, with the keys points.csv and the reports use (area_*_mm2)."""
        parts = {f"area_{k}": v for k, v in asdict(self).items() if k != "given_mm2"}
        return {"area_mm2": self.total_mm2, **parts}


def _mult_add_um2(hw: HardwareConfig) -> tuple[float, float, int]:
    """(multiplier, accumulator adder, accumulator bits) of the datapath the operand widths pick."""
    kind = datapath(hw)  # the same rule as the energy model's
    if kind == "int":
        return INT8_MULT_UM2 * hw.weight_bits * hw.act_bits / 64, INT32_ADD_UM2, INT_ACC_BITS
    return (FP16_MULT_UM2, FP16_ADD_UM2, 16) if kind == "fp16" else (FP32_MULT_UM2, FP32_ADD_UM2, 32)


def pe_um2(hw: HardwareConfig) -> float:
    """Cell area of one PE: multiplier, accumulator adder, weight/activation/partial-sum registers."""
    mult, add, acc_bits = _mult_add_um2(hw)
    return mult + add + REGISTER_UM2_PER_BIT * (hw.weight_bits + hw.act_bits + acc_bits)


def lane_um2(hw: HardwareConfig) -> float:
    """Cell area of one vector lane: one multiplier and one adder of the datapath."""
    mult, add, _ = _mult_add_um2(hw)
    return mult + add


def max_port_bits(kib: float) -> int:
    """The widest port (a power of two) a buffer of ``kib`` KiB can have with at least MIN_ROWS rows. A
    shallower, wider buffer is a register file or several banks, not one SRAM: CACTI finds no
    organisation for an 8 KiB buffer with an 8,192-bit port (8 rows) and gives 32 KiB with one (32
    rows) 44 mm2, 150 times its area with a 512-bit port."""
    return 1 << max(0, int(math.floor(math.log2(max(kib * 8192 / MIN_ROWS, 1)))))


def port_bits(hw: HardwareConfig, kind: str) -> int:
    """Width of a buffer's read port: what its engine reads a cycle, a power of two in 64..8192, and
    no wider than the buffer allows (``max_port_bits``)."""
    acc_bits = _mult_add_um2(hw)[2]
    need = {"act": hw.pe_rows * hw.act_bits, "weight": hw.pe_cols * hw.weight_bits,
            "index": hw.pe_cols * hw.index_bits, "out": hw.pe_cols * acc_bits}[kind]
    bits = 1 << max(0, math.ceil(math.log2(max(need, 1))))
    widest = min(SRAM_AREA_PORT_BITS[-1], max_port_bits(getattr(hw, f"{kind}_sram_kib")))
    return max(min(bits, widest), SRAM_AREA_PORT_BITS[0])


def sram_area_mm2(device: str, kib: float, bits: int) -> float:
    """CACTI 7's area of a ``kib`` KiB buffer with a ``bits``-wide read and write port (log-log
    interpolation in size, then in width)."""
    table = SRAM_AREA_MM2[device]
    per_width = []
    for w in SRAM_AREA_PORT_BITS:  # CACTI ran only the sizes deep enough for the width (max_port_bits)
        points = tuple((k, v) for k, v in zip(SRAM_AREA_KIB, table[w]) if v is not None)
        per_width.append((float(w), _log_log(points, kib)))
    return _log_log(tuple(per_width), float(bits))


def area(hw: HardwareConfig) -> AreaBreakdown:
    """The accelerator's area at 45 nm (see the module rules)."""
    if hw.area_mm2 > 0:
        return AreaBreakdown(given_mm2=hw.area_mm2)
    um2 = 1e-6
    extras = hw.num_pes * REGISTER_UM2_PER_BIT * hw.index_bits + hw.lanes * INT32_ADD_UM2 * hw.index_bits / 32
    sram = {f"{kind}_sram_mm2": sram_area_mm2(hw.sram_device, getattr(hw, f"{kind}_sram_kib"), port_bits(hw, kind))
            for kind in ("weight", "index", "act", "out")}
    return AreaBreakdown(pe_mm2=hw.num_pes * pe_um2(hw) * um2 * hw.logic_area_factor,
                         vector_mm2=hw.vector_lanes * lane_um2(hw) * um2 * hw.logic_area_factor,
                         sparse_extra_mm2=extras * um2 * hw.logic_area_factor, **sram)

