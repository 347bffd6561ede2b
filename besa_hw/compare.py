"""Compare sparsity allocations: several runs (or profiles) on the same hardware."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from besa_hw.pipeline import WorkloadSpec, build_ops, simulate
from simulator import HardwareConfig
from simulator.area import area
from simulator.synthetic import AllocationProfile, load_profile
from simulator.workload import OP_NAMES, read_manifest, run_ops

__all__ = ["Candidate", "candidates_from_runs", "candidates_from_profiles", "compare"]

_SHAPE_KEYS = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
               "num_key_value_heads")


@dataclass(frozen=True)
class Candidate:
    """One allocation to compare: a workload per phase plus what the run recorded."""

    name: str
    specs: dict[str, WorkloadSpec]  # phase -> workload
    method: str = ""
    ppl: float = float("nan")
    dense_ppl: float = float("nan")


def _scope(context: int | None, linear_only: bool):
    """WorkloadSpec fields of a phase: decode attends to ``context`` cached tokens."""
    return lambda phase: {"linear_only": linear_only, "context": context if phase == "decode" else None}


def _ppl(manifest: dict, key: str) -> float:
    value = (manifest.get("perplexity") or {}).get(key)
    return float(value) if value is not None else float("nan")


def method_label(manifest: dict) -> str:
    """The method as a curve of the Pareto figure: BESA with a hardware target, the search and OWL
    are curves of their own."""
    method, hyper = manifest.get("method", ""), manifest.get("hyperparameters") or {}
    if manifest.get("hw_target"):
        return f"{method} (target {manifest['hw_target'].get('hardware', '?')})"
    if hyper.get("allocation") == "owl":
        return f"owl + {method}"
    return method


def candidates_from_runs(run_dirs: Sequence[str], phases: dict[str, int], names: Sequence[str] | None = None,
                         blocks: int | None = None, context: int | None = None,
                         linear_only: bool = False) -> list[Candidate]:
    """Candidates from pruning run folders; runs of different models are refused."""
    scope = _scope(context, linear_only)
    names = list(names) if names else [Path(r).name for r in run_dirs]
    if len(names) != len(run_dirs):
        raise ValueError(f"--names gives {len(names)} names for {len(run_dirs)} runs")
    out, first = [], None
    for name, run in zip(names, run_dirs):
        manifest = read_manifest(run)
        if not (Path(run) / "masks.safetensors").is_file():
            raise FileNotFoundError(f"{run}: masks.safetensors is missing (not a finished pruning run)")
        run_ops(run, 1)  # validates the manifest's model and layers and the masks file, reads no mask
        dims = {k: manifest["model"].get(k) for k in _SHAPE_KEYS}
        if first is None:
            first = (run, dims)
        elif dims != first[1]:
            raise ValueError(f"cannot compare runs of different models: {first[0]} and {run} differ in "
                             + ", ".join(k for k in _SHAPE_KEYS if dims[k] != first[1][k]))
        specs = {ph: WorkloadSpec(run_dir=str(run), phase=ph, tokens=t, blocks=blocks, **scope(ph))
                 for ph, t in phases.items()}
        out.append(Candidate(name, specs, method_label(manifest), _ppl(manifest, "pruned"), _ppl(manifest, "dense")))
    return out


def candidates_from_profiles(shape: str, profiles: Sequence[str], base: AllocationProfile,
                             phases: dict[str, int], blocks: int | None = None, context: int | None = None,
                             linear_only: bool = False) -> list[Candidate]:
    """Candidates from per-layer profile JSON files on a model shape (synthetic masks)."""
    scope = _scope(context, linear_only)
    out = []
    for path in profiles:
        prof = dataclasses.replace(base, per_layer=load_profile(path))
        specs = {ph: WorkloadSpec(shape=shape, profile=prof, phase=ph, tokens=t, blocks=blocks, **scope(ph))
                 for ph, t in phases.items()}
        out.append(Candidate(Path(path).stem, specs, "profile"))
    return out


def compare(cands: Sequence[Candidate], hw: HardwareConfig, compute_only: bool = False,
            progress: bool = False) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(one row per candidate, per-layer allocations, all simulated layers).

    ``run`` labels the candidate in all three tables; in the layers table ``name`` stays the
    module path, as in a run's layers.csv.
    """
    if len(cands) < 1:
        raise ValueError("nothing to compare")
    if len({c.name for c in cands}) != len(cands):
        raise ValueError("compared runs need distinct names (use --names)")
    rows, layers_all = [], []
    for cand in cands:
        row = {"run": cand.name, "method": cand.method, "ppl": cand.ppl, "dense_ppl": cand.dense_ppl,
               "area_mm2": area(hw).total_mm2}
        for phase, spec in cand.specs.items():
            layers, summary = simulate(build_ops(spec), hw, compute_only, progress, desc=f"{cand.name} {phase}")
            layers.insert(0, "run", cand.name)
            layers_all.append(layers.assign(phase=phase))
            row.update(_phase_metrics(phase, layers, summary))
        rows.append(row)
    layers = pd.concat(layers_all, ignore_index=True)
    first = layers[layers.phase == layers.phase.iloc[0]]
    first = first[first.kind.eq("linear")]
    alloc = first[["run", "block", "op", "sparsity"]].reset_index(drop=True)
    return pd.DataFrame(rows), alloc, layers


def _phase_metrics(phase: str, layers: pd.DataFrame, summary: pd.DataFrame) -> dict:
    """Linear-only (the pruned projections) and end-to-end (the whole simulated step) numbers."""
    rows = summary.set_index("op")
    total = rows.loc["total"]
    linear = rows.loc["linear"] if "linear" in rows.index else total
    weights = layers.sparse_engine_cycles.clip(lower=1e-9)
    tokens = int(layers[layers.kind.eq("linear")].tokens.iloc[0])
    dense_us = hw_us = float(layers.latency_us.sum())
    if "dense_cycles" in layers and layers.sparse_cycles.sum() > 0:
        dense_us = hw_us * float(layers.dense_cycles.sum()) / float(layers.sparse_cycles.sum())
    out = {"achieved_sparsity": float(linear.sparsity),
           f"dense_tokens_per_s_e2e_{phase}": tokens / (dense_us * 1e-6),
           f"speedup_linear_{phase}": float(linear.speedup),
           f"speedup_e2e_{phase}": float(total.speedup),
           f"latency_us_e2e_{phase}": float(layers.latency_us.sum()),
           f"tokens_per_s_e2e_{phase}": tokens / (layers.latency_us.sum() * 1e-6),
           f"load_imbalance_{phase}": float(np.average(layers.load_imbalance, weights=weights)),
           f"energy_saving_e2e_{phase}": float(total.energy_saving),
           f"energy_per_token_uj_{phase}": float(total.energy_pj) / 1e6 / tokens,
           f"power_mw_{phase}": float(total.energy_pj) * 1e-9 / (float(layers.latency_us.sum()) * 1e-6)}
    out.update({f"speedup_{phase}_{op}": float(rows.speedup[op]) for op in OP_NAMES if op in rows.index})
    return out
