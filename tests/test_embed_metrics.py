"""edgepack.embed_metrics on hand-made vectors whose answers are worked out by hand."""

import math

import numpy as np
import pytest

from edgepack.embed_metrics import (
    embedding_report,
    linear_probe,
    mean_cosine,
    neighbours,
    nn_agreement,
    recall_at_k,
)


def _angles(deg, width=2):
    """Unit vectors at the given angles (degrees), padded with zeros to ``width``."""
    r = np.radians(np.asarray(deg, dtype=np.float64))
    x = np.stack([np.cos(r), np.sin(r)], 1)
    return np.hstack([x, np.zeros((len(deg), width - 2))])


# Cosine neighbours of points on a circle are the nearest angles.
# teacher 0,10,55,90: top-1 = [1, 0, 3, 2], top-2 = {1,2} {0,2} {3,1} {2,1}
# student 0,10,40,90: top-1 = [1, 0, 1, 2], top-2 = {1,2} {0,2} {1,0} {2,1}
TEACHER, STUDENT = _angles([0, 10, 55, 90]), _angles([0, 10, 40, 90], width=3)


def test_mean_cosine():
    assert mean_cosine(np.array([[1.0, 0], [0, 1]]), np.array([[2.0, 0], [1, 1]])) == pytest.approx(
        (1 + 1 / math.sqrt(2)) / 2, abs=1e-12)


def test_neighbours_exclude_the_query():
    assert neighbours(TEACHER, 1)[:, 0].tolist() == [1, 0, 3, 2]
    assert neighbours(STUDENT, 2).tolist() == [[1, 2], [0, 2], [1, 0], [2, 1]]
    with pytest.raises(ValueError, match="need 1 <= k < number of texts"):
        neighbours(TEACHER, 4)


def test_nn_agreement_and_recall_across_widths():
    assert nn_agreement(STUDENT, TEACHER) == 0.75  # text 2: its neighbour is 1 for the student, 3 for the teacher
    assert recall_at_k(STUDENT, TEACHER, k=2) == (1 + 1 + 0.5 + 1) / 4
    assert nn_agreement(TEACHER, TEACHER) == 1.0 and recall_at_k(TEACHER, TEACHER, k=3) == 1.0
    with pytest.raises(ValueError, match="same texts"):
        nn_agreement(STUDENT[:3], TEACHER)


def test_linear_probe_exact():
    # 1-D, symmetric: the fitted boundary is at 0, so val [-3, 3, -0.5, 0.5] is predicted [0, 1, 0, 1].
    x, y = np.array([[-2.0], [-1], [1], [2]]), np.array([0, 0, 1, 1])
    r = linear_probe(x, y, np.array([[-3.0], [3], [-0.5], [0.5]]), np.array([0, 1, 0, 0]))
    assert r["accuracy"] == 0.75
    assert r["macro_f1"] == pytest.approx((4 / 5 + 2 / 3) / 2, abs=1e-12)  # class 0: tp 2 fn 1; class 1: tp 1 fp 1
    # three separable clusters in 2-D
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 5], [5, 0], [-5, -5]])
    lab = np.repeat(np.arange(3), 20)
    pts = centres[lab] + rng.normal(size=(60, 2))
    assert linear_probe(pts[::2], lab[::2], pts[1::2], lab[1::2])["accuracy"] == 1.0


def test_embedding_report():
    r = embedding_report(STUDENT, TEACHER, k=2)
    assert r == {"mean_cosine_vs_teacher": None, "nn_agreement": 0.75, "recall_at_2": 0.875, "eval_texts": 4}
    same = embedding_report(TEACHER, TEACHER, k=2, probe=(TEACHER, TEACHER, [0, 0, 1, 1], [0, 0, 1, 1]))
    assert same["mean_cosine_vs_teacher"] == pytest.approx(1.0, abs=1e-12)
    assert same["probe_accuracy"] == same["teacher_probe_accuracy"] == 1.0 and same["probe_train_texts"] == 4
