"""Hand-checkable cycle counts and invariants of the compute model."""

import numpy as np
import pytest

from simulator import LayerOp, Simulator, apply_overrides, load_hardware
from simulator.engines import lane_loads, sparse_cycles, split_pes


@pytest.fixture(scope="module")
def hw():
    return load_hardware("besa-64x64")


def op_with(mask, tokens=1):
    return LayerOp(0, "q_proj", mask.shape[0], mask.shape[1], tokens, lambda: mask)


@pytest.mark.parametrize("shape,cycles", [((4096, 4096), 4096), ((11008, 4096), 11008), ((4096, 11008), 11008)])
def test_compute_only_dense_gemv_on_64x64(hw, shape, cycles):
    # One token, 4096 PEs: out*in MACs / 4096 PEs (the BESA code's baseline bug would give 4096 for 11008x4096).
    res = Simulator(hw, compute_only=True).run_op(LayerOp(0, "gate_proj", *shape, 1))
    assert res.dense_cycles == cycles
    assert res.sparse_cycles == cycles
    assert res.speedup == 1.0


@pytest.mark.parametrize("compute_only", [True, False])
@pytest.mark.parametrize("preset", ["besa-64x64", "vitcod-64x8"])
def test_fully_dense_mask_gives_speedup_one(preset, compute_only):
    hw = load_hardware(preset)
    res = Simulator(hw, compute_only=compute_only).run_op(op_with(np.ones((256, 512), dtype=bool), tokens=4))
    assert res.speedup == pytest.approx(1.0)
    assert res.nnz == 256 * 512


@pytest.mark.parametrize("compute_only", [True, False])
@pytest.mark.parametrize("fmt", ["csr", "bitmap"])
def test_cycles_never_rise_with_sparsity(hw, compute_only, fmt):
    sim = Simulator(apply_overrides(hw, {"sparse_format": fmt}), compute_only=compute_only)
    u = np.random.default_rng(0).random((512, 1024))
    cycles = [sim.run_op(op_with(u >= s)).sparse_cycles for s in np.arange(0.0, 0.95, 0.1)]
    assert all(b <= a for a, b in zip(cycles, cycles[1:])), cycles
    assert cycles[-1] < cycles[0]


def test_uneven_rows_cost_more_than_even_at_equal_nnz(hw):
    hw = apply_overrides(hw, {"column_split": "all-sparse"})
    rng = np.random.default_rng(1)
    rows, cols = 512, 1024
    even = np.zeros((rows, cols), dtype=bool)
    uneven = np.zeros((rows, cols), dtype=bool)
    for r in range(rows):
        even[r, rng.choice(cols, 512, replace=False)] = True
        uneven[r, rng.choice(cols, 256 if r % 2 else 768, replace=False)] = True
    assert even.sum() == uneven.sum()
    sim = Simulator(hw, compute_only=True)
    r_even, r_uneven = sim.run_op(op_with(even)), sim.run_op(op_with(uneven))
    assert r_uneven.sparse_cycles > r_even.sparse_cycles
    assert r_even.load_imbalance == pytest.approx(1.0)
    assert r_uneven.load_imbalance > 1.2


def test_half_sparse_random_skipping_zeros_is_bounded_by_two(hw):
    mask = np.random.default_rng(0).random((4096, 4096)) >= 0.5
    res = Simulator(hw, compute_only=True).run_op(op_with(mask))
    assert res.dense_cycles == 4096
    assert 1.5 < res.speedup <= 2.0


def test_tiny_bandwidth_makes_decode_memory_bound(hw):
    hw = apply_overrides(hw, {"dram_gbps": 0.05})
    mask = np.random.default_rng(0).random((1024, 1024)) >= 0.5
    res = Simulator(hw).run_op(op_with(mask))
    assert res.bound == "memory"
    ideal = res.dram_bytes / hw.dram_bytes_per_cycle
    # Latency is the DRAM time plus at most the last tile's compute (pipeline drain).
    assert ideal <= res.sparse_cycles <= ideal + res.compute_cycles / 10 + 2


