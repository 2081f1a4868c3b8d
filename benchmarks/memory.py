"""Resident memory of this process, and peak memory of one target measured alone in a fresh process.

In one process every loaded target adds to the same peak, so ``run_benchmarks`` can only give each target
the memory it added (``load_rss_mb``). ``isolated_peak_rss_mb`` starts a child interpreter that imports only
what the target needs (the lean runtime never imports torch), loads it, runs the texts at the largest batch
size, and reports its peak resident memory (``resource.getrusage``): what a process serving that model needs.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from collections.abc import Sequence

from edgepack.benchmarks.targets import Target

from edgepack.errors import EdgepackError

_CHILD = "from edgepack.benchmarks.memory import _child_main; _child_main()"


def rss_mb() -> float | None:
    """Current resident memory of this process in MiB (psutil, else /proc), None when unknown."""
    try:
        import psutil

        return psutil.Process().memory_info().rss / 2**20
    except ImportError:
        pass
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return None


def peak_rss_mb() -> float | None:
    """Peak resident memory of this process so far in MiB.

    Linux: ``VmHWM`` from /proc/self/status (``ru_maxrss`` survives ``exec``, so a child started from a
    large parent would report the parent's peak); elsewhere ``resource.getrusage``.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except (OSError, ValueError, IndexError):
        pass
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux


def isolated_peak_rss_mb(
    target: Target, texts: Sequence[str], batch_size: int, threads: int | None, timeout_s: float = 600.0
) -> float:
    """Peak RSS (MiB) of a fresh process that loads ``target`` and runs ``texts`` in ``batch_size`` batches.

    Call ``target.prepare()`` first so that one-off exports are not counted. Raises EdgepackError when the
    child fails (its last error line is included).
    """
    job = {
        "target": dataclasses.asdict(target),
        "texts": list(texts),
        "batch_size": int(batch_size),
        "threads": threads,
    }
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _CHILD],
            check=False,
            input=json.dumps(job),
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
    except subprocess.TimeoutExpired:
        raise EdgepackError(
            f"memory measurement of '{target.name}' took longer than {timeout_s:.0f} s"
        ) from None
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise EdgepackError(f"memory measurement of '{target.name}' failed: {last}")
    return float(json.loads(lines[-1])["peak_rss_mb"])


def _child_main() -> None:
    job = json.loads(sys.stdin.read())
    target = Target(**job["target"])
    ot = target.open(job["threads"], job["batch_size"])
    texts, bs = job["texts"], job["batch_size"]
    for i in range(0, len(texts), bs):
        ot.run(texts[i : i + bs])
    print(json.dumps({"peak_rss_mb": peak_rss_mb()}), flush=True)
    ot.close()
