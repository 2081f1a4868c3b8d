"""What the server lets in and lets out: request ids, optional API-key auth, and responses that hold no
internal paths or exception text.

* Every request gets an id (the client's ``X-Request-ID`` when it is 1-64 safe characters, else a new one),
  returned in the ``X-Request-ID`` header and in every JSON error, and stamped on every log line written
  while the request runs (``[rid]``; ``-`` outside requests).
* With an API key (``--api-key-file``) every endpoint but ``/healthz`` and ``/readyz`` needs
  ``Authorization: Bearer KEY`` or ``X-API-Key: KEY`` (compared in constant time); otherwise 401.
* ``public_model_summary`` is /v1/model: the manifest's public facts only (no ``extra``, no paths, no
  non-numeric metrics such as the quantize candidate table's error strings).
"""

from __future__ import annotations

import contextvars
import hmac
import logging
import re
import uuid
from dataclasses import asdict
from pathlib import Path
from typing import Any

from edgepack.errors import EdgepackError

REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("edgepack_request_id", default="-")
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
OPEN_PATHS = ("/healthz", "/readyz")
log = logging.getLogger("edgepack.serve")


def read_api_key(path: str | None) -> bytes | None:
    """The key in ``path`` (first line, stripped); None without a path. One-line errors for bad files."""
    if not path:
        return None
    try:
        key = Path(path).expanduser().read_bytes().splitlines()[0].strip() if Path(path).stat().st_size else b""
    except (OSError, IndexError):
        raise EdgepackError(f"--api-key-file {path}: cannot read it") from None
    if len(key) < 16:
        raise EdgepackError(f"--api-key-file {path}: the key must be at least 16 characters")
    return key


class RequestIdFilter(logging.Filter):
    """Adds ``record.request_id`` (the current request's id, ``-`` outside requests) to every log record."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = REQUEST_ID.get()
        return True


def log_config(level: str = "info") -> dict:
    """uvicorn's logging config with the request id on every line."""
    fmt = "%(asctime)s %(levelname)s [%(request_id)s] %(name)s: %(message)s"
    handler = {"class": "logging.StreamHandler", "formatter": "rid", "filters": ["rid"],
               "stream": "ext://sys.stderr"}
    loggers = {name: {"handlers": ["default"], "level": level.upper(), "propagate": False}
               for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "edgepack")}
    return {"version": 1, "disable_existing_loggers": False,
            "filters": {"rid": {"()": "edgepack.runtime.server_guard.RequestIdFilter"}},
            "formatters": {"rid": {"format": fmt}}, "handlers": {"default": handler}, "loggers": loggers}


class GuardMiddleware:
    """Request id for every HTTP request, then the API-key check (when a key is set)."""

    def __init__(self, app: Any, api_key: bytes | None = None):
        self.app, self.api_key = app, api_key
        self.state = getattr(app, "state", None)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        given = headers.get(b"x-request-id", b"").decode("latin-1")
        rid = given if _SAFE_ID.match(given) else uuid.uuid4().hex[:16]
        token = REQUEST_ID.set(rid)

        async def send_with_id(message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), (b"x-request-id", rid.encode())]}
            await send(message)

        try:
            if self.api_key is not None and scope.get("path") not in OPEN_PATHS and not self._authorized(headers):
                log.warning("refused %s %s: missing or wrong API key", scope.get("method"), scope.get("path"))
                from edgepack.runtime.server import error_response

                resp = error_response(401, "unauthorized", "missing or wrong API key",
                                      {"WWW-Authenticate": "Bearer"})
                return await resp(scope, receive, send_with_id)
            await self.app(scope, receive, send_with_id)
        finally:
            REQUEST_ID.reset(token)

    def _authorized(self, headers: dict) -> bool:
        auth = headers.get(b"authorization", b"")
        given = auth[7:].strip() if auth[:7].lower() == b"bearer " else headers.get(b"x-api-key", b"").strip()
        return hmac.compare_digest(given, self.api_key)


def _public_metrics(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def public_model_summary(pred: Any, cfg: Any) -> dict:
    """GET /v1/model: what is served and the serving limits, without paths, provenance or error strings."""
    art = pred.artifact
    runtime = {k: v for k, v in art.runtime.to_dict().items() if k != "torch_source"}
    hidden = ("host", "port", "api_key_file", "ssl_certfile", "ssl_keyfile", "state_dir")
    return {
        "name": art.path.name, "format": art.format, "stage": art.stage, "task": art.task,
        "labels": art.labels, "inputs": art.inputs, "outputs": art.outputs, "runtime": runtime,
        "metrics": _public_metrics(art.metrics), "created": art.manifest.get("created"),
        "files": {role: {"path": f["path"], "sha256": f["sha256"], "bytes": f.get("bytes")}
                  for role, f in art.manifest["files"].items()},
        "serving": {k: v for k, v in asdict(cfg).items() if k not in hidden},
    }
