"""DynamicBatcher against plain callables: ordering, batching, length grouping, failure isolation,
queue bound, timeouts and shutdown. No model needed."""

import threading
import time

import pytest
from edgepack.runtime.batcher import (
    BatcherClosedError,
    BatcherConfig,
    BatchTimeoutError,
    DynamicBatcher,
    QueueFullError,
)

from edgepack.errors import EdgepackError


class Recorder:
    """fn(texts) -> [upper-cased texts]; records every call; can be held closed with a gate."""

    def __init__(self, gate: threading.Event | None = None, poison: str | None = None):
        self.calls: list[list[str]] = []
        self.gate, self.poison = gate, poison
        self.entered = threading.Event()

    def __call__(self, texts):
        self.entered.set()
        if self.gate is not None:
            assert self.gate.wait(10)
        self.calls.append(list(texts))
        if self.poison is not None and self.poison in texts:
            raise ValueError("poisoned batch")
        return [t.upper() for t in texts]


def hold_first_call(rec, batcher):
    """Submit a request that occupies the only worker until the gate opens; returns its future."""
    fut = batcher.submit(["first"])
    assert rec.entered.wait(5)
    return fut


def test_concurrent_requests_are_batched_and_answered_in_order():
    rec = Recorder()
    with DynamicBatcher(rec, BatcherConfig(max_batch=8, max_wait_ms=50)) as b:
        reqs = [[f"r{i}-t{j}" + "x" * ((i * 7 + j * 3) % 11) for j in range(1 + i % 3)] for i in range(24)]
        futs = [b.submit(r) for r in reqs]
        for r, f in zip(reqs, futs):
            assert f.result(5) == [t.upper() for t in r]  # own results, own order
    sizes = [len(c) for c in rec.calls]
    assert sum(sizes) == sum(map(len, reqs))
    assert max(sizes) <= 8
    assert len(rec.calls) < len(reqs) / 2  # gathered, not one call per request
    assert b.stats.batches == len(rec.calls) and b.stats.texts == sum(sizes)


def test_deep_queue_is_grouped_by_length():
    gate = threading.Event()
    rec = Recorder(gate)
    with DynamicBatcher(rec, BatcherConfig(max_batch=4, max_wait_ms=0, length_window=4)) as b:
        first = hold_first_call(rec, b)
        lengths = [1, 30, 2, 29, 3, 28, 4, 27, 5, 26, 6, 25, 7, 24, 8, 23]  # alternating short and long
        futs = [b.submit(["x" * n]) for n in lengths]
        gate.set()
        assert first.result(5) == ["FIRST"]
        assert [f.result(5)[0] for f in futs] == ["X" * n for n in lengths]
    grouped = rec.calls[1:]
    assert [len(c) for c in grouped] == [4, 4, 4, 4]
    assert [sorted(map(len, c)) for c in grouped] == [
        [1, 2, 3, 4],
        [5, 6, 7, 8],
        [23, 24, 25, 26],
        [27, 28, 29, 30],
    ]


def test_failure_in_one_batch_fails_only_its_requests():
    gate = threading.Event()
    rec = Recorder(gate, poison="poison!!")
    with DynamicBatcher(rec, BatcherConfig(max_batch=2, max_wait_ms=0)) as b:
        first = hold_first_call(rec, b)
        ok = [b.submit(["aa"]), b.submit(["bb"])]  # length 2: one call
        bad = [b.submit(["poison!!"]), b.submit(["cccccccc"])]  # length 8: the failing call
        gate.set()
        assert first.result(5) == ["FIRST"]
        assert [f.result(5) for f in ok] == [["AA"], ["BB"]]
        for f in bad:
            with pytest.raises(ValueError, match="poisoned batch"):
                f.result(5)
        assert b.predict(["after"]) == ["AFTER"]  # the worker survived
    assert b.stats.failed_batches == 1


def test_wrong_result_count_is_an_error_for_that_batch():
    with DynamicBatcher(lambda texts: texts[:-1], BatcherConfig(max_wait_ms=0)) as b:
        with pytest.raises(RuntimeError, match="returned 0 results for 1 texts"):
            b.predict(["a"])


