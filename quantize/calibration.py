"""Calibration data for static quantization: real texts, tokenized as the runtime does, padded per batch."""

from __future__ import annotations

import random
from typing import Sequence

import numpy as np

from edgepack.artifact import Artifact
from edgepack.errors import EdgepackError
from edgepack.quantize.config import CalibrationConfig


def calibration_batches(parent: Artifact, texts: Sequence[str], cfg: CalibrationConfig,
                        same_shape: bool = False) -> list[dict[str, np.ndarray]]:
    """Up to ``cfg.num_samples`` texts (seeded sample) as int64 feeds of ``cfg.batch_size`` rows each.

    Each batch is padded to its own longest text, exactly like ``Predictor`` batches, so the ranges
    seen in calibration are those of real serving (padding included). ``same_shape`` pads every batch
    to the longest sample instead (ORT's histogram calibrators stack all batches into one array), and
    drops a short last batch.
    """
    from edgepack.runtime.text import TextEncoder

    texts = [t for t in texts if isinstance(t, str) and t.strip()]
    if not texts:
        raise EdgepackError("static quantization needs calibration texts; none were given")
    if cfg.num_samples < 1 or cfg.batch_size < 1:
        raise EdgepackError("calibration num_samples and batch_size must be >= 1")
    if len(texts) > cfg.num_samples:
        texts = random.Random(cfg.seed).sample(list(texts), cfg.num_samples)
    rt = parent.runtime
    enc = TextEncoder(parent.file("tokenizer"), rt.max_length or 512, rt.pad_token_id)
    names = {i["name"] for i in parent.inputs}
    encodings = enc.encode(texts)
    longest = max(len(e.ids) for e in encodings)
    batches = []
    for start in range(0, len(encodings), cfg.batch_size):
        feeds = enc.feeds(encodings[start:start + cfg.batch_size])
        if same_shape:
            if len(feeds["input_ids"]) < min(cfg.batch_size, len(encodings)):
                break
            feeds = _pad_to(feeds, longest, enc.pad_token_id)
        batches.append({k: v for k, v in feeds.items() if k in names})
    return batches


def _pad_to(feeds: dict[str, np.ndarray], length: int, pad_id: int) -> dict[str, np.ndarray]:
    """Right-pad (B, T) int64 feeds to (B, length)."""
    out = {}
    for k, v in feeds.items():
        fill = pad_id if k == "input_ids" else 0
        out[k] = np.pad(v, ((0, 0), (0, length - v.shape[1])), constant_values=fill)
    return out


class TextCalibrationReader:
    """An ``onnxruntime.quantization.CalibrationDataReader`` over prepared feeds (restartable)."""

    def __init__(self, batches: list[dict[str, np.ndarray]]):
        self.batches = batches
        self._it = iter(batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)

    def rewind(self) -> None:
        self._it = iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def make_reader(batches: list[dict[str, np.ndarray]]):
    """A TextCalibrationReader that is also an instance of ORT's CalibrationDataReader base class."""
    from onnxruntime.quantization import CalibrationDataReader

    class _Reader(TextCalibrationReader, CalibrationDataReader):
        pass

    return _Reader(batches)
