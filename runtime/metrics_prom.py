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
    """Request counts by endpoint and status, latency and batch-size histograms, queue depth."""

    def __init__(self, queue_depth: Callable[[], int] = lambda: 0):
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, int], int] = {}
        self._latency = _Histogram(LATENCY_BUCKETS)
        self._batch = _Histogram(BATCH_BUCKETS)
        self._inference = _Histogram(LATENCY_BUCKETS)
        self._texts = 0
        self.queue_depth = queue_depth

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

    def render(self) -> str:
        """The exposition text for GET /metrics."""
        with self._lock:
            lines = [
                "# HELP edgepack_requests_total HTTP requests answered, by endpoint and status code.",
                "# TYPE edgepack_requests_total counter",
            ]
            for (ep, status), n in sorted(self._requests.items()):
                lines.append(f'edgepack_requests_total{{endpoint="{_escape(ep)}",status="{status}"}} {n}')
            lines += [
                "# HELP edgepack_request_latency_seconds Time to answer POST /v1/predict.",
                "# TYPE edgepack_request_latency_seconds histogram",
                *self._latency.lines("edgepack_request_latency_seconds"),
                "# HELP edgepack_batch_size Texts per model call.",
                "# TYPE edgepack_batch_size histogram",
                *self._batch.lines("edgepack_batch_size"),
                "# HELP edgepack_inference_seconds Time of one model call.",
                "# TYPE edgepack_inference_seconds histogram",
                *self._inference.lines("edgepack_inference_seconds"),
                "# HELP edgepack_texts_total Texts run through the model.",
                "# TYPE edgepack_texts_total counter",
                f"edgepack_texts_total {self._texts}",
            ]
        lines += [
            "# HELP edgepack_queue_depth Texts waiting for the model.",
            "# TYPE edgepack_queue_depth gauge",
            f"edgepack_queue_depth {int(self.queue_depth())}",
        ]
        return "\n".join(lines) + "\n"