def test_single_buffer_serialises_load_and_compute(hw):
    mask = np.random.default_rng(3).random((512, 512)) >= 0.5
    single = Simulator(apply_overrides(hw, {"double_buffer": False})).run_op(op_with(mask, tokens=64))
    double = Simulator(hw).run_op(op_with(mask, tokens=64))
    assert single.sparse_cycles > double.sparse_cycles


def test_split_pes_policies():
    assert split_pes(4096, 0, 10, "proportional", 0.5) == (0, 4096)
    assert split_pes(4096, 10, 0, "proportional", 0.5) == (4096, 0)
    assert split_pes(4096, 3, 1, "proportional", 0.5) == (3072, 1024)
    assert split_pes(4096, 3, 1, "fixed", 0.25) == (1024, 3072)


def test_lanes_round_robin_sums_rows_per_lane():
    # 6 rows on 4 lanes: lanes get rows {0,4}, {1,5}, {2}, {3}.
    assert lane_loads(np.array([1, 2, 3, 4, 5, 6]), 4).tolist() == [6, 8, 3, 4]
    # 4 PEs, 4 lanes of one PE each, 2 tokens: the busiest lane (8 nonzeros) sets the time.
    assert sparse_cycles(2, np.array([1, 2, 3, 4, 5, 6]), 4, 4, "round-robin", 1.0) == 16.0
    # 8 PEs on 4 lanes: 2 PEs per lane.
    assert sparse_cycles(2, np.array([1, 2, 3, 4, 5, 6]), 8, 4, "round-robin", 1.0) == 8.0


def test_balanced_schedule_by_hand():
    # Rows 9,7,6,5,4,1 on 2 lanes: round 1 puts 9 and 7; round 2 puts 6 on the 7-lane and 5 on the
    # 9-lane (14, 13); round 3 puts 4 on 13 and 1 on 14: (15, 17)... sorted: loads 15 and 17.
    rows = np.array([1, 9, 4, 7, 5, 6])
    assert sorted(lane_loads(rows, 2, "balanced").tolist()) == [15, 17]
    assert sorted(lane_loads(rows, 2, "round-robin").tolist()) == [10, 22]


@pytest.mark.parametrize("seed", range(20))
def test_balanced_is_never_slower_than_round_robin(seed):
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, 1000, size=int(rng.integers(1, 600))) * rng.integers(0, 2, 1)[0] + rng.integers(0, 5)
    lanes = int(rng.integers(1, 70))
    assert lane_loads(rows, lanes, "balanced").max() <= lane_loads(rows, lanes, "round-robin").max()
    assert lane_loads(rows, lanes, "balanced").sum() == rows.sum()


@pytest.mark.parametrize("schedule", ["round-robin", "balanced"])
def test_compute_only_cycles_do_not_depend_on_buffer_sizes(hw, schedule):
    """Lanes belong to the PE array: BESA-like uneven rows cost the same whatever the SRAM sizes."""
    rng = np.random.default_rng(4)
    keep = 1 - rng.uniform(0.25, 0.75, size=(1024, 1))
    op = op_with(rng.random((1024, 2048)) < keep, tokens=4)
    cycles = set()
    for kib in (8, 16, 53, 128, 512, 1024):
        for field in ("weight_sram_kib", "index_sram_kib", "act_sram_kib", "out_sram_kib"):
            sized = apply_overrides(hw, {field: float(kib), "row_schedule": schedule})
            cycles.add(Simulator(sized, compute_only=True).run_op(op).sparse_cycles)
    assert len(cycles) == 1, cycles


