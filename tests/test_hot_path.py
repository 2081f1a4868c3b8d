"""The thinner hot path: feeds, pooling and softmax match the straightforward versions; ONNX Runtime
session options reach the session; the overhead benchmark runs (numbers are not asserted: timing)."""

import numpy as np
import pytest

from edgepack.data import SAMPLE_SENTENCES
from edgepack.errors import EdgepackError


@pytest.fixture(scope="module")
def tiny_onnx(tiny_bert, tmp_path_factory):
    from edgepack.export.onnx_export import OnnxExportConfig, export_onnx

    return export_onnx(tiny_bert, tmp_path_factory.mktemp("hot") / "onnx", OnnxExportConfig()).path


@pytest.fixture(scope="module")
def enc_onnx(tiny_encoder, tmp_path_factory):
    from edgepack.export.onnx_export import OnnxExportConfig, export_onnx

    return export_onnx(tiny_encoder, tmp_path_factory.mktemp("hot") / "enc", OnnxExportConfig()).path


def _padded(encodings, pad):
    longest = max(len(e.ids) for e in encodings)
    ids = np.full((len(encodings), longest), pad, dtype=np.int64)
    mask = np.zeros_like(ids)
    types = np.zeros_like(ids)
    for r, e in enumerate(encodings):
        ids[r, : len(e.ids)], mask[r, : len(e.ids)], types[r, : len(e.ids)] = e.ids, 1, e.type_ids
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}


def test_feeds_match_a_plain_padding_loop(tiny_onnx):
    from edgepack.runtime.text import TextEncoder

    enc = TextEncoder(tiny_onnx / "tokenizer.json", 16, 0)
    texts = list(SAMPLE_SENTENCES) + [("a pair", "of texts here")]
    for batch in (texts, texts[:1], texts[-1:], [texts[4]] * 3):
        encodings = enc.encode(batch)
        got, want = enc.feeds(encodings), _padded(encodings, 0)
        assert set(got) == set(want)
        for k in want:
            assert got[k].dtype == np.int64 and got[k].flags.c_contiguous
            np.testing.assert_array_equal(got[k], want[k])
    one = enc.feeds(enc.encode(["dull"]), names=("input_ids", "attention_mask"))
    assert set(one) == {"input_ids", "attention_mask"}
    assert max(len(e.ids) for e in enc.encode(["great " * 100])) == 16  # truncated


def test_pooling_and_softmax_match_the_reference_formulas():
    from edgepack.runtime.text import cls_pool, mean_pool, softmax

    rng = np.random.default_rng(0)
    hidden = rng.normal(size=(3, 5, 8)).astype(np.float32)
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]], dtype=np.int64)
    m = mask[..., None].astype(np.float32)
    want = (hidden * m).sum(1) / m.sum(1)
    np.testing.assert_allclose(mean_pool(hidden, mask, normalize=False), want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(mean_pool(hidden, mask), want / np.linalg.norm(want, axis=1, keepdims=True),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(mean_pool(hidden.astype(np.float16), mask, normalize=False), want, atol=1e-2)
    c = cls_pool(hidden, normalize=True)
    np.testing.assert_allclose(c, hidden[:, 0] / np.linalg.norm(hidden[:, 0], axis=1, keepdims=True), rtol=1e-5)
    assert not np.shares_memory(c, hidden)
    x = rng.normal(size=(4, 3)).astype(np.float32)
    before = x.copy()
    e = np.exp(x - x.max(1, keepdims=True))
    np.testing.assert_allclose(softmax(x), e / e.sum(1, keepdims=True), rtol=1e-6)
    np.testing.assert_array_equal(x, before)  # the input is not changed


@pytest.mark.parametrize("which", ["tiny_onnx", "enc_onnx"])
def test_infer_is_the_same_at_batch_one_in_batches_and_sorted(which, request):
    from edgepack.runtime.predictor import Predictor

    path = request.getfixturevalue(which)
    texts = list(SAMPLE_SENTENCES) * 3
    big = Predictor.open(path, intra_op_threads=1, batch_size=64).infer(texts)
    small = Predictor.open(path, intra_op_threads=1, batch_size=4).infer(texts)  # sorted, cut, scattered
    ones = np.concatenate([Predictor.open(path, intra_op_threads=1).infer([t]) for t in texts])
    np.testing.assert_allclose(small, big, atol=1e-5)
    np.testing.assert_allclose(ones, big, atol=1e-5)
    assert big.dtype == np.float32 and big.shape[0] == len(texts)


def test_session_options_reach_onnx_runtime(tiny_onnx):
    from edgepack.runtime.predictor import Predictor

    p = Predictor.open(tiny_onnx, intra_op_threads=1, inter_op_threads=2, memory_arena=False)
    opts = p.runner.session.get_session_options()
    assert (opts.intra_op_num_threads, opts.inter_op_num_threads, opts.enable_cpu_mem_arena) == (1, 2, False)
    assert p.runner.session.get_session_options().enable_cpu_mem_arena is False
    default = Predictor.open(tiny_onnx, intra_op_threads=1).runner.session.get_session_options()
    assert default.enable_cpu_mem_arena is True and default.inter_op_num_threads == 1
    np.testing.assert_allclose(p.infer(["dull"]), Predictor.open(tiny_onnx).infer(["dull"]), atol=1e-6)
    with pytest.raises(EdgepackError, match="inter_op_threads must be >= 1"):
        Predictor.open(tiny_onnx, inter_op_threads=0)


def test_serve_cli_passes_session_options(tiny_onnx, monkeypatch):
    import argparse

    from edgepack.runtime import serve_cli, server

    seen = {}
    monkeypatch.setattr(server, "serve", lambda path, cfg, log_level: seen.update(cfg=cfg))
    parser = argparse.ArgumentParser()
    serve_cli.register(parser.add_subparsers())
    args = parser.parse_args(["serve", str(tiny_onnx), "--inter-op-threads", "2", "--no-memory-arena"])
    assert serve_cli.run(args) == 0
    assert (seen["cfg"].inter_op_threads, seen["cfg"].memory_arena) == (2, False)
    bad = parser.parse_args(["serve", str(tiny_onnx), "--inter-op-threads", "0"])
    with pytest.raises(EdgepackError, match="--inter-op-threads must be >= 1"):
        serve_cli.run(bad)


def test_overhead_benchmark_prints_the_ratio(tiny_onnx, capsys):
    from edgepack.benchmarks.overhead import main

    assert main([str(tiny_onnx), "--seconds", "0"]) == 0
    out = capsys.readouterr().out
    assert "overhead ratio" in out and "session.run" in out
