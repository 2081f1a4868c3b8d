"""Peak memory of one target measured alone, in a fresh Python process.

In one process every loaded target adds to the same peak, so ``run_benchmarks`` can only give each target
the memory it added (``load_rss_mb``). ``isolated_peak_rss_mb`` starts a child interpreter that imports only
what the target needs (the lean runtime never imports torch), loads it, runs the texts at the largest batch
size, and reports its peak resident memory (``resource.getrusage``): what a process serving that model needs.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from collections.abc import Sequence

from edgepack.benchmarks.targets import Target

from edgepack.errors import EdgepackError

_CHILD = "from edgepack.benchmarks.memory import _child_main; _child_main()"


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
    from edgepack.benchmarks.suite import peak_rss_mb

    job = json.loads(sys.stdin.read())
    target = Target(**job["target"])
    ot = target.open(job["threads"], job["batch_size"])
    texts, bs = job["texts"], job["batch_size"]
    for i in range(0, len(texts), bs):
        ot.run(texts[i : i + bs])
    print(json.dumps({"peak_rss_mb": peak_rss_mb()}), flush=True)
    ot.close()
