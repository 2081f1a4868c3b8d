"""Comparison benchmarks: several targets in one process, on the same texts, interleaved, as ratios.

>>> from edgepack.benchmarks.suite import BenchConfig, Target, run_benchmarks, to_markdown
>>> cfg = BenchConfig(batch_sizes=(1, 8), threads=2, texts=val_texts[:64])
>>> rows = run_benchmarks([Target.torch("teacher", "runs/teacher"), Target.onnx("int8", "runs/int8"),
...                        Target.peer_optimum("optimum-int8", "runs/teacher", "dynamic-per-channel")],
...                       cfg, baseline="teacher")
>>> print(to_markdown(rows))

Protocol. Every target is loaded first (threads fixed: ``torch.set_num_threads`` / ORT
``intra_op_num_threads``) and run once over the evaluation texts untimed (warm-up, outputs for accuracy
and agreement with the baseline). Then, per workload (batch size x real texts, or batch size x synthetic
sequence length), the targets are timed with the project's one protocol, ``edgepack.timing.time_interleaved``
(``BenchConfig.protocol``): ``warmup`` untimed calls each, then turns of ``interleave`` calls, the order
rotating, each turn starting with ``settle`` untimed calls, all walking through the same batches until each
has made ``repeats`` passes and ``min_seconds`` have passed. Each call is timed end to end (tokenize, run,
post-process) with ``perf_counter_ns``; GPU runners are synchronized after each call. The machine (CPU
model and its INT8 features, ``edgepack.cpu``) is recorded beside the results (``results.environment``).

Result rows (one per target and workload): ``p50_ms p90_ms p99_ms mean_ms texts_per_s n`` (timing),
``ratio_vs_baseline`` (baseline p50 / this p50: the speed-up, > 1 is faster),
``throughput_ratio_vs_baseline``, ``size_bytes``, ``load_rss_mb`` (resident memory added by loading and
first running this target, psutil or /proc), ``peak_rss_mb`` (the process's peak so far, which covers every
target loaded before it: compare targets with ``load_rss_mb``, or set ``isolated_memory`` for
``peak_rss_isolated_mb``, the peak of a fresh process running only that target), and, when ``labels`` are
given, ``accuracy macro_f1 accuracy_ci95`` (bootstrap); ``agreement_vs_baseline`` (same top label) or
``min_cosine_vs_baseline``/``mean_cosine_vs_baseline`` (embeddings) on the evaluation texts.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np
from edgepack.benchmarks.memory import peak_rss_mb, rss_mb
from edgepack.benchmarks.results import bench_report, to_markdown, write_results
from edgepack.benchmarks.targets import OpenTarget, Target

from edgepack.compare import cosine
from edgepack.errors import EdgepackError
from edgepack.scoring import accuracy, classification_report
from edgepack.timing import TimingProtocol, time_interleaved

__all__ = [
    "BenchConfig",
    "Target",
    "bench_report",
    "run_benchmarks",
    "synthetic_text",
    "to_markdown",
    "write_results",
]


@dataclass(frozen=True)
class BenchConfig:
    """What to measure. Give exactly one of ``texts`` (real texts) or ``seq_lens`` (synthetic lengths)."""

    batch_sizes: tuple[int, ...] = (1, 8)
    threads: int | None = 2  # intra-op threads for every target; None = each library's default
    texts: tuple[str, ...] | None = None  # real texts; ``labels`` passed to run_benchmarks align with these
    seq_lens: tuple[int, ...] | None = None  # synthetic texts of exactly this many tokens (with [CLS]/[SEP])
    warmup: int = 3  # untimed calls per target and workload before timing
    repeats: int = 3  # timed passes of every target over every batch
    min_seconds: float = 0.0  # keep adding passes until a workload has run this long
    max_timed_texts: int | None = 64  # timing uses the first N texts; accuracy uses all of them
    seq_len_calls: int = 8  # calls per round and target in seq-len mode
    interleave: int = 16  # timed calls per target before the next target takes its turn
    settle: int = 3  # untimed calls at the start of every turn (why: edgepack.timing.TimingProtocol)
    isolated_memory: bool = False  # also measure each target's peak RSS alone in a fresh process (slower)

    def __post_init__(self) -> None:
        tup = lambda v: None if v is None else tuple(v)
        for name in ("batch_sizes", "texts", "seq_lens"):
            object.__setattr__(self, name, tup(getattr(self, name)))
        if not self.batch_sizes or any(not isinstance(b, int) or b < 1 for b in self.batch_sizes):
            raise EdgepackError(f"batch sizes must be positive integers, got {list(self.batch_sizes)}")
        if (self.texts is None) == (self.seq_lens is None):
            raise EdgepackError(
                "give either real texts or sequence lengths to benchmark, not both or neither"
            )
        if self.texts is not None:
            if not self.texts or not all(isinstance(t, str) and t.strip() for t in self.texts):
                raise EdgepackError("texts must be a non-empty list of non-empty strings")
            if len(self.timed_texts) < max(self.batch_sizes):
                raise EdgepackError(
                    f"batch size {max(self.batch_sizes)} needs at least that many texts; "
                    f"got {len(self.timed_texts)}"
                )
        if self.seq_lens is not None and any(not isinstance(n, int) or n < 3 for n in self.seq_lens):
            raise EdgepackError(f"sequence lengths must be integers >= 3, got {list(self.seq_lens)}")
        if self.threads is not None and self.threads < 1:
            raise EdgepackError(f"threads must be >= 1, got {self.threads}")
        if self.seq_len_calls < 1:
            raise EdgepackError(f"seq_len_calls must be >= 1, got {self.seq_len_calls}")
        _ = self.protocol  # raises EdgepackError for a bad warmup/repeats/interleave/settle/min_seconds
        if self.max_timed_texts is not None and self.max_timed_texts < 1:
            raise EdgepackError("max_timed_texts must be >= 1 (or None for all texts)")

    @property
    def protocol(self) -> TimingProtocol:
        """The timing protocol every workload is measured with (``edgepack.timing``)."""
        return TimingProtocol(self.warmup, self.repeats, self.interleave, self.settle, self.min_seconds)

    @property
    def timed_texts(self) -> tuple[str, ...]:
        texts = self.texts or ()
        return texts if self.max_timed_texts is None else texts[: self.max_timed_texts]


def synthetic_text(seq_len: int) -> str:
    """A text that BERT/RoBERTa-style tokenizers encode as exactly ``seq_len`` tokens (2 special + words)."""
    return " ".join(["the"] * (seq_len - 2))


@dataclass
class _Workload:
    batch_size: int
    seq_len: int | None
    batches: list[list[str]]

    @property
    def texts_per_pass(self) -> int:
        return sum(len(b) for b in self.batches)


def _workloads(cfg: BenchConfig) -> list[_Workload]:
    out = []
    for bs in cfg.batch_sizes:
        if cfg.seq_lens is None:
            texts = list(cfg.timed_texts)
            full = len(texts) // bs * bs  # whole batches only, so every call has exactly bs texts
            out.append(_Workload(bs, None, [texts[i : i + bs] for i in range(0, full, bs)]))
        else:
            out += [_Workload(bs, n, [[synthetic_text(n)] * bs] * cfg.seq_len_calls) for n in cfg.seq_lens]
    return out


def _load_average() -> float | None:
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def _preimport(targets: Sequence[Target]) -> None:
    """Import the libraries first, so a target's load_rss_mb is its model, not the library's import."""
    kinds = {t.kind for t in targets}
    if kinds & {"torch", "peer-optimum"}:
        import torch  # noqa: F401
        import transformers  # noqa: F401
    if kinds & {"onnx", "peer-optimum"}:
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            pass  # Predictor.open explains what to install


def _run_all(ot: OpenTarget, texts: Sequence[str], batch_size: int) -> np.ndarray:
    return np.concatenate([ot.run(list(texts[i : i + batch_size])) for i in range(0, len(texts), batch_size)])


def _label_indices(labels: Sequence, ot: OpenTarget) -> np.ndarray:
    if all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in labels):
        return np.asarray(labels, dtype=np.int64)
    index = {name: i for i, name in enumerate(ot.labels)}
    missing = sorted({str(v) for v in labels if v not in index})
    if missing:
        raise EdgepackError(
            f"target '{ot.name}' has labels {ot.labels}; the given labels include {missing[:5]}"
        )
    return np.asarray([index[v] for v in labels], dtype=np.int64)


def _quality(ot: OpenTarget, out: np.ndarray, base: np.ndarray | None, labels: Sequence | None) -> dict:
    """Accuracy on labelled texts and agreement with the baseline's outputs on the same texts."""
    q: dict = {}
    classify = ot.task == "text-classification"
    if labels is not None and classify:
        r = classification_report(out.argmax(axis=1), _label_indices(labels, ot), num_classes=out.shape[1])
        q.update(
            accuracy=r["accuracy"], macro_f1=r["macro_f1"], accuracy_ci95=r["accuracy_ci95"], n_eval=r["n"]
        )
    if base is not None and base.shape == out.shape:
        if classify:
            q["agreement_vs_baseline"] = accuracy(out.argmax(axis=1), base.argmax(axis=1))
        else:
            cos = cosine(base, out)
            q.update(min_cosine_vs_baseline=float(cos.min()), mean_cosine_vs_baseline=float(cos.mean()))
    return q


