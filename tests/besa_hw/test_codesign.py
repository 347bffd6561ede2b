"""BESA with a hardware target from the CLI (tiny model): the target is met in simulation, and the
formats the run records are the ones `simulate --run` runs."""

import json

import pandas as pd
import pytest

from besa_hw.cli import main


def _prune(model_dir, text_file, out, *extra):
    return main(["prune", "--model", str(model_dir), "--method", "besa", "--calib", str(text_file), "--nsamples",
                 "4", "--seqlen", "32", "--out", str(out), *extra])


@pytest.mark.parametrize("preset", ["besa-64x64", "vitcod-64x8", "systolic-64x64"])
def test_target_speedup_is_met_in_simulation(tiny_model_dir, text_file, tmp_path, capsys, preset):
    out = tmp_path / "run"
    # the tiny model's Linears are too small for a 64x64 array at context 2048: 1.01x at most there
    context = ["--context", "16"] if preset == "systolic-64x64" else []
    assert _prune(tiny_model_dir, text_file, out, "--target-speedup", "1.05", "--target-hw", preset,
                  *(["--target-context", "16"] if context else [])) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    target = manifest["hw_target"]
    assert target["hardware"] == preset and target["phase"] == "decode" and target["target_speedup"] == 1.05
    # systolic: a tiny block's down_proj alone saves more than the target asks of a block, and the
    # rest together less, so both blocks take it (1.066x is the closest any choice of 2:4 Linears gets)
    assert target["predicted_speedup"] == pytest.approx(1.05, rel=0.02 if context else 0.005)
    assert manifest["hyperparameters"]["hw_target"]["target_speedup"] == 1.05
    assert manifest["hyperparameters"]["search_samples"] == 1  # the rounding's options were measured on one segment
    formats = [rec["format"] for rec in manifest["layers"].values()]
    assert set(formats) <= {"dense", "sparse", "2:4"}
    if preset == "systolic-64x64":  # unstructured sparsity buys nothing there: only 2:4 layers can
        assert "2:4" in formats and "sparse" not in formats
    sim = tmp_path / "sim"
    assert main(["simulate", "--run", str(out), "--hw", preset, "--quiet", "--out", str(sim), *context]) == 0
    total = pd.read_csv(sim / "summary.csv").set_index("op").loc["total"]
    assert total.speedup == pytest.approx(1.05, rel=0.02)
    assert total.speedup == pytest.approx(target["predicted_speedup"], rel=0.005)
    layers = pd.read_csv(sim / "layers.csv").set_index("name")
    for key, rec in manifest["layers"].items():  # a 2:4 layer is a 2:4 mask, simulated on the N:M path
        if rec["format"] == "2:4":
            assert rec["achieved_sparsity"] == pytest.approx(0.5)
            assert layers.loc[key, "sparse_cycles"] < layers.loc[key, "dense_cycles"]


def test_a_layer_recorded_dense_is_simulated_dense(tiny_model_dir, text_file, tmp_path):
    out = tmp_path / "run"
    assert _prune(tiny_model_dir, text_file, out, "--target-speedup", "1.05") == 0
    manifest = json.loads((out / "manifest.json").read_text())
    key = "model.layers.1.mlp.up_proj"
    manifest["layers"][key]["format"] = "dense"
    (out / "manifest.json").write_text(json.dumps(manifest))
    assert main(["simulate", "--run", str(out), "--quiet", "--out", str(tmp_path / "sim")]) == 0
    layers = pd.read_csv(tmp_path / "sim" / "layers.csv").set_index("name")
    assert layers.loc[key, "sparse_cycles"] == layers.loc[key, "dense_cycles"]  # zeros stored and computed
    other = "model.layers.1.mlp.gate_proj"
    assert layers.loc[other, "sparse_cycles"] < layers.loc[other, "dense_cycles"]


