import json

import pytest

from besa_hw.cli import main
from besa_hw.compare import candidates_from_profiles, candidates_from_runs, compare
from simulator import load_hardware
from simulator.synthetic import AllocationProfile, load_profile
from simulator.workload import OP_NAMES, ModelShape

from conftest import TINY, write_fake_run



def fake_run(path, sparsity, ppl, shape=TINY):
    return write_fake_run(path, sparsity, {"dense": 10.0, "pruned": ppl}, shape, row_spread=0.0,
                          seed=int(sparsity * 100))


def test_compare_runs_side_by_side(tmp_path):
    runs = [fake_run(tmp_path / "a", 0.3, 12.0), fake_run(tmp_path / "b", 0.7, 30.0)]
    cands = candidates_from_runs([str(r) for r in runs], {"decode": 1, "prefill": 64})
    table, alloc, layers = compare(cands, load_hardware())
    assert list(table.run) == ["a", "b"] and list(table.ppl) == [12.0, 30.0]
    assert table.speedup_linear_decode.iloc[1] > table.speedup_linear_decode.iloc[0] > 1.0
    # The whole step (attention, vector ops, head) dilutes what pruning gains (Amdahl).
    assert (table.speedup_e2e_decode < table.speedup_linear_decode).all() and (table.speedup_e2e_decode > 1.0).all()
    assert {f"speedup_decode_{op}" for op in OP_NAMES} <= set(table.columns)
    assert len(alloc) == 2 * 14 and set(layers.phase) == {"decode", "prefill"}
    assert set(layers.run) == {"a", "b"} and layers.name.str.startswith("model.").all()
    linear = layers[layers.kind == "linear"]
    assert linear.name.str.startswith("model.layers.").all() and len(linear) == 2 * 2 * 14
    assert set(linear[linear.phase == "prefill"].tokens) == {64}
    assert alloc[alloc.run == "b"].sparsity.mean() == pytest.approx(table.achieved_sparsity.iloc[1], abs=0.01)


def test_compare_refuses_runs_of_different_models(tmp_path):
    other = ModelShape("other", 64, 256, 2, 4, 2, 16)
    runs = [str(fake_run(tmp_path / "a", 0.5, 12.0)), str(fake_run(tmp_path / "b", 0.5, 12.0, other))]
    with pytest.raises(ValueError, match="different models.*intermediate_size"):
        candidates_from_runs(runs, {"decode": 1})
    with pytest.raises(ValueError, match="2 runs"):
        candidates_from_runs(runs, {"decode": 1}, names=["x"])


def test_compare_profiles_on_a_shape(tmp_path):
    even, skew = tmp_path / "even.json", tmp_path / "skew.json"
    even.write_text(json.dumps({op: 0.5 for op in OP_NAMES}))
    skew.write_text(json.dumps({"q_proj": 0.2, "k_proj": 0.2, "v_proj": 0.2, "o_proj": 0.2,
                                "gate_proj": 0.8, "up_proj": 0.8, "down_proj": 0.3}))
    empty = tmp_path / "uniform.json"
    empty.write_text("{}")  # no layer listed: every layer at the default sparsity
    cands = candidates_from_profiles("smollm2-135m", [str(even), str(skew), str(empty)],
                                     AllocationProfile(0.4), {"decode": 1}, blocks=2)
    table, alloc, _ = compare(cands, load_hardware())
    assert list(table.run) == ["even", "skew", "uniform"] and table.ppl.isna().all()
    skew_alloc = alloc[alloc.run == "skew"].set_index("op").sparsity
    assert skew_alloc["gate_proj"].mean() == pytest.approx(0.8, abs=0.01)
    assert alloc[alloc.run == "uniform"].sparsity.to_numpy() == pytest.approx(0.4, abs=0.01)


def test_profile_must_be_an_object(tmp_path):
    bad = tmp_path / "list.json"
    bad.write_text("[0.5]")
    with pytest.raises(ValueError, match="expected a JSON object .* got a list"):
        load_profile(str(bad))


def test_pareto_front_by_hand():
    import pandas as pd

    from besa_hw.report.explore import pareto_front

    x = pd.Series([1.0, 2.0, 3.0, 2.5])
    y = pd.Series([10.0, 12.0, 20.0, 11.0])
    # (2, 12) is beaten by (2.5, 11): faster and better
    assert pareto_front(x, y) == [0, 3, 2]


def test_compare_draws_the_pareto_figure_per_method(tiny_model_dir, text_file, tmp_path, capsys):
    import json

    import pandas as pd

    runs = []
    for name, extra in (("wanda-40", ["--method", "wanda", "--sparsity", "0.4"]),
                        ("wanda-60", ["--method", "wanda", "--sparsity", "0.6"]),
                        ("target", ["--method", "besa", "--target-speedup", "1.05"])):
        out = tmp_path / name
        assert main(["run", "--model", str(tiny_model_dir), "--nsamples", "4", "--seqlen", "32", "--calib",
                     str(text_file), "--eval-data", str(text_file), "--eval-seqlen", "64", "--eval-windows", "2",
                     "--no-report", "--phases", "decode", "--out", str(out), *extra]) == 0
        runs.append(str(out))
    assert json.loads((tmp_path / "target" / "manifest.json").read_text())["hw_target"]
    cmp_dir = tmp_path / "cmp"
    assert main(["compare", *runs, "--phases", "decode", "--out", str(cmp_dir)]) == 0
    assert "pareto.png" in capsys.readouterr().out and (cmp_dir / "pareto.png").stat().st_size > 10_000
    table = pd.read_csv(cmp_dir / "compare.csv")
    assert list(table.method) == ["wanda", "wanda", "besa (target besa-64x64)"]
    html = (cmp_dir / "report.html").read_text()
    md = (cmp_dir / "report.md").read_text()
    assert "besa-hw compare: 3 runs on besa-64x64" in md and "| command |" in md and "| commit |" in md
    assert "round-robin rows" in md and html.count("data:image/png;base64") == 3
    assert (table.dense_tokens_per_s_e2e_decode < table.tokens_per_s_e2e_decode).all()
