"""Latency tables: what each Linear of a model costs on a preset at each sparsity, from the simulator.

The rule (SPDY, HALP, ZipLM: a per-layer latency lookup table, so that an allocation's latency is
a sum): for a model shape, a preset and a phase, every Linear op type is simulated on a grid of
sparsities (0 to 0.95 in steps of 0.05 by default) in each storage format, with synthetic masks at
the layer's sparsity (each weight kept independently, so the rows' counts vary only binomially). A
row-wise allocation that spreads its rows' sparsities further can cost more on a lane-parallel sparse
engine: in prefill on besa-64x64 and vitcod-64x8, BESA's 50% allocation simulates 1.8% and 3.6% slower
than the table predicts under the default round-robin row schedule (0.5% and 1.0% faster with
``row_schedule = "balanced"``); in decode, where the weights' traffic bounds the step, within 0.1%.
:func:`mask_cycles` simulates one Linear with its real mask, so an allocator can count what the table
cannot. Formats:

- ``dense``: the weights stored and computed dense, zeros included (no index);
- ``sparse``: the preset's own sparse path (its ``sparse_format`` and dense/sparse column split);
- ``2:4``: the 2:4 mask at sparsity 0.5, on presets whose engines gain from N:M.

Every other op of the step (attention, vector ops, embedding, lm_head) does not depend on the
Linears' sparsity: its cycles are one constant row (op ``other``). The step's latency for an
allocation is then the constant plus, for every Linear, its format's cycles at its sparsity,
interpolated linearly between grid points (:func:`predict_cycles`). All blocks of a LLaMA shape
have the same Linears, so each op type is simulated once and stands for every block.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from simulator.config import HardwareConfig
from simulator.simulate import Simulator
from simulator.synthetic import AllocationProfile, synthetic_ops
from simulator.workload import OP_NAMES, ModelShape, model_ops

__all__ = ["TableSpec", "latency_table", "cached_table", "predict_cycles", "interpolate", "best_format",
           "mask_cycles", "TABLE_COLUMNS", "FORMATS"]

FORMATS = ("dense", "sparse", "2:4")
TABLE_COLUMNS = ["op", "format", "sparsity", "cycles", "energy_pj", "dense_cycles", "blocks", "hardware", "phase",
                 "tokens", "context"]
DEFAULT_GRID = tuple(round(0.05 * i, 2) for i in range(20))  # 0, 0.05, ..., 0.95


@dataclass(frozen=True)
class TableSpec:
    """What a table is for: a model shape, a phase (``context`` None: prefill of ``tokens``; else
    decode of ``tokens`` sequences attending to ``context`` cached tokens) and a sparsity grid."""

    shape: ModelShape
    tokens: int
    context: int | None
    grid: tuple[float, ...] = DEFAULT_GRID

    def __post_init__(self) -> None:
        if not self.grid or any(not 0.0 <= s < 1.0 for s in self.grid) or list(self.grid) != sorted(set(self.grid)):
            raise ValueError(f"latency table grid must be increasing sparsities in [0, 1), got {self.grid}")

    @property
    def phase(self) -> str:
        return "prefill" if self.context is None else "decode"


def _rows(sim: Simulator, spec: TableSpec, profile: AllocationProfile, fmt: str, dense: bool = False) -> list[dict]:
    """Rows of one format: each op type of block 0 simulated with ``profile``'s masks."""
    ops = synthetic_ops(spec.shape, spec.tokens, profile, range(1), spec.context, linear_only=True)
    rows = []
    for op in ops:
        if dense:
            op = replace(op, load_mask=None, load_stats=None)
        res = sim.run_op(op)
        rows.append({"op": op.op, "format": fmt, "sparsity": profile.sparsity, "cycles": res.sparse_cycles,
                     "energy_pj": res.energy_pj, "dense_cycles": res.dense_cycles})
    return rows


def latency_table(spec: TableSpec, hw: HardwareConfig, compute_only: bool = False) -> pd.DataFrame:
    """The table (columns :data:`TABLE_COLUMNS`): each Linear op type per format and sparsity, and
    the constant ``other`` row (every non-Linear op of the step, all blocks)."""
    sim = Simulator(hw, compute_only=compute_only, fast=True)
    rows = _rows(sim, spec, AllocationProfile(0.0), "dense", dense=True)
    for s in spec.grid:
        rows += _rows(sim, spec, AllocationProfile(s), "sparse")
    if all(i % 4 == 0 for i in (spec.shape.hidden_size, spec.shape.intermediate_size)):
        nm = _rows(sim, spec, AllocationProfile(0.5, nm=(2, 4)), "2:4")
        dense = {r["op"]: r["cycles"] for r in rows if r["format"] == "dense"}
        if any(r["cycles"] < dense[r["op"]] for r in nm):  # the preset gains from N:M
            rows += nm
    others = [op for op in model_ops(spec.shape, spec.tokens, context=spec.context) if op.kind != "linear"]
    other = [sim.run_op(op) for op in others]
    rows.append({"op": "other", "format": "dense", "sparsity": 0.0, "cycles": sum(r.sparse_cycles for r in other),
                 "energy_pj": sum(r.energy_pj for r in other), "dense_cycles": sum(r.dense_cycles for r in other)})
    df = pd.DataFrame(rows)
    return df.assign(blocks=spec.shape.num_hidden_layers, hardware=hw.name, phase=spec.phase, tokens=spec.tokens,
                     context=spec.context if spec.context is not None else 0)[TABLE_COLUMNS]


