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
    assert "overhead ratio" in out and "session.run" in out and "bound run" in out
    assert "runtime's own work (infer - bound run)" in out


# Bound calls: buffers and ONNX Runtime bindings reused per (batch, length) and thread.

def _reference(pred, texts):
    """What the model gives for ``texts`` through a fresh session.run on plainly padded feeds, then the
    reference softmax / masked mean (+ L2) formulas: no reused buffer anywhere."""
    enc = pred.encoder.encode(texts)
    feeds = _padded(enc, pred.encoder.pad_token_id)
    names = [i.name for i in pred.runner.session.get_inputs()]
    out = pred.runner.session.run(None, {k: v for k, v in feeds.items() if k in names})[0]
    if pred.task == "text-classification":
        e = np.exp(out - out.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)
    m = feeds["attention_mask"][..., None].astype(np.float32)
    pooled = (out * m).sum(1) / m.sum(1)
    return pooled / np.linalg.norm(pooled, axis=1, keepdims=True)


def _sized(pred, n_tokens, word="great"):
    text = " ".join([word] * (n_tokens - 2))
    assert len(pred.encoder.encode([text])[0]) == n_tokens
    return text


@pytest.mark.parametrize("which", ["tiny_onnx", "enc_onnx"])
def test_bound_calls_give_what_session_run_gives(which, request):
    from edgepack.runtime.predictor import Predictor

    p = Predictor.open(request.getfixturevalue(which), intra_op_threads=1, batch_size=8)
    texts = list(SAMPLE_SENTENCES)
    for batch in [[t] for t in texts] + [texts[:3], texts, [("a pair", "of texts here")], [texts[0], ("a", "b")]]:
        for _ in range(2):  # the second call reuses the first one's buffers and binding
            np.testing.assert_allclose(p.infer(batch), _reference(p, batch), rtol=0, atol=1e-6)
    n = len(p.encoder.encode(texts[:1])[0])
    call = p.runner.bound(1, n)
    assert call is p.runner.bound(1, n)  # cached per shape
    if p.task == "text-classification":  # the last batch-1 run of this length wrote this call's outputs
        p.infer(texts[:1])
        np.testing.assert_allclose(p.infer(texts[:1]), _reference(p, texts[:1]), atol=1e-6)
        e = np.exp(call.outputs["logits"] - call.outputs["logits"].max())
        np.testing.assert_allclose(e / e.sum(), p.infer(texts[:1]), atol=1e-6)


def test_reused_buffers_keep_nothing_of_an_earlier_call(enc_onnx):
    """Calls of one (batch, length) shape in a row whose padding, pairs and token types differ: each result
    is the reference's, so nothing (ids past a shorter text, mask, token types) survives from the one before.
    (The encoder: its pooled outputs move with every input, where the tiny classifier's barely do.)"""
    from edgepack.runtime.predictor import Predictor

    p = Predictor.open(enc_onnx, intra_op_threads=1, batch_size=2)
    long_a, long_b = _sized(p, 9), _sized(p, 9, "dull")
    short = [_sized(p, k, w) for k, w in ((3, "good"), (5, "bad"), (4, "funny"))]
    pair = ("great great", "dull dull")
    single = _sized(p, len(p.encoder.encode([pair])[0]), "film")
    sequence = [[long_a, short[1]], [long_b, short[0]], [short[2], long_a], [long_b, long_a],
                [pair, single], [short[0], single], [single, _sized(p, len(p.encoder.encode([single])[0]), "cast")],
                [pair], [single], [pair], [single]]
    for batch in sequence:
        got = p.infer(batch)
        np.testing.assert_allclose(got, _reference(p, batch), rtol=0, atol=1e-6)
        if batch != [pair]:  # (a pair at batch 1 runs unbound: its token types are not the constant zeros)
            enc = p.encoder.encode(batch)
            want = _padded(enc, p.encoder.pad_token_id)  # padding too: the model ignores it, the buffers may not
            for k, v in p.runner.bound(len(batch), max(map(len, enc))).inputs.items():
                np.testing.assert_array_equal(v, want[k], err_msg=k)
    results = [p.infer(b) for b in sequence]
    assert len({np.round(r, 3).tobytes() for r in results}) == 9  # the calls really gave different answers


def test_infer_restores_the_input_order_after_sorting_by_length(enc_onnx):
    from edgepack.runtime.predictor import Predictor

    p = Predictor.open(enc_onnx, intra_op_threads=1, batch_size=3)
    texts = [_sized(p, k, w) for k, w in ((7, "good"), (3, "bad"), (12, "story"), (5, "dull"), (9, "film"),
                                          (4, "plot"), (10, "great"))]
    got = p.infer(texts)
    ones = np.concatenate([p.infer([t]) for t in texts])
    np.testing.assert_allclose(got, ones, atol=1e-5)
    order = np.random.default_rng(0).permutation(len(texts))
    np.testing.assert_allclose(p.infer([texts[i] for i in order]), got[order], atol=1e-5)
    assert min(np.abs(a - b).max() for i, a in enumerate(got) for b in got[i + 1:]) > 1e-3  # rows tell apart


