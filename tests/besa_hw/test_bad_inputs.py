"""Every bad input: exit status 2, one line ``besa-hw CMD: error: ...`` naming the culprit, no traceback,
nothing written.

Each case builds its inputs in a fresh tmp folder (also the working directory), runs
``besa_hw.cli.main`` and compares a snapshot of the files (sizes, mtimes, hashes) before and after.
Most errors are caught before any model loads; the few that need the tiny model load it in well
under a second.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

from besa_hw.cli import main

from conftest import write_fake_run

GARBAGE = bytes((i * 131 + 7) % 256 for i in range(4096))  # not UTF-8, not JSON/TOML/safetensors/GGUF
HUGE = str(10**12)
PROFILE_KEY = "model.layers.0.mlp.up_proj"
# One token per activation pass and one row per weight tile: 2**20 tokens unroll ~6e8 tile steps per op.
TOO_MANY_STEPS = ("--phase", "prefill", "--tokens", str(1 << 20), "--set", "act_sram_kib=0.6",
                  "--set", "weight_sram_kib=1.2")


class Env:
    """Inputs of one case, created under ``tmp`` (the working directory)."""

    def __init__(self, tmp: Path, model: Path, text: Path) -> None:
        self.tmp, self.model, self.text = tmp, model, text
        self.out = str(tmp / "out")

    def path(self, name: str) -> str:
        return str(self.tmp / name)

    def file(self, name: str, content: bytes | str = GARBAGE) -> str:
        path = self.tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        return str(path)

    def dir(self, name: str) -> str:
        (self.tmp / name).mkdir(parents=True)
        return str(self.tmp / name)

    def run(self, name: str = "run", masks: bytes | Callable[[bytes], bytes | None] | None = None,
            manifest: Callable[[dict], object] | str | bytes | None = None) -> str:
        """A fake run folder of the tiny model's shape (its manifest points at the tiny model)."""
        path = write_fake_run(self.tmp / name)
        meta = json.loads((path / "manifest.json").read_text())
        meta["model"]["id"] = str(self.model)
        if callable(manifest):
            meta = manifest(meta)
        text = manifest if isinstance(manifest, (str, bytes)) else json.dumps(meta)
        (path / "manifest.json").write_bytes(text.encode() if isinstance(text, str) else text)
        if masks is not None:
            new = masks((path / "masks.safetensors").read_bytes()) if callable(masks) else masks
            if new is None:
                (path / "masks.safetensors").unlink()
            else:
                (path / "masks.safetensors").write_bytes(new)
        return str(path)

    def gguf(self, name: str, keep: Callable[[int], int]) -> str:
        """A small valid GGUF file cut to ``keep(size)`` bytes."""
        import gguf
        import numpy as np

        full = self.tmp / ".full.gguf"
        writer = gguf.GGUFWriter(str(full), "llama")
        writer.add_block_count(1)
        writer.add_context_length(64)
        writer.add_tensor("token_embd.weight", np.zeros((64, 64), np.float32))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        data = full.read_bytes()
        full.unlink()
        return self.file(name, data[:keep(len(data))])

    # Base command lines; flags given later override earlier ones (argparse keeps the last).
    def prune(self, *extra: str, method: str = "wanda") -> list[str]:
        return ["prune", "--model", str(self.model), "--method", method, "--calib", str(self.text),
                "--nsamples", "2", "--seqlen", "16", "--device", "cpu", "--out", self.out, *extra]

    def run_cmd(self, *extra: str) -> list[str]:
        return ["run", "--model", str(self.model), "--method", "wanda", "--calib", str(self.text),
                "--nsamples", "2", "--seqlen", "16", "--eval-data", str(self.text), "--eval-seqlen", "16",
                "--eval-windows", "1", "--prefill-tokens", "16", "--device", "cpu", "--out", self.out, *extra]

    def reuse(self, **run_kwargs) -> list[str]:
        return ["run", "--reuse", "--out", self.run("out", **run_kwargs), "--eval-data", str(self.text),
                "--eval-seqlen", "16", "--eval-windows", "1", "--prefill-tokens", "16", "--device", "cpu"]

    def eval_run(self, *extra: str, **run_kwargs) -> list[str]:
        return ["eval", "--run", self.run(**run_kwargs), "--data", str(self.text), "--seqlen", "16",
                "--max-windows", "1", "--device", "cpu", *extra]

    def eval_model(self, *extra: str) -> list[str]:
        return ["eval", "--model", str(self.model), "--data", str(self.text), "--seqlen", "16",
                "--max-windows", "1", "--device", "cpu", *extra]

    def simulate(self, *extra: str) -> list[str]:
        return ["simulate", "--shape", "smollm2-135m", "--blocks", "1", "--quiet", "--out", self.out, *extra]

    def simulate_run(self, *extra: str, **run_kwargs) -> list[str]:
        return ["simulate", "--run", self.run(**run_kwargs), "--quiet", "--out", self.out, *extra]

    def sweep(self, *extra: str) -> list[str]:
        return ["sweep", "--shape", "smollm2-135m", "--blocks", "1", "--workers", "1",
                "--grid", "pe_rows=32,64", "--out", self.out, *extra]

    def compare_runs(self, *extra: str, **run_kwargs) -> list[str]:
        return ["compare", self.run("a"), self.run("b", **run_kwargs), "--out", self.out, *extra]

    def compare_profiles(self, *extra: str, second: str | None = None) -> list[str]:
        a = self.file("a.json", json.dumps({"q_proj": 0.3}))
        b = second or self.file("b.json", json.dumps({"q_proj": 0.6}))
        return ["compare", "--shape", "smollm2-135m", "--profiles", a, b, "--blocks", "1", "--out", self.out,
                *extra]


