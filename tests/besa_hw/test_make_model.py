"""``besa-hw make-model``: a random checkpoint of a real shape that Hugging Face loads, written deterministically.

The ``tiny`` shape (2 blocks, hidden 64) with the bundled SmolLM2 tokenizer (vocab 49152) is 13 MB; the
tokenizer is read once per session (a few seconds). The 7B shape is only planned here, never written.
"""

from __future__ import annotations

import errno
import json
from collections import namedtuple
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from besa_hw import make_model as mk
from besa_hw.cli import main
from simulator.workload import SHAPES

from test_bad_inputs import snapshot


def _make(out: Path, *extra: str) -> int:
    return main(["make-model", "--shape", "tiny", "--out", str(out), *extra])


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _shard_keys(folder: Path) -> list[str]:
    keys = []
    for shard in sorted(folder.glob("model-*.safetensors")):
        with safe_open(str(shard), "pt") as f:
            keys += list(f.keys())
    return keys


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("make-model") / "tiny"
    assert _make(out) == 0
    return out


def test_tiny_loads_with_its_shape_and_dtype(tiny_dir):
    from transformers import AutoModelForCausalLM

    from besa_hw.models import load_model

    model, info = AutoModelForCausalLM.from_pretrained(tiny_dir, output_loading_info=True)
    assert not any(info.values()), info  # no missing, unexpected or mismatched weight
    c = model.config
    assert (c.hidden_size, c.intermediate_size, c.num_hidden_layers, c.num_attention_heads,
            c.num_key_value_heads, c.head_dim) == (64, 128, 2, 4, 2, 16)
    assert c.vocab_size == len(mk.bundled_tokenizer()) == 49152
    assert json.loads((tiny_dir / "config.json").read_text())["torch_dtype"] == "float16"
    assert {p.dtype for p in model.parameters()} == {torch.float16}
    layer = model.model.layers[0]
    assert tuple(layer.self_attn.k_proj.weight.shape) == (32, 64)  # GQA: 2 kv heads x 16
    assert tuple(layer.mlp.down_proj.weight.shape) == (64, 128)
    # Hugging Face's init: N(0, 0.02), ones for RMSNorm, the padding token's embedding row zero.
    emb = model.model.embed_tokens.weight.float()
    assert abs(emb.std().item() - 0.02) < 0.001 and abs(emb.mean().item()) < 0.001
    assert torch.count_nonzero(emb[c.pad_token_id]) == 0
    assert torch.all(model.model.norm.weight == 1) and torch.all(layer.input_layernorm.weight == 1)
    lm, tok, _ = load_model(str(tiny_dir))
    ids = tok("def main():\n    return 0", return_tensors="pt").input_ids
    with torch.no_grad():
        logits = lm(ids).logits
    assert logits.shape == (1, ids.shape[1], 49152) and torch.isfinite(logits).all()


def test_index_lists_every_tensor_once_across_shards(tmp_path):
    tok = mk.bundled_tokenizer()
    config = mk.llama_config(mk.TINY, tok)
    shards = mk.shard_plan(mk.tensor_plan(config), "float16", max_shard_bytes=20_000)
    assert len(shards) > 5
    mk.write_checkpoint(tmp_path, config, tok, shards, seed=0)
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    keys = _shard_keys(tmp_path)
    assert len(keys) == len(set(keys)) == len(index["weight_map"]) == 21  # 2 x 9 + embed, norm, lm_head
    for shard in sorted(tmp_path.glob("model-*.safetensors")):
        with safe_open(str(shard), "pt") as f:
            assert all(index["weight_map"][k] == shard.name for k in f.keys())
    assert index["metadata"]["total_size"] == 2 * index["metadata"]["total_parameters"]
    assert sum(p.stat().st_size for p in tmp_path.glob("model-*")) == mk.checkpoint_bytes(shards, "float16")
    from transformers import AutoModelForCausalLM

    model, info = AutoModelForCausalLM.from_pretrained(tmp_path, output_loading_info=True)
    assert not any(info.values()), info


def test_same_seed_same_bytes(tiny_dir, tmp_path):
    assert _make(tmp_path / "again") == 0
    assert _files(tmp_path / "again") == _files(tiny_dir)
    assert _make(tmp_path / "seed1", "--seed", "1") == 0
    other = _files(tmp_path / "seed1")
    shard = "model-00001-of-00001.safetensors"
    assert other[shard] != _files(tiny_dir)[shard]
    assert {k: v for k, v in other.items() if k != shard} == {k: v for k, v in _files(tiny_dir).items() if k != shard}