@pytest.mark.parametrize("extra,needle", [
    (["--target-speedup", "1.05", "--sparsity", "0.5"], "--sparsity and --target-speedup"),
    (["--target-speedup", "3"], "out of reach on besa-64x64 decode"),
    (["--target-speedup", "0.9"], "must be > 1"),
])
def test_bad_targets_are_refused(tiny_model_dir, text_file, tmp_path, capsys, extra, needle):
    out = tmp_path / "run"
    assert _prune(tiny_model_dir, text_file, out, *extra) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("besa-hw")]
    assert len(err) == 1 and needle in err[0], err
    assert not out.exists()


def test_target_needs_besa(tiny_model_dir, text_file, tmp_path, capsys):
    assert main(["prune", "--model", str(tiny_model_dir), "--method", "wanda", "--target-speedup", "1.05",
                 "--out", str(tmp_path / "r")]) == 2
    assert "applies to --method besa" in capsys.readouterr().err


@pytest.mark.parametrize("preset", ["besa-64x64", "vitcod-64x8"])
def test_search_allocator_meets_the_target_and_records_its_formats(tiny_model_dir, text_file, tmp_path, preset):
    out = tmp_path / "run"
    assert main(["prune", "--model", str(tiny_model_dir), "--method", "search", "--calib", str(text_file),
                 "--nsamples", "4", "--seqlen", "32", "--target-speedup", "1.05", "--target-hw", preset,
                 "--out", str(out)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    # the knapsack meets each block's budget in table cycles; priced with the real masks, the last
    # block's miss is left over (no later block to take it): within 0.1% of the target
    predicted = manifest["hw_target"]["predicted_speedup"]
    assert predicted >= 1.05 * 0.999
    sim = tmp_path / "sim"
    assert main(["simulate", "--run", str(out), "--hw", preset, "--quiet", "--out", str(sim)]) == 0
    layers = pd.read_csv(sim / "layers.csv").set_index("name")
    for key, rec in manifest["layers"].items():  # dense-format layers simulate dense, the others do not
        assert (layers.loc[key, "sparse_cycles"] == layers.loc[key, "dense_cycles"]) == (rec["format"] == "dense") \
            or rec["achieved_sparsity"] == 0.0
    total = pd.read_csv(sim / "summary.csv").set_index("op").loc["total"]
    assert total.speedup == pytest.approx(1.05, rel=0.02)
    assert total.speedup == pytest.approx(predicted, rel=0.005)


def test_search_needs_a_target(tiny_model_dir, tmp_path, capsys):
    assert main(["prune", "--model", str(tiny_model_dir), "--method", "search", "--out", str(tmp_path / "r")]) == 2
    assert "give --target-speedup" in capsys.readouterr().err


@pytest.mark.parametrize("method", ["besa", "search"])
def test_prefill_target_counts_the_rows_spread(tiny_model_dir, text_file, tmp_path, method):
    """In prefill a lane engine pays for how a mask's nonzeros spread over rows, which the table does not
    price; the allocators price each pruned Linear with its real mask, record it, and carry the
    difference, so the recorded prediction is what `simulate --run` gives."""
    out = tmp_path / "run"
    assert main(["prune", "--model", str(tiny_model_dir), "--method", method, "--calib", str(text_file),
                 "--nsamples", "4", "--seqlen", "32", "--target-speedup", "1.1", "--target-hw", "vitcod-64x8",
                 "--target-phase", "prefill", "--target-tokens", "64", "--out", str(out)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    sparse = [rec for rec in manifest["layers"].values() if rec["format"] == "sparse"]
    assert sparse and all("cycles" in rec for rec in sparse)
    sim = tmp_path / "sim"
    assert main(["simulate", "--run", str(out), "--hw", "vitcod-64x8", "--phase", "prefill", "--tokens", "64",
                 "--quiet", "--out", str(sim)]) == 0
    layers = pd.read_csv(sim / "layers.csv").set_index("name")
    for key, rec in manifest["layers"].items():
        if "cycles" in rec:
            assert layers.loc[key, "sparse_cycles"] == pytest.approx(rec["cycles"], rel=1e-3)
    total = pd.read_csv(sim / "summary.csv").set_index("op").loc["total"]
    assert total.speedup == pytest.approx(manifest["hw_target"]["predicted_speedup"], rel=0.002)
    assert total.speedup == pytest.approx(1.1, rel=0.02)
