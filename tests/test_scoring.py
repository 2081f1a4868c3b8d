"""The one accuracy scorer (edgepack.scoring): point estimates and the bootstrap interval."""

from __future__ import annotations

import numpy as np
import pytest

from edgepack.scoring import accuracy, bootstrap_ci, classification_report, macro_f1


def _preds(n: int, acc: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` binary labels and predictions of which exactly round(acc * n) are right."""
    rng = np.random.default_rng(seed)
    gold = rng.integers(0, 2, n)
    pred = gold.copy()
    wrong = rng.choice(n, n - round(acc * n), replace=False)
    pred[wrong] = 1 - pred[wrong]
    return pred, gold


def test_accuracy_agreement_and_macro_f1():
    pred, gold = np.array([0, 1, 1, 0]), np.array([0, 1, 0, 0])
    assert accuracy(pred, gold) == 0.75
    # class 0: tp 2, fp 0, fn 1 -> 0.8; class 1: tp 1, fp 1, fn 0 -> 2/3
    assert macro_f1(pred, gold) == pytest.approx((0.8 + 2 / 3) / 2)
    assert macro_f1(pred, gold, num_classes=3) == pytest.approx((0.8 + 2 / 3 + 0) / 3)
    reference = np.array([0, 1, 1, 1])  # agreement with another model's labels is the same score
    assert classification_report(pred, reference)["accuracy"] == 0.75
    with pytest.raises(ValueError, match="equal, non-empty shapes"):
        accuracy(pred, gold[:3])


def test_bootstrap_interval_contains_the_estimate_and_narrows_with_n():
    widths = []
    for n in (40, 400, 4000):
        pred, gold = _preds(n, 0.8)
        r = classification_report(pred, gold, num_classes=2)
        lo, hi = r["accuracy_ci95"]
        assert r["accuracy"] == pytest.approx(0.8) and r["n"] == n
        assert lo < r["accuracy"] < hi
        widths.append(hi - lo)
    assert widths[0] > widths[1] > widths[2]
    # the binomial standard error at n=4000 is 0.0063: a 95% interval is about 4 of them wide
    assert widths[2] == pytest.approx(4 * 0.0063, rel=0.25)


def test_bootstrap_interval_is_deterministic_with_a_seed():
    pred, gold = _preds(200, 0.7)
    assert bootstrap_ci(pred, gold, seed=3) == bootstrap_ci(pred, gold, seed=3)
    assert classification_report(pred, gold) == classification_report(pred, gold)
    assert bootstrap_ci(pred, gold, seed=3) != bootstrap_ci(pred, gold, seed=4)
    assert bootstrap_ci(np.ones(5), np.ones(5)) == (1.0, 1.0)  # all right: no uncertainty to resample
    with pytest.raises(ValueError, match="no examples"):
        bootstrap_ci(np.zeros(0), np.zeros(0))
