"""Area model against a published die: Google's TPU v1 (Jouppi et al., "In-Datacenter Performance
Analysis of a Tensor Processing Unit", ISCA 2017), from the chip's own configuration.

Published (the paper's Table 2 and Figure 2, the floor plan): a 28 nm die of at most 331 mm2, of which
the 24 MiB Unified Buffer is 29%, the 256 x 256 8-bit Matrix Multiply Unit 24% and the 4 MiB of 32-bit
accumulators 6%. The die size is an upper bound, so the published blocks are upper bounds too.

Ours: simulator/area.py at 45 nm on a HardwareConfig with the TPU's numbers (256 x 256 int8 PEs, the
Unified Buffer as the activation buffer, the accumulators as the output buffer, the 256 KiB weight FIFO
as the weight buffer, itrs-hp cells for a 700 MHz chip), scaled to 28 nm by (28/45)^2, the ideal
shrink (an assumption: real 45 -> 28 nm logic shrinks are 2-2.6x). Nothing here is fitted; the
printed "cell-to-layout factor" is what the MMU would need, measured on this one chip (in-sample).

Held out: NVDLA's published synthesis areas at 28 nm (nvdla/doc, doc/primer.rst, "Example Area and
Performance with NVDLA": seven configurations of MACs and convolution-buffer size, "estimated
synthesis area, and include all memories required"). Ours is the MAC array and the convolution buffer
only (an int8 PE each, the buffer as one activation buffer with the model's port rule), at cell area
and with the layout factor the TPU's MMU implies (fitted on the TPU, so held out here). NVDLA's totals
also hold units the model has no counterpart for (DMA, the post-processing pipelines, control), so the
fair comparison is the marginal cost: the same least-squares split (fixed + per MAC + per KiB) fitted to
NVDLA's seven totals and to ours.

Also printed: the default preset's area with the sparse-engine extras (an assumption) at 0x and 2x,
and with itrs-lstp cells, so a reader sees how much those choices move the total.

    python bench/validate_area.py
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from simulator import HardwareConfig, load_hardware  # noqa: E402
from simulator.area import area, pe_um2, port_bits, sram_area_mm2  # noqa: E402

NODE_NM, MODEL_NM = 28.0, 45.0
DIE_MM2 = 331.0  # "< 331" (Table 2)
PUBLISHED = {"Unified Buffer (24 MiB)": 0.29, "Matrix Multiply Unit (64K MACs)": 0.24,
             "Accumulators (4 MiB)": 0.06}
TPU = HardwareConfig(name="tpu-v1", freq_mhz=700.0, pe_rows=256, pe_cols=256, dense_engine="systolic-ws",
                     vector_lanes=256, weight_sram_kib=256.0, index_sram_kib=1.0, act_sram_kib=24576.0,
                     out_sram_kib=4096.0, weight_bits=8, act_bits=8, sram_device="itrs-hp")


# (MACs, convolution buffer KiB, published mm2 at 28 nm); nvdla/doc doc/primer.rst
NVDLA = ((2048, 512, 5.5), (1024, 256, 3.0), (512, 256, 2.3), (256, 256, 1.7), (128, 256, 1.4),
         (64, 128, 0.91), (32, 128, 0.85))


def _split(rows: list[tuple[int, int, float]]) -> tuple[float, float, float]:
    """Least-squares (fixed mm2, um2 per MAC, mm2 per KiB) of (MACs, KiB, mm2) rows."""
    import numpy as np

    coef = np.linalg.lstsq(np.array([[1.0, m, k] for m, k, _ in rows]), np.array([a for *_, a in rows]),
                           rcond=None)[0]
    return float(coef[0]), float(coef[1]) * 1e6, float(coef[2])


def nvdla(layout: float, shrink: float) -> None:
    """Ours against NVDLA's published configurations (held out: nothing here was fitted on them)."""
    import math

    print(f"\nHeld out: NVDLA (28 nm synthesis, all memories included; doc/primer.rst) against our MAC array + "
          f"convolution buffer at 28 nm, at cell area and x {layout:.2f} (the TPU MMU's layout factor)\n")
    print("| MACs | buffer KiB | published mm2 | ours, cell | ours x layout | ours x layout / published |")
    print("|---:|---:|---:|---:|---:|---:|")
    ours = []
    for macs, kib, pub in NVDLA:
        rows = 1 << math.ceil(math.log2(macs) / 2)  # the array as square as a power of two allows
        hw = dataclasses.replace(TPU, name="nvdla", pe_rows=rows, pe_cols=macs // rows, act_sram_kib=float(kib))
        buf = sram_area_mm2(hw.sram_device, kib, port_bits(hw, "act")) * shrink
        mac = macs * pe_um2(hw) * 1e-6 * shrink
        ours.append((macs, kib, mac * layout + buf))
        print(f"| {macs} | {kib} | {pub:.2f} | {mac + buf:.2f} | {mac * layout + buf:.2f} | "
              f"{(mac * layout + buf) / pub:.2f} |")
    pub_split, our_split = _split(list(NVDLA)), _split(ours)
    print("\n| least-squares split | fixed mm2 | um2 per MAC | mm2 per MiB of buffer |")
    print("|---|---:|---:|---:|")
    for name, (fixed, per_mac, per_kib) in (("NVDLA, published", pub_split), ("ours x layout", our_split)):
        print(f"| {name} | {fixed:.2f} | {per_mac:.0f} | {per_kib * 1024:.2f} |")
    print(f"| ours / NVDLA | - | {our_split[1] / pub_split[1]:.2f} | {our_split[2] / pub_split[2]:.2f} |")


def main() -> int:
    shrink = (NODE_NM / MODEL_NM) ** 2
    a = area(TPU)
    ours = {"Unified Buffer (24 MiB)": a.act_sram_mm2, "Matrix Multiply Unit (64K MACs)": a.pe_mm2,
            "Accumulators (4 MiB)": a.out_sram_mm2}
    print(f"TPU v1 (28 nm, die <= {DIE_MM2:g} mm2): published floor-plan blocks against simulator/area.py "
          f"at 45 nm x {shrink:.3f} (ideal shrink to 28 nm)\n")
    print("| block | published (mm2, <=) | ours 45 nm | ours at 28 nm | ours / published |")
    print("|---|---:|---:|---:|---:|")
    tot_pub = tot_ours = 0.0
    for name, share in PUBLISHED.items():
        pub, mine = share * DIE_MM2, ours[name] * shrink
        tot_pub, tot_ours = tot_pub + pub, tot_ours + mine
        print(f"| {name} | {pub:.1f} ({share:.0%}) | {ours[name]:.1f} | {mine:.1f} | {mine / pub:.2f} |")
    print(f"| the three together | {tot_pub:.1f} | {tot_ours / shrink:.1f} | {tot_ours:.1f} | {tot_ours / tot_pub:.2f} |")
    mmu = PUBLISHED["Matrix Multiply Unit (64K MACs)"] * DIE_MM2 / (a.pe_mm2 * shrink)
    print(f"\nCell-to-layout factor the MMU implies (wiring, clock tree, placement; in-sample, this chip only): "
          f"{mmu:.2f}x. simulator/area.py leaves it at logic_area_factor = 1.0.")
    nvdla(mmu, shrink)
    lstp = area(dataclasses.replace(TPU, sram_device="itrs-lstp"))
    print(f"\nWith itrs-lstp cells instead of itrs-hp: Unified Buffer {lstp.act_sram_mm2 * shrink:.1f}, "
          f"accumulators {lstp.out_sram_mm2 * shrink:.1f} mm2 at 28 nm.")

    hw = load_hardware("besa-64x64")
    base = area(hw)
    no_extra = base.total_mm2 - base.sparse_extra_mm2
    print(f"\nbesa-64x64 (45 nm): {base.total_mm2:.3f} mm2 = PEs {base.pe_mm2:.3f} + vector {base.vector_mm2:.3f} "
          f"+ sparse extras {base.sparse_extra_mm2:.3f} + SRAM {base.sram_mm2:.3f}. Sparse extras (an assumption) "
          f"at 0x: {no_extra:.3f} ({no_extra / base.total_mm2 - 1:+.1%}); at 2x: "
          f"{base.total_mm2 + base.sparse_extra_mm2:.3f} ({base.sparse_extra_mm2 / base.total_mm2:+.1%}).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
