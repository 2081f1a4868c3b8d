"""Embedding servers side by side: ``edgepack serve`` and Infinity, each started from its own venv on loopback.

Both take OpenAI-style ``{"input": [texts], "model": name}``: edgepack on ``/v1/embeddings``, Infinity on
``/embeddings`` (its routes carry no ``/v1`` prefix unless ``--url-prefix`` says so). Each server runs in a
child process (started here, stopped by its own pid), is warmed up, then loaded by the closed-loop clients
of ``edgepack.benchmarks.http_load`` with one text per request and with several (``load_phase``: one turn).
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from pathlib import Path

from edgepack.benchmarks.http_load import ChildServer as _ChildServer
from edgepack.benchmarks.http_load import run_load

SERVED_NAME = "all-MiniLM-L6-v2"


@dataclass(frozen=True)
class ServerSpec:
    """How to start one server: argv (``{port}`` filled in), its readiness and embeddings routes."""

    name: str
    argv: tuple[str, ...]
    ready_path: str
    embed_path: str
    env: str  # the venv it runs from (a key of peer_envs.ENVS)
    cwd: str | None = None  # where it starts (None: its log's folder)


def edgepack_server(name: str, python: Path, artifact: Path, threads: int, workers: bool = False) -> ServerSpec:
    """``edgepack serve``: one process with ``threads`` intra-op threads, or (``workers``) ``threads``
    single-threaded worker processes behind the port; the same thread count either way."""
    split = ("--workers", str(threads), "--intra-op-threads", "1") if workers else ("--workers", "1",
                                                                                   "--intra-op-threads", str(threads))
    argv = (str(python), "-m", "edgepack", "serve", str(artifact), "--host", "127.0.0.1", "--port", "{port}",
            "--log-level", "warning", *split)
    return ServerSpec(name, argv, "/readyz", "/v1/embeddings", "edgepack")


def infinity_server(name: str, python: Path, model_dir: Path, engine: str, env: str, batch_size: int = 32) -> ServerSpec:
    """``infinity_emb v2`` on ``model_dir``. The optimum engine starts inside the folder as ``--model-id .``:
    infinity 0.0.78 passes the ONNX file it finds there as ``file_name`` to optimum, and optimum 2.x accepts
    only a bare file name (``model.onnx``, at the folder's top), which a relative model id gives."""
    exe = python.parent / "infinity_emb"
    here = engine == "optimum"
    argv = (str(exe), "v2", "--model-id", "." if here else str(model_dir), "--served-model-name", SERVED_NAME,
            "--engine", engine, "--device", "cpu", "--host", "127.0.0.1", "--port", "{port}", "--batch-size",
            str(batch_size), "--log-level", "warning", "--no-model-warmup")
    return ServerSpec(name, argv, "/health", "/embeddings", env, cwd=str(model_dir) if here else None)


class ChildServer(_ChildServer):
    """A peer's server from its ``ServerSpec``: its venv's threads set through the environment, started in the
    spec's folder (else its log's), ready when its ready route answers 200."""

    def __init__(self, spec: ServerSpec, threads: int, log_path: Path, ready_timeout_s: float = 600):
        t = str(threads)
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": t,
               "MKL_NUM_THREADS": t, "TOKENIZERS_PARALLELISM": "false", "INFINITY_ANONYMOUS_USAGE_STATS": "0",
               "DO_NOT_TRACK": "1"}
        # cwd: the work folder, so `python -m edgepack` imports the venv's install, never a checkout's folders
        super().__init__(spec.argv, spec.ready_path, log_path, env, spec.cwd or str(log_path.parent),
                         ready_timeout_s, poll_s=0.2)
        self.spec = spec


def _body(texts: list[str]) -> dict:
    return {"input": texts, "model": SERVED_NAME}


def load_phase(srv: ChildServer, texts: list[str], clients: int, duration: float, per_request: int, seed: int = 1,
               max_requests: int = 100_000):
    """One turn: warm up (4 clients, 1 s), then ``clients`` closed-loop clients for ``duration`` s; the Phase."""
    path = srv.spec.embed_path
    asyncio.run(run_load(srv.port, texts, 4, 1.0, 200, per_request, path=path, body_of=_body))
    return asyncio.run(run_load(srv.port, texts, clients, duration, max_requests, per_request, seed=seed,
                                path=path, body_of=_body))


def check_answer(srv: ChildServer, text: str) -> list[float]:
    """One request through the embeddings route; its vector (a server that answers wrongly fails here)."""
    import json
    import urllib.request

    req = urllib.request.Request(f"http://127.0.0.1:{srv.port}{srv.spec.embed_path}",
                                 data=json.dumps(_body([text])).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        doc = json.loads(r.read())
    return doc["data"][0]["embedding"]
