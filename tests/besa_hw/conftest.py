"""Run folders as `besa-hw prune` writes them, built from random masks (no model needed)."""

import json

import numpy as np
import pytest
from safetensors.numpy import save_file

from simulator.workload import ModelShape, module_path

TINY = ModelShape("tiny-llama", 64, 128, 2, 4, 2, 16)  # q 64x64, k/v 32x64, gate/up 128x64, down 64x128


def write_fake_run(path, sparsity=0.5, perplexity=None, shape=TINY, row_spread=0.3, seed=0):
    """masks.safetensors + manifest.json; rows get keep-probabilities spread around 1 - sparsity."""
    rng = np.random.default_rng(seed)
    masks, layers = {}, {}
    for block in range(shape.num_hidden_layers):
        for op, (out, inp) in shape.op_shapes().items():
            keep = np.clip(rng.uniform(1 - sparsity - row_spread, 1 - sparsity + row_spread, (out, 1)), 0, 1)
            mask = rng.random((out, inp)) < keep  # (out, in)
            name = module_path(block, op)
            masks[name] = mask
            rows = 1 - mask.mean(axis=1)
            layers[name] = {"block": block, "op": op, "shape": [out, inp], "target_sparsity": sparsity,
                            "achieved_sparsity": float(1 - mask.mean()),
                            "row_sparsity": {"min": float(rows.min()), "max": float(rows.max()),
                                             "mean": float(rows.mean()), "std": float(rows.std())}}
    path.mkdir(parents=True)
    save_file(masks, str(path / "masks.safetensors"))
    nnz = sum(int(m.sum()) for m in masks.values())
    total = sum(m.size for m in masks.values())
    model = {k: getattr(shape, k) for k in ("hidden_size", "intermediate_size", "num_hidden_layers",
                                            "num_attention_heads", "num_key_value_heads", "head_dim")}
    manifest = {"format_version": 1, "model": {"id": shape.name, **model}, "method": "besa",
                "hyperparameters": {"besa_epochs": 1, "besa_beta": 5.0}, "target_sparsity": sparsity,
                "achieved_sparsity": 1 - nnz / total, "layers": layers, "seed": seed,
                "versions": {"besa_hw": "0.1.0", "numpy": np.__version__}, "perplexity": perplexity}
    (path / "manifest.json").write_text(json.dumps(manifest))
    return path


@pytest.fixture
def fake_run():
    return write_fake_run