def test_balanced_lowers_the_imbalance_of_uneven_rows(hw):
    rng = np.random.default_rng(5)
    keep = 1 - rng.uniform(0.25, 0.75, size=(4096, 1))
    op = op_with(rng.random((4096, 1024)) < keep)
    rr = Simulator(apply_overrides(hw, {"column_split": "all-sparse"}), compute_only=True).run_op(op)
    bal = Simulator(apply_overrides(hw, {"column_split": "all-sparse", "row_schedule": "balanced"}),
                    compute_only=True).run_op(op)
    assert bal.sparse_cycles <= rr.sparse_cycles and bal.load_imbalance < rr.load_imbalance
    assert bal.load_imbalance < 1.01


PRESETS = ["besa-64x64", "vitcod-64x8", "besa-paper", "systolic-64x64", "rtx4090-gpu"]


@pytest.mark.parametrize("compute_only", [True, False])
@pytest.mark.parametrize("phase_tokens,context", [(1, 2048), (512, None)])
@pytest.mark.parametrize("preset", PRESETS)
def test_all_ones_masks_give_exactly_one_on_every_preset(preset, phase_tokens, context, compute_only):
    """Property: dense masks (kept as masks, so the sparse path runs) are exactly 1.000x, per op and
    end to end, for every preset, phase and mode."""
    from simulator import available_presets, get_shape
    from simulator.synthetic import AllocationProfile, synthetic_ops

    assert set(PRESETS) == set(available_presets())  # a new preset must join this test
    ops = synthetic_ops(get_shape("smollm2-135m"), phase_tokens, AllocationProfile(0.0), range(1), context)
    results = Simulator(load_hardware(preset), compute_only=compute_only).run(ops)
    assert all(r.dense_cycles == r.sparse_cycles for r in results), [(r.op, r.speedup) for r in results]
    assert sum(r.dense_cycles for r in results) == sum(r.sparse_cycles for r in results)


@pytest.mark.parametrize("seed,speedup", [(0, 1.324), (1, 1.339), (2, 1.318)])
def test_paper_preset_follows_the_authors_rules_by_hand(seed, speedup):
    """4096x4096 at 50% uniform random, one token, compute only: columns strictly denser than 0.5
    dense, PE columns split by work with the dense share rounded down, nonzeros spread evenly. The
    count of dense columns is Binomial(4096, 0.494) (std 32), hence the spread between masks."""
    mask = np.random.default_rng(seed).random((4096, 4096)) >= 0.5
    res = Simulator(load_hardware("besa-paper"), compute_only=True).run_op(op_with(mask))
    assert res.speedup == pytest.approx(speedup, abs=5e-4)
    cols = int((mask.mean(axis=0) > 0.5).sum())
    sparse_nnz = int(mask.sum()) - int(np.sort(mask.sum(axis=0))[::-1][:cols].sum())
    dense_cols_of_array = int(64 * cols * 4096 / (cols * 4096 + sparse_nnz))
    expected = max(cols * 4096 / (dense_cols_of_array * 64), sparse_nnz / ((64 - dense_cols_of_array) * 64))
    assert res.sparse_cycles == int(np.ceil(expected))  # the rule by hand


def test_paper_preset_gives_1_31_over_random_masks():
    """The issue's 1.31x +- 0.02 is the authors' rules' mean over random 50% masks (1.328x); single
    masks spread with std 0.012 (about half fall outside). Here cycles are summed over LLaMA-7B's 128
    attention projections for 3 seeds, as the authors average a projection's cycles over blocks."""
    from simulator import get_shape
    from simulator.synthetic import AllocationProfile, synthetic_ops

    sim = Simulator(load_hardware("besa-paper"), compute_only=True)
    results = [r for seed in range(3) for r in sim.run(
        op for op in synthetic_ops(get_shape("llama-7b"), 1, AllocationProfile(0.5, seed=seed), linear_only=True)
        if op.op in ("q_proj", "k_proj", "v_proj", "o_proj"))]
    assert len(results) == 384
    speedup = sum(r.dense_cycles for r in results) / sum(r.sparse_cycles for r in results)
    assert speedup == pytest.approx(1.31, abs=0.02)
    assert 0.008 < np.std([r.speedup for r in results]) < 0.016
