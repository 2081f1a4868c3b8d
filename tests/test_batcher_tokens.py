"""Token-budget batch formation (plan_batches and the batcher's windows), oversized client batches split
across model calls in order, a text longer than the budget running alone, and the three stages on their
own threads. Plain callables: a text's "tokens" are its characters."""

import threading

import pytest
from edgepack.runtime.batcher import BatcherConfig, DynamicBatcher, Stages, plan_batches

from edgepack.errors import EdgepackError


def test_plan_batches_sorts_and_cuts_by_rows_and_padded_tokens():
    lengths = [5, 1, 9, 3, 7, 2, 100, 4]
    # sorted: 1 2 3 | 4 5 | 7 | 9 | 100 -- 3 rows at most, rows x longest <= 12, 100 alone
    assert plan_batches(lengths, max_batch=3, max_tokens=12) == [[1, 5, 3], [7, 0], [4], [2], [6]]
    assert plan_batches(lengths, max_batch=3) == [[1, 5, 3], [7, 0, 4], [2, 6]]  # rows only
    assert plan_batches([4, 4, 4, 4], max_batch=8, max_tokens=12) == [[0, 1, 2], [3]]  # stable, 3 x 4 = 12
    assert plan_batches([50, 50], max_batch=8, max_tokens=10) == [[0], [1]]  # each longer than the budget
    assert plan_batches([], max_batch=4, max_tokens=10) == []


def test_plan_batches_with_a_call_cost_minimises_padding_plus_calls():
    lengths = [10, 60, 12, 58, 11, 62, 9]
    # greedy: one batch padded to 62 (7 x 62 = 434 tokens); with 64 tokens per call: short and long apart
    assert plan_batches(lengths, max_batch=8, max_tokens=1000) == [[6, 0, 4, 2, 3, 1, 5]]
    assert plan_batches(lengths, max_batch=8, max_tokens=1000, call_tokens=64) == [[6, 0, 4, 2], [3, 1, 5]]
    # a huge call cost fills batches as far as the limits allow; a tiny one splits at every length step
    assert plan_batches(lengths, max_batch=8, max_tokens=1000, call_tokens=10**6) == [[6, 0, 4, 2, 3, 1, 5]]
    assert plan_batches([5, 5, 9], max_batch=8, call_tokens=1) == [[0, 1], [2]]
    assert plan_batches([5, 500, 6], max_batch=8, max_tokens=100, call_tokens=64) == [[0, 2], [1]]  # alone


class Recorder:
    """fn(texts) -> upper-cased texts; records every call and the thread it ran on; gate holds calls."""

    def __init__(self, gate=None):
        self.calls, self.threads, self.gate = [], set(), gate
        self.entered = threading.Event()

    def __call__(self, texts):
        self.entered.set()
        self.threads.add(threading.current_thread().name)
        if self.gate is not None:
            assert self.gate.wait(10)
        self.calls.append(list(texts))
        return [t.upper() for t in texts]


def held(cfg):
    """A batcher whose model is busy with a first request until ``gate`` opens."""
    gate = threading.Event()
    rec = Recorder(gate)
    b = DynamicBatcher(rec, cfg)
    first = b.submit(["first"])
    assert rec.entered.wait(5)
    return b, rec, gate, first


def test_a_queued_window_is_cut_by_the_token_budget():
    b, rec, gate, first = held(BatcherConfig(max_batch=4, max_tokens=12, max_wait_ms=0, length_window=8,
                                             call_tokens=0))
    with b:
        lengths = [6, 1, 3, 2, 12, 4, 5, 3]
        futs = [b.submit(["x" * n]) for n in lengths]
        gate.set()
        assert first.result(5) == ["FIRST"]
        assert [f.result(5) for f in futs] == [["X" * n] for n in lengths]
    # sorted 1 2 3 3 | 4 5 | 6 | 12: 4 rows max, rows x longest <= 12
    assert [[len(t) for t in c] for c in rec.calls[1:]] == [[1, 2, 3, 3], [4, 5], [6], [12]]
    assert b.stats.padded_tokens == 5 + 4 * 3 + 2 * 5 + 6 + 12
    assert b.stats.tokens == 5 + sum(lengths)


def test_an_oversized_client_batch_is_split_and_answered_in_order():
    rec = Recorder()
    texts = [f"t{i:03d}" + "y" * (i * 37 % 23) for i in range(200)]
    with DynamicBatcher(rec, BatcherConfig(max_batch=16, max_tokens=256, max_wait_ms=0)) as b:
        assert b.predict(texts, timeout=10) == [t.upper() for t in texts]
    assert len(rec.calls) >= 200 // 16 and all(len(c) <= 16 for c in rec.calls)
    assert all(len(c) * max(map(len, c)) <= 256 for c in rec.calls)
    assert sorted(t for c in rec.calls for t in c) == sorted(texts)  # every text ran once


