"""OpenAI-compatible /v1/embeddings and /v1/classify on a live loopback server: shapes, input order,
parity with the Predictor, base64 round trip, wrong task and bad requests as one-line JSON 4xx errors."""

import base64

import numpy as np
import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

from edgepack.runtime.server import ServeConfig, create_app

from edgepack.testing import SAMPLE_TEXTS, LiveServer

JSON = {"Content-Type": "application/json"}


def _open(path):
    from edgepack.runtime.predictor import Predictor

    return Predictor.open(path, intra_op_threads=1)


@pytest.fixture(scope="module")
def cls_path(tiny_bert, tmp_path_factory):
    from edgepack.export.onnx_export import OnnxExportConfig, export_onnx

    return export_onnx(tiny_bert, tmp_path_factory.mktemp("oai") / "cls", OnnxExportConfig()).path


@pytest.fixture(scope="module")
def enc_path(tiny_encoder, tmp_path_factory):
    from edgepack.export.onnx_export import OnnxExportConfig, export_onnx

    return export_onnx(tiny_encoder, tmp_path_factory.mktemp("oai") / "enc", OnnxExportConfig()).path


def _server(path):
    cfg = ServeConfig(max_batch=8, max_wait_ms=1, max_texts=16, max_chars=200, max_body_bytes=8192)
    return LiveServer(create_app(lambda: _open(path), cfg))


@pytest.fixture(scope="module")
def emb_server(enc_path):
    with _server(enc_path) as s:
        s.wait_ready()
        yield s


@pytest.fixture(scope="module")
def cls_server(cls_path):
    with _server(cls_path) as s:
        s.wait_ready()
        yield s


def test_embeddings_float_match_the_predictor_in_order(emb_server, enc_path):
    texts = list(SAMPLE_TEXTS[:5])
    status, _, body = emb_server.call("POST", "/v1/embeddings", {"input": texts, "model": "mini"}, JSON)
    assert status == 200 and body["object"] == "list" and body["model"] == "mini"
    assert [d["index"] for d in body["data"]] == list(range(5))
    assert all(d["object"] == "embedding" for d in body["data"])
    got = np.array([d["embedding"] for d in body["data"]], dtype=np.float32)
    want = _open(enc_path).infer(texts)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1, atol=1e-5)  # the contract's normalize
    tokens = sum(map(len, _open(enc_path).encode(texts)))  # what the batcher ran, counted once
    assert body["usage"] == {"prompt_tokens": tokens, "total_tokens": tokens} and tokens > 5


def test_embeddings_single_string_and_base64_round_trip(emb_server, enc_path):
    status, _, body = emb_server.call("POST", "/v1/embeddings", {"input": "dull"}, JSON)
    assert status == 200 and len(body["data"]) == 1
    floats = np.array(body["data"][0]["embedding"], dtype=np.float32)
    status, _, body = emb_server.call(
        "POST", "/v1/embeddings", {"input": ["dull", "a gripping film"], "encoding_format": "base64"}, JSON
    )
    assert status == 200
    rows = [np.frombuffer(base64.b64decode(d["embedding"]), dtype="<f4") for d in body["data"]]
    np.testing.assert_array_equal(rows[0], floats)  # bit-exact: float32 -> JSON -> float32 is lossless
    np.testing.assert_allclose(np.stack(rows), _open(enc_path).infer(["dull", "a gripping film"]), atol=1e-6)
    assert body["model"] == enc_path.name


def test_embeddings_json_reads_back_to_the_exact_float32_rows(emb_server, enc_path):
    texts = list(SAMPLE_TEXTS[:4])
    _, _, plain = emb_server.call("POST", "/v1/embeddings", {"input": texts}, JSON)
    _, _, b64 = emb_server.call("POST", "/v1/embeddings", {"input": texts, "encoding_format": "base64"}, JSON)
    floats = np.array([d["embedding"] for d in plain["data"]], dtype=np.float32)
    exact = np.stack([np.frombuffer(base64.b64decode(d["embedding"]), dtype="<f4") for d in b64["data"]])
    np.testing.assert_array_equal(floats, exact)


def test_non_finite_embeddings_are_a_500_not_nulls(enc_path):
    from edgepack.runtime.predictor import Predictor

    class Broken(Predictor):
        def infer_encoded(self, encodings):
            out = super().infer_encoded(encodings)
            out[:, 0] = np.nan
            return out

    def load():
        p = _open(enc_path)
        return Broken(p.artifact, p.runner, p.encoder, p.batch_size)

    with LiveServer(create_app(load, ServeConfig(max_batch=8, max_wait_ms=1))) as s:
        s.wait_ready()
        status, _, body = s.call("POST", "/v1/embeddings", {"input": ["dull"]}, JSON)
    assert status == 500 and body["error"]["code"] == "inference_failed"
    assert "non-finite" in body["error"]["message"]


