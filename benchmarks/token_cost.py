"""What one token costs in a bare model call on this machine, by call shape (rows x length).

    python -m edgepack.benchmarks.token_cost ARTIFACT [--threads 2] [--lengths 16,32,64,128]
                                             [--batches 1,2,4,8,16,32] [--max-tokens 2048] [--seconds 2] [--json]
                                             [--texts FILE]

Every shape (batch rows x tokens per row, at most ``--max-tokens`` in all) is one bare ONNX Runtime call on
random in-vocabulary ids with a full attention mask, timed interleaved in one process with the others
(``edgepack.timing``), so background load falls on all alike. The table is us per token (p50 call / tokens).
Where it stops falling, larger calls add latency and no throughput: a guide for ``--max-batch-tokens`` and
``Predictor(batch_size=...)`` on this CPU. Its lowest cell is the ceiling of any runtime on this model and
machine: texts of N tokens cannot go faster than 1e6 / (floor x N) per second, tokenization and padding
aside, whoever serves them. ``--texts FILE`` (a JSON list of strings, or a text file with one text per line)
counts your texts' tokens with the artifact's tokenizer and prints that ceiling for them: a peer benchmark's
ratio above ceiling / peer cannot be reached with this file on this machine.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
from edgepack.benchmarks.results import measured

from edgepack.cpu import host_cpu
from edgepack.errors import EdgepackError
from edgepack.timing import TimingProtocol, time_interleaved


def _ints(text: str) -> tuple[int, ...]:
    """argparse's view of ``benchmarks.cli.parse_int_list`` (its message, argparse's exit)."""
    from edgepack.benchmarks.cli import parse_int_list

    try:
        return parse_int_list(text, "values")
    except EdgepackError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def read_texts(path: str) -> list[str]:
    """A JSON list of strings, or a text file's non-empty lines."""
    from pathlib import Path

    p = Path(path)
    if not p.is_file():
        raise EdgepackError(f"texts file not found: {p}")
    raw = p.read_text(encoding="utf-8")
    if p.suffix == ".json":
        try:
            texts = json.loads(raw)
        except json.JSONDecodeError as e:
            raise EdgepackError(f"{p}: not JSON ({e.msg} at line {e.lineno})") from None
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            raise EdgepackError(f"{p}: expected a JSON list of strings")
    else:
        texts = [line for line in raw.splitlines() if line.strip()]
    if not texts:
        raise EdgepackError(f"{p}: no texts")
    return texts


