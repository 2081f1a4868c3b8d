"""Tokenization for the runtime with the `tokenizers` library: truncate, then pad to the batch's longest."""

from __future__ import annotations

from itertools import chain
from pathlib import Path
from typing import Sequence, Union

import numpy as np

Text = Union[str, tuple[str, str]]  # a text, or a (text, text_pair)
FEED_NAMES = ("input_ids", "attention_mask", "token_type_ids")


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
        self._encode_batch = getattr(self.tokenizer, "encode_batch_fast", self.tokenizer.encode_batch)
        # Read-only rows reused at batch 1: a (1, n) slice of them is a contiguous (1, n) array, so the
        # mask and the token types of an unpaired text cost no allocation (ONNX Runtime never writes inputs).
        self._ones = np.ones((1, self.max_length), dtype=np.int64)
        self._zeros = np.zeros((1, self.max_length), dtype=np.int64)
        self._ones.flags.writeable = self._zeros.flags.writeable = False

    def encode(self, texts: Sequence[Text]) -> list:
        """tokenizers.Encoding objects, one per text (truncated, unpadded).

        One text is encoded on the calling thread (``encode``: no thread-pool hand-off, which at batch 1
        costs more than the text); several go through the library's parallel ``encode_batch_fast`` (no
        character offsets, which the runtime never reads).
        """
        if len(texts) == 1:
            t = texts[0]
            return [self.tokenizer.encode(t) if isinstance(t, str) else self.tokenizer.encode(*t)]
        return self._encode_batch(list(texts))

    def feeds(self, encodings: Sequence, names: Sequence[str] = FEED_NAMES) -> dict[str, np.ndarray]:
        """Pad ``encodings`` to their longest: (B, T) int64 ``input_ids``, ``attention_mask`` and, when in
        ``names``, ``token_type_ids`` (only what a model reads is built; the mask always is)."""
        types = "token_type_ids" in names
        if len(encodings) == 1:  # no padding: arrays straight from the token lists
            e = encodings[0]
            ids = np.array(e.ids, dtype=np.int64)[None]
            n = ids.shape[1]
            shared = n <= self.max_length  # else an encoding made elsewhere, longer than this one truncates to
            out = {"input_ids": ids, "attention_mask": self._ones[:, :n] if shared else np.ones_like(ids)}
            if types:
                tt = e.type_ids
                out["token_type_ids"] = (self._zeros[:, :n] if shared and not any(tt)
                                         else np.array(tt, dtype=np.int64)[None])
            return out
        rows = [e.ids for e in encodings]
        lengths = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
        valid = np.arange(int(lengths.max())) < lengths[:, None]  # (B, T): True where a token is
        ids = np.full(valid.shape, self.pad_token_id, dtype=np.int64)
        ids[valid] = np.fromiter(chain.from_iterable(rows), dtype=np.int64, count=int(lengths.sum()))
        out = {"input_ids": ids, "attention_mask": valid.astype(np.int64)}
        if types:
            tt = np.zeros(valid.shape, dtype=np.int64)
            tt[valid] = np.fromiter(chain.from_iterable(e.type_ids for e in encodings), dtype=np.int64,
                                    count=int(lengths.sum()))
            out["token_type_ids"] = tt
        return out


def softmax(x: np.ndarray) -> np.ndarray:
    """Softmax over the last axis as a new float32 array (``x`` is left as it was)."""
    z = np.exp(x - x.max(axis=-1, keepdims=True), dtype=np.float32)
    z /= z.sum(axis=-1, keepdims=True)
    return z


def l2_normalize(x: np.ndarray) -> np.ndarray:
    x /= np.maximum(np.sqrt(np.einsum("ij,ij->i", x, x))[:, None], 1e-12)
    return x


def mean_pool(hidden: np.ndarray, mask: np.ndarray, normalize: bool = True) -> np.ndarray:
    """Mask-weighted mean over tokens: (B, T, H), (B, T) -> (B, H) float32; L2-normalized if asked.

    One batched matmul (mask row x hidden) instead of a masked (B, T, H) product and sum."""
    hidden = np.asarray(hidden, dtype=np.float32)
    m = np.asarray(mask, dtype=np.float32)
    pooled = np.matmul(m[:, None, :], hidden)[:, 0]
    pooled /= np.maximum(m.sum(axis=1, keepdims=True), 1e-9)
    return l2_normalize(pooled) if normalize else pooled


def cls_pool(hidden: np.ndarray, normalize: bool = False) -> np.ndarray:
    pooled = np.array(hidden[:, 0], dtype=np.float32, copy=True)
    return l2_normalize(pooled) if normalize else pooled
