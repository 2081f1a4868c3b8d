"""The one accuracy scorer: accuracy (or agreement with a reference), macro-F1 and a bootstrap 95% interval,
and the paired bootstrap interval of the accuracy difference of two models on the same examples.

>>> from edgepack.scoring import classification_report
>>> classification_report(pred, gold, num_classes=2)        # accuracy vs the labels
{'accuracy': 0.86, 'macro_f1': 0.85, 'accuracy_ci95': [0.80, 0.91], 'n': 160}
>>> classification_report(pred, reference_pred)             # agreement with a reference model's labels

Numpy only (usable from the lean runtime). The interval is a percentile bootstrap over examples with a
fixed seed, so the same predictions always give the same interval: differences between models that fall
inside it are noise of the evaluation set, not of the models.
"""

from __future__ import annotations

import numpy as np


def accuracy(pred: np.ndarray, gold: np.ndarray) -> float:
    """Fraction of ``pred`` equal to ``gold`` (labels, or a reference model's labels: agreement)."""
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
    """Percentile bootstrap interval of accuracy: ``n`` resamples of the examples with replacement."""
    correct = (np.asarray(pred) == np.asarray(gold)).astype(np.float64)
    if correct.size == 0:
        raise ValueError("no examples to bootstrap")
    return _bootstrap_mean_ci(correct, n, level, seed)


def _bootstrap_mean_ci(values: np.ndarray, n: int, level: float, seed: int) -> tuple[float, float]:
    """Percentile interval of the mean of ``values`` over ``n`` resamples of its entries with replacement."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, values.size, size=(n, values.size))
    lo, hi = np.quantile(values[idx].mean(axis=1), [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)


def paired_bootstrap_ci(
    pred_a: np.ndarray, pred_b: np.ndarray, gold: np.ndarray, n: int = 1000, level: float = 0.95, seed: int = 0
) -> dict:
    """Accuracy of ``pred_a`` minus that of ``pred_b`` on the same examples, with a paired percentile bootstrap
    interval (both models resampled on the same ``n`` index draws, so per-example difficulty cancels).

    Returns ``{"accuracy_a", "accuracy_b", "diff", "ci95": [lo, hi], "n"}`` (``ci95`` is at ``level``); a
    difference whose interval holds 0 is not distinguishable from the noise of the evaluation set.
    """
    pred_a, pred_b, gold = np.asarray(pred_a), np.asarray(pred_b), np.asarray(gold)
    if not pred_a.shape == pred_b.shape == gold.shape or gold.size == 0:
        raise ValueError(f"need two equal, non-empty prediction sets for the labels; got {pred_a.shape}, "
                         f"{pred_b.shape} and {gold.shape}")
    a, b = (pred_a == gold).astype(np.float64), (pred_b == gold).astype(np.float64)
    lo, hi = _bootstrap_mean_ci(a - b, n, level, seed)
    return {"accuracy_a": float(a.mean()), "accuracy_b": float(b.mean()), "diff": float(a.mean() - b.mean()),
            "ci95": [float(lo), float(hi)], "n": int(a.size)}


def describe_difference(d: dict, a: str, b: str) -> str:
    """One sentence for a ``paired_bootstrap_ci`` result that claims nothing outside its interval."""
    lo, hi = d["ci95"]
    span = f"{100 * d['diff']:+.1f} points (paired 95% CI {100 * lo:+.1f} to {100 * hi:+.1f}, n={d['n']})"
    if lo > 0:
        return f"{a} is more accurate than {b}: {span}"
    if hi < 0:
        return f"{a} is less accurate than {b}: {span}"
    return f"{a} vs {b}: {span}; the interval holds 0, so no difference is shown"


def classification_report(
    pred: np.ndarray, gold: np.ndarray, num_classes: int | None = None, seed: int = 0
) -> dict:
    """accuracy, macro-F1 and a 95% bootstrap interval of accuracy, as a JSON-friendly dict.

    ``gold``: true labels, or a reference model's predicted labels (then ``accuracy`` is agreement).
    """
    lo, hi = bootstrap_ci(pred, gold, seed=seed)
    return {"accuracy": accuracy(pred, gold), "macro_f1": macro_f1(pred, gold, num_classes),
            "accuracy_ci95": [lo, hi], "n": int(np.asarray(gold).size)}
