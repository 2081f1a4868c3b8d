"""Output parity of an ONNX graph against its parent artifact's graph, on probe texts (what the passes check).

A fused or quantized graph is run next to its parent on the same feeds, tokenized as the runtime does, and
the first outputs are compared with ``edgepack.compare`` (padded positions of hidden states ignored):

>>> from edgepack.runtime.parity import compare_onnx
>>> c = compare_onnx(parent_artifact, "candidate/model.onnx")
>>> c.max_abs_diff, c.sqnr_db
"""

from __future__ import annotations

import os

import numpy as np

from edgepack.artifact import Artifact
from edgepack.compare import Comparison, compare_many
from edgepack.data import SAMPLE_SENTENCES


def probe_feeds(art: Artifact) -> list[dict[str, np.ndarray]]:
    """The probe texts as one padded batch plus the first text alone, tokenized as the runtime does."""
    from edgepack.runtime.text import TextEncoder

    enc = TextEncoder(art.file("tokenizer"), art.runtime.max_length or 128, art.runtime.pad_token_id)
    names = {i["name"] for i in art.inputs}
    feeds = [enc.feeds(enc.encode(SAMPLE_SENTENCES)), enc.feeds(enc.encode(SAMPLE_SENTENCES[:1]))]
    return [{k: v for k, v in f.items() if k in names} for f in feeds]


def compare_onnx(parent: Artifact, candidate: str | os.PathLike) -> Comparison:
    """The candidate graph's first output vs the parent's on ``probe_feeds`` (ONNX Runtime, CPU)."""
    from edgepack.runtime.ort import OrtRunner

    a, b = OrtRunner(parent.file("model")), OrtRunner(candidate)
    key = a.output_names[0]
    pairs = []
    for feeds in probe_feeds(parent):
        ref, got = a.infer(feeds)[key], b.infer(feeds)[key]
        pairs.append((ref, got, feeds.get("attention_mask") if ref.ndim == 3 else None))
    return compare_many(pairs)
