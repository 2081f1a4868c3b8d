"""The one output comparator: a model's outputs against a reference's, on the positions that are used.

>>> from edgepack.compare import compare
>>> c = compare(reference_logits, candidate_logits)                  # (B, C) vs (B, C)
>>> c = compare(ref_hidden, got_hidden, mask=feeds["attention_mask"])  # (B, T, H), padded tokens ignored
>>> c.max_abs_diff, c.mean_cosine, c.min_cosine, c.sqnr_db

Outputs are compared row by row: a row is one example of a (B, C) or (B, D) output, or one valid token of
a (B, T, H) hidden-state output (``mask`` (B, T) drops padded positions, which nothing downstream reads).
``compare_many`` pools the rows of several batches (e.g. several validation feeds) into one comparison.

- ``max_abs_diff``: the largest absolute difference of any element (export parity, ``atol``);
- ``mean_cosine`` / ``min_cosine``: cosine similarity per row (embeddings, hidden states);
- ``sqnr_db``: signal-to-quantization-noise ratio, 10 log10(sum ref^2 / sum (ref - got)^2), inf when equal.

Standard library + numpy only. The real sentences validations run on are ``edgepack.data.SAMPLE_SENTENCES``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class Comparison:
    """How far ``got`` is from ``reference`` over ``rows`` compared rows (see the module docstring)."""

    max_abs_diff: float
    mean_cosine: float
    min_cosine: float
    sqnr_db: float
    rows: int

    def to_dict(self) -> dict:
        return asdict(self)


def rows(x: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """``x`` as (rows, features) float64: (B, T, H) with ``mask`` (B, T) -> its valid tokens (K, H)."""
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 3 and mask is not None:
        keep = np.asarray(mask).astype(bool)
        if keep.shape != a.shape[:2]:
            raise ValueError(f"mask {keep.shape} does not match the output's (batch, sequence) {a.shape[:2]}")
        return a[keep]  # (K, H)
    if a.ndim == 0:
        return a.reshape(1, 1)
    return a.reshape(-1, a.shape[-1])  # (N, C); (B, T, H) unmasked -> (B*T, H)


def sqnr_db(reference: np.ndarray, approx: np.ndarray) -> float:
    """Signal-to-quantization-noise ratio in dB: 10 log10(sum ref^2 / sum (ref - approx)^2); inf if equal."""
    ref = np.asarray(reference, dtype=np.float64)
    noise = float(np.sum((ref - np.asarray(approx, dtype=np.float64)) ** 2))
    return float("inf") if noise == 0 else float(10.0 * np.log10(float(np.sum(ref**2)) / noise))


def cosine(reference: np.ndarray, got: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Cosine similarity per row (N,) of two outputs of the same shape (masked tokens dropped)."""
    a, b = rows(reference, mask), rows(got, mask)
    if a.shape != b.shape:
        raise ValueError(f"cannot compare outputs of shapes {np.shape(reference)} and {np.shape(got)}")
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return (a * b).sum(axis=1) / np.clip(norms, 1e-12, None)


def compare_many(pairs: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray | None]]) -> Comparison:
    """One comparison over the rows of several ``(reference, got, mask or None)`` pairs."""
    refs, gots = [], []
    for ref, got, mask in pairs:
        if np.shape(ref) != np.shape(got):
            raise ValueError(f"cannot compare outputs of shapes {np.shape(ref)} and {np.shape(got)}")
        refs.append(rows(ref, mask))
        gots.append(rows(got, mask))
    if not refs:
        raise ValueError("nothing to compare")
    ref, got = np.concatenate(refs), np.concatenate(gots)
    if ref.size == 0:
        raise ValueError("nothing to compare: every position is masked")
    cos = cosine(ref, got)
    return Comparison(
        max_abs_diff=float(np.abs(ref - got).max()),
        mean_cosine=float(cos.mean()),
        min_cosine=float(cos.min()),
        sqnr_db=sqnr_db(ref, got),
        rows=int(ref.shape[0]),
    )


def compare(reference: np.ndarray, got: np.ndarray, mask: np.ndarray | None = None) -> Comparison:
    """Compare one output with its reference (``mask`` (B, T) for (B, T, H) hidden states)."""
    return compare_many([(reference, got, mask)])
