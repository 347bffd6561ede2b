"""Run folder: round trip, atomic writes, manifest updates, permissions."""

import json
import os
import stat

import pytest
import torch

from pruning.export import build_manifest, read_run, update_manifest, write_run


def _manifest():
    return build_manifest(model_info={"id": "tiny"}, method="wanda", hyperparameters={"sparsity": 0.5},
                          target_sparsity=0.5, achieved_sparsity=0.5, layers={}, calibration=None, seed=0,
                          versions={}, wall_seconds=1.0)


def test_round_trip(tmp_path):
    masks = {"model.layers.0.mlp.down_proj": torch.rand(4, 6) > 0.5}
    out = write_run(tmp_path / "run", masks, _manifest())
    loaded, manifest = read_run(out)
    assert loaded["model.layers.0.mlp.down_proj"].dtype == torch.bool
    assert torch.equal(loaded["model.layers.0.mlp.down_proj"], masks["model.layers.0.mlp.down_proj"])
    assert manifest["format_version"] == 1 and manifest["perplexity"]["pruned"] is None
    update_manifest(out, {"perplexity": {"pruned": 3.0}})
    assert json.loads((out / "manifest.json").read_text())["perplexity"]["pruned"] == 3.0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_failed_write_leaves_nothing(tmp_path):
    def boom(_path):
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_run(tmp_path / "run", {"a": torch.ones(2, 2, dtype=torch.bool)}, _manifest(), save_model=boom)
    assert list(tmp_path.iterdir()) == []


def test_writes_only_into_a_new_or_empty_folder(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="already exists"):
        write_run(tmp_path / "run", {}, _manifest())
    assert (tmp_path / "run" / "notes.txt").read_text() == "mine"
    (tmp_path / "run" / "notes.txt").unlink()
    write_run(tmp_path / "run", {"a": torch.ones(1, 1, dtype=torch.bool)}, _manifest())
    assert (tmp_path / "run" / "manifest.json").is_file()
    with pytest.raises(FileNotFoundError, match="not a run folder"):
        read_run(tmp_path)


def test_run_folder_has_normal_permissions(tmp_path):
    def save_model(path):
        path.mkdir()
        (path / "weights.bin").write_bytes(b"0")

    old = os.umask(0o022)
    try:
        out = write_run(tmp_path / "run", {"a": torch.ones(1, 1, dtype=torch.bool)}, _manifest(), save_model)
        update_manifest(out, {"perplexity": {"pruned": 3.0}})
    finally:
        os.umask(old)
    assert stat.S_IMODE(out.stat().st_mode) == stat.S_IMODE((out / "model").stat().st_mode) == 0o755
    for name in ("manifest.json", "masks.safetensors", "model/weights.bin"):
        assert stat.S_IMODE((out / name).stat().st_mode) == 0o644, name
