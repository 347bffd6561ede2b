"""Zero-shot accuracy of the default model pruned by each method (issue 17 C): the paper's table from
local task files, with lm-eval's prompts (configs/tasks/paper/).

SmolLM2-135M-Instruct at 50% (or --sparsity) with bench/prune_quality.py's calibration (32 x 512 tokens
of wiki.valid.tokens, seed 0), one process and one model load per method; each task on a seeded subset
of at most --subset documents (the whole split where smaller; --subset 0: full splits). Prints per task
acc and acc_norm with their standard errors, the mean accuracy over the tasks, the wall time per model,
the thread count and the load.

    python bench/zeroshot.py --methods dense,magnitude,wanda,sparsegpt,besa-row,besa-layer,besa-row-recon,besa-lwc
    python bench/zeroshot.py --methods dense,besa-row --subset 0        # full splits

Each finished model's row is appended to --rows (a JSON line with the commit, the settings and the
load); a rerun with the same settings skips the methods already there, so a killed table resumes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


def run_one(name: str, args: argparse.Namespace) -> dict:
    from prune_quality import prune_in_process

    from besa_hw.tasks import TaskConfig, evaluate_tasks, load_tasks

    t0 = time.perf_counter()
    cfg = TaskConfig.parse(args.tasks, data_dir=str(Path(args.data_dir) / "zero-shot"), batch_size=args.batch_size,
                           subset=args.subset or None, subset_seed=0)
    loaded = load_tasks(cfg)
    model, tok, row = prune_in_process(name, args)
    results = evaluate_tasks(model, tok, loaded, cfg)
    row["tasks"] = {t: {k: r.get(k) for k in ("acc", "acc_stderr", "acc_norm", "acc_norm_stderr", "n")}
                    for t, r in results.items()}
    row["seconds"] = time.perf_counter() - t0
    return row


def _commit() -> str:
    out = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return out.stdout.strip() or "unknown"


def _settings(args: argparse.Namespace) -> dict:
    return {"tasks": args.tasks, "subset": args.subset, "sparsity": args.sparsity, "set": args.set}


def _saved_rows(path: Path, settings: dict) -> dict[str, dict]:
    """Rows already measured with these settings, by method (the last one wins)."""
    rows = {}
    if path.exists():
        for line in path.read_text().splitlines():
            row = json.loads(line)
            if row.get("settings") == settings:
                rows[row["method"]] = row
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--methods", default="dense,magnitude,wanda,sparsegpt,besa-row,besa-layer,besa-row-recon,besa-lwc")
    p.add_argument("--tasks", default="paper", help="paper (5 tasks) or local (7), as for besa-hw eval --tasks")
    p.add_argument("--subset", type=int, default=500, help="documents per task, seeded (0: the full splits)")
    p.add_argument("--sparsity", type=float, default=0.5)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    p.add_argument("--set", action="append", default=[], help="PruneConfig override")
    p.add_argument("--rows", default=str(ROOT / "bench" / "zeroshot_rows.jsonl"),
                   help="JSON lines of finished models (resume file)")
    p.add_argument("--saved-only", action="store_true",
                   help="print the table of the rows already in --rows, running nothing")
    p.add_argument("--one", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        print("ROW " + json.dumps(run_one(args.one, args)), flush=True)
        return 0
    print(f"# threads {args.threads}, load {os.getloadavg()[0]:.2f} at start; tasks {args.tasks}, "
          f"{'full splits' if not args.subset else f'seeded subsets of at most {args.subset} documents'}; "
          f"sparsity {args.sparsity}", flush=True)
    rows_file = Path(args.rows)
    rows_file.parent.mkdir(parents=True, exist_ok=True)
    settings = _settings(args)
    saved = _saved_rows(rows_file, settings)
    rows = []
    for name in [m.strip() for m in args.methods.split(",") if m.strip()]:
        if name in saved:
            rows.append(saved[name])
            print(f"# {name}: from {rows_file} (commit {saved[name].get('commit')}, {saved[name]['seconds']:.0f} s)",
                  flush=True)
            continue
        if args.saved_only:
            print(f"# {name}: not measured yet (no row with these settings in {rows_file})", flush=True)
            continue
        cmd = [sys.executable, __file__, "--one", name, "--tasks", args.tasks, "--subset", str(args.subset),
               "--sparsity", str(args.sparsity), "--batch-size", str(args.batch_size), "--threads",
               str(args.threads), "--data-dir", args.data_dir] + [a for s in args.set for a in ("--set", s)]
        out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout
        rows.append(json.loads(next(line[4:] for line in out.splitlines() if line.startswith("ROW "))))
        r = rows[-1]
        r.update(settings=settings, commit=_commit(), load_end=os.getloadavg()[0], threads=args.threads)
        with rows_file.open("a") as f:
            f.write(json.dumps(r) + "\n")
        tasks = " ".join(f"{t} {v['acc']:.3f}" for t, v in r["tasks"].items())
        print(f"# {name}: {r['seconds']:.0f} s ({tasks})", flush=True)
    if not rows:
        print("no rows")
        return 1
    tasks = list(rows[0]["tasks"])
    print("\nacc ± stderr, acc_norm where the task has it; mean acc ± the stderr of the mean "
          "(sqrt(sum stderr^2) / tasks); seconds: prune + evaluate, one process per model")
    rest = [t for t in tasks if t != "boolq"]  # BoolQ alone swings by 0.2 between 50% models (see the RESULTS)
    print("\n| method | " + " | ".join(tasks) + " | mean acc | mean acc without boolq | seconds | load at end | commit |")
    print("|---|" + "---|" * (len(tasks) + 5))
    for r in rows:
        cells = []
        for t in tasks:
            v = r["tasks"][t]
            norm = f", norm {v['acc_norm']:.3f}" if v.get("acc_norm") is not None else ""
            cells.append(f"{v['acc']:.3f} ± {v['acc_stderr']:.3f}{norm}")
        mean = sum(r["tasks"][t]["acc"] for t in tasks) / len(tasks)
        se = sum(r["tasks"][t]["acc_stderr"] ** 2 for t in tasks) ** 0.5 / len(tasks)
        rest_mean = sum(r["tasks"][t]["acc"] for t in rest) / len(rest)
        rest_se = sum(r["tasks"][t]["acc_stderr"] ** 2 for t in rest) ** 0.5 / len(rest)
        print(f"| {r['method']} | " + " | ".join(cells) + f" | {mean:.4f} ± {se:.4f} | {rest_mean:.4f} ± {rest_se:.4f} | "
              f"{r['seconds']:.0f} | {r['load_end']:.2f} | {r.get('commit', '?')} |")
    print(f"\n# load {os.getloadavg()[0]:.2f} at end; n per task: "
          + ", ".join(f"{t} {rows[0]['tasks'][t]['n']}" for t in tasks))
    return 0


if __name__ == "__main__":
    sys.exit(main())
