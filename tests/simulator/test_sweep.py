import multiprocessing
import signal

import pandas as pd
import pytest

from simulator import get_shape, load_hardware
from simulator.synthetic import AllocationProfile, synthetic_ops
from simulator.sweep import grid_points, load_sweep_file, parse_grid, run_sweep


def test_grid_is_validated_before_any_work():
    base = load_hardware()
    with pytest.raises(ValueError, match="'pe_rowz' is not a HardwareConfig field"):
        grid_points(base, parse_grid(["pe_rowz=1,2"]))
    with pytest.raises(ValueError, match="empty sweep grid"):
        grid_points(base, {})
    with pytest.raises(ValueError, match="pe_rows must be a positive integer"):
        grid_points(base, parse_grid(["pe_rows=8,0"]))
    with pytest.raises(ValueError, match="no values"):
        parse_grid(["pe_rows="])


def test_sweep_file(tmp_path):
    f = tmp_path / "s.toml"
    f.write_text('[hardware]\nweight_bits = 4\n[sweep]\npe_rows = [16, 64]\nsparse_format = ["csr", "bitmap"]\n')
    base, grid = load_sweep_file(f)
    assert base == {"weight_bits": 4} and grid == {"pe_rows": [16, 64], "sparse_format": ["csr", "bitmap"]}
    assert len(grid_points(load_hardware(), grid)) == 4
    f.write_text("[sweep]\npe_rows = []\n")
    with pytest.raises(ValueError, match="non-empty list"):
        load_sweep_file(f)


@pytest.mark.parametrize("workers", [1, 2])
def test_sweep_matches_single_simulations_and_bandwidth_helps(workers):
    ops = synthetic_ops(get_shape("smollm2-135m"), 1, AllocationProfile(0.5), blocks=range(1), context=256)
    points = grid_points(load_hardware(), parse_grid(["dram_gbps=7.68,76.8,768"]))
    tidy, totals = run_sweep(ops, points, workers=workers)
    assert len(tidy) == 3 * len(ops) and list(totals.dram_gbps) == [7.68, 76.8, 768.0]
    # More bandwidth never makes the sparse model slower, and cuts the memory-bound share.
    assert totals.sparse_cycles.is_monotonic_decreasing
    assert totals.memory_bound_fraction.iloc[0] >= totals.memory_bound_fraction.iloc[-1]
    from simulator import Simulator
    direct = Simulator(points[1][1]).run(ops)
    assert list(tidy[tidy.point == 1].sparse_cycles) == [r.sparse_cycles for r in direct]


def test_dask_local_cluster_gives_the_process_pool_numbers():
    """`sweep --scheduler local`: the same points.csv as the default process pool."""
    pytest.importorskip("distributed")
    ops = synthetic_ops(get_shape("smollm2-135m"), 8, AllocationProfile(0.5), blocks=range(1), context=128)
    points = grid_points(load_hardware(), parse_grid(["pe_rows=16,64", "dram_gbps=19.2,76.8"]))
    _, pool = run_sweep(ops, points, workers=1)
    _, dask = run_sweep(ops, points, workers=1, scheduler="local")
    pd.testing.assert_frame_equal(pool, dask)


def _handlers(_):
    return signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(),
                    reason="the process pool needs fork")
def test_pool_workers_leave_signals_to_the_parent():
    """The CLI turns SIGTERM into KeyboardInterrupt; forked workers must not inherit that, or the
    pool's shutdown prints a traceback per worker after a successful sweep."""
    from simulator.sweep import _pool_map

    def raise_interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, raise_interrupt)
    try:
        got = _pool_map(_handlers, [0, 1, 2, 3], workers=2, tick=lambda: None)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert got == [(signal.SIG_IGN, signal.SIG_DFL)] * 4