def test_bound_calls_are_per_thread(tiny_onnx):
    import threading

    from edgepack.runtime.predictor import Predictor

    p = Predictor.open(tiny_onnx, intra_op_threads=1, batch_size=4)
    texts = list(SAMPLE_SENTENCES)
    want = [_reference(p, [t]) for t in texts] + [_reference(p, texts[:4])]
    errors, calls = [], []

    def work():
        calls.append(p.runner.bound(1, 5))
        for _ in range(30):
            for t, w in zip(texts, want):
                if not np.allclose(p.infer([t]), w, atol=1e-6):
                    errors.append(t)
            if not np.allclose(p.infer(texts[:4]), want[-1], atol=1e-6):
                errors.append("batch")

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len({id(c) for c in calls}) == 4


def test_bound_call_limits_and_cache_budget(tiny_onnx, monkeypatch):
    from edgepack.runtime import ort
    from edgepack.runtime.predictor import Predictor

    p = Predictor.open(tiny_onnx, intra_op_threads=1)
    first = p.runner.bound(1, 6)
    assert p.runner.bound(64, 128) is not None  # ~0.2 MB for this model
    monkeypatch.setattr(ort, "BOUND_CALL_MAX_BYTES", 1000)
    assert p.runner.bound(64, 128) is None and p.runner.bound(1, 6) is first
    monkeypatch.setattr(ort, "BOUND_CALL_MAX_BYTES", 1 << 20)
    monkeypatch.setattr(ort, "BOUND_CACHE_BYTES", 1)  # every new shape starts the cache over
    p.runner.bound(2, 6)
    assert p.runner.bound(1, 6) is not first
    for t in SAMPLE_SENTENCES:
        np.testing.assert_allclose(p.infer([t]), _reference(p, [t]), atol=1e-6)
    with pytest.raises(EdgepackError, match=r"bound call inputs must be \['input_ids', 'attention_mask', "
                                            r"'token_type_ids'\], int64 of shape \(1, 3\)"):
        p.runner.bound(1, 3, lambda b, n: {"input_ids": np.zeros((b, n), np.int64)})


def test_a_graph_whose_outputs_are_not_the_declared_shape_runs_unbound(tmp_path):
    import onnx
    from edgepack.runtime.ort import OrtRunner
    from onnx import TensorProto, helper

    ins = [helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "seq"]) for n in ("input_ids", "mask")]
    out = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 2])  # really (batch, seq)
    nodes = [helper.make_node("Add", ["input_ids", "mask"], ["s"]),
             helper.make_node("Cast", ["s"], ["logits"], to=TensorProto.FLOAT)]
    model = helper.make_model(helper.make_graph(nodes, "g", ins, [out]), opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.save(model, tmp_path / "m.onnx")
    runner = OrtRunner(tmp_path / "m.onnx")
    call = runner.bound(1, 3)
    for ids in ([[1, 2, 3]], [[4, 5, 6]]):
        call.inputs["input_ids"][:] = ids
        call.inputs["mask"][:] = 1
        np.testing.assert_array_equal(call.run()["logits"], np.array(ids, np.float32) + 1)


def test_small_softmax_matches_the_numpy_one():
    from edgepack.runtime import text

    rng = np.random.default_rng(1)
    for shape in [(1, 2), (1, 1), (3, 5), (8, 8), (2, 40), (0, 3)]:
        x = (rng.normal(size=shape) * 30).astype(np.float32)
        got = text.softmax(x)
        e = np.exp(x - (x.max(1, keepdims=True) if x.size else 0))
        want = e / e.sum(1, keepdims=True) if x.size else e
        assert got.dtype == np.float32 and got.shape == shape
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(text.softmax(np.array([[1e4, -1e4, 0]], np.float32)), [[1, 0, 0]])


def test_serve_loop_reaches_uvicorn_and_uvloop_missing_is_one_line(tiny_onnx, monkeypatch):
    import builtins
    import sys

    import uvicorn
    from edgepack.runtime import serve_workers
    from edgepack.runtime.server import ServeConfig

    seen = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.update(kw))
    serve_workers.serve(str(tiny_onnx), ServeConfig(workers=1, loop="asyncio"), "warning")
    assert seen["loop"] == "asyncio"
    real_import = builtins.__import__

    def no_uvloop(name, *a, **kw):
        if name == "uvloop":
            raise ImportError("no uvloop here")
        return real_import(name, *a, **kw)

    monkeypatch.delitem(sys.modules, "uvloop", raising=False)
    monkeypatch.setattr(builtins, "__import__", no_uvloop)
    with pytest.raises(EdgepackError, match=r"^--loop uvloop needs the uvloop package: pip install uvloop"):
        serve_workers.serve(str(tiny_onnx), ServeConfig(workers=1, loop="uvloop"), "warning")
