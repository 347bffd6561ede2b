"""Latency tables (simulator/latency_table.py): the table's sum is what `simulate` gives."""

import numpy as np
import pandas as pd
import pytest

from simulator import Simulator, get_shape, load_hardware
from simulator.latency_table import TableSpec, best_format, cached_table, interpolate, latency_table, predict_cycles
from simulator.synthetic import AllocationProfile, synthetic_ops
from simulator.workload import OP_NAMES, module_path

SHAPE = get_shape("smollm2-135m")


def _simulated(hw, profile, tokens, context) -> float:
    return float(sum(r.sparse_cycles for r in Simulator(hw).run(synthetic_ops(SHAPE, tokens, profile, None, context))))


@pytest.mark.parametrize("preset", ["besa-64x64", "vitcod-64x8", "rtx4090-gpu"])
@pytest.mark.parametrize("tokens,context", [(1, 2048), (256, None)])
def test_table_predicts_simulate_within_one_percent(preset, tokens, context):
    """A uniform 50% allocation and a non-uniform one (off-grid sparsities 0.1-0.9 per Linear)."""
    hw = load_hardware(preset)
    table = latency_table(TableSpec(SHAPE, tokens, context), hw)
    rng = np.random.default_rng(0)
    per_layer = {module_path(b, op): float(rng.uniform(0.1, 0.9)) for b in range(SHAPE.num_hidden_layers)
                 for op in OP_NAMES}
    for profile in (AllocationProfile(0.5), AllocationProfile(0.5, per_layer)):
        sparsities = {(b, op): profile.layer_sparsity(b, op) for b in range(SHAPE.num_hidden_layers)
                      for op in OP_NAMES}
        predicted = predict_cycles(table, sparsities)
        assert predicted == pytest.approx(_simulated(hw, profile, tokens, context), rel=0.01)


def test_table_rows_and_formats():
    hw = load_hardware("vitcod-64x8")
    table = latency_table(TableSpec(SHAPE, 1, 2048, grid=(0.0, 0.5, 0.9)), hw)
    assert set(table.op) == {*OP_NAMES, "other"}
    assert len(table[table.format == "sparse"]) == 7 * 3
    # CSR with 16-bit indices at 50%: the sparse path is no faster than dense; at 90% it is
    assert best_format(table, "up_proj", 0.5)[0] == "dense"
    assert best_format(table, "up_proj", 0.9)[0] == "sparse"
    dense = interpolate(table, "up_proj", "dense", 0.0)
    assert interpolate(table, "up_proj", "sparse", 0.7) == pytest.approx(
        0.5 * (interpolate(table, "up_proj", "sparse", 0.5) + interpolate(table, "up_proj", "sparse", 0.9)))
    assert dense == table[(table.op == "up_proj") & (table.format == "dense")].cycles.iloc[0]
    with pytest.raises(ValueError, match="lacks block 0 q_proj"):
        predict_cycles(table, {})
    with pytest.raises(ValueError, match="grid must be increasing"):
        TableSpec(SHAPE, 1, 2048, grid=(0.5, 0.2))


def test_systolic_array_gains_only_from_nm():
    table = latency_table(TableSpec(SHAPE, 1, 2048, grid=(0.0, 0.5, 0.9)), load_hardware("systolic-64x64"))
    sparse = table[table.format == "sparse"]
    assert (sparse.cycles.to_numpy() == sparse.dense_cycles.to_numpy()).all()  # no unstructured skipping
    assert best_format(table, "down_proj", 0.5, nm=True)[0] == "2:4"


def test_cache_returns_the_same_table(tmp_path):
    spec, hw = TableSpec(SHAPE, 1, 2048, grid=(0.0, 0.5)), load_hardware("besa-64x64")
    first, cached = cached_table(spec, hw, tmp_path)
    assert not cached and len(list(tmp_path.glob("decode-besa-64x64-*.csv"))) == 1
    again, cached = cached_table(spec, hw, tmp_path)
    assert cached
    pd.testing.assert_frame_equal(first, again, check_dtype=False)
    other, cached = cached_table(spec, load_hardware("besa-64x64", {"dram_gbps": 25.6}), tmp_path)
    assert not cached and len(list(tmp_path.glob("*.csv"))) == 2  # the key covers the hardware

