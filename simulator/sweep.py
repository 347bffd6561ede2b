"""Hardware-parameter sweeps over a workload, in parallel over the local cores.

Mask statistics depend on the masks and on the column-split policy only, so they
are computed once per policy and shared (copy-on-write, through ``fork``) by the
worker processes that simulate the grid points.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import multiprocessing as mp
import os
import signal
from pathlib import Path
from typing import Any, Callable, Sequence

import pandas as pd

from simulator import recurrence
from simulator.area import area
from simulator.config import HardwareConfig, apply_overrides, parse_value, read_document
from simulator.partition import MaskStats
from simulator.simulate import LAYER_COLUMNS, Simulator
from simulator.tiling import plan_key
from simulator.workload import LayerOp

__all__ = ["parse_grid", "load_sweep_file", "grid_points", "run_sweep"]

_STATS_FIELDS = ("column_split", "dense_column_threshold")
_SHARED: dict[str, Any] = {}  # inherited by forked workers


def parse_grid(items: Sequence[str] | None) -> dict[str, list]:
    """``["pe_rows=16,32,64", ...]`` -> ``{"pe_rows": [16, 32, 64]}`` (each value the TOML literal it spells)."""
    grid: dict[str, list] = {}
    for item in items or []:
        key, sep, values = item.partition("=")
        vals = [parse_value(v) for v in values.split(",") if v.strip()]
        if not sep or not key.strip():
            raise ValueError(f"--grid expects key=v1,v2,..., got {item!r}")
        if not vals:
            raise ValueError(f"--grid {key.strip()}: no values given")
        if key.strip() in grid:
            raise ValueError(f"--grid {key.strip()} given twice; list all its values in one --grid")
        grid[key.strip()] = vals
    return grid


def load_sweep_file(path: str | Path) -> tuple[dict[str, Any], dict[str, list]]:
    """(base overrides from [hardware], grid from [sweep]) of a TOML sweep file."""
    data = read_document(path, "sweep file", fmt="json" if Path(path).suffix == ".json" else "toml")
    grid = data.get("sweep") if isinstance(data, dict) else None
    if not isinstance(grid, dict):
        raise ValueError(f"sweep file {path}: needs a [sweep] table of key = [values]")
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise ValueError(f"sweep file {path}: {key} must be a non-empty list of values")
    base = data.get("hardware", {})
    if not isinstance(base, dict):
        raise ValueError(f"sweep file {path}: 'hardware' must be a [hardware] table of key = value")
    return dict(base), grid


def grid_points(base: HardwareConfig, grid: dict[str, list]) -> list[tuple[dict[str, Any], HardwareConfig]]:
    """Every combination of the grid, validated up front (bad fields/values raise ValueError)."""
    if not grid:
        raise ValueError("empty sweep grid: give --grid key=v1,v2,... or a --sweep-file with a [sweep] table")
    fields = {f.name for f in dataclasses.fields(HardwareConfig)}
    for key in grid:
        if key not in fields:
            raise ValueError(f"sweep parameter {key!r} is not a HardwareConfig field; valid: {', '.join(sorted(fields))}")
        if not grid[key]:
            raise ValueError(f"sweep parameter {key!r} has no values")
    points = []
    for combo in itertools.product(*grid.values()):
        hw = apply_overrides(base, dict(zip(grid, combo)))
        params = {k: getattr(hw, k) for k in grid}
        points.append((params, dataclasses.replace(hw, name=f"{base.name}+sweep")))
    return points


def _stats_task(args: tuple[int, HardwareConfig]) -> MaskStats | None:
    index, hw = args
    return Simulator(hw).stats(_SHARED["ops"][index])


def point_rows(ops: Sequence[LayerOp], stats: Sequence[MaskStats | None], point: int, params: dict,
               hw: HardwareConfig, compute_only: bool, fast: bool = True, plans: dict | None = None) -> list[dict]:
    """One grid point: every op simulated with its precomputed mask statistics (``fast``: the pipeline
    recurrence, the SimPy model's cycles without SimPy; see Accelerator.pipeline_result). ``plans``:
    a plan cache shared with other points (see Simulator)."""
    sim = Simulator(hw, compute_only=compute_only, fast=fast, plans=plans)
    return [{"point": point, **params, **vars(sim.run_op(op, st))} for op, st in zip(ops, stats)]


def group_rows(ops: Sequence[LayerOp], stats: dict[tuple, Sequence[MaskStats | None]],
               group: list[tuple[int, dict, HardwareConfig]], compute_only: bool, fast: bool = True) -> list[dict]:
    """Points that differ only in fields no plan reads (DRAM bandwidth, clock, energy figures), with
    their plans made once: each op's tiling is computed for the group, its pipeline for every point."""
    plans: dict = {}
    return [row for point, params, hw in group
            for row in point_rows(ops, stats[_stats_key(hw)], point, params, hw, compute_only, fast, plans)]


def plan_groups(points: list[tuple[dict, HardwareConfig]]) -> list[list[tuple[int, dict, HardwareConfig]]]:
    """The points grouped by what their plans read (``tiling.plan_key``), in point order."""
    groups: dict[tuple, list] = {}
    for i, (params, hw) in enumerate(points):
        groups.setdefault((plan_key(hw), _stats_key(hw)), []).append((i, params, hw))
    return list(groups.values())


def _stats_key(hw: HardwareConfig) -> tuple:
    return tuple(getattr(hw, f) for f in _STATS_FIELDS)


def _group_task(args: tuple[list, bool]) -> list[dict]:
    group, compute_only = args
    return group_rows(_SHARED["ops"], _SHARED["stats"], group, compute_only, _SHARED.get("fast", True))


def _pool_map(fn: Callable, tasks: list, workers: int, tick: Callable[[], None],
              weights: list[int] | None = None) -> list:
    """``fn`` over ``tasks`` in order; ``tick`` once per unit of ``weights`` (default 1) of each task done."""
    weights = weights or [1] * len(tasks)
    if workers <= 1 or len(tasks) <= 1 or "fork" not in mp.get_all_start_methods():
        out = []
        for t, n in zip(tasks, weights):
            out.append(fn(t))
            for _ in range(n):
                tick()
        return out
    with mp.get_context("fork").Pool(workers, initializer=_worker_signals) as pool:
        out = []
        for r, n in zip(pool.imap(fn, tasks), weights):
            out.append(r)
            for _ in range(n):
                tick()
        pool.close()  # let the workers exit on their own instead of being terminated
        pool.join()
        return out


def _worker_signals() -> None:
    """Forked workers drop the parent's handlers: Ctrl-C is the parent's to handle, and the
    pool's SIGTERM (on an error or Ctrl-C) ends a worker without a traceback."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def run_sweep(ops: Sequence[LayerOp], points: list[tuple[dict, HardwareConfig]], compute_only: bool = False,
              workers: int | None = None, tick: Callable[[], None] = lambda: None,
              scheduler: str | None = None, fast: bool = True,
              share_plans: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Simulate `ops` at every point: (tidy per point x op table, per-point totals with each point's area).

    Mask statistics are computed here (a local process pool); the points run in the same pool,
    or on a Dask cluster when ``scheduler`` is its address ("local": a LocalCluster of
    ``workers`` processes). Both give the same numbers. Points that differ only in fields no plan
    reads run in one task that makes each op's plans once (``share_plans=False``: one task per
    point, every plan made for it; the same numbers, for benchmarks).
    """
    workers = workers or os.cpu_count() or 1
    _SHARED.clear()
    _SHARED.update(ops=list(ops), stats={}, fast=fast)
    try:
        for _, hw in points:
            if _stats_key(hw) not in _SHARED["stats"]:
                _SHARED["stats"][_stats_key(hw)] = _pool_map(_stats_task, [(i, hw) for i in range(len(ops))],
                                                             workers, tick)
        groups = plan_groups(points) if share_plans else [[(i, *p)] for i, p in enumerate(points)]
        recurrence.warm()  # compiled (or read from numba's cache) once, before the workers fork
        if scheduler:
            rows = _dask_rows(groups, compute_only, workers, tick, scheduler)
        else:
            tasks = [(group, compute_only) for group in groups]
            rows = [r for chunk in _pool_map(_group_task, tasks, workers, tick, [len(g) for g in groups])
                    for r in chunk]
        rows.sort(key=lambda r: r["point"])  # groups interleave points; each point's ops stay in order (stable)
    finally:
        stats = _SHARED.pop("stats", None)
        _SHARED.clear()
    del stats
    params = list(points[0][0])
    tidy = pd.DataFrame(rows, columns=["point", *params, *LAYER_COLUMNS])
    totals = point_totals(tidy, params)
    areas = pd.DataFrame([area(hw).as_dict() for _, hw in points]).rename_axis("point").reset_index()
    return tidy, totals.merge(areas, on="point", how="left")


def _dask_rows(groups: list[list[tuple[int, dict, HardwareConfig]]], compute_only: bool, workers: int,
               tick: Callable[[], None], scheduler: str) -> list[dict]:
    """The points on a Dask cluster: ops and statistics are scattered once, one task per plan group."""
    try:
        from distributed import Client, LocalCluster, as_completed
    except ImportError:
        raise ValueError("--scheduler needs Dask: pip install 'besa-hw[cluster]'") from None
    if not logging.getLogger().isEnabledFor(logging.DEBUG):  # every worker's start and stop is an INFO line
        logging.getLogger("distributed").setLevel(logging.WARNING)
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True) if scheduler == "local" else None
    try:
        with Client(cluster if cluster is not None else scheduler, timeout="10s") as client:
            ops = client.scatter(_SHARED["ops"], broadcast=True)
            stats = client.scatter(_SHARED["stats"], broadcast=True)
            futures = [client.submit(group_rows, ops, stats, group, compute_only, _SHARED.get("fast", True),
                                     pure=False) for group in groups]
            sizes = {f.key: len(g) for f, g in zip(futures, groups)}
            for done in as_completed(futures):
                for _ in range(sizes[done.key]):
                    tick()
            return [r for f in futures for r in f.result()]
    except OSError as exc:
        raise ValueError(f"--scheduler {scheduler}: cannot reach the Dask scheduler ({exc})") from None
    finally:
        if cluster is not None:
            cluster.close()


