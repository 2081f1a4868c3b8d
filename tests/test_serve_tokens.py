"""Token-budget batching with a real (tiny) model over HTTP: a request with 200 texts, a text longer than
the budget, and 32 concurrent clients mixing both, all answered like the Predictor run directly.
(``--workers 2`` as a real process: tests/test_serve_process.py.)"""

import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

from edgepack.runtime.batcher import BatcherConfig, DynamicBatcher, Stages
from edgepack.runtime.server import ServeConfig, create_app

from edgepack.testing import SAMPLE_TEXTS, LiveServer

BUDGET = 64  # tokens per model call; the tiny model truncates at 128, so a long text exceeds it
ATOL = 1e-5  # fp32 probabilities: batch composition changes padding, masked out to ~1e-7


@pytest.fixture(scope="module")
def tiny_onnx(tiny_bert, tmp_path_factory):
    from edgepack.export.onnx_export import OnnxExportConfig, export_onnx

    return export_onnx(tiny_bert, tmp_path_factory.mktemp("serve_tokens") / "onnx", OnnxExportConfig()).path


def open_predictor(path, batch_size=32):
    from edgepack.runtime.predictor import Predictor

    return Predictor.open(path, intra_op_threads=1, batch_size=batch_size)


def texts_200():
    return [f"{SAMPLE_TEXTS[i % len(SAMPLE_TEXTS)]} {'again ' * (i % 9)}{i}" for i in range(200)]


LONG = " ".join(SAMPLE_TEXTS) * 6  # far more than 128 tokens: truncated, still longer than BUDGET


def positive(results):
    return np.array([r["scores"]["positive"] for r in results])


def test_predictor_stages_match_infer_and_respect_the_budget(tiny_onnx):
    pred = open_predictor(tiny_onnx)
    calls = []

    def run(encodings):
        calls.append((len(encodings), max(map(len, encodings))))
        return pred.infer_encoded(encodings)

    stages = Stages(run=run, encode=pred.encode, post=pred.to_results)
    texts = [*texts_200()[:50], LONG, *SAMPLE_TEXTS]
    with DynamicBatcher(stages, BatcherConfig(max_batch=16, max_tokens=BUDGET, max_wait_ms=0)) as b:
        got = b.predict(texts, timeout=30)
    np.testing.assert_allclose(positive(got), pred.infer(texts)[:, 1], atol=ATOL)
    assert (1, 128) in calls  # the long text: truncated to the model's 128 tokens, alone
    assert all(rows * longest <= BUDGET for rows, longest in calls if rows > 1)
    assert sum(rows for rows, _ in calls) == len(texts)


@pytest.fixture(scope="module")
def server(tiny_onnx):
    cfg = ServeConfig(max_batch=16, max_batch_tokens=BUDGET, max_wait_ms=2, max_texts=256, max_chars=5000,
                      max_queue=4096, timeout_s=60)
    with LiveServer(create_app(lambda: open_predictor(tiny_onnx, cfg.max_batch), cfg)) as s:
        s.wait_ready()
        yield s


def test_200_texts_a_long_text_and_32_clients_mixing_both(server, tiny_onnx):
    direct = open_predictor(tiny_onnx)
    big, mixed = texts_200(), [*SAMPLE_TEXTS[:3], LONG, SAMPLE_TEXTS[3]]
    want_big, want_mixed = direct.infer(big)[:, 1], direct.infer(mixed)[:, 1]

    status, _, body = server.predict(big)
    assert status == 200 and len(body["results"]) == 200
    np.testing.assert_allclose(positive(body["results"]), want_big, atol=ATOL)
    status, _, body = server.predict([LONG])
    assert status == 200
    np.testing.assert_allclose(positive(body["results"]), direct.infer([LONG])[:, 1], atol=ATOL)

    jobs = [big if i % 4 == 0 else mixed for i in range(32)]
    t0 = time.perf_counter()
    with ThreadPoolExecutor(32) as ex:
        answers = list(ex.map(server.predict, jobs))
    assert time.perf_counter() - t0 < 60  # nothing stalled the batcher (each call also has a 20 s timeout)
    for job, (status, _, body) in zip(jobs, answers):
        assert status == 200
        np.testing.assert_allclose(positive(body["results"]), want_big if job is big else want_mixed, atol=ATOL)
    metrics = server.call("GET", "/metrics")[2]
    padded = float(metrics.split("\nedgepack_padded_tokens_total ")[1].split()[0])
    tokens = float(metrics.split("\nedgepack_tokens_total ")[1].split()[0])
    assert 0 < tokens <= padded


def test_auto_workers_see_the_cpu_backend(tiny_onnx):
    import os

    from edgepack.runtime.backends import AUTO_ORDER, BACKENDS
    from edgepack.runtime.serve_workers import cpu_cores, runs_on_cpu

    assert runs_on_cpu(str(tiny_onnx), "ort-cpu") and not runs_on_cpu(str(tiny_onnx), "ort-cuda")
    first = next(n for n in AUTO_ORDER if "onnx" in BACKENDS[n].formats and BACKENDS[n].available())
    assert runs_on_cpu(str(tiny_onnx), "auto") == (first == "ort-cpu")
    assert 1 <= cpu_cores() <= (os.cpu_count() or 1)
