"""Honest timing: warm-up, then repeated calls timed with perf_counter_ns; percentiles in milliseconds."""

from __future__ import annotations

import time
from typing import Callable

import numpy as np


def time_calls(fn: Callable[[], object], warmup: int = 3, iters: int = 20, min_seconds: float = 0.0,
               sync: Callable[[], None] | None = None) -> dict:
    """Time ``fn()``; returns p50/p90/p99/mean in ms and the number of timed calls.

    ``sync`` (e.g. ``torch.cuda.synchronize``) runs after every call so device work is included.
    Runs at least ``iters`` calls and keeps going until ``min_seconds`` have passed.
    """
    for _ in range(warmup):
        fn()
        if sync:
            sync()
    samples = []
    start = time.perf_counter_ns()
    while len(samples) < iters or (time.perf_counter_ns() - start) / 1e9 < min_seconds:
        t0 = time.perf_counter_ns()
        fn()
        if sync:
            sync()
        samples.append((time.perf_counter_ns() - t0) / 1e6)
    a = np.asarray(samples)
    return {"p50_ms": float(np.percentile(a, 50)), "p90_ms": float(np.percentile(a, 90)),
            "p99_ms": float(np.percentile(a, 99)), "mean_ms": float(a.mean()), "n": int(a.size)}


def time_over_texts(run_batch: Callable[[list], object], texts: list, batch_size: int, warmup: int = 2,
                    repeats: int = 1) -> dict:
    """Latency per batch when ``texts`` are fed in consecutive batches of ``batch_size`` (real lengths)."""
    batches = [texts[i:i + batch_size] for i in range(0, len(texts), batch_size)]
    for b in batches[:warmup]:
        run_batch(b)
    samples = []
    for _ in range(repeats):
        for b in batches:
            t0 = time.perf_counter_ns()
            run_batch(b)
            samples.append((time.perf_counter_ns() - t0) / 1e6)
    a = np.asarray(samples)
    total_s = a.sum() / 1e3
    return {"batch_size": batch_size, "p50_ms": float(np.percentile(a, 50)), "p90_ms": float(np.percentile(a, 90)),
            "p99_ms": float(np.percentile(a, 99)), "mean_ms": float(a.mean()),
            "texts_per_s": float(len(batches) * repeats and sum(len(b) for b in batches) * repeats / total_s),
            "n": int(a.size)}


def summarize_ms(samples_ms: list[float], texts: int) -> dict:
    """p50/p90/p99/mean of per-call latencies (ms) and throughput when the calls processed ``texts`` texts."""
    a = np.asarray(samples_ms, dtype=np.float64)
    if a.size == 0:
        raise ValueError("no timing samples")
    total_s = a.sum() / 1e3
    return {"p50_ms": float(np.percentile(a, 50)), "p90_ms": float(np.percentile(a, 90)),
            "p99_ms": float(np.percentile(a, 99)), "mean_ms": float(a.mean()),
            "texts_per_s": float(texts / total_s) if total_s > 0 else float("inf"), "n": int(a.size)}
