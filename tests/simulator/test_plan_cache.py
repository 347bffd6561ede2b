"""Plans shared between sweep points that differ only in fields no plan reads (issue 20 C): the fields
are recorded, and a grouped sweep gives every point exactly what a fresh simulator gives it alone."""

import dataclasses

import pandas as pd
import pytest

from simulator import Simulator, apply_overrides, get_shape, load_hardware
from simulator.config import HardwareConfig
from simulator.synthetic import AllocationProfile, synthetic_ops
from simulator.sweep import grid_points, parse_grid, plan_groups, run_sweep
from simulator.tiling import PLAN_FREE_FIELDS, plan_key


class _Recording(HardwareConfig):
    """A HardwareConfig that notes every attribute read through it (properties' own reads included)."""

    def __getattribute__(self, name):
        seen = object.__getattribute__(self, "__dict__").get("_seen")
        if seen is not None and not name.startswith("_"):
            seen.add(name)
        return super().__getattribute__(name)


def _recording(hw: HardwareConfig) -> _Recording:
    rec = _Recording(**{f.name: getattr(hw, f.name) for f in dataclasses.fields(hw)})
    object.__setattr__(rec, "_seen", set())
    return rec


@pytest.mark.parametrize("preset", ["besa-64x64", "vitcod-64x8", "systolic-64x64", "rtx4090-gpu"])
@pytest.mark.parametrize("phase", [(1, 64), (32, None)])
def test_plans_never_read_the_plan_free_fields(preset, phase, monkeypatch):
    """Every plan a simulator caches is made through plan_op or plan_vector: run a whole decoder step
    (quantized, N:M and unstructured, dense baselines, attention and vector ops) with both recording."""
    import simulator.simulate as simulate

    seen: set[str] = set()

    def recorded(fn):
        def call(*args, **kwargs):
            args = [_recording(a) if isinstance(a, HardwareConfig) else a for a in args]
            out = fn(*args, **kwargs)
            seen.update(*(object.__getattribute__(a, "_seen") for a in args if isinstance(a, _Recording)))
            return out
        return call

    monkeypatch.setattr(simulate, "plan_op", recorded(simulate.plan_op))
    monkeypatch.setattr(simulate, "plan_vector", recorded(simulate.plan_vector))
    tokens, context = phase
    shape = get_shape("smollm2-135m")
    ops = (synthetic_ops(shape, tokens, AllocationProfile(0.5, wbits=4, group_size=64), blocks=range(1), context=context)
           + synthetic_ops(shape, tokens, AllocationProfile(0.5, nm=(2, 4)), blocks=range(1), context=context,
                           linear_only=True))
    Simulator(load_hardware(preset), fast=True).run(ops)
    assert {"pe_rows", "weight_sram_kib", "act_sram_kib"} <= seen  # the recording works
    assert not seen & set(PLAN_FREE_FIELDS)


def test_plan_key_ignores_only_the_plan_free_fields():
    hw = load_hardware("besa-64x64")
    assert plan_key(apply_overrides(hw, {"dram_gbps": 19.2, "freq_mhz": 500.0})) == plan_key(hw)
    assert plan_key(apply_overrides(hw, {"pe_rows": 32})) != plan_key(hw)
    assert plan_key(apply_overrides(hw, {"act_sram_kib": 256.0})) != plan_key(hw)


@pytest.mark.parametrize("phase", [(1, 256), (64, None)])
def test_a_grouped_sweep_equals_each_point_simulated_alone(phase):
    tokens, context = phase
    ops = synthetic_ops(get_shape("smollm2-135m"), tokens, AllocationProfile(0.5), blocks=range(2), context=context)
    points = grid_points(load_hardware(), parse_grid(["pe_rows=16,64", "dram_gbps=7.68,76.8,768",
                                                      "weight_sram_kib=8,53"]))
    assert sorted(len(g) for g in plan_groups(points)) == [3, 3, 3, 3]
    tidy, _ = run_sweep(ops, points, workers=1)
    alone = pd.DataFrame([{"point": i, **params, **vars(r)} for i, (params, hw) in enumerate(points)
                          for r in Simulator(hw, fast=True).run(ops)])
    pd.testing.assert_frame_equal(tidy, alone[tidy.columns])