def test_queue_bound_rejects_then_recovers():
    gate = threading.Event()
    rec = Recorder(gate)
    with DynamicBatcher(rec, BatcherConfig(max_batch=4, max_wait_ms=0, max_queue=6)) as b:
        first = hold_first_call(rec, b)
        queued = [b.submit(["a", "b"]) for _ in range(3)]  # 6 texts: exactly the bound
        assert b.queue_depth == 6
        t0 = time.perf_counter()
        with pytest.raises(QueueFullError, match="queue full .*bound 6"):
            b.submit(["one more"])
        assert time.perf_counter() - t0 < 0.5  # rejected at once, not after waiting
        assert b.stats.rejected == 1
        gate.set()
        assert first.result(5) == ["FIRST"] and all(f.result(5) == ["A", "B"] for f in queued)
        assert b.predict(["back"]) == ["BACK"] and b.queue_depth == 0


def test_timeout_and_the_timed_out_request_is_never_run():
    gate = threading.Event()
    rec = Recorder(gate)
    with DynamicBatcher(rec, BatcherConfig(max_wait_ms=0)) as b:
        first = hold_first_call(rec, b)
        with pytest.raises(BatchTimeoutError, match="no answer within 0.05 s"):
            b.predict(["late"], timeout=0.05)
        gate.set()
        first.result(5)
        assert b.predict(["next"]) == ["NEXT"]
    assert all("late" not in c for c in rec.calls)


def test_single_request_waits_at_most_max_wait():
    with DynamicBatcher(Recorder(), BatcherConfig(max_batch=32, max_wait_ms=30)) as b:
        t0 = time.perf_counter()
        assert b.predict(["alone"]) == ["ALONE"]
        assert time.perf_counter() - t0 < 1.0


def test_close_drains_the_queue_then_refuses():
    gate = threading.Event()
    rec = Recorder(gate)
    b = DynamicBatcher(rec, BatcherConfig(max_batch=2, max_wait_ms=0))
    first = hold_first_call(rec, b)
    queued = [b.submit([f"q{i}"]) for i in range(5)]
    threading.Timer(0.05, gate.set).start()
    b.close(drain=True, timeout=5)
    assert first.result(0) == ["FIRST"]
    assert [f.result(0) for f in queued] == [[f"Q{i}"] for i in range(5)]
    with pytest.raises(BatcherClosedError):
        b.submit(["x"])


def test_close_without_drain_fails_queued_requests():
    gate = threading.Event()
    rec = Recorder(gate)
    b = DynamicBatcher(rec, BatcherConfig(max_wait_ms=0))
    first = hold_first_call(rec, b)
    queued = b.submit(["q"])
    threading.Timer(0.05, gate.set).start()
    b.close(drain=False, timeout=5)
    assert first.result(0) == ["FIRST"]
    with pytest.raises(BatcherClosedError, match="shut down"):
        queued.result(0)


def test_batching_off_runs_each_request_alone():
    gate = threading.Event()
    rec = Recorder(gate)
    with DynamicBatcher(rec, BatcherConfig(max_batch=32, batching=False)) as b:
        first = hold_first_call(rec, b)
        futs = [b.submit([f"a{i}", f"b{i}"]) for i in range(4)]
        gate.set()
        first.result(5)
        assert [f.result(5) for f in futs] == [[f"A{i}", f"B{i}"] for i in range(4)]
    assert rec.calls[1:] == [[f"a{i}", f"b{i}"] for i in range(4)]


def test_several_worker_threads_share_the_queue():
    active, peak, lock = [0], [0], threading.Lock()

    def slow(texts):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.05)
        with lock:
            active[0] -= 1
        return texts

    with DynamicBatcher(slow, BatcherConfig(max_batch=1, max_wait_ms=0, workers=3)) as b:
        futs = [b.submit([str(i)]) for i in range(6)]
        assert [f.result(5) for f in futs] == [[str(i)] for i in range(6)]
    assert peak[0] >= 2


@pytest.mark.parametrize(
    "kw", [{"max_batch": 0}, {"max_queue": 0}, {"workers": 0}, {"timeout_s": 0}, {"max_wait_ms": -1}]
)
def test_bad_config_is_a_clear_error(kw):
    with pytest.raises(EdgepackError, match="batcher"):
        BatcherConfig(**kw)


def test_empty_request_is_refused():
    with DynamicBatcher(Recorder()) as b, pytest.raises(EdgepackError, match="no texts"):
        b.submit([])
