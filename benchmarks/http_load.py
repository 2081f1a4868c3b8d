"""A closed-loop HTTP load generator for ``edgepack serve`` on loopback, and the server as a child process.

Clients are asyncio coroutines on keep-alive HTTP/1.1 connections (cheap on the client side, so a small
machine spends its time in the server). ``run_load`` is bounded by a request count and a duration and
returns a :class:`Phase` (statuses, latencies, elapsed); :class:`ServerProcess` starts the real CLI on a
free port and measures its cold start (spawn -> /readyz 200) and resident memory.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from typing_extensions import Self


@dataclass
class Phase:
    statuses: dict[int, int] = field(default_factory=dict)
    latencies_ok: list[float] = field(default_factory=list)
    latencies_err: list[float] = field(default_factory=list)
    elapsed: float = 0.0

    def summary(self) -> dict:
        ok = sorted(self.latencies_ok)
        err = sorted(self.latencies_err)
        n_ok = self.statuses.get(200, 0)
        return {
            "requests": sum(self.statuses.values()),
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "elapsed_s": round(self.elapsed, 3),
            "throughput_rps": round(n_ok / self.elapsed, 1) if self.elapsed else 0,
            "p50_ms": _pct(ok, 50),
            "p99_ms": _pct(ok, 99),
            "err_p50_ms": _pct(err, 50),
            "err_p99_ms": _pct(err, 99),
        }


def merge_phases(phases: list[Phase]) -> Phase:
    """Several phases as one: statuses and latencies pooled, elapsed times added."""
    out = Phase()
    for ph in phases:
        for k, v in ph.statuses.items():
            out.statuses[k] = out.statuses.get(k, 0) + v
        out.latencies_ok += ph.latencies_ok
        out.latencies_err += ph.latencies_err
        out.elapsed += ph.elapsed
    return out


def _pct(sorted_s: list[float], q: float) -> float | None:
    if not sorted_s:
        return None
    return round(1000 * sorted_s[min(len(sorted_s) - 1, int(len(sorted_s) * q / 100))], 2)


async def _one(reader, writer, body: bytes, path: bytes = b"/v1/predict") -> tuple[int, bool]:
    writer.write(
        b"POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (path, len(body), body)
    )
    status = int((await reader.readline()).split()[1])
    length, close = 0, False
    while (line := await reader.readline()) not in (b"\r\n", b""):
        k, _, v = line.partition(b":")
        k = k.strip().lower()
        if k == b"content-length":
            length = int(v)
        elif k == b"connection" and v.strip().lower() == b"close":
            close = True
    await reader.readexactly(length)
    return status, close


async def _client(
    port: int,
    texts: list[str],
    per_req: int,
    phase: Phase,
    stop_at: float,
    budget: list[int],
    rng: random.Random,
    path: bytes = b"/v1/predict",
    body_of: Callable[[list[str]], dict] | None = None,
) -> None:
    reader = writer = None
    while time.perf_counter() < stop_at and budget[0] > 0:
        budget[0] -= 1
        sample = rng.sample(texts, per_req)
        body = json.dumps(body_of(sample) if body_of else {"texts": sample}).encode()
        if writer is None:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        t0 = time.perf_counter()
        try:
            status, close = await _one(reader, writer, body, path)
        except (ConnectionError, asyncio.IncompleteReadError, IndexError, ValueError):
            status, close = -1, True  # a transport failure counts as an error
        dt = time.perf_counter() - t0
        phase.statuses[status] = phase.statuses.get(status, 0) + 1
        (phase.latencies_ok if status == 200 else phase.latencies_err).append(dt)
        if close:
            writer.close()
            reader = writer = None
    if writer is not None:
        writer.close()


async def run_load(
    port: int,
    texts: list[str],
    clients: int,
    duration: float,
    max_requests: int,
    per_req: int = 1,
    seed: int = 0,
    path: str = "/v1/predict",
    body_of: Callable[[list[str]], dict] | None = None,
) -> Phase:
    """``clients`` closed-loop clients for at most ``duration`` s and ``max_requests`` requests.

    Each request POSTs ``per_req`` random texts to ``path`` as ``body_of(texts)`` (default ``{"texts": texts}``).
    """
    phase = Phase()
    budget = [max_requests]
    t0 = time.perf_counter()
    await asyncio.gather(
        *(
            _client(port, texts, per_req, phase, t0 + duration, budget, random.Random(seed + i), path.encode(),
                    body_of)
            for i in range(clients)
        )
    )
    phase.elapsed = time.perf_counter() - t0
    return phase


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(port: int, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except OSError:
        return 0, b""


def process_tree(pid: int) -> list[int]:
    """``pid`` and every live descendant (Linux /proc): a server's worker processes count toward its memory."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # gone meanwhile
            continue
        ppid = int(text.rsplit(")", 1)[1].split()[1])  # the name in parentheses may hold spaces
        children.setdefault(ppid, []).append(int(stat.parent.name))
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        todo += children.get(p, [])
    return tree


