"""Area follows the hardware: operand widths, PE count, buffer sizes and port widths (simulator/area.py)."""

import json
from pathlib import Path

import pandas as pd
import pytest

from simulator import apply_overrides, load_hardware
from simulator.area import (SRAM_AREA_KIB, SRAM_AREA_MM2, SRAM_AREA_PORT_BITS, area, lane_um2, max_port_bits,
                            pe_um2, port_bits, sram_area_mm2)
from simulator.config import SRAM_DEVICES
from simulator.simulate import step_metrics

CACTI_RUNS = Path(__file__).resolve().parents[2] / "bench" / "cacti_results.json"


@pytest.fixture(scope="module")
def hw():
    return load_hardware("besa-64x64")


def test_area_table_is_what_cacti_gave():
    """bench/cacti_results.json holds CACTI's raw area output (bench/validate_cacti.py --save), one run per
    device, size and port width at least MIN_ROWS deep; the simulator's table keeps 3 significant digits."""
    runs = json.loads(CACTI_RUNS.read_text())["area_runs"]
    expected = {(d, k, b) for d in SRAM_DEVICES for k in SRAM_AREA_KIB for b in SRAM_AREA_PORT_BITS
                if b <= max_port_bits(k)}
    assert {(r["device"], r["kib"], r["port_bits"]) for r in runs} == expected
    for r in runs:
        table = SRAM_AREA_MM2[r["device"]][r["port_bits"]]
        assert table[SRAM_AREA_KIB.index(r["kib"])] == pytest.approx(r["area_mm2"], rel=0.006)
        assert sram_area_mm2(r["device"], r["kib"], r["port_bits"]) == pytest.approx(r["area_mm2"], rel=0.006)
    for device in SRAM_DEVICES:  # the sizes too shallow for a width are the ones left out, and only those
        for bits, row in SRAM_AREA_MM2[device].items():
            assert [v is None for v in row] == [bits > max_port_bits(k) for k in SRAM_AREA_KIB]


def test_pe_area_follows_the_operand_widths(hw):
    # int8: Horowitz's 8-bit multiply 282 um2, a 32-bit accumulate 137 um2, 8 + 8 + 32 register bits
    assert pe_um2(hw) == pytest.approx(282 + 137 + 5.98 * 48)
    assert pe_um2(apply_overrides(hw, {"weight_bits": 4})) == pytest.approx(141 + 137 + 5.98 * 44)
    assert pe_um2(apply_overrides(hw, {"weight_bits": 16, "act_bits": 16})) == pytest.approx(1640 + 1360 + 5.98 * 48)
    assert lane_um2(apply_overrides(hw, {"weight_bits": 32, "act_bits": 32})) == pytest.approx(7700 + 4184)


def test_sram_area_grows_with_size_and_port_width():
    for device in SRAM_DEVICES:
        by_size = [sram_area_mm2(device, kib, 512) for kib in (8, 53, 108, 1024, 24576)]
        assert by_size == sorted(by_size) and len(set(by_size)) == len(by_size)
        by_width = [sram_area_mm2(device, 4096, bits) for bits in (64, 512, 2048, 8192)]
        assert by_width == sorted(by_width) and by_width[-1] > 1.5 * by_width[0]


def test_port_width_is_what_the_engine_reads_a_cycle(hw):
    assert port_bits(hw, "act") == 64 * 8  # one int8 activation per PE row
    assert port_bits(hw, "out") == 2048  # 64 columns of 32-bit partial sums
    assert port_bits(hw, "index") == 512  # 64 columns of 16-bit indices want 1024; 20 KiB allows 640 (256 rows)
    big = apply_overrides(hw, {"pe_rows": 256, "pe_cols": 256, "out_sram_kib": 4096.0})
    assert port_bits(big, "out") == 8192  # 256 x 32 bits
    assert port_bits(apply_overrides(big, {"out_sram_kib": 8.0}), "out") == 256  # 8 KiB is 256 rows of 256 bits
    assert port_bits(apply_overrides(hw, {"pe_rows": 2}), "act") == 64  # at least one 64-bit word


def test_area_breakdown_adds_up_and_follows_the_array(hw):
    a = area(hw)
    parts = a.as_dict()
    assert parts["area_mm2"] == pytest.approx(sum(v for k, v in parts.items() if k != "area_mm2"))
    assert a.pe_mm2 == pytest.approx(64 * 64 * pe_um2(hw) * 1e-6)
    assert a.act_sram_mm2 == pytest.approx(sram_area_mm2(hw.sram_device, hw.act_sram_kib, 512))
    bigger = area(apply_overrides(hw, {"pe_rows": 128}))
    assert bigger.pe_mm2 == pytest.approx(2 * a.pe_mm2)
    assert bigger.act_sram_mm2 > a.act_sram_mm2  # a wider port for 128 rows
    assert area(apply_overrides(hw, {"weight_sram_kib": 530.0})).weight_sram_mm2 > 5 * a.weight_sram_mm2


def test_logic_factor_scales_the_logic_only(hw):
    a, b = area(hw), area(apply_overrides(hw, {"logic_area_factor": 2.5}))
    assert b.logic_mm2 == pytest.approx(2.5 * a.logic_mm2)
    assert b.sram_mm2 == a.sram_mm2
    with pytest.raises(ValueError, match="logic_area_factor must be a positive number"):
        apply_overrides(hw, {"logic_area_factor": 0.0})


def test_published_area_replaces_the_model():
    gpu = load_hardware("rtx4090-gpu")
    a = area(gpu)
    assert a.total_mm2 == 608.5 and a.logic_mm2 == 0 and a.sram_mm2 == 0
    with pytest.raises(ValueError, match="area_mm2 must be a finite number >= 0"):
        apply_overrides(gpu, {"area_mm2": -1.0})


def test_step_metrics_power_is_energy_over_time_and_area_is_the_chips(hw):
    summary = pd.DataFrame([{"op": "total", "sparse_cycles": 500_000.0, "dense_cycles": 1_000_000.0,
                             "speedup": 2.0, "sparsity": 0.5, "energy_pj": 2e9, "dense_energy_pj": 4e9,
                             "energy_saving": 2.0, "energy_mac_pj": 1e9, "energy_sram_pj": 0.5e9,
                             "energy_dram_pj": 0.25e9, "energy_static_pj": 0.25e9}])
    m = step_metrics(summary, hw, tokens=1)
    seconds = 500_000 / (hw.freq_mhz * 1e6)
    assert m["power_mw"] == pytest.approx(2e9 * 1e-12 / seconds * 1e3)
    assert m["power_mac_mw"] == pytest.approx(m["power_mw"] / 2)
    assert sum(m[f"power_{p}_mw"] for p in ("mac", "sram", "dram", "static")) == pytest.approx(m["power_mw"])
    assert m["area_mm2"] == pytest.approx(area(hw).total_mm2)
