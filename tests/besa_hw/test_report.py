"""build_report on a tiny simulated run: files exist and the tables hold the simulated numbers."""

import json

import pandas as pd
import pandas.testing as pdt
import pytest

from besa_hw.report import build_report, markdown_table
from besa_hw.report.render import formatted
from besa_hw.pipeline import simulate_run
from simulator import load_hardware

from conftest import write_fake_run


def simulate_phase(run, phase, tokens):
    simulate_run(run, load_hardware(), {phase: tokens or 1})


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    path = write_fake_run(tmp_path_factory.mktemp("runs") / "tiny", 0.5,
                          {"dense": 28.7, "pruned": 50.1, "data": "wikitext2", "seqlen": 128, "windows": 4})
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["hyperparameters"]["nm"] = None  # shown as an em dash, never as Python's None
    (path / "manifest.json").write_text(json.dumps(manifest))
    simulate_phase(path, "decode", None)
    simulate_phase(path, "prefill", 64)
    return path


@pytest.fixture(scope="module")
def report(run):
    return build_report(run)


def test_report_files_exist(report, run):
    assert report == run / "report"
    for name in ["report.md", "report.html", "latency_per_layer.png", "speedup_by_op.png",
                 "allocation_heatmap.png", "row_sparsity.png", "time_breakdown_decode.png",
                 "time_breakdown_prefill.png", "roofline.png", "energy_by_op.png", "layers_decode.csv",
                 "layers_prefill.csv", "summary_decode.csv", "summary_prefill.csv", "blocks_decode.csv"]:
        assert (report / name).is_file() and (report / name).stat().st_size > 0, name


def test_tables_hold_simulated_numbers(report, run):
    md = (report / "report.md").read_text()
    for phase in ("decode", "prefill"):
        pdt.assert_frame_equal(pd.read_csv(report / f"layers_{phase}.csv"),
                               pd.read_csv(run / "sim" / phase / "layers.csv"))
        summary = pd.read_csv(run / "sim" / phase / "summary.csv")
        linear, total = summary.iloc[-2], summary.iloc[-1]
        n_ops = len(pd.read_csv(run / "sim" / phase / "layers.csv"))
        assert f"| linear | 14 | {linear.sparsity:.3f} |" in md
        assert f"| total | {n_ops} | {total.sparsity:.3f} |" in md
        assert f"| {total.speedup:.3f} |" in md
    assert "| pe_rows | 64 |" in md


def test_headline_comes_first(report, run):
    md = (report / "report.md").read_text()
    assert md.index("## Summary") < md.index("## Per op type") < md.index("## Configuration")
    headline = md[md.index("## Summary"):md.index("## Per op type")]
    assert "| model | tiny-llama (2 blocks) |" in headline and "| method | besa |" in headline
    assert "| sparsity | target 0.5, achieved 0.50" in headline
    assert "dense 28.70 -> pruned 50.10 (+74.6%) on wikitext2, 4 x 128 tokens" in headline
    freq_mhz = json.loads((run / "sim" / "hardware.json").read_text())["freq_mhz"]
    def row(name: str) -> list[str]:  # the headline block has one column per phase (it fits 1366 px)
        line = next(line for line in headline.splitlines() if line.startswith(f"| {name} |"))
        return [c.strip() for c in line.strip("|").split("|")][1:]

    assert row("per phase") == ["decode", "prefill"]
    for i, (phase, tokens) in enumerate((("decode", 1), ("prefill", 64))):
        layers = pd.read_csv(run / "sim" / phase / "layers.csv")
        seconds = layers.sparse_cycles.sum() / (freq_mhz * 1e6)
        speedup = layers.dense_cycles.sum() / layers.sparse_cycles.sum()
        lin = layers[layers.kind == "linear"]
        assert int(float(row("tokens")[i])) == tokens and "whole decoder step" in row("simulated")[i]
        assert float(row("speedup, Linear-only")[i].rstrip("x")) == pytest.approx(
            lin.dense_cycles.sum() / lin.sparse_cycles.sum(), abs=5e-4)
        assert float(row("speedup, end-to-end")[i].rstrip("x")) == pytest.approx(speedup, abs=5e-4)
        assert float(row("sparse tokens/s")[i].replace(",", "")) == pytest.approx(tokens / seconds, rel=1e-3)
    assert "end-to-end vs dense fp16 (assumes the bits)" in headline
    assert "8-bit weights, 8-bit activations (simulated); assumed: the perplexity is of fp32 weights" in headline


