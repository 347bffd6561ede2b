"""The mapping of a matmul onto the buffers (closed form, hand-computed) and its SimPy execution."""

import numpy as np
import pytest

from simulator import LayerOp, Simulator, apply_overrides, load_hardware
from simulator.accelerator import Accelerator
from simulator.dataflow import best_mapping
from simulator.memory import row_bytes
from simulator.tiling import plan_op
from simulator.vector import plan_vector


@pytest.fixture(scope="module")
def hw():
    return load_hardware("besa-64x64")


@pytest.fixture(scope="module")
def tiny_hw(hw):
    """8x8 PEs; 64 B weight buffer (32 B usable, double buffered), 32 B activation and output buffers."""
    return apply_overrides(hw, {"pe_rows": 8, "pe_cols": 8, "weight_sram_kib": 64 / 1024,
                                "index_sram_kib": 1.0, "act_sram_kib": 32 / 1024, "out_sram_kib": 32 / 1024,
                                "weight_bits": 8, "act_bits": 8})


def test_row_bytes_of_each_format(hw):
    nnz = np.array([10, 0])
    csr = apply_overrides(hw, {"sparse_format": "csr", "weight_bits": 8, "index_bits": 16})
    values, index = row_bytes(csr, 64, 0, nnz)
    assert values.tolist() == [10.0, 0.0] and index.tolist() == [22.0, 2.0]  # (nnz + row pointer) x 2 B
    bitmap = apply_overrides(hw, {"sparse_format": "bitmap"})
    values, index = row_bytes(bitmap, 64, 16, nnz)
    assert values.tolist() == [26.0, 16.0] and index.tolist() == [6.0, 6.0]  # 48 sparse columns -> 6 B


def test_mapping_by_hand(tiny_hw):
    """4 tokens x 16x16 weights, 8-bit. Weight tiles hold 32 B, activation and output tiles 32 B.

    A whole-K weight tile (tk=16) holds 2 rows: at best (m>n>k, 2 resident tokens) the weights are
    read twice: 512 + 64 + 64 = 640 B. Splitting K in 4 (tk=4): 8 rows x 4 columns of weights,
    4 tokens x 4 columns of activations, 4 x 8 partial sums; weights read once, activations once per
    row tile (2): 256 + 2 x 64 + 64 = 448 B, the minimum (tk=2 and 1 tie with more tiles).
    """
    mp = best_mapping(4, 16, 16, tiny_hw, 16.0, 0.0, 256.0, 1.0, 1.0)
    assert (mp.order, mp.tm, mp.tn, mp.tk) == ("n>m>k", 4, 8, 4)
    assert (mp.weight_reads, mp.act_reads) == (1, 2)
    assert mp.dram_bytes == 448.0 and mp.label == "n>m>k m4 n8 k4"
    plan = plan_op(16, 16, 4, tiny_hw, 16, None)
    assert plan.dram_bytes == 448.0 and plan.tiling == mp.label
    assert plan.load_bytes.size == 8  # 2 row tiles x 4 reduction tiles
    assert plan.compute_cycles == pytest.approx(4 * 16 * 16 / 64)  # every MAC on 64 PEs


def test_dense_prefill_never_below_compulsory_traffic(hw):
    rng = np.random.default_rng(0)
    for _ in range(30):
        m, n, k = (int(x) for x in rng.integers(1, 3000, 3))
        sized = apply_overrides(hw, {f: float(rng.choice([4, 16, 53, 256])) for f in
                                     ("weight_sram_kib", "act_sram_kib", "out_sram_kib")})
        plan = plan_op(n, k, m, sized, k, None)
        assert plan.dram_bytes >= m * k + n * k + m * n


@pytest.mark.parametrize("out_f,in_f", [(4096, 4096), (11008, 4096), (4096, 11008), (8192, 28672)])
def test_decode_is_one_pass_over_the_weights(hw, out_f, in_f):
    """Decode reads every weight once, its input once and writes its output once (8-bit)."""
    plan = plan_op(out_f, in_f, 1, hw, in_f, None)
    assert plan.dram_bytes == out_f * in_f + in_f + out_f


