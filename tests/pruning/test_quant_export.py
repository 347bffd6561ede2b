"""Quantized artifacts: quant.safetensors round trip, compressed-tensors folder reloaded by transformers,
and `besa-hw prune --wbits` end to end on the tiny model."""

import json

import pytest
import torch

from pruning import PruneConfig, prune_model
from pruning.quant_export import load_quant, save_quant


def _quantized_tiny(tiny_model, calib_ids, **kw):
    cfg = PruneConfig(**{"method": "wanda", "sparsity": 0.5, "wbits": 4, "group_size": 32, **kw})
    return prune_model(tiny_model, calib_ids, cfg)


def test_quant_file_round_trip(tmp_path, tiny_model, calib_ids):
    result = _quantized_tiny(tiny_model, calib_ids, group_size=-1, wbits=3)
    save_quant(tmp_path / "q.safetensors", result.quant)
    loaded = load_quant(tmp_path / "q.safetensors", result.layers)
    assert set(loaded) == set(result.quant)
    for key, q in loaded.items():
        assert q.codes.dtype == torch.uint8 and q.bits == 3 and q.group == -1 and q.scales.shape[1] == 1
        assert torch.equal(q.dequantize(), tiny_model.get_submodule(key).weight)


def test_compressed_tensors_folder_reloads_with_same_outputs(tmp_path, tiny_model, calib_ids, byte_tokenizer):
    pytest.importorskip("compressed_tensors")
    from besa_hw.models import load_model
    from pruning.quant_export import save_compressed_tensors

    result = _quantized_tiny(tiny_model, calib_ids)
    save_compressed_tensors(tiny_model, byte_tokenizer, result.quant, tmp_path / "model")
    config = json.loads((tmp_path / "model" / "config.json").read_text())["quantization_config"]
    assert config["format"] == "pack-quantized" and config["ignore"] == ["lm_head"]
    weights = config["config_groups"]["group_0"]["weights"]
    assert (weights["num_bits"], weights["group_size"], weights["symmetric"]) == (4, 32, False)
    reloaded, _, _ = load_model(str(tmp_path / "model"))
    with torch.no_grad():
        torch.testing.assert_close(reloaded(calib_ids).logits, tiny_model(calib_ids).logits, rtol=0, atol=1e-5)
    w = reloaded.get_submodule("model.layers.1.mlp.down_proj").weight
    assert (w[~result.masks["model.layers.1.mlp.down_proj"]] == 0).all()


def test_cli_prune_wbits_then_eval(tiny_model_dir, text_file, tmp_path, capsys):
    from besa_hw import cli

    out = tmp_path / "run"
    args = ["prune", "--model", str(tiny_model_dir), "--calib", str(text_file), "--calib-part", "first",
            "--nsamples", "4", "--seqlen", "32", "--method", "besa", "--set", "besa_samples=2", "--wbits", "4", "--group-size", "16", "--out", str(out)]
    assert cli.main(args) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["hyperparameters"]["quantizer"] == "lwc" and manifest["hyperparameters"]["wbits"] == 4
    assert manifest["layers"]["model.layers.0.self_attn.q_proj"]["quant"] == {
        "bits": 4, "group_size": 16, "quantizer": "lwc"}
    assert (out / "quant.safetensors").is_file()
    # no saved model: the base model + masks + codes reproduce the quantized weights
    assert cli.main(["eval", "--run", str(out), "--data", str(text_file), "--seqlen", "32", "--max-windows", "2"]) == 0
    assert "perplexity:" in capsys.readouterr().out
