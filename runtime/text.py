"""Tokenization for the runtime with the `tokenizers` library: truncate, then pad to the batch's longest."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence, Union

import numpy as np

Text = Union[str, tuple[str, str]]  # a text, or a (text, text_pair)


class TextEncoder:
    """Encodes texts once, then builds padded int64 feeds for any subset of them."""

    def __init__(self, tokenizer_json: str | Path | bytes, max_length: int, pad_token_id: int | None = None):
        """``tokenizer_json``: a tokenizer.json path, or its verified bytes."""
        from tokenizers import Tokenizer

        if isinstance(tokenizer_json, bytes):
            self.tokenizer = Tokenizer.from_str(tokenizer_json.decode("utf-8"))
        else:
            self.tokenizer = Tokenizer.from_file(str(tokenizer_json))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length=int(max_length))
        self.max_length = int(max_length)
        if pad_token_id is None:
            pad_token_id = next(
                (i for t in ("[PAD]", "<pad>") if (i := self.tokenizer.token_to_id(t)) is not None), 0
            )
        self.pad_token_id = int(pad_token_id)

    def encode(self, texts: Sequence[Text]) -> list:
        """tokenizers.Encoding objects, one per text (truncated, unpadded)."""
        return self.tokenizer.encode_batch(list(texts))

    def feeds(self, encodings: Sequence) -> dict[str, np.ndarray]:
        """Pad ``encodings`` to their longest: input_ids, attention_mask, token_type_ids, each (B, T) int64."""
        longest = max(len(e.ids) for e in encodings)
        B = len(encodings)
        ids = np.full((B, longest), self.pad_token_id, dtype=np.int64)
        mask = np.zeros((B, longest), dtype=np.int64)
        types = np.zeros((B, longest), dtype=np.int64)
        for row, e in enumerate(encodings):
            n = len(e.ids)
            ids[row, :n] = e.ids
            mask[row, :n] = 1
            types[row, :n] = e.type_ids
        return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}


def softmax(x: np.ndarray) -> np.ndarray:
    z = x - x.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def mean_pool(hidden: np.ndarray, mask: np.ndarray, normalize: bool = True) -> np.ndarray:
    """Mask-weighted mean over tokens: (B, T, H), (B, T) -> (B, H); L2-normalized if asked."""
    m = mask[..., None].astype(hidden.dtype)
    pooled = (hidden * m).sum(axis=1) / np.clip(m.sum(axis=1), 1e-9, None)
    if normalize:
        pooled = pooled / np.clip(np.linalg.norm(pooled, axis=-1, keepdims=True), 1e-12, None)
    return pooled


def cls_pool(hidden: np.ndarray, normalize: bool = False) -> np.ndarray:
    pooled = hidden[:, 0]
    if normalize:
        pooled = pooled / np.clip(np.linalg.norm(pooled, axis=-1, keepdims=True), 1e-12, None)
    return pooled
