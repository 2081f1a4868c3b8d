"""Budget selection on given measured numbers (no timing in the asserts)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgepack.quantize.budget import Measurement, format_table, score, select

PARENT = Measurement("parent", "fp32", 90.0, 90_000_000, 40.0)


def m(name, acc, ms, size=23_000_000, error=None):
    return Measurement(name, "int8-dynamic", acc, size, ms, quantized_ops=12, error=error)


def test_fastest_within_budget_wins():
    best, rows = select(PARENT, [m("a", 89.5, 20.0), m("b", 89.2, 15.0), m("c", 88.0, 10.0)], 1.0)
    assert best.m.name == "b"  # c is faster but 2 points worse
    assert [r.status for r in rows] == ["eligible", "selected", "over budget"]
    assert best.latency_ratio == pytest.approx(15 / 40) and best.size_ratio == pytest.approx(90 / 23)


def test_never_slower_or_equal_to_parent():
    best, rows = select(PARENT, [m("fp16-on-cpu", 90.0, 55.0), m("same", 90.0, 40.0)], 1.0)
    assert best is None and {r.status for r in rows} == {"not faster than parent"}


def test_select_by_size_takes_the_smallest_within_budget_even_if_slower():
    cands = [m("slow-small", 89.5, 55.0, size=20_000_000), m("fast", 89.5, 15.0, size=23_000_000),
             m("tiny-bad", 80.0, 10.0, size=10_000_000), m("big", 90.0, 12.0, size=95_000_000)]
    best, rows = select(PARENT, cands, 1.0, by="size")
    assert best.m.name == "slow-small"
    assert [r.status for r in rows] == ["selected", "eligible", "over budget", "not smaller than parent"]
    best, _ = select(PARENT, cands, 1.0)  # the default still wants speed
    assert best.m.name == "big"  # the fastest within budget, whatever its size


def test_failed_and_nan_candidates_are_never_chosen():
    best, rows = select(PARENT, [m("broken", float("nan"), 5.0), m("err", 0, 0, error="ValueError: x")], 5.0)
    assert best is None
    assert rows[0].status == "over budget" and rows[1].status == "failed: ValueError: x"


def test_budget_boundary_is_inclusive_and_ties_pick_smaller():
    best, _ = select(PARENT, [m("big", 89.0, 20.0, size=30), m("small", 89.0, 20.0, size=20)], 1.0)
    assert best.m.name == "small"


def test_table_lists_every_candidate():
    _, rows = select(PARENT, [m("a", 89.5, 20.0), m("err", 0, 0, error="boom")], 1.0)
    text = format_table(PARENT, rows, 1.0)
    assert "parent (fp32)" in text and "2.00x" in text and "failed: boom" in text


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 100), st.floats(0.1, 100)), min_size=1, max_size=8), st.floats(0, 5))
def test_selection_invariants(cands, budget):
    ms = [m(f"c{i}", acc, ms) for i, (acc, ms) in enumerate(cands)]
    best, rows = select(PARENT, ms, budget)
    ok = [c for c in ms if PARENT.accuracy - c.accuracy <= budget + 1e-9 and c.latency_ms < PARENT.latency_ms]
    if not ok:
        assert best is None
        return
    assert PARENT.accuracy - best.m.accuracy <= budget + 1e-9  # never over budget
    assert best.m.latency_ms < PARENT.latency_ms  # never slower than the parent
    assert best.m.latency_ms == min(c.latency_ms for c in ok)  # the fastest eligible one
    assert sum(r.status == "selected" for r in rows) == 1


def test_score_accuracy_agreement_and_cosine():
    import numpy as np

    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    ref = np.array([[0.8, 0.2], [0.3, 0.7], [0.3, 0.7]])
    got = score("text-classification", probs, ref, [0, 1, 1])
    assert got["accuracy"] == pytest.approx(200 / 3) and got["min_cosine"] is None
    lo, hi = got["accuracy_ci95"]  # points, like the accuracy
    assert 0 <= lo <= got["accuracy"] <= hi <= 100
    assert score("text-classification", probs, ref, None)["accuracy"] == pytest.approx(200 / 3)  # agreement
    emb = np.array([[1.0, 0.0], [0.0, 2.0]])
    got = score("feature-extraction", emb, np.array([[1.0, 0.0], [1.0, 1.0]]), None)
    assert got["min_cosine"] == pytest.approx(math.sqrt(0.5))
    assert got["accuracy"] == pytest.approx(100 * (1 + math.sqrt(0.5)) / 2)
