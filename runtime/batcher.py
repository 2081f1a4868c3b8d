"""In-process dynamic batching: many small concurrent requests become a few model calls, formed by a
token budget that counts padding.

``DynamicBatcher`` runs three stages on their own threads, linked by bounded queues (as Infinity does):

1. **tokenize**: one thread takes submitted requests and encodes their texts (``Stages.encode``, e.g.
   ``Predictor.encode``), so the model never waits for the tokenizer;
2. **model**: a thread waits for the first encoded text, gathers more until ``max_batch`` texts or
   ``max_tokens`` tokens are waiting or ``max_wait_ms`` has passed since the first one was submitted, takes
   a look-ahead window (up to ``length_window`` batches' worth), sorts it by token length and cuts it into
   batches with :func:`plan_batches`: at most ``max_batch`` rows and ``rows x longest row <= max_tokens``
   (the padded tensor the model really runs), cut where padding would cost more than another call
   (``call_tokens``). A text longer than the budget runs alone, never stalls (``tokenize="model"``:
   the model thread encodes each window itself, one thread fewer at work);
3. **post**: a thread turns each batch's model output into per-text results (``Stages.post``, e.g.
   ``Predictor.to_results``) and answers a request once all its texts are done.

The batcher works on texts, not requests: a client batch of 200 texts becomes 200 items that share model
calls with other clients' texts by length, and is answered as one list in its order.

``DynamicBatcher(fn)`` also wraps a plain callable ``fn(texts) -> list[result]``: then the "tokens" of a
text are its characters. Reliability: at most ``max_queue`` texts wait, from submit until the model takes
them (``submit`` raises ``QueueFullError`` past it, so memory stays bounded); a request waits at most
``timeout_s`` (``BatchTimeoutError``); a request cancelled before the model took it never runs; an
exception in one model call fails only the requests that had texts in it.

Used without HTTP on a device::

    pred = Predictor.open("out/onnx", batch_size=32)
    with DynamicBatcher(Stages.of_predictor(pred), BatcherConfig(max_batch=32, max_tokens=4096)) as b:
        results = b.predict(["great film"])          # thread-safe, call from many threads
"""

from __future__ import annotations

import collections
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any

from edgepack.runtime.batch_plan import DEFAULT_CALL_TOKENS, DEFAULT_MAX_TOKENS, plan_batches

from edgepack.errors import EdgepackError

__all__ = ["DEFAULT_CALL_TOKENS", "DEFAULT_MAX_TOKENS", "BatcherConfig", "DynamicBatcher", "Stages", "plan_batches"]

BatchFn = Callable[[list[str]], Sequence[Any]]
TOKENIZE_CHUNK = 256  # texts per tokenizer call: big enough for its thread pool, small enough to pipeline


class QueueFullError(EdgepackError):
    """The batcher's queue is at its bound; retry later."""


class BatchTimeoutError(EdgepackError):
    """A request was not answered within its timeout."""


class BatcherClosedError(EdgepackError):
    """The batcher is shutting down and takes no new requests."""


@dataclass(frozen=True)
class BatcherConfig:
    max_batch: int = 32  # rows (texts) per model call
    max_tokens: int = DEFAULT_MAX_TOKENS  # rows x longest row per model call (padding counts); 0: no token limit
    call_tokens: int = DEFAULT_CALL_TOKENS  # a model call's fixed cost in tokens; 0: fill batches greedily
    max_wait_ms: float = 5.0  # how long the first waiting text may wait for company
    max_queue: int = 1024  # texts waiting (not yet taken by the model); more -> QueueFullError
    timeout_s: float = 30.0  # per request, from submit to answer
    workers: int = 1  # model threads calling the model concurrently (ONNX Runtime sessions are thread-safe)
    length_window: int = 4  # look-ahead: gather up to this many batches' worth, sort them by length
    batching: bool = True  # False: every request is its own model call (a baseline to compare with)
    # "thread": encode on the tokenizer thread as requests arrive; "model": the model thread encodes each
    # window in one call before cutting it (one thread fewer at work: for machines whose cores are all busy)
    tokenize: str = "thread"

    def __post_init__(self) -> None:
        for name in ("max_batch", "max_queue", "workers", "length_window"):
            if int(getattr(self, name)) < 1:
                raise EdgepackError(f"batcher {name} must be >= 1, got {getattr(self, name)}")
        if self.call_tokens < 0:
            raise EdgepackError(f"batcher call_tokens must be >= 0, got {self.call_tokens}")
        if self.max_tokens < 0:
            raise EdgepackError(f"batcher max_tokens must be >= 0 (0: no token limit), got {self.max_tokens}")
        if self.tokenize not in ("thread", "model"):
            raise EdgepackError(f"batcher tokenize must be 'thread' or 'model', got {self.tokenize!r}")
        if self.max_wait_ms < 0 or self.timeout_s <= 0:
            raise EdgepackError("batcher max_wait_ms must be >= 0 and timeout_s > 0")