def test_prefill_tiles_both_operands(hw):
    """(512, 4096, 4096) at 8 bit on besa-64x64's buffers: the old planner (whole rows, weights
    re-streamed per chunk of 13 tokens) moved 675 MB; tiling the reduction as well cuts it."""
    plan = plan_op(4096, 4096, 512, hw, 4096, None)
    compulsory = 512 * 4096 * 2 + 4096 * 4096
    assert compulsory <= plan.dram_bytes < 0.15 * 675e6
    assert plan.compute_cycles == pytest.approx(512 * 4096 * 4096 / 4096)


@pytest.mark.parametrize("double_buffer", [True, False])
def test_simpy_equals_closed_form_without_contention(hw, double_buffer):
    hw = apply_overrides(hw, {"double_buffer": double_buffer})
    mask = np.random.default_rng(2).random((700, 900)) >= np.linspace(0.2, 0.8, 900)
    row_nnz = mask.sum(axis=1)
    plan = plan_op(700, 900, 3, hw, 100, row_nnz - mask[:, :100].sum(axis=1), max_steps=64)
    res = Accelerator(hw, compute_only=True).run(plan)
    assert res.total_cycles == int(np.ceil(plan.compute_cycles - 1e-6))
    assert res.stall_cycles == 0 and res.memory_cycles == 0
    assert res.dense_engine_cycles == int(np.ceil(plan.dense_cycles.sum() - 1e-6))
    assert res.sparse_engine_cycles == int(np.ceil(plan.sparse_cycles.sum() - 1e-6))


@pytest.mark.parametrize("compute_only", [True, False])
def test_op_overhead_adds_the_same_cycles_to_every_op(hw, compute_only):
    """2 us of fixed overhead per op at 500 MHz: exactly 1000 more cycles, sparse and dense alike, on a
    matmul and on a vector op; nothing moves or computes meanwhile (they show as stall cycles)."""
    mask = np.random.default_rng(3).random((300, 400)) >= 0.5
    ops = [LayerOp(0, "q_proj", 300, 400, 2, lambda: mask),
           LayerOp(0, "input_norm", 400, 400, 2, kind="vector", ops_per_element=4.0)]
    base = Simulator(hw, compute_only=compute_only).run(ops)
    slow = Simulator(apply_overrides(hw, {"op_overhead_us": 2.0}), compute_only=compute_only).run(ops)
    for b, s in zip(base, slow):
        assert (s.sparse_cycles - b.sparse_cycles, s.dense_cycles - b.dense_cycles) == (1000, 1000)
        assert (s.compute_cycles, s.memory_cycles) == (b.compute_cycles, b.memory_cycles)
        assert s.stall_cycles == b.stall_cycles + 1000


def test_attention_repeats_per_kv_head_and_halves_causal_work(hw):
    full = plan_op(2048, 128, 2048, hw, 128, None, repeat=8)
    causal = plan_op(2048, 128, 2048, hw, 128, None, repeat=8, causal=True)
    assert full.macs == 8 * 2048 * 2048 * 128
    assert causal.macs == round(8 * 2048 * 128 * 2049 * 2048 / (2 * 2048)) // 1
    assert causal.compute_cycles == pytest.approx(full.compute_cycles * 2049 / 4096)


def test_vector_op_by_hand(hw):
    """1000 elements of RMSNorm (4 ops each) on 64 lanes: 62.5 cycles; 1000 B in, 1000 B out."""
    plan = plan_vector(1000, 4.0, 1, hw)
    assert plan.compute_cycles == pytest.approx(62.5)
    assert plan.load_bytes.sum() == 1000 and plan.write_bytes.sum() == 1000


@pytest.mark.parametrize("tokens", [1, 512])
def test_step_merging_does_not_change_latency(hw, tokens):
    """Coarser SimPy steps only change pipeline fill/drain, not the steady state."""
    fast = apply_overrides(hw, {"pe_rows": 8, "dram_gbps": 307.2, "weight_sram_kib": 64.0})
    mask = np.random.default_rng(0).random((5504, 2048)) >= 0.5
    op = LayerOp(0, "gate_proj", 5504, 2048, tokens, lambda: mask)
    fine = Simulator(fast, max_steps=100_000).run_op(op)
    for steps in (32, 100, 256):
        coarse = Simulator(fast, max_steps=steps).run_op(op)
        # At most about one step's worth of fill/drain: 1/steps of the total.
        assert coarse.sparse_cycles == pytest.approx(fine.sparse_cycles, rel=1.5 / steps)
        assert coarse.dense_cycles == pytest.approx(fine.dense_cycles, rel=1.5 / steps)
