"""Library-level steps shared by the CLI commands (no argparse here)."""

from __future__ import annotations

import dataclasses
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import pandas as pd

from simulator import HardwareConfig, LayerOp, Simulator, get_shape, results_frame, run_ops, summarize
from simulator.synthetic import AllocationProfile, synthetic_ops
from simulator.workload import check_tokens

__all__ = ["PHASE_TOKENS", "WorkloadSpec", "Timings", "build_ops", "simulate", "simulate_run", "write_table",
           "write_json", "table_spec", "model_shape"]

# Default tokens per phase: decode = one token (batch 1); prefill = a 2048-token prompt.
PHASE_TOKENS = {"decode": 1, "prefill": 2048}
# Decode attends to this many cached tokens unless told otherwise (the token after a 2048-token prompt).
DEFAULT_CONTEXT = 2048
# Where latency tables are kept (simulator/latency_table.py), keyed by dims, hardware, phase and grid.
DEFAULT_CACHE = "runs/.cache/latency"


@dataclass(frozen=True)
class WorkloadSpec:
    """What to simulate: a pruning run folder, or a model shape with synthetic masks."""

    run_dir: str | None = None
    shape: str | None = None
    profile: AllocationProfile = AllocationProfile()
    phase: str = "decode"
    tokens: int | None = None  # None: the phase's default
    blocks: int | None = None  # only the first N blocks
    context: int | None = None  # decode: cached tokens per sequence (None: DEFAULT_CONTEXT)
    linear_only: bool = False  # only the seven projections of each block (no attention, vector ops, head)

    def __post_init__(self) -> None:
        if (self.run_dir is None) == (self.shape is None):
            raise ValueError("give exactly one of a run folder or a model shape")
        if self.phase not in PHASE_TOKENS:
            raise ValueError(f"phase must be one of {', '.join(PHASE_TOKENS)}, got {self.phase!r}")
        if self.tokens is not None:
            check_tokens(self.tokens)
        if self.blocks is not None and self.blocks <= 0:
            raise ValueError(f"blocks must be a positive integer, got {self.blocks}")
        if self.context is not None and self.context <= 0:
            raise ValueError(f"--context must be a positive integer, got {self.context}")
        if self.context is not None and self.phase == "prefill":
            raise ValueError("--context applies to decode; prefill attends over its own --tokens")

    @property
    def n_tokens(self) -> int:
        return self.tokens or PHASE_TOKENS[self.phase]

    @property
    def attention_context(self) -> int | None:
        """Cached tokens per sequence in decode; None in prefill (causal over the prompt)."""
        return None if self.phase == "prefill" else (self.context or DEFAULT_CONTEXT)


def build_ops(spec: WorkloadSpec) -> list[LayerOp]:
    """The ops of a workload; masks stay on disk (or ungenerated) until simulated."""
    if spec.run_dir is not None:
        shape, ops = run_ops(spec.run_dir, spec.n_tokens, spec.attention_context, spec.linear_only, spec.blocks)
        _check_blocks(spec.blocks, shape)
        wbits = spec.profile.wbits
        if wbits:  # a what-if: the run's masks with its Linears' weights at wbits
            group = spec.profile.group_size or -1
            ops = [dataclasses.replace(op, weight_bits=wbits, group_size=op.in_features if group < 0 else group)
                   if op.kind == "linear" else op for op in ops]
        return ops
    shape = get_shape(spec.shape)
    _check_blocks(spec.blocks, shape)
    blocks = range(min(spec.blocks or shape.num_hidden_layers, shape.num_hidden_layers))
    return synthetic_ops(shape, spec.n_tokens, spec.profile, blocks, spec.attention_context, spec.linear_only)


def _check_blocks(blocks: int | None, shape) -> None:
    if blocks is not None and blocks > shape.num_hidden_layers:
        raise ValueError(f"--blocks {blocks} exceeds the model's {shape.num_hidden_layers} blocks")


