"""Energy follows the hardware: operand widths, buffer sizes, latency (Horowitz, ISSCC 2014)."""

import json
from pathlib import Path

import numpy as np
import pytest

from simulator import LayerOp, Simulator, apply_overrides, load_hardware
from simulator.config import SRAM_DEVICES
from simulator.energy import SRAM_LEAK_KIB, SRAM_LEAK_MW, mac_pj, sram_leak_mw, sram_pj_per_byte, static_mw

CACTI_RUNS = Path(__file__).resolve().parents[2] / "bench" / "cacti_results.json"


@pytest.fixture(scope="module")
def hw():
    return load_hardware("besa-64x64")


def test_mac_energy_follows_the_operand_widths(hw):
    assert mac_pj(hw) == pytest.approx(0.2 + 0.03)  # int8 x int8: multiply 0.2 pJ + add 0.03 pJ
    assert mac_pj(apply_overrides(hw, {"weight_bits": 4})) == pytest.approx(0.1 + 0.03)
    assert mac_pj(apply_overrides(hw, {"weight_bits": 16, "act_bits": 16})) == pytest.approx(1.1 + 0.4)  # fp16
    assert mac_pj(apply_overrides(hw, {"weight_bits": 4, "act_bits": 16})) == pytest.approx(1.5)  # dequantized
    assert mac_pj(apply_overrides(hw, {"weight_bits": 32, "act_bits": 32})) == pytest.approx(3.7 + 0.9)
    assert mac_pj(apply_overrides(hw, {"mac_pj": 0.5})) == 0.5  # an explicit value wins


def test_sram_energy_follows_the_buffer_size(hw):
    assert sram_pj_per_byte(hw, 8) == pytest.approx(10 / 8)
    assert sram_pj_per_byte(hw, 32) == pytest.approx(20 / 8)
    assert sram_pj_per_byte(hw, 1024) == pytest.approx(100 / 8)
    assert sram_pj_per_byte(hw, 16) == pytest.approx(np.sqrt(10 * 20) / 8)  # log-log midpoint
    assert 20 / 8 < sram_pj_per_byte(hw, 53) < 100 / 8


def test_static_energy_is_power_times_latency(hw):
    fixed = apply_overrides(hw, {"static_mw": 100.0})
    assert static_mw(fixed) == 100.0  # an explicit value replaces the rule
    res = Simulator(fixed).run_op(LayerOp(0, "q_proj", 256, 256, 1))
    assert res.energy_static_pj == pytest.approx(100.0 * res.sparse_cycles / 500 * 1e3)  # mW x us = nJ


def test_static_power_is_the_leakage_of_the_macs_and_buffers(hw):
    # Buffers at table points, so each leaks exactly what CACTI gave.
    at_points = apply_overrides(hw, {"weight_sram_kib": 8.0, "index_sram_kib": 16.0, "act_sram_kib": 32.0,
                                     "out_sram_kib": 64.0})
    logic = (4096 + 64) * 0.23 * (80.0 + 2.4) / (12.68 + 0.21) * 1e-3  # PEs + vector lanes, Aladdin's uW/pJ
    assert static_mw(at_points) == pytest.approx(logic + 0.000285 + 0.000515 + 0.00101 + 0.00185)
    hp = apply_overrides(at_points, {"sram_device": "itrs-hp"})
    assert static_mw(hp) == pytest.approx(logic + 5.12 + 10.1 + 18.9 + 37.9)
    # fp16 MACs leak in proportion to their energy
    fp16 = apply_overrides(at_points, {"weight_bits": 16, "act_bits": 16})
    assert static_mw(fp16) - static_mw(at_points) == pytest.approx(logic * (1.5 / 0.23 - 1))


def test_sram_leakage_grows_with_size_and_with_the_device():
    for device in SRAM_DEVICES:
        assert sram_leak_mw(device, 64) == pytest.approx(SRAM_LEAK_MW[device][SRAM_LEAK_KIB.index(64)])
        sizes = [sram_leak_mw(device, kib) for kib in (4, 8, 53, 108, 1024, 65536)]
        assert sizes == sorted(sizes) and len(set(sizes)) == len(sizes)
        mid = sram_leak_mw(device, 2 ** 4.5)  # log-log midpoint of 16 and 32 KiB
        assert mid == pytest.approx(np.sqrt(sram_leak_mw(device, 16) * sram_leak_mw(device, 32)))
    for kib in (8, 53, 1024):
        assert sram_leak_mw("itrs-hp", kib) > sram_leak_mw("itrs-lop", kib) > sram_leak_mw("itrs-lstp", kib)


