"""The pipeline recurrence (Accelerator.pipeline_result, used by sweeps and latency tables) gives the
SimPy model's cycles exactly, ties included (SimPy runs the op where the order hangs on a tie)."""

import itertools

import numpy as np
import pytest

from besa_hw.pipeline import WorkloadSpec, build_ops
from simulator import Simulator, apply_overrides, load_hardware
from simulator.accelerator import Accelerator
from simulator.tiling import Plan


def _plan(load, write, step) -> Plan:
    step = np.asarray(step, dtype=float)
    return Plan(np.asarray(load, dtype=float), np.asarray(write, dtype=float), step * 0.5, step * 0.25, step,
                1, 1, 1, 1, 1, 1.0)


@pytest.mark.parametrize("double_buffer", [True, False])
@pytest.mark.parametrize("overhead_us", [0.0, 0.002])
def test_every_small_plan_with_whole_cycle_ties(double_buffer, overhead_us):
    """Every plan of 1-2 tiles whose loads, writes and steps take 0, 1 or 2 whole cycles: ties everywhere."""
    hw = apply_overrides(load_hardware("besa-64x64"), {"dram_gbps": 4.0, "double_buffer": double_buffer,
                                                       "op_overhead_us": overhead_us})  # 8 bytes a cycle
    acc = Accelerator(hw)
    for n in (1, 2):
        for load, write, step in itertools.product(itertools.product((0.0, 8.0, 16.0), repeat=n),
                                                   itertools.product((0.0, 8.0, 16.0), repeat=n),
                                                   itertools.product((0.0, 1.0, 2.0), repeat=n)):
            plan = _plan(load, write, step)
            assert acc.run(plan, fast=True) == acc.run(plan), (load, write, step)


def test_random_plans_with_and_without_ties():
    rng = np.random.default_rng(0)
    base = load_hardware("besa-64x64")
    for trial in range(400):
        n = int(rng.integers(1, 12))
        ties = trial % 2 == 0
        hw = apply_overrides(base, {"double_buffer": bool(rng.integers(0, 2)), "dram_gbps": 2.0 if ties else 76.8,
                                    "op_overhead_us": float(rng.choice([0.0, 0.002]))})
        draw = (lambda s: rng.integers(0, 4, n) * s) if ties else (lambda s: rng.random(n) * s * rng.integers(0, 2, n))
        plan = _plan(draw(4.0), draw(4.0), draw(1.0))
        for compute_only in (False, True):
            acc = Accelerator(hw, compute_only)
            assert acc.run(plan, fast=True) == acc.run(plan)


@pytest.mark.parametrize("preset", ["besa-64x64", "vitcod-64x8", "rtx4090-gpu", "systolic-64x64"])
@pytest.mark.parametrize("phase", ["decode", "prefill"])
def test_whole_decoder_steps_are_identical(preset, phase):
    ops = build_ops(WorkloadSpec(shape="smollm2-135m", phase=phase, blocks=2, tokens=256))
    hw = load_hardware(preset)
    assert Simulator(hw, fast=True).run(ops) == Simulator(hw).run(ops)


def test_the_compiled_recurrence_is_compiled_and_equal_to_the_python_loop():
    from simulator import recurrence

    assert recurrence.COMPILED, "numba is a dependency: the sweep's speed relies on the compiled loop"
    assert recurrence.compiled is not recurrence.pipeline
    rng = np.random.default_rng(1)
    for _ in range(200):
        n = int(rng.integers(0, 40))
        loads, writes, steps = (rng.random(n) * rng.integers(0, 2, n) for _ in range(3))
        args = (loads, writes, steps, int(rng.integers(1, 3)), float(rng.choice([0.0, 3.5])))
        assert recurrence.compiled(*args) == recurrence.pipeline(*args)
