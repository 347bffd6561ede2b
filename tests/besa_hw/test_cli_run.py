"""`besa-hw run`: prune -> eval -> simulate -> report, on the tiny model (the real one is in the slow test)."""

import json

import pandas as pd
import pytest

from besa_hw.cli import main


def run_args(model_dir, text_file, out, *extra):
    return ["run", "--model", str(model_dir), "--method", "wanda", "--nsamples", "4", "--seqlen", "32",
            "--calib", str(text_file), "--eval-data", str(text_file), "--eval-seqlen", "64",
            "--eval-windows", "2", "--prefill-tokens", "16", "--out", str(out), *extra]


def test_run_end_to_end_then_reuse(tiny_model_dir, text_file, tmp_path, capsys, caplog):
    out = tmp_path / "run"
    with caplog.at_level("INFO"):
        assert main(run_args(tiny_model_dir, text_file, out)) == 0
    assert "same text, split, no overlap" in caplog.text
    printed = capsys.readouterr().out
    manifest = json.loads((out / "manifest.json").read_text())
    ppl = manifest["perplexity"]
    assert ppl["dense"] > 0 and ppl["pruned"] > 0 and ppl["windows"] == 2
    decode = pd.read_csv(out / "sim" / "decode" / "summary.csv")
    prefill = pd.read_csv(out / "sim" / "prefill" / "layers.csv")
    linear = prefill[prefill.kind == "linear"]
    assert len(linear) == 14 and (linear.tokens == 16).all()
    assert len(prefill) == 1 + 2 * 16 + 2  # embedding, 16 ops per block, final norm and lm_head
    assert (out / "report" / "report.html").is_file()
    md = (out / "report" / "report.md").read_text()
    assert "(the held-out last 25%; the first part is for calibration)" in md and "(the first 75%; the rest is held" in md
    assert f"Linear-only {decode.speedup.iloc[-2]:.3f}x, end-to-end {decode.speedup.iloc[-1]:.3f}x" in printed
    assert "tokens/s" in printed and "report:" in printed
    assert f"energy {decode.energy_saving.iloc[-1]:.3f}x less" in printed
    assert f"pruned {ppl['pruned']:.2f}" in printed
    # Reuse the finished run on other hardware: no pruning, new simulation.
    assert main(run_args(tiny_model_dir, text_file, out, "--reuse", "--hw", "vitcod-64x8",
                         "--phases", "decode")) == 0
    assert "reusing finished run" in capsys.readouterr().out
    assert json.loads((out / "sim" / "hardware.json").read_text())["name"] == "vitcod-64x8"


def test_run_evaluates_a_method_that_updates_weights(tiny_model_dir, text_file, tmp_path):
    # SparseGPT's OBS update changes the kept weights: run saves the model so evaluation reads them
    out = tmp_path / "run"
    args = run_args(tiny_model_dir, text_file, out, "--no-report", "--phase", "decode")
    args[args.index("wanda")] = "sparsegpt"
    assert main(args) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["perplexity"]["pruned"] > 0 and (out / "model").is_dir()


@pytest.mark.parametrize("extra,text", [
    (["--phase", "decode,train"], "--phase takes decode and/or prefill"),
    (["--sparsity", "1.2"], "sparsity must be in [0, 1)"),
    (["--set", "pe_rows=0"], "pe_rows must be a positive integer"),
    (["--eval-data", "/no/such/file.txt"], "/no/such/file.txt"),
])
def test_run_rejects_bad_input_before_work(tiny_model_dir, text_file, tmp_path, capsys, extra, text):
    out = tmp_path / "run"
    assert main(run_args(tiny_model_dir, text_file, out, *extra)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and text in err, err
    assert not out.exists()


def test_run_refuses_evaluation_text_that_overlaps_calibration(tiny_model_dir, text_file, tmp_path, capsys):
    from pruning.calibration import load_text

    leaky = tmp_path / "leaky.txt"
    leaky.write_text(load_text(str(text_file), "first"))  # its held-out tail is calibration text
    out = tmp_path / "run"
    assert main(run_args(tiny_model_dir, text_file, out, "--eval-data", str(leaky))) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "overlaps the calibration text" in err, err
    assert not out.exists()


def test_run_refuses_to_clobber_a_run(tiny_model_dir, text_file, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert main(run_args(tiny_model_dir, text_file, out)) == 2
    assert "exists" in capsys.readouterr().err
    assert (out / "notes.txt").read_text() == "mine"


def test_eval_dense_reuses_the_base_model(tiny_model_dir, text_file, tmp_path, capsys):
    """`eval --run --dense` masks the loaded base model in place: same numbers as two loads."""
    out = tmp_path / "run"
    assert main(["prune", "--model", str(tiny_model_dir), "--method", "wanda", "--nsamples", "4",
                 "--seqlen", "32", "--calib", str(text_file), "--calib-part", "first", "--out", str(out)]) == 0
    common = ["--data", str(text_file), "--seqlen", "64", "--max-windows", "2", "--eval-part", "held-out"]
    assert main(["eval", "--model", str(tiny_model_dir), *common]) == 0
    dense_alone = float(capsys.readouterr().out.strip().split()[-1])
    assert main(["eval", "--run", str(out), "--dense", *common]) == 0
    ppl = json.loads((out / "manifest.json").read_text())["perplexity"]
    assert ppl["dense"] == pytest.approx(dense_alone, rel=1e-6)
    assert ppl["pruned"] != pytest.approx(ppl["dense"]) and ppl["windows"] == 2