def mask_cycles(spec: TableSpec, hw: HardwareConfig, compute_only: bool = False) -> Callable[[str, np.ndarray], float]:
    """``cost(op, keep)``: the cycles of one block's ``op`` on the preset's sparse path with the keep
    mask ``keep`` (out x in), simulated as the table's sparse rows are but with the real mask, so the
    spread of its rows' nonzeros counts under the preset's row schedule: what ``simulate --run`` gives
    that Linear (tests/besa_hw/test_codesign.py)."""
    sim = Simulator(hw, compute_only=compute_only, fast=True)

    def cost(op: str, keep: np.ndarray) -> float:
        ops = model_ops(spec.shape, spec.tokens, lambda _b, name, _s: (lambda: keep) if name == op else None,
                        range(1), spec.context, linear_only=True)
        return float(sim.run_op(next(o for o in ops if o.op == op)).sparse_cycles)
    return cost


def _key(spec: TableSpec, hw: HardwareConfig, compute_only: bool) -> str:
    doc = {"shape": dataclasses.asdict(spec.shape) | {"name": ""}, "tokens": spec.tokens, "context": spec.context,
           "grid": list(spec.grid), "hw": dataclasses.asdict(hw), "compute_only": compute_only, "version": 1}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


def cached_table(spec: TableSpec, hw: HardwareConfig, cache_dir: str | Path | None,
                 compute_only: bool = False) -> tuple[pd.DataFrame, bool]:
    """(table, whether it came from the cache): tables are kept in ``cache_dir`` under a key of the
    model dimensions, the whole hardware configuration, the phase and the grid (None: no cache)."""
    path = Path(cache_dir) / f"{spec.phase}-{hw.name}-{_key(spec, hw, compute_only)}.csv" if cache_dir else None
    if path is not None and path.is_file():
        return pd.read_csv(path), True
    table = latency_table(spec, hw, compute_only)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        table.to_csv(tmp, index=False)
        tmp.replace(path)
    return table, False


def interpolate(table: pd.DataFrame, op: str, fmt: str, sparsity: float) -> float:
    """Cycles of ``op`` in ``fmt`` at ``sparsity``: linear between the grid points around it
    (the last grid point beyond the grid; dense and 2:4 are one point each)."""
    rows = table[(table.op == op) & (table.format == fmt)].sort_values("sparsity")
    if rows.empty:
        raise ValueError(f"latency table has no {fmt} row for {op}")
    return float(np.interp(sparsity, rows.sparsity.to_numpy(), rows.cycles.to_numpy()))


def best_format(table: pd.DataFrame, op: str, sparsity: float, nm: bool = False) -> tuple[str, float]:
    """(format, cycles) of the cheapest way to run ``op`` at ``sparsity``: dense or the preset's
    sparse path (or 2:4 for a 2:4 mask, where the table has it)."""
    options = {"dense": interpolate(table, op, "dense", 0.0), "sparse": interpolate(table, op, "sparse", sparsity)}
    if nm and ((table.op == op) & (table.format == "2:4")).any():
        options["2:4"] = interpolate(table, op, "2:4", 0.5)
    fmt = min(options, key=options.get)
    return fmt, options[fmt]


def predict_cycles(table: pd.DataFrame, sparsities: dict[tuple[int, str], float],
                   formats: dict[tuple[int, str], str] | None = None) -> float:
    """Cycles of the whole step for per-(block, op) sparsities (every Linear of the model must be
    given): the constant row plus each Linear in its format (default: the cheapest at its sparsity)."""
    blocks = int(table.blocks.iloc[0])
    missing = [(b, op) for b in range(blocks) for op in OP_NAMES if (b, op) not in sparsities]
    if missing:
        raise ValueError(f"allocation lacks block {missing[0][0]} {missing[0][1]} ({len(missing)} Linears missing)")
    total = float(table[table.op == "other"].cycles.sum())
    for (b, op), s in sparsities.items():
        fmt = (formats or {}).get((b, op))
        total += interpolate(table, op, fmt, s) if fmt else best_format(table, op, s)[1]
    return total
