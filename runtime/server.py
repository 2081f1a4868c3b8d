"""The HTTP server: a Starlette app on uvicorn, serving one artifact through a DynamicBatcher.

Endpoints: POST /v1/predict, POST /v1/embeddings and /v1/classify (``openai_api``), GET /healthz,
/readyz, /v1/model, /metrics, /openapi.json.
The model loads in a background thread after the socket is open, so /healthz answers at once and
/readyz turns 200 only when the model is loaded and warmed up. Bad requests get JSON 4xx errors
(``{"error": {"code", "message", "request_id"}}``, never internal paths or exception text: those go to
the log, with the request id); a full queue gets 503 with Retry-After; connection cap and read timeouts:
``server_limits``; API key and request ids: ``server_guard``. SIGTERM stops new
connections, finishes in-flight requests and drains the queue (uvicorn's graceful shutdown, then
the lifespan closes the batcher). Nothing here imports torch or transformers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from edgepack.runtime import server_guard as guard
from edgepack.runtime.batcher import (
    DEFAULT_CALL_TOKENS,
    DEFAULT_MAX_TOKENS,
    BatcherClosedError,
    BatcherConfig,
    DynamicBatcher,
    QueueFullError,
    Stages,
)
from edgepack.runtime.metrics_prom import CONTENT_TYPE, ServerMetrics
from edgepack.runtime.openai_api import openai_routes
from edgepack.runtime.openapi import openapi_spec
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


@dataclass(frozen=True)
class ServeConfig:
    host: str = "127.0.0.1"
    port: int = 8000
    max_batch: int = 32  # rows (texts) per model call
    # rows x longest row per model call (padding counts), 0: rows only (then model_batch rows per ORT run)
    max_batch_tokens: int = DEFAULT_MAX_TOKENS
    call_tokens: int = DEFAULT_CALL_TOKENS  # a model call's fixed cost in tokens, to cut windows (plan_batches)
    max_wait_ms: float = 5.0  # wait for company before running a batch
    max_queue: int = 512  # texts waiting; more -> 503
    timeout_s: float = 30.0  # per request; -> 504
    threads: int = 1  # batcher threads per process calling the model
    workers: int = 1  # server processes behind one port (0: auto, see serve_workers.plan_workers)
    batching: bool = True
    tokenize: str = "thread"  # where texts are tokenized: "thread" (its own) or "model" (see BatcherConfig)
    max_texts: int = 256  # texts per request (split into model batches by the token budget)
    max_chars: int = 2000  # characters per text
    max_body_bytes: int = 1 << 20
    retry_after_s: int = 1
    backend: str = "auto"
    intra_op_threads: int | None = None
    inter_op_threads: int | None = None  # ONNX Runtime inter-op threads (None: 1)
    memory_arena: bool = True  # ONNX Runtime's CPU memory arena
    max_length: int | None = None  # truncation in tokens; None: the artifact's
    # texts per ORT run within a batch, sorted by tokens; None: max_batch. 16: on the 2-core CPU the demo INT8
    # student ran 3600 texts/s at 16 (length-sorted), 3200 at 8, 3500 at 32; the server 1497 rps vs 1434 at 8
    model_batch: int | None = 16
    state_dir: str | None = None  # several workers: where they share readiness and metrics (set by serve)
    max_connections: int = 256  # open connections; past it slow/idle ones are evicted or new ones get 503
    header_timeout_s: float = 10.0  # request line + headers must arrive within this (408 otherwise)
    body_timeout_s: float = 30.0  # the body must arrive within this once the headers are in (408 otherwise)
    api_key_file: str | None = None  # a key every endpoint but /healthz and /readyz needs
    ssl_certfile: str | None = None  # TLS through uvicorn (both files, PEM)
    ssl_keyfile: str | None = None
    loop: str = "auto"  # uvicorn's event loop: auto (uvloop where installed, else asyncio), asyncio, uvloop

    def batcher_config(self) -> BatcherConfig:
        return BatcherConfig(
            max_batch=self.max_batch,
            max_tokens=self.max_batch_tokens,
            call_tokens=self.call_tokens,
            max_wait_ms=self.max_wait_ms,
            max_queue=self.max_queue,
            timeout_s=self.timeout_s,
            workers=self.threads,
            batching=self.batching,
            tokenize=self.tokenize,
        )


class RequestError(Exception):
    """A client error, answered as ``{"error": {"code", "message"}}`` with ``status``."""

    def __init__(self, status: int, code: str, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers


def error_response(status: int, code: str, message: str, headers: dict | None = None) -> JSONResponse:
    error = {"code": code, "message": message, "request_id": guard.REQUEST_ID.get()}
    return JSONResponse({"error": error}, status_code=status, headers=headers)


def json_object(body: bytes, shape: str) -> dict:
    """The request body as a JSON object, or RequestError (400 bad UTF-8/JSON, 422 not an object like ``shape``)."""
    try:
        doc = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError:
        raise RequestError(400, "invalid_encoding", "the body is not valid UTF-8") from None
    except (ValueError, RecursionError) as e:
        raise RequestError(400, "invalid_json", f"the body is not valid JSON: {str(e)[:200]}") from None
    if not isinstance(doc, dict):
        raise RequestError(422, "invalid_request", f"expected a JSON object {shape}, got {_kind(doc)}")
    return doc


def parse_predict_body(body: bytes, cfg: ServeConfig) -> list[str]:
    """Validate a /v1/predict body; return its texts or raise RequestError (400/422)."""
    doc = json_object(body, '{"texts": [...]}')
    unknown = sorted(set(doc) - {"texts"})
    if unknown:
        raise RequestError(
            422,
            "invalid_request",
            f"unknown field(s): {', '.join(map(repr, unknown))[:200]}; the only field is 'texts'",
        )
    if "texts" not in doc:
        raise RequestError(422, "invalid_request", "missing field 'texts' (a list of strings)")
    texts = doc["texts"]
    if not isinstance(texts, list):
        raise RequestError(422, "invalid_request", f"'texts' must be a list of strings, got {_kind(texts)}")
    if not texts:
        raise RequestError(422, "empty_input", "'texts' is empty; send at least one text")
    if len(texts) > cfg.max_texts:
        raise RequestError(
            422, "too_many_texts", f"{len(texts)} texts in one request; the limit is {cfg.max_texts}"
        )
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise RequestError(422, "invalid_request", f"texts[{i}] must be a string, got {_kind(t)}")
        if not t.strip():
            raise RequestError(422, "empty_input", f"texts[{i}] is empty or only whitespace")
        if len(t) > cfg.max_chars:
            raise RequestError(
                422, "text_too_long", f"texts[{i}] has {len(t)} characters; the limit is {cfg.max_chars}"
            )
        try:
            t.encode("utf-8")
        except UnicodeEncodeError:
            raise RequestError(
                422, "invalid_text", f"texts[{i}] contains an unpaired surrogate escape"
            ) from None
    return texts


def _kind(v: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null",
            int: "a number", float: "a number"}.get(type(v), type(v).__name__)


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing (413) more than ``limit`` bytes whether or not Content-Length is sent."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise RequestError(400, "invalid_header", "Content-Length is not a number")
        if int(declared) > limit:
            raise RequestError(413, "body_too_large", f"the body has {declared} bytes; the limit is {limit}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestError(413, "body_too_large", f"the body is larger than the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


class ModelState:
    """Loads the model off the event loop; holds the predictor and batcher once ready."""

    def __init__(self, load: Callable[[], Any], cfg: ServeConfig, metrics: ServerMetrics):
        self.load, self.cfg, self.metrics = load, cfg, metrics
        self.predictor: Any = None
        self.batcher: DynamicBatcher | None = None
        self.error: str | None = None
        self.stopping = False
        self.started = time.perf_counter()
        self.ready_after_s: float | None = None
        self.loaded = threading.Event()  # set when loading ended, well or not
        self.group: Any = None  # serve_workers.WorkerGroup with several workers

    def start(self) -> None:
        threading.Thread(target=self._load, name="edgepack-load", daemon=True).start()

    def _load(self) -> None:
        try:
            pred = self.load()
            pred.predict(["warm up"])  # first run initialises the session's kernels
            staged = all(hasattr(pred, m) for m in ("encode", "infer_encoded", "to_results"))
            self.batcher = DynamicBatcher(Stages.of_predictor(pred) if staged else pred.predict,
                                          self.cfg.batcher_config(), on_batch=self.metrics.observe_batch)
            self.metrics.batch_stats = lambda: self.batcher.stats
            self.metrics.queue_depth = lambda: self.batcher.queue_depth
            self.predictor = pred
            self.ready_after_s = time.perf_counter() - self.started
            if self.group is not None:
                self.group.announce_ready()
        except Exception as e:  # noqa: BLE001 - reported on /readyz, the process keeps answering
            guard.log.error("the model failed to load: %s: %s", type(e).__name__, e)
            self.error = "the model failed to load (details are in the server log)"
        finally:
            self.loaded.set()

    @property
    def ready(self) -> bool:
        return self.batcher is not None and not self.stopping

    def stop(self) -> None:
        self.stopping = True
        if self.batcher is not None:
            self.batcher.close(drain=True, timeout=self.cfg.timeout_s)


KNOWN_PATHS = ("/v1/predict", "/v1/embeddings", "/v1/classify", "/healthz", "/readyz", "/v1/model", "/metrics",
               "/openapi.json")


def create_app(load: Callable[[], Any], cfg: ServeConfig = ServeConfig()) -> Starlette:
    """The ASGI app. ``load()`` returns a Predictor-like object (``predict``, ``task``, ``labels``,
    ``artifact``); it runs in a background thread at startup."""
    metrics = ServerMetrics()
    state = ModelState(load, cfg, metrics)
    if cfg.state_dir:  # one of several workers (serve_workers)
        from edgepack.runtime.serve_workers import WorkerGroup, worker_snapshot

        state.group = WorkerGroup(cfg.state_dir, cfg.workers)
        state.group.start_publishing(lambda: worker_snapshot(metrics))

    def not_ready() -> JSONResponse:
        if state.stopping:
            return error_response(503, "shutting_down", "the server is shutting down")
        if state.error:
            return error_response(503, "load_failed", state.error)
        return error_response(
            503, "not_ready", "the model is still loading", {"Retry-After": str(cfg.retry_after_s)}
        )

    async def predict(request: Request) -> Response:
        if not state.ready:
            return not_ready()
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        try:
            if ctype != "application/json":
                raise RequestError(
                    415,
                    "unsupported_media_type",
                    f"send Content-Type: application/json (got {ctype or 'none'!r})",
                )
            texts = parse_predict_body(await read_body(request, cfg.max_body_bytes), cfg)
            try:
                fut = state.batcher.submit(texts)
            except QueueFullError as e:
                raise RequestError(
                    503, "overloaded", str(e), {"Retry-After": str(cfg.retry_after_s)}
                ) from None
            except BatcherClosedError:
                raise RequestError(503, "shutting_down", "the server is shutting down") from None
            try:
                results = await asyncio.wait_for(asyncio.wrap_future(fut), cfg.timeout_s)
            except asyncio.TimeoutError:
                raise RequestError(504, "timeout", f"no answer within {cfg.timeout_s:g} s") from None
            except Exception as e:  # noqa: BLE001 - the model failed on this request's batch
                guard.log.error("inference failed: %s: %s", type(e).__name__, str(e)[:300])
                return error_response(500, "inference_failed", "the model failed on this request's batch "
                                      "(details are in the server log)")
        except RequestError as e:
            return error_response(e.status, e.code, e.message, e.headers)
        return JSONResponse({"task": state.predictor.task, "results": results})

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        if not state.ready:
            return not_ready()
        if state.group is not None and not state.group.all_ready():
            return error_response(503, "not_ready", f"{state.group.ready_count()} of {cfg.workers} workers have "
                                  "loaded the model", {"Retry-After": str(cfg.retry_after_s)})
        return JSONResponse({"status": "ready", "ready_after_s": round(state.ready_after_s, 3)})

    async def model(request: Request) -> Response:
        if state.predictor is None:
            return not_ready()
        return JSONResponse(guard.public_model_summary(state.predictor, cfg))

    async def metrics_endpoint(request: Request) -> Response:
        from edgepack.runtime.server_limits import STATS

        if state.group is not None:
            from edgepack.runtime.serve_workers import render_group_metrics

            return Response(render_group_metrics(metrics, state.group), media_type=CONTENT_TYPE)
        return Response(metrics.render() + STATS.render(), media_type=CONTENT_TYPE)

    async def openapi(request: Request) -> Response:
        pred = state.predictor
        return JSONResponse(
            openapi_spec(
                max_texts=cfg.max_texts,
                max_chars=cfg.max_chars,
                max_body_bytes=cfg.max_body_bytes,
                task=getattr(pred, "task", None),
                labels=getattr(pred, "labels", None),
            )
        )

    async def http_error(request: Request, exc: HTTPException) -> Response:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail), dict(exc.headers or {}))

    async def internal_error(request: Request, exc: Exception) -> Response:
        guard.log.error("internal error on %s", request.url.path, exc_info=exc)
        return error_response(500, "internal_error", "internal error (details are in the server log)")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        state.start()
        if state.group is not None:  # accept connections only once the model is loaded
            await asyncio.to_thread(state.loaded.wait)
        yield
        await asyncio.to_thread(state.stop)

    routes = [
        Route("/v1/predict", predict, methods=["POST"]),
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/v1/model", model),
        Route("/metrics", metrics_endpoint),
        Route("/openapi.json", openapi),
        *openai_routes(state, cfg, not_ready),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={HTTPException: http_error, Exception: internal_error},
    )
    app.state.model = state
    app.state.metrics = metrics
    return guard.GuardMiddleware(_MetricsMiddleware(app, metrics), guard.read_api_key(cfg.api_key_file))


class _MetricsMiddleware:
    """Counts every HTTP response by endpoint (unknown paths pooled as "other") and status."""

    def __init__(self, app: Starlette, metrics: ServerMetrics):
        self.app, self.metrics = app, metrics
        self.state = app.state

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0 = time.perf_counter()
        status = 500

        async def send_wrapper(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            path = scope.get("path", "")
            self.metrics.observe_request(
                path if path in KNOWN_PATHS else "other", status, time.perf_counter() - t0
            )


def serve(artifact_dir: str, cfg: ServeConfig = ServeConfig(), log_level: str = "info") -> None:
    """Run the server until SIGINT/SIGTERM (blocking); several processes when ``cfg.workers`` is not 1
    (``serve_workers``)."""
    from edgepack.runtime.serve_workers import serve as run

    run(artifact_dir, cfg, log_level)