def rss_mb(pid: int) -> dict:
    """Resident memory of ``pid`` and its descendants in MiB (Linux /proc): ``rss_mb`` now, summed;
    ``peak_rss_mb`` each process's own peak, summed (an upper bound: the peaks need not coincide);
    ``processes`` counted."""
    rss = peak = 0.0
    tree = process_tree(pid)
    for p in tree:
        try:
            lines = Path(f"/proc/{p}/status").read_text().splitlines()
        except OSError:
            continue
        for line in lines:
            if line.startswith("VmRSS:"):
                rss += int(line.split()[1]) / 1024
            elif line.startswith("VmHWM:"):
                peak += int(line.split()[1]) / 1024
    return {"rss_mb": round(rss, 1), "peak_rss_mb": round(peak, 1), "processes": len(tree)}


def log_tail(path: Path, n: int = 4, limit: int = 900) -> str:
    """The last ``n`` lines of a child's log with text in them (traceback carets skipped), joined on one line,
    at most ``limit`` characters: the reason a child failed, for a one-line error."""
    try:
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip(" ^~\t")]
    except OSError:
        return "(no log)"
    return " | ".join(lines[-n:])[-limit:]


class ChildServer:
    """A server in a child process on a free port (``{port}`` in ``argv`` is filled in): ``start`` waits for its
    ready route, or its exit, and returns the cold start in seconds (RuntimeError with the log's last lines
    otherwise); ``stop`` terminates it (kills it after 30 s). Output goes to ``log_path`` (a temporary file,
    removed at ``stop``, when None)."""

    def __init__(self, argv: Sequence[str], ready_path: str = "/readyz", log_path: Path | None = None,
                 env: dict | None = None, cwd: str | None = None, ready_timeout_s: float = 120, poll_s: float = 0.02):
        self.port = _free_port()
        self.argv = [a.replace("{port}", str(self.port)) for a in argv]
        self.ready_path, self.env, self.cwd = ready_path, env, cwd
        self.ready_timeout_s, self.poll_s = ready_timeout_s, poll_s
        self._own_log = log_path is None
        if log_path is None:
            fd, name = tempfile.mkstemp(prefix="edgepack-server-", suffix=".log")
            os.close(fd)  # start() opens it again for the child's output
            log_path = Path(name)
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None

    def start(self) -> float:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(self.argv, stdout=self._log, stderr=subprocess.STDOUT, env=self.env, cwd=self.cwd)
        while _get(self.port, self.ready_path)[0] != 200:
            if self.proc.poll() is not None:
                raise RuntimeError(f"exited with code {self.proc.returncode}: {self.log_tail()}")
            if time.perf_counter() - t0 > self.ready_timeout_s:
                raise RuntimeError(f"not ready after {self.ready_timeout_s:g} s: {self.log_tail()}")
            time.sleep(self.poll_s)
        return round(time.perf_counter() - t0, 3)

    def log_tail(self, n: int = 4) -> str:
        return log_tail(self.log_path, n)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if getattr(self, "_log", None):
            self._log.close()
        if self._own_log:
            self.log_path.unlink(missing_ok=True)


class ServerProcess(ChildServer):
    """``edgepack serve ARTIFACT`` (this interpreter's) as a context manager: cold start (spawn -> /readyz 200)
    and idle resident memory are measured on entry."""

    def __init__(self, artifact: str, *args: str):
        super().__init__([sys.executable, "-m", "edgepack", "serve", artifact, "--port", "{port}", "--log-level",
                          "warning", *args])

    def __enter__(self) -> Self:
        self.cold_start_s = self.start()
        self.idle_rss = rss_mb(self.proc.pid)
        return self

    def metrics(self) -> str:
        return _get(self.port, "/metrics")[1].decode()

    def __exit__(self, *exc) -> None:
        self.stop()
