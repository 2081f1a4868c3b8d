"""Classification metrics with numpy only (usable from the lean runtime)."""

from __future__ import annotations

import numpy as np


def accuracy(pred: np.ndarray, gold: np.ndarray) -> float:
    pred, gold = np.asarray(pred), np.asarray(gold)
    if pred.shape != gold.shape or pred.size == 0:
        raise ValueError(f"need equal, non-empty shapes; got {pred.shape} and {gold.shape}")
    return float((pred == gold).mean())


def macro_f1(pred: np.ndarray, gold: np.ndarray, num_classes: int | None = None) -> float:
    """Unweighted mean of per-class F1 over the classes seen in ``gold`` or ``pred`` (or 0..num_classes-1)."""
    pred, gold = np.asarray(pred), np.asarray(gold)
    classes = range(num_classes) if num_classes else np.union1d(pred, gold)
    f1s = []
    for c in classes:
        tp = np.sum((pred == c) & (gold == c))
        fp = np.sum((pred == c) & (gold != c))
        fn = np.sum((pred != c) & (gold == c))
        denom = 2 * tp + fp + fn
        f1s.append(2 * tp / denom if denom else 0.0)
    return float(np.mean(f1s))


def bootstrap_ci(
    pred: np.ndarray, gold: np.ndarray, n: int = 1000, level: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of accuracy (resampling examples with replacement)."""
    correct = (np.asarray(pred) == np.asarray(gold)).astype(np.float64)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, correct.size, size=(n, correct.size))
    means = correct[idx].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)


def classification_report(pred: np.ndarray, gold: np.ndarray, num_classes: int | None = None) -> dict:
    """accuracy, macro-F1 and a 95% bootstrap CI of accuracy, as a JSON-friendly dict."""
    lo, hi = bootstrap_ci(pred, gold)
    return {"accuracy": accuracy(pred, gold), "macro_f1": macro_f1(pred, gold, num_classes),
            "accuracy_ci95": [lo, hi], "n": int(np.asarray(gold).size)}