@pytest.mark.parametrize("name", ["llama-7b", "llama2-7b", "llama-13b", "llama2-70b", "smollm2-135m"])
def test_plan_has_the_shape_table_dimensions(name):
    """Every block Linear has the simulator's (out, in); only the vocabulary follows the tokenizer."""
    shape = SHAPES[name]
    tok = mk.bundled_tokenizer()
    specs = {s.name: s for s in mk.tensor_plan(mk.llama_config(shape, tok))}
    for block in (0, shape.num_hidden_layers - 1):
        for op, dims in shape.op_shapes().items():
            group = "self_attn" if op.endswith(("q_proj", "k_proj", "v_proj", "o_proj")) else "mlp"
            assert specs[f"model.layers.{block}.{group}.{op}.weight"].shape == dims
    assert specs["model.embed_tokens.weight"].shape == (49152, shape.hidden_size)
    assert ("lm_head.weight" in specs) == (name != "smollm2-135m")  # SmolLM2 ties it to the embedding
    assert len(specs) == 9 * shape.num_hidden_layers + 2 + (name != "smollm2-135m")


def test_llama7b_size_and_shards():
    """The 7B shape: 6.88 G parameters (6.74 G with LLaMA's own 32000-token vocabulary), ~2 GB shards."""
    config = mk.llama_config(SHAPES["llama-7b"], mk.bundled_tokenizer())
    specs = mk.tensor_plan(config)
    params = sum(s.numel for s in specs)
    assert params - 2 * (49152 - 32000) * 4096 == 6_738_415_616
    shards = mk.shard_plan(specs, "float16")
    assert len(shards) == 7 and all(sum(s.numel for s in shard) * 2 <= mk.MAX_SHARD_BYTES for shard in shards)
    assert 2 * params < mk.checkpoint_bytes(shards, "float16") < 2 * params + 1_000_000


