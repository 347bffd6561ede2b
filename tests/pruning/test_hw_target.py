"""The hardware-targeted allocation's arithmetic (pruning/hw_target.py), on hand-made tables."""

import pytest
import torch

from pruning.hw_target import LatencyModel, hull


def _model(target=1.25, other=20.0):
    # one op type, two blocks: dense costs 100; the sparse path costs 150 at s=0, 100 at 0.5, 40 at 0.9
    # (an indexed format that loses to dense below 50%)
    return LatencyModel(target, (0.0, 0.5, 0.9), {"q_proj": 100.0}, {"q_proj": (150.0, 100.0, 40.0)}, other, 2,
                        "toy", "decode")


def test_hull_is_the_lower_convex_envelope():
    assert hull([0, 1, 2, 3], [3, 1, 0.5, 0.4]) == ([0, 1, 2, 3], [3, 1, 0.5, 0.4])  # convex already
    assert hull([0, 1, 2, 3], [0, 5, 1, 0]) == ([0, 3], [0, 0])  # both middle points lie above the chord
    # min(dense, sparse) = 100, 100, 40: flat then falling; its envelope is the chord from 0 to 0.9
    assert hull([0.0, 0.5, 0.9], [100.0, 100.0, 40.0]) == ([0.0, 0.9], [100.0, 40.0])


def test_budget_formats_and_relaxation():
    m = _model()
    assert m.dense_total == 20 + 2 * 100
    assert m.block_budget == pytest.approx((220 / 1.25 - 20) / 2)  # 78
    assert m.best("q_proj", 0.3) == ("dense", 100.0)  # the sparse path would cost 120
    assert m.best("q_proj", 0.7) == ("sparse", pytest.approx(70.0))
    s = torch.tensor(0.45, requires_grad=True)
    cost = m.relaxed("q_proj", s)
    assert float(cost.detach()) == pytest.approx(100 - 60 * 0.45 / 0.9)  # on the chord, below the flat exact cost
    cost.backward()
    assert float(s.grad) == pytest.approx(-60 / 0.9)  # a slope where the exact cost has none
    # the uniform start: relaxed cost 78 at s = 0.9 * 22 / 60
    assert m.uniform_sparsity(["q_proj"]) == pytest.approx(0.33, abs=1e-6)


def test_unreachable_target_is_refused():
    with pytest.raises(ValueError, match=r"out of reach on toy decode: at most 2\.200x"):
        _model(target=3.0)  # floor: 20 + 2 * 40 = 100 cycles
    with pytest.raises(ValueError, match="must be > 1"):
        _model(target=1.0)


def test_from_table_rows():
    rows = [{"op": "q_proj", "format": "dense", "sparsity": 0.0, "cycles": 100, "blocks": 2, "hardware": "toy",
             "phase": "decode"}]
    rows += [{"op": "q_proj", "format": "sparse", "sparsity": s, "cycles": c, "blocks": 2} for s, c in
             ((0.9, 40), (0.0, 150), (0.5, 100))]
    rows += [{"op": "other", "format": "dense", "sparsity": 0.0, "cycles": 20, "blocks": 2}]
    assert LatencyModel.from_rows(rows, 1.25) == _model()


def test_knapsack_picks_the_least_error_within_the_budget():
    from pruning.search import knapsack

    errors = {"a": [0.0, 1.0, 5.0], "b": [0.0, 2.0, 3.0]}
    costs = {"a": [10.0, 6.0, 2.0], "b": [10.0, 5.0, 4.0]}
    # budget 12: (a1, b1) costs 11 with error 3; (a2, b0) costs 12 with error 5; (a0, b2) costs 14
    assert knapsack(errors, costs, 12.0) == {"a": 1, "b": 1}
    assert knapsack(errors, costs, 20.0) == {"a": 0, "b": 0}
    assert knapsack(errors, costs, 7.0) == {"a": 2, "b": 2}  # the only fit
    with pytest.raises(ValueError, match="no allocation"):
        knapsack(errors, costs, 5.0)


def test_candidates_include_2_4_where_tabled():
    from pruning.search import Candidate, candidates

    m = LatencyModel(1.25, (0.0, 0.5, 0.9), {"q_proj": 100.0}, {"q_proj": (150.0, 100.0, 40.0)}, 20.0, 2, nm={"q_proj": 60.0})
    assert candidates(m, "q_proj") == [Candidate(0.0, "dense", 100.0), Candidate(0.5, "dense", 100.0),
                                       Candidate(0.9, "sparse", 40.0), Candidate(0.5, "2:4", 60.0)]
    assert m.cycles("q_proj", 0.5, "2:4") == 60.0 and m.cycles("q_proj", 0.7, "sparse") == pytest.approx(70.0)