def point_totals(tidy: pd.DataFrame, params: list[str]) -> pd.DataFrame:
    """One row per point: cycles, Linear-only and end-to-end speedup, latency, energy, memory-bound share."""
    kind = tidy["kind"] if "kind" in tidy else pd.Series("linear", index=tidy.index)
    # the share of the point's time spent in memory-bound ops (not of its op count: 51% of the ops
    # can be 8% of the time)
    g = tidy.assign(memory_bound=tidy.sparse_cycles.where(tidy.bound.eq("memory"), 0),
                    params_=(tidy.out_features * tidy.in_features).where(kind.isin(("linear", "lm_head")), 0),
                    lin_dense=tidy.dense_cycles.where(kind.eq("linear"), 0),
                    lin_sparse=tidy.sparse_cycles.where(kind.eq("linear"), 0))
    agg = g.groupby("point", sort=True).agg(
        **{p: (p, "first") for p in params}, ops=("op", "size"), nnz=("nnz", "sum"), weights=("params_", "sum"),
        dense_cycles=("dense_cycles", "sum"), sparse_cycles=("sparse_cycles", "sum"),
        lin_dense=("lin_dense", "sum"), lin_sparse=("lin_sparse", "sum"),
        latency_us=("latency_us", "sum"), energy_pj=("energy_pj", "sum"),
        dense_energy_pj=("dense_energy_pj", "sum"), memory_bound=("memory_bound", "sum"))
    agg["memory_bound_fraction"] = agg.pop("memory_bound") / agg.sparse_cycles.clip(lower=1)
    agg["sparsity"] = 1.0 - agg.nnz / agg.weights
    agg["speedup_linear"] = agg.lin_dense / agg.lin_sparse.clip(lower=1)
    agg["speedup_e2e"] = agg.dense_cycles / agg.sparse_cycles.clip(lower=1)
    agg["energy_saving"] = agg.dense_energy_pj / agg.energy_pj
    return agg.drop(columns=["nnz", "weights", "lin_dense", "lin_sparse"]).reset_index()
