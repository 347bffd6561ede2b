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


def _systolic(target=1.25):
    # two op types, one block, no unstructured gain (a systolic array), 2:4 halves each op's cycles
    return LatencyModel(target, (0.0, 0.5, 0.9), {"q_proj": 100.0, "up_proj": 300.0},
                        {"q_proj": (100.0,) * 3, "up_proj": (300.0,) * 3}, 0.0, 1, "toy", "decode",
                        {"q_proj": 50.0, "up_proj": 150.0})


def test_max_norm_sgd_keeps_the_gradients_ratios():
    from pruning.hw_target import MaxNormSGD

    p = torch.nn.Parameter(torch.zeros(3))
    opt = MaxNormSGD([p], lr=0.25)
    p.grad = torch.tensor([4.0, -2.0, 1.0])
    opt.step()
    assert p.tolist() == pytest.approx([-0.25, 0.125, -0.0625])


def test_start_sparsity_is_zero_where_only_2_4_gains():
    m = _systolic()
    assert m.gains_nm("q_proj") and m.gains_nm("up_proj")
    assert m.uniform_sparsity(["q_proj", "up_proj"]) == 0.0  # unstructured buys nothing here
    # with no 2:4 path the envelope is flat and the start goes to the grid's end (the old behaviour)
    plain = LatencyModel(1.25, (0.0, 0.5, 0.9), {"q_proj": 100.0}, {"q_proj": (150.0, 100.0, 40.0)}, 0.0, 1)
    assert 0 < plain.uniform_sparsity(["q_proj"]) < 0.9


def _learner(model, target=0.0):
    from pruning.besa import AllocationLearner
    from pruning.hw_target import FormatGates
    from pruning.masks import nm_mask

    torch.manual_seed(0)
    weights = {"self_attn.q_proj.weight": torch.randn(8, 16), "mlp.up_proj.weight": torch.randn(24, 16)}
    scores = {k: w.abs() for k, w in weights.items()}
    inner = AllocationLearner(weights, scores, target, allocation="row", step=0.05)
    return FormatGates(inner, {k: nm_mask(s, 2, 4) for k, s in scores.items()}, lr=0.25), weights


def test_gates_are_scored_not_switched():
    learner, weights = _learner(_systolic())
    with torch.no_grad():
        learner.logits[:] = torch.tensor([1.0, -1.0])  # q_proj would be 2:4 by its gate, up_proj not
    inner, _ = learner.learner.weight_makers()
    plain = {k: make().detach() for k, make in inner.items()}
    makers, _ = learner.weight_makers()
    q = makers["self_attn.q_proj.weight"]()
    assert torch.equal(q, plain["self_attn.q_proj.weight"])  # the forward keeps the unstructured weight
    g = torch.randn_like(q)
    (q * g).sum().backward()
    two4 = weights["self_attn.q_proj.weight"] * learner.masks24["self_attn.q_proj.weight"]
    expected = (g * (two4 - plain["self_attn.q_proj.weight"])).sum() * 0.7311 * (1 - 0.7311)  # dL/dq * dq/da
    assert float(learner.logits.grad[0]) == pytest.approx(float(expected), rel=1e-3)


def test_rounding_takes_the_fewest_2_4_linears_that_meet_the_budget():
    from pruning.hw_target import round_to_budget

    m = _systolic(1.25)  # budget 400 * 0.8 = 320: up_proj as 2:4 (250) suffices, q_proj too would be 200
    learner, _ = _learner(m)
    with torch.no_grad():
        learner.logits[:] = torch.tensor([2.0, 1.0])  # q_proj ranked first, yet alone it saves too little
    calls = []
    counts, masks, formats, cycles = round_to_budget(learner, m, m.block_budget, lambda k: calls.append(k) or 0.0)
    assert formats == {"q_proj": "dense", "up_proj": "2:4"} and cycles == 250.0
    assert torch.equal(masks["up_proj"], learner.masks24["mlp.up_proj.weight"])
    assert masks["q_proj"].all() and all(int(c.sum()) == 0 for c in counts)
    assert calls == []  # one option: nothing to measure


def test_rounding_measures_the_error_of_each_option_where_unstructured_also_gains():
    from pruning.hw_target import round_to_budget

    # unstructured gains here as much as 2:4 does: every 2:4 prefix fits, and the measured error decides
    m = LatencyModel(1.25, (0.0, 0.5, 0.9), {"q_proj": 100.0, "up_proj": 300.0},
                     {"q_proj": (100.0, 50.0, 10.0), "up_proj": (300.0, 150.0, 30.0)}, 0.0, 1, "toy", "decode",
                     {"q_proj": 50.0, "up_proj": 150.0})
    learner, _ = _learner(m, target=0.2)
    seen = []

    def error(masks):
        seen.append({op: float((~k).float().mean()) for op, k in masks.items()})
        return -len(seen)  # the last option measured is the best

    counts, masks, formats, cycles = round_to_budget(learner, m, m.block_budget, error)
    assert len(seen) >= 2 and cycles <= m.block_budget + 1e-6
    assert {op: float((~k).float().mean()) for op, k in masks.items()} == seen[-1]


def test_final_counts_on_some_linears_only():
    learner, _ = _learner(_systolic(), target=0.3)
    counts = learner.learner.final_counts(0.5, only=[1])
    assert int(counts[0].sum()) == 0 and int(counts[1].sum()) == round(0.5 * 24 * 16)


