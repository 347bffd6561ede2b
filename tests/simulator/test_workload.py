import json

import numpy as np
import pytest
from safetensors.numpy import save_file

from simulator import Simulator, get_shape, load_hardware, model_ops, run_ops
from simulator.synthetic import AllocationProfile, bernoulli_mask, load_profile, synthetic_ops


def test_gqa_shapes_of_smollm2_and_llama2_70b():
    s = get_shape("smollm2-135m").op_shapes()
    assert s["q_proj"] == (576, 576) and s["k_proj"] == (192, 576) and s["down_proj"] == (576, 1536)
    s = get_shape("llama2-70b").op_shapes()
    assert s["k_proj"] == (1024, 8192) and s["gate_proj"] == (28672, 8192)
    assert len(model_ops(get_shape("llama-7b"), 1, linear_only=True)) == 224


def test_the_whole_decoder_step():
    """16 ops per block in execution order, plus the embedding, the final norm and lm_head."""
    shape = get_shape("llama2-70b")
    ops = model_ops(shape, 1, context=2048)
    assert len(ops) == 80 * 16 + 3
    assert [op.op for op in ops[:17]] == ["embedding", "input_norm", "q_proj", "k_proj", "v_proj", "rope",
                                          "attn_scores", "softmax", "attn_values", "o_proj", "attn_residual",
                                          "post_norm", "gate_proj", "up_proj", "silu_mul", "down_proj",
                                          "mlp_residual"]
    assert [op.op for op in ops[-2:]] == ["final_norm", "lm_head"]
    scores = ops[6]  # GQA: 8 query heads share each of the 8 KV heads; the cache is 2048 x 128 per head
    assert (scores.kind, scores.tokens, scores.in_features, scores.out_features, scores.repeat) == \
        ("attention", 8, 128, 2048, 8)
    assert (ops[-1].out_features, ops[-1].in_features, ops[-1].tokens) == (32000, 8192, 1)
    prefill = model_ops(shape, 512)
    assert prefill[6].causal and prefill[6].out_features == 512 and prefill[6].tokens == 512 * 8
    assert prefill[-1].tokens == 1  # only the last position's logits


def test_kv_cache_traffic_shows_in_decode():
    """LLaMA-7B decode at context 2048, 8-bit KV: each block reads 2 x 32 heads x 2048 x 128 B of cache."""
    shape = get_shape("llama-7b")
    sim = Simulator(load_hardware("besa-64x64"))
    ops = [op for op in model_ops(shape, 1, blocks=range(1), context=2048) if op.kind == "attention"]
    read = sum(sim.run_op(op).dram_bytes for op in ops)
    assert read >= 2 * 32 * 2048 * 128


def test_synthetic_masks_hit_target_and_are_deterministic():
    ops = synthetic_ops(get_shape("smollm2-135m"), 1, AllocationProfile(0.7, seed=3), blocks=range(1),
                        linear_only=True)
    m1, m2 = ops[0].mask(), ops[0].mask()
    assert m1.shape == (576, 576) and np.array_equal(m1, m2)
    assert abs(1 - m1.mean() - 0.7) < 0.01


def test_per_row_distribution_spreads_rows_but_keeps_layer_sparsity():
    prof = AllocationProfile(0.5, row_distribution="uniform", row_spread=0.2)
    m = synthetic_ops(get_shape("smollm2-135m"), 1, prof, blocks=range(1), linear_only=True)[4].mask()
    row_s = 1 - m.mean(axis=1)
    assert abs(row_s.mean() - 0.5) < 0.01
    assert row_s.std() > 0.1


def test_bernoulli_mask_per_row():
    m = bernoulli_mask((2, 20000), np.array([0.1, 0.9]), np.random.default_rng(0))
    assert abs(m[0].mean() - 0.9) < 0.01 and abs(m[1].mean() - 0.1) < 0.01


def test_profile_json_and_manifest(tmp_path):
    p = tmp_path / "p.json"
    p.write_text(json.dumps({"q_proj": 0.3, "model.layers.1.mlp.down_proj": 0.8}))
    prof = AllocationProfile(0.5, load_profile(p))
    assert prof.layer_sparsity(0, "q_proj") == 0.3
    assert prof.layer_sparsity(1, "down_proj") == 0.8 and prof.layer_sparsity(0, "down_proj") == 0.5
    p.write_text(json.dumps({"attention": 0.3}))
    with pytest.raises(ValueError, match="neither an op type"):
        load_profile(p)
    with pytest.raises(ValueError, match=r"must be in \[0, 1\)"):
        AllocationProfile(1.0)


def write_run(path, shape=(8, 16), mask_shape=None):
    rng = np.random.default_rng(0)
    key = "model.layers.0.self_attn.q_proj"
    save_file({key: rng.random(mask_shape or shape) > 0.5}, str(path / "masks.safetensors"))
    manifest = {"format_version": 1,
                "model": {"id": "toy", "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
                          "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 8},
                "layers": {key: {"block": 0, "op": "q_proj", "shape": list(shape)}}}
    (path / "manifest.json").write_text(json.dumps(manifest))


def test_run_folder_masks_are_read_lazily_and_checked(tmp_path):
    write_run(tmp_path)
    shape, ops = run_ops(tmp_path, tokens=1, linear_only=True)
    assert shape.name == "toy" and len(ops) == 7 and ops[0].name == "model.layers.0.self_attn.q_proj"
    assert [op.load_mask is not None for op in ops] == [True] + [False] * 6  # unpruned Linears are dense
    res = Simulator(load_hardware()).run_op(ops[0])
    assert res.nnz == int(ops[0].mask().sum())
    write_run(tmp_path, mask_shape=(8, 15))
    with pytest.raises(ValueError, match=r"q_proj has shape \(8, 15\), the layer is \(8, 16\)"):
        run_ops(tmp_path, tokens=1)