@dataclass(frozen=True)
class Stages:
    """What the batcher calls: ``encode(texts) -> items`` on the tokenizer thread (None: the texts are the
    items), ``length(item)`` its tokens, ``run(items) -> output`` on the model thread and ``post(output) ->
    one result per item`` on the post thread (None: ``run`` already returns them)."""

    run: Callable[[list], Any]
    encode: Callable[[list[str]], Sequence[Any]] | None = None
    length: Callable[[Any], int] = len
    post: Callable[[Any], Sequence[Any]] | None = None

    @classmethod
    def of_predictor(cls, pred: Any) -> Stages:
        """A Predictor's tokenizer, model call and result formatting as the three stages."""
        return cls(run=pred.infer_encoded, encode=pred.encode, post=pred.to_results)


@dataclass
class BatchStats:
    """Counters a server exports; updated under the batcher's lock."""

    batches: int = 0
    texts: int = 0
    failed_batches: int = 0
    rejected: int = 0
    tokens: int = 0  # real tokens run (characters for plain callables)
    padded_tokens: int = 0  # rows x longest row, summed over model calls: what the model computed


_NEW, _RUNNING, _DEAD = 0, 1, 2


class _Request:
    __slots__ = ("enqueued", "failed", "future", "pending", "results", "state", "texts", "tokens")

    def __init__(self, texts: list[str]):
        self.texts = texts
        self.future: Future = Future()
        self.results: list[Any] = [None] * len(texts)
        self.pending = len(texts)
        self.tokens = 0  # its texts' lengths, summed as they finish
        self.enqueued = time.perf_counter()
        self.state = _NEW  # _RUNNING once the model took one of its texts; _DEAD: cancelled before that
        self.failed = False


class _Item:
    __slots__ = ("encoded", "index", "length", "req")

    def __init__(self, req: _Request, index: int, encoded: Any, length: int):
        self.req, self.index, self.encoded, self.length = req, index, encoded, length


