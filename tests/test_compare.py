"""The one output comparator (edgepack.compare): exact values on small arrays."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edgepack.compare import compare, compare_many, cosine, rows, sqnr_db


def test_sqnr_of_a_known_noise():
    ref = np.array([3.0, 4.0, 0.0, 0.0])  # signal energy 25
    noisy = ref + np.array([0.5, 0.0, 0.0, 0.0])  # noise energy 0.25 -> 100x -> 20 dB
    assert sqnr_db(ref, noisy) == pytest.approx(20.0)
    assert sqnr_db(ref, ref + np.array([0.0, 0.0, 0.05, 0.0])) == pytest.approx(10 * math.log10(25 / 0.0025))
    assert sqnr_db(ref, ref) == float("inf")
    c = compare(ref.reshape(2, 2), noisy.reshape(2, 2))
    assert c.sqnr_db == pytest.approx(20.0) and c.max_abs_diff == pytest.approx(0.5) and c.rows == 2


def test_cosine_of_orthogonal_parallel_and_opposite_rows():
    ref = np.array([[1.0, 0.0], [0.0, 3.0], [1.0, 1.0]])
    got = np.array([[0.0, 2.0], [0.0, 1.0], [-2.0, -2.0]])  # orthogonal, parallel (scaled), opposite
    np.testing.assert_allclose(cosine(ref, got), [0.0, 1.0, -1.0], atol=1e-12)
    c = compare(ref, got)
    assert c.min_cosine == pytest.approx(-1.0) and c.mean_cosine == pytest.approx(0.0)
    assert c.max_abs_diff == pytest.approx(3.0)
    assert cosine(np.zeros((1, 2)), np.ones((1, 2)))[0] == 0.0  # a zero row is not a division by zero


def test_hidden_states_compare_only_unmasked_tokens():
    ref = np.zeros((2, 3, 2))  # (B, T, H)
    ref[0, 0] = [1.0, 0.0]
    ref[0, 1] = [0.0, 1.0]
    ref[1, 0] = [2.0, 2.0]
    got = ref.copy()
    got[0, 1] = [0.0, 2.0]  # a valid token, scaled: cosine 1, abs diff 1
    got[0, 2] = [99.0, -99.0]  # padding: ignored
    got[1, 1:] = 50.0  # padding: ignored
    mask = np.array([[1, 1, 0], [1, 0, 0]])
    assert rows(ref, mask).shape == (3, 2)
    c = compare(ref, got, mask)
    assert c.rows == 3 and c.max_abs_diff == pytest.approx(1.0)
    assert c.min_cosine == pytest.approx(1.0) and c.mean_cosine == pytest.approx(1.0)
    assert c.sqnr_db == pytest.approx(10 * math.log10((1 + 1 + 8) / 1.0))
    unmasked = compare(ref, got)  # every position counts without the mask
    assert unmasked.rows == 6 and unmasked.max_abs_diff == pytest.approx(99.0)
    with pytest.raises(ValueError, match="mask"):
        compare(ref, got, mask[:, :2])


def test_compare_many_pools_rows_of_batches_with_different_shapes():
    a = (np.array([[1.0, 0.0]]), np.array([[1.0, 0.0]]), None)  # (1, C)
    ref3 = np.ones((1, 4, 2))
    got3 = ref3.copy()
    got3[0, 0] = [1.0, -1.0]
    b = (ref3, got3, np.array([[1, 0, 0, 0]]))  # one valid token, orthogonal to its reference
    c = compare_many([a, b])
    assert c.rows == 2 and c.min_cosine == pytest.approx(0.0) and c.mean_cosine == pytest.approx(0.5)
    assert c.max_abs_diff == pytest.approx(2.0) and c.to_dict()["rows"] == 2
    with pytest.raises(ValueError, match="shapes"):
        compare(np.ones((2, 3)), np.ones((3, 2)))
    with pytest.raises(ValueError, match="nothing to compare"):
        compare_many([])