def test_joint_lwc_with_2_4_gates_is_refused():
    from pruning import PruneConfig

    with pytest.raises(ValueError, match="lwc_stage=after"):
        PruneConfig(method="besa", hw_target=_systolic(), wbits=4, quantizer="lwc")
    PruneConfig(method="besa", hw_target=_systolic(), wbits=4, quantizer="lwc", lwc_stage="after")


def test_final_counts_reach_a_target_past_what_the_learned_rows_scale_to():
    learner, _ = _learner(_systolic(), target=0.0)
    with torch.no_grad():  # every row learned at exactly 0: scaling alone cannot reach any target
        for la in learner.learner.layers:
            la.logits.fill_(-1e4)
            la.logits[:, 0] = 0.0
    counts = learner.learner.final_counts(0.9, only=[0, 1])
    assert sum(int(c.sum()) for c in counts) == round(0.9 * (8 + 24) * 16)
    assert all(int(c.max()) <= 16 for c in counts)


def test_a_linear_below_its_break_even_keeps_its_weights():
    from pruning.besa import AllocationLearner
    from pruning.hw_target import round_to_budget

    # q_proj's sparse path only pays past 0.5; up_proj's pays from the start
    m = LatencyModel(1.25, (0.0, 0.5, 0.9), {"q_proj": 100.0, "up_proj": 300.0},
                     {"q_proj": (150.0, 100.0, 40.0), "up_proj": (300.0, 150.0, 30.0)}, 0.0, 1, "toy", "decode")
    torch.manual_seed(0)
    weights = {"self_attn.q_proj.weight": torch.randn(8, 16), "mlp.up_proj.weight": torch.randn(24, 16)}
    learner = AllocationLearner(weights, {k: w.abs() for k, w in weights.items()}, 0.3, step=0.05)
    with torch.no_grad():  # learned: q_proj lightly (0.1), up_proj heavily (0.6)
        for la, s in zip(learner.layers, (0.1, 0.6)):
            la.logits.fill_(-1e4)
            la.logits[:, round(s / 0.05)] = 0.0
    counts, masks, formats, cycles = round_to_budget(learner, m, m.block_budget, lambda k: 0.0)
    assert formats["q_proj"] == "dense" and int(counts[0].sum()) == 0 and masks["q_proj"].all()
    assert formats["up_proj"] == "sparse" and cycles <= m.block_budget


def test_a_gated_linears_unstructured_logits_still_learn():
    learner, _ = _learner(_systolic(), target=0.3)
    with torch.no_grad():
        learner.logits[:] = torch.tensor([1.0, 1.0])  # both gated to 2:4 (q = 0.73)
    makers, _ = learner.weight_makers()
    sum(make().pow(2).sum() for make in makers.values()).backward()
    # the soft mixture's gradient: (1 - q) of the reconstruction reaches the unstructured logits
    assert all(la.logits.grad is not None and la.logits.grad.abs().sum() > 0 for la in learner.layers)


def test_the_penalty_aims_at_the_envelopes_cycles_of_the_allocation_that_meets_the_budget():
    # a bitmap-like path: as dense at 0.1 (the index), then linear; the envelope is the chord from
    # (0, 100) to (0.9, 20), below the exact cost in between
    m = LatencyModel(1.25, (0.0, 0.1, 0.5, 0.9), {"q_proj": 100.0}, {"q_proj": (120.0, 100.0, 60.0, 20.0)}, 0.0, 1)
    start, aim = m.start(["q_proj"], m.block_budget)  # budget 80: exact uniform sparsity 0.3
    assert start == pytest.approx(0.3, abs=1e-6)
    assert aim == pytest.approx(100 - 0.3 * 80 / 0.9, abs=1e-4)  # 73.3: the chord at 0.3, not the budget
    # where only 2:4 pays, learning starts dense and aims at the budget itself
    sys = _systolic()
    assert sys.start(["q_proj", "up_proj"], sys.block_budget) == (0.0, sys.block_budget)


def test_gates_leave_the_allocations_penalty_as_without_them():
    from pruning.hw_target import latency_penalty

    m = LatencyModel(1.25, (0.0, 0.5, 0.9), {"q_proj": 100.0, "up_proj": 300.0},
                     {"q_proj": (100.0, 50.0, 10.0), "up_proj": (300.0, 150.0, 30.0)}, 0.0, 1, "toy", "decode",
                     {"q_proj": 45.0, "up_proj": 140.0})
    gated, _ = _learner(m, target=0.2)
    # aim 250: the allocation's relaxed cycles at its start (~0.2, about 320) are above it, so the gates
    # are pulled open (and at an aim the allocation alone meets, they would be pushed shut)
    penalty = latency_penalty(m, 5.0, ["q_proj", "up_proj"], 250.0)
    penalty(gated).backward()
    with_gates = [la.logits.grad.clone() for la in gated.learner.layers]
    plain = gated.learner
    for la in plain.layers:
        la.logits.grad = None
    penalty(plain).backward()
    for a, la in zip(with_gates, plain.layers):
        assert torch.allclose(a, la.logits.grad)  # the allocation's gradient is the one without gates
    assert gated.logits.grad is not None and torch.all(gated.logits.grad < 0)  # both gates pulled open
