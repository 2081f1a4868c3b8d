"""edgepack.batching: the one tokenize/pad path for torch training, scoring and evaluation."""

import pytest

torch = pytest.importorskip("torch")

from edgepack.batching import batches, encode, pad_batch, sorted_batches
from edgepack.testing import SAMPLE_TEXTS


@pytest.fixture(scope="module")
def tok(tiny_bert):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_bert)


def test_batches_match_the_tokenizers_own_padding(tok):
    """What prune's importance/evaluation used to build with tokenizer(padding=True), in input order."""
    labels = list(range(len(SAMPLE_TEXTS)))
    got = list(batches(tok, SAMPLE_TEXTS, labels, 3, 8))
    assert [len(y) for _, y in got] == [3, 3, 1]
    for s, (enc, y) in zip(range(0, len(SAMPLE_TEXTS), 3), got):
        want = tok(SAMPLE_TEXTS[s:s + 3], padding=True, truncation=True, max_length=8, return_tensors="pt")
        assert set(enc) == set(want)
        for k in want:
            assert torch.equal(enc[k], want[k]), k
        assert y.tolist() == labels[s:s + 3]
    assert all(y is None for _, y in batches(tok, SAMPLE_TEXTS, None, 4, 8))


def test_pad_batch_pads_to_the_longest_of_the_batch(tok):
    enc = encode(tok, SAMPLE_TEXTS, None, 64)
    short, long_ = sorted(range(len(enc)), key=lambda i: enc.lengths[i])[:: len(enc) - 1]
    b = pad_batch(enc, [short, long_])
    assert b["input_ids"].shape == (2, enc.lengths[long_])
    assert b["attention_mask"][0].sum() == enc.lengths[short] and b["attention_mask"][1].all()
    assert (b["input_ids"][0, enc.lengths[short]:] == enc.pad_id).all()
    order = [i for idx in sorted_batches(enc.lengths, 3) for i in idx]
    assert sorted(order) == list(range(len(enc))) and [enc.lengths[i] for i in order] == sorted(enc.lengths)
