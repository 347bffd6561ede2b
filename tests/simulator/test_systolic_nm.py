"""Systolic arrays (SCALE-Sim v3's cycles) and N:M structured sparsity."""

import numpy as np
import pytest

from simulator import LayerOp, Simulator, apply_overrides, get_shape, load_hardware
from simulator.engines import systolic_cycles
from simulator.memory import row_bytes
from simulator.synthetic import AllocationProfile, nm_mask, synthetic_ops


# (M, K, N, rows, cols, dataflow, SCALE-Sim 3.0.0's cycles as run by bench/validate_scalesim.py)
SCALESIM_RUNS = [(4, 16, 16, 8, 8, "os", 59), (4, 16, 16, 8, 8, "ws", 103),
                 (32, 128, 128, 8, 8, "os", 9087), (32, 128, 128, 8, 8, "ws", 13823),
                 (512, 1024, 1024, 64, 64, "os", 147199), (512, 1024, 1024, 64, 64, "ws", 179711),
                 (1, 4096, 4096, 64, 64, "os", 270207), (1, 4096, 4096, 64, 64, "ws", 782335)]


@pytest.mark.parametrize("m,k,n,rows,cols,df,cycles", SCALESIM_RUNS)
def test_systolic_cycles_equal_scalesim(m, k, n, rows, cols, df, cycles):
    assert systolic_cycles(m, k, n, rows, cols, df) == cycles
    hw = load_hardware("besa-64x64", {"pe_rows": rows, "pe_cols": cols, "dense_engine": f"systolic-{df}"})
    res = Simulator(hw, compute_only=True).run_op(LayerOp(0, "q_proj", n, k, m))
    assert res.dense_cycles == cycles  # the SimPy model executes the closed form


def test_a_gemv_uses_one_row_of_an_output_stationary_array():
    hw = load_hardware("systolic-64x64", {"dense_engine": "systolic-os"})
    res = Simulator(hw, compute_only=True).run_op(LayerOp(0, "q_proj", 4096, 4096, 1))
    assert res.utilization == pytest.approx(4096 * 4096 / (4096 * 270207))  # about 1.5%
    lanes = Simulator(load_hardware("besa-64x64"), compute_only=True).run_op(LayerOp(0, "q_proj", 4096, 4096, 1))
    assert lanes.utilization == pytest.approx(1.0)


def test_nm_mask_and_storage_by_hand():
    rng = np.random.default_rng(0)
    mask = nm_mask((16, 64), (2, 4), rng)
    assert (mask.reshape(16, 16, 4).sum(axis=2) == 2).all()
    hw = load_hardware("besa-64x64")
    # 2:4, 8-bit, all sparse: 32 kept values per 64-wide row + 2 bits of position each = 8 B.
    values, index = row_bytes(hw, 64, 0, np.full(16, 32), nm=(2, 4))
    assert values.tolist() == [32.0] * 16 and index.tolist() == [8.0] * 16
    # Compressed on a systolic dense engine: 32 values and 8 B of positions per row as well.
    values, index = row_bytes(hw, 64, 64, np.zeros(16, dtype=int), nm=(2, 4), nm_dense=True)
    assert values.tolist() == [32.0] * 16 and index.tolist() == [8.0] * 16


@pytest.mark.parametrize("exact", [False, True])
def test_two_four_is_exactly_twice_as_fast_on_the_systolic_preset(exact):
    shape = get_shape("llama-7b")
    prof = AllocationProfile(0.5, nm=(2, 4), exact_masks=exact)
    ops = synthetic_ops(shape, 64, prof, range(1), linear_only=True)
    results = Simulator(load_hardware("systolic-64x64"), compute_only=True).run(ops)
    dense, sparse = sum(r.dense_cycles for r in results), sum(r.sparse_cycles for r in results)
    # Half the weight-stationary folds: 2F (M + 190) - 1 against F (M + 190) - 1 cycles per op.
    assert dense == 2 * sparse + len(results) and f"{dense / sparse:.3f}" == "2.000"
    # Unstructured 50% buys no compute on an array without a sparse engine.
    ops = synthetic_ops(shape, 64, AllocationProfile(0.5, exact_masks=exact), range(1), linear_only=True)
    assert all(r.speedup == 1.0 for r in Simulator(load_hardware("systolic-64x64"), compute_only=True).run(ops))


def test_nm_on_the_lanes_engine_is_perfectly_balanced():
    ops = synthetic_ops(get_shape("smollm2-135m"), 1, AllocationProfile(0.5, nm=(2, 4)), range(1), linear_only=True)
    hw = apply_overrides(load_hardware("besa-64x64"), {"column_split": "all-sparse"})
    assert all(r.load_imbalance == pytest.approx(1.0) for r in Simulator(hw, compute_only=True).run(ops))


def test_macko_bytes_by_hand():
    """MACKO: (nnz + padding) fp16 values, a 4-bit delta each, a 32-bit row pointer; padding
    nnz z / (1 - z) with z = (1 - d)^16 (its average case)."""
    hw = load_hardware("rtx4090-gpu")
    values, index = row_bytes(hw, 4096, 0, np.array([2048, 4096, 409]))
    for nnz, v, i in zip((2048, 4096, 409), values, index):
        z = (1 - nnz / 4096) ** 16
        stored = nnz * (1 + z / (1 - z))
        assert v == pytest.approx(2 * stored) and i == pytest.approx(stored / 2 + 4)
    assert values[0] + index[0] == pytest.approx(0.625 * 4096 * 2, rel=1e-3)  # 1.25 d of dense at d = 0.5


