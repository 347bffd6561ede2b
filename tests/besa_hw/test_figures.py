"""Figures that do not exaggerate: ratio axes show 1.0x without offsets, near-equal heatmaps look flat,
sweeps show latency and energy, and the roofline agrees with the simulator's ``bound``."""

import numpy as np
import pandas as pd
import pytest

from besa_hw.report import explore as figures_explore, figures
from besa_hw.pipeline import simulate_run
from besa_hw.report.scales import color_limits, spread_note
from simulator import load_hardware

from conftest import write_fake_run


@pytest.fixture
def drawn(monkeypatch):
    """Keep each figure open (instead of saving it) so that a test can inspect its Axes."""
    kept = []

    def keep(fig, path):
        fig.canvas.draw()
        kept.append(fig)
        return path

    monkeypatch.setattr(figures, "save", keep)
    monkeypatch.setattr(figures_explore, "save", keep)
    yield kept
    for fig in kept:
        figures.plt.close(fig)


def near_equal_points():
    """A 2 x 2 sweep whose speedups differ by 0.03% while latency falls 3x with the bigger array."""
    pe = [16, 16, 64, 64]
    return pd.DataFrame({
        "point": range(4), "pe_rows": pe, "dram_gbps": [76.8, 80.0] * 2,
        "speedup_e2e": [1.5958, 1.5962, 1.5959, 1.5961], "speedup_linear": [1.6, 1.6, 1.6, 1.6], "memory_bound_fraction": [1.0, 1.0, 0.0, 0.0],
        "latency_us": [300.0, 290.0, 100.0, 98.0], "sparse_cycles": [150_000, 145_000, 50_000, 49_000],
        "dense_cycles": [239_400, 231_500, 79_800, 78_200], "energy_pj": [7.23e8] * 4,
        "dense_energy_pj": [1.15e9] * 4})


def test_scale_helpers():
    assert spread_note([1.5958, 1.5962], "×") == "all within 0.03%: 1.5958-1.5962×"
    assert spread_note([1.0, 2.0]) == ""
    lo, hi = color_limits([1.5958, 1.5962])
    assert lo <= 1.5960 * 0.99 + 1e-9 and hi >= 1.5960 * 1.01 - 1e-9
    assert color_limits([1.2, 1.8], ratio=True) == (1.0, 1.8)


def test_sweep_lines_ratio_axes_are_honest(drawn, tmp_path):
    figures_explore.sweep_lines(near_equal_points(), ["pe_rows", "dram_gbps"], tmp_path / "s.png")
    axes = np.array(drawn[0].axes).reshape(4, 2)
    assert [ax.get_ylabel().split(" (")[0] for ax in axes[:, 0]] == [
        "end-to-end speedup vs dense", "Linear-only speedup vs dense", "end-to-end latency", "energy"]
    for ax in axes[0]:  # speedup
        lo, hi = ax.get_ylim()
        assert lo <= 1.0 <= hi and ax.yaxis.get_offset_text().get_text() == ""
        assert "all within 0.03%" in ax.get_title()
    for ax in axes.ravel():
        assert ax.yaxis.get_offset_text().get_text() == ""
    latency = axes[2, 0]  # sparse and dense lines; the bigger array is 3x faster
    ys = [line.get_ydata() for line in latency.get_lines() if len(line.get_ydata()) == 2]
    assert any(np.allclose(y, [300.0, 100.0]) for y in ys)  # dram_gbps=76.8 over pe_rows 16, 64
    assert latency.get_ylim()[0] == 0


def test_sweep_heatmap_near_equal_values_look_flat(drawn, tmp_path):
    figures_explore.sweep_heatmap(near_equal_points(), "pe_rows", "dram_gbps", tmp_path / "h.png")
    speedup, _linear, latency, energy = [ax for ax in drawn[0].axes if ax.images]
    norm = speedup.images[0].norm
    assert norm.vmax - norm.vmin >= 0.02 * 1.596 - 1e-9  # at least ±1% around the mean
    assert "all within 0.03%" in speedup.get_title() and "flat colour scale" in speedup.get_title()
    assert "all equal" in energy.get_title() and "all within" not in latency.get_title()
    cells = [t.get_text() for t in speedup.texts]
    assert cells == ["1.60×"] * 4


def roofline_layers():
    """Hand-made ops around the ridge: memory time just above, equal to and just below compute time."""
    return pd.DataFrame({
        "op": ["q_proj", "k_proj", "v_proj", "down_proj"], "compute_cycles": [1000, 1000, 1000, 4000],
        "memory_cycles": [1001, 1000, 999, 100], "sparse_cycles": [1100, 1050, 1040, 4200],
        "utilization": [0.1, 0.2, 0.3, 0.5], "dram_bytes": [1001 * 153.6, 1000 * 153.6, 999 * 153.6, 15360.0],
        "bound": ["memory", "compute", "compute", "compute"]})


def test_roofline_sides_match_bound(drawn, tmp_path):
    hw = {"name": "t", "pe_rows": 64, "pe_cols": 64, "dram_gbps": 76.8, "freq_mhz": 500.0}
    ridge = 4096 / 153.6
    layers = roofline_layers()
    figures.roofline(layers, hw, tmp_path / "r.png")
    ax = drawn[0].axes[0]
    ops = [c for c in ax.collections if len(c.get_offsets()) == len(layers)]
    xs = ops[0].get_offsets()[:, 0]  # the ops' markers (the next collection: their textbook intensity)
    assert list(xs < ridge) == list(layers.bound == "memory")
    intensity = ops[1].get_offsets()[:, 0]
    assert list(intensity) == pytest.approx(list(layers.utilization * 4096 * layers.sparse_cycles / layers.dram_bytes))
    assert "memory-bound matmuls (of the matmuls only): 1/4" in ax.get_title()


def test_roofline_of_a_simulated_run_matches_layers_csv(tmp_path):
    run = write_fake_run(tmp_path / "run")
    hw = load_hardware()
    simulate_run(run, hw, {"decode": 1, "prefill": 64})
    layers = pd.concat([pd.read_csv(run / "sim" / p / "layers.csv") for p in ("decode", "prefill")])
    hw_dict = {"pe_rows": hw.pe_rows, "pe_cols": hw.pe_cols, "dram_gbps": hw.dram_gbps, "freq_mhz": hw.freq_mhz}
    x, _ = figures.roofline_points(layers, hw_dict)
    ridge = hw.num_pes / hw.dram_bytes_per_cycle
    assert set(layers.bound) == {"memory", "compute"}  # both sides are exercised
    assert ((x < ridge) == (layers.bound == "memory")).all()
