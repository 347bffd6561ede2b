"""``besa-hw sweep``: explore hardware parameters over a grid, in parallel."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from besa_hw.options import add_hardware_args, add_workload_args, hardware, workload_spec

MAX_WORKERS = 1024  # processes; more only costs memory


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sweep", help="simulate a grid of hardware configurations",
                       description="Simulate a workload at every point of a grid of HardwareConfig fields "
                                   "and plot speedup, latency and energy against each parameter.")
    add_workload_args(p)
    add_hardware_args(p)
    p.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2,...",
                   help="a HardwareConfig field and its values (repeatable), e.g. --grid dram_gbps=25.6,76.8")
    p.add_argument("--sweep-file", metavar="FILE.toml",
                   help="TOML with a [sweep] table (key = [values]) and optional [hardware] base overrides")
    p.add_argument("--budget", action="append", default=[], metavar="COLUMN<=X",
                   help="a budget on a points.csv column, e.g. power_mw<=500 or tokens_per_s>=100 (repeatable): "
                        "points over budget stay in points.csv, flagged within_budget=false, and are faded in the "
                        "Pareto figure")
    p.add_argument("--workers", type=int, help="processes (default: all cores)")
    p.add_argument("--scheduler", metavar="ADDRESS|local",
                   help="run the points on a Dask cluster: its scheduler's address (tcp://host:8786), or "
                        "'local' for a LocalCluster of --workers processes (default: a local process pool)")
    p.add_argument("--out", metavar="DIR", required=True,
                   help="write DIR/sweep.csv (point x op), DIR/points.csv (per point) and figures")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out folder written by besa-hw")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from besa_hw.outdir import check_out_dir, staged_dir
    from besa_hw.pipeline import build_ops, write_json, write_table
    from simulator.config import apply_overrides
    from simulator.sweep import grid_points, load_sweep_file, parse_grid, run_sweep

    if args.workers is not None and not 1 <= args.workers <= MAX_WORKERS:
        raise ValueError(f"--workers must be in [1, {MAX_WORKERS}], got {args.workers}")
    from besa_hw.options import split_settings
    from simulator.config import parse_overrides

    base, grid = hardware(args), {}
    given = parse_overrides(split_settings(args.overrides, prune=False, hw=True)[1])  # what --set set
    if args.sweep_file:
        file_base, grid = load_sweep_file(args.sweep_file)
        # the command line wins over the file's [hardware] base; a key both swept and set is refused
        base = apply_overrides(base, {k: v for k, v in file_base.items() if k not in given})
    cli_grid = parse_grid(args.grid)
    both = sorted(set(grid) & set(cli_grid))
    if both:
        raise ValueError(f"--grid {both[0]} is also swept by the sweep file; give its values in one place")
    grid.update(cli_grid)
    fixed = sorted(set(grid) & set(given))
    if fixed:
        raise ValueError(f"{fixed[0]} is both swept (--grid or the sweep file) and set (--set); give one")
    budgets = parse_budgets(args.budget)
    points = grid_points(base, grid)
    spec = workload_spec(args)
    check_out_dir(args.out, args.overwrite)
    ops = build_ops(spec)
    start = time.perf_counter()
    with tqdm(total=len(points) + len(ops), desc="sweep", unit="task", disable=None) as bar:
        tidy, totals = run_sweep(ops, points, args.compute_only, args.workers, bar.update, args.scheduler)
    seconds = time.perf_counter() - start
    tokens = spec.n_tokens
    totals["tokens_per_s"] = tokens / (totals.latency_us * 1e-6)
    totals["energy_per_token_uj"] = totals.energy_pj / 1e6 / tokens
    totals["power_mw"] = totals.energy_pj / totals.latency_us.clip(lower=1e-12) / 1e3  # pJ/us = uW
    totals["within_budget"] = within_budgets(totals, budgets)
    with staged_dir(args.out, "sweep", overwrite=args.overwrite) as stage:
        write_table(tidy, stage / "sweep.csv")
        write_table(totals, stage / "points.csv")
        write_json(_record(args, base, grid, spec), stage / "sweep.json")
        figures = sweep_figures(totals, list(grid), stage, base.name)
    out = Path(args.out)
    shown = list(grid) + ["speedup_linear", "speedup_e2e", "memory_bound_fraction", "latency_us", "energy_saving"]
    table = totals[shown].assign(energy_uj=totals["energy_pj"] / 1e6)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"\n{len(points)} points x {len(ops)} ops ({spec.phase}, {spec.n_tokens} tokens) in {seconds:.1f} s; "
          f"wrote {out}/sweep.csv, points.csv" + (f" and {', '.join(f.name for f in figures)}" if figures else ""))
    return 0


def sweep_figures(totals, params: list[str], out: Path, hardware: str = "the swept hardware") -> list[Path]:
    from besa_hw.report import explore as figures

    paths = [figures.sweep_lines(totals, params, out / "sweep_vs_params.png"),
             figures.sweep_pareto(totals, out / "sweep_pareto.png", hardware)]
    if len(params) == 2:
        paths.append(figures.sweep_heatmap(totals, params[0], params[1], out / "sweep_heatmap.png"))
    return paths


def _record(args: argparse.Namespace, base, grid: dict, spec) -> dict:
    """What a sweep folder was made from: the command, the base hardware, the workload and the grid."""
    import dataclasses

    from besa_hw.provenance import environment

    env = environment()
    return {"command": env["command"], "git_commit": env["git_commit"], "preset": args.hw,
            "base_hardware": dataclasses.asdict(base), "grid": grid,
            "workload": {"run": spec.run_dir, "shape": spec.shape, "phase": spec.phase, "tokens": spec.n_tokens,
                         "context": spec.attention_context, "linear_only": spec.linear_only, "blocks": spec.blocks}}


_OPS = {"<=": lambda a, b: a <= b, ">=": lambda a, b: a >= b}


def parse_budgets(items: list[str]) -> list[tuple[str, str, float]]:
    """``["power_mw<=500", ...]`` -> [(column, op, bound)]; ValueError naming a bad one."""
    import re

    out = []
    for item in items:
        m = re.fullmatch(r"\s*(\w+)\s*(<=|>=)\s*([-+0-9.eE]+)\s*", item)
        if not m:
            raise ValueError(f"--budget {item!r}: expected COLUMN<=X or COLUMN>=X, e.g. power_mw<=500")
        out.append((m.group(1), m.group(2), float(m.group(3))))
    return out


def within_budgets(totals, budgets: list[tuple[str, str, float]]):
    """True where a point meets every budget (ValueError for a column points.csv does not have)."""
    import pandas as pd

    ok = pd.Series(True, index=totals.index)
    for column, op, bound in budgets:
        if column not in totals:
            raise ValueError(f"--budget {column}: not a points.csv column; one of "
                             f"{', '.join(c for c in totals.columns if c != 'point')}")
        ok &= _OPS[op](totals[column], bound)
    return ok
