"""The one timing protocol (edgepack.timing): call order, settle calls, sync, summaries. No timed asserts."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from edgepack.errors import EdgepackError
from edgepack.timing import TimingProtocol, speedups, summarize_ms, time_interleaved


def _recorder(log: list, name: str):
    return lambda batch: log.append((name, batch[0]))


def test_targets_take_turns_over_the_same_batches():
    log: list[tuple[str, str]] = []
    batches = [[f"t{i}"] for i in range(5)]
    runs = {"A": _recorder(log, "A"), "B": _recorder(log, "B")}
    proto = TimingProtocol(warmup=1, repeats=2, interleave=3, settle=0)
    t = time_interleaved(runs, batches, proto)
    assert t.items == 10 and len(t.samples_ms["A"]) == len(t.samples_ms["B"]) == 10
    timed = log[2:]  # after one warm-up call each
    assert "".join(n for n, _ in timed) == "AAABBB" + "BBBAAA" + "AAABBB" + "BA"  # order rotates every turn
    for name in "AB":  # each target walked the batches in order, twice
        assert [b for n, b in timed if n == name] == [f"t{i}" for i in range(5)] * 2

    # settle=1: every turn starts with one untimed call on the turn's first batch; timed samples unchanged
    log.clear()
    t = time_interleaved(runs, batches, replace(proto, settle=1))
    assert len(t.samples_ms["A"]) == len(t.samples_ms["B"]) == 10
    assert "".join(n for n, _ in log[2:]) == "AAAABBBB" + "BBBBAAAA" + "AAAABBBB" + "BBAA"
    assert log[2:4] == [("A", "t0"), ("A", "t0")]


def test_one_target_gets_no_settle_calls_and_min_seconds_adds_whole_passes():
    log: list = []
    t = time_interleaved({"A": _recorder(log, "A")}, [["x"], ["y"]], TimingProtocol(warmup=2, repeats=1))
    assert [b for _, b in log] == ["x", "y", "x", "y"]  # 2 warm-up + 2 timed, nothing else
    assert t.summary("A")["n"] == 2
    log.clear()
    t = time_interleaved({"A": _recorder(log, "A")}, [["x"], ["y"]], TimingProtocol(0, 1, min_seconds=0.02))
    assert len(log) % 2 == 0 and len(log) >= 2  # extra passes are whole, so every batch keeps its weight
    assert t.items == len(log)


def test_sync_runs_after_every_call_per_target():
    events: list[str] = []
    runs = {"gpu": lambda b: events.append("run-gpu"), "cpu": lambda b: events.append("run-cpu")}
    time_interleaved(runs, [[1]], TimingProtocol(warmup=1, repeats=2, interleave=2, settle=0),
                     sync={"gpu": lambda: events.append("sync")})
    gpu_runs = [i for i, e in enumerate(events) if e == "run-gpu"]
    assert len(gpu_runs) == 3 and all(events[i + 1] == "sync" for i in gpu_runs)
    assert events.count("sync") == 3  # the cpu target has no sync
    events.clear()
    time_interleaved({"a": lambda b: events.append("run")}, [[1]], TimingProtocol(0, 2), sync=lambda: events.append("s"))
    assert events == ["run", "s", "run", "s"]


def test_summaries_throughput_and_speedups():
    s = summarize_ms([1.0, 2.0, 3.0, 4.0], items=40)  # 40 texts in 10 ms
    assert s["p50_ms"] == pytest.approx(2.5) and s["mean_ms"] == pytest.approx(2.5) and s["n"] == 4
    assert s["p50_ms"] <= s["p90_ms"] <= s["p99_ms"] <= 4.0
    assert s["texts_per_s"] == pytest.approx(4000.0)
    ratios = speedups({"base": {"p50_ms": 8.0}, "fast": {"p50_ms": 2.0}, "zero": {"p50_ms": 0.0}}, "base")
    assert ratios == {"base": 1.0, "fast": 4.0, "zero": None}
    t = time_interleaved({"a": len, "b": len}, [["x", "y"]], TimingProtocol(0, 3, settle=0))
    assert t.items == 6 and t.speedups("a")["a"] == 1.0
    assert t.summaries()["b"]["texts_per_s"] > 0
    with pytest.raises(ValueError, match="no timing samples"):
        summarize_ms([], 0)


def test_size_counts_items_of_any_batch_type():
    batches = [{"input_ids": np.zeros((4, 7))}, {"input_ids": np.zeros((2, 3))}]
    t = time_interleaved({"m": lambda enc: None}, batches, TimingProtocol(0, 2),
                         size=lambda enc: enc["input_ids"].shape[0])
    assert t.items == 12


def test_protocol_and_input_errors():
    with pytest.raises(EdgepackError, match="repeats >= 1"):
        TimingProtocol(repeats=0)
    with pytest.raises(EdgepackError, match="settle >= 0"):
        TimingProtocol(settle=-1)
    with pytest.raises(EdgepackError, match="nothing to time"):
        time_interleaved({}, [[1]])
    with pytest.raises(EdgepackError, match="nothing to time"):
        time_interleaved({"a": len}, [])


def test_torch_models_are_timed_in_inference_mode(tiny_bert):
    torch = pytest.importorskip("torch")
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from edgepack.timing import time_torch_models, torch_sync

    assert torch_sync(torch.device("cpu")) is None and torch_sync("cpu") is None
    model = AutoModelForSequenceClassification.from_pretrained(tiny_bert)
    tok = AutoTokenizer.from_pretrained(tiny_bert)
    seen = []
    model.register_forward_hook(lambda m, i, o: seen.append(torch.is_inference_mode_enabled()))
    enc = dict(tok(["a b c", "d"], padding=True, return_tensors="pt"))
    t = time_torch_models({"m": model, "again": model}, [enc], TimingProtocol(warmup=1, repeats=2))
    assert t.items == 4 and t.summary("m")["n"] == 2 and all(seen) and not model.training
