"""The runtime's own work per call: ``Predictor.infer`` vs bare ``session.run`` on the same feeds.

    python -m edgepack.benchmarks.overhead ARTIFACT [--batch 1] [--threads 1] [--seconds 3] [--json]

The targets run in one process, interleaved by ``edgepack.timing.time_interleaved`` over the same texts, on
the one session (same threads): ``infer`` tokenizes, builds feeds, runs the session and post-processes
(softmax or pooling), everything a caller with texts needs; ``session.run`` gets the same feeds tokenized
once beforehand. The overhead ratio is infer p50 / session.run p50 (1.10: the runtime costs 10% on top of
what a bare ONNX Runtime call costs). Where the runner binds buffers (ort-cpu), a third target, ``bound run``,
times the same pre-tokenized feeds through a reusable IOBinding (what ``infer`` runs the model with), so the
runtime's own work (infer - bound run) is shown apart from the cheaper model call. Background load falls on
all targets alike, so the ratios are meaningful on a busy machine where the absolute numbers are not.
"""

from __future__ import annotations

import argparse
import sys

from edgepack.benchmarks.results import measured

from edgepack.cpu import host_cpu
from edgepack.data import SAMPLE_SENTENCES
from edgepack.timing import TimingProtocol, time_interleaved


def measure_overhead(artifact: str, batch: int = 1, threads: int | None = 1, seconds: float = 3.0,
                     texts: tuple[str, ...] = SAMPLE_SENTENCES[:4], **open_opts) -> dict:
    """Time ``Predictor.infer`` and bare ``session.run`` interleaved; return both summaries and the ratio."""
    from edgepack.runtime.predictor import Predictor

    pred = Predictor.open(artifact, intra_op_threads=threads, batch_size=max(batch, 1), **open_opts)
    session = getattr(pred.runner, "session", None)
    if session is None:
        raise SystemExit(f"the '{type(pred.runner).__name__}' runner has no ONNX Runtime session to compare with")
    inputs = [i.name for i in session.get_inputs()]
    outputs = [o.name for o in session.get_outputs()]
    batches = [[texts[(i + j) % len(texts)] for j in range(batch)] for i in range(len(texts))]
    feeds = {}
    for b in batches:
        full = pred.encoder.feeds(pred.encoder.encode(b))
        feeds[tuple(b)] = {k: v for k, v in full.items() if k in inputs}

    def run(b):
        return session.run(outputs, feeds[tuple(b)])

    runs = {"infer": pred.infer, "session.run": run}
    bind = getattr(pred.runner, "bind", None)
    bound = {k: bind(f) for k, f in feeds.items()} if bind else {}
    if bound and all(bound.values()):
        runs["bound run"] = lambda b: bound[tuple(b)].run()
    t = time_interleaved(runs, batches,
                         TimingProtocol(warmup=20, repeats=50, interleave=16, settle=3, min_seconds=seconds))
    s = t.summaries()
    own = {"bound_run": s["bound run"], "own_work_ms": s["infer"]["p50_ms"] - s["bound run"]["p50_ms"]} \
        if "bound run" in s else {}
    return {
        "artifact": str(pred.artifact.path),
        "task": pred.task,
        "precision": pred.artifact.runtime.precision,
        "batch": batch,
        "threads": threads,
        "infer": s["infer"],
        "session_run": s["session.run"],
        "overhead_ratio": s["infer"]["p50_ms"] / s["session.run"]["p50_ms"],
        "overhead_ms": s["infer"]["p50_ms"] - s["session.run"]["p50_ms"],
        **own,
        "machine": host_cpu().describe(),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m edgepack.benchmarks.overhead", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("artifact", help="an onnx artifact directory")
    p.add_argument("--batch", type=int, default=1, help="texts per call (default: %(default)s)")
    p.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads (default: %(default)s)")
    p.add_argument("--seconds", type=float, default=3.0, help="time at least this long (default: %(default)s)")
    p.add_argument("--no-memory-arena", dest="memory_arena", action="store_false",
                   help="turn ONNX Runtime's CPU memory arena off")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    args = p.parse_args(argv)
    r, code = measured("overhead", lambda: measure_overhead(args.artifact, args.batch, args.threads, args.seconds,
                                                            memory_arena=args.memory_arena), args.json)
    if r is None:
        return code
    print(f"{r['artifact']} ({r['task']}, {r['precision']}), batch {r['batch']}, {r['threads']} thread(s)")
    print(f"machine: {r['machine']}")
    for name, key in (("Predictor.infer", "infer"), ("session.run", "session_run"), ("bound run", "bound_run")):
        if key in r:
            s = r[key]
            print(f"  {name:<16} p50 {s['p50_ms']:.3f} ms  p90 {s['p90_ms']:.3f} ms  n {s['n']}")
    print(f"overhead ratio {r['overhead_ratio']:.3f} (infer - session.run: {r['overhead_ms'] * 1000:.0f} us per call)")
    if "own_work_ms" in r:
        print(f"runtime's own work (infer - bound run): {r['own_work_ms'] * 1000:.0f} us per call")
    return 0


if __name__ == "__main__":
    sys.exit(main())