def test_a_text_longer_than_the_budget_runs_alone_and_stalls_nothing():
    rec = Recorder()
    long = "z" * 500
    with DynamicBatcher(rec, BatcherConfig(max_batch=8, max_tokens=40, max_wait_ms=1)) as b:
        futs = [b.submit(["short one", long, "short two"]), b.submit([long]), b.submit(["alone?"])]
        assert [f.result(5) for f in futs] == [["SHORT ONE", long.upper(), "SHORT TWO"], [long.upper()],
                                               ["ALONE?"]]
        assert b.predict(["after"], timeout=5) == ["AFTER"]
    assert [long] in rec.calls and all(long not in c for c in rec.calls if len(c) > 1)


def test_stages_run_on_their_own_threads_and_a_bad_text_fails_its_request_only():
    seen = {}

    def encode(texts):
        seen.setdefault("encode", set()).add(threading.current_thread().name)
        if "bad" in texts:
            raise ValueError("cannot tokenize")
        return [t.split() for t in texts]  # "tokens": words

    def run(items):
        seen.setdefault("run", set()).add(threading.current_thread().name)
        return [len(words) for words in items]

    def post(out):
        seen.setdefault("post", set()).add(threading.current_thread().name)
        return [f"{n} words" for n in out]

    with DynamicBatcher(Stages(run=run, encode=encode, post=post), BatcherConfig(max_wait_ms=20)) as b:
        futs = [b.submit(["a b c", "d"]), b.submit(["bad"]), b.submit(["e f"])]
        assert futs[0].result(5) == ["3 words", "1 words"] and futs[2].result(5) == ["2 words"]
        with pytest.raises(ValueError, match="cannot tokenize"):
            futs[1].result(5)
    assert seen["encode"] == {"edgepack-tokenize"} and seen["run"] == {"edgepack-batcher-0"}
    assert seen["post"] == {"edgepack-post"}
    assert b.stats.tokens == 6


def test_queue_depth_counts_texts_until_the_model_takes_them():
    b, _, gate, first = held(BatcherConfig(max_batch=2, max_wait_ms=0, max_queue=5))
    with b:
        futs = [b.submit(["a", "b", "c"])]
        assert b.queue_depth == 3
        with pytest.raises(EdgepackError, match="queue full"):
            b.submit(["d", "e", "f"])
        gate.set()
        assert futs[0].result(5) == ["A", "B", "C"] and first.result(5) == ["FIRST"]
    assert b.queue_depth == 0


def test_bad_token_budget_is_a_clear_error():
    with pytest.raises(EdgepackError, match="max_tokens must be >= 0"):
        BatcherConfig(max_tokens=-1)


def test_worker_plan_keeps_workers_times_threads_within_the_cores():
    from edgepack.runtime.serve_workers import plan_workers

    assert plan_workers(0, None, 2) == (2, 1)  # auto: one single-threaded worker per core
    assert plan_workers(0, None, 16) == (8, 2)  # at most 8 workers; spare cores become threads
    assert plan_workers(0, 4, 16) == (4, 4)  # auto with threads given
    assert plan_workers(0, None, 8, cpu=False) == (1, 8)  # a GPU backend: one process
    assert plan_workers(3, None, 8) == (3, 2) and plan_workers(4, None, 2) == (4, 1)
    assert plan_workers(2, 3, 4) == (2, 3)  # both given: as given


@pytest.mark.parametrize("tokenize", ["thread", "model"])
def test_both_tokenize_modes_batch_by_tokens_and_isolate_a_bad_text(tokenize):
    calls = []

    def encode(texts):
        if "bad" in texts:
            raise ValueError("cannot tokenize")
        return [t.split() for t in texts]

    def run(items):
        calls.append([len(words) for words in items])
        return [" ".join(words).upper() for words in items]

    cfg = BatcherConfig(max_batch=8, max_tokens=6, max_wait_ms=30, tokenize=tokenize)
    with DynamicBatcher(Stages(run=run, encode=encode), cfg) as b:
        futs = [b.submit(["a b c d e f g"]), b.submit(["bad"]), b.submit(["x", "y z"])]
        assert futs[0].result(5) == ["A B C D E F G"] and futs[2].result(5) == ["X", "Y Z"]
        with pytest.raises(ValueError, match="cannot tokenize"):
            futs[1].result(5)
    assert [7] in calls  # 7 words > the budget of 6: alone
    assert all(len(c) * max(c) <= 6 for c in calls if len(c) > 1)