def test_leakage_table_is_what_cacti_gave():
    """bench/cacti_results.json holds CACTI's raw output (bench/validate_cacti.py --save)."""
    runs = json.loads(CACTI_RUNS.read_text())["runs"]
    assert {(r["device"], r["kib"]) for r in runs} == {(d, k) for d in SRAM_DEVICES for k in SRAM_LEAK_KIB}
    for r in runs:
        cacti = r["leak_mw"] + r["gate_mw"]
        assert SRAM_LEAK_MW[r["device"]][SRAM_LEAK_KIB.index(r["kib"])] == pytest.approx(cacti, rel=0.006)


def test_bigger_leaky_buffers_cost_static_power(hw):
    small = apply_overrides(hw, {"sram_device": "itrs-hp"})
    big = apply_overrides(small, {"weight_sram_kib": 530.0, "out_sram_kib": 1080.0})
    extra = (sram_leak_mw("itrs-hp", 530) - sram_leak_mw("itrs-hp", 53)
             + sram_leak_mw("itrs-hp", 1080) - sram_leak_mw("itrs-hp", 108))
    assert extra > 400  # mW: hp cells, about 0.5 mW per KiB
    assert static_mw(big) - static_mw(small) == pytest.approx(extra)
    op = LayerOp(0, "q_proj", 256, 256, 1)
    a, b = Simulator(small).run_op(op), Simulator(big).run_op(op)
    per_cycle = [r.energy_static_pj / r.sparse_cycles for r in (a, b)]
    assert per_cycle[1] / per_cycle[0] == pytest.approx(static_mw(big) / static_mw(small))


def test_unknown_sram_device_is_refused(hw):
    with pytest.raises(ValueError, match="sram_device must be one of itrs-hp, itrs-lop, itrs-lstp"):
        apply_overrides(hw, {"sram_device": "finfet"})


def test_breakdown_adds_up_and_fp16_costs_more(hw):
    mask = np.random.default_rng(0).random((512, 512)) >= 0.5
    op = LayerOp(0, "q_proj", 512, 512, 16, lambda: mask)
    int8 = Simulator(hw).run_op(op)
    fp16 = Simulator(apply_overrides(hw, {"weight_bits": 16, "act_bits": 16})).run_op(op)
    for r in (int8, fp16):
        parts = r.energy_mac_pj + r.energy_sram_pj + r.energy_dram_pj + r.energy_static_pj
        assert r.energy_pj == pytest.approx(parts)
        assert r.energy_dram_pj == pytest.approx(r.dram_bytes * 160.0)
    assert fp16.energy_mac_pj == pytest.approx(int8.energy_mac_pj * 1.5 / 0.23)


def test_energy_ratio_in_words():
    from simulator.simulate import saving_words

    assert saving_words(1.5) == "1.500x less" and saving_words(0.8) == "1.250x more" and saving_words(1.0) == "1.000x less"


def test_dram_traffic_split_by_hand():
    """LLaMA-7B decode at context 2048, 8-bit KV cache: 32 blocks x (K and V) x 2048 x 4096 bytes of cache;
    the three parts add up to the step's traffic, which streams at most at the peak bandwidth."""
    from simulator import Simulator, get_shape, load_hardware, results_frame
    from simulator.simulate import traffic
    from simulator.synthetic import AllocationProfile, synthetic_ops

    hw = load_hardware("besa-64x64")
    layers = results_frame(Simulator(hw).run(synthetic_ops(get_shape("llama-7b"), 1, AllocationProfile(0.5), None, 2048)))
    t = traffic(layers, hw)
    assert t["kv_cache_mb"] == pytest.approx(32 * 2 * 2048 * 4096 / 1e6)
    assert t["weights_mb"] + t["kv_cache_mb"] + t["activations_mb"] == pytest.approx(t["dram_mb"])
    assert 0.9 * hw.dram_gbps < t["achieved_gbps"] <= hw.dram_gbps