def test_no_none_and_one_format_per_column(report):
    md = (report / "report.md").read_text()
    assert "None" not in md and "| nm | — |" in md
    table = formatted(pd.DataFrame({"energy_uj": [963.552, 1014.2, float("nan")], "n": [1, 2000, 3],
                                    "x": [None, "a", True]}))
    assert list(table.energy_uj) == ["964", "1,014", "—"] and list(table.n) == ["1", "2,000", "3"]
    assert list(table.x) == ["—", "a", "True"]


def test_reproducibility(report, run):
    md = (report / "report.md").read_text()
    repro = md[md.index("## Reproducibility"):]
    assert "Report command: `" in repro and "git commit" in repro
    for package in ("python", "numpy", "simpy", "torch", "transformers"):
        assert f"| {package} | " in repro
    assert "| besa_hw | 0.1.0 | 0.1.0 |" in repro
    assert json.loads((report / "manifest.json").read_text()) == json.loads((run / "manifest.json").read_text())


def test_html_is_self_contained(report):
    page = (report / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 8
    assert 'src="latency' not in page and "<table" in page
    # wide tables scroll inside a wrapper instead of being clipped
    assert page.count("<table") == page.count('<div class="table-wrap"><table') and "overflow-x:auto" in page
    assert ">None<" not in page


def test_missing_parts(tmp_path, run):
    bare = write_fake_run(tmp_path / "bare")
    with pytest.raises(FileNotFoundError, match="no simulation results"):
        build_report(bare)
    simulate_phase(bare, "decode", None)
    out = build_report(bare, tmp_path / "out")
    md = (out / "report.md").read_text()
    assert "| perplexity | not evaluated |" in md and "prefill: not simulated" in md
    assert not (out / "layers_prefill.csv").exists()
    (bare / "masks.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="masks.safetensors"):
        build_report(bare)


def test_compare_adds_tradeoff(tmp_path, run):
    compare = pd.DataFrame({"run": ["a", "b"], "ppl": [30.0, 40.0], "speedup_e2e_decode": [1.5, 1.6],
                            "speedup_e2e_prefill": [1.7, 1.8], "achieved_sparsity": [0.5, 0.6]})
    out = build_report(run, tmp_path / "cmp", compare=compare)
    assert (out / "tradeoff.png").is_file()
    assert "| a | 30.000 | 1.500 | 1.700 | 0.500 |" in (out / "report.md").read_text()


def test_markdown_table():
    df = pd.DataFrame({"op": ["q|x", "total"], "count": [1, 1234], "speedup": [1.5, float("nan")]})
    assert markdown_table(df).splitlines() == [
        "| op | count | speedup |", "| :--- | ---: | ---: |", "| q\\|x | 1 | 1.500 |", "| total | 1,234 | — |"]


def test_hardware_table_shows_the_values_used(report):
    md = (report / "report.md").read_text()
    hardware = md[md.index("### Hardware"):]
    assert "| mac_pj | 0.23 (derived from the operand widths) |" in hardware  # int8: 0.2 + 0.03 pJ
    assert "(unused: bitmap format)" in hardware and "| mac_pj | 0.0 |" not in hardware


def test_hardware_table_shows_derived_values_not_zeros():
    import dataclasses

    from besa_hw.report.document import hardware_shown
    from simulator import load_hardware
    from simulator.area import area

    hw = load_hardware("besa-64x64")
    shown = hardware_shown(dataclasses.asdict(hw))
    assert shown["area_mm2"].startswith(f"{area(hw).total_mm2:.3g} (modelled")
    assert "derived" in shown["static_mw"] and "derived" in shown["mac_pj"]


def test_headline_energy_and_power_read_without_e_notation():
    import pandas as pd

    from besa_hw.report.document import headline_block

    speed = pd.DataFrame([{"phase": "decode", "energy per token (uJ)": 20180.4, "average power (mW)": 12003.2,
                           "sparse latency (ms)": 1.68123}])
    cells = dict(zip(headline_block(speed)["per phase"], headline_block(speed)["decode"]))
    assert cells == {"energy per token (uJ)": "20,180", "average power (mW)": "12,003", "sparse latency (ms)": "1.681"}
