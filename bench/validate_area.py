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
from simulator.area import area  # noqa: E402

NODE_NM, MODEL_NM = 28.0, 45.0
DIE_MM2 = 331.0  # "< 331" (Table 2)
PUBLISHED = {"Unified Buffer (24 MiB)": 0.29, "Matrix Multiply Unit (64K MACs)": 0.24,
             "Accumulators (4 MiB)": 0.06}
TPU = HardwareConfig(name="tpu-v1", freq_mhz=700.0, pe_rows=256, pe_cols=256, dense_engine="systolic-ws",
                     vector_lanes=256, weight_sram_kib=256.0, index_sram_kib=1.0, act_sram_kib=24576.0,
                     out_sram_kib=4096.0, weight_bits=8, act_bits=8, sram_device="itrs-hp")


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
    lstp = area(dataclasses.replace(TPU, sram_device="itrs-lstp"))
    print(f"With itrs-lstp cells instead of itrs-hp: Unified Buffer {lstp.act_sram_mm2 * shrink:.1f}, "
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