def test_classify_matches_predict(cls_server, cls_path):
    status, _, body = cls_server.call("POST", "/v1/classify", {"input": SAMPLE_TEXTS[:3]}, JSON)
    assert status == 200 and body["object"] == "list" and len(body["data"]) == 3
    want = _open(cls_path).predict(SAMPLE_TEXTS[:3])
    for i, (d, w) in enumerate(zip(body["data"], want)):
        assert d["index"] == i and d["object"] == "classification" and d["label"] == w["label"]
        assert d["score"] == pytest.approx(w["score"], abs=1e-6)


@pytest.mark.parametrize(
    ("which", "path", "doc", "status", "code", "needle"),
    [
        ("cls", "/v1/embeddings", {"input": "x"}, 400, "wrong_task", "use /v1/classify"),
        ("emb", "/v1/classify", {"input": "x"}, 400, "wrong_task", "use /v1/embeddings"),
        ("emb", "/v1/embeddings", {"input": "x", "encoding_format": "int8"}, 422, "invalid_request", "base64"),
        ("emb", "/v1/embeddings", {"texts": ["x"]}, 422, "invalid_request", "unknown field"),
        ("emb", "/v1/embeddings", {"model": "m"}, 422, "invalid_request", "missing field 'input'"),
        ("emb", "/v1/embeddings", {"input": 3}, 422, "invalid_request", "'input' must be"),
        ("emb", "/v1/embeddings", {"input": []}, 422, "empty_input", "'input' is empty"),
        ("emb", "/v1/embeddings", {"input": ["ok", " "]}, 422, "empty_input", "input[1]"),
        ("emb", "/v1/embeddings", {"input": ["x"] * 17}, 422, "too_many_texts", "limit is 16"),
        ("emb", "/v1/embeddings", {"input": "x" * 201}, 422, "text_too_long", "input[0]"),
        ("emb", "/v1/embeddings", {"input": "x", "model": 1}, 422, "invalid_request", "'model' must be"),
        ("cls", "/v1/classify", {"input": "x", "encoding_format": "float"}, 422, "invalid_request", "unknown"),
    ],
)
def test_errors_are_one_line_json(emb_server, cls_server, which, path, doc, status, code, needle):
    server = emb_server if which == "emb" else cls_server
    got, _, body = server.call("POST", path, doc, JSON)
    assert (got, body["error"]["code"]) == (status, code)
    assert needle in body["error"]["message"] and "\n" not in body["error"]["message"]


def test_bad_body_and_content_type(emb_server):
    assert emb_server.call("POST", "/v1/embeddings", b"{nope", JSON)[0] == 400
    status, _, body = emb_server.call("POST", "/v1/embeddings", {"input": "x"}, {"Content-Type": "text/plain"})
    assert (status, body["error"]["code"]) == (415, "unsupported_media_type")
    assert emb_server.call("GET", "/v1/embeddings")[0] == 405


def test_openapi_describes_the_new_endpoints(emb_server):
    status, _, spec = emb_server.call("GET", "/openapi.json")
    assert status == 200 and {"/v1/embeddings", "/v1/classify"} <= set(spec["paths"])
    req = spec["components"]["schemas"]["EmbeddingsRequest"]
    assert req["properties"]["encoding_format"]["enum"] == ["float", "base64"]
    assert req["properties"]["input"]["oneOf"][1]["maxItems"] == 16


def test_json_response_without_orjson_gives_the_same_document(monkeypatch):
    import json

    from edgepack.runtime import openai_api

    rows = np.random.default_rng(0).normal(size=(3, 7)).astype(np.float32)
    doc = {"data": [{"embedding": r} for r in rows], "usage": {"prompt_tokens": 3}}
    fast = json.loads(openai_api.json_response(doc, fast=True).body)
    monkeypatch.setattr(openai_api, "orjson", None)
    plain = json.loads(openai_api.json_response(doc, fast=True).body)
    for a, b, row in zip(fast["data"], plain["data"], rows):
        np.testing.assert_array_equal(np.float32(a["embedding"]), row)
        np.testing.assert_array_equal(np.float32(b["embedding"]), row)
    assert fast["usage"] == plain["usage"] == {"prompt_tokens": 3}