def measure_token_cost(artifact: str, threads: int | None = 2, lengths=(16, 32, 64, 128),
                       batches=(1, 2, 4, 8, 16, 32), max_tokens: int = 2048, seconds: float = 2.0,
                       texts: list[str] | None = None) -> dict:
    """{"cells": [{"batch", "length", "p50_ms", "us_per_token"}], "floor": the cheapest cell, ...}; with
    ``texts``, also their "mean_tokens" (the artifact's tokenizer, truncated as it serves) and
    "ceiling_texts_per_s" = 1e6 / (floor us/token x mean_tokens)."""
    from edgepack.runtime.predictor import Predictor

    pred = Predictor.open(artifact, intra_op_threads=threads)
    session = getattr(pred.runner, "session", None)
    if session is None:
        raise EdgepackError(f"the '{type(pred.runner).__name__}' runner has no ONNX Runtime session to time")
    limit = pred.encoder.max_length
    shapes = [(b, t) for t in lengths for b in batches if b * t <= max_tokens and t <= limit]
    if not shapes:
        raise EdgepackError(f"no shape fits: lengths {list(lengths)} (model limit {limit}) x batches "
                            f"{list(batches)} within {max_tokens} tokens")
    vocab = pred.encoder.tokenizer.get_vocab_size()
    rng = np.random.default_rng(0)
    names = [i.name for i in session.get_inputs()]
    outputs = [o.name for o in session.get_outputs()]

    def feeds(b: int, t: int) -> dict:
        ids = rng.integers(min(1000, vocab // 2), vocab, size=(b, t), dtype=np.int64)
        all_ = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
        return {k: all_[k] for k in names}

    def call(f: dict):
        return lambda _: session.run(outputs, f)

    runs = {f"{b}x{t}": call(feeds(b, t)) for b, t in shapes}
    timed = time_interleaved(runs, [0], TimingProtocol(warmup=2, repeats=5, interleave=3, settle=1,
                                                       min_seconds=seconds), size=lambda _: 1)
    s = timed.summaries()
    cells = [{"batch": b, "length": t, "p50_ms": s[f"{b}x{t}"]["p50_ms"],
              "us_per_token": s[f"{b}x{t}"]["p50_ms"] * 1000 / (b * t)} for b, t in shapes]
    floor = min(cells, key=lambda c: c["us_per_token"])
    out = {"artifact": str(pred.artifact.path), "precision": pred.artifact.runtime.precision, "threads": threads,
           "cells": cells, "floor": floor, "machine": host_cpu().describe()}
    if texts:
        n = [len(e.ids) for e in pred.encoder.encode(texts)]
        mean = sum(n) / len(n)
        out.update(texts=len(texts), mean_tokens=round(mean, 2),
                   ceiling_texts_per_s=round(1e6 / (floor["us_per_token"] * mean), 1),
                   padding_in_order={str(b): round(in_order_padding(n, b), 3) for b in sorted(set(batches))})
    return out


def in_order_padding(lengths: list[int], batch: int) -> float:
    """Tokens a model runs over real tokens when texts go ``batch`` at a time in their order, each batch padded
    to its longest (what a runtime that does not sort by length runs)."""
    padded = sum(max(lengths[i:i + batch]) * len(lengths[i:i + batch]) for i in range(0, len(lengths), batch))
    return padded / sum(lengths)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m edgepack.benchmarks.token_cost", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("artifact", help="an onnx artifact directory")
    p.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra-op threads (default: %(default)s)")
    p.add_argument("--lengths", type=_ints, default=(16, 32, 64, 128), help="tokens per row (default: 16,32,64,128)")
    p.add_argument("--batches", type=_ints, default=(1, 2, 4, 8, 16, 32), help="rows per call (default: 1,...,32)")
    p.add_argument("--max-tokens", type=int, default=2048, help="skip shapes above rows x length (default: %(default)s)")
    p.add_argument("--seconds", type=float, default=2.0, help="time at least this long (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.add_argument("--texts", metavar="FILE", help="your texts (JSON list, or one per line): print the most "
                   "texts/s any runtime can reach on them with this file here")
    a = p.parse_args(argv)
    r, code = measured("token_cost", lambda: measure_token_cost(
        a.artifact, a.threads, a.lengths, a.batches, a.max_tokens, a.seconds,
        read_texts(a.texts) if a.texts else None), a.json)
    if r is None:
        return code
    cost = {(c["batch"], c["length"]): c["us_per_token"] for c in r["cells"]}
    print(f"{r['artifact']} ({r['precision']}), {r['threads']} thread(s); machine: {r['machine']}")
    print("us per token, bare session.run (rows: tokens per text; columns: texts per call)")
    print("length " + "".join(f"{b:>8}" for b in a.batches))
    for t in a.lengths:
        print(f"{t:>6} " + "".join(f"{cost[b, t]:8.1f}" if (b, t) in cost else f"{'':>8}" for b in a.batches))
    f = r["floor"]
    print(f"floor {f['us_per_token']:.1f} us/token at {f['batch']} x {f['length']}: texts of {f['length']} "
          f"tokens at most {1e6 / (f['us_per_token'] * f['length']):.0f}/s on this model and machine")
    if "ceiling_texts_per_s" in r:
        print(f"your {r['texts']} texts average {r['mean_tokens']:.1f} tokens: at most "
              f"{r['ceiling_texts_per_s']:.0f} texts/s with this file here, tokenization and padding aside")
        pads = ", ".join(f"{b} at a time {v:.2f}x" for b, v in r["padding_in_order"].items())
        print(f"padded / real tokens when they go in their order, each batch padded to its longest: {pads}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
