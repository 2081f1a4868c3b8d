"""The server against hostile clients (loopback only, bounded in count and time): slow connections, the
connection cap, read timeouts, API keys, request ids, and responses free of internal strings."""

import http.client
import json
import logging
import socket
import time

import pytest

pytest.importorskip("starlette")
uvicorn = pytest.importorskip("uvicorn")

from edgepack.runtime import server_guard, server_limits
from edgepack.runtime.server import ServeConfig, create_app
from edgepack.runtime.server_limits import GuardedH11Protocol, Limits

from edgepack.artifact import ArtifactWriter
from edgepack.errors import EdgepackError
from edgepack.testing import LiveServer

KEY = "k" * 24


class FakePredictor:
    task, labels = "text-classification", ["neg", "pos"]

    def __init__(self, artifact):
        self.artifact = artifact

    def predict(self, texts):
        if "boom" in texts:
            raise ValueError("secret detail at /srv/models/private/model.onnx")
        return [{"label": "pos", "score": 0.9, "scores": [0.1, 0.9]} for _ in texts]


@pytest.fixture(scope="module")
def fake_artifact(tmp_path_factory):
    with ArtifactWriter(tmp_path_factory.mktemp("srv") / "art") as w:
        (w.dir / "model.onnx").write_bytes(b"x")
        return w.commit(stage="quantize", format="onnx", task="text-classification", labels=["neg", "pos"],
                        files={"model": "model.onnx"},
                        metrics={"accuracy": 0.9, "table": "int8-static: FileNotFoundError: /home/u/.cache/x"},
                        extra={"teacher": "/home/u/private/teacher"})


class Server(LiveServer):
    """uvicorn with the guarded protocol on 127.0.0.1 (a free port) in a thread, under ``limits``."""

    def __init__(self, app, limits):
        self.limits = limits
        super().__init__(app, http=GuardedH11Protocol, timeout_keep_alive=2)

    def __enter__(self):
        self.old = server_limits.LIMITS
        server_limits.configure(self.limits)
        return super().__enter__()

    def __exit__(self, *exc):
        super().__exit__(*exc)
        server_limits.configure(self.old)

    def call(self, method, path, body=None, headers=None, timeout=10):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            c.request(method, path, body=json.dumps(body).encode() if body is not None else None,
                      headers={"Content-Type": "application/json", **(headers or {})})
            r = c.getresponse()
            data = r.read()
            return r.status, dict(r.getheaders()), json.loads(data) if data.startswith(b"{") else data.decode()
        finally:
            c.close()

    def wait_ready(self, headers=None):
        deadline = time.time() + 20
        while self.call("GET", "/readyz", headers=headers)[0] != 200:
            assert time.time() < deadline
            time.sleep(0.02)

    def raw(self, data: bytes):
        s = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        if data:
            s.sendall(data)
        return s


def _app(art, **cfg):
    return create_app(lambda: FakePredictor(art), ServeConfig(max_wait_ms=0, **cfg))


def _read_all(s, limit_s=5.0):
    s.settimeout(limit_s)
    out = b""
    try:
        while chunk := s.recv(4096):
            out += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    return out