def test_gpu_preset_against_the_macko_measurement():
    """Llama-2-7B fp16 decode, batch 1, on an RTX 4090 (MACKO's README): dense 66.53 tokens/s,
    50% 98.60 tokens/s (1.48x). The preset is bandwidth-faithful (90% of 1008 GB/s assumed) and
    charges every op (kernel) 0.875 us of fixed overhead (CUDA.jl's CUDA-graph figure); neither
    number is fitted to these measurements. The issue's targets: 10% and 5%."""
    from besa_hw.pipeline import WorkloadSpec, build_ops, simulate
    from simulator import step_metrics

    hw = load_hardware("rtx4090-gpu")
    spec = WorkloadSpec(shape="llama2-7b", context=100, profile=AllocationProfile(0.5))
    _, summary = simulate(build_ops(spec), hw)
    m = step_metrics(summary, hw, 1)
    assert m["dense_tokens_per_s"] == pytest.approx(66.53, rel=0.10)
    assert m["speedup_e2e"] == pytest.approx(1.48, rel=0.05)  # simulated 1.549x: +4.7% (see README)


def test_quantized_bitmap_tile_bytes_by_hand():
    """16 x 64 weights, 50% (32 kept per row), W4 g64, bitmap, all columns sparse: per row 32 x 4 bits of
    values + 64 bits of bitmap + one group's fp16 scale and 4-bit zero point = 16 + 8 + 2.5 = 26.5 B."""
    from simulator.tiling import plan_op

    hw = load_hardware("besa-64x64", {"column_split": "all-sparse"})
    plan = plan_op(16, 64, 1, hw, 0, np.full(16, 32), weight_bits=4, group_size=64)
    assert plan.weight_bytes + plan.index_bytes == pytest.approx(16 * 26.5)
    assert plan.dram_bytes == pytest.approx(16 * 26.5 + 64 + 16)  # + 8-bit input and output vectors


def test_quantized_runs_report_speedup_vs_fp16_and_vs_the_same_bits():
    from besa_hw.pipeline import WorkloadSpec, build_ops, simulate
    from simulator import step_metrics

    hw = load_hardware("besa-64x64", {"weight_bits": 16, "act_bits": 16})
    prof = AllocationProfile(0.5, wbits=4, group_size=64)
    layers, summary = simulate(build_ops(WorkloadSpec(shape="smollm2-135m", blocks=2, profile=prof,
                                                      linear_only=True)), hw)
    lin = layers[layers.kind == "linear"]
    assert (lin.weight_bits == 4).all()
    m = step_metrics(summary, hw, 1)
    # Memory-bound decode: 4-bit sparse against 16-bit dense gains far more than against 4-bit dense.
    assert m["speedup_e2e_vs_fp16"] > 3.0 * m["speedup_e2e"] / 1.5 and m["speedup_e2e"] > 1.2


def test_load_as_sparse_compute_as_dense_by_hand():
    """sparse_compute = "dense": the compressed bytes stream, every sparse column's MACs are computed
    (16 x 64 at 50%: 1024 MACs, not 512); a 2:4 mask runs at half of them."""
    from simulator.tiling import plan_op

    base = {"column_split": "all-sparse", "sparse_compute": "dense"}
    hw = load_hardware("besa-64x64", base)
    plan = plan_op(16, 64, 1, hw, 0, np.full(16, 32))
    assert plan.sparse_macs == 16 * 64 and plan.weight_bytes == pytest.approx(16 * 32)
    skip = plan_op(16, 64, 1, load_hardware("besa-64x64", {"column_split": "all-sparse"}), 0, np.full(16, 32))
    assert skip.sparse_macs == 16 * 32 and skip.weight_bytes == plan.weight_bytes
    nm = plan_op(16, 64, 1, hw, 0, np.full(16, 32), nm=(2, 4))
    assert nm.sparse_macs == 16 * 32


def test_gpu_gains_from_unstructured_sparsity_only_while_memory_bound():
    """rtx4090-gpu (issue 18 A0): 50% unstructured is ~1.58x in decode (bytes) and 1.0x in a 2048-token
    prefill (tensor-core work unchanged: the runtime keeps cuBLAS); 2:4 gains in both."""
    shape, hw = get_shape("llama-7b"), load_hardware("rtx4090-gpu")

    def linear(tokens, profile):
        res = Simulator(hw).run(synthetic_ops(shape, tokens, profile, range(1), linear_only=True))
        return sum(r.dense_cycles for r in res) / sum(r.sparse_cycles for r in res)

    assert linear(1, AllocationProfile(0.5)) == pytest.approx(1.585, abs=0.01)
    assert linear(2048, AllocationProfile(0.5)) == pytest.approx(1.0)
    assert 1.39 <= linear(2048, AllocationProfile(0.5, nm=(2, 4))) <= 1.89  # SlideSparse's measured range (held out)
