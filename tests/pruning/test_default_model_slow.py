"""End-to-end on the real bundled SmolLM2-135M (slow: model load ~20 s; tiny calibration)."""

import math

import pytest

from pruning import CalibConfig, PruneConfig


@pytest.mark.slow
def test_default_model_besa_run_and_eval(tmp_path):
    from besa_hw.runfolder import load_run_model
    from besa_hw.runs import prune_to_run
    from pruning.calibration import load_text, tokenize
    from pruning.eval import perplexity

    cfg = PruneConfig(method="besa", sparsity=0.5, besa_epochs=1)
    out = prune_to_run("smollm2-135m", None, cfg, CalibConfig("pydoc", nsamples=2, seqlen=64), tmp_path / "run",
                       save_model=True)  # the GGUF-loaded model must save (it once refused: "not serializable")
    assert (out / "model" / "config.json").is_file()
    model, tok, manifest = load_run_model(out)  # the saved model
    assert manifest["model"] | {"id": None, "gguf_file": None} == {
        "id": None, "gguf_file": None, "architecture": "LlamaForCausalLM", "hidden_size": 576,
        "intermediate_size": 1536, "num_hidden_layers": 30, "num_attention_heads": 9,
        "num_key_value_heads": 3, "head_dim": 64, "vocab_size": 49152}
    assert len(manifest["layers"]) == 30 * 7
    assert abs(manifest["achieved_sparsity"] - 0.5) < 0.005
    assert manifest["layers"]["model.layers.0.self_attn.k_proj"]["shape"] == [192, 576]
    held_out = load_text("pydoc", "held-out")[:20000]  # never seen by calibration
    ppl = perplexity(model, tokenize(tok, held_out), seqlen=128, max_windows=2)
    assert math.isfinite(ppl) and ppl < 1000
    # the base model with the run's masks applied is the same model as the saved one
    from besa_hw.models import load_model
    from besa_hw.runfolder import apply_masks
    from pruning.export import read_run

    base, base_tok, _ = load_model()
    apply_masks(base, read_run(out)[0])
    assert perplexity(base, tokenize(base_tok, held_out), seqlen=128, max_windows=2) == ppl