PARTIAL_HEADERS = b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: appl"
SLOW_BODY = b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 900\r\n\r\n{\"te"


def test_300_slow_connections_do_not_starve_real_clients(fake_artifact):
    cap = 64
    limits = Limits(max_connections=cap, header_timeout_s=20, body_timeout_s=20, evict_after_s=0.3)
    socks = []
    t_start = time.monotonic()
    with Server(_app(fake_artifact), limits) as s:
        s.wait_ready()
        before = server_limits.STATS.refused + server_limits.STATS.evicted
        server_limits.STATS.peak = 0
        try:
            for i in range(300):
                socks.append(s.raw(PARTIAL_HEADERS if i % 2 else SLOW_BODY))
            time.sleep(0.5)  # every slow connection is now older than evict_after_s
            t0 = time.monotonic()
            status, _, body = s.call("GET", "/healthz", timeout=2)
            assert status == 200 and time.monotonic() - t0 < 1.0
            for _ in range(3):
                status, _, body = s.call("POST", "/v1/predict", {"texts": ["a fine film"]}, timeout=2)
                assert status == 200 and body["results"][0]["label"] == "pos"
            assert server_limits.STATS.open <= cap and server_limits.STATS.peak <= cap
            assert server_limits.STATS.refused + server_limits.STATS.evicted - before >= 300 - cap
            _, _, metrics = s.call("GET", "/metrics")
            assert "edgepack_connections_open " in metrics and "edgepack_connections_evicted_total" in metrics
        finally:
            for sock in socks:
                sock.close()
    assert time.monotonic() - t_start < 60


def test_past_the_cap_new_connections_get_a_fast_503_with_retry_after(fake_artifact):
    limits = Limits(max_connections=4, header_timeout_s=20, body_timeout_s=20, evict_after_s=30)
    with Server(_app(fake_artifact), limits) as s:
        socks = [s.raw(PARTIAL_HEADERS) for _ in range(4)]
        try:
            time.sleep(0.2)
            t0 = time.monotonic()
            extra = s.raw(b"")
            reply = _read_all(extra)
            extra.close()
            assert reply.startswith(b"HTTP/1.1 503 Service Unavailable") and b"retry-after: 1" in reply
            assert time.monotonic() - t0 < 1.0
        finally:
            for sock in socks:
                sock.close()


@pytest.mark.parametrize("payload,counter", [(PARTIAL_HEADERS, "header_timeouts"), (SLOW_BODY, "body_timeouts")])
def test_read_timeouts_answer_408_and_close(fake_artifact, payload, counter):
    limits = Limits(max_connections=16, header_timeout_s=0.5, body_timeout_s=0.5)
    with Server(_app(fake_artifact), limits) as s:
        before = getattr(server_limits.STATS, counter)
        sock = s.raw(payload)
        t0 = time.monotonic()
        reply = _read_all(sock)
        sock.close()
        assert reply.startswith(b"HTTP/1.1 408 Request Timeout") and time.monotonic() - t0 < 3
        assert getattr(server_limits.STATS, counter) == before + 1


def test_api_key(fake_artifact, tmp_path):
    (tmp_path / "key").write_text(KEY + "\n")
    with Server(_app(fake_artifact, api_key_file=str(tmp_path / "key")), Limits()) as s:
        assert s.call("GET", "/healthz")[0] == 200  # open for liveness probes
        s.wait_ready()
        status, headers, body = s.call("POST", "/v1/predict", {"texts": ["x"]})
        assert status == 401 and body["error"]["code"] == "unauthorized" and headers["www-authenticate"] == "Bearer"
        assert s.call("GET", "/v1/model", headers={"Authorization": "Bearer " + "k" * 23 + "j"})[0] == 401
        assert s.call("GET", "/metrics", headers={"X-API-Key": KEY})[0] == 200
        assert s.call("POST", "/v1/predict", {"texts": ["x"]}, headers={"Authorization": f"Bearer {KEY}"})[0] == 200


def test_api_key_file_errors(tmp_path):
    with pytest.raises(EdgepackError, match="the key must be at least 16 characters"):
        (tmp_path / "short").write_text("abc")
        server_guard.read_api_key(str(tmp_path / "short"))
    with pytest.raises(EdgepackError, match="cannot read it"):
        server_guard.read_api_key(str(tmp_path / "missing"))


def test_errors_carry_a_request_id_and_no_internal_strings(fake_artifact):
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    handler.addFilter(server_guard.RequestIdFilter())
    server_guard.log.addHandler(handler)
    try:
        with Server(_app(fake_artifact), Limits()) as s:
            s.wait_ready()
            status, headers, body = s.call("POST", "/v1/predict", {"texts": ["boom"]}, headers={"X-Request-ID": "r-1"})
            assert status == 500 and headers["x-request-id"] == "r-1" and body["error"]["request_id"] == "r-1"
            assert "/srv" not in json.dumps(body) and "ValueError" not in json.dumps(body)
            status, headers, body = s.call("GET", "/nope", headers={"X-Request-ID": "bad id\x7f"})
            assert body["error"]["request_id"] == headers["x-request-id"] != "bad id"
            status, _, model = s.call("GET", "/v1/model")
    finally:
        server_guard.log.removeHandler(handler)
    failed = [r for r in records if "inference failed" in r.getMessage()]
    assert failed and failed[0].request_id == "r-1" and "/srv/models" in failed[0].getMessage()
    text = json.dumps(model)
    assert status == 200 and "extra" not in model and "/home/u" not in text and "FileNotFoundError" not in text
    assert model["metrics"] == {"accuracy": 0.9} and "api_key_file" not in model["serving"]


def test_log_config_puts_the_request_id_on_every_line():
    cfg = server_guard.log_config("info")
    assert "%(request_id)s" in cfg["formatters"]["rid"]["format"]
    assert all(cfg["handlers"][h]["filters"] == ["rid"] for h in cfg["handlers"])


def test_serve_cli_validates_the_new_options(tmp_path, capsys):
    from edgepack.pipeline.cli import main

    art = tmp_path / "nope"
    assert main(["serve", str(art), "--ssl-certfile", "c.pem"]) == 2
    assert "TLS needs both --ssl-certfile and --ssl-keyfile" in capsys.readouterr().err
    (tmp_path / "k").write_text("short")
    assert main(["serve", str(art), "--api-key-file", str(tmp_path / "k")]) == 2
    assert "at least 16 characters" in capsys.readouterr().err
