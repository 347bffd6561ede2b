"""`besa-hw sweep` and `besa-hw compare` as a user runs them."""

import json

import pandas as pd
import pytest

from besa_hw.cli import main

from conftest import write_fake_run


def test_sweep_two_parameter_grid(tmp_path, capsys):
    out = tmp_path / "sweep"
    args = ["sweep", "--shape", "smollm2-135m", "--blocks", "1", "--phase", "prefill", "--tokens", "64",
            "--grid", "pe_rows=8,64", "--grid", "dram_gbps=19.2,1228.8", "--workers", "1", "--out", str(out)]
    assert main(args) == 0
    tidy, points = pd.read_csv(out / "sweep.csv"), pd.read_csv(out / "points.csv")
    assert len(tidy) == 4 * tidy.name.nunique() and len(points) == 4 and (tidy.kind == "linear").sum() == 4 * 7
    assert {"pe_rows", "dram_gbps", "speedup_e2e", "speedup_linear", "memory_bound_fraction"} <= set(points.columns)
    assert (out / "sweep_vs_params.png").is_file() and (out / "sweep_heatmap.png").is_file()
    slow = points[(points.pe_rows == 64) & (points.dram_gbps == 19.2)].iloc[0]
    fast = points[(points.pe_rows == 64) & (points.dram_gbps == 1228.8)].iloc[0]
    assert slow.memory_bound_fraction > fast.memory_bound_fraction
    assert f"4 points x {len(tidy) // 4} ops" in capsys.readouterr().out


@pytest.mark.parametrize("extra,text", [
    (["--grid", "pe_rowz=8,16"], "'pe_rowz' is not a HardwareConfig field"),
    ([], "empty sweep grid"),
    (["--grid", "dram_gbps="], "no values given"),
])
def test_sweep_errors(tmp_path, capsys, extra, text):
    out = tmp_path / "sweep"
    assert main(["sweep", "--shape", "smollm2-135m", "--blocks", "1", "--out", str(out)] + extra) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and text in err
    assert not out.exists()


def test_compare_runs_cli(tmp_path, capsys):
    a = write_fake_run(tmp_path / "besa", 0.5, {"dense": 20.0, "pruned": 30.0})
    b = write_fake_run(tmp_path / "wanda", 0.5, {"dense": 20.0, "pruned": 35.0}, row_spread=0.0, seed=1)
    out = tmp_path / "cmp"
    assert main(["compare", str(a), str(b), "--out", str(out)]) == 0
    table = pd.read_csv(out / "compare.csv")
    assert list(table.run) == ["besa", "wanda"] and list(table.ppl) == [30.0, 35.0]
    # Uneven rows (the "besa" run) cost load imbalance on the sparse engine.
    assert table.load_imbalance_decode[0] > table.load_imbalance_decode[1]
    for name in ("allocations.csv", "layers.csv", "tradeoff.png", "allocations.png"):
        assert (out / name).is_file()


