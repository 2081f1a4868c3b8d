"""The server's Prometheus metrics, written in the text exposition format (version 0.0.4).

Hand-written on purpose: the server exports five series, and ``prometheus_client`` would add a
dependency (and its multiprocess mode, a shared-directory setup) to the lean install for that.
The format rules followed: one ``# HELP`` and ``# TYPE`` per family, label values escaped,
histograms as cumulative ``_bucket{le=...}`` lines ending in ``+Inf`` plus ``_sum`` and ``_count``.
All updates take one lock, so the metrics may be updated from the event loop and worker threads.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Callable

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _fmt(x: float) -> str:
    return "+Inf" if x == float("inf") else repr(float(x))  # as prometheus_client writes them


class _Histogram:
    def __init__(self, buckets: tuple[float, ...]):
        self.bounds = tuple(buckets)
        self.counts = [0] * (len(self.bounds) + 1)  # last: above every bound (+Inf only)
        self.sum = 0.0
        self.count = 0

    def observe(self, v: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, v)] += 1
        self.sum += v
        self.count += 1

    def lines(self, name: str, labels: str = "") -> list[str]:
        out, cum = [], 0
        sep = "," if labels else ""
        for bound, c in zip(self.bounds + (float("inf"),), self.counts):
            cum += c
            out.append(f'{name}_bucket{{{labels}{sep}le="{_fmt(bound)}"}} {cum}')
        lab = f"{{{labels}}}" if labels else ""
        out += [f"{name}_sum{lab} {_fmt(self.sum)}", f"{name}_count{lab} {self.count}"]
        return out


class ServerMetrics:
    """Request counts by endpoint and status, latency and batch-size histograms, tokens, queue depth.

    Several server processes: each keeps its own; ``snapshot`` / ``merge`` / ``render_snapshot`` sum them."""

    def __init__(self, queue_depth: Callable[[], int] = lambda: 0):
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, int], int] = {}
        self._latency = _Histogram(LATENCY_BUCKETS)
        self._batch = _Histogram(BATCH_BUCKETS)
        self._inference = _Histogram(LATENCY_BUCKETS)
        self._texts = 0
        self.queue_depth = queue_depth
        self.batch_stats: Callable[[], object] = lambda: None  # the batcher's BatchStats (tokens), once loaded

    def observe_request(self, endpoint: str, status: int, seconds: float) -> None:
        """Count one answered request; latency is recorded for the predict endpoint only."""
        with self._lock:
            key = (endpoint, int(status))
            self._requests[key] = self._requests.get(key, 0) + 1
            if endpoint == "/v1/predict":
                self._latency.observe(seconds)

    def observe_batch(self, size: int, seconds: float) -> None:
        """Record one model call of ``size`` texts taking ``seconds``."""
        with self._lock:
            self._batch.observe(size)
            self._inference.observe(seconds)
            self._texts += size

    def request_count(self, endpoint: str, status: int) -> int:
        with self._lock:
            return self._requests.get((endpoint, int(status)), 0)

    def snapshot(self) -> dict:
        """This process's numbers as plain JSON-ready data (what ``render_snapshot`` and ``merge`` read)."""
        with self._lock:
            snap = {"requests": [[ep, st, n] for (ep, st), n in self._requests.items()], "texts": self._texts,
                    **{name: [list(h.counts), h.sum, h.count] for name, h in self._histograms().items()}}
        stats = self.batch_stats()
        snap["tokens"] = getattr(stats, "tokens", 0)
        snap["padded_tokens"] = getattr(stats, "padded_tokens", 0)
        snap["queue_depth"] = int(self.queue_depth())
        return snap

    def _histograms(self) -> dict[str, _Histogram]:
        return {"latency": self._latency, "batch": self._batch, "inference": self._inference}

    def render(self) -> str:
        """The exposition text for GET /metrics (this process)."""
        return render_snapshot(self.snapshot())


def merge(snapshots: list[dict]) -> dict:
    """Several processes' snapshots summed: counters, histogram buckets and queue depths add up."""
    out = ServerMetrics().snapshot()
    requests: dict[tuple[str, int], int] = {}
    for snap in snapshots:
        for ep, st, n in snap["requests"]:
            requests[(ep, st)] = requests.get((ep, st), 0) + n
        for key in ("texts", "tokens", "padded_tokens", "queue_depth"):
            out[key] += snap[key]
        for key in ("latency", "batch", "inference"):
            counts, total, n = out[key]
            out[key] = [[a + b for a, b in zip(counts, snap[key][0])], total + snap[key][1], n + snap[key][2]]
    out["requests"] = [[ep, st, n] for (ep, st), n in requests.items()]
    return out


def render_snapshot(snap: dict) -> str:
    """The exposition text of one snapshot (one process's, or ``merge`` of several)."""
    hist = {}
    for key, buckets in (("latency", LATENCY_BUCKETS), ("batch", BATCH_BUCKETS), ("inference", LATENCY_BUCKETS)):
        h = hist[key] = _Histogram(buckets)
        h.counts, h.sum, h.count = list(snap[key][0]), snap[key][1], snap[key][2]
    lines = [
        "# HELP edgepack_requests_total HTTP requests answered, by endpoint and status code.",
        "# TYPE edgepack_requests_total counter",
    ]
    for ep, status, n in sorted(snap["requests"]):
        lines.append(f'edgepack_requests_total{{endpoint="{_escape(ep)}",status="{status}"}} {n}')
    lines += [
        "# HELP edgepack_request_latency_seconds Time to answer POST /v1/predict.",
        "# TYPE edgepack_request_latency_seconds histogram",
        *hist["latency"].lines("edgepack_request_latency_seconds"),
        "# HELP edgepack_batch_size Texts per model call.",
        "# TYPE edgepack_batch_size histogram",
        *hist["batch"].lines("edgepack_batch_size"),
        "# HELP edgepack_inference_seconds Time of one model call.",
        "# TYPE edgepack_inference_seconds histogram",
        *hist["inference"].lines("edgepack_inference_seconds"),
        "# HELP edgepack_texts_total Texts run through the model.",
        "# TYPE edgepack_texts_total counter",
        f"edgepack_texts_total {snap['texts']}",
        "# HELP edgepack_tokens_total Tokens run through the model (without padding).",
        "# TYPE edgepack_tokens_total counter",
        f"edgepack_tokens_total {snap['tokens']}",
        "# HELP edgepack_padded_tokens_total Rows x longest row of every model call: tokens computed, padding included.",
        "# TYPE edgepack_padded_tokens_total counter",
        f"edgepack_padded_tokens_total {snap['padded_tokens']}",
        "# HELP edgepack_queue_depth Texts waiting for the model.",
        "# TYPE edgepack_queue_depth gauge",
        f"edgepack_queue_depth {snap['queue_depth']}",
    ]
    return "\n".join(lines) + "\n"
