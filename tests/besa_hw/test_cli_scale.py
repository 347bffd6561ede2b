"""`besa-hw prune` at scale as a user runs it: --blocks, Ctrl-C then --resume, the memory check,
and `besa-hw estimate`."""

import json

import pytest
import torch
from safetensors.torch import load_file

import pruning.sequential as sequential
from besa_hw import cli
from besa_hw.outdir import partial_dir


def _prune(model_dir, text_file, out, *extra):
    return ["prune", "--model", str(model_dir), "--method", "wanda", "--calib", str(text_file), "--nsamples", "4",
            "--seqlen", "32", "--device", "cpu", "--out", str(out), *extra]


def _errors(capsys) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.startswith("besa-hw")]


def test_first_blocks_only_run_is_refused_by_eval_and_simulate(tiny_model_dir, text_file, tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(_prune(tiny_model_dir, text_file, out, "--blocks", "1")) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["blocks_pruned"] == 1 and manifest["streamed"] and len(manifest["block_seconds"]) == 1
    assert {rec["block"] for rec in manifest["layers"].values()} == {0}
    capsys.readouterr()
    assert cli.main(["eval", "--run", str(out), "--data", str(text_file), "--seqlen", "16"]) == 2
    assert "pruned only the first 1 of 2 blocks" in _errors(capsys)[0]
    assert cli.main(["simulate", "--run", str(out), "--out", str(tmp_path / "sim"), "--quiet"]) == 2
    assert "pruned only the first 1 of 2 blocks" in _errors(capsys)[0]


def test_interrupted_prune_resumes_to_the_same_masks(tiny_model_dir, text_file, tmp_path, monkeypatch, capsys):
    assert cli.main(_prune(tiny_model_dir, text_file, tmp_path / "whole")) == 0
    real = sequential.METHOD_FNS["wanda"]

    def interrupted(job):
        if job.index == 1:
            raise KeyboardInterrupt
        return real(job)

    monkeypatch.setitem(sequential.METHOD_FNS, "wanda", interrupted)
    out = tmp_path / "cut"
    assert cli.main(_prune(tiny_model_dir, text_file, out)) == 130
    assert not out.exists()  # never published half-done
    err = capsys.readouterr().err
    assert "1 finished block(s) kept" in err and "--resume" in err
    monkeypatch.setitem(sequential.METHOD_FNS, "wanda", real)
    assert cli.main(_prune(tiny_model_dir, text_file, out)) == 2  # not silently discarded
    assert "pass --resume to continue it" in _errors(capsys)[0]
    assert cli.main(_prune(tiny_model_dir, text_file, out, "--seed", "3", "--resume")) == 2
    assert "other settings" in _errors(capsys)[0]
    assert cli.main(_prune(tiny_model_dir, text_file, out, "--resume")) == 0
    assert not partial_dir(out).exists()
    resumed, whole = load_file(str(out / "masks.safetensors")), load_file(str(tmp_path / "whole" / "masks.safetensors"))
    assert set(resumed) == set(whole) and all(torch.equal(resumed[k], whole[k]) for k in whole)


def test_overwrite_discards_an_unfinished_prune(tiny_model_dir, text_file, tmp_path, monkeypatch):
    real = sequential.METHOD_FNS["wanda"]
    monkeypatch.setitem(sequential.METHOD_FNS, "wanda",
                        lambda job: (_ for _ in ()).throw(KeyboardInterrupt) if job.index == 1 else real(job))
    out = tmp_path / "cut"
    assert cli.main(_prune(tiny_model_dir, text_file, out)) == 130
    monkeypatch.setitem(sequential.METHOD_FNS, "wanda", real)
    assert cli.main(_prune(tiny_model_dir, text_file, out, "--overwrite")) == 0
    assert (out / "masks.safetensors").is_file() and not partial_dir(out).exists()


def test_prune_refuses_what_would_not_fit(tiny_model_dir, text_file, tmp_path, monkeypatch, capsys):
    import besa_hw.estimate as estimate

    monkeypatch.setattr(estimate, "available_bytes", lambda device: 1e8)
    assert cli.main(_prune(tiny_model_dir, text_file, tmp_path / "run")) == 2
    err = _errors(capsys)
    assert len(err) == 1 and "would need about" in err[0] and "--nsamples" in err[0], err
    assert list(tmp_path.iterdir()) == []
    assert cli.main(_prune(tiny_model_dir, text_file, tmp_path / "run", "--no-estimate")) == 0


def test_estimate_command(tmp_path, capsys, tiny_model_dir):
    assert cli.main(["estimate", "--shape", "llama2-70b", "--device", "a100-80gb"]) == 0
    out = capsys.readouterr().out
    assert "peak:" in out and "dense stream" in out and "80.00 GB (a100-80gb)" in out
    assert cli.main(["estimate", "--model", str(tiny_model_dir), "--device", "cpu", "--method", "sparsegpt",
                     "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert "hessians" in data["components_gb"] and data["blocks"] == 2
    assert data["peak_gb"] == pytest.approx(sum(data["components_gb"].values()), abs=0.01)


def test_estimate_scales_with_the_calibration_set():
    from besa_hw.estimate import estimate, shape_of
    from pruning.config import CalibConfig, PruneConfig

    shape = shape_of(shape="llama-7b")
    small = estimate(shape, PruneConfig(method="besa"), CalibConfig(nsamples=8, seqlen=512))
    big = estimate(shape, PruneConfig(method="besa"), CalibConfig(nsamples=128, seqlen=512))
    # the dense stream (in and out) grows with N: 2 x N x T x H x 4 bytes
    assert big.components["dense stream"] - small.components["dense stream"] == 2 * 120 * 512 * 4096 * 4
    assert big.seconds_per_block > small.seconds_per_block
    assert small.components["block weights"] == 4 * sum(o * i for o, i in shape.op_shapes().values())


def test_whole_model_prune_leaves_no_partial_folder(tiny_model_dir, text_file, tmp_path):
    """--save-model with --wbits loads the model whole (compressed-tensors export); its per-block
    checkpoint is removed once the run is written, as a streamed prune's is."""
    out = tmp_path / "run"
    assert cli.main(_prune(tiny_model_dir, text_file, out, "--wbits", "4", "--group-size", "32", "--save-model")) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["streamed"] is False and manifest["blocks_pruned"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


@pytest.mark.parametrize("gpu, named", [("NVIDIA H200", "h200-141gb"), ("NVIDIA A100-SXM4-80GB", "a100-80gb"),
                                        ("NVIDIA GeForce RTX 4090", "rtx4090"), ("Tesla T4", "a100-80gb")])
def test_estimate_on_cuda_uses_the_detected_gpus_throughput(monkeypatch, gpu, named):
    from besa_hw.estimate import estimate, shape_of
    from pruning.config import CalibConfig, PruneConfig

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: gpu)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (40e9, 80e9))
    shape, cfg, calib = shape_of(shape="llama-7b"), PruneConfig(method="wanda"), CalibConfig(nsamples=8)
    on_cuda = estimate(shape, cfg, calib, device="cuda", dtype="bfloat16")
    on_named = estimate(shape, cfg, calib, device=named, dtype="bfloat16")
    assert on_cuda.seconds_per_block == on_named.seconds_per_block
    assert on_cuda.components == on_named.components and on_cuda.capacity == 40e9


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("method", ["wanda", "besa"])
def test_prune_on_cuda_records_its_gpu_memory(tiny_model_dir, text_file, tmp_path, method):
    out = tmp_path / "run"
    argv = _prune(tiny_model_dir, text_file, out)
    argv[argv.index("--device") + 1] = "cuda"
    argv[argv.index("--method") + 1] = method
    assert cli.main(argv) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["streamed"] and abs(manifest["achieved_sparsity"] - 0.5) < 0.01
    assert 0 < manifest["cuda_peak_allocated_gb"] <= manifest["cuda_peak_reserved_gb"]
    assert manifest["cuda_context_gb"] >= 0


def test_gpu_time_counts_the_obs_loop_per_column():
    """On a GPU SparseGPT adds the float32 Hessians and a launch-bound OBS loop (per weight column)."""
    from besa_hw.estimate import DEVICES, OBS_COLUMN_S, estimate, shape_of
    from pruning.config import CalibConfig, PruneConfig

    shape, calib = shape_of(shape="llama-7b"), CalibConfig(nsamples=128, seqlen=2048)
    wanda = estimate(shape, PruneConfig(method="wanda"), calib, device="h200-141gb", dtype="bfloat16")
    sgpt = estimate(shape, PruneConfig(method="sparsegpt"), calib, device="h200-141gb", dtype="bfloat16")
    H, I = 4096, 11008
    hessians = 2 * 128 * 2048 * (3 * H * H + I * I) / (DEVICES["h200-141gb"].fp32_tflops * 1e12)
    columns = 6 * H + I  # in_features of q, k, v, o, gate, up (H) and down (I)
    assert sgpt.seconds_per_block - wanda.seconds_per_block == pytest.approx(hessians + columns * OBS_COLUMN_S)