def simulate(ops: Sequence[LayerOp], hw: HardwareConfig, compute_only: bool = False,
             progress: bool = False, desc: str = "simulate") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Simulate every op sparse and dense; returns (layers, per-op-type summary)."""
    sim = Simulator(hw, compute_only=compute_only)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(ops), desc=desc, unit="op", leave=False, disable=None)
    try:
        results = sim.run(ops, callback=(lambda _: bar.update()) if bar else None)
    finally:
        if bar:
            bar.close()
    layers = results_frame(results)
    return layers, summarize(layers)


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_table(df: pd.DataFrame, path: str | Path) -> Path:
    path = Path(path)
    _atomic_write(path, df.to_csv(index=False))
    return path


def write_json(obj: object, path: str | Path) -> Path:
    path = Path(path)
    if dataclasses.is_dataclass(obj):
        obj = dataclasses.asdict(obj)
    _atomic_write(path, json.dumps(obj, indent=2) + "\n")
    return path


@dataclass
class Timings:
    steps: dict[str, float] = field(default_factory=dict)

    def add(self, name: str, start: float) -> None:
        self.steps[name] = round(time.perf_counter() - start, 2)


def simulate_run(run_dir: str | Path, hw: HardwareConfig, phases: dict[str, int], compute_only: bool = False,
                 progress: bool = False, context: int | None = None,
                 linear_only: bool = False) -> dict[str, pd.DataFrame]:
    """Simulate a run folder's masks per phase (the whole decoder step unless ``linear_only``; decode
    attends to ``context`` cached tokens); writes RUN_DIR/sim/<phase>/{layers,summary,blocks}.csv."""
    from besa_hw.outdir import mark

    sim_dir = Path(run_dir) / "sim"
    totals = {}
    for phase, tokens in phases.items():
        spec = WorkloadSpec(run_dir=str(run_dir), phase=phase, tokens=tokens, linear_only=linear_only,
                            context=context if phase == "decode" else None)
        layers, summary = simulate(build_ops(spec), hw, compute_only, progress, desc=f"simulate {phase}")
        write_table(layers, sim_dir / phase / "layers.csv")
        write_table(summary, sim_dir / phase / "summary.csv")
        write_table(summarize(layers, by="block"), sim_dir / phase / "blocks.csv")
        mark(sim_dir / phase, "simulate")
        totals[phase] = summary
    write_json(hw, sim_dir / "hardware.json")
    return totals


def table_spec(shape, phase: str, tokens: int | None, context: int | None, grid_step: float = 0.05):
    """The TableSpec of a phase with the CLI's defaults (decode: 1 token at context 2048; prefill: 2048)."""
    from simulator.latency_table import TableSpec
    from simulator.workload import check_tokens

    if not 0.0 < grid_step <= 0.5:
        raise ValueError(f"--grid-step must be in (0, 0.5], got {grid_step}")
    if phase == "prefill" and context is not None:
        raise ValueError("--context applies to decode; prefill attends over its own --tokens")
    if context is not None and context < 1:
        raise ValueError(f"--context must be a positive integer, got {context}")
    n = int(round(1.0 / grid_step))
    grid = tuple(round(i / n, 6) for i in range(n) if i / n < 1.0)
    return TableSpec(shape, check_tokens(tokens or PHASE_TOKENS[phase], "--tokens"),
                     None if phase == "prefill" else (context or DEFAULT_CONTEXT), grid)


def latency_model(spec, hw, target_speedup: float):
    """The LatencyModel of a speedup target on ``hw`` (pruning.hw_target): the simulator's latency table of
    ``spec`` (cached in DEFAULT_CACHE) and the real-mask pricing of the rows' spread."""
    from pruning.hw_target import LatencyModel
    from simulator.latency_table import cached_table, mask_cycles

    table, _ = cached_table(spec, hw, DEFAULT_CACHE)
    return LatencyModel.from_rows(table.to_dict("records"), target_speedup, mask_cycles(spec, hw))


def model_shape(model: str):
    """The ModelShape of a model's config (no weights are loaded)."""
    from besa_hw.estimate import shape_of
    from besa_hw.models import resolve_model

    spec = resolve_model(model, None)
    shape = shape_of(spec.source if spec.gguf_file is None else spec.model_id)
    if shape is None:
        raise ValueError(f"cannot read the model dimensions of {model} (give --shape)")
    return shape
