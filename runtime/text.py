"""Tokenization for the runtime with the `tokenizers` library: truncate, then pad to the batch's longest."""

from __future__ import annotations

from itertools import chain
from math import exp
from pathlib import Path
from typing import Sequence, Union

import numpy as np

from edgepack.runtime.wordpiece import WordCache

Text = Union[str, tuple[str, str]]  # a text, or a (text, text_pair)
FEED_NAMES = ("input_ids", "attention_mask", "token_type_ids")


class TextEncoder:
    """Encodes texts once, then builds padded int64 feeds for any subset of them."""

    def __init__(self, tokenizer_json: str | Path | bytes, max_length: int, pad_token_id: int | None = None):
        """``tokenizer_json``: a tokenizer.json path, or its verified bytes."""
        from tokenizers import Tokenizer

        source = (tokenizer_json.decode("utf-8") if isinstance(tokenizer_json, bytes)
                  else Path(tokenizer_json).read_text(encoding="utf-8"))
        self.tokenizer = Tokenizer.from_str(source)
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
        self._words = WordCache.of(self.tokenizer)  # None: every text goes through the library

    def encode(self, texts: Sequence[Text]) -> list:
        """One encoding per text (truncated, unpadded): ``ids``, ``type_ids`` and ``len`` are what is read.

        Printable ASCII texts of a BERT-style WordPiece tokenizer go through ``WordCache`` (the library's ids,
        from a dict of words: 7 us for a review snippet where the library takes 30-55 us). The rest go
        through the library: one text on the calling thread (``encode``: no thread-pool hand-off, which
        at batch 1 costs more than the text), several through its parallel ``encode_batch_fast`` (no
        character offsets, which the runtime never reads).
        """
        words = self._words
        if words is not None:
            out = [words.encode(t) if type(t) is str else None for t in texts]
            if None not in out:
                return out
            rest = [i for i, e in enumerate(out) if e is None]
            for i, e in zip(rest, self._library([texts[i] for i in rest])):
                out[i] = e
            return out
        return self._library(texts)

    def _library(self, texts: Sequence[Text]) -> list:
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
        n = max(map(len, encodings))
        out = {k: np.empty((len(encodings), n), dtype=np.int64)
               for k in ("input_ids", "attention_mask", "token_type_ids") if k != "token_type_ids" or types}
        self.fill(encodings, out)
        return out

    def buffers(self, batch: int, length: int, names: Sequence[str] = FEED_NAMES) -> dict[str, np.ndarray]:
        """Arrays for ``fill`` to write (B, T) feeds into, over and over. At batch 1 the mask and the token types
        are read-only views of constant rows: one text's mask is all ones, and its token types are all zero
        unless it is a pair (which ``fill`` then refuses), so only its ids are ever written."""
        out = {k: np.zeros((batch, length), dtype=np.int64) for k in names}
        if batch == 1 and length <= self.max_length:
            out["attention_mask"] = self._ones[:, :length]
            if "token_type_ids" in out:
                out["token_type_ids"] = self._zeros[:, :length]
        return out

    def fill(self, encodings: Sequence, inputs: dict[str, np.ndarray]) -> bool:
        """Write ``encodings`` into (B, T) int64 arrays, T their longest, padded: ``input_ids`` and, where
        ``inputs`` has them, ``attention_mask`` and ``token_type_ids``. Every element is written, so nothing
        of an earlier call survives in a reused buffer, except the constant rows ``buffers`` gives at batch 1,
        which already hold what would be written; a text whose token types are not all zero cannot use those
        (False: nothing more is written)."""
        ids, mask, types = inputs["input_ids"], inputs.get("attention_mask"), inputs.get("token_type_ids")
        if len(encodings) == 1:
            e = encodings[0]
            if mask is not None and mask.base is self._ones:  # constant rows from ``buffers``: ids alone change
                if types is not None and any(e.type_ids):
                    return False
                ids[0] = e.ids
                return True
            ids[0] = e.ids
            if mask is not None:
                mask.fill(1)
            if types is not None:
                types[0] = e.type_ids
            return True
        rows = [e.ids for e in encodings]
        lengths = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
        valid = np.arange(ids.shape[1]) < lengths[:, None]  # (B, T): True where a token is
        total = int(lengths.sum())
        ids.fill(self.pad_token_id)
        ids[valid] = np.fromiter(chain.from_iterable(rows), dtype=np.int64, count=total)
        if mask is not None:
            np.copyto(mask, valid)
        if types is not None:
            types.fill(0)
            types[valid] = np.fromiter(chain.from_iterable(e.type_ids for e in encodings), dtype=np.int64,
                                       count=total)
        return True


# Up to this many logits, softmax runs on Python floats: numpy's reductions cost more per call than the math
# (measured right after a model call, batch 1, two classes: 8-12 us vs 18-25 us).
_SMALL_SOFTMAX = 64


def softmax(x: np.ndarray) -> np.ndarray:
    """Softmax over the last axis of a (B, C) array as a new float32 array (``x`` is left as it was)."""
    if 0 < x.size <= _SMALL_SOFTMAX and x.ndim == 2:
        out = []
        for row in x.tolist():
            top = max(row)
            e = [exp(v - top) for v in row]
            s = 1.0 / sum(e)
            out.append([v * s for v in e])
        return np.array(out, dtype=np.float32)
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
