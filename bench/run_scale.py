"""The whole main job on a LLaMA-7B-shaped model on this CPU (issue 19 C): one `besa-hw run` (prune all
blocks streamed, perplexity dense and pruned block by block, simulate decode and prefill, report), with
wall time per phase, peak RSS and the memory estimate beside them.

    python bench/run_scale.py                                    # the 32-block 7B checkpoint, Wanda
    python bench/run_scale.py --layers 4 --model runs/models/llama-7b-4l   # its first 4 blocks' shape
    python bench/run_scale.py --shape llama-13b --layers 2 --model runs/models/llama-13b-2l  # a shape the
                                                                 # estimate was not calibrated on

The checkpoint is `besa-hw make-model --shape llama-7b [--layers N]` (or --shape) (random weights, the real block
sizes, fp16 shards), made first when --model does not exist. The run is Wanda with 8 x 512 calibration
tokens (pydoc) and 4 evaluation windows of 512 (the held-out pydoc), in a fresh process whose peak
resident set is measured. The estimate is `besa-hw estimate` for the same prune.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))
from prune_scale import MEASURED_CLI, PYTHONPATH, _load  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="runs/models/llama-7b-rand")
    p.add_argument("--shape", default="llama-7b", help="make-model's shape when --model does not exist")
    p.add_argument("--layers", type=int, help="make the checkpoint with only the first N blocks")
    p.add_argument("--method", default="wanda")
    p.add_argument("--out", default="runs/run-scale")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    env = {**os.environ, "PYTHONPATH": PYTHONPATH, "OMP_NUM_THREADS": str(args.threads)}
    cli = [sys.executable, "-m", "besa_hw.cli"]
    if not Path(args.model).is_dir():
        extra = ["--layers", str(args.layers)] if args.layers else []
        subprocess.run([*cli, "make-model", "--shape", args.shape, *extra, "--out", args.model], check=True, env=env)
    prune = ["--method", args.method, "--nsamples", "8", "--seqlen", "512"]
    est = subprocess.run([*cli, "estimate", "--model", args.model, *prune, "--device", "cpu", "--dtype", "float32"],
                         capture_output=True, text=True, env=env, check=True).stdout
    load0 = _load()
    t0 = time.perf_counter()
    proc = subprocess.run([*MEASURED_CLI, "run", "--model", args.model, *prune, "--eval-windows", "4",
                           "--eval-seqlen", "512", "--out", args.out, "--overwrite"],
                          capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if proc.returncode:
        sys.stderr.write(proc.stderr[-3000:])
        return proc.returncode
    rss_gb = int(re.search(r"MAXRSS (\d+)", proc.stderr).group(1)) / 2**20
    phases = re.search(r"^total .*$", proc.stdout, re.M).group(0)
    manifest = json.loads((Path(args.out) / "manifest.json").read_text())
    peak = re.search(r"peak[^\n]*?([\d.]+) GB", est)
    print(f"# threads {args.threads}, load {load0} at start, {_load()} at end; model {args.model} "
          f"({manifest['model']['num_hidden_layers']} blocks)")
    print("| method | blocks | whole run s | phases | peak RSS GB | estimate peak GB | ppl dense -> pruned |")
    print("|---|---|---|---|---|---|---|")
    ppl = manifest.get("perplexity") or {}
    dense, pruned = ppl.get("dense", float("nan")), ppl.get("pruned", float("nan"))
    print(f"| {args.method} | {manifest['blocks_pruned']} | {wall:.0f} | {phases} | {rss_gb:.2f} | "
          f"{peak.group(1) if peak else '?'} | {dense:.2f} -> {pruned:.2f} |")
    blocks = manifest["model"]["num_hidden_layers"]
    full = _full_blocks(args.shape)
    if blocks < full:  # the per-block phases scaled to the whole shape; the rest (setup, head, simulate) once
        secs = {k: float(v) for k, v in re.findall(r"(prune|eval) (\d+(?:\.\d+)?) s", phases)}
        per_block = (secs.get("prune", 0.0) + secs.get("eval", 0.0)) / blocks
        print(f"\nextrapolated to all {full} blocks of {args.shape}: {wall + (full - blocks) * per_block:.0f} s "
              f"({per_block:.1f} s per block pruned and evaluated, from these {blocks})")
    print(proc.stdout.strip().splitlines()[-4:])
    return 0


def _full_blocks(shape: str) -> int:
    from simulator.workload import get_shape

    return get_shape(shape).num_hidden_layers


if __name__ == "__main__":
    sys.exit(main())
