"""Public entry points: simulate ops sparse and dense on the same hardware."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable, Iterable

import pandas as pd

from simulator.accelerator import Accelerator, SimResult
from simulator.config import HardwareConfig
from simulator.partition import MaskStats, mask_stats
from simulator.tiling import Plan, plan_op
from simulator.workload import LayerOp

__all__ = ["OpResult", "Simulator", "results_frame", "summarize", "LAYER_COLUMNS"]


@dataclass(frozen=True)
class OpResult:
    """One row of layers.csv: an op simulated sparse and dense on the same hardware."""

    block: int
    op: str
    name: str
    out_features: int
    in_features: int
    tokens: int
    nnz: int
    sparsity: float
    dense_cycles: int  # dense baseline: every PE dense, dense weight traffic
    sparse_cycles: int  # this op with its mask
    speedup: float
    latency_us: float
    dense_engine_cycles: int
    sparse_engine_cycles: int
    compute_cycles: int
    memory_cycles: int
    stall_cycles: int
    utilization: float  # MACs performed / (PEs x cycles)
    load_imbalance: float  # sparse engine cycles / perfectly balanced cycles (1.0 = even)
    dram_bytes: float
    dense_dram_bytes: float
    energy_pj: float
    dense_energy_pj: float
    bound: str  # "compute" or "memory"
    dense_columns: int
    dense_pes: int
    sparse_pes: int
    rows_per_tile: int
    dataflow: str


LAYER_COLUMNS = [f.name for f in dataclasses.fields(OpResult)]


class Simulator:
    """Simulates `LayerOp`s; dense baselines are cached per (shape, tokens)."""

    def __init__(self, hw: HardwareConfig, compute_only: bool = False, max_steps: int = 256) -> None:
        if max_steps < 1:
            raise ValueError("max_steps must be >= 1")
        self.hw = hw
        self.compute_only = compute_only
        self.max_steps = max_steps
        self.accelerator = Accelerator(hw, compute_only)
        self._dense: dict[tuple[int, int, int], tuple[Plan, SimResult]] = {}

    def dense(self, out_f: int, in_f: int, tokens: int) -> tuple[Plan, SimResult]:
        key = (out_f, in_f, tokens)
        if key not in self._dense:
            plan = plan_op(out_f, in_f, tokens, self.hw, in_f, None, self.max_steps)
            self._dense[key] = (plan, self.accelerator.run(plan))
        return self._dense[key]

    def stats(self, op: LayerOp) -> MaskStats | None:
        """Mask statistics of an op (None when dense); reusable across hardware points
        that share ``column_split`` and ``dense_column_threshold``."""
        mask = op.mask()
        return None if mask is None else mask_stats(mask, self.hw)

    def sparse_plan(self, stats: MaskStats, tokens: int) -> Plan:
        """Plan of the column split with the lowest estimated latency."""
        plans = [plan_op(stats.out_features, stats.in_features, tokens, self.hw, k,
                         stats.row_nnz_sparse(c), self.max_steps)
                 for c, k in enumerate(stats.dense_cols)]
        bpc = self.accelerator.bytes_per_cycle
        return min(plans, key=lambda p: p.estimate_cycles(bpc, self.hw.double_buffer))

    def run_op(self, op: LayerOp, stats: MaskStats | None = None) -> OpResult:
        """Simulate one op; pass precomputed `stats` to skip reading its mask."""
        stats = self.stats(op) if stats is None else stats
        dense_plan, dense_res = self.dense(op.out_features, op.in_features, op.tokens)
        if stats is None:
            plan, res, nnz = dense_plan, dense_res, op.out_features * op.in_features
        else:
            plan = self.sparse_plan(stats, op.tokens)
            res, nnz = self.accelerator.run(plan), stats.nnz
        return self._row(op, nnz, plan, res, dense_plan, dense_res)

    def run(self, ops: Iterable[LayerOp], callback: Callable[[OpResult], None] | None = None) -> list[OpResult]:
        results = []
        for op in ops:
            results.append(self.run_op(op))
            if callback:
                callback(results[-1])
        return results

    def energy_pj(self, plan: Plan) -> float:
        # Every DRAM byte is written into SRAM once and read from it once.
        hw = self.hw
        return plan.macs * hw.mac_pj + plan.dram_bytes * (2 * hw.sram_pj_per_byte + hw.dram_pj_per_byte)

    def _row(self, op: LayerOp, nnz: int, plan: Plan, res: SimResult, dplan: Plan, dres: SimResult) -> OpResult:
        hw, total = self.hw, max(res.total_cycles, 1)
        # Perfectly balanced sparse engine: its work spread evenly over its PEs.
        balanced = hw.sparse_cycles_per_nnz * plan.sparse_macs / plan.sparse_pes if plan.sparse_pes else 0.0
        return OpResult(
            block=op.block, op=op.op, name=op.name, out_features=op.out_features,
            in_features=op.in_features, tokens=op.tokens, nnz=nnz,
            sparsity=1.0 - nnz / (op.out_features * op.in_features),
            dense_cycles=dres.total_cycles, sparse_cycles=res.total_cycles,
            speedup=dres.total_cycles / total, latency_us=hw.cycles_to_us(res.total_cycles),
            dense_engine_cycles=res.dense_engine_cycles, sparse_engine_cycles=res.sparse_engine_cycles,
            compute_cycles=res.compute_cycles, memory_cycles=res.memory_cycles,
            stall_cycles=res.stall_cycles, utilization=plan.macs / (hw.num_pes * total),
            load_imbalance=float(plan.sparse_cycles.sum()) / balanced if balanced > 0 else 1.0,
            dram_bytes=plan.dram_bytes, dense_dram_bytes=dplan.dram_bytes,
            energy_pj=self.energy_pj(plan), dense_energy_pj=self.energy_pj(dplan),
            bound="memory" if res.memory_cycles > res.compute_cycles else "compute",
            dense_columns=plan.dense_cols, dense_pes=plan.dense_pes, sparse_pes=plan.sparse_pes,
            rows_per_tile=plan.rows_per_tile, dataflow=plan.dataflow,
        )


def results_frame(results: list[OpResult]) -> pd.DataFrame:
    return pd.DataFrame([dataclasses.asdict(r) for r in results], columns=LAYER_COLUMNS)


_SUMS = ["nnz", "dense_cycles", "sparse_cycles", "compute_cycles", "memory_cycles", "stall_cycles",
         "dram_bytes", "dense_dram_bytes", "energy_pj", "dense_energy_pj"]


def summarize(layers: pd.DataFrame, by: str = "op") -> pd.DataFrame:
    """Totals per op type (or per block) plus a final ``total`` row; speedup = sum dense / sum sparse."""
    df = layers.assign(params=layers.out_features * layers.in_features)
    groups = df.groupby(by, sort=False)[_SUMS + ["params"]].sum()
    groups.loc["total"] = df[_SUMS + ["params"]].sum()
    groups["count"] = list(df.groupby(by, sort=False).size()) + [len(df)]
    groups["sparsity"] = 1.0 - groups.nnz / groups.params
    groups["speedup"] = groups.dense_cycles / groups.sparse_cycles.clip(lower=1)
    groups["energy_saving"] = groups.dense_energy_pj / groups.energy_pj.clip(lower=1e-12)
    out = groups.drop(columns="params").reset_index().rename(columns={"index": by})
    return out[[by, "count", "sparsity", "dense_cycles", "sparse_cycles", "speedup", "compute_cycles",
                "memory_cycles", "stall_cycles", "dram_bytes", "dense_dram_bytes", "energy_pj",
                "dense_energy_pj", "energy_saving"]]
