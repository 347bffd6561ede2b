"""Block-by-block evaluation (besa_hw/evaluation.py, pruning/eval.py) gives the in-memory numbers, and
`run` prunes through the prune pipeline (streamed, resumable) with one --set parser."""

import json

import pytest
import torch

from besa_hw.cli import main


@pytest.fixture(scope="module")
def untied_model_dir(tmp_path_factory, byte_tokenizer):
    """A tiny LLaMA with its own lm_head (not tied to the embedding), saved as safetensors."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(1)
    cfg = LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=4,
                      num_key_value_heads=2, vocab_size=256, max_position_embeddings=1024, tie_word_embeddings=False)
    path = tmp_path_factory.mktemp("untied")
    LlamaForCausalLM(cfg).save_pretrained(path)
    byte_tokenizer.save_pretrained(path)
    return path


@pytest.mark.parametrize("which", ["tied", "untied"])
def test_blockwise_perplexity_equals_in_memory(tiny_model_dir, untied_model_dir, which):
    from transformers import AutoModelForCausalLM

    from pruning.eval import blockwise_perplexity, perplexity
    from pruning.streaming import LoadedModel, StreamedModel

    folder = tiny_model_dir if which == "tied" else untied_model_dir
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    ids = torch.randint(0, 256, (700,), generator=torch.Generator().manual_seed(0))
    whole = perplexity(model, ids, 64, 6)
    assert blockwise_perplexity(LoadedModel(model), ids, 64, 6) == pytest.approx(whole, rel=1e-5)
    assert blockwise_perplexity(StreamedModel(folder), ids, 64, 6) == pytest.approx(whole, rel=1e-5)


@pytest.mark.parametrize("extra", [[], ["--wbits", "4", "--group-size", "16"]])
def test_streamed_run_evaluation_equals_masking_in_memory(untied_model_dir, text_file, tmp_path, extra):
    """A run of a safetensors model is evaluated block by block (masks and codes applied per block);
    the same masks and codes applied to the whole model in memory give the same perplexity."""
    from besa_hw.runfolder import load_run_model
    from pruning.calibration import load_text, tokenize
    from pruning.eval import perplexity

    out = tmp_path / "run"
    assert main(["prune", "--model", str(untied_model_dir), "--method", "wanda", "--calib", str(text_file),
                 "--calib-part", "first", "--nsamples", "4", "--seqlen", "32", "--out", str(out), *extra]) == 0
    assert main(["eval", "--run", str(out), "--data", str(text_file), "--seqlen", "64", "--max-windows", "3"]) == 0
    streamed = json.loads((out / "manifest.json").read_text())["perplexity"]["pruned"]
    lm, tok, _ = load_run_model(out)
    in_memory = perplexity(lm, tokenize(tok, load_text(str(text_file), "held-out")), 64, 3)
    assert streamed == pytest.approx(in_memory, rel=1e-5)


def test_run_takes_prune_and_hardware_settings(tiny_model_dir, text_file, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["run", "--model", str(tiny_model_dir), "--method", "besa", "--nsamples", "4", "--seqlen", "32",
            "--calib", str(text_file), "--eval-data", str(text_file), "--eval-seqlen", "64", "--eval-windows", "2",
            "--phases", "decode", "--no-report", "--out", str(out)]
    assert main([*args, "--set", "besa_samples=2", "--set", "hw.pe_rows=32"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["hyperparameters"]["samples"] == 2 and manifest["streamed"]
    assert json.loads((out / "sim" / "hardware.json").read_text())["pe_rows"] == 32
    assert main([*args, "--overwrite", "--set", "no_such=1"]) == 2
    assert "neither a pruning field nor a hardware field" in capsys.readouterr().err
    assert main(["simulate", "--shape", "smollm2-135m", "--set", "prune.besa_samples=2"]) == 2
    assert "takes no prune settings" in capsys.readouterr().err


def test_run_resumes_an_interrupted_prune(tiny_model_dir, text_file, tmp_path, monkeypatch, capsys):
    import pruning.sequential as seq

    out = tmp_path / "run"
    args = ["run", "--model", str(tiny_model_dir), "--method", "wanda", "--nsamples", "4", "--seqlen", "32",
            "--calib", str(text_file), "--eval-data", str(text_file), "--eval-seqlen", "64", "--eval-windows", "2",
            "--phases", "decode", "--no-report", "--out", str(out)]
    real, calls = seq._prune_block, []

    def dies_on_block_1(i, *a, **k):
        if i == 1:
            raise KeyboardInterrupt
        calls.append(i)
        return real(i, *a, **k)

    monkeypatch.setattr(seq, "_prune_block", dies_on_block_1)
    assert main(args) == 130
    assert "1 finished block(s) kept" in capsys.readouterr().err and not out.exists()
    monkeypatch.setattr(seq, "_prune_block", real)
    assert main(args) == 2  # the unfinished prune is not silently discarded
    assert "--resume" in capsys.readouterr().err
    assert main([*args, "--resume"]) == 0
    uninterrupted = tmp_path / "again"
    assert main([*args[:-1], str(uninterrupted)]) == 0
    a = json.loads((out / "manifest.json").read_text())
    b = json.loads((uninterrupted / "manifest.json").read_text())
    assert a["achieved_sparsity"] == b["achieved_sparsity"] and a["perplexity"]["pruned"] == b["perplexity"]["pruned"]


def test_run_blocks_is_a_measurement(tiny_model_dir, text_file, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", "--model", str(tiny_model_dir), "--method", "wanda", "--nsamples", "4", "--seqlen", "32",
                 "--calib", str(text_file), "--blocks", "1", "--out", str(out)]) == 0
    assert "a measurement run" in capsys.readouterr().out
    assert json.loads((out / "manifest.json").read_text())["blocks_pruned"] == 1


def test_an_unreadable_progress_file_is_refused_and_nothing_is_deleted(tiny_model_dir, text_file, tmp_path,
                                                                      monkeypatch, capsys):
    import pruning.sequential as seq
    from besa_hw.outdir import partial_dir

    out = tmp_path / "run"
    args = ["prune", "--model", str(tiny_model_dir), "--method", "wanda", "--calib", str(text_file), "--nsamples", "4",
            "--seqlen", "32", "--out", str(out)]
    real = seq._prune_block

    def dies_on_block_1(i, *a, **k):
        if i == 1:
            raise KeyboardInterrupt
        return real(i, *a, **k)

    monkeypatch.setattr(seq, "_prune_block", dies_on_block_1)
    assert main(args) == 130
    monkeypatch.setattr(seq, "_prune_block", real)
    partial = partial_dir(out)
    (partial / "progress.json").write_text("{not json")
    before = sorted(p.name for p in partial.iterdir())
    assert main([*args, "--resume"]) == 2
    err = capsys.readouterr().err
    assert "progress.json cannot be read" in err and "--overwrite" in err
    assert sorted(p.name for p in partial.iterdir()) == before  # the finished block is still there


def test_zero_shot_on_a_model_larger_than_memory_is_refused_with_its_size(tmp_path, capsys):
    """lm-eval needs the model whole: a 70B-shaped folder is refused with the memory it would need."""
    folder = tmp_path / "big"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 8192, "intermediate_size": 28672,
        "num_hidden_layers": 80, "num_attention_heads": 64, "num_key_value_heads": 8, "vocab_size": 32000,
        "max_position_embeddings": 4096}))
    assert main(["eval", "--model", str(folder), "--tasks", "configs/tasks/everyday_mc.yaml"]) == 2
    err = capsys.readouterr().err
    assert "zero-shot tasks load the model whole" in err and "needs about 27" in err and "block by block" in err
