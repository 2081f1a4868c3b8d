"""The word cache in front of WordPiece gives the library's ids exactly, or steps aside."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from edgepack.data import as_dataset, example_spec
from edgepack.runtime import wordpiece
from edgepack.runtime.text import TextEncoder
from edgepack.runtime.wordpiece import WordCache
from edgepack.testing import _family_tokenizer

EDGE = ["[CLS] hi", "Hello\tWORLD\n", "a\x00b\x07c\x7f", "x " * 300, "", " ", "   ", "MiXeD [mask] [MASK] x",
        "Ünïcode Café", "a" * 150 + " b", "y" * 100, "z" * 101, "don't stop!!!", "1,000.50$ ~`^|{}<=>",
        "<s> and </s> and <mask>", "x" * 99 + "!" + "x" * 99]


def _texts(n_noise: int = 1500) -> list[str]:
    rt = as_dataset(example_spec()).val_texts[:1500]
    rng = random.Random(0)
    noise = ["".join(rng.choice([chr(i) for i in range(lo, 127)]) for _ in range(rng.randint(0, 60)))
             for lo in (0, 32) for _ in range(n_noise)]  # any ASCII, then printable ASCII (the cache's texts)
    words = ["".join(rng.choice("abcXYZ09.-' ") for _ in range(rng.randint(1, 30))) for _ in range(n_noise)]
    return rt + [t.upper() for t in rt[:300]] + noise + words + EDGE


def _check(enc: TextEncoder, texts: list[str]) -> int:
    """Each text alone and the whole list at once give the library's ids and type ids; returns cached hits."""
    hits = 0
    for t in texts:
        got, want = enc.encode([t])[0], enc.tokenizer.encode(t)
        assert (list(got.ids), list(got.type_ids), len(got)) == (want.ids, want.type_ids, len(want)), repr(t)
        hits += isinstance(got, wordpiece.Ids)
    batch = enc.encode(texts)  # cached and library encodings mixed, in input order
    assert [list(e.ids) for e in batch] == [e.ids for e in enc.tokenizer.encode_batch(texts)]
    return hits


@pytest.mark.parametrize("max_length", [512, 16])
def test_real_minilm_tokenizer_ids_are_the_librarys(minilm_path, max_length):
    enc = TextEncoder(Path(minilm_path) / "tokenizer.json", max_length)
    assert enc._words is not None and enc._words._gate == ("[",)
    texts = _texts()
    hits = _check(enc, texts)
    assert hits > len(texts) // 2  # the cache served most texts; the rest went through the library


@pytest.mark.parametrize("family", ["distilbert", "mpnet"])
def test_tiny_wordpiece_tokenizers_with_other_specials(family, tmp_path):
    tok, _, _ = _family_tokenizer(family)
    path = tmp_path / "tokenizer.json"
    tok.save(str(path))
    enc = TextEncoder(path, 32)
    assert enc._words is not None
    assert _check(enc, _texts(300)) > 300


def test_cased_wordpiece_keeps_case(tmp_path):
    from tokenizers import normalizers

    tok, _, _ = _family_tokenizer("distilbert")
    tok.normalizer = normalizers.BertNormalizer(lowercase=False)
    tok.save(str(tmp_path / "tokenizer.json"))
    enc = TextEncoder(tmp_path / "tokenizer.json", 64)
    assert enc._words is not None and not enc._words._lower
    _check(enc, ["Hello World", "HELLO world", "the Great film"] + _texts(200))


@pytest.mark.parametrize("family", ["roberta", "modernbert", "deberta-v2"])
def test_other_pipelines_are_left_to_the_library(family, tmp_path):
    tok, _, _ = _family_tokenizer(family)
    tok.save(str(tmp_path / "tokenizer.json"))
    enc = TextEncoder(tmp_path / "tokenizer.json", 64)
    assert enc._words is None
    _check(enc, _texts(100)[:400])


def test_a_full_word_dict_starts_over_and_stays_right(minilm_path, monkeypatch):
    monkeypatch.setattr(wordpiece, "MAX_WORDS", 8)
    enc = TextEncoder(Path(minilm_path) / "tokenizer.json", 128)
    _check(enc, _texts(100)[:600])
    assert len(enc._words._words) <= 8


def test_pairs_go_through_the_library(minilm_path):
    enc = TextEncoder(Path(minilm_path) / "tokenizer.json", 64)
    got = enc.encode([("a question", "an answer"), "a text"])
    want = enc.tokenizer.encode("a question", "an answer")
    assert (got[0].ids, got[0].type_ids) == (want.ids, want.type_ids) and any(want.type_ids)
    assert list(got[1].ids) == enc.tokenizer.encode("a text").ids
