"""In-process dynamic batching: many small concurrent requests become a few model calls.

``DynamicBatcher`` wraps any callable ``fn(texts: list[str]) -> list[result]`` (normally
``Predictor.predict``). Callers submit a request (a list of texts) and get a
``concurrent.futures.Future`` for that request's results, in the request's order. Worker threads

1. wait for the first request, then gather more until ``max_batch`` texts are waiting or
   ``max_wait_ms`` has passed since the first one arrived;
2. when the queue is deep, also take what is already waiting, up to ``length_window`` batches,
   sort all gathered texts by length and cut them into ``max_batch``-sized model calls, so texts of
   similar length share a call and little work goes into padding;
3. answer each request as soon as all its texts are done.

Reliability: the queue holds at most ``max_queue`` texts (``submit`` raises ``QueueFullError`` past
it, so memory stays bounded); a request waits at most ``timeout_s`` (``BatchTimeoutError``); an
exception inside one model call fails only the requests that had texts in that call.

Used without HTTP on a device::

    with DynamicBatcher(Predictor.open("out/onnx").predict, BatcherConfig(max_batch=16)) as b:
        results = b.predict(["great film"])          # thread-safe, call from many threads
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any

from edgepack.errors import EdgepackError

BatchFn = Callable[[list[str]], Sequence[Any]]


class QueueFullError(EdgepackError):
    """The batcher's queue is at its bound; retry later."""


class BatchTimeoutError(EdgepackError):
    """A request was not answered within its timeout."""


class BatcherClosedError(EdgepackError):
    """The batcher is shutting down and takes no new requests."""


@dataclass(frozen=True)
class BatcherConfig:
    max_batch: int = 32  # texts per model call
    max_wait_ms: float = 5.0  # how long the first waiting request may wait for company
    max_queue: int = 1024  # texts waiting (not yet taken by a worker); more -> QueueFullError
    timeout_s: float = 30.0  # per request, from submit to answer
    workers: int = 1  # threads calling fn concurrently (ONNX Runtime sessions are thread-safe)
    length_window: int = 4  # with a deep queue, gather up to this many batches and sort them by length
    batching: bool = True  # False: every request is its own model call (a baseline to compare with)

    def __post_init__(self) -> None:
        for name in ("max_batch", "max_queue", "workers", "length_window"):
            if int(getattr(self, name)) < 1:
                raise EdgepackError(f"batcher {name} must be >= 1, got {getattr(self, name)}")
        if self.max_wait_ms < 0 or self.timeout_s <= 0:
            raise EdgepackError("batcher max_wait_ms must be >= 0 and timeout_s > 0")


@dataclass
class BatchStats:
    """Counters a server exports; updated under the batcher's lock."""

    batches: int = 0
    texts: int = 0
    failed_batches: int = 0
    rejected: int = 0


class _Request:
    __slots__ = ("enqueued", "future", "pending", "results", "texts")

    def __init__(self, texts: list[str]):
        self.texts = texts
        self.future: Future = Future()
        self.results: list[Any] = [None] * len(texts)
        self.pending = len(texts)
        self.enqueued = time.perf_counter()


