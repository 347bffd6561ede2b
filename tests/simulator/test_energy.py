"""Energy follows the hardware: operand widths, buffer sizes, latency (Horowitz, ISSCC 2014)."""

import numpy as np
import pytest

from simulator import LayerOp, Simulator, apply_overrides, load_hardware
from simulator.energy import mac_pj, sram_pj_per_byte, static_mw


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
    assert static_mw(hw) == pytest.approx(0.1 * 4096 * 0.23 * 500 * 1e-3)  # 10% of peak MAC power, mW
    fixed = apply_overrides(hw, {"static_mw": 100.0})
    res = Simulator(fixed).run_op(LayerOp(0, "q_proj", 256, 256, 1))
    assert res.energy_static_pj == pytest.approx(100.0 * res.sparse_cycles / 500 * 1e3)  # mW x us = nJ


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
