"""Unstructured 50% vs 2:4 at equal sparsity, on MAC lanes (besa-64x64) and on a systolic array
(systolic-64x64), decode (context 2048) and prefill (2048 tokens), compute-only and with memory;
plus the BESA-paper preset on one 4096x4096 layer and the GPU preset against MACKO's measurement.

    python bench/structured_vs_unstructured.py        # the README tables (LLaMA-7B / LLaMA-2-7B shapes)
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from besa_hw.pipeline import WorkloadSpec, build_ops, simulate  # noqa: E402
from simulator import load_hardware, step_metrics  # noqa: E402
from simulator.synthetic import AllocationProfile  # noqa: E402


def metrics(hw_name: str, profile: AllocationProfile, phase: str, compute_only: bool, shape: str = "llama-7b",
            context: int | None = None) -> dict:
    hw = load_hardware(hw_name)
    tokens = 1 if phase == "decode" else 2048
    spec = WorkloadSpec(shape=shape, phase=phase, tokens=tokens, profile=profile, context=context)
    _, summary = simulate(build_ops(spec), hw, compute_only=compute_only)
    return step_metrics(summary, hw, tokens)


def main() -> None:
    print("LLaMA-7B, whole decoder step, synthetic masks at 50%: speedup vs dense on the same hardware, "
          "Linear-only / end-to-end\n")
    print("| organisation | phase | mode | unstructured 50% | 2:4 |\n|---|---|---|---|---|")
    for hw in ("besa-64x64", "systolic-64x64"):
        for phase in ("decode", "prefill"):
            for co in (True, False):
                cells = []
                for prof in (AllocationProfile(0.5), AllocationProfile(0.5, nm=(2, 4))):
                    m = metrics(hw, prof, phase, co)
                    cells.append(f"{m['speedup_linear']:.3f}x / {m['speedup_e2e']:.3f}x")
                print(f"| {hw} | {phase} | {'compute-only' if co else 'with memory'} | {cells[0]} | {cells[1]} |")
    print("\nrtx4090-gpu (bandwidth-faithful, 90% of 1008 GB/s) vs MACKO's measurement (Llama-2-7B fp16, "
          "RTX 4090, batch 1, 100 generated tokens), decode at context 100:\n")
    print("| density | measured tokens/s | simulated tokens/s | measured speedup | simulated speedup (end-to-end) |"
          "\n|---|---|---|---|---|")
    for density, measured in ((1.0, 66.53), (0.5, 98.60), (0.1, 255.01)):
        m = metrics("rtx4090-gpu", AllocationProfile(1 - density), "decode", False, "llama2-7b", 100)
        print(f"| {density:.1f} | {measured:.2f} | {m['tokens_per_s']:.2f} | {measured / 66.53:.3f}x "
              f"| {m['speedup_e2e']:.3f}x |")


if __name__ == "__main__":
    main()