class DynamicBatcher:
    """Gather concurrent requests into length-grouped batches for ``fn``; see the module docstring."""

    def __init__(
        self,
        fn: BatchFn,
        cfg: BatcherConfig = BatcherConfig(),
        on_batch: Callable[[int, float], None] | None = None,
    ):
        """``on_batch(batch_size, seconds)`` is called after every model call (for metrics)."""
        self.fn = fn
        self.cfg = cfg
        self.on_batch = on_batch
        self.stats = BatchStats()
        self._queue: collections.deque[_Request] = collections.deque()
        self._queued_texts = 0
        self._cond = threading.Condition()
        self._closed = False
        self._threads = [
            threading.Thread(target=self._work, name=f"edgepack-batcher-{i}", daemon=True)
            for i in range(cfg.workers)
        ]
        for t in self._threads:
            t.start()

    # --- client side ------------------------------------------------------------------------
    @property
    def queue_depth(self) -> int:
        """Texts waiting for a worker."""
        return self._queued_texts

    def submit(self, texts: Sequence[str]) -> Future:
        """Queue one request; the future resolves to its results (same order) or an exception.

        Raises QueueFullError when the queue would exceed ``max_queue`` texts, BatcherClosedError
        after ``close``. A request larger than ``max_queue`` can never fit and is refused too.
        """
        texts = list(texts)
        if not texts:
            raise EdgepackError("no texts given")
        req = _Request(texts)
        with self._cond:
            if self._closed:
                raise BatcherClosedError("the batcher is shutting down")
            if self._queued_texts + len(texts) > self.cfg.max_queue:
                self.stats.rejected += 1
                raise QueueFullError(
                    f"queue full ({self._queued_texts} texts waiting, bound {self.cfg.max_queue}); retry later"
                )
            self._queue.append(req)
            self._queued_texts += len(texts)
            self._cond.notify()
        return req.future

    def predict(self, texts: Sequence[str], timeout: float | None = None) -> list[Any]:
        """Blocking helper: submit and wait (at most ``timeout`` or the config's ``timeout_s``)."""
        fut = self.submit(texts)
        try:
            return fut.result(timeout=self.cfg.timeout_s if timeout is None else timeout)
        except FutureTimeout:
            fut.cancel()  # still queued: the worker will skip it
            raise BatchTimeoutError(f"no answer within {timeout or self.cfg.timeout_s:g} s") from None

    def close(self, drain: bool = True, timeout: float | None = None) -> None:
        """Stop taking requests; with ``drain`` finish the queued ones, else fail them."""
        with self._cond:
            self._closed = True
            if not drain:
                while self._queue:
                    req = self._queue.popleft()
                    self._queued_texts -= len(req.texts)
                    if req.future.set_running_or_notify_cancel():
                        req.future.set_exception(BatcherClosedError("the batcher shut down"))
            self._cond.notify_all()
        for t in self._threads:
            t.join(timeout)

    def __enter__(self) -> DynamicBatcher:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- worker side ------------------------------------------------------------------------
    def _take(self, n_texts: int) -> list[_Request]:
        """Pop queued requests (under the lock) until about ``n_texts`` texts; skip cancelled ones."""
        taken, count = [], 0
        while self._queue and (count == 0 or count + len(self._queue[0].texts) <= n_texts):
            req = self._queue.popleft()
            self._queued_texts -= len(req.texts)
            if req.future.set_running_or_notify_cancel():  # False: the caller gave up (timeout)
                taken.append(req)
                count += len(req.texts)
        return taken

    def _gather(self) -> list[_Request] | None:
        """Block until there is work; return the gathered requests, or None when closed and empty."""
        cfg = self.cfg
        with self._cond:
            while not self._queue:
                if self._closed:
                    return None
                self._cond.wait()
            if not cfg.batching:
                return self._take(1)  # one request, however many texts it has
            deadline = self._queue[0].enqueued + cfg.max_wait_ms / 1000
            while self._queued_texts < cfg.max_batch and not self._closed:
                left = deadline - time.perf_counter()
                if left <= 0 or not self._queue:
                    break
                self._cond.wait(left)
            return self._take(cfg.max_batch * cfg.length_window)

    def _work(self) -> None:
        while True:
            reqs = self._gather()
            if reqs is None:
                return
            if reqs:
                self._run(reqs)

    def _run(self, reqs: list[_Request]) -> None:
        # (request index, position in request, text), shortest first; len() in characters is a
        # cheap stand-in for token count that keeps similar lengths together.
        items = [(r, i, t) for r, req in enumerate(reqs) for i, t in enumerate(req.texts)]
        if self.cfg.batching:
            items.sort(key=lambda it: len(it[2]))
        failed: set[int] = set()
        step = self.cfg.max_batch if self.cfg.batching else len(items)
        for start in range(0, len(items), step):
            chunk = [it for it in items[start : start + step] if it[0] not in failed]
            if not chunk:
                continue
            t0 = time.perf_counter()
            try:
                out = self.fn([t for _, _, t in chunk])
                if len(out) != len(chunk):
                    raise RuntimeError(f"model returned {len(out)} results for {len(chunk)} texts")
            except Exception as e:  # noqa: BLE001 - any model failure fails just this call's requests
                with self._cond:
                    self.stats.failed_batches += 1
                for r in {r for r, _, _ in chunk} - failed:
                    failed.add(r)
                    reqs[r].future.set_exception(e)
                continue
            finally:
                if self.on_batch is not None:
                    self.on_batch(len(chunk), time.perf_counter() - t0)
            with self._cond:
                self.stats.batches += 1
                self.stats.texts += len(chunk)
            for (r, i, _), res in zip(chunk, out):
                req = reqs[r]
                req.results[i] = res
                req.pending -= 1
                if req.pending == 0:
                    req.future.set_result(req.results)
