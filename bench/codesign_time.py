"""Prune time of hardware-targeted BESA against plain BESA at the same settings (issue 18's target: at
most 1.3x).

SmolLM2-135M, calibration as in bench/codesign.py (8 x 512 tokens of wiki.valid.tokens unless told),
all 30 blocks, one prune after another in this process, alternating, so the rows share the machine's
load: plain BESA at ``--sparsity``, then BESA with ``--target-speedup`` on ``--preset`` with its rounding's
options measured on each ``--search-samples`` count. Prints each prune's seconds, the medians and the
ratios to plain BESA's median.

    python bench/codesign_time.py --preset rtx4090-gpu --target 1.13 --sparsity 0.5 --repeats 2
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from codesign import _prune  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="rtx4090-gpu")
    p.add_argument("--phase", choices=("decode", "prefill"), default="decode")
    p.add_argument("--target", type=float, default=1.13, help="simulated end-to-end speedup target")
    p.add_argument("--sparsity", type=float, default=0.5, help="plain BESA's sparsity")
    p.add_argument("--search-samples", default="1,4", help="segments of the rounding's errors, one row each")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--nsamples", type=int, default=8)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    args = p.parse_args()
    import torch

    from besa_hw.pipeline import latency_model, table_spec
    from simulator import get_shape, load_hardware

    torch.set_num_threads(args.threads)
    spec, hw = table_spec(get_shape("smollm2-135m"), args.phase, None, None), load_hardware(args.preset)
    target = latency_model(spec, hw, args.target)
    rows = {"plain BESA": ("besa", {"sparsity": args.sparsity}, 1)}
    for n in (int(v) for v in args.search_samples.split(",")):
        rows[f"targeted BESA, rounding on {n} segment{'s' if n > 1 else ''}"] = ("besa", {"hw_target": target}, n)
    print(f"# threads {torch.get_num_threads()}, load at start {' / '.join(f'{v:.1f}' for v in os.getloadavg())}, "
          f"calibration {args.nsamples} x 512, {args.preset} {args.phase}, target {args.target:g}x, "
          f"plain BESA at {args.sparsity:g}")
    secs: dict[str, list[float]] = {k: [] for k in rows}
    work = Path(tempfile.mkdtemp(prefix="codesign-time-"))
    try:
        for rep in range(args.repeats):
            for name, (method, fields, samples) in rows.items():
                run = work / f"{len(secs[name])}-{samples}-{'plain' if name == 'plain BESA' else 'hw'}"
                settings = argparse.Namespace(**(vars(args) | {"search_samples": samples}))
                secs[name].append(_prune(run, settings, method, **fields))
                shutil.rmtree(run)
                print(f"# repeat {rep + 1}: {name} {secs[name][-1]:.1f} s", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    base = statistics.median(secs["plain BESA"])
    print("\n| method | prune s (each) | median s | / plain BESA |")
    print("|---|---|---:|---:|")
    for name, vals in secs.items():
        med = statistics.median(vals)
        print(f"| {name} | {' / '.join(f'{v:.1f}' for v in vals)} | {med:.1f} | {med / base:.2f}x |")
    print(f"\n# load at end {' / '.join(f'{v:.1f}' for v in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