@dataclass(frozen=True)
class Case:
    id: str
    argv: Callable[[Env], list[str]]
    culprit: str | tuple[str, ...]  # substring(s) the error line must contain
    skip: Callable[[], str | None] = lambda: None


def _cut(fraction: float) -> Callable[[bytes], bytes]:
    return lambda data: data[:int(len(data) * fraction)]


def _delete(data: bytes) -> None:
    return None


def _drop(key: str) -> Callable[[dict], dict]:
    return lambda meta: {k: v for k, v in meta.items() if k != key}


def _unwritable_proc() -> str | None:
    if not os.path.isdir("/proc/sys") or os.access("/proc/sys", os.W_OK):
        return "/proc/sys is writable here"
    return None


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _root() -> str | None:
    return "root ignores folder permissions" if os.geteuid() == 0 else None


def _readonly_dir(e: Env) -> str:
    path = e.dir("locked")
    os.chmod(path, 0o555)
    return path


MANIFEST_DAMAGE = [  # (id, Env.run kwargs, culprit)
    ("manifest-invalid-json", {"manifest": "{not json"}, "manifest.json"),
    ("manifest-binary", {"manifest": GARBAGE}, "manifest.json"),
    ("manifest-list", {"manifest": "[1, 2]"}, "manifest.json"),
    ("manifest-no-model", {"manifest": _drop("model")}, ("manifest.json", "'model'")),
    ("manifest-model-null", {"manifest": lambda m: {**m, "model": None}}, ("manifest.json", "'model'")),
]
MASKS_DAMAGE = [
    ("masks-missing", {"masks": _delete}, "masks.safetensors"),
    ("masks-truncated-half", {"masks": _cut(0.5)}, "masks.safetensors"),
    ("masks-truncated-header", {"masks": _cut(0.0003)}, "masks.safetensors"),
    ("masks-garbage", {"masks": GARBAGE}, "masks.safetensors"),
    ("masks-empty", {"masks": b""}, "masks.safetensors"),
]
RUN_FOLDER_CASES = MANIFEST_DAMAGE + MASKS_DAMAGE + [
    ("manifest-no-layers", {"manifest": _drop("layers")}, ("manifest.json", "'layers'")),
]

