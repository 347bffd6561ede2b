"""Prune LLaMA-7B-shaped blocks on this CPU with block streaming: peak RSS, seconds per block, the
extrapolation to the whole model, and the memory estimate next to the measurement.

    python bench/prune_scale.py                        # wanda, sparsegpt, besa; 2 blocks each
    python bench/prune_scale.py --methods besa --blocks 3 --nsamples 16

The checkpoint is `besa-hw make-model --shape llama-7b` (random weights, the real block sizes,
fp16 safetensors shards, 13.5 GB); it is made first when --model does not exist. Each method runs
`besa-hw prune --blocks N` in a fresh process under /usr/bin/time (peak RSS = its max resident
set); seconds per block come from the run's manifest (`block_seconds`, load to release of each
block). The whole-model time is setup (load, calibration, capture) plus the number of blocks
times the mean seconds per block. `estimate` is `besa-hw estimate` for the same settings.

Also checks that a streamed prune and a fully loaded prune give bit-identical masks on the
bundled SmolLM2-135M (`--identity`, first blocks, converted to a safetensors folder).

On a GPU (`--device cuda`, bfloat16 by default) the peak is the device's: the CUDA context plus
the caching allocator's peak reservation, as the run's manifest records them
(`cuda_context_gb`, `cuda_peak_reserved_gb`; `cuda_peak_allocated_gb` is what tensors held), and
the estimate is `besa-hw estimate --device cuda` (the detected GPU's assumed throughput):

    python bench/prune_scale.py --device cuda --nsamples 128 --seqlen 2048 --identity 0
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "besa_hw.cli"]
PYTHONPATH = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)


def _load() -> str:
    return " / ".join(f"{v:.1f}" for v in os.getloadavg())


# `besa-hw` in this process, its peak resident set printed on exit (what /usr/bin/time's %M reports)
MEASURED_CLI = [sys.executable, "-c", "import resource, runpy, sys\nsys.argv = ['besa-hw', *sys.argv[1:]]\n"
                "try:\n    runpy.run_module('besa_hw.cli', run_name='__main__')\nfinally:\n"
                "    print('MAXRSS', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)"]


def run_prune(model: str, method: str, args, out: Path) -> dict:
    """One `besa-hw prune --blocks N` in a fresh process; returns the measured row."""
    cmd = [*MEASURED_CLI, "prune", "--model", model, "--method", method, "--blocks", str(args.blocks),
           "--nsamples", str(args.nsamples), "--seqlen", str(args.seqlen), "--dtype", args.dtype,
           "--device", args.device, "--out", str(out), "--overwrite"]
    env = {**os.environ, "PYTHONPATH": PYTHONPATH}
    if args.device == "cpu":  # a GPU run keeps every core for its host-side work (reading shards, writing masks)
        env["OMP_NUM_THREADS"] = str(args.threads)
    proc = subprocess.run(cmd, stderr=subprocess.PIPE, text=True, env=env)
    if proc.returncode:
        sys.stderr.write(proc.stderr[-3000:])
        raise SystemExit(f"prune {method} failed")
    rss_kb = int(next(line.split()[1] for line in proc.stderr.splitlines() if line.startswith("MAXRSS")))
    manifest = json.loads((out / "manifest.json").read_text())
    secs = manifest["block_seconds"]
    setup = manifest["wall_seconds"] - sum(secs)
    row = {"method": method, "rss_gb": rss_kb * 1024 / 1e9, "block_s": secs, "setup_s": setup,
           "layers": manifest["model"]["num_hidden_layers"], "load": _load()}
    if args.device != "cpu":
        row["peak_gb"] = manifest["cuda_context_gb"] + manifest["cuda_peak_reserved_gb"]
        row["allocated_gb"] = manifest["cuda_peak_allocated_gb"]
    else:
        row["peak_gb"] = row["rss_gb"]
    return row


def estimate_peak(model: str, method: str, args) -> tuple[float, float]:
    """(peak GB, seconds per block) from `besa-hw estimate`."""
    cmd = [*CLI, "estimate", "--model", model, "--method", method, "--nsamples", str(args.nsamples),
           "--seqlen", str(args.seqlen), "--dtype", args.dtype, "--device", args.device, "--json"]
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True,
                         env={**os.environ, "PYTHONPATH": PYTHONPATH}).stdout
    data = json.loads(out)
    return data["peak_gb"], data["seconds_per_block"]


def _gpu_name(device: str) -> str:
    import torch

    return torch.cuda.get_device_name(torch.device(device))


def identity_check(blocks: int) -> str:
    """Masks of a streamed and a loaded BESA prune of SmolLM2-135M's first blocks: identical?"""
    code = f"""
import torch, tempfile, pathlib
from safetensors.torch import load_file
from besa_hw.models import load_model
from pruning import prune_model
from pruning.arch import module_path
from pruning.calibration import get_calibration
from pruning.checkpoint import BlockCheckpoint
from pruning.config import CalibConfig, PruneConfig
from pruning.streaming import StreamedModel
torch.set_num_threads(2)
lm, tok, _ = load_model()
tmp = pathlib.Path(tempfile.mkdtemp())
# a GGUF-loaded model has no save_pretrained: write its fp32 weights and config as a safetensors folder
from safetensors.torch import save_file
import json
(tmp / "m").mkdir()
state = {{k: v.contiguous() for k, v in lm.state_dict().items()}}
if lm.config.tie_word_embeddings:
    state.pop("lm_head.weight", None)
save_file(state, str(tmp / "m" / "model.safetensors"), metadata={{"format": "pt"}})
config = lm.config.to_dict()
config.pop("quantization_config", None)
(tmp / "m" / "config.json").write_text(json.dumps(config))
tok.save_pretrained(tmp / "m")
ids = get_calibration(tok, CalibConfig(nsamples=16, seqlen=256))
out = []
for cfg in (PruneConfig(method="wanda"), PruneConfig(method="besa", besa_samples=8)):
    loaded = prune_model(load_model()[0], ids, cfg, blocks={blocks})
    ck = BlockCheckpoint(tmp / cfg.method, {{}})
    prune_model(StreamedModel(tmp / "m"), ids, cfg, checkpoint=ck, blocks={blocks})
    ck.write_masks(tmp / (cfg.method + ".st"), module_path)
    streamed = load_file(str(tmp / (cfg.method + ".st")))
    same = set(streamed) == set(loaded.masks) and all(torch.equal(streamed[k], v) for k, v in loaded.masks.items())
    out.append(f"{{cfg.method}}: {{len(loaded.masks)}} masks, identical={{same}}")
print("; ".join(out))
"""
    env = {**os.environ, "PYTHONPATH": PYTHONPATH}
    return subprocess.run([sys.executable, "-c", code], check=True, stdout=subprocess.PIPE, text=True,
                          env=env).stdout.strip().splitlines()[-1]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="/work/models/llama-7b-rand", help="7B-shaped folder (made when missing)")
    p.add_argument("--methods", default="wanda,sparsegpt,besa")
    p.add_argument("--blocks", type=int, default=2)
    p.add_argument("--nsamples", type=int, default=8)
    p.add_argument("--seqlen", type=int, default=512)
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    p.add_argument("--dtype", default=None, help="default float32 on cpu, bfloat16 on cuda")
    p.add_argument("--threads", type=int, default=2, help="CPU threads (--device cpu only)")
    p.add_argument("--layers", type=int, default=None,
                   help="blocks of the checkpoint made when --model is missing (default: all of llama-7b's)")
    p.add_argument("--tokenizer", default=None, help="saved tokenizer folder for that checkpoint (default: bundled)")
    p.add_argument("--extrapolate-to", type=int, default=None, metavar="BLOCKS",
                   help="blocks of the whole model for the extrapolated time (default: the checkpoint's; "
                        "32 for a llama-7b made with --layers)")
    p.add_argument("--identity", type=int, default=3, metavar="N",
                   help="also check streamed == loaded masks on SmolLM2's first N blocks (0: skip)")
    args = p.parse_args()
    args.dtype = args.dtype or ("float32" if args.device == "cpu" else "bfloat16")
    if not Path(args.model, "config.json").is_file():
        make = [*CLI, "make-model", "--shape", "llama-7b", "--out", args.model]
        make += ["--layers", str(args.layers)] if args.layers else []
        make += ["--tokenizer", args.tokenizer] if args.tokenizer else []
        print(f"making {args.model} ({' '.join(make[2:])})", flush=True)
        subprocess.run(make, check=True, env={**os.environ, "PYTHONPATH": PYTHONPATH})
    where = f"{args.threads} threads" if args.device == "cpu" else f"{args.device} ({_gpu_name(args.device)})"
    print(f"# {args.model}: {args.blocks} blocks per method, {args.nsamples} x {args.seqlen} calibration tokens, "
          f"{args.dtype}, {where}, load at start {_load()}")
    peak = "peak RSS (GB)" if args.device == "cpu" else "peak on the GPU (GB): context + reserved (allocated)"
    print(f"| method | {peak} | estimate (GB) | est/measured | s/block (mean of measured) | estimate s/block "
          "| setup s | whole model (h) | load |")
    print("|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="prune-scale-") as tmp:
        for method in [m.strip() for m in args.methods.split(",") if m.strip()]:
            row = run_prune(args.model, method, args, Path(tmp) / method)
            est_gb, est_s = estimate_peak(args.model, method, args)
            mean_s = sum(row["block_s"]) / len(row["block_s"])
            whole_h = (row["setup_s"] + (args.extrapolate_to or row["layers"]) * mean_s) / 3600
            measured = f"{row['peak_gb']:.2f}" + (f" ({row['allocated_gb']:.2f})" if "allocated_gb" in row else "")
            print(f"| {method} | {measured} | {est_gb:.2f} | {est_gb / row['peak_gb']:.2f} | "
                  f"{mean_s:.1f} ({', '.join(f'{s:.1f}' for s in row['block_s'])}) | {est_s:.1f} | "
                  f"{row['setup_s']:.1f} | {whole_h:.2f} | {row['load']} |", flush=True)
    if args.identity:
        print(f"\nstreamed vs loaded masks, SmolLM2-135M, first {args.identity} blocks: {identity_check(args.identity)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
