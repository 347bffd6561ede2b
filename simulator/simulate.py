"""Public entry points: simulate ops sparse and dense on the same hardware."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable, Iterable

import pandas as pd

from simulator.accelerator import Accelerator, SimResult
from simulator.area import area
from simulator.config import HardwareConfig
from simulator.energy import EnergyBreakdown, op_energy
from simulator.partition import MaskStats, mask_stats
from simulator.sram_traffic import array_accesses
from simulator.tiling import Plan, plan_key, plan_op
from simulator.vector import plan_vector
from simulator.workload import LayerOp

__all__ = ["OpResult", "Simulator", "results_frame", "summarize", "step_metrics", "LAYER_COLUMNS"]


@dataclass(frozen=True)
class OpResult:
    """One row of layers.csv: an op simulated sparse and dense on the same hardware."""

    block: int
    op: str
    name: str
    kind: str  # linear, attention, vector, lm_head, embedding
    out_features: int
    in_features: int
    tokens: int
    nnz: int
    sparsity: float
    dense_cycles: int  # dense baseline at the op's own weight bits: every PE dense, dense weight traffic
    sparse_cycles: int  # this op with its mask
    speedup: float  # dense_cycles / sparse_cycles
    dense_fp16_cycles: int  # dense with 16-bit weights
    speedup_vs_fp16: float
    weight_bits: int
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
    weight_dram_bytes: float  # of which weights, indices and quantization scales (decode: the stored size)
    index_dram_bytes: float  # of which indices (the rest of the DRAM bytes: activations in, outputs out)
    act_dram_bytes: float
    out_dram_bytes: float
    # what the engines read from each buffer and write to the output buffer (simulator/sram_traffic.py)
    weight_sram_read_bytes: float
    index_sram_read_bytes: float
    act_sram_read_bytes: float
    out_sram_write_bytes: float
    energy_pj: float  # the sum of the four parts below
    dense_energy_pj: float
    energy_mac_pj: float
    energy_sram_pj: float
    energy_dram_pj: float
    energy_static_pj: float
    bound: str  # "compute" or "memory"
    dense_columns: int
    dense_pes: int
    sparse_pes: int
    tiling: str  # the chosen mapping: loop order and tile sizes (tokens m, rows n, reduction k)
    dataflow: str  # its loop order


LAYER_COLUMNS = [f.name for f in dataclasses.fields(OpResult)]


class Simulator:
    """Simulates `LayerOp`s; dense baselines are cached per (shape, tokens)."""

    def __init__(self, hw: HardwareConfig, compute_only: bool = False, max_steps: int = 256,
                 fast: bool = False, plans: dict | None = None) -> None:
        """``fast``: each op's pipeline as a recurrence instead of a SimPy run, with the same cycles
        (``Accelerator.pipeline_result``; SimPy still runs the rare op whose order hangs on a tie).

        ``plans``: a cache of plans shared between simulators of hardware points that differ only
        in what a plan never reads (``tiling.PLAN_FREE_FIELDS``: DRAM bandwidth, clock, energy
        and area figures), as a sweep's points do; keyed by the rest of the hardware, so sharing
        it is always safe. A sparse op's plans are cached under its statistics object, which must
        stay alive as long as the cache (the sweep's do)."""
        if max_steps < 1:
            raise ValueError("max_steps must be >= 1")
        self.fast = fast
        self.hw = hw
        self.compute_only = compute_only
        self.max_steps = max_steps
        self.accelerator = Accelerator(hw, compute_only)
        self._dense: dict[tuple, tuple[Plan, SimResult]] = {}
        self._plans = {} if plans is None else plans
        self._plan_key = (plan_key(hw), max_steps)

    def _plan(self, key: tuple, make: Callable[[], Plan]) -> Plan:
        key = (self._plan_key, *key)
        if key not in self._plans:
            self._plans[key] = make()
        return self._plans[key]

    def dense(self, out_f: int, in_f: int, tokens: int, weight_bits: int | None = None, repeat: int = 1,
              causal: bool = False, group_size: int | None = None) -> tuple[Plan, SimResult]:
        """Plan and SimPy result of a dense matmul (the baseline of a Linear, or an attention op)."""
        key = ("matmul", out_f, in_f, tokens, weight_bits, repeat, causal, group_size)
        if key not in self._dense:
            plan = self._plan(key, lambda: plan_op(out_f, in_f, tokens, self.hw, in_f, None, self.max_steps,
                                                   weight_bits=weight_bits, repeat=repeat, causal=causal,
                                                   group_size=group_size))
            self._dense[key] = (plan, self.accelerator.run(plan, self.fast))
        return self._dense[key]

    def baseline(self, op: LayerOp) -> tuple[Plan, SimResult]:
        """The op without pruning: a dense matmul, or the vector unit's chunks."""
        if op.is_matmul:
            bits = (self.hw.kv_bits or self.hw.act_bits) if op.kind == "attention" else op.weight_bits
            return self.dense(op.out_features, op.in_features, op.tokens, bits, op.repeat, op.causal,
                              op.group_size)
        elements = op.repeat * op.tokens * op.out_features
        key = ("vector", elements, op.ops_per_element, op.inputs, op.weight_bits, op.kind)
        if key not in self._dense:
            bits = self.hw.weight_bits if op.kind == "embedding" else op.weight_bits
            plan = self._plan(key, lambda: plan_vector(elements, op.ops_per_element, op.inputs, self.hw, bits,
                                                       self.max_steps))
            self._dense[key] = (plan, self.accelerator.run(plan, self.fast))
        return self._dense[key]

    def stats(self, op: LayerOp) -> MaskStats | None:
        """Mask statistics of an op (None when dense); reusable across hardware points
        that share ``column_split`` and ``dense_column_threshold``."""
        if op.load_stats is not None:
            return op.load_stats(self.hw)
        mask = op.mask()
        return None if mask is None else mask_stats(mask, self.hw)

    def sparse_plan(self, stats: MaskStats, tokens: int, nm: tuple[int, int] | None = None,
                    weight_bits: int | None = None, group_size: int | None = None) -> Plan:
        """Plan of the column split with the lowest estimated latency."""
        def make() -> tuple[MaskStats, list[Plan]]:  # the statistics are kept to pin their id
            return stats, [plan_op(stats.out_features, stats.in_features, tokens, self.hw, k,
                                   stats.row_nnz_sparse(c), self.max_steps, nm=nm, weight_bits=weight_bits,
                                   group_size=group_size)
                           for c, k in enumerate(stats.dense_cols)]

        _, plans = self._plan(("sparse", id(stats), tokens, nm, weight_bits, group_size), make)
        bpc = self.accelerator.bytes_per_cycle
        # Ties (to a cycle) go to the split with more dense columns: a dense mask runs dense.
        return min(plans, key=lambda p: (round(p.estimate_cycles(bpc, self.hw.double_buffer)), -p.dense_cols))

    def run_op(self, op: LayerOp, stats: MaskStats | None = None) -> OpResult:
        """Simulate one op; pass precomputed `stats` to skip reading its mask."""
        stats = self.stats(op) if stats is None else stats
        dense_plan, dense_res = self.baseline(op)
        if stats is None:
            plan, res, nnz = dense_plan, dense_res, op.weights
        else:
            plan = self.sparse_plan(stats, op.tokens, op.nm, op.weight_bits, op.group_size)
            res, nnz = self.accelerator.run(plan, self.fast), stats.nnz
            if res.total_cycles > dense_res.total_cycles and stats.in_features in stats.dense_cols:
                # The split was picked on an estimate; the all-dense split (allowed here) is the
                # dense baseline itself, already simulated: never lose to it.
                plan, res = dense_plan, dense_res
        fp16 = self.fp16_cycles(op, dense_res)
        return self._row(op, nnz, plan, res, dense_plan, dense_res, fp16)

    def fp16_cycles(self, op: LayerOp, dense_res: SimResult) -> int:
        """The op dense with 16-bit weights (the usual deployment baseline of a quantized model)."""
        if op.kind not in ("linear", "lm_head") or (op.weight_bits or self.hw.weight_bits) == 16:
            return dense_res.total_cycles
        return self.dense(op.out_features, op.in_features, op.tokens, 16, op.repeat, op.causal)[1].total_cycles

    def run(self, ops: Iterable[LayerOp], callback: Callable[[OpResult], None] | None = None) -> list[OpResult]:
        results = []
        for op in ops:
            results.append(self.run_op(op))
            if callback:
                callback(results[-1])
        return results

    def energy(self, plan: Plan, cycles: int) -> EnergyBreakdown:
        return op_energy(self.hw, plan.macs, plan.weight_bytes, plan.index_bytes, plan.act_bytes,
                         plan.out_bytes, cycles)

    def _row(self, op: LayerOp, nnz: int, plan: Plan, res: SimResult, dplan: Plan, dres: SimResult,
             fp16_cycles: int) -> OpResult:
        hw, total = self.hw, max(res.total_cycles, 1)
        energy, dense_energy = self.energy(plan, res.total_cycles), self.energy(dplan, dres.total_cycles)
        # Perfectly balanced sparse engine: its work spread evenly over its PEs.
        balanced = hw.sparse_cycles_per_nnz * plan.sparse_macs / plan.sparse_pes if plan.sparse_pes else 0.0
        return OpResult(
            block=op.block, op=op.op, name=op.name, kind=op.kind, out_features=op.out_features,
            in_features=op.in_features, tokens=op.tokens, nnz=nnz,
            sparsity=1.0 - nnz / op.weights if op.weights else 0.0,
            dense_cycles=dres.total_cycles, sparse_cycles=res.total_cycles,
            speedup=_ratio(dres.total_cycles, res.total_cycles), dense_fp16_cycles=fp16_cycles,
            speedup_vs_fp16=_ratio(fp16_cycles, res.total_cycles),
            weight_bits=op.weight_bits or (hw.kv_bits or hw.act_bits if op.kind == "attention" else hw.weight_bits),
            latency_us=hw.cycles_to_us(res.total_cycles),
            dense_engine_cycles=res.dense_engine_cycles, sparse_engine_cycles=res.sparse_engine_cycles,
            compute_cycles=res.compute_cycles, memory_cycles=res.memory_cycles,
            stall_cycles=res.stall_cycles, utilization=plan.macs / (hw.num_pes * total),
            load_imbalance=plan.sparse_total / balanced if balanced > 0 else 1.0,
            dram_bytes=plan.dram_bytes, dense_dram_bytes=dplan.dram_bytes,
            weight_dram_bytes=plan.weight_bytes + plan.index_bytes, index_dram_bytes=plan.index_bytes,
            act_dram_bytes=plan.act_bytes, out_dram_bytes=plan.out_bytes,
            **array_accesses(hw, plan, tokens=op.tokens, out_features=op.out_features, in_features=op.in_features,
                             repeat=op.repeat, causal=op.causal, matmul=op.is_matmul, inputs=op.inputs),
            energy_pj=energy.total_pj, dense_energy_pj=dense_energy.total_pj, energy_mac_pj=energy.mac_pj,
            energy_sram_pj=energy.sram_pj, energy_dram_pj=energy.dram_pj, energy_static_pj=energy.static_pj,
            bound="memory" if res.memory_cycles > res.compute_cycles else "compute",
            dense_columns=plan.dense_cols, dense_pes=plan.dense_pes, sparse_pes=plan.sparse_pes,
            tiling=plan.tiling, dataflow=plan.dataflow,
        )


def _ratio(dense: float, sparse: float) -> float:
    """dense / sparse cycles; an op that costs nothing either way (the embedding gather with
    --compute-only) is 1.0x, never 0/0."""
    if sparse > 0:
        return dense / sparse
    return 1.0 if dense <= 0 else float(dense)


def results_frame(results: list[OpResult]) -> pd.DataFrame:
    return pd.DataFrame([vars(r) for r in results], columns=LAYER_COLUMNS)  # flat fields: no deep copy


_ENERGY_PARTS = ["energy_mac_pj", "energy_sram_pj", "energy_dram_pj", "energy_static_pj"]
_SUMS = ["nnz", "dense_cycles", "sparse_cycles", "compute_cycles", "memory_cycles", "stall_cycles",
         "dram_bytes", "dense_dram_bytes", "energy_pj", "dense_energy_pj"]
_OPTIONAL_SUMS = ["dense_fp16_cycles"]
WEIGHT_KINDS = ("linear", "lm_head")


def summarize(layers: pd.DataFrame, by: str = "op") -> pd.DataFrame:
    """Totals per op type (or per block), then a ``linear`` row (the seven prunable projections:
    what pruning changes) and a final ``total`` row (the whole decoder step: end-to-end).

    Speedup = sum dense / sum sparse; sparsity is over the weights of Linears and lm_head.
    """
    kind = layers["kind"] if "kind" in layers else pd.Series("linear", index=layers.index)
    df = layers.assign(params=(layers.out_features * layers.in_features).where(kind.isin(WEIGHT_KINDS), 0))
    cols = _SUMS + [c for c in _ENERGY_PARTS + _OPTIONAL_SUMS if c in df] + ["params"]
    groups = df.groupby(by, sort=False)[cols].sum()
    counts = list(df.groupby(by, sort=False).size())
    if by == "op":
        groups.loc["linear"] = df[kind.eq("linear")][cols].sum()
        counts.append(int(kind.eq("linear").sum()))
    groups.loc["total"] = df[cols].sum()
    groups["count"] = counts + [len(df)]
    groups["sparsity"] = 1.0 - groups.nnz / groups.params.where(groups.params > 0)
    groups["sparsity"] = groups.sparsity.fillna(0.0)
    groups["speedup"] = groups.dense_cycles / groups.sparse_cycles.clip(lower=1)
    if "dense_fp16_cycles" in groups:
        groups["speedup_vs_fp16"] = groups.dense_fp16_cycles / groups.sparse_cycles.clip(lower=1)
    groups["energy_saving"] = groups.dense_energy_pj / groups.energy_pj.clip(lower=1e-12)
    out = groups.drop(columns="params").reset_index().rename(columns={"index": by})
    return out[[by, "count", "sparsity", "dense_cycles", "sparse_cycles", "speedup", "compute_cycles",
                "memory_cycles", "stall_cycles", "dram_bytes", "dense_dram_bytes", "energy_pj",
                "dense_energy_pj", "energy_saving"] + [c for c in _ENERGY_PARTS + _OPTIONAL_SUMS + ["speedup_vs_fp16"]
                                                       if c in out]]


def traffic(layers: pd.DataFrame, hw: HardwareConfig) -> dict[str, float]:
    """The step's DRAM traffic in MB split into weights (Linears and the head: values, indices, scales),
    KV cache (the weight-side operand of attention) and activations (everything else: inputs and
    outputs), and the achieved DRAM bandwidth in GB/s against the peak; with the array-side SRAM
    columns (simulator/sram_traffic.py), the MB the engines read from each buffer and write to the
    output buffer (``sram_*_mb``)."""
    kind = layers["kind"] if "kind" in layers else pd.Series("linear", index=layers.index)
    weights = float(layers.weight_dram_bytes.where(kind.isin(WEIGHT_KINDS), 0).sum())
    kv = float(layers.weight_dram_bytes.where(kind.eq("attention"), 0).sum())
    total = float(layers.dram_bytes.sum())
    seconds = hw.cycles_to_us(float(layers.sparse_cycles.sum())) * 1e-6
    out = {"weights_mb": weights / 1e6, "kv_cache_mb": kv / 1e6, "activations_mb": (total - weights - kv) / 1e6,
           "dram_mb": total / 1e6, "achieved_gbps": total / seconds / 1e9 if seconds > 0 else 0.0,
           "peak_gbps": hw.dram_gbps}
    if "weight_sram_read_bytes" in layers:
        w = layers.weight_sram_read_bytes
        out |= {"sram_weights_mb": float(w.where(kind.isin(WEIGHT_KINDS), 0).sum()) / 1e6,
                "sram_kv_cache_mb": float(w.where(kind.eq("attention"), 0).sum()) / 1e6,
                "sram_index_mb": float(layers.index_sram_read_bytes.sum()) / 1e6,
                "sram_activations_mb": float(layers.act_sram_read_bytes.sum()) / 1e6,
                "sram_outputs_mb": float(layers.out_sram_write_bytes.sum()) / 1e6}
    return out


def saving_words(ratio: float) -> str:
    """A dense/sparse energy ratio in words: "1.517x less", or "1.215x more" when the sparse step takes more."""
    return f"{ratio:.3f}x less" if ratio >= 1 else f"{1 / ratio:.3f}x more"


def area_power_words(m: dict[str, float]) -> str:
    """The area and average-power line of `simulate` and `run` from ``step_metrics``."""
    if m["area_pe_mm2"] + m["area_weight_sram_mm2"] > 0:
        sram = sum(m[f"area_{kind}_sram_mm2"] for kind in ("weight", "index", "act", "out"))
        where = (f"45 nm: PEs {m['area_pe_mm2']:.3g}, vector {m['area_vector_mm2']:.3g}, sparse extras "
                 f"{m['area_sparse_extra_mm2']:.3g}, SRAM {sram:.3g}")
    else:
        where = "the preset's published chip area"
    def mw(v: float) -> str:
        return f"{v:,.0f}" if v >= 100 else f"{v:.3g}"

    parts = ", ".join(f"{name} {mw(m[f'power_{name.lower()}_mw'])}" for name in ("MAC", "SRAM", "DRAM", "static"))
    return f"area {m['area_mm2']:.4g} mm2 ({where}); average power {mw(m['power_mw'])} mW ({parts})"


def step_metrics(summary: pd.DataFrame, hw: HardwareConfig, tokens: int) -> dict[str, float]:
    """Headline numbers of one simulated step (a `summarize` table): Linear-only and end-to-end
    speedup, latency in ms at the preset clock and tokens/s (``tokens`` produced or consumed by
    the step: the batch in decode, the prompt in prefill), sparse and dense; the step's energy in
    mJ, sparse and dense, and each part's share of it; the average power in mW (energy / time) and
    each part's; the chip's area in mm2 and its breakdown (simulator/area.py); with the
    ``speedup_vs_fp16`` column, the end-to-end speedup against a dense fp16 model too."""
    rows = summary.set_index(summary.columns[0])
    total = rows.loc["total"]
    linear = rows.loc["linear"] if "linear" in rows.index else total
    ms, dense_ms = hw.cycles_to_us(total.sparse_cycles) / 1e3, hw.cycles_to_us(total.dense_cycles) / 1e3
    extra = {"speedup_e2e_vs_fp16": float(total.speedup_vs_fp16)} if "speedup_vs_fp16" in rows else {}
    extra |= {f"energy_{part}_share": float(total[f"energy_{part}_pj"] / total.energy_pj)
              for part in ("mac", "sram", "dram", "static")}
    extra |= {"energy_mj": float(total.energy_pj) / 1e9, "dense_energy_mj": float(total.dense_energy_pj) / 1e9,
              "energy_saving": float(total.energy_saving),
              "energy_per_token_mj": float(total.energy_pj) / 1e9 / tokens,
              "tokens_per_joule": tokens / (float(total.energy_pj) * 1e-12) if total.energy_pj > 0 else float("inf")}
    power = float(total.energy_pj) / 1e9 / ms * 1e3 if ms > 0 else 0.0  # mJ / ms = W
    extra |= {"power_mw": power} | {f"power_{part}_mw": power * extra[f"energy_{part}_share"]
                                    for part in ("mac", "sram", "dram", "static")}
    extra |= area(hw).as_dict()
    return extra | {"speedup_linear": float(linear.speedup), "speedup_e2e": float(total.speedup),
            "latency_ms": ms, "dense_latency_ms": dense_ms,
            "tokens_per_s": tokens / (ms / 1e3) if ms > 0 else float("inf"),
            "dense_tokens_per_s": tokens / (dense_ms / 1e3) if dense_ms > 0 else float("inf")}
