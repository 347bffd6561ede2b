import os
from pathlib import Path

import pandas as pd
import pandas.testing as pdt
import pytest

from besa_hw.cli import main

GOLDEN = Path(__file__).parents[1] / "simulator" / "golden" / "smollm2_2blocks_decode.csv"
REQUIRED = ["block", "op", "out_features", "in_features", "tokens", "nnz", "sparsity", "dense_cycles",
            "sparse_cycles", "speedup", "memory_cycles", "stall_cycles", "utilization", "dram_bytes",
            "energy_pj", "bound"]


def test_simulate_writes_layers_and_summary(tmp_path, capsys):
    out = tmp_path / "sim"
    assert main(["simulate", "--shape", "smollm2-135m", "--blocks", "2", "--out", str(out)]) == 0
    layers = pd.read_csv(out / "layers.csv")
    summary = pd.read_csv(out / "summary.csv")
    assert set(REQUIRED) <= set(layers.columns)
    linear = layers[layers.kind == "linear"]
    assert len(linear) == 14 and list(linear.op[:7]) == ["q_proj", "k_proj", "v_proj", "o_proj",
                                                          "gate_proj", "up_proj", "down_proj"]
    assert len(layers) == 1 + 2 * 16  # the embedding gather, then 16 ops per block (no head: 2 of 30 blocks)
    assert list(summary.op.iloc[-2:]) == ["linear", "total"]
    assert summary.speedup.iloc[-2] == pytest.approx(linear.dense_cycles.sum() / linear.sparse_cycles.sum())
    blocks = pd.read_csv(out / "blocks.csv")
    assert list(blocks.block.astype(str)) == ["-1", "0", "1", "total"]  # -1: the embedding
    assert blocks.dense_cycles.iloc[-1] == layers.dense_cycles.sum()
    assert summary.speedup.iloc[-1] == pytest.approx(layers.dense_cycles.sum() / layers.sparse_cycles.sum())
    printed = capsys.readouterr().out
    assert "down_proj" in printed and "Linear-only" in printed and "end-to-end" in printed and "tokens/s" in printed
    total = summary.iloc[-1]
    parts = [total[f"energy_{p}_pj"] / total.energy_pj * 100 for p in ("mac", "sram", "dram", "static")]
    assert f"energy: {total.energy_pj / 1e9:.3f} mJ per step (dense {total.dense_energy_pj / 1e9:.3f} mJ" in printed
    assert f"MAC {parts[0]:.2g}%, SRAM {parts[1]:.2g}%, DRAM {parts[2]:.2g}%, static {parts[3]:.2g}%" in printed


def test_golden_layers_csv(tmp_path):
    """The whole per-layer table for a fixed synthetic workload (scale-sim style golden trace)."""
    out = tmp_path / "sim"
    assert main(["simulate", "--shape", "smollm2-135m", "--blocks", "2", "--quiet", "--out", str(out)]) == 0
    got = pd.read_csv(out / "layers.csv")
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.write_text(got.to_csv(index=False))
    pdt.assert_frame_equal(got, pd.read_csv(GOLDEN), check_exact=False, rtol=1e-9)


def test_compute_only_prefill_and_vitcod(tmp_path):
    out = tmp_path / "sim"
    args = ["simulate", "--shape", "llama-7b", "--blocks", "1", "--compute-only", "--hw", "vitcod-64x8",
            "--quiet", "--out", str(out)]
    assert main(args) == 0
    layers = pd.read_csv(out / "layers.csv")
    assert (layers.memory_cycles == 0).all() and (layers.bound == "compute").all()
    layers = layers[layers.kind == "linear"]
    # 512 PEs, one token: dense cycles = out * in / 512.
    assert list(layers.dense_cycles) == [o * i // 512 for o, i in zip(layers.out_features, layers.in_features)]


def assert_one_line_error(capsys, args, text, out_dir=None):
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "error" in err and text in err, err
    assert out_dir is None or not out_dir.exists()


@pytest.mark.parametrize("extra,text", [
    (["--hw", "tpu-v9"], "unknown hardware preset 'tpu-v9'"),
    (["--set", "pe_colz=4"], "unknown hardware key 'pe_colz'"),
    (["--set", "pe_rows=-4"], "pe_rows must be a positive integer"),
    (["--set", "act_sram_kib=0.0001"], "act_sram_kib = 0.0001 is smaller than one byte"),
    (["--tokens", "0"], "tokens must be a positive integer"),
    (["--sparsity", "1.5"], "--sparsity must be in [0, 1), got 1.5"),
])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, extra, text):
    out = tmp_path / "sim"
    assert_one_line_error(capsys, ["simulate", "--shape", "llama-7b", "--blocks", "1", "--out", str(out)] + extra,
                          text, out)


def test_missing_run_folder_and_unknown_shape(tmp_path, capsys):
    assert_one_line_error(capsys, ["simulate", "--run", str(tmp_path / "nope")], "run folder not found")
    (tmp_path / "empty").mkdir()
    assert_one_line_error(capsys, ["simulate", "--run", str(tmp_path / "empty")], "manifest.json is missing")
    assert_one_line_error(capsys, ["simulate", "--shape", "gpt-5"], "unknown model shape 'gpt-5'")
    assert_one_line_error(capsys, ["simulate", "--run", str(tmp_path / "empty"), "--sparsity", "0.7"],
                          "--sparsity applies to synthetic masks")


def test_row_dist_help_is_complete(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    with pytest.raises(SystemExit):
        main(["simulate", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert ("--row-dist {none,uniform,normal} synthetic masks: how the sparsity of each weight row varies "
            "around the layer's sparsity: none (every row the same; the default), uniform (each row within "
            "+/- S of it) or normal (standard deviation S), with S set by --row-spread") in text


def test_latency_table_command(tmp_path, capsys):
    out = tmp_path / "table.csv"
    args = ["latency-table", "--shape", "smollm2-135m", "--hw", "vitcod-64x8", "--grid-step", "0.25",
            "--cache-dir", str(tmp_path / "cache"), "--out", str(out)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "vitcod-64x8, smollm2-135m (30 blocks), decode, 1 tokens, context 2048" in printed
    table = pd.read_csv(out)
    assert sorted(set(table.sparsity[table.format == "sparse"])) == [0.0, 0.25, 0.5, 0.75]
    assert main(args) == 0 and "(from the cache)" in capsys.readouterr().out
    assert main(["latency-table", "--shape", "smollm2-135m", "--phase", "prefill", "--context", "8"]) == 2
    assert "--context applies to decode" in capsys.readouterr().err
