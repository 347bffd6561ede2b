"""`besa-hw prune` / `besa-hw eval` on a tiny saved model: happy path and one-line errors."""

import json

import pytest

from besa_hw import cli
from pruning.calibration import load_text

MY_COMMANDS = ("besa_hw.commands.prune", "besa_hw.commands.eval")


@pytest.fixture(autouse=True)
def _only_pruning_commands(monkeypatch):
    """Keep these tests independent of the other subcommands' modules."""
    monkeypatch.setattr(cli, "_COMMAND_MODULES", MY_COMMANDS)


def _error_lines(capsys) -> list[str]:
    """stderr lines from besa-hw itself (transformers may draw loading bars there)."""
    return [line for line in capsys.readouterr().err.splitlines() if line.startswith("besa-hw")]


def _prune_args(model_dir, text_file, out, *extra):
    """Calibrate on the first 75% of ``text_file``, so that its held-out rest can evaluate the run."""
    return ["prune", "--model", str(model_dir), "--calib", str(text_file), "--calib-part", "first", "--nsamples", "4",
            "--seqlen", "32", "--out", str(out), *extra]


def test_prune_then_eval(tiny_model_dir, text_file, tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(_prune_args(tiny_model_dir, text_file, out, "--method", "besa", "--epochs", "1",
                                  "--set", "besa_samples=2", "--set", "besa_reconstruct=true", "--save-model",
                                  "--calib-part", "auto")) == 0  # auto: all of a file
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["method"] == "besa" and manifest["model"]["num_hidden_layers"] == 2
    assert manifest["hyperparameters"]["samples"] == 2 and manifest["hyperparameters"]["weights_updated"]
    assert abs(manifest["achieved_sparsity"] - 0.5) < 0.01
    assert list(manifest["layers"])[0] == "model.layers.0.self_attn.q_proj"
    calibration = manifest["calibration"]
    assert {k: calibration[k] for k in ("dataset", "nsamples", "seqlen", "seed")} == {
        "dataset": str(text_file), "nsamples": 4, "seqlen": 32, "seed": 0}
    assert calibration["part"] == "all" and "(the whole text, from its start)" in calibration["split"]
    assert manifest["versions"]["python"] and manifest["command"]  # sys.argv: pytest's here
    assert manifest["git_commit"]
    assert (out / "masks.safetensors").is_file()
    # calibration sampled the whole file: evaluating on it is refused, with the way out
    assert cli.main(["eval", "--run", str(out), "--data", str(text_file), "--seqlen", "32",
                     "--max-windows", "2"]) == 2
    assert "--calib-part first" in capsys.readouterr().err
    other = tmp_path / "other.txt"
    other.write_text(load_text("pydoc", "held-out")[:20000])
    assert cli.main(["eval", "--run", str(out), "--data", str(other), "--seqlen", "32",
                     "--max-windows", "2"]) == 0
    assert "perplexity:" in capsys.readouterr().out
    ppl = json.loads((out / "manifest.json").read_text())["perplexity"]
    assert ppl["pruned"] > 1 and ppl["windows"] == 2 and ppl["part"] == "all"
    assert "(the whole text, from its start)" in ppl["split"]


def test_prune_with_a_held_out_part_then_eval_on_it(tiny_model_dir, text_file, tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(_prune_args(tiny_model_dir, text_file, out, "--method", "wanda")) == 0
    assert json.loads((out / "manifest.json").read_text())["calibration"]["part"] == "first"
    assert cli.main(["eval", "--run", str(out), "--data", str(text_file), "--seqlen", "32",
                     "--max-windows", "2"]) == 0
    assert "held-out last 25%" in capsys.readouterr().out  # auto: the held-out part of the split text
    assert json.loads((out / "manifest.json").read_text())["perplexity"]["part"] == "held-out"
    assert cli.main(["eval", "--run", str(out), "--data", str(text_file), "--seqlen", "32",
                     "--eval-part", "all"]) == 2
    assert "split the text" in capsys.readouterr().err


def test_sparsegpt_needs_saved_model_for_eval(tiny_model_dir, text_file, tmp_path, capsys):
    out = tmp_path / "sg"
    assert cli.main(_prune_args(tiny_model_dir, text_file, out, "--method", "sparsegpt", "--nm", "2:4")) == 0
    assert cli.main(["eval", "--run", str(out), "--data", str(text_file), "--seqlen", "32"]) == 2
    assert "--save-model" in capsys.readouterr().err
    out2 = tmp_path / "sg2"
    assert cli.main(_prune_args(tiny_model_dir, text_file, out2, "--method", "sparsegpt", "--save-model")) == 0
    assert cli.main(["eval", "--run", str(out2), "--data", str(text_file), "--seqlen", "32"]) == 0


@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory):
    from transformers import GPT2Config, GPT2LMHeadModel

    path = tmp_path_factory.mktemp("gpt2")
    GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=256)).save_pretrained(path)
    return path