def test_compare_errors(tmp_path, capsys):
    from simulator.workload import ModelShape

    a = write_fake_run(tmp_path / "a")
    b = write_fake_run(tmp_path / "b", shape=ModelShape("wide", 64, 256, 2, 4, 2, 16))
    (tmp_path / "nomasks").mkdir()
    (tmp_path / "nomasks" / "manifest.json").write_text(json.dumps({"model": {}}))
    cases = [([str(a), str(b)], "different models"),
             ([str(a), str(tmp_path / "nomasks")], "masks.safetensors is missing"),
             ([], "nothing to compare")]
    for runs, text in cases:
        assert main(["compare", *runs, "--out", str(tmp_path / "cmp")]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and text in err, err
    assert not (tmp_path / "cmp").exists()


def test_sweep_settings_from_the_command_line_win_or_clash_loudly(tmp_path, capsys):
    sweep_file = tmp_path / "s.toml"
    sweep_file.write_text("[hardware]\npe_cols = 16\n[sweep]\npe_rows = [8, 16]\n")
    base = ["sweep", "--shape", "smollm2-135m", "--blocks", "1", "--linear-only", "--workers", "1"]
    out = tmp_path / "a"
    assert main([*base, "--sweep-file", str(sweep_file), "--set", "pe_cols=8", "--out", str(out)]) == 0
    tidy = pd.read_csv(out / "sweep.csv")
    assert set(tidy.pe_rows) == {8, 16}
    record = json.loads((out / "sweep.json").read_text())
    assert record["base_hardware"]["pe_cols"] == 8 and record["grid"] == {"pe_rows": [8, 16]}
    assert record["workload"]["shape"] == "smollm2-135m" and record["command"]
    points = pd.read_csv(out / "points.csv")
    assert (points.tokens_per_s > 0).all() and (points.energy_per_token_uj > 0).all()
    capsys.readouterr()
    for extra, needle in ((["--grid", "pe_rows=8", "--grid", "pe_rows=16"], "given twice"),
                          (["--sweep-file", str(sweep_file), "--grid", "pe_rows=32"], "also swept by the sweep file"),
                          (["--grid", "pe_rows=8,16", "--set", "pe_rows=32"], "both swept")):
        assert main([*base, *extra, "--out", str(tmp_path / "b")]) == 2
        assert needle in capsys.readouterr().err


def test_memory_bound_fraction_is_a_share_of_time():
    from simulator.sweep import point_totals

    tidy = pd.DataFrame({"point": [0, 0, 0], "pe_rows": [8, 8, 8], "op": ["a", "b", "c"], "kind": ["linear"] * 3,
                         "bound": ["memory", "memory", "compute"], "out_features": [1] * 3, "in_features": [1] * 3,
                         "nnz": [1] * 3, "dense_cycles": [10, 10, 80], "sparse_cycles": [10, 10, 80],
                         "latency_us": [1.0] * 3, "energy_pj": [1.0] * 3, "dense_energy_pj": [1.0] * 3})
    assert point_totals(tidy, ["pe_rows"]).memory_bound_fraction.iloc[0] == pytest.approx(0.2)  # 2 of 3 ops, 20% of time


def test_sweep_budget_flags_points_and_draws_the_front(tmp_path, capsys):
    out = tmp_path / "s"
    args = ["sweep", "--shape", "smollm2-135m", "--blocks", "1", "--grid", "pe_rows=8,64",
            "--grid", "dram_gbps=19.2,1228.8", "--workers", "1", "--out", str(out)]
    assert main([*args, "--budget", "power_mw<=20000", "--budget", "tokens_per_s>=1"]) == 0
    points = pd.read_csv(out / "points.csv")
    assert list(points.within_budget) == list((points.power_mw <= 20000) & (points.tokens_per_s >= 1))
    assert points.within_budget.any() and not points.within_budget.all()
    assert list(points.power_mw) == pytest.approx(list(points.energy_pj / points.latency_us / 1e3))
    assert (out / "sweep_pareto.png").stat().st_size > 10_000
    # every point has its area; 8 PE rows make a smaller chip than 64, and an area budget follows it
    assert (points.area_mm2 > 0).all()
    small, big = points[points.pe_rows == 8].area_mm2.max(), points[points.pe_rows == 64].area_mm2.min()
    assert small < big
    assert main([*args, "--overwrite", "--budget", f"area_mm2<={(small + big) / 2}"]) == 0
    points = pd.read_csv(out / "points.csv")
    assert list(points.within_budget) == list(points.pe_rows == 8)
    for bad, needle in (("power<500", "expected COLUMN<=X"), ("chip_cost<=5", "not a points.csv column")):
        assert main([*args, "--overwrite", "--budget", bad]) == 2
        assert needle in capsys.readouterr().err


def test_knee_by_hand():
    import numpy as np

    from besa_hw.report.explore import knee

    x, y = np.array([0.0, 1.0, 2.0, 10.0]), np.array([0.0, 8.0, 9.0, 10.0])
    assert knee(x, y) == 1  # (1, 8): farthest from the chord (0, 0)-(10, 10)
