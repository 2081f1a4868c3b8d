"""The one latency protocol every published number comes from: targets interleaved over the same batches.

>>> from edgepack.timing import TimingProtocol, time_interleaved
>>> t = time_interleaved({"fp32": fp32.infer, "int8": int8.infer}, batches, TimingProtocol(repeats=5))
>>> t.summary("int8")["p50_ms"], t.speedups("fp32")["int8"]

Protocol (``time_interleaved``). Every target first gets ``warmup`` untimed calls. Then the targets take
turns of ``interleave`` calls each, the order rotating from turn to turn, all walking through the same
batches in the same order, until each has made ``repeats`` passes over them and ``min_seconds`` have
passed (extra passes are whole, so every batch keeps the same weight). Each turn starts with ``settle``
untimed calls (when more than one target is timed): a model deployed alone never sees what the previous
target leaves behind, its own weights evicted from cache by a larger model and that library's worker
threads still spinning. Background load on a shared machine falls on all targets alike, so ratios stay
meaningful where absolute numbers do not. Each call is timed alone with ``perf_counter_ns``, followed by
the target's device ``sync`` (e.g. ``torch.cuda.synchronize``) inside the timed region, so queued device
work is never counted as done.

Summaries (``summarize_ms``): ``p50_ms p90_ms p99_ms mean_ms texts_per_s n``; speed-ups are
baseline p50 / target p50 (> 1 is faster). Standard library + numpy; torch only inside ``torch_sync`` and
``time_torch_models``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgepack.errors import EdgepackError

Sync = Callable[[], None]


@dataclass(frozen=True)
class TimingProtocol:
    """How long and in what order to time. Defaults are those of ``edgepack bench``."""

    warmup: int = 3  # untimed calls per target before timing
    repeats: int = 3  # timed passes of every target over every batch
    interleave: int = 16  # timed calls per target before the next target takes its turn
    # Untimed calls at the start of every turn (only when several targets are timed). Measured on the
    # INT8 student vs its torch teacher: settle 1 / interleave 8 gave 8.7x, 3/16 9.1x, 4/32 9.4x, and the
    # two alone, interleaved 9.4x (the student's first batch-1 call after the teacher's turn: 1.9 ms
    # instead of 0.6-0.9).
    settle: int = 3
    min_seconds: float = 0.0  # keep adding whole passes until this long has passed

    def __post_init__(self) -> None:
        if min(self.repeats, self.interleave) < 1 or min(self.warmup, self.settle) < 0 or self.min_seconds < 0:
            raise EdgepackError(
                "timing needs warmup >= 0, settle >= 0, repeats >= 1, interleave >= 1, min_seconds >= 0; got "
                f"warmup={self.warmup}, settle={self.settle}, repeats={self.repeats}, "
                f"interleave={self.interleave}, min_seconds={self.min_seconds}"
            )


def summarize_ms(samples_ms: Sequence[float], items: int) -> dict:
    """p50/p90/p99/mean of per-call latencies (ms), and throughput when the calls processed ``items`` texts."""
    a = np.asarray(samples_ms, dtype=np.float64)
    if a.size == 0:
        raise ValueError("no timing samples")
    p50, p90, p99 = (float(v) for v in np.percentile(a, [50, 90, 99]))
    total_s = a.sum() / 1e3
    return {
        "p50_ms": p50,
        "p90_ms": p90,
        "p99_ms": p99,
        "mean_ms": float(a.mean()),
        "texts_per_s": float(items / total_s) if total_s > 0 else float("inf"),
        "n": int(a.size),
    }


@dataclass
class Timings:
    """Per-call latencies (ms) of every target, and the items (texts) each processed in its timed calls."""

    samples_ms: dict[str, list[float]]
    items: int

    def summary(self, name: str) -> dict:
        return summarize_ms(self.samples_ms[name], self.items)

    def summaries(self) -> dict[str, dict]:
        return {name: self.summary(name) for name in self.samples_ms}

    def speedups(self, baseline: str) -> dict[str, float | None]:
        """baseline p50 / target p50 for every target (> 1 is faster; the baseline itself is 1.0)."""
        return speedups(self.summaries(), baseline)


def speedups(summaries: Mapping[str, dict], baseline: str) -> dict[str, float | None]:
    """baseline p50 / p50 per target, from ``summarize_ms`` dicts (None where a p50 is 0)."""
    base = summaries[baseline]["p50_ms"]
    return {k: (base / s["p50_ms"] if s["p50_ms"] > 0 else None) for k, s in summaries.items()}


def _syncs(names: Sequence[str], sync: Sync | Mapping[str, Sync | None] | None) -> dict[str, Sync | None]:
    if sync is None or callable(sync):
        return dict.fromkeys(names, sync)
    return {n: sync.get(n) for n in names}


def _call(run: Callable[[Any], object], sync: Sync | None, batch: Any) -> None:
    run(batch)
    if sync is not None:
        sync()


def time_interleaved(
    runs: Mapping[str, Callable[[Any], object]],
    batches: Sequence[Any],
    protocol: TimingProtocol = TimingProtocol(),
    sync: Sync | Mapping[str, Sync | None] | None = None,
    size: Callable[[Any], int] = len,
    progress: bool = False,
) -> Timings:
    """Time ``runs`` (name -> ``run(batch)``) over the same ``batches`` with the module's protocol.

    ``sync``: one device-sync callable for all targets, or one per target name (None: no sync).
    ``size(batch)``: the texts in a batch (default ``len``), for throughput. ``progress``: a tqdm bar.
    Returns the per-call samples of every target (dict order is ``runs``' order).
    """
    if not runs or not batches:
        raise EdgepackError("nothing to time: give at least one target and one batch")
    order = list(runs)
    syncs = _syncs(order, sync)
    for name in order:
        for i in range(protocol.warmup):
            _call(runs[name], syncs[name], batches[i % len(batches)])
    samples: dict[str, list[float]] = {name: [] for name in order}
    settle = protocol.settle if len(order) > 1 else 0
    n = len(batches)
    goal, done, turn, items = n * protocol.repeats, 0, 0, 0
    bar = _bar(progress, goal * len(order))
    start = time.perf_counter()
    while done < goal or time.perf_counter() - start < protocol.min_seconds:
        if done >= goal:
            goal += n  # whole extra passes, so every batch keeps the same weight
        chunk = [batches[(done + j) % n] for j in range(min(protocol.interleave, goal - done))]
        k = turn % len(order)
        for name in order[k:] + order[:k]:
            run, sync_fn, out = runs[name], syncs[name], samples[name]
            for batch in chunk[:settle]:
                _call(run, sync_fn, batch)
            for batch in chunk:
                t0 = time.perf_counter_ns()
                run(batch)
                if sync_fn is not None:
                    sync_fn()
                out.append((time.perf_counter_ns() - t0) / 1e6)
        done, turn, items = done + len(chunk), turn + 1, items + sum(size(b) for b in chunk)
        if bar is not None:
            bar.update(len(chunk) * len(order))
    if bar is not None:
        bar.close()
    return Timings(samples, items)


def _bar(on: bool, total: int) -> Any:
    if not on:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="timing", unit="call", leave=False)


def torch_sync(device: Any) -> Sync | None:
    """The device-sync hook for a torch device: ``torch.cuda.synchronize`` on CUDA, None on CPU."""
    if getattr(device, "type", str(device).split(":")[0]) != "cuda":
        return None
    import torch

    return torch.cuda.synchronize


def time_torch_models(
    models: Mapping[str, Any], batches: Sequence[Mapping[str, Any]], protocol: TimingProtocol = TimingProtocol()
) -> Timings:
    """Torch models (eval mode, ``inference_mode``) on the same encoded batches (dicts of (B, T) tensors).

    Batches must already be on the models' device; CUDA models are synchronized after every call.
    """
    import torch

    for m in models.values():
        m.eval()

    def runner(m: Any) -> Callable[[Mapping[str, Any]], object]:
        return lambda enc: m(**enc)

    syncs = {k: torch_sync(next(m.parameters()).device) for k, m in models.items()}
    with torch.inference_mode():
        return time_interleaved(
            {k: runner(m) for k, m in models.items()}, batches, protocol, sync=syncs,
            size=lambda enc: int(enc["input_ids"].shape[0]),
        )
