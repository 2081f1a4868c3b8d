"""Tokenization for the runtime with the `tokenizers` library: truncate, then pad to the batch's longest."""

from __future__ import annotations

from itertools import chain
from math import exp
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
        self._ascii, self._ascii_gate = _ascii_tokenizer(self.tokenizer, source)

    def encode(self, texts: Sequence[Text]) -> list:
        """tokenizers.Encoding objects, one per text (truncated, unpadded).

        One text is encoded on the calling thread (``encode``: no thread-pool hand-off, which at batch 1
        costs more than the text); several go through the library's parallel ``encode_batch_fast`` (no
        character offsets, which the runtime never reads). One printable ASCII text goes through
        ``_ascii_tokenizer``'s equivalent pipeline where the tokenizer has one (the same ids, ~10 us less).
        """
        if len(texts) == 1:
            t = texts[0]
            if isinstance(t, str):
                if (self._ascii is not None and t.isascii() and t.isprintable()
                        and not any(map(t.__contains__, self._ascii_gate))):
                    return [self._ascii.encode(t.lower())]
                return [self.tokenizer.encode(t)]
            return [self.tokenizer.encode(*t)]
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


def _ascii_tokenizer(tokenizer, source: str) -> tuple[object | None, tuple[str, ...]]:
    """For a lowercasing ``BertNormalizer`` (BERT-style uncased vocabularies): a copy of ``tokenizer`` (loaded
    again from its JSON ``source``) without a normalizer, and the characters whose presence rules it out;
    (None, ()) otherwise.

    On a printable ASCII text, ``copy.encode(text.lower())`` gives ``tokenizer.encode(text)``'s ids: of
    BertNormalizer's steps, cleaning (control characters out, whitespace to spaces), CJK spacing and accent
    stripping (NFD, then dropping combining marks) change no printable ASCII character, and its lowercasing
    of ASCII is ``str.lower``'s. Lowercasing in the tokenizer is the costly step (a per-character rewrite of
    its aligned string): after a model call, 29-32 us vs 40-43 us for a short review (AMD EPYC, AVX2). The
    one other thing that reads the text before normalization, added tokens that match it raw
    (``normalized: false``, e.g. ``[CLS]``), is ruled out by the gate: a text holding the first letter of such
    a token (either case) takes the full pipeline. Tokenizers with many such first letters get no copy.
    """
    from tokenizers import Tokenizer, normalizers

    norm = tokenizer.normalizer
    if not isinstance(norm, normalizers.BertNormalizer) or not norm.lowercase:
        return None, ()
    gate = sorted({c for t in tokenizer.get_added_tokens_decoder().values() if not t.normalized and t.content
                   for c in (t.content[0].lower(), t.content[0].upper()) if c.isascii()})
    if len(gate) > 4:
        return None, ()
    fast = Tokenizer.from_str(source)
    fast.normalizer = None
    fast.no_padding()
    fast.enable_truncation(**tokenizer.truncation)
    return fast, tuple(gate)


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
