"""The accuracy budget: measure every candidate against its parent, keep the fastest one within budget.

Rules (``select``; ``select_by="latency"``, the default): a candidate is eligible only if its accuracy drop
vs the parent is <= the budget AND it is faster than the parent on the target backend (p50 latency, same process, same texts, timed
with the protocol ``edgepack bench`` uses: ``edgepack.timing``). Among eligible candidates the fastest
wins (ties: the smaller file). Nothing else is ever chosen: with no eligible candidate ``select``
returns None and the stage raises. ``select_by="size"`` replaces "faster" by "smaller" and picks the smallest.

Accuracy is in points (%), scored by ``edgepack.scoring`` / ``edgepack.compare``: accuracy on labelled
validation texts for classifiers (with a bootstrap 95% interval, recorded; the rule uses the point
estimates); agreement with the parent's predicted labels when there are no labels; for embedding models,
100 x mean cosine similarity to the parent's embeddings (so a 1-point budget means mean cosine >= 0.99).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from edgepack.compare import compare
from edgepack.scoring import classification_report
from edgepack.timing import TimingProtocol, time_interleaved


@dataclass(frozen=True)
class Measurement:
    """One row of the candidate table."""

    name: str  # method name, or "parent"
    precision: str
    accuracy: float  # points (%), see module docstring
    size_bytes: int
    latency_ms: float  # p50 per call of the timed batch size (edgepack.timing)
    quantized_ops: int = 0
    min_cosine: float | None = None  # embedding models: worst text
    error: str | None = None  # the candidate could not be built or run
    accuracy_ci95: list[float] | None = None  # classifiers: bootstrap 95% interval of ``accuracy`` (points)


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


def select(parent: Measurement, candidates: Sequence[Measurement], max_accuracy_drop: float,
           by: str = "latency") -> tuple[Row | None, list[Row]]:
    """Apply the budget rules to measured numbers; returns (chosen row or None, all rows in input order).

    by="latency" (default): eligible = within budget and faster than the parent; the fastest wins (ties:
    smaller). by="size" (a device whose storage or memory is the limit): eligible = within budget and
    smaller than the parent, whatever its speed; the smallest wins (ties: faster).
    """
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
        elif by == "latency" and not c.latency_ms < parent.latency_ms:
            status = "not faster than parent"
        elif by == "size" and not c.size_bytes < parent.size_bytes:
            status = "not smaller than parent"
        else:
            status = "eligible"
        rows.append(Row(c, drop, ratio, parent.size_bytes / max(c.size_bytes, 1), status))
    eligible = [r for r in rows if r.status == "eligible"]
    if not eligible:
        return None, rows
    key = (lambda r: (r.m.latency_ms, r.m.size_bytes)) if by == "latency" else (lambda r: (r.m.size_bytes, r.m.latency_ms))
    best = min(eligible, key=key)
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


# --- measuring: the project's one scorer, comparator and timer ------------------------------------

def score(task: str, outputs: np.ndarray, reference: np.ndarray, labels: Sequence[int] | None) -> dict:
    """Accuracy points of ``outputs`` (N, C) probs or (N, D) embeddings, with a bootstrap 95% interval.

    Returns ``{"accuracy", "accuracy_ci95", "min_cosine"}``: classifiers score against ``labels``
    (``edgepack.scoring``; agreement with ``reference``'s labels when there are none) and have no cosine;
    embedding models score 100 x mean cosine to ``reference`` (``edgepack.compare``), no interval.
    """
    if task == "feature-extraction":
        c = compare(reference, outputs)
        return {"accuracy": 100.0 * c.mean_cosine, "accuracy_ci95": None, "min_cosine": c.min_cosine}
    gold = np.asarray(labels) if labels is not None else reference.argmax(axis=1)
    r = classification_report(outputs.argmax(axis=1), gold, num_classes=outputs.shape[1])
    return {"accuracy": 100.0 * r["accuracy"], "accuracy_ci95": [100.0 * v for v in r["accuracy_ci95"]],
            "min_cosine": None}


def latency_batches(texts: Sequence[str], batch_size: int, batches: int) -> list[list[str]]:
    """Up to ``batches`` whole batches of ``batch_size`` consecutive real texts (or the first texts, fewer)."""
    chunks = [list(texts[i:i + batch_size]) for i in range(0, len(texts), batch_size)]
    return [c for c in chunks if len(c) == batch_size][:batches] or [list(texts[:batch_size])]


def time_predictors(predictors: dict, texts: Sequence[str], batch_size: int, batches: int,
                    rounds: int) -> dict[str, float]:
    """p50 ms per ``infer`` call of ``batch_size`` real texts, for each predictor, with ``edgepack bench``'s
    protocol (``edgepack.timing.time_interleaved``: warm-up, turns with settle calls, ``rounds`` passes).

    Each call pads to its batch's longest text (as ``Predictor`` does); all predictors walk the same batches
    in turns, so load changes on the machine hit all models alike.
    """
    runs = {k: p.infer for k, p in predictors.items()}
    t = time_interleaved(runs, latency_batches(texts, batch_size, batches), TimingProtocol(repeats=rounds),
                         progress=True)  # minutes on a large model: show it
    return {k: s["p50_ms"] for k, s in t.summaries().items()}