class DynamicBatcher:
    """Tokenize, batch by tokens and run concurrent requests; see the module docstring."""

    def __init__(
        self,
        fn: BatchFn | Stages,
        cfg: BatcherConfig = BatcherConfig(),
        on_batch: Callable[[int, float], None] | None = None,
    ):
        """``fn``: a callable on lists of texts, or :class:`Stages`. ``on_batch(batch_size, seconds)`` is
        called after every model call (for metrics)."""
        self.stages = fn if isinstance(fn, Stages) else Stages(run=fn)
        self.cfg = cfg
        self.on_batch = on_batch
        self.stats = BatchStats()
        self._inbound: collections.deque[_Request] = collections.deque()  # submitted, not yet tokenized
        self._ready: collections.deque[_Item] = collections.deque()  # tokenized, waiting for the model
        self._ready_tokens = 0
        self._tokenizing = 0  # texts inside the tokenizer right now
        self._queued_texts = 0  # inbound + tokenizing + ready: what max_queue bounds
        self._cond = threading.Condition()
        self._post: queue.SimpleQueue = queue.SimpleQueue()
        self._closed = False
        self._tokenizer = threading.Thread(target=self._tokenize_loop, name="edgepack-tokenize", daemon=True)
        self._models = [threading.Thread(target=self._model_loop, name=f"edgepack-batcher-{i}", daemon=True)
                        for i in range(cfg.workers)]
        self._poster = threading.Thread(target=self._post_loop, name="edgepack-post", daemon=True)
        for t in (self._tokenizer, *self._models, self._poster):
            t.start()

    # --- client side ------------------------------------------------------------------------
    @property
    def queue_depth(self) -> int:
        """Texts submitted and not yet taken by the model."""
        return self._queued_texts

    def submit(self, texts: Sequence[str]) -> Future:
        """Queue one request; the future resolves to its results (same order) or an exception. Once done,
        the future's ``tokens`` is the sum of its texts' lengths as batched (tokens, truncated; characters
        for a plain callable).

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
            self._inbound.append(req)
            self._queued_texts += len(texts)
            self._cond.notify_all()
        return req.future

    def predict(self, texts: Sequence[str], timeout: float | None = None) -> list[Any]:
        """Blocking helper: submit and wait (at most ``timeout`` or the config's ``timeout_s``)."""
        fut = self.submit(texts)
        try:
            return fut.result(timeout=self.cfg.timeout_s if timeout is None else timeout)
        except FutureTimeout:
            fut.cancel()  # not yet taken by the model: it never runs
            raise BatchTimeoutError(f"no answer within {timeout or self.cfg.timeout_s:g} s") from None

    def close(self, drain: bool = True, timeout: float | None = None) -> None:
        """Stop taking requests; with ``drain`` finish the queued ones, else fail them."""
        with self._cond:
            self._closed = True
            if not drain:
                reqs = list(self._inbound) + list(dict.fromkeys(it.req for it in self._ready))
                self._queued_texts -= sum(len(r.texts) for r in self._inbound) + len(self._ready)
                self._inbound.clear()
                self._ready.clear()
                self._ready_tokens = 0
                self._post.put(("fail", reqs, BatcherClosedError("the batcher shut down")))
            self._cond.notify_all()
        self._tokenizer.join(timeout)
        for t in self._models:
            t.join(timeout)
        if not any(t.is_alive() for t in self._models):
            self._post.put(None)
            self._poster.join(timeout)

    def __enter__(self) -> DynamicBatcher:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- stage 1: tokenize ------------------------------------------------------------------
    def _tokenize_loop(self) -> None:
        while True:
            with self._cond:
                while not self._inbound:
                    if self._closed:
                        return
                    self._cond.wait()
                reqs, n = [], 0
                while self._inbound and (not reqs or n + len(self._inbound[0].texts) <= TOKENIZE_CHUNK):
                    reqs.append(self._inbound.popleft())
                    n += len(reqs[-1].texts)
                self._tokenizing += n
            items, failed = self._encode(reqs)
            with self._cond:
                self._tokenizing -= n
                self._queued_texts -= n - len(items)
                self._ready.extend(items)
                self._ready_tokens += sum(it.length for it in items)
                self._cond.notify_all()
            if failed:
                self._post.put(("fail-each", failed, None))

    def _encode(self, reqs: list[_Request]) -> tuple[list[_Item], list[tuple[_Request, Exception]]]:
        """Items for the live requests; a chunk that fails is retried request by request, so a bad text
        fails only its own request."""
        live = [r for r in reqs if not r.future.cancelled()]
        try:
            return self._items(live), []
        except Exception:  # noqa: BLE001 - find the request(s) that fail
            items, failed = [], []
            for r in live:
                try:
                    items += self._items([r])
                except Exception as e:  # noqa: BLE001 - fails this request only
                    failed.append((r, e))
            return items, failed

    def _items(self, reqs: list[_Request]) -> list[_Item]:
        texts = [t for r in reqs for t in r.texts]
        if not texts:
            return []
        encode, length = self.stages.encode, self.stages.length
        if self.cfg.tokenize == "model":  # encoded later, a window at a time (_encode_window)
            encode, length = None, len
        encoded = encode(texts) if encode is not None else texts
        if len(encoded) != len(texts):
            raise RuntimeError(f"the tokenizer returned {len(encoded)} encodings for {len(texts)} texts")
        pos = iter(encoded)
        return [_Item(r, i, e, length(e)) for r in reqs for i, e in zip(range(len(r.texts)), pos)]

    # --- stage 2: the model -----------------------------------------------------------------
    def _model_loop(self) -> None:
        cfg = self.cfg
        while True:
            items = self._gather()
            if items is None:
                return
            if cfg.tokenize == "model" and self.stages.encode is not None:
                items = self._encode_window(items)
            if not items:
                continue
            lengths = [it.length for it in items]
            plan = plan_batches(lengths, cfg.max_batch, cfg.max_tokens, cfg.call_tokens) if cfg.batching else [range(len(items))]
            for idx in plan:
                batch = [items[i] for i in idx if not items[i].req.failed]
                if batch:
                    self._run(batch)

    def _encode_window(self, items: list[_Item]) -> list[_Item]:
        """``tokenize="model"``: encode a window's texts in one call; a failure is narrowed to its request."""
        try:
            encoded = self.stages.encode([it.encoded for it in items])
            if len(encoded) != len(items):
                raise RuntimeError(f"the tokenizer returned {len(encoded)} encodings for {len(items)} texts")
        except Exception as err:  # noqa: BLE001 - fails only the request(s) it comes from
            reqs = list(dict.fromkeys(it.req for it in items))
            if len(reqs) == 1:
                self._post.put(("fail-each", [(reqs[0], err)], None))
                return []
            return [it for r in reqs for it in self._encode_window([i for i in items if i.req is r])]
        for it, e in zip(items, encoded):
            it.encoded, it.length = e, self.stages.length(e)
        return items

    def _run(self, batch: list[_Item]) -> None:
        t0 = time.perf_counter()
        try:
            out, err = self.stages.run([it.encoded for it in batch]), None
        except Exception as e:  # noqa: BLE001 - any model failure fails just this call's requests
            out, err = None, e
        if self.on_batch is not None:
            self.on_batch(len(batch), time.perf_counter() - t0)
        self._post.put(("done", batch, (out, err)))

    def _enough(self) -> bool:
        cfg = self.cfg
        return len(self._ready) >= cfg.max_batch or bool(cfg.max_tokens and self._ready_tokens >= cfg.max_tokens)

    def _gather(self) -> list[_Item] | None:
        """Block until there is work; return a window of items, or None when closed and drained."""
        cfg = self.cfg
        with self._cond:
            while not self._ready:
                if self._closed and not self._inbound and not self._tokenizing:
                    return None
                self._cond.wait()
            if not cfg.batching:
                return self._take(first_request_only=True)
            deadline = self._ready[0].req.enqueued + cfg.max_wait_ms / 1000
            while not self._closed and not self._enough():
                left = deadline - time.perf_counter()
                if left <= 0:
                    break
                self._cond.wait(left)
            return self._take()

    def _take(self, first_request_only: bool = False) -> list[_Item]:
        """Pop a window of ready items (under the lock), skipping those of cancelled or failed requests."""
        cfg = self.cfg
        max_rows = float("inf") if first_request_only else cfg.max_batch * cfg.length_window
        max_tokens = cfg.max_tokens * cfg.length_window
        taken: list[_Item] = []
        tokens = 0
        while self._ready and len(taken) < max_rows:
            item = self._ready[0]
            if taken and (item.req is not taken[0].req if first_request_only
                          else max_tokens and tokens + item.length > max_tokens):
                break
            self._ready.popleft()
            self._queued_texts -= 1
            self._ready_tokens -= item.length
            req = item.req
            if req.state == _NEW:  # the first of its texts the model takes: the request starts running
                req.state = _RUNNING if req.future.set_running_or_notify_cancel() else _DEAD
            if req.state == _RUNNING and not req.failed:
                taken.append(item)
                tokens += item.length
        return taken

    # --- stage 3: results -------------------------------------------------------------------
    def _post_loop(self) -> None:
        post = self.stages.post
        while (job := self._post.get()) is not None:
            kind, target, payload = job
            if kind == "fail":
                for req in target:
                    self._fail(req, payload)
            elif kind == "fail-each":
                for req, err in target:
                    self._fail(req, err)
            else:
                self._finish(target, *payload, post)

    def _finish(self, batch: list[_Item], out: Any, err: Exception | None, post: Callable | None) -> None:
        if err is None:
            try:
                results = post(out) if post is not None else out
                if len(results) != len(batch):
                    raise RuntimeError(f"model returned {len(results)} results for {len(batch)} texts")
            except Exception as e:  # noqa: BLE001 - fails this call's requests
                err = e
        with self._cond:
            if err is None:
                self.stats.batches += 1
                self.stats.texts += len(batch)
                self.stats.tokens += sum(it.length for it in batch)
                self.stats.padded_tokens += len(batch) * max(it.length for it in batch)
            else:
                self.stats.failed_batches += 1
        if err is not None:
            for req in dict.fromkeys(it.req for it in batch):
                self._fail(req, err)
            return
        for it, res in zip(batch, results):
            req = it.req
            if req.failed:
                continue
            req.results[it.index] = res
            req.tokens += it.length
            req.pending -= 1
            if req.pending == 0:
                req.future.tokens = req.tokens
                req.future.set_result(req.results)

    @staticmethod
    def _fail(req: _Request, err: BaseException) -> None:
        """Fail ``req`` once (post thread only)."""
        if req.failed or req.state == _DEAD:
            return
        req.failed = True
        if req.state == _NEW and not req.future.set_running_or_notify_cancel():
            return  # cancelled by its caller
        req.future.set_exception(err)
