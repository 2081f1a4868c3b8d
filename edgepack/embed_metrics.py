"""How close a student's sentence embeddings are to its teacher's, in terms a user reads (numpy only).

>>> from edgepack.embed_metrics import embedding_report
>>> embedding_report(val_S, val_T, probe=(train_S, train_T, train_y, val_y))
{'mean_cosine_vs_teacher': 0.97, 'nn_agreement': 0.81, 'recall_at_10': 0.74, 'probe_accuracy': 0.76, ...}

- ``mean_cosine``: cosine of each text's student embedding with its teacher embedding, averaged (same
  width only: a narrower student's vectors live in another space).
- ``nn_agreement``: for each text, is its nearest neighbour among the other texts the same for the
  student as for the teacher (each model in its own space, so any widths compare).
- ``recall_at_k``: the share of the teacher's k nearest neighbours of each text that are also among
  the student's k nearest, averaged (a retrieval index built on the student returns those).
- ``linear_probe``: a multinomial logistic regression fitted on one model's training embeddings and
  scored on its validation embeddings (how much label information the embedding keeps).

Neighbours are by cosine similarity, the query itself excluded; ties go to the lower index.
"""

from __future__ import annotations

import numpy as np

from edgepack.compare import cosine
from edgepack.scoring import accuracy, macro_f1


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Rows of ``x`` (N, D) scaled to unit length (zero rows stay zero), float64."""
    x = np.asarray(x, dtype=np.float64)
    return x / np.clip(np.linalg.norm(x, axis=1, keepdims=True), 1e-12, None)


def mean_cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Mean over rows of cos(a_i, b_i); a, b: (N, D)."""
    return float(cosine(a, b).mean())


def neighbours(x: np.ndarray, k: int) -> np.ndarray:
    """Indices (N, k) of each row's k most cosine-similar other rows, most similar first."""
    x = l2_normalize(x)
    n = x.shape[0]
    if not 1 <= k < n:
        raise ValueError(f"need 1 <= k < number of texts ({n}), got k={k}")
    sim = x @ x.T  # (N, N)
    np.fill_diagonal(sim, -np.inf)
    return np.argsort(-sim, axis=1, kind="stable")[:, :k]


def nn_agreement(student: np.ndarray, teacher: np.ndarray) -> float:
    """Share of rows whose nearest other row is the same under ``student`` (N, D_S) and ``teacher`` (N, D_T)."""
    _same_rows(student, teacher)
    return float((neighbours(student, 1)[:, 0] == neighbours(teacher, 1)[:, 0]).mean())


def recall_at_k(student: np.ndarray, teacher: np.ndarray, k: int = 10) -> float:
    """Mean share of each row's k teacher neighbours found among its k student neighbours."""
    _same_rows(student, teacher)
    k = min(k, student.shape[0] - 1)
    nS, nT = neighbours(student, k), neighbours(teacher, k)
    return float(np.mean([len(set(s) & set(t)) / k for s, t in zip(nS.tolist(), nT.tolist())]))


def linear_probe(train_x: np.ndarray, train_y: np.ndarray, val_x: np.ndarray, val_y: np.ndarray,
                 num_classes: int | None = None, l2: float = 1e-3, steps: int = 500) -> dict:
    """Fit a multinomial logistic regression on (train_x (N, D), train_y (N,)); score it on val.

    Features are standardized with the training mean/std; the L2-regularized cross-entropy is
    minimized by Nesterov-accelerated gradient descent with step 1/L (L: the loss's smoothness bound),
    a fixed number of ``steps``: deterministic, no solver dependency. Returns accuracy and macro_f1.
    """
    train_y, val_y = np.asarray(train_y, dtype=np.int64), np.asarray(val_y, dtype=np.int64)
    c = int(num_classes or max(train_y.max(), val_y.max()) + 1)
    mu, sd = train_x.mean(0), train_x.std(0) + 1e-8
    X = np.hstack([(np.asarray(train_x, np.float64) - mu) / sd, np.ones((len(train_y), 1))])  # (N, D+1)
    Y = np.eye(c)[train_y]  # (N, C)
    n = X.shape[0]
    L = 0.5 * np.linalg.norm(X, 2) ** 2 / n + l2  # softmax CE Hessian <= 0.5 X^T X / n (per class)
    W = V = np.zeros((X.shape[1], c))
    t = 1.0
    for _ in range(steps):
        Z = X @ V
        P = np.exp(Z - Z.max(1, keepdims=True))
        P /= P.sum(1, keepdims=True)
        grad = X.T @ (P - Y) / n + l2 * V
        W_next = V - grad / L
        t_next = (1 + np.sqrt(1 + 4 * t * t)) / 2
        V = W_next + (t - 1) / t_next * (W_next - W)
        W, t = W_next, t_next
    Xv = np.hstack([(np.asarray(val_x, np.float64) - mu) / sd, np.ones((len(val_y), 1))])
    pred = (Xv @ W).argmax(1)
    return {"accuracy": accuracy(pred, val_y), "macro_f1": macro_f1(pred, val_y, c)}


def embedding_report(val_S: np.ndarray, val_T: np.ndarray, k: int = 10,
                     probe: tuple | None = None, num_classes: int | None = None) -> dict:
    """The metrics above for student vs teacher validation embeddings (N, D_S) / (N, D_T).

    probe: ``(train_S, train_T, train_y, val_y)`` to add ``probe_accuracy`` / ``teacher_probe_accuracy``
    (and macro-F1s). ``mean_cosine_vs_teacher`` is None when the widths differ.
    """
    out = {"mean_cosine_vs_teacher": mean_cosine(val_S, val_T) if val_S.shape == val_T.shape else None,
           "nn_agreement": nn_agreement(val_S, val_T), f"recall_at_{k}": recall_at_k(val_S, val_T, k),
           "eval_texts": int(val_S.shape[0])}
    if probe is not None:
        train_S, train_T, train_y, val_y = probe
        s = linear_probe(train_S, train_y, val_S, val_y, num_classes)
        t = linear_probe(train_T, train_y, val_T, val_y, num_classes)
        out.update(probe_accuracy=s["accuracy"], probe_macro_f1=s["macro_f1"],
                   teacher_probe_accuracy=t["accuracy"], teacher_probe_macro_f1=t["macro_f1"],
                   probe_train_texts=len(train_y))
    return out


def _same_rows(a: np.ndarray, b: np.ndarray) -> None:
    if a.ndim != 2 or b.ndim != 2 or a.shape[0] != b.shape[0]:
        raise ValueError(f"need (N, D) embeddings of the same texts, got {np.shape(a)} and {np.shape(b)}")
