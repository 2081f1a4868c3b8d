"""A word cache in front of a BERT-style WordPiece tokenizer, for printable ASCII texts.

For one short text, the `tokenizers` library spends more time building its ``Encoding`` (tokens, offsets,
words, masks) than splitting it: 30-50 us for a review snippet right after a model call (AMD EPYC, AVX2),
which is 10% of a 0.4 ms INT8 model call by itself. ``WordCache`` gives the same ids for the texts where
BERT's pipeline can be read off without the library:

- normalizer ``BertNormalizer``: on printable ASCII, cleaning, CJK spacing and accent stripping change
  nothing, and lowercasing is ``str.lower``;
- pre-tokenizer ``BertPreTokenizer``: split on spaces, and every ASCII character that is neither a letter
  nor a digit is a word of its own (BERT's punctuation rule, which covers all of them);
- model ``WordPiece``: each word's pieces come from the library (``tokenizer.model.tokenize``) the first
  time the word is seen, then from a dict;
- the post-processor's special tokens around a single text and the tokenizer's right-side truncation are
  read from the library (``encode`` of a probe word) once.

A text the cache cannot vouch for (not printable ASCII; holding the first character of an added token,
which the library matches before splitting, e.g. ``[`` of ``[CLS]``) gets ``None``: the caller uses the
library. ``tests/test_wordpiece.py`` checks the ids against the library's on real and adversarial texts.
"""

from __future__ import annotations

import re

_SPLIT = {True: re.compile(r"[a-z0-9]+|[^a-z0-9 ]"), False: re.compile(r"[A-Za-z0-9]+|[^A-Za-z0-9 ]")}
# words kept; past this the dict starts over (a word costs ~100 bytes: ~6 MB at most)
MAX_WORDS = 1 << 16
# more distinct first characters of added tokens than this and nearly every text would bypass the cache
MAX_GATE = 4


class Ids:
    """What the runtime reads of a ``tokenizers.Encoding`` for one unpaired text: ``ids``, ``type_ids``, len."""

    __slots__ = ("ids",)

    def __init__(self, ids: list[int]):
        self.ids = ids

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def type_ids(self) -> list[int]:
        return [0] * len(self.ids)


class WordCache:
    """``encode(text) -> Ids | None``; build with ``WordCache.of(tokenizer)`` (None where it does not apply)."""

    def __init__(self, tokenizer, lowercase: bool, prefix: list[int], suffix: list[int], gate: tuple[str, ...],
                 max_length: int):
        self._model = tokenizer.model
        self._split = _SPLIT[lowercase].findall
        self._lower = lowercase
        self._prefix, self._suffix = prefix, suffix
        self._gate = gate
        self._keep = max_length - len(suffix)  # ids before the suffix at most (prefix included)
        self._words: dict[str, list[int]] = {}

    @classmethod
    def of(cls, tokenizer) -> WordCache | None:
        """A cache for ``tokenizer`` (a ``tokenizers.Tokenizer`` set up as the runtime uses it: truncation on,
        no padding), or None when its pipeline is not BERT's or its truncation is not right-side."""
        from tokenizers import models, normalizers, pre_tokenizers

        norm, trunc = tokenizer.normalizer, tokenizer.truncation
        if not (isinstance(norm, normalizers.BertNormalizer)
                and isinstance(tokenizer.pre_tokenizer, pre_tokenizers.BertPreTokenizer)
                and isinstance(tokenizer.model, models.WordPiece)
                and trunc is not None and trunc.get("direction", "right") == "right"
                and tokenizer.padding is None):
            return None
        gate = sorted({c for t in tokenizer.get_added_tokens_decoder().values() if t.content
                       for c in (t.content[0].lower(), t.content[0].upper()) if c.isascii()})
        if len(gate) > MAX_GATE:
            return None
        probe = "the"
        pieces = [t.id for t in tokenizer.model.tokenize(probe)]
        full = tokenizer.encode(probe)
        ids = list(full.ids)
        at = next((i for i in range(len(ids) - len(pieces) + 1) if ids[i:i + len(pieces)] == pieces), None)
        if at is None or any(full.type_ids):
            return None
        prefix, suffix = ids[:at], ids[at + len(pieces):]
        max_length = int(trunc["max_length"])
        if max_length <= len(prefix) + len(suffix) or list(tokenizer.encode("").ids) != prefix + suffix:
            return None
        return cls(tokenizer, bool(norm.lowercase), prefix, suffix, tuple(gate), max_length)

    def encode(self, text: str) -> Ids | None:
        """The library's ids for ``text`` (specials added, truncated), or None: use the library."""
        if not (text.isascii() and text.isprintable()) or any(map(text.__contains__, self._gate)):
            return None
        words = self._words
        ids = self._prefix.copy()
        for w in self._split(text.lower() if self._lower else text):
            p = words.get(w)
            if p is None:
                p = self._pieces(w)
            ids += p
        if len(ids) > self._keep:
            del ids[self._keep:]
        ids += self._suffix
        return Ids(ids)

    def _pieces(self, word: str) -> list[int]:
        p = [t.id for t in self._model.tokenize(word)]
        if len(self._words) >= MAX_WORDS:
            self._words.clear()
        self._words[word] = p
        return p