# ---------------------------------------------------------------------------------------------------------------
PRUNE = [
    # model
    Case("model-missing", lambda e: e.prune("--model", e.path("nope")), "nope"),
    Case("model-empty-folder", lambda e: e.prune("--model", e.dir("empty_model")), "empty_model"),
    Case("model-garbage-file", lambda e: e.prune("--model", e.file("weights.bin")), "weights.bin"),
    Case("model-garbage-gguf", lambda e: e.prune("--model", e.file("garbage.gguf")), "garbage.gguf"),
    Case("model-empty-gguf", lambda e: e.prune("--model", e.file("empty.gguf", b"")), "empty.gguf"),
    Case("model-gguf-cut-in-header", lambda e: e.prune("--model", e.gguf("head.gguf", lambda n: 40)), "head.gguf"),
    Case("model-gguf-cut-halfway", lambda e: e.prune("--model", e.gguf("half.gguf", lambda n: n // 2)),
         "half.gguf"),
    Case("model-gguf-cut-last-byte", lambda e: e.prune("--model", e.gguf("short.gguf", lambda n: n - 1)),
         "short.gguf"),
    Case("model-config-not-json", lambda e: e.prune("--model", str(Path(e.file("badcfg/config.json", "{oops")).parent)),
         "badcfg"),
    Case("model-config-binary", lambda e: e.prune("--model", str(Path(e.file("bincfg/config.json")).parent)),
         "bincfg"),
    Case("gguf-file-missing", lambda e: e.prune("--gguf-file", "nope.gguf"), "nope.gguf"),
    Case("model-is-run-folder", lambda e: e.prune("--model", e.run("somerun")), "somerun"),
    # calibration text
    Case("calib-missing", lambda e: e.prune("--calib", e.path("nope.txt")), "nope.txt"),
    Case("calib-folder", lambda e: e.prune("--calib", e.dir("calibdir")), "calibdir"),
    Case("calib-binary", lambda e: e.prune("--calib", e.file("garbage.txt")), ("garbage.txt", "UTF-8")),
    Case("calib-empty", lambda e: e.prune("--calib", e.file("empty.txt", "")), ("empty.txt", "empty")),
    # presets
    Case("preset-unknown", lambda e: e.prune("--preset", "no-such-preset"), "no-such-preset"),
    Case("preset-folder", lambda e: e.prune("--preset", e.dir("presetdir")), "presetdir"),
    Case("preset-binary", lambda e: e.prune("--preset", e.file("bin.toml")), ("bin.toml", "TOML")),
    Case("preset-invalid-toml", lambda e: e.prune("--preset", e.file("bad.toml", "[prune\nx=")), ("bad.toml", "TOML")),
    Case("preset-prune-not-table", lambda e: e.prune("--preset", e.file("p.toml", "prune = 3")), ("p.toml", "prune")),
    Case("preset-unknown-key", lambda e: e.prune("--preset", e.file("k.toml", "[prune]\nfoo = 1")), "foo"),
    Case("preset-bad-type", lambda e: e.prune("--preset", e.file("t.toml", '[prune]\nbesa_epochs = "two"')),
         "besa_epochs"),
    # profiles
    Case("profile-missing", lambda e: e.prune("--profile", e.path("nope.json")), "nope.json"),
    Case("profile-folder", lambda e: e.prune("--profile", e.dir("profdir")), "profdir"),
    Case("profile-binary", lambda e: e.prune("--profile", e.file("garbage.json")), ("garbage.json", "UTF-8")),
    Case("profile-invalid-json", lambda e: e.prune("--profile", e.file("bad.json", "{x")), ("bad.json", "JSON")),
    Case("profile-empty-file", lambda e: e.prune("--profile", e.file("empty.json", "")), "empty.json"),
    Case("profile-null-value", lambda e: e.prune("--profile", e.file("n.json", json.dumps({PROFILE_KEY: None}))),
         PROFILE_KEY),
    Case("profile-list-value", lambda e: e.prune("--profile", e.file("l.json", json.dumps({PROFILE_KEY: [0.5]}))),
         PROFILE_KEY),
    Case("profile-top-level-list", lambda e: e.prune("--profile", e.file("top.json", "[0.5]")), "top.json"),
    Case("profile-top-level-null", lambda e: e.prune("--profile", e.file("null.json", "null")), "null.json"),
    Case("profile-manifest-no-sparsity", lambda e: e.prune("--profile", e.file(
        "m.json", json.dumps({"layers": {PROFILE_KEY: {"block": 0}}}))), PROFILE_KEY),
    Case("profile-nan", lambda e: e.prune("--profile", e.file("nan.json", '{"%s": NaN}' % PROFILE_KEY)),
         PROFILE_KEY),
    # numeric flags
    *[Case(f"sparsity-{v}", lambda e, v=v: e.prune("--sparsity", v), "sparsity")
      for v in ("nan", "inf", "-0.1", "1.0", "abc")],
    *[Case(f"nsamples-{v}", lambda e, v=v: e.prune("--nsamples", v), "nsamples") for v in ("0", "-1", HUGE, "1.5")],
    *[Case(f"seqlen-{v}", lambda e, v=v: e.prune("--seqlen", v), "seqlen") for v in ("0", "1", "-4", "x")],
    *[Case(f"epochs-{v}", lambda e, v=v: e.prune("--epochs", v, method="besa"), "epochs") for v in ("-1", "1.5")],
    *[Case(f"seed-{v}", lambda e, v=v: e.prune("--seed", v), "seed") for v in ("-1", str(2**64))],
    *[Case(f"nm-{v}", lambda e, v=v: e.prune("--nm", v), "N:M") for v in ("0:4", "4:4", "2:4:8", "a:b")],
    Case("nm-with-besa", lambda e: e.prune("--nm", "2:4", method="besa"), "N:M"),
    # --set
    Case("set-epochs-float", lambda e: e.prune("--set", "besa_epochs=1.5", method="besa"),
         ("besa_epochs", "expects int")),
    Case("set-step-text", lambda e: e.prune("--set", "besa_step=abc", method="besa"), ("besa_step", "expects float")),
    Case("set-step-nan", lambda e: e.prune("--set", "besa_step=NaN", method="besa"), "besa_step"),
    Case("set-step-zero", lambda e: e.prune("--set", "besa_step=0", method="besa"), "besa_step"),
    Case("set-samples-float", lambda e: e.prune("--set", "besa_samples=1.5", method="besa"), "besa_samples"),
    Case("set-reconstruct-text", lambda e: e.prune("--set", "besa_reconstruct=maybe", method="besa"),
         "besa_reconstruct"),
    Case("set-sparsity-null", lambda e: e.prune("--set", "sparsity=null"), "sparsity"),
    Case("set-forward-batch-zero", lambda e: e.prune("--set", "forward_batch=0"), "forward_batch"),
    Case("set-lr-negative", lambda e: e.prune("--set", "besa_lr=-1", method="besa"), "besa_lr"),
    Case("set-init-width-zero", lambda e: e.prune("--set", "besa_init_width=0", method="besa"), "besa_init_width"),
    Case("set-percdamp-inf", lambda e: e.prune("--set", "sparsegpt_percdamp=Infinity", method="sparsegpt"),
         "sparsegpt_percdamp"),
    Case("set-blocksize-zero", lambda e: e.prune("--set", "sparsegpt_blocksize=0", method="sparsegpt"),
         "sparsegpt_blocksize"),
    Case("set-no-equals", lambda e: e.prune("--set", "besa_epochs"), "besa_epochs"),
    Case("set-nm-text", lambda e: e.prune("--set", "nm=x"), "N:M"),
    Case("method-unknown", lambda e: e.prune("--method", "random"), "--method"),
    Case("allocation-unknown", lambda e: e.prune("--allocation", "diag", method="besa"), "--allocation"),
    # device
    Case("device-cuda-absent", lambda e: e.prune("--device", "cuda"), "cuda",
         skip=lambda: "CUDA is available" if _cuda() else None),
    Case("device-unknown", lambda e: e.prune("--device", "tpu"), ("--device", "tpu")),
    Case("device-bad-index", lambda e: e.prune("--device", "cuda:99"), ("--device", "cuda:99")),
    # output location
    Case("out-parent-is-file", lambda e: e.prune("--out", e.file("afile", "x") + "/run"), "afile"),
    Case("out-parent-read-only", lambda e: e.prune("--out", "/proc/sys/besa-hw-test/run"), "/proc/sys",
         skip=_unwritable_proc),
    Case("out-parent-no-permission", lambda e: e.prune("--out", _readonly_dir(e) + "/run"), "locked", skip=_root),
]


RUN = [
    Case("model-missing", lambda e: e.run_cmd("--model", e.path("nope")), "nope"),
    Case("model-gguf-cut", lambda e: e.run_cmd("--model", e.gguf("half.gguf", lambda n: n // 2)), "half.gguf"),
    Case("calib-binary", lambda e: e.run_cmd("--calib", e.file("garbage.txt")), "garbage.txt"),
    Case("eval-data-binary", lambda e: e.run_cmd("--eval-data", e.file("garbage.txt")), "garbage.txt"),
    Case("eval-data-folder", lambda e: e.run_cmd("--eval-data", e.dir("evaldir")), "evaldir"),
    Case("eval-data-empty", lambda e: e.run_cmd("--eval-data", e.file("empty.txt", "")), "empty.txt"),
    *[Case(f"eval-seqlen-{v}", lambda e, v=v: e.run_cmd("--eval-seqlen", v), "seqlen") for v in ("1", "0", "-3")],
    *[Case(f"eval-windows-{v}", lambda e, v=v: e.run_cmd("--eval-windows", v), "windows") for v in ("0", "-1")],
    *[Case(f"decode-tokens-{v}", lambda e, v=v: e.run_cmd("--decode-tokens", v), "--decode-tokens")
      for v in ("0", "-1", HUGE)],
    Case("prefill-tokens-huge", lambda e: e.run_cmd("--prefill-tokens", HUGE), "--prefill-tokens"),
    Case("phases-unknown", lambda e: e.run_cmd("--phases", "train"), "--phase takes"),
    Case("sparsity-nan", lambda e: e.run_cmd("--sparsity", "nan"), "sparsity"),
    Case("nsamples-huge", lambda e: e.run_cmd("--nsamples", HUGE), "nsamples"),
    Case("seed-negative", lambda e: e.run_cmd("--seed", "-1"), "seed"),
    Case("epochs-text", lambda e: e.run_cmd("--epochs", "x"), "--epochs"),
    Case("profile-null", lambda e: e.run_cmd("--profile", e.file("n.json", json.dumps({PROFILE_KEY: None}))),
         PROFILE_KEY),
    Case("hw-unknown", lambda e: e.run_cmd("--hw", "tpu-v9"), "tpu-v9"),
    Case("hw-binary", lambda e: e.run_cmd("--hw", e.file("bin.toml")), ("bin.toml", "TOML")),
    Case("hw-not-a-table", lambda e: e.run_cmd("--hw", e.file("hw.toml", "hardware = 3")), ("hw.toml", "hardware")),
    Case("hw-set-tiny-sram", lambda e: e.run_cmd("--set", "act_sram_kib=0.0001"), "act_sram_kib"),
    Case("device-cuda-absent", lambda e: e.run_cmd("--device", "cuda"), "cuda",
         skip=lambda: "CUDA is available" if _cuda() else None),
    Case("device-unknown", lambda e: e.run_cmd("--device", "gpu0"), "gpu0"),
    Case("out-parent-is-file", lambda e: e.run_cmd("--out", e.file("afile", "x") + "/run"), "afile"),
    Case("out-parent-read-only", lambda e: e.run_cmd("--out", "/proc/sys/besa-hw-test/run"), "/proc/sys",
         skip=_unwritable_proc),
    # --reuse of a folder without masks is not a finished run: the --overwrite rules apply instead.
    *[Case(f"reuse-{name}", lambda e, kw=kw: e.reuse(**kw), culprit) for name, kw, culprit in RUN_FOLDER_CASES
      if name not in ("manifest-no-layers", "masks-missing")],
]

EVAL = [
    Case("run-missing", lambda e: ["eval", "--run", e.path("nope"), "--data", str(e.text)], "nope"),
    Case("run-is-file", lambda e: ["eval", "--run", e.file("afile", "x"), "--data", str(e.text)], "afile"),
    Case("run-empty-folder", lambda e: ["eval", "--run", e.dir("emptyrun"), "--data", str(e.text)], "emptyrun"),
    *[Case(name, lambda e, kw=kw: e.eval_run(**kw), culprit) for name, kw, culprit in RUN_FOLDER_CASES
      if name != "manifest-no-layers"],
    Case("manifest-model-no-id", lambda e: e.eval_run(manifest=lambda m: {**m, "model": _drop("id")(m["model"])}),
         ("manifest.json", "'id'")),
    Case("data-missing", lambda e: e.eval_run("--data", e.path("nope.txt")), "nope.txt"),
    Case("data-folder", lambda e: e.eval_run("--data", e.dir("datadir")), "datadir"),
    Case("data-binary", lambda e: e.eval_run("--data", e.file("garbage.txt")), ("garbage.txt", "UTF-8")),
    Case("data-empty", lambda e: e.eval_run("--data", e.file("empty.txt", "")), "empty.txt"),
    *[Case(f"seqlen-{v}", lambda e, v=v: e.eval_run("--seqlen", v), "--seqlen") for v in ("1", "0", "-5", "2.5")],
    Case("max-windows-negative", lambda e: e.eval_run("--max-windows", "-1"), "--max-windows"),
    Case("model-missing", lambda e: e.eval_model("--model", e.path("nope")), "nope"),
    Case("model-garbage-file", lambda e: e.eval_model("--model", e.file("weights.bin")), "weights.bin"),
    Case("model-empty-folder", lambda e: e.eval_model("--model", e.dir("empty_model")), "empty_model"),
    Case("model-gguf-cut-in-header", lambda e: e.eval_model("--model", e.gguf("head.gguf", lambda n: 60)),
         "head.gguf"),
    Case("model-gguf-cut-halfway", lambda e: e.eval_model("--model", e.gguf("half.gguf", lambda n: n // 2)),
         "half.gguf"),
    Case("model-data-binary", lambda e: e.eval_model("--data", e.file("garbage.txt")), "garbage.txt"),
    Case("device-cuda-absent", lambda e: e.eval_run("--device", "cuda"), "cuda",
         skip=lambda: "CUDA is available" if _cuda() else None),
    Case("device-unknown", lambda e: e.eval_model("--device", "tpu"), "tpu"),
    Case("nothing-to-evaluate", lambda e: ["eval", "--model", str(e.model)], ("--data", "--tasks")),
    Case("tasks-yaml-missing", lambda e: e.eval_model("--tasks", e.path("nope.yaml")), "nope.yaml"),
    Case("tasks-folder-empty", lambda e: e.eval_run("--tasks", e.dir("taskdir") + "/"), "taskdir"),
    Case("tasks-limit-zero", lambda e: e.eval_model("--tasks", "piqa", "--limit", "0"), "--limit"),
    Case("tasks-yaml-binary", lambda e: e.eval_model("--tasks", e.file("bad.yaml")), "bad.yaml",
         skip=lambda: None if importlib.util.find_spec("lm_eval") else "lm-eval (besa-hw[tasks]) not installed"),
]

SIMULATE = [
    Case("shape-unknown", lambda e: e.simulate("--shape", "gpt-5"), "gpt-5"),
    Case("run-missing", lambda e: ["simulate", "--run", e.path("nope")], "nope"),
    Case("run-is-file", lambda e: ["simulate", "--run", e.file("afile", "x")], "afile"),
    Case("run-empty-folder", lambda e: ["simulate", "--run", e.dir("emptyrun")], "emptyrun"),
    *[Case(name, lambda e, kw=kw: e.simulate_run(**kw), culprit) for name, kw, culprit in RUN_FOLDER_CASES],
    Case("manifest-layers-list", lambda e: e.simulate_run(manifest=lambda m: {**m, "layers": [1]}),
         ("manifest.json", "'layers'")),
    *[Case(f"sparsity-{v}", lambda e, v=v: e.simulate("--sparsity", v), "sparsity")
      for v in ("nan", "inf", "-0.1", "1.0", "x")],
    *[Case(f"row-spread-{v}", lambda e, v=v: e.simulate("--row-dist", "uniform", "--row-spread", v), "spread")
      for v in ("nan", "-0.1", "0.5", "inf")],
    *[Case(f"tokens-{v}", lambda e, v=v: e.simulate("--tokens", v), "tokens") for v in ("0", "-1", HUGE, "1.5")],
    Case("tokens-huge-prefill-7b", lambda e: e.simulate("--shape", "llama-7b", "--phase", "prefill", "--tokens",
                                                         str(1 << 30)), "tokens"),
    Case("tokens-beyond-planner-limit", lambda e: e.simulate(*TOO_MANY_STEPS), "tokens"),
    *[Case(f"blocks-{v}", lambda e, v=v: e.simulate("--blocks", v), "blocks") for v in ("0", "-2")],
    Case("seed-negative", lambda e: e.simulate("--seed", "-1"), "seed"),
    Case("profile-missing", lambda e: e.simulate("--profile", e.path("nope.json")), "nope.json"),
    Case("profile-folder", lambda e: e.simulate("--profile", e.dir("profdir")), "profdir"),
    Case("profile-binary", lambda e: e.simulate("--profile", e.file("garbage.json")), ("garbage.json", "UTF-8")),
    Case("profile-invalid-json", lambda e: e.simulate("--profile", e.file("bad.json", "{x")), ("bad.json", "JSON")),
    Case("profile-empty-file", lambda e: e.simulate("--profile", e.file("empty.json", "")), "empty.json"),
    Case("profile-null-value", lambda e: e.simulate("--profile", e.file("n.json", '{"q_proj": null}')), "q_proj"),
    Case("profile-list-value", lambda e: e.simulate("--profile", e.file("l.json", '{"q_proj": [0.5]}')), "q_proj"),
    Case("profile-text-value", lambda e: e.simulate("--profile", e.file("s.json", '{"q_proj": "half"}')), "q_proj"),
    Case("profile-nan-value", lambda e: e.simulate("--profile", e.file("nan.json", '{"q_proj": NaN}')), "q_proj"),
    Case("profile-top-level-list", lambda e: e.simulate("--profile", e.file("top.json", "[0.5]")), "top.json"),
    Case("profile-top-level-null", lambda e: e.simulate("--profile", e.file("null.json", "null")), "null.json"),
    Case("profile-unknown-key", lambda e: e.simulate("--profile", e.file("k.json", '{"lm_head": 0.5}')), "lm_head"),
    Case("profile-manifest-null-sparsity", lambda e: e.simulate("--profile", e.file(
        "m.json", json.dumps({"layers": {PROFILE_KEY: {"achieved_sparsity": None}}}))), PROFILE_KEY),
    Case("hw-unknown", lambda e: e.simulate("--hw", "tpu-v9"), "tpu-v9"),
    Case("hw-missing-file", lambda e: e.simulate("--hw", e.path("nope.toml")), "nope.toml"),
    Case("hw-folder", lambda e: e.simulate("--hw", e.dir("hwdir.toml")), "hwdir.toml"),
    Case("hw-binary", lambda e: e.simulate("--hw", e.file("bin.toml")), ("bin.toml", "TOML")),
    Case("hw-invalid-toml", lambda e: e.simulate("--hw", e.file("bad.toml", "[hardware\n")), ("bad.toml", "TOML")),
    Case("hw-not-a-table", lambda e: e.simulate("--hw", e.file("hw.toml", "hardware = 3")), ("hw.toml", "hardware")),
    Case("hw-list-table", lambda e: e.simulate("--hw", e.file("hw.toml", "hardware = [1, 2]")),
         ("hw.toml", "hardware")),
    Case("hw-unknown-key", lambda e: e.simulate("--hw", e.file("k.toml", "[hardware]\npe_colz = 4")), "pe_colz"),
    Case("hw-bad-type", lambda e: e.simulate("--hw", e.file("t.toml", '[hardware]\npe_rows = "many"')), "pe_rows"),
    *[Case(f"set-{kv.split('=')[0]}-{kv.split('=')[1]}", lambda e, kv=kv: e.simulate("--set", kv), kv.split("=")[0])
      for kv in ("act_sram_kib=0.0001", "weight_sram_kib=0.001", "index_sram_kib=0.0001", "out_sram_kib=0.0001",
                 "pe_rows=1e30", "pe_rows=1.5", "weight_bits=1000", "freq_mhz=inf", "dram_gbps=0",
                 "dram_gbps=1e400", "double_buffer=maybe", "sparse_format=coo")],
    Case("set-no-equals", lambda e: e.simulate("--set", "pe_rows"), "pe_rows"),
    Case("phase-unknown", lambda e: e.simulate("--phase", "train"), "--phase"),
    Case("out-is-file", lambda e: e.simulate("--out", e.file("outfile", "x")), "outfile"),
    Case("out-parent-is-file", lambda e: e.simulate("--out", e.file("afile", "x") + "/sim"), "afile"),
    Case("out-parent-read-only", lambda e: e.simulate("--out", "/proc/sys/besa-hw-test/sim"), "/proc/sys",
         skip=_unwritable_proc),
    Case("out-parent-no-permission", lambda e: e.simulate("--out", _readonly_dir(e) + "/sim"), "locked",
         skip=_root),
]

SWEEP = [
    Case("grid-no-equals", lambda e: e.sweep("--grid", "pe_rows"), "pe_rows"),
    Case("grid-unknown-key", lambda e: e.sweep("--grid", "pe_rowz=8"), "pe_rowz"),
    *[Case(f"grid-{kv}", lambda e, kv=kv: e.sweep("--grid", kv), kv.split("=")[0])
      for kv in ("pe_rows=a", "pe_rows=0", "pe_rows=1.5", "pe_rows=1e30", "freq_mhz=nan", "dram_gbps=-1",
                 "act_sram_kib=0.0001", "column_split=diagonal")],
    Case("sweep-file-missing", lambda e: e.sweep("--sweep-file", e.path("nope.toml")), "nope.toml"),
    Case("sweep-file-folder", lambda e: e.sweep("--sweep-file", e.dir("sweepdir")), "sweepdir"),
    Case("sweep-file-binary", lambda e: e.sweep("--sweep-file", e.file("bin.toml")), ("bin.toml", "TOML")),
    Case("sweep-file-invalid", lambda e: e.sweep("--sweep-file", e.file("bad.toml", "[sweep")), ("bad.toml", "TOML")),
    Case("sweep-file-no-sweep", lambda e: e.sweep("--sweep-file", e.file("s.toml", "[hardware]\npe_rows = 8")),
         ("s.toml", "sweep")),
    Case("sweep-file-sweep-not-table", lambda e: e.sweep("--sweep-file", e.file("s.toml", "sweep = 3")),
         ("s.toml", "sweep")),
    Case("sweep-file-values-not-list", lambda e: e.sweep("--sweep-file", e.file("s.toml", "[sweep]\npe_rows = 8")),
         "pe_rows"),
    Case("sweep-file-empty-list", lambda e: e.sweep("--sweep-file", e.file("s.toml", "[sweep]\npe_rows = []")),
         "pe_rows"),
    Case("sweep-file-hardware-not-table", lambda e: e.sweep("--sweep-file", e.file(
        "s.toml", "hardware = 3\n[sweep]\npe_rows = [8]")), ("s.toml", "hardware")),
    Case("sweep-file-bad-value", lambda e: e.sweep("--sweep-file", e.file("s.toml", '[sweep]\ndram_gbps = [8, "x"]')),
         "dram_gbps"),
    *[Case(f"workers-{v}", lambda e, v=v: e.sweep("--workers", v), "--workers") for v in ("0", "-1", HUGE, "two")],
    Case("tokens-huge", lambda e: e.sweep("--tokens", HUGE), "tokens"),
    Case("tokens-beyond-planner-limit", lambda e: e.sweep(*TOO_MANY_STEPS), "tokens"),
    Case("sparsity-nan", lambda e: e.sweep("--sparsity", "nan"), "sparsity"),
    Case("profile-null", lambda e: e.sweep("--profile", e.file("n.json", '{"q_proj": null}')), "q_proj"),
    Case("hw-binary", lambda e: e.sweep("--hw", e.file("bin.toml")), ("bin.toml", "TOML")),
    Case("run-masks-truncated", lambda e: ["sweep", "--run", e.run(masks=_cut(0.5)), "--grid", "pe_rows=32",
                                           "--workers", "1", "--out", e.out], "masks.safetensors"),
    Case("out-is-file", lambda e: e.sweep("--out", e.file("outfile", "x")), "outfile"),
    Case("out-parent-is-file", lambda e: e.sweep("--out", e.file("afile", "x") + "/sweep"), "afile"),
    Case("out-parent-read-only", lambda e: e.sweep("--out", "/proc/sys/besa-hw-test/sweep"), "/proc/sys",
         skip=_unwritable_proc),
]

COMPARE = [
    Case("run-missing", lambda e: ["compare", e.run("a"), e.path("nope"), "--out", e.out], "nope"),
    Case("run-is-file", lambda e: ["compare", e.run("a"), e.file("afile", "x"), "--out", e.out], "afile"),
    Case("run-empty-folder", lambda e: ["compare", e.run("a"), e.dir("emptyrun"), "--out", e.out], "emptyrun"),
    *[Case(name, lambda e, kw=kw: e.compare_runs(**kw), culprit) for name, kw, culprit in RUN_FOLDER_CASES],
    Case("names-count", lambda e: e.compare_runs("--names", "only-one"), "--names"),
    Case("profile-missing", lambda e: e.compare_profiles(second=e.path("nope.json")), "nope.json"),
    Case("profile-binary", lambda e: e.compare_profiles(second=e.file("garbage.json")), "garbage.json"),
    Case("profile-invalid-json", lambda e: e.compare_profiles(second=e.file("bad.json", "{")), "bad.json"),
    Case("profile-null-value", lambda e: e.compare_profiles(second=e.file("n.json", '{"q_proj": null}')), "q_proj"),
    Case("profile-top-level-list", lambda e: e.compare_profiles(second=e.file("top.json", "[1]")), "top.json"),
    Case("profile-folder", lambda e: e.compare_profiles(second=e.dir("profdir")), "profdir"),
    Case("shape-unknown", lambda e: e.compare_profiles("--shape", "gpt-5"), "gpt-5"),
    Case("sparsity-nan", lambda e: e.compare_profiles("--sparsity", "nan"), "sparsity"),
    Case("seed-negative", lambda e: e.compare_profiles("--seed", "-3"), "seed"),
    *[Case(f"blocks-{v}", lambda e, v=v: e.compare_profiles("--blocks", v), "blocks") for v in ("0", "-1")],
    *[Case(f"decode-tokens-{v}", lambda e, v=v: e.compare_runs("--decode-tokens", v), "--decode-tokens")
      for v in ("0", HUGE)],
    Case("prefill-tokens-huge", lambda e: e.compare_runs("--prefill-tokens", HUGE), "--prefill-tokens"),
    Case("phases-unknown", lambda e: e.compare_runs("--phase", "train"), "--phase takes"),
    Case("hw-binary", lambda e: e.compare_runs("--hw", e.file("bin.toml")), ("bin.toml", "TOML")),
    Case("hw-set-tiny-sram", lambda e: e.compare_runs("--set", "weight_sram_kib=0.0001"), "weight_sram_kib"),
    Case("runs-and-profiles", lambda e: e.compare_runs("--shape", "smollm2-135m", "--profiles", e.path("x.json")),
         "not both"),
    Case("nothing", lambda e: ["compare", "--out", e.out], "nothing to compare"),
    Case("out-is-file", lambda e: e.compare_runs("--out", e.file("outfile", "x")), "outfile"),
    Case("out-parent-is-file", lambda e: e.compare_runs("--out", e.file("afile", "x") + "/cmp"), "afile"),
    Case("out-parent-read-only", lambda e: e.compare_runs("--out", "/proc/sys/besa-hw-test/cmp"), "/proc/sys",
         skip=_unwritable_proc),
]

PRUNE += [
    *[Case(f"blocks-{v}", lambda e, v=v: e.prune("--blocks", v), "--blocks") for v in ("0", "-2", "99")],
    Case("dtype-unknown", lambda e: e.prune("--dtype", "int8"), "--dtype"),
    Case("activations-unknown", lambda e: e.prune("--activations", "disk"), "--activations"),
]


def _estimate(*extra: str, model: str | None = None) -> list[str]:
    return ["estimate", *(["--model", model] if model else ["--shape", "llama-7b"]), *extra]


ESTIMATE = [
    Case("shape-unknown", lambda e: ["estimate", "--shape", "gpt-5"], "gpt-5"),
    Case("model-missing", lambda e: _estimate(model=e.path("nope")), "nope"),
    Case("model-no-config", lambda e: _estimate(model=e.dir("bare")), "bare"),
    Case("model-config-garbage", lambda e: _estimate(model=str(Path(e.file("m/config.json")).parent)), "config.json"),
    Case("model-config-not-llama", lambda e: _estimate(model=str(Path(e.file("g/config.json", '{"n_embd": 8}')).parent)),
         "config.json"),
    Case("model-and-shape", lambda e: ["estimate", "--shape", "llama-7b", "--model", str(e.model)], "--model"),
    Case("neither", lambda e: ["estimate"], "--model"),
    Case("device-unknown", lambda e: _estimate("--device", "tpu-v9"), "tpu-v9"),
    *[Case(f"nsamples-{v}", lambda e, v=v: _estimate("--nsamples", v), "nsamples") for v in ("0", "-1", "99999999")],
    *[Case(f"seqlen-{v}", lambda e, v=v: _estimate("--seqlen", v), "seqlen") for v in ("1", "0")],
    Case("nsamples-text", lambda e: _estimate("--nsamples", "many"), "--nsamples"),
    Case("dtype-unknown", lambda e: _estimate("--dtype", "int4"), "--dtype"),
    Case("method-unknown", lambda e: _estimate("--method", "obs"), "--method"),
    Case("wbits-unknown", lambda e: _estimate("--wbits", "5"), "--wbits"),
    Case("activations-unknown", lambda e: _estimate("--activations", "disk"), "--activations"),
]

CASES = [("prune", c) for c in PRUNE] + [("estimate", c) for c in ESTIMATE] + [("run", c) for c in RUN] + [("eval", c) for c in EVAL] + \
        [("simulate", c) for c in SIMULATE] + [("sweep", c) for c in SWEEP] + [("compare", c) for c in COMPARE]


def snapshot(*roots: Path) -> dict[str, object]:
    """Every file (size, mtime, hash) and folder under ``roots``."""
    state: dict[str, object] = {}
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            for d in dirnames:
                state[os.path.join(dirpath, d)] = "dir"
            for f in filenames:
                p = os.path.join(dirpath, f)
                st = os.stat(p)
                state[p] = (st.st_size, st.st_mtime_ns, hashlib.sha1(Path(p).read_bytes()).hexdigest())
    return state


@pytest.mark.parametrize("command,case", CASES, ids=[f"{cmd}-{c.id}" for cmd, c in CASES])
def test_bad_input(command, case, tmp_path, tiny_model_dir, text_file, monkeypatch, capsys):
    reason = case.skip()
    if reason:
        pytest.skip(reason)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("BESA_HW_DEBUG", raising=False)
    env = Env(tmp_path, tiny_model_dir, text_file)
    argv = case.argv(env)
    assert argv[0] == command
    roots = (tmp_path, tiny_model_dir, text_file.parent)
    before = snapshot(*roots)
    try:
        rc = main(argv)
    finally:
        for locked in tmp_path.glob("locked"):
            os.chmod(locked, 0o755)
    captured = capsys.readouterr()
    err = captured.err
    assert "Traceback" not in err + captured.out
    assert rc == 2, err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"besa-hw {command}: error: "), err
    for needle in (case.culprit,) if isinstance(case.culprit, str) else case.culprit:
        assert needle in lines[0], f"{needle!r} not named in: {lines[0]}"
    assert snapshot(*roots) == before


def test_battery_covers_every_command():
    counts = {cmd: sum(c == cmd for c, _ in CASES)
              for cmd in ("run", "prune", "eval", "simulate", "sweep", "compare", "estimate")}
    assert min(counts.values()) >= 15, counts


@pytest.mark.parametrize("command,target", [
    ("prune", "pruning.prune_model"),
    ("simulate", "besa_hw.pipeline.Simulator.run"),
    ("sweep", "simulator.sweep.run_sweep"),
    ("compare", "besa_hw.compare.compare"),
])
def test_interrupt_is_one_line_and_writes_nothing(command, target, tmp_path, tiny_model_dir, text_file,
                                                  monkeypatch, capsys):
    """Ctrl-C in the middle of the work: exit 130, one line, no partial output."""
    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(target, interrupt)
    env = Env(tmp_path, tiny_model_dir, text_file)
    argv = {"prune": env.prune, "simulate": env.simulate, "sweep": env.sweep,
            "compare": env.compare_profiles}[command]()
    before = snapshot(tmp_path)
    assert main(argv) == 130
    err = capsys.readouterr().err
    # Progress bars (transformers' weight loading) may precede it; the message is the last line.
    assert "Traceback" not in err and err.count("interrupted") == 1
    assert err.endswith(f"besa-hw {command}: interrupted\n"), err
    assert snapshot(tmp_path) == before


def test_a_missing_relative_path_is_not_taken_for_a_hub_id(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    assert main(["prune", "--method", "magnitude", "--model", "runs/x", "--out", str(tmp_path / "o")]) == 2
    assert "model path not found: runs/x" in capsys.readouterr().err


def test_output_piped_into_head_ends_quietly():
    import subprocess
    import sys

    cmd = f"{sys.executable} -m besa_hw.cli simulate --shape llama-7b | head -1"
    done = subprocess.run(["bash", "-c", f"set -o pipefail; {cmd}"], capture_output=True, text=True, timeout=300)
    assert done.stderr.strip() == "" and done.returncode == 141, done.stderr[-500:]


def test_compute_only_op_without_compute_is_one_x(tmp_path):
    import pandas as pd

    assert main(["simulate", "--shape", "smollm2-135m", "--compute-only", "--quiet", "--out", str(tmp_path / "s")]) == 0
    layers = pd.read_csv(tmp_path / "s" / "layers.csv")
    embedding = layers[layers.kind == "embedding"].iloc[0]
    assert embedding.sparse_cycles == 0 and embedding.speedup == 1.0


@pytest.mark.parametrize("argv,needle", [
    (["simulate", "--shape", "smollm2-135m", "--nm", "2:4", "--sparsity", "0.7"], "--sparsity 0.7 contradicts it"),
    (["simulate", "--shape", "smollm2-135m", "--group-size", "64"], "--group-size applies with --wbits"),
    (["simulate", "--shape", "smollm2-135m", "--out", "/sys/x"], "cannot create the output folder /sys/x"),
])
def test_silently_ignored_inputs_are_refused(argv, needle, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0], err


def test_explicit_sparsity_half_with_a_run_is_refused(tiny_model_dir, tmp_path, capsys):
    """--sparsity 0.5 (the synthetic default) given with --run is refused like any other value."""
    run = tmp_path / "r"
    assert main(["prune", "--method", "magnitude", "--model", str(tiny_model_dir), "--out", str(run)]) == 0
    assert main(["simulate", "--run", str(run), "--sparsity", "0.5"]) == 2
    assert "--sparsity applies to synthetic masks" in capsys.readouterr().err


@pytest.mark.parametrize("argv,needle", [
    (["simulate", "--shape", "llama-7b", "--blocks", "99"], "--blocks 99 exceeds the model's 32 blocks"),
    (["simulate", "--shape", "llama-7b", "--set", "weight_bits=4", "--wbits", "8"], "--wbits 8 exceeds the datapath"),
])
def test_clamped_inputs_are_refused(argv, needle, capsys):
    assert main(argv) == 2
    assert needle in capsys.readouterr().err


def test_wbits_what_if_on_a_run(tiny_model_dir, tmp_path, capsys):
    import pandas as pd

    run = tmp_path / "r"
    assert main(["prune", "--method", "magnitude", "--model", str(tiny_model_dir), "--out", str(run)]) == 0
    assert main(["simulate", "--run", str(run), "--wbits", "4", "--quiet", "--out", str(tmp_path / "s")]) == 0
    layers = pd.read_csv(tmp_path / "s" / "layers.csv")
    assert (layers[layers.kind == "linear"].weight_bits == 4).all() and (layers[layers.kind != "linear"].weight_bits != 4).any()
