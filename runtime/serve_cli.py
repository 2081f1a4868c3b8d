"""``edgepack serve``: the HTTP server with dynamic batching (argparse only at import time)."""

from __future__ import annotations

import argparse
import signal

EPILOG = """\
endpoints:
  POST /v1/predict   {"texts": ["a gripping film", "dull"]} -> {"task", "results": [...]} in input order
  GET  /healthz      alive          GET /readyz   200 once the model is loaded and warmed up
  GET  /v1/model     manifest summary and limits
  GET  /metrics      Prometheus text (requests by status, latency and batch-size histograms, queue depth)
  GET  /openapi.json the API description

examples:
  edgepack serve out/onnx                                  # 127.0.0.1:8000, batches of up to 32
  edgepack serve out/onnx --host 0.0.0.0 --port 9000 --max-batch 16 --max-wait-ms 2
  edgepack serve out/onnx --no-batching                    # one model call per request (a baseline)
  curl -s localhost:8000/v1/predict -H 'content-type: application/json' -d '{"texts": ["great film"]}'

A full queue answers 503 with Retry-After; a request not answered within --timeout-s answers 504.
SIGTERM (or Ctrl-C) stops taking connections, finishes in-flight requests, then exits."""


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
    p.add_argument("--max-batch", type=int, default=32, help="texts gathered into one batch (default: %(default)s)")
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
        type=int,
        default=1,
        help="server processes, each with its own model copy and metrics (default: %(default)s)",
    )
    p.add_argument("--max-texts", type=int, default=64, help="texts per request (default: %(default)s)")
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
    p.add_argument("--max-length", type=int, default=None, help="truncate texts to this many tokens")
    p.add_argument(
        "--model-batch",
        type=int,
        default=16,
        help="texts per ONNX Runtime run inside a gathered batch, sorted by token count so "
        "similar lengths share a run: less padding on CPU (default: %(default)s; use "
        "--max-batch's value on a GPU)",
    )
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
    for name in ("max_batch", "max_queue", "threads", "workers", "max_texts", "max_chars", "max_body_bytes"):
        if getattr(args, name) < 1:
            raise EdgepackError(f"--{name.replace('_', '-')} must be >= 1")
    if not 0 < args.port < 65536:
        raise EdgepackError(f"--port must be between 1 and 65535, got {args.port}")
    if args.timeout_s <= 0 or args.max_wait_ms < 0:
        raise EdgepackError("--timeout-s must be > 0 and --max-wait-ms >= 0")
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
        max_wait_ms=args.max_wait_ms,
        max_queue=args.max_queue,
        timeout_s=args.timeout_s,
        threads=args.threads,
        workers=args.workers,
        batching=args.batching,
        max_texts=args.max_texts,
        max_chars=args.max_chars,
        max_body_bytes=args.max_body_bytes,
        backend=args.backend,
        intra_op_threads=args.intra_op_threads,
        max_length=args.max_length,
        model_batch=args.model_batch,
    )
    # uvicorn drains on SIGTERM, then re-raises it to the handler that was installed before it ran;
    # a no-op handler here turns a completed graceful shutdown into exit code 0 instead of -15.
    previous = signal.signal(signal.SIGTERM, lambda *_: None)
    try:
        serve(str(art.path), cfg, log_level=args.log_level)
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0
