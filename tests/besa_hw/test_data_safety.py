"""Data-loss and silent-wrong-result regressions (issue 7): a user's folder is never touched, a failed
overwrite keeps the previous run, masks must be bool, NaN hardware values are refused."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from besa_hw.cli import main


def snapshot(root):
    """{relative path: sha256} of every file below ``root`` (hidden ones included)."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    return err[0]


def user_folder(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("my own work")
    (mine / "layers.csv").write_text("a,b\n1,2\n")
    return mine


def run_args(model_dir, text_file, out, *extra):
    return ["run", "--model", str(model_dir), "--method", "wanda", "--nsamples", "4", "--seqlen", "32",
            "--calib", str(text_file), "--eval-data", str(text_file), "--eval-seqlen", "64",
            "--eval-windows", "2", "--prefill-tokens", "16", "--out", str(out), *extra]


@pytest.fixture
def tiny_run(fake_run, tmp_path):
    return fake_run(tmp_path / "fake")


@pytest.mark.parametrize("command", ["prune", "run", "simulate", "sweep", "compare"])
def test_overwrite_never_touches_a_users_folder(command, tiny_model_dir, text_file, tiny_run, tmp_path, capsys):
    mine = user_folder(tmp_path)
    before = snapshot(tmp_path)
    args = {
        "prune": ["prune", "--model", str(tiny_model_dir), "--method", "magnitude", "--out", str(mine)],
        "run": run_args(tiny_model_dir, text_file, mine),
        "simulate": ["simulate", "--shape", "smollm2-135m", "--blocks", "1", "--out", str(mine)],
        "sweep": ["sweep", "--shape", "smollm2-135m", "--blocks", "1", "--grid", "pe_rows=32,64",
                  "--workers", "1", "--out", str(mine)],
        "compare": ["compare", str(tiny_run), "--phases", "decode", "--out", str(mine)],
    }[command]
    assert main(args + ["--overwrite"]) == 2
    assert "not a besa-hw output folder" in one_error_line(capsys)
    assert main(args) == 2
    assert "already exists" in one_error_line(capsys)
    assert snapshot(tmp_path) == before


def test_overwrite_replaces_the_tools_own_output(tmp_path, capsys):
    out = tmp_path / "sim"
    args = ["simulate", "--shape", "smollm2-135m", "--blocks", "1", "--quiet", "--out", str(out)]
    assert main(args) == 0
    assert main(args + ["--sparsity", "0.7"]) == 2  # exists: needs --overwrite
    assert main(args + ["--sparsity", "0.7", "--overwrite"]) == 0
    assert (out / "layers.csv").is_file() and sorted(p.name for p in tmp_path.iterdir()) == ["sim"]


def test_failed_run_overwrite_keeps_the_previous_run(tiny_model_dir, text_file, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    assert main(run_args(tiny_model_dir, text_file, out)) == 0
    before = snapshot(tmp_path)
    assert (out / "report" / "report.html").is_file()

    import besa_hw.report

    def broken_report(*_args, **_kwargs):
        raise ValueError("report failed half-way")

    monkeypatch.setattr(besa_hw.report, "build_report", broken_report)
    assert main(run_args(tiny_model_dir, text_file, out, "--overwrite", "--method", "magnitude")) == 2
    assert "report failed half-way" in capsys.readouterr().err
    assert snapshot(tmp_path) == before  # old run, its report included; no staging folder left


def test_interrupted_reuse_keeps_the_previous_run(tiny_model_dir, text_file, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    assert main(run_args(tiny_model_dir, text_file, out)) == 0
    before = snapshot(tmp_path)

    import besa_hw.pipeline

    def interrupted(*_args, **_kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(besa_hw.pipeline, "simulate_run", interrupted)
    assert main(run_args(tiny_model_dir, text_file, out, "--reuse", "--hw", "vitcod-64x8")) == 130
    assert snapshot(tmp_path) == before


def test_reuse_drops_the_previous_hardware_results(tiny_model_dir, text_file, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(run_args(tiny_model_dir, text_file, out)) == 0
    assert main(run_args(tiny_model_dir, text_file, out, "--reuse", "--phases", "decode", "--no-report")) == 0
    assert not (out / "sim" / "prefill").exists() and not (out / "report").exists()


def test_failed_prune_overwrite_keeps_the_previous_run(tiny_model_dir, text_file, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    base = ["prune", "--model", str(tiny_model_dir), "--method", "magnitude", "--out", str(out)]
    assert main(base) == 0
    before = snapshot(tmp_path)

    import pruning

    def interrupted(*_args, **_kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(pruning, "prune_model", interrupted)
    assert main(base + ["--overwrite"]) == 130
    assert snapshot(tmp_path) == before


def _rewrite_masks(run_dir, change):
    path = run_dir / "masks.safetensors"
    masks = load_file(str(path))
    change(masks)
    save_file(masks, str(path))


BAD_MASKS = {
    "float": (lambda m: m.update({k: v.astype(np.float32) * 0.5 for k, v in m.items()}), "dtype"),
    "shape": (lambda m: m.update({"model.layers.0.mlp.up_proj": np.ones((3, 3), bool)}), "shape"),
    "missing": (lambda m: m.pop("model.layers.1.mlp.down_proj"), "no mask for model.layers.1.mlp.down_proj"),
    "int not 0/1": (lambda m: m.update({"model.layers.0.mlp.up_proj":
                                        m["model.layers.0.mlp.up_proj"].astype(np.int8) * 2}), "0/1"),
}


@pytest.mark.parametrize("case", BAD_MASKS)
def test_simulate_refuses_bad_masks(case, fake_run, tmp_path, capsys):
    run = fake_run(tmp_path / "r")
    change, needle = BAD_MASKS[case]
    _rewrite_masks(run, change)
    assert main(["simulate", "--run", str(run), "--quiet"]) == 2
    line = one_error_line(capsys)
    assert needle in line and "model.layers." in line


def test_simulate_accepts_zero_one_integer_masks(fake_run, tmp_path, capsys):
    run = fake_run(tmp_path / "r")
    assert main(["simulate", "--run", str(run), "--quiet"]) == 0
    as_bool = capsys.readouterr().out.splitlines()[-1]
    _rewrite_masks(run, lambda m: m.update({k: v.astype(np.uint8) for k, v in m.items()}))
    assert main(["simulate", "--run", str(run), "--quiet"]) == 0
    assert capsys.readouterr().out.splitlines()[-1].split("simulated in")[0] == as_bool.split("simulated in")[0]


@pytest.mark.parametrize("case", ["float", "missing"])
def test_eval_refuses_bad_masks(case, tiny_model_dir, text_file, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["prune", "--model", str(tiny_model_dir), "--method", "magnitude", "--out", str(out)]) == 0
    change, needle = BAD_MASKS[case]
    _rewrite_masks(out, change)
    before = snapshot(tmp_path)
    capsys.readouterr()
    assert main(["eval", "--run", str(out), "--data", str(text_file), "--seqlen", "32", "--max-windows", "1"]) == 2
    line = one_error_line(capsys)
    assert needle in line and "model.layers." in line
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
@pytest.mark.parametrize("key", ["mac_pj", "sram_pj_per_byte", "dram_gbps", "dense_pe_fraction"])
def test_non_finite_hardware_values_are_refused(key, value, capsys):
    assert main(["simulate", "--shape", "smollm2-135m", "--blocks", "1", "--set", f"{key}={value}"]) == 2
    assert key in one_error_line(capsys)


def test_prune_seqlen_beyond_the_context_is_refused(tiny_model_dir, text_file, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["prune", "--model", str(tiny_model_dir), "--method", "wanda", "--calib", str(text_file),
                 "--nsamples", "1", "--seqlen", "2048", "--out", str(out)]) == 2
    assert "--seqlen 2048 exceeds the model's context of 1024" in one_error_line(capsys)
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_output_folders_have_normal_permissions(tiny_model_dir, tmp_path):
    out = tmp_path / "run"
    assert main(["prune", "--model", str(tiny_model_dir), "--method", "magnitude", "--out", str(out)]) == 0
    assert out.stat().st_mode & 0o755 == 0o755
    assert json.loads((out / ".besa-hw").read_text())["kind"] == "run"


def test_sigterm_unwinds_like_ctrl_c(tmp_path):
    """`kill` of a running command exits like Ctrl-C (130, one line) and keeps the previous output."""
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "sim"
    assert main(["simulate", "--shape", "smollm2-135m", "--blocks", "1", "--quiet", "--out", str(out)]) == 0
    before = snapshot(tmp_path)
    args = [sys.executable, "-m", "besa_hw.cli", "simulate", "--shape", "llama2-70b", "--phase", "prefill",
            "--exact-masks", "--quiet", "--overwrite", "--out", str(out)]
    proc = subprocess.Popen(args, stderr=subprocess.PIPE, text=True)
    # imports done, simulating (materialising 70B masks takes minutes): wait for the child's CPU time, not the
    # wall clock, so that a loaded machine does not send the signal before the handler is installed
    ticks = os.sysconf("SC_CLK_TCK")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        if (int(fields[11]) + int(fields[12])) / ticks >= 4.0:  # utime + stime
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and err.strip().splitlines()[-1] == "besa-hw simulate: interrupted"
    assert snapshot(tmp_path) == before and sorted(p.name for p in tmp_path.iterdir()) == ["sim"]
