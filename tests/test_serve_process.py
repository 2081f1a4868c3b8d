"""`edgepack serve` as a real process: it imports no torch/transformers after serving requests, and
SIGTERM finishes in-flight requests before exiting. Also the CLI's clear errors."""

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

# Runs the real CLI, then reports which heavy modules the process had imported.
WRAPPER = """
import json, sys
from edgepack.pipeline.cli import main
rc = main(sys.argv[1:])
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "transformers", "optimum", "peft"))
print("HEAVY_MODULES=" + json.dumps(heavy), flush=True)
sys.exit(rc)
"""


@pytest.fixture(scope="module")
def tiny_onnx(tiny_bert, tmp_path_factory):
    from edgepack.export.onnx_export import OnnxExportConfig, export_onnx

    return export_onnx(tiny_bert, tmp_path_factory.mktemp("serve_proc") / "onnx", OnnxExportConfig()).path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(port, texts, timeout=30):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    c.request("POST", "/v1/predict", json.dumps({"texts": texts}), {"Content-Type": "application/json"})
    r = c.getresponse()
    return r.status, json.loads(r.read())


def get(port, path):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("GET", path)
    return c.getresponse().read().decode()


def start(artifact, *args):
    port = free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            WRAPPER,
            "serve",
            str(artifact),
            "--port",
            str(port),
            "--log-level",
            "warning",
            *args,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    deadline = time.time() + 60
    while True:
        assert proc.poll() is None, proc.communicate()
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", "/readyz")
            if c.getresponse().status == 200:
                return proc, port
        except OSError:
            pass
        assert time.time() < deadline, "server never became ready"
        time.sleep(0.05)


def test_serving_process_imports_no_torch_and_drains_on_sigterm(tiny_onnx):
    proc, port = start(tiny_onnx, "--max-wait-ms", "1500", "--max-batch", "64", "--workers", "1")
    try:
        assert post(port, ["warm", "requests"])[0] == 200
        results = {}
        # These sit in the batcher's 1.5 s gathering window when SIGTERM arrives.
        threads = [
            threading.Thread(target=lambda i=i: results.__setitem__(i, post(port, [f"in flight {i}"])))
            for i in range(4)
        ]
        for t in threads:
            t.start()
        deadline = time.time() + 10
        while "edgepack_queue_depth 4" not in get(port, "/metrics"):
            assert time.time() < deadline, "the requests never reached the queue"
            time.sleep(0.01)
        proc.send_signal(signal.SIGTERM)
        for t in threads:
            t.join(30)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert [results[i][0] for i in range(4)] == [200] * 4
    assert all(len(results[i][1]["results"]) == 1 for i in range(4))
    heavy = json.loads(out.split("HEAVY_MODULES=", 1)[1])
    assert heavy == [], f"the serving process imported {heavy[:5]}"
    with pytest.raises(OSError):  # the port is closed after shutdown
        http.client.HTTPConnection("127.0.0.1", port, timeout=2).request("GET", "/healthz")


@pytest.mark.parametrize(
    "args,message",
    [
        (["/no/such/dir"], "artifact directory not found"),
        (["{art}", "--max-batch", "0"], "--max-batch must be >= 1"),
        (["{art}", "--port", "70000"], "--port must be between 1 and 65535"),
    ],
)
def test_cli_errors_are_one_line(tiny_onnx, args, message):
    args = [a.format(art=tiny_onnx) for a in args]
    r = subprocess.run(
        [sys.executable, "-m", "edgepack.pipeline.cli", "serve", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr


def test_cli_refuses_a_torch_artifact(tmp_path):
    from edgepack.artifact import ArtifactWriter

    with ArtifactWriter(tmp_path / "hf") as w:
        (w.dir / "model.safetensors").write_bytes(b"x")
        art = w.commit(
            stage="finetune", format="hf", task="text-classification", files={"weights": "model.safetensors"}
        )
    r = subprocess.run(
        [sys.executable, "-m", "edgepack.pipeline.cli", "serve", str(art.path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert r.returncode == 2 and "serve needs an exported one" in r.stderr


def test_model_only_bound_times_each_batch_size(tiny_onnx):
    from edgepack.benchmarks.load_test import model_only_bound
    from edgepack.testing import SAMPLE_TEXTS

    got = model_only_bound(str(tiny_onnx), list(SAMPLE_TEXTS) * 4, batch_sizes=(1, 4), rounds=1)
    assert got["texts"] == 4 * len(SAMPLE_TEXTS)
    assert set(got["texts_per_s"]) == {"1", "4"} and all(v > 0 for v in got["texts_per_s"].values())
    assert got["best_vs_batch1"] >= 1.0  # batch 1 is one of the candidates


def test_workers_share_one_port_and_sum_their_metrics(tiny_onnx):
    """--workers 2: two processes behind one port; /metrics sums both; SIGTERM stops both cleanly."""
    from edgepack.testing import SAMPLE_TEXTS

    proc, port = start(tiny_onnx, "--workers", "2", "--intra-op-threads", "1", "--max-wait-ms", "1")
    try:
        # readyz was 200: both workers loaded (a loading worker does not accept connections)
        for i in range(12):  # a fresh connection each: the kernel spreads them over the workers
            status, body = post(port, [SAMPLE_TEXTS[i % len(SAMPLE_TEXTS)]])
            assert status == 200 and len(body["results"]) == 1
        deadline = time.time() + 10
        while True:  # the other worker's numbers are published once a second
            text = get(port, "/metrics")
            ok = 'edgepack_requests_total{endpoint="/v1/predict",status="200"} 12' in text
            if ok and "edgepack_workers 2" in text:
                break
            assert time.time() < deadline, text[-1500:]
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-2000:]
    assert json.loads(out.split("HEAVY_MODULES=", 1)[1]) == []
