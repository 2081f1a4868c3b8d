"""Connection limits for ``edgepack serve``: a cap on open connections and header/body read timeouts.

uvicorn has no header or body read timeout and ``limit_concurrency`` still holds every connection open, so
slow clients could pin descriptors and memory. :class:`GuardedH11Protocol` (uvicorn's h11 protocol plus
this) tracks each connection's phase: ``headers`` (request line and headers not complete), ``body``
(headers read, body not complete), ``busy`` (request read, the app is answering) and ``idle`` (kept alive).

* A connection still in ``headers`` after ``header_timeout_s``, or in ``body`` after ``body_timeout_s``, gets
  ``408 Request Timeout`` and is closed.
* Past ``max_connections`` open connections, a new one evicts the oldest connection that is only reading or
  idle and has been so for at least ``evict_after_s`` (slow clients make room for real ones); when there
  is none, the new connection gets an immediate ``503`` with ``Retry-After`` and is closed. Requests being
  answered are never dropped. Open connections therefore never exceed the cap.

The limits are per process (``configure`` is called by the app factory in every worker). Counters are
exported on /metrics (``edgepack_connections_*``). Standard library plus uvicorn/h11 (the serve extra).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from uvicorn.protocols.http.h11_impl import H11Protocol, h11  # h11 comes with uvicorn


@dataclass(frozen=True)
class Limits:
    max_connections: int = 256
    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    evict_after_s: float = 1.0
    retry_after_s: int = 1


@dataclass
class ConnectionStats:
    open: int = 0
    peak: int = 0
    refused: int = 0
    evicted: int = 0
    header_timeouts: int = 0
    body_timeouts: int = 0

    def render(self) -> str:
        rows = [("open", "gauge", "open HTTP connections", self.open),
                ("peak", "gauge", "most HTTP connections open at once", self.peak),
                ("refused_total", "counter", "connections refused with 503 past the cap", self.refused),
                ("evicted_total", "counter", "slow or idle connections closed to make room", self.evicted),
                ("header_timeouts_total", "counter", "connections closed: headers not complete in time",
                 self.header_timeouts),
                ("body_timeouts_total", "counter", "connections closed: body not complete in time",
                 self.body_timeouts)]
        out = []
        for name, kind, text, value in rows:
            out += [f"# HELP edgepack_connections_{name} {text}", f"# TYPE edgepack_connections_{name} {kind}",
                    f"edgepack_connections_{name} {value}"]
        return "\n".join(out) + "\n"


LIMITS = Limits()
STATS = ConnectionStats()


def configure(limits: Limits) -> None:
    """Set this process's limits (read by every new connection)."""
    global LIMITS
    LIMITS = limits


def _raw_response(status: str, extra: str = "") -> bytes:
    body = b'{"error": {"code": "%s", "message": "%s"}}' % (
        status.split(" ", 1)[1].lower().replace(" ", "_").encode(), status.encode())
    return (f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
            f"connection: close\r\n{extra}\r\n").encode() + body


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a connection cap and header/body read timeouts (see the module doc)."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._phase, self._timer, self._refused = "headers", None, False
        self._since = self.loop.time()
        super().connection_made(transport)
        lim = LIMITS
        if len(self.connections) > lim.max_connections and not self._evict_one(lim):
            self._refused = True
            STATS.refused += 1
            transport.write(_raw_response("503 Service Unavailable", f"retry-after: {lim.retry_after_s}\r\n"))
            transport.close()
            return
        STATS.open = len(self.connections)
        STATS.peak = max(STATS.peak, STATS.open)
        self._arm(lim.header_timeout_s)

    def _evict_one(self, lim: Limits) -> bool:
        now = self.loop.time()
        victims = [c for c in self.connections if c is not self and isinstance(c, GuardedH11Protocol)
                   and not c._refused and c._phase in ("headers", "body", "idle")
                   and now - c._since >= lim.evict_after_s and not c.transport.is_closing()]
        if not victims:
            return False
        victim = min(victims, key=lambda c: c._since)
        STATS.evicted += 1
        victim._close(_raw_response("503 Service Unavailable", f"retry-after: {lim.retry_after_s}\r\n"))
        self.connections.discard(victim)
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel()
        super().connection_lost(exc)
        STATS.open = len(self.connections)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        super().data_received(data)
        self._update_phase()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._update_phase(after_response=True)

    def _update_phase(self, after_response: bool = False) -> None:
        if self.transport.is_closing():
            self._cancel()
            return
        st = self.conn.their_state
        phase = {h11.IDLE: "headers", h11.SEND_BODY: "body"}.get(st, "busy")
        if after_response and phase == "headers" and self._phase != "headers":
            phase = "idle"  # uvicorn's keep-alive timeout closes it; data arriving makes it "headers"
        if phase == self._phase or (phase == "idle" and self._phase == "idle"):
            return
        self._phase, self._since = phase, self.loop.time()
        if phase == "headers":
            self._arm(LIMITS.header_timeout_s)
        elif phase == "body":
            self._arm(LIMITS.body_timeout_s)
        else:
            self._cancel()

    def _arm(self, seconds: float) -> None:
        self._cancel()
        self._timer = self.loop.call_later(seconds, self._expire)

    def _cancel(self) -> None:
        if getattr(self, "_timer", None) is not None:
            self._timer.cancel()
            self._timer = None

    def _expire(self) -> None:
        self._timer = None
        if self._phase == "headers":
            STATS.header_timeouts += 1
        elif self._phase == "body":
            STATS.body_timeouts += 1
        else:
            return
        self._close(_raw_response("408 Request Timeout"))

    def _close(self, response: bytes) -> None:
        self._cancel()
        self._phase = "closed"
        if not self.transport.is_closing():
            if self.cycle is None or self.cycle.response_complete or not self.cycle.response_started:
                self.transport.write(response)
            self.transport.close()