def test_refuses_a_shape_the_disk_cannot_hold(tmp_path, monkeypatch, capsys):
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(mk.shutil, "disk_usage", lambda path: usage(10**12, 10**12 - 10**9, 10**9))
    before = snapshot(tmp_path)
    assert main(["make-model", "--shape", "llama-7b", "--out", str(tmp_path / "big")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("besa-hw make-model: error: --shape llama-7b") and "GB" in err and "\n" not in err
    assert snapshot(tmp_path) == before


def test_existing_folder_needs_overwrite(tiny_dir, tmp_path, capsys):
    out = tmp_path / "model"
    assert _make(out) == 0
    before = snapshot(tmp_path)
    assert _make(out, "--seed", "1") == 2
    assert "--overwrite" in capsys.readouterr().err
    assert snapshot(tmp_path) == before
    assert _make(out, "--seed", "1", "--overwrite") == 0
    assert _files(out)["model-00001-of-00001.safetensors"] != _files(tiny_dir)["model-00001-of-00001.safetensors"]


def test_interrupt_leaves_nothing(tmp_path, monkeypatch, capsys):
    """Ctrl-C halfway through the shards: exit 130, one line, no folder and no staging sibling."""
    write = mk._write_tensor
    calls = []

    def interrupt_after_five(*args, **kwargs):
        calls.append(1)
        if len(calls) > 5:
            raise KeyboardInterrupt
        write(*args, **kwargs)

    monkeypatch.setattr(mk, "_write_tensor", interrupt_after_five)
    assert _make(tmp_path / "model") == 130
    assert capsys.readouterr().err.endswith("besa-hw make-model: interrupted\n")
    assert list(tmp_path.iterdir()) == []


def test_disk_full_while_writing_is_one_line(tmp_path, monkeypatch, capsys):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(mk, "_write_tensor", full)
    assert _make(tmp_path / "model") == 2
    err = capsys.readouterr().err
    assert err.startswith("besa-hw make-model: error: --out") and "disk filled up" in err and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def _user_folder(tmp: Path) -> str:
    (tmp / "mine").mkdir()
    (tmp / "mine" / "notes.txt").write_text("keep me")
    return str(tmp / "mine")


BAD = [  # (id, argv after "make-model" given tmp, culprit named in the error line)
    ("shape-unknown", lambda t: ["--shape", "gpt-5", "--out", str(t / "m")], "gpt-5"),
    ("shape-missing", lambda t: ["--out", str(t / "m")], "--shape"),
    ("out-missing", lambda t: ["--shape", "tiny"], "--out"),
    ("seed-negative", lambda t: ["--shape", "tiny", "--seed", "-1", "--out", str(t / "m")], "--seed"),
    ("seed-huge", lambda t: ["--shape", "tiny", "--seed", str(2**64), "--out", str(t / "m")], "--seed"),
    ("seed-text", lambda t: ["--shape", "tiny", "--seed", "x", "--out", str(t / "m")], "--seed"),
    ("dtype-unknown", lambda t: ["--shape", "tiny", "--dtype", "int8", "--out", str(t / "m")], "--dtype"),
    ("out-is-file", lambda t: ["--shape", "tiny", "--out", _file(t / "afile")], "afile"),
    ("out-parent-is-file", lambda t: ["--shape", "tiny", "--out", _file(t / "afile") + "/m"], "afile"),
    ("out-user-folder", lambda t: ["--shape", "tiny", "--out", _user_folder(t)], "mine"),
    ("out-user-folder-overwrite", lambda t: ["--shape", "tiny", "--out", _user_folder(t), "--overwrite"], "mine"),
    ("layers-zero", lambda t: ["--shape", "tiny", "--layers", "0", "--out", str(t / "m")], "--layers"),
    ("layers-too-many", lambda t: ["--shape", "tiny", "--layers", "3", "--out", str(t / "m")], "--layers"),
    ("tokenizer-missing", lambda t: ["--shape", "tiny", "--tokenizer", str(t / "nope"), "--out", str(t / "m")],
     "nope"),
    ("tokenizer-not-one", lambda t: ["--shape", "tiny", "--tokenizer", _user_folder(t), "--out", str(t / "m")],
     "mine"),
]


def _file(path: Path) -> str:
    path.write_text("x")
    return str(path)


@pytest.mark.parametrize("case", BAD, ids=[c[0] for c in BAD])
def test_bad_input(case, tmp_path, monkeypatch, capsys):
    """Exit 2, one line ``besa-hw make-model: error: ...`` naming the culprit, nothing written."""
    _, argv, culprit = case
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("BESA_HW_DEBUG", raising=False)
    args = ["make-model", *argv(tmp_path)]
    before = snapshot(tmp_path)
    assert main(args) == 2
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert "Traceback" not in captured.err + captured.out and len(lines) == 1, captured.err
    assert lines[0].startswith("besa-hw make-model: error: ") and culprit in lines[0], lines[0]
    assert snapshot(tmp_path) == before


def test_fewer_layers_and_a_given_tokenizer(tiny_dir, byte_tokenizer, tmp_path):
    """--layers 1 writes block 0 exactly as the full model's (same seed), with a saved tokenizer's vocabulary."""
    from transformers import AutoTokenizer

    byte_tokenizer.save_pretrained(tmp_path / "tok")
    assert _make(tmp_path / "m", "--layers", "1", "--tokenizer", str(tmp_path / "tok")) == 0
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["num_hidden_layers"] == 1
    assert config["vocab_size"] == len(AutoTokenizer.from_pretrained(tmp_path / "tok")) != 49152
    keys = _shard_keys(tmp_path / "m")
    assert not any(k.startswith("model.layers.1.") for k in keys)
    name = "model.layers.0.mlp.down_proj.weight"
    with safe_open(str(tmp_path / "m" / "model-00001-of-00001.safetensors"), "pt") as f, \
            safe_open(str(tiny_dir / "model-00001-of-00001.safetensors"), "pt") as g:
        assert torch.equal(f.get_tensor(name), g.get_tensor(name))


@pytest.mark.parametrize("dtype", ["bfloat16", "float32"])
def test_other_dtypes(dtype, tmp_path):
    assert _make(tmp_path / "m", "--dtype", dtype) == 0
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["dtype"] == config["torch_dtype"] == dtype
    with safe_open(str(tmp_path / "m" / "model-00001-of-00001.safetensors"), "pt") as f:
        weight = f.get_tensor("model.layers.1.mlp.up_proj.weight")
    assert weight.dtype == getattr(torch, dtype) and weight.shape == (128, 64)
