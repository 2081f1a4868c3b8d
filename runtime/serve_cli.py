"""``edgepack serve``: the HTTP server with dynamic batching (argparse only at import time)."""

from __future__ import annotations

import argparse
import os
import signal

from edgepack.runtime.batcher import DEFAULT_CALL_TOKENS, DEFAULT_MAX_TOKENS

EPILOG = """\
endpoints:
  POST /v1/predict   {"texts": ["a gripping film", "dull"]} -> {"task", "results": [...]} in input order
  POST /v1/embeddings  OpenAI-style {"input": str | [str], "encoding_format": "float"|"base64"} (embedding models)
  POST /v1/classify  {"input": str | [str]} -> {"object": "list", "data": [{"index", "label", "score", ...}]}
  GET  /healthz      alive          GET /readyz   200 once the model is loaded and warmed up
  GET  /v1/model     manifest summary and limits
  GET  /metrics      Prometheus text (requests by status, latency and batch-size histograms, queue depth)
  GET  /openapi.json the API description

examples:
  edgepack serve out/onnx                                  # 127.0.0.1:8000, batches of up to 32
  edgepack serve out/onnx --host 0.0.0.0 --port 9000 --max-batch 16 --max-wait-ms 2
  edgepack serve out/onnx --no-batching                    # one model call per request (a baseline)
  edgepack serve out/onnx --workers 2 --intra-op-threads 4 # 2 processes on one port, 4 ORT threads each

batching: a tokenizer thread encodes requests as they arrive; the model thread takes a window of waiting
texts (requests are split into texts: a request of 200 texts shares model calls with others' texts and
is answered as one list in its order), sorts it by token count and cuts batches of at most --max-batch
rows whose padded size (rows x longest row) stays within --max-batch-tokens; a longer text runs alone.
workers: several processes share the port (the parent restarts a worker that dies); a worker takes
connections once its model is loaded, /readyz is 200 once all are, /metrics sums every worker's numbers.
  curl -s localhost:8000/v1/predict -H 'content-type: application/json' -d '{"texts": ["great film"]}'

A full queue answers 503 with Retry-After; a request not answered within --timeout-s answers 504.

hostile clients and exposed deployments:
  At most --max-connections connections are open. Past it, a new connection closes the oldest one that
  has only been reading its request (or idling) for 1 s or more; when there is none it gets an immediate
  503 with Retry-After. Headers must arrive within --header-timeout-s and the body within --body-timeout-s
  of them, or the connection gets 408 and is closed. /metrics shows edgepack_connections_* counters.
  --api-key-file FILE: every endpoint but /healthz and /readyz needs "Authorization: Bearer KEY" (or
  "X-API-Key: KEY"); KEY is the file's first line (16+ characters), compared in constant time; else 401.
  TLS: --ssl-certfile cert.pem --ssl-keyfile key.pem (uvicorn's TLS); without them, put the server behind
  a TLS proxy before binding --host 0.0.0.0.
  Every response carries X-Request-ID (the client's, if it sent a safe one); errors carry it as
  error.request_id and every log line written for the request shows it. Errors never hold internal paths
  or exception text (those are logged).
SIGTERM (or Ctrl-C) stops taking connections, finishes in-flight requests, then exits."""


