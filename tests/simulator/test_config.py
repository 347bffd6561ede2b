import dataclasses

import pytest

from simulator.config import HardwareConfig, apply_overrides, available_presets, load_hardware, parse_overrides


def test_presets_carry_published_numbers():
    assert {"besa-64x64", "vitcod-64x8"} <= set(available_presets())
    vitcod = load_hardware("vitcod-64x8")
    assert (vitcod.freq_mhz, vitcod.dram_gbps, vitcod.pe_rows, vitcod.pe_cols) == (500.0, 76.8, 64, 8)
    assert (vitcod.weight_sram_kib, vitcod.index_sram_kib, vitcod.out_sram_kib) == (53.0, 20.0, 108.0)
    besa = load_hardware()
    assert besa.name == "besa-64x64" and besa.num_pes == 4096


def test_bytes_per_cycle_and_buffers():
    hw = load_hardware("besa-64x64")
    assert hw.dram_bytes_per_cycle == pytest.approx(153.6)  # 76.8 GB/s at 500 MHz
    assert hw.buffer_bytes("weight") == 53 * 1024 // 2
    assert dataclasses.replace(hw, double_buffer=False).buffer_bytes("weight") == 53 * 1024


def test_overrides_are_typed_and_checked():
    hw = apply_overrides(HardwareConfig(), parse_overrides(["pe_rows=32", "dram_gbps=25.6", "double_buffer=false"]))
    assert (hw.pe_rows, hw.dram_gbps, hw.double_buffer) == (32, 25.6, False)
    with pytest.raises(ValueError, match="unknown hardware key 'pe_row'"):
        apply_overrides(HardwareConfig(), {"pe_row": "3"})
    with pytest.raises(ValueError, match="pe_rows expects int"):
        apply_overrides(HardwareConfig(), {"pe_rows": "many"})
    with pytest.raises(ValueError, match="key=value"):
        parse_overrides(["pe_rows"])


@pytest.mark.parametrize("field,value,msg", [
    ("pe_rows", 0, "pe_rows must be a positive integer"),
    ("dram_gbps", -1.0, "dram_gbps must be a positive number"),
    ("sparse_format", "coo", "sparse_format must be one of"),
    ("column_split", "half", "column_split must be one of"),
    ("dense_pe_fraction", 1.0, "dense_pe_fraction"),
    ("sparse_cycles_per_nnz", 0.5, "sparse_cycles_per_nnz"),
    ("op_overhead_us", -1.0, "op_overhead_us must be a finite number >= 0"),
])
def test_invalid_values_raise_actionable_errors(field, value, msg):
    with pytest.raises(ValueError, match=msg):
        HardwareConfig(**{field: value})


def test_unknown_preset_and_missing_file(tmp_path):
    with pytest.raises(ValueError, match="unknown hardware preset 'tpu'"):
        load_hardware("tpu")
    with pytest.raises(FileNotFoundError):
        load_hardware(str(tmp_path / "nope.toml"))
    bad = tmp_path / "bad.toml"
    bad.write_text("[hardware]\npe_rows = = 3\n")
    with pytest.raises(ValueError, match="invalid TOML"):
        load_hardware(str(bad))


def test_toml_file_overrides_defaults(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('[hardware]\npe_rows = 16\nsparse_format = "bitmap"\n')
    hw = load_hardware(str(path), {"pe_cols": 16})
    assert (hw.name, hw.pe_rows, hw.pe_cols, hw.sparse_format) == ("mine", 16, 16, "bitmap")


def test_one_type_rule_for_files_and_the_command_line(tmp_path):
    """A --set value is read as the TOML literal it spells: 32.0 is refused for an integer field on the
    command line as in a file, and a quoted "32" is refused in a file as it would be spelled there."""
    with pytest.raises(ValueError, match="pe_rows expects int, got 32.0"):
        apply_overrides(HardwareConfig(), parse_overrides(["pe_rows=32.0"]))
    for body, needle in (('[hardware]\npe_rows = 32.0\n', "pe_rows expects int, got 32.0"),
                         ('[hardware]\npe_rows = "32"\n', "pe_rows expects int, got '32'"),
                         ('[hw]\npe_rows = 32\n', r"unknown table \[hw\]")):
        path = tmp_path / "h.toml"
        path.write_text(body)
        with pytest.raises(ValueError, match=needle):
            load_hardware(str(path))
    assert apply_overrides(HardwareConfig(), parse_overrides(["dram_gbps=25", "double_buffer=true"])).dram_gbps == 25.0