@pytest.mark.parametrize("case,extra,needle", [
    ("missing model", ["--model", "/no/such/model"], "model path not found"),
    ("sparsity", ["--sparsity", "1.0"], "sparsity must be in [0, 1)"),
    ("nm width", ["--nm", "3:7", "--sparsity", "0.5714285714285714"], "does not divide"),
    ("nm syntax", ["--nm", "two:four"], "N:M pattern"),
    ("context", ["--seqlen", "100000"], "exceeds the model's context of 1024 tokens"),
    ("missing calib", ["--calib", "/no/such.txt"], "calibration text not found"),
    ("profile", ["--profile", "/no/such.json"], "profile file not found"),
    ("set", ["--set", "no_such_field=1"], "expected FIELD=VALUE"),
])
def test_prune_errors(tiny_model_dir, text_file, tmp_path, capsys, case, extra, needle):
    out = tmp_path / "run"
    args = _prune_args(tiny_model_dir, text_file, out, "--method", "wanda") + extra
    assert cli.main(args) == 2, case
    err = _error_lines(capsys)
    assert len(err) == 1 and needle in err[0], err
    assert list(tmp_path.iterdir()) == []  # no run folder, no temp sibling


def test_non_llama_architecture(gpt2_dir, text_file, tmp_path, capsys):
    assert cli.main(_prune_args(gpt2_dir, text_file, tmp_path / "run", "--method", "wanda")) == 2
    err = _error_lines(capsys)
    assert len(err) == 1 and "unsupported architecture GPT2LMHeadModel" in err[0], err
    assert list(tmp_path.iterdir()) == []


def test_existing_out_refused(tiny_model_dir, text_file, tmp_path, capsys):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "notes.txt").write_text("mine")
    assert cli.main(_prune_args(tiny_model_dir, text_file, tmp_path / "run", "--method", "magnitude")) == 2
    assert "already exists" in capsys.readouterr().err


def test_eval_model_directly(tiny_model_dir, text_file, capsys):
    assert cli.main(["eval", "--model", str(tiny_model_dir), "--data", str(text_file), "--seqlen", "32",
                     "--max-windows", "2"]) == 0
    assert "perplexity:" in capsys.readouterr().out


def test_full_parser_builds_with_every_command(monkeypatch):
    monkeypatch.undo()  # all subcommands: prune's flags must not clash with the others'
    args = cli.build_parser().parse_args(["prune", "--method", "wanda", "--out", "x", "--set", "besa_samples=3"])
    assert args.prune_set == ["besa_samples=3"]


@pytest.mark.parametrize("preset", ["besa-row", "besa-layer", "besa-row-recon"])
def test_presets_load(tiny_model_dir, text_file, tmp_path, preset):
    out = tmp_path / preset
    assert cli.main(_prune_args(tiny_model_dir, text_file, out, "--method", "besa", "--preset", preset)) == 0
    hp = json.loads((out / "manifest.json").read_text())["hyperparameters"]
    assert hp["samples"] == 24 and hp["allocation"] == ("layer" if preset == "besa-layer" else "row")