def _workers(value: str) -> str | int:
    if value == "auto":
        return value
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"expected 'auto' or a number >= 1, got {value!r}")
    return int(value)


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``serve`` subcommand."""
    p = sub.add_parser(
        "serve",
        help="serve an artifact over HTTP with dynamic batching",
        description="Serve an onnx artifact over HTTP (lean runtime: no torch).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("artifact", metavar="ARTIFACT_DIR", help="an onnx (or tensorrt) artifact directory")
    p.add_argument(
        "--host", default="127.0.0.1", help="interface to bind (default: %(default)s, loopback only)"
    )
    p.add_argument("--port", type=int, default=8000, help="TCP port (default: %(default)s)")
    p.add_argument("--max-batch", type=int, default=32, help="rows (texts) per model call (default: %(default)s)")
    p.add_argument("--max-batch-tokens", type=int, default=DEFAULT_MAX_TOKENS,
                   help="token budget per model call, padding included (rows x longest row); a text longer than "
                   "it runs alone; 0: batch by --max-batch rows only (default: %(default)s)")
    p.add_argument(
        "--max-wait-ms",
        type=float,
        default=5.0,
        help="how long a request waits for others to batch with (default: %(default)s)",
    )
    p.add_argument(
        "--no-batching",
        dest="batching",
        action="store_false",
        help="run every request as its own model call (to measure what batching gives)",
    )
    p.add_argument("--call-tokens", type=int, default=DEFAULT_CALL_TOKENS,
                   help="a model call's fixed cost in tokens: a sorted window is cut into the batches that "
                   "minimise padded tokens + this per call; 0: fill each batch up to the limits (default: %(default)s)")
    p.add_argument("--loop", choices=["auto", "asyncio", "uvloop"], default="auto",
                   help="the event loop under the HTTP server: uvloop (the 'serve' extra installs it) spends less "
                        "CPU per request than asyncio; auto takes uvloop where installed (default: %(default)s)")
    p.add_argument("--tokenize", choices=["thread", "model"], default="thread",
                   help="tokenize on a thread of its own as requests arrive (the model never waits for it), or "
                   "on the model thread a window at a time (one thread fewer; for machines whose cores are all "
                   "busy) (default: %(default)s)")
    p.add_argument(
        "--max-queue",
        type=int,
        default=512,
        help="texts allowed to wait; beyond it requests get 503 + Retry-After (default: %(default)s)",
    )
    p.add_argument(
        "--timeout-s",
        type=float,
        default=30.0,
        help="per-request deadline, answered 504 (default: %(default)s)",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="threads per process calling the model concurrently (default: %(default)s)",
    )
    p.add_argument(
        "--workers",
        type=_workers,
        default="auto",
        help="server processes behind one port, each with its own model copy; auto: one per core (at most 8, "
        "spare cores become threads), or cores / --intra-op-threads; one on a GPU backend (default: %(default)s)",
    )
    p.add_argument("--max-texts", type=int, default=256,
                   help="texts per request, split into model batches by the token budget (default: %(default)s)")
    p.add_argument("--max-chars", type=int, default=2000, help="characters per text (default: %(default)s)")
    p.add_argument(
        "--max-body-bytes", type=int, default=1 << 20, help="request body size (default: %(default)s)"
    )
    p.add_argument(
        "--backend", default="auto", help="runtime backend, e.g. onnxruntime (default: %(default)s)"
    )
    p.add_argument(
        "--intra-op-threads",
        type=int,
        default=None,
        help="ONNX Runtime threads per model call (default: all cores)",
    )
    p.add_argument("--inter-op-threads", type=int, default=None,
                   help="ONNX Runtime threads across independent graph nodes (default: 1)")
    p.add_argument("--no-memory-arena", dest="memory_arena", action="store_false",
                   help="turn ONNX Runtime's CPU memory arena off: memory goes back after each run (lower "
                   "RSS with widely varying batch shapes, slower calls)")
    p.add_argument("--max-length", type=int, default=None, help="truncate texts to this many tokens")
    p.add_argument(
        "--model-batch",
        type=int,
        default=16,
        help="with --max-batch-tokens 0: texts per ONNX Runtime run inside a gathered batch, sorted by "
        "token count (default: %(default)s; use --max-batch's value on a GPU)",
    )
    p.add_argument("--max-connections", type=int, default=256,
                   help="open connections at most (default: %(default)s)")
    p.add_argument("--header-timeout-s", type=float, default=10.0,
                   help="time for a request's line and headers, else 408 (default: %(default)s)")
    p.add_argument("--body-timeout-s", type=float, default=30.0,
                   help="time for a request's body once its headers are in, else 408 (default: %(default)s)")
    p.add_argument("--api-key-file", metavar="FILE", help="require this key (first line) on all but /healthz, /readyz")
    p.add_argument("--ssl-certfile", metavar="PEM", help="serve HTTPS with this certificate (with --ssl-keyfile)")
    p.add_argument("--ssl-keyfile", metavar="PEM", help="the certificate's private key")
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Build the ServeConfig from ``args`` and serve until SIGTERM/SIGINT."""
    from edgepack.errors import EdgepackError, MissingDependencyError

    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        raise MissingDependencyError("starlette/uvicorn", "serve", "edgepack serve") from None
    from edgepack.runtime.server import ServeConfig, serve

    from edgepack.artifact import Artifact

    if args.model_batch is not None and args.model_batch < 1:
        raise EdgepackError("--model-batch must be >= 1")
    for name in ("intra_op_threads", "inter_op_threads"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise EdgepackError(f"--{name.replace('_', '-')} must be >= 1")
    if args.call_tokens < 0:
        raise EdgepackError("--call-tokens must be >= 0")
    if args.max_batch_tokens < 0:
        raise EdgepackError("--max-batch-tokens must be >= 0 (0: batch by rows only)")
    for name in ("max_batch", "max_queue", "threads", "max_texts", "max_chars", "max_body_bytes"):
        if getattr(args, name) < 1:
            raise EdgepackError(f"--{name.replace('_', '-')} must be >= 1")
    if not 0 < args.port < 65536:
        raise EdgepackError(f"--port must be between 1 and 65535, got {args.port}")
    if args.timeout_s <= 0 or args.max_wait_ms < 0:
        raise EdgepackError("--timeout-s must be > 0 and --max-wait-ms >= 0")
    if args.max_connections < 1 or args.header_timeout_s <= 0 or args.body_timeout_s <= 0:
        raise EdgepackError("--max-connections must be >= 1 and --header-timeout-s, --body-timeout-s > 0")
    if bool(args.ssl_certfile) != bool(args.ssl_keyfile):
        raise EdgepackError("TLS needs both --ssl-certfile and --ssl-keyfile")
    for flag, path in (("--ssl-certfile", args.ssl_certfile), ("--ssl-keyfile", args.ssl_keyfile)):
        if path and not os.path.isfile(path):
            raise EdgepackError(f"{flag} {path}: no such file")
    from edgepack.runtime.server_guard import read_api_key

    read_api_key(args.api_key_file)  # fail now, with one line, not in a worker
    art = Artifact.open(args.artifact, verify=False)  # fail fast on a wrong dir; Predictor verifies
    if art.format not in ("onnx", "tensorrt"):
        raise EdgepackError(
            f"{art.path} is a '{art.format}' artifact; serve needs an exported one "
            f"(run `edgepack export onnx {art.path} OUT` first)"
        )
    cfg = ServeConfig(
        host=args.host,
        port=args.port,
        max_batch=args.max_batch,
        max_batch_tokens=args.max_batch_tokens,
        call_tokens=args.call_tokens,
        max_wait_ms=args.max_wait_ms,
        max_queue=args.max_queue,
        timeout_s=args.timeout_s,
        threads=args.threads,
        workers=0 if args.workers == "auto" else args.workers,
        batching=args.batching,
        tokenize=args.tokenize,
        loop=args.loop,
        max_texts=args.max_texts,
        max_chars=args.max_chars,
        max_body_bytes=args.max_body_bytes,
        backend=args.backend,
        intra_op_threads=args.intra_op_threads,
        inter_op_threads=args.inter_op_threads,
        memory_arena=args.memory_arena,
        max_length=args.max_length,
        model_batch=args.model_batch,
        max_connections=args.max_connections,
        header_timeout_s=args.header_timeout_s,
        body_timeout_s=args.body_timeout_s,
        api_key_file=os.path.abspath(args.api_key_file) if args.api_key_file else None,
        ssl_certfile=args.ssl_certfile,
        ssl_keyfile=args.ssl_keyfile,
    )
    # uvicorn drains on SIGTERM, then re-raises it to the handler that was installed before it ran;
    # a no-op handler here turns a completed graceful shutdown into exit code 0 instead of -15.
    previous = signal.signal(signal.SIGTERM, lambda *_: None)
    try:
        serve(str(art.path), cfg, log_level=args.log_level)
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0
