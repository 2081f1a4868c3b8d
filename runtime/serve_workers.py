"""Running ``edgepack serve``: one process, or several worker processes behind one port.

Several workers (``--workers N``, or ``0``/``auto``) use uvicorn's pre-fork supervisor: the parent binds the
port once and spawns N processes that accept on the same socket (the kernel hands each new connection to a
process waiting in ``accept``); the parent restarts a worker that dies and, on SIGTERM or Ctrl-C, sends
SIGTERM to every worker, which stops accepting, finishes its in-flight requests, drains its batcher and
exits. Each worker loads its own model copy, with ONNX Runtime's intra-op threads set so that
``workers x threads <= cores`` (:func:`plan_workers`) and the tokenizer's pool (``RAYON_NUM_THREADS``) kept
to the same count, so workers do not fight over cores.

Workers share a folder (``ServeConfig.state_dir``, made by the parent, removed on exit) through
:class:`WorkerGroup`: a worker starts accepting connections only once its model is loaded and warmed up,
so no request reaches a loading worker; ``/readyz`` answers 200 only when every worker has loaded; each
worker writes its metrics there once a second and ``/metrics``, answered by whichever worker takes the
connection, sums all live workers' counters, histograms and queue depths (the other workers' numbers are at
most ~1 s old; ``edgepack_workers`` says how many were summed). ``/healthz`` is per worker (it is alive).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from edgepack.errors import EdgepackError
from edgepack.outputs import pid_alive

ENV_CONFIG = "EDGEPACK_SERVE_CONFIG"  # JSON {"artifact": ..., "cfg": {...}} for multi-process workers
PUBLISH_EVERY_S = 1.0
MAX_AUTO_WORKERS = 8  # each worker holds a model copy; past 8 the spare cores go to threads instead


def cpu_cores() -> int:
    """Cores this process may run on (the affinity mask, e.g. a container's cpuset), else os.cpu_count()."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def plan_workers(workers: int, intra_op_threads: int | None, cores: int, cpu: bool = True) -> tuple[int, int]:
    """``(workers, intra-op threads per worker)`` with ``workers x threads <= cores`` where the user left a
    choice. ``workers`` 0 means auto: on a GPU backend (``cpu`` False) one worker; else ``cores // threads``
    workers (threads: the given ones, else 1), at most ``MAX_AUTO_WORKERS``, the cores left over going to
    each worker's threads. Given workers without threads: the cores split evenly (at least 1 each). Both
    given: used as they are.

    Why one thread per worker: on the 2-core AMD EPYC (shared), 32 clients, the demo INT8 student, 2 workers
    x 1 thread answered 1.6x (one text per request) and 2.1x (16 texts) the requests/s of 1 worker x 2
    threads (ONNX Runtime's intra-op pool gains little on these small matrices and spins while it waits)."""
    if workers < 0 or (intra_op_threads is not None and intra_op_threads < 1):
        raise ValueError("workers must be >= 0 and intra-op threads >= 1")
    if workers == 0:
        if not cpu:
            return 1, intra_op_threads or cores
        workers = max(1, min(MAX_AUTO_WORKERS, cores // (intra_op_threads or 1)))
    return workers, intra_op_threads or max(1, cores // workers)


def runs_on_cpu(artifact_dir: str, backend: str) -> bool:
    """Whether ``backend`` (or what "auto" picks for the artifact) is ONNX Runtime on the CPU."""
    if backend != "auto":
        return backend == "ort-cpu"
    from edgepack.runtime.backends import AUTO_ORDER, BACKENDS

    from edgepack.artifact import Artifact

    fmt = Artifact.open(artifact_dir, verify=False).format
    first = next((n for n in AUTO_ORDER if fmt in BACKENDS[n].formats and BACKENDS[n].available()), "ort-cpu")
    return first == "ort-cpu"


class WorkerGroup:
    """One worker's view of its siblings through the shared ``state_dir`` (ready marks, metrics files)."""

    def __init__(self, state_dir: str, workers: int):
        self.dir, self.workers, self.pid = Path(state_dir), workers, os.getpid()

    def announce_ready(self) -> None:
        (self.dir / f"ready-{self.pid}").touch()

    def ready_count(self) -> int:
        return sum(1 for p in self.dir.glob("ready-*") if pid_alive(int(p.name.split("-")[1])))

    def all_ready(self) -> bool:
        return self.ready_count() >= self.workers

    def publish(self, snapshot: dict) -> None:
        tmp = self.dir / f".metrics-{self.pid}.tmp"
        tmp.write_text(json.dumps(snapshot))
        tmp.replace(self.dir / f"metrics-{self.pid}.json")  # atomic: readers never see half a file

    def siblings(self) -> list[dict]:
        """The other live workers' last published snapshots."""
        out = []
        for p in self.dir.glob("metrics-*.json"):
            pid = int(p.stem.split("-")[1])
            if pid != self.pid and pid_alive(pid):
                try:
                    out.append(json.loads(p.read_text()))
                except (OSError, ValueError):
                    continue  # removed or replaced while reading: skip this once
        return out

    def start_publishing(self, snapshot) -> None:
        def loop() -> None:
            while True:
                try:
                    self.publish(snapshot())
                except OSError:
                    return  # the folder is gone: the server is shutting down
                time.sleep(PUBLISH_EVERY_S)

        threading.Thread(target=loop, name="edgepack-metrics-publish", daemon=True).start()


def worker_snapshot(metrics: Any) -> dict:
    """This worker's server metrics plus its connection counters."""
    from edgepack.runtime.server_limits import STATS

    return {**metrics.snapshot(), "connections": asdict(STATS)}


def render_group_metrics(metrics: Any, group: WorkerGroup) -> str:
    """/metrics with several workers: every live worker's numbers summed."""
    from edgepack.runtime.metrics_prom import merge, render_snapshot
    from edgepack.runtime.server_limits import ConnectionStats

    snaps = [worker_snapshot(metrics), *group.siblings()]
    conns = ConnectionStats(**{k: sum(s["connections"][k] for s in snaps) for k in asdict(ConnectionStats())})
    workers = ("# HELP edgepack_workers Worker processes whose metrics are summed here.\n"
               f"# TYPE edgepack_workers gauge\nedgepack_workers {len(snaps)}\n")
    return render_snapshot(merge(snaps)) + conns.render() + workers


def open_predictor(artifact_dir: str, cfg: Any) -> Any:
    """Open the lean-runtime Predictor for ``artifact_dir`` with the server's settings. With a token budget
    the batcher composes every model call, so the Predictor runs what it is given in one call."""
    from edgepack.runtime.predictor import Predictor

    return Predictor.open(
        artifact_dir,
        backend=cfg.backend,
        intra_op_threads=cfg.intra_op_threads,
        inter_op_threads=cfg.inter_op_threads,
        memory_arena=cfg.memory_arena,
        max_length=cfg.max_length,
        batch_size=cfg.max_batch if cfg.max_batch_tokens else (cfg.model_batch or cfg.max_batch),
    )


def configure_limits(cfg: Any) -> None:
    from edgepack.runtime.server_limits import Limits, configure

    configure(Limits(max_connections=cfg.max_connections, header_timeout_s=cfg.header_timeout_s,
                     body_timeout_s=cfg.body_timeout_s, retry_after_s=cfg.retry_after_s))


def app_from_env() -> Any:
    """App factory for ``uvicorn --factory`` worker processes: reads ``EDGEPACK_SERVE_CONFIG``."""
    from edgepack.runtime.server import ServeConfig, create_app

    spec = json.loads(os.environ[ENV_CONFIG])
    cfg = ServeConfig(**spec["cfg"])
    configure_limits(cfg)
    return create_app(lambda: open_predictor(spec["artifact"], cfg), cfg)


def serve(artifact_dir: str, cfg: Any, log_level: str = "info") -> None:
    """Run the server until SIGINT/SIGTERM (blocking); several processes when ``cfg.workers`` is not 1."""
    import uvicorn
    from edgepack.runtime import server_guard as guard
    from edgepack.runtime.server import create_app

    cpu = cfg.workers != 0 or runs_on_cpu(str(artifact_dir), cfg.backend)
    workers, threads = plan_workers(cfg.workers, cfg.intra_op_threads, cpu_cores(), cpu)
    cfg = replace(cfg, workers=workers, intra_op_threads=threads if workers > 1 else cfg.intra_op_threads)
    configure_limits(cfg)
    if cfg.loop == "uvloop":
        try:
            import uvloop  # noqa: F401
        except ImportError:
            raise EdgepackError("--loop uvloop needs the uvloop package: pip install uvloop (or \"edgepack[serve]\")") from None
    common = {
        "loop": cfg.loop,
        "host": cfg.host,
        "port": cfg.port,
        "log_level": log_level,
        "log_config": guard.log_config(log_level),
        "access_log": False,
        "timeout_graceful_shutdown": int(cfg.timeout_s) + 5,
        "http": "edgepack.runtime.server_limits:GuardedH11Protocol",
        "h11_max_incomplete_event_size": 16 * 1024,  # request line + headers
        "ssl_certfile": cfg.ssl_certfile,
        "ssl_keyfile": cfg.ssl_keyfile,
    }
    if workers == 1:
        uvicorn.run(create_app(lambda: open_predictor(str(artifact_dir), cfg), cfg), **common)
        return
    state_dir = tempfile.mkdtemp(prefix="edgepack-serve-")
    cfg = replace(cfg, state_dir=state_dir)
    os.environ[ENV_CONFIG] = json.dumps({"artifact": str(artifact_dir), "cfg": asdict(cfg)})
    os.environ.setdefault("RAYON_NUM_THREADS", str(threads))  # the tokenizer's pool, inherited by workers
    guard.log.info("%d workers x %d intra-op threads on %d cores", workers, threads, cpu_cores())
    try:  # a worker loading a large model may not answer the supervisor's ping for a while
        uvicorn.run("edgepack.runtime.serve_workers:app_from_env", factory=True, workers=workers,
                    timeout_worker_healthcheck=60, **common)
    finally:
        shutil.rmtree(state_dir, ignore_errors=True)