def _check(targets: list[Target], cfg: BenchConfig, baseline: str | None, labels: Sequence | None) -> str:
    if not targets:
        raise EdgepackError("nothing to benchmark: give at least one target")
    names = [t.name for t in targets]
    if len(set(names)) != len(names):
        raise EdgepackError(f"target names must be unique, got {names}")
    baseline = baseline or names[0]
    if baseline not in names:
        raise EdgepackError(f"baseline '{baseline}' is not one of the targets: {', '.join(names)}")
    if labels is not None and (cfg.texts is None or len(labels) != len(cfg.texts)):
        raise EdgepackError(f"got {len(labels)} labels for {len(cfg.texts or ())} texts; they must align")
    return baseline


def _open_all(
    targets: list[Target],
    cfg: BenchConfig,
    eval_texts: list[str],
    opened: list[OpenTarget],
    say: Callable[[str], None],
) -> tuple[dict[str, dict], dict[str, np.ndarray]]:
    """Open every target (appending to ``opened``) and run it once over ``eval_texts`` (untimed).

    Returns per-target memory info and outputs. Exports (the peer path) happen before the memory reading.
    """
    loaded: dict[str, dict] = {}
    outputs: dict[str, np.ndarray] = {}
    for t in targets:
        say(f"loading {t.name} ({t.kind}) from {t.path}")
        t.prepare()
        info: dict = {}
        if cfg.isolated_memory:
            from edgepack.benchmarks.memory import isolated_peak_rss_mb

            texts = eval_texts or [synthetic_text(max(cfg.seq_lens or (8,)))] * max(cfg.batch_sizes)
            peak = isolated_peak_rss_mb(t, texts, max(cfg.batch_sizes), cfg.threads)
            info["peak_rss_isolated_mb"] = round(peak, 1)
        before = rss_mb()
        ot = t.open(cfg.threads, max(cfg.batch_sizes))
        opened.append(ot)
        if eval_texts:  # also the first warm-up
            outputs[t.name] = _run_all(ot, eval_texts, max(cfg.batch_sizes))
        else:
            ot.run([synthetic_text(8)])
        after = rss_mb()
        info["load_rss_mb"] = None if before is None or after is None else round(after - before, 1)
        loaded[t.name] = info
    return loaded, outputs


