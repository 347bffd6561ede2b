"""``besa-hw latency-table``: per-Linear cycles on a preset at each sparsity and format, from the simulator.

The table an allocation's latency is summed from (see simulator/latency_table.py): every Linear op
type simulated dense, on the preset's sparse path at each sparsity of the grid, and as 2:4 where the
preset gains from it, plus one constant row for every other op of the step. Tables are cached by
model dimensions, hardware, phase and grid.
"""

from __future__ import annotations

import argparse

from besa_hw.options import add_hardware_args, hardware
from besa_hw.pipeline import DEFAULT_CACHE, model_shape, table_spec

def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("latency-table", help="per-Linear latency on a preset vs sparsity and format (CSV)",
                       description=__doc__.replace("``", ""), formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--shape", metavar="NAME", help="a model shape (smollm2-135m, llama-7b, llama-13b, ...)")
    src.add_argument("--model", help="a model whose config gives the shape: HF folder, .gguf file or smollm2-135m")
    add_hardware_args(p)
    p.add_argument("--phase", choices=("decode", "prefill"), default="decode")
    p.add_argument("--tokens", type=int, help="decode: batch (default 1); prefill: prompt length (default 2048)")
    p.add_argument("--context", type=int, help="decode: cached tokens each sequence attends to (default 2048)")
    p.add_argument("--grid-step", type=float, default=0.05, help="sparsity grid step (default 0.05: 0 to 0.95)")
    p.add_argument("--cache-dir", default=DEFAULT_CACHE, help=f"where tables are kept (default {DEFAULT_CACHE}); "
                   "'' for none")
    p.add_argument("--out", metavar="FILE.csv", help="write the table here")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from simulator.latency_table import cached_table
    from simulator.workload import get_shape

    hw = hardware(args)
    shape = get_shape(args.shape) if args.shape else model_shape(args.model)
    spec = table_spec(shape, args.phase, args.tokens, args.context, args.grid_step)
    table, cached = cached_table(spec, hw, args.cache_dir or None, compute_only=args.compute_only)
    _print_summary(table, hw.name, spec, cached)
    if args.out:
        table.to_csv(args.out, index=False)
        print(f"wrote {args.out}")
    return 0


def _print_summary(table, name: str, spec, cached: bool) -> None:
    from simulator.latency_table import interpolate
    from simulator.workload import OP_NAMES

    where = f"{spec.phase}, {spec.tokens} tokens" + (f", context {spec.context}" if spec.context else "")
    print(f"{name}, {spec.shape.name} ({spec.shape.num_hidden_layers} blocks), {where}"
          + (" (from the cache)" if cached else ""))
    print("op          dense cycles   speedup of the sparse path at 0.5 / 0.7 / 0.9" +
          ("   2:4" if (table.format == "2:4").any() else ""))
    for op in OP_NAMES:
        dense = interpolate(table, op, "dense", 0.0)
        ups = " / ".join(f"{dense / interpolate(table, op, 'sparse', s):.3f}x" for s in (0.5, 0.7, 0.9))
        nm = f"   {dense / interpolate(table, op, '2:4', 0.5):.3f}x" if (table.format == "2:4").any() else ""
        print(f"{op:<11} {dense:>12,.0f}   {ups}{nm}")
    print(f"other ops of the step (constant): {float(table[table.op == 'other'].cycles.sum()):,.0f} cycles")
