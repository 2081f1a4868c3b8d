"""The accuracy budget: measure every candidate against its parent, keep the fastest one within budget.

Rules (``select``): a candidate is eligible only if its accuracy drop vs the parent is <= the budget
AND it is faster than the parent on the target backend (same process, same texts, interleaved
rounds). Among eligible candidates the fastest wins (ties: the smaller file). Nothing else is ever
chosen: with no eligible candidate ``select`` returns None and the stage raises.

Accuracy is in points (%): accuracy on labelled validation texts for classifiers; agreement with the
parent's predicted labels when there are no labels; for embedding models, 100 x mean cosine similarity
to the parent's embeddings (so a 1-point budget means mean cosine >= 0.99).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np


@dataclass(frozen=True)
class Measurement:
    """One row of the candidate table."""

    name: str  # method name, or "parent"
    precision: str
    accuracy: float  # points (%), see module docstring
    size_bytes: int
    latency_ms: float  # median per batch of the timed size
    quantized_ops: int = 0
    min_cosine: float | None = None  # embedding models: worst text
    error: str | None = None  # the candidate could not be built or run


@dataclass(frozen=True)
class Row:
    m: Measurement
    accuracy_drop: float
    latency_ratio: float  # candidate / parent; < 1 is faster
    size_ratio: float  # parent / candidate; > 1 is smaller
    status: str  # selected | eligible | over budget | not faster than parent | failed: ... | not needed: ...

    def to_dict(self) -> dict:
        return {**asdict(self.m), "accuracy_drop": self.accuracy_drop, "latency_ratio": self.latency_ratio,
                "speedup": (1 / self.latency_ratio) if self.latency_ratio else None, "size_ratio": self.size_ratio,
                "status": self.status}


def select(parent: Measurement, candidates: Sequence[Measurement], max_accuracy_drop: float) -> tuple[Row | None, list[Row]]:
    """Apply the budget rules to measured numbers; returns (chosen row or None, all rows in input order)."""
    rows = []
    for c in candidates:
        if c.error:  # an error message, or "not needed: ..." from a method that skipped itself
            status = c.error if c.error.startswith("not needed") else f"failed: {c.error}"
            rows.append(Row(c, float("nan"), float("nan"), float("nan"), status))
            continue
        drop = parent.accuracy - c.accuracy
        ratio = c.latency_ms / parent.latency_ms if parent.latency_ms > 0 else float("inf")
        if not drop <= max_accuracy_drop + 1e-9:  # also false for NaN
            status = "over budget"
        elif not c.latency_ms < parent.latency_ms:
            status = "not faster than parent"
        else:
            status = "eligible"
        rows.append(Row(c, drop, ratio, parent.size_bytes / max(c.size_bytes, 1), status))
    eligible = [r for r in rows if r.status == "eligible"]
    if not eligible:
        return None, rows
    best = min(eligible, key=lambda r: (r.m.latency_ms, r.m.size_bytes))
    rows = [Row(r.m, r.accuracy_drop, r.latency_ratio, r.size_ratio, "selected") if r is best else r for r in rows]
    return next(r for r in rows if r.status == "selected"), rows


def format_table(parent: Measurement, rows: Sequence[Row], max_accuracy_drop: float) -> str:
    """A plain-text table of the parent and every candidate."""
    head = f"{'candidate':<32}{'acc':>8}{'drop':>7}{'MB':>8}{'smaller':>8}{'ms/b':>8}{'speedup':>8}{'q-ops':>6}  status"
    lines = [f"accuracy budget: drop <= {max_accuracy_drop:g} points; latency: median ms per batch", head,
             f"{'parent (' + parent.precision + ')':<32}{parent.accuracy:>8.2f}{'':>7}{parent.size_bytes / 1e6:>8.1f}"
             f"{'1.00x':>8}{parent.latency_ms:>8.1f}{'1.00x':>8}{parent.quantized_ops:>6}"]
    for r in rows:
        m = r.m
        if m.error:
            lines.append(f"{m.name:<32}{'-':>8}{'-':>7}{'-':>8}{'-':>8}{'-':>8}{'-':>8}{'-':>6}  {r.status}")
            continue
        lines.append(f"{m.name:<32}{m.accuracy:>8.2f}{r.accuracy_drop:>7.2f}{m.size_bytes / 1e6:>8.1f}"
                     f"{r.size_ratio:>7.2f}x{m.latency_ms:>8.1f}{1 / r.latency_ratio:>7.2f}x{m.quantized_ops:>6}  {r.status}")
    return "\n".join(lines)


# --- measuring --------------------------------------------------------------------------------------

def score(task: str, outputs: np.ndarray, reference: np.ndarray, labels: Sequence[int] | None) -> tuple[float, float | None]:
    """(accuracy points, min cosine or None) of ``outputs`` (N, C) probs or (N, D) embeddings."""
    if task == "feature-extraction":
        a = outputs / np.clip(np.linalg.norm(outputs, axis=1, keepdims=True), 1e-12, None)
        b = reference / np.clip(np.linalg.norm(reference, axis=1, keepdims=True), 1e-12, None)
        cos = (a * b).sum(axis=1)
        return 100.0 * float(cos.mean()), float(cos.min())
    pred = outputs.argmax(axis=1)
    gold = np.asarray(labels) if labels is not None else reference.argmax(axis=1)
    return 100.0 * float((pred == gold).mean()), None


def time_predictors(predictors: dict, texts: Sequence[str], batch_size: int, batches: int, rounds: int) -> dict[str, float]:
    """Median ms per ``infer`` call of ``batch_size`` real texts, for each predictor, rounds interleaved.

    Each call pads to its batch's longest text (as ``Predictor`` does); every round runs the same
    batches on every model in turn, so load changes on the machine hit all models alike.
    """
    chunks = [list(texts[i:i + batch_size]) for i in range(0, len(texts), batch_size)]
    chunks = [c for c in chunks if len(c) == batch_size][:batches] or [list(texts[:batch_size])]
    for p in predictors.values():  # warm-up: session initialisation and allocator growth
        p.infer(chunks[0])
    per_round: dict[str, list[float]] = {k: [] for k in predictors}
    for _ in range(rounds):
        for name, p in predictors.items():
            t0 = time.perf_counter_ns()
            for c in chunks:
                p.infer(c)
            per_round[name].append((time.perf_counter_ns() - t0) / 1e6 / len(chunks))
    return {k: float(np.median(v)) for k, v in per_round.items()}