def run_benchmarks(
    targets: Sequence[Target],
    cfg: BenchConfig,
    baseline: str | None = None,
    labels: Sequence | None = None,
    log: Callable[[str], None] | None = None,
) -> list[dict]:
    """Benchmark ``targets`` in this process; returns one result dict per (target, batch size[, seq len]).

    ``baseline`` names the target the ratios refer to (default: the first). ``labels`` (ints indexing the
    model's outputs, or label names) align with ``cfg.texts`` and add accuracy for classifiers. ``log``
    receives progress lines. Peer targets without a ``work_dir`` share a temporary one (removed at the
    end). Raises EdgepackError for duplicate names, an unknown baseline, or labels that do not match.
    """
    targets = list(targets)
    baseline = _check(targets, cfg, baseline, labels)
    say = log or (lambda s: None)
    load, cores = _load_average(), os.cpu_count() or 1
    if load is not None and load > cores:
        say(
            f"warning: load average {load:.1f} on {cores} cores: other processes compete for the CPU; "
            "absolute timings are unreliable (ratios from interleaved turns less so)"
        )
    _preimport(targets)
    eval_texts = list(cfg.texts if labels is not None else cfg.timed_texts) if cfg.texts else []
    opened: list[OpenTarget] = []
    with tempfile.TemporaryDirectory(prefix="edgepack-bench-") as scratch:
        targets = [
            replace(t, work_dir=scratch) if t.kind == "peer-optimum" and t.work_dir is None else t
            for t in targets
        ]
        try:
            loaded, outputs = _open_all(targets, cfg, eval_texts, opened, say)
            for ot in opened:
                base = outputs.get(baseline) if ot.name != baseline else None
                if ot.name in outputs:
                    loaded[ot.name].update(_quality(ot, outputs[ot.name], base, labels))
            rows = []
            for w in _workloads(cfg):
                what = f"{w.seq_len} tokens" if w.seq_len else f"{w.texts_per_pass} real texts"
                say(f"timing batch {w.batch_size}, {what}, {len(opened)} targets interleaved")
                timings = time_interleaved(
                    {ot.name: ot.run for ot in opened},
                    w.batches,
                    cfg.protocol,
                    sync={ot.name: ot.sync for ot in opened},
                )
                peak, load = peak_rss_mb(), _load_average()
                for ot in opened:
                    rows.append(
                        {
                            "target": ot.name,
                            **ot.info,
                            "batch_size": w.batch_size,
                            "seq_len": w.seq_len,
                            "texts_per_pass": w.texts_per_pass,
                            **timings.summary(ot.name),
                            "size_bytes": ot.size_bytes,
                            **loaded[ot.name],
                            "peak_rss_mb": None if peak is None else round(peak, 1),
                            "baseline": baseline,
                            "load_avg": None if load is None else round(load, 2),
                        }
                    )
        finally:
            for ot in opened:
                ot.close()
    _add_ratios(rows, baseline)
    return rows


def _add_ratios(rows: list[dict], baseline: str) -> None:
    """ratio_vs_baseline = baseline p50 / p50 (speed-up); throughput ratio likewise, per workload."""
    base = {(r["batch_size"], r["seq_len"]): r for r in rows if r["target"] == baseline}
    for r in rows:
        b = base[(r["batch_size"], r["seq_len"])]
        r["ratio_vs_baseline"] = b["p50_ms"] / r["p50_ms"] if r["p50_ms"] > 0 else None
        r["throughput_ratio_vs_baseline"] = (
            r["texts_per_s"] / b["texts_per_s"] if b["texts_per_s"] > 0 else None
        )
