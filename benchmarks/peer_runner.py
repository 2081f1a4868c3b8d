"""One runtime peer, timed in its own process and virtual environment: ``python peer_runner.py JOB.json``.

``edgepack.benchmarks.peers`` copies this file into each peer's venv and runs it with that venv's
interpreter, so it imports only the standard library and numpy at module level (every peer has numpy) and
never imports edgepack unless the job is edgepack's own. The job (JSON) names the ``kind`` (see RUNNERS),
the model, the texts, the thread count and the batch sizes; the runner loads the model, saves the
embeddings of every text (batch 32) to ``embeddings`` (.npy), says it is ready, then times one pass per
command it reads (``main``): one call per batch of texts in input order (no sorting across batches) for a
batch size, or the whole list as one call batched ``max(batch_sizes)`` at a time by the tool itself
(``corpus``). At ``done`` it writes a JSON result to ``result``: texts/s per batch size (median pass, every
pass listed), p50/p90 per call, load time, peak RSS.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time

import numpy as np


def _peak_rss_mb() -> float | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def _version(dist: str) -> str | None:
    import importlib.metadata as md

    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None


def load_edgepack(job: dict):
    """edgepack's lean runtime: ``Predictor.infer`` (tokenize, run, pool + normalize as the artifact records)."""
    from edgepack.runtime.predictor import Predictor

    pred = Predictor.open(job["model"], intra_op_threads=job["threads"])  # its default batching, as users get it
    return lambda texts, batch_size=None: pred.infer(texts), ["onnxruntime", "tokenizers", "numpy"]


def load_fastembed(job: dict):
    """fastembed's registered all-MiniLM-L6-v2 (mean pooling + normalize) read from a local folder."""
    from fastembed import TextEmbedding

    model = TextEmbedding(
        model_name="sentence-transformers/all-MiniLM-L6-v2",
        specific_model_path=job["model"],
        threads=job["threads"],
        local_files_only=True,
    )

    def run(texts, batch_size=None):
        return np.stack(list(model.embed(list(texts), batch_size=batch_size or len(texts))))

    return run, ["fastembed", "onnxruntime", "tokenizers", "numpy"]


def _torch_threads(n: int) -> None:
    import torch

    torch.set_num_threads(n)
    torch.set_num_interop_threads(1)


def load_st_torch(job: dict):
    """sentence-transformers on torch fp32: the reference (mean pooling + normalize from the model's modules)."""
    from sentence_transformers import SentenceTransformer

    _torch_threads(job["threads"])
    model = SentenceTransformer(job["model"], device="cpu", local_files_only=True)
    return _st_run(model), ["sentence-transformers", "torch", "transformers", "numpy"]


def load_st_onnx(job: dict):
    """sentence-transformers' ONNX backend on the file its ``export_dynamic_quantized_onnx_model`` wrote."""
    import onnxruntime as ort
    from sentence_transformers import SentenceTransformer

    _torch_threads(job["threads"])
    so = ort.SessionOptions()
    so.intra_op_num_threads = job["threads"]
    so.inter_op_num_threads = 1
    model = SentenceTransformer(
        job["model"], device="cpu", backend="onnx", local_files_only=True,
        model_kwargs={"file_name": job["file_name"], "provider": "CPUExecutionProvider", "session_options": so},
    )
    return _st_run(model), ["sentence-transformers", "optimum", "optimum-onnx", "onnxruntime", "torch", "numpy"]


def _st_run(model):
    def run(texts, batch_size=None):
        return model.encode(list(texts), batch_size=batch_size or len(texts), normalize_embeddings=True,
                            convert_to_numpy=True, show_progress_bar=False)

    return run


RUNNERS = {"edgepack": load_edgepack, "fastembed": load_fastembed, "st-torch": load_st_torch,
           "st-onnx": load_st_onnx}


def time_batches(run, texts: list[str], batch_size: int) -> dict:
    """One pass over ``texts`` in batches of ``batch_size``, one call per batch (after a warm-up over the first
    few batches): texts/s of the pass, p50/p90 per call."""
    batches = [texts[i:i + batch_size] for i in range(0, len(texts), batch_size)]
    for b in batches[:8]:
        run(b)
    calls = []
    t0 = time.perf_counter_ns()
    for b in batches:
        t1 = time.perf_counter_ns()
        run(b)
        calls.append(time.perf_counter_ns() - t1)
    texts_per_s = len(texts) / ((time.perf_counter_ns() - t0) / 1e9)
    calls.sort()
    return {
        "texts_per_s": round(texts_per_s, 1),
        "p50_ms": round(statistics.median(calls) / 1e6, 3),
        "p90_ms": round(calls[int(0.9 * (len(calls) - 1))] / 1e6, 3),
        "calls": len(calls),
    }


def time_corpus(run, texts: list[str], batch_size: int) -> dict:
    """The whole list in one call, the tool batching it ``batch_size`` at a time its own way (edgepack sorts by
    length first; what a user embedding a corpus gets): texts/s of one pass (after a warm-up call)."""
    run(texts[:batch_size], batch_size)
    t0 = time.perf_counter_ns()
    run(texts, batch_size)
    return {"texts_per_s": round(len(texts) / ((time.perf_counter_ns() - t0) / 1e9), 1), "batch_size": batch_size}


MARK = "@@peer "  # protocol lines on stdout start with this; anything else a library prints is skipped


def _say(doc: dict) -> None:
    sys.stdout.write(MARK + json.dumps(doc) + "\n")
    sys.stdout.flush()


def _summary(passes: list[dict]) -> dict:
    """One batch size's passes: median texts/s (every pass listed) and the median of the passes' p50/p90."""
    out = {"texts_per_s": round(statistics.median(p["texts_per_s"] for p in passes), 1),
           "texts_per_s_passes": [p["texts_per_s"] for p in passes]}
    for k in ("p50_ms", "p90_ms", "batch_size"):
        if k in passes[0]:
            out[k] = round(statistics.median(p[k] for p in passes), 3)
    return out


def main(job_path: str) -> int:
    """Load, save the embeddings of every text, say ready; then one timed pass per stdin line (a batch size or
    ``corpus``), answered on stdout, until ``done``: then write the result (every pass, peak RSS) and exit.
    The caller gives the peers their turns one pass at a time, so load on the machine falls on all alike."""
    with open(job_path, encoding="utf-8") as f:
        job = json.load(f)
    with open(job["texts"], encoding="utf-8") as f:
        texts = json.load(f)
    t0 = time.perf_counter()
    run, dists = RUNNERS[job["kind"]](job)
    first = run(texts[:2])  # the first call finishes loading (lazy sessions)
    load_s = time.perf_counter() - t0
    rss_loaded = _peak_rss_mb()
    ref_bs = max(job["batch_sizes"])
    emb = np.concatenate([np.asarray(run(texts[i:i + ref_bs]), dtype=np.float32)
                          for i in range(0, len(texts), ref_bs)])
    np.save(job["embeddings"], emb)
    _say({"ready": True, "load_s": round(load_s, 2)})
    passes: dict[str, list[dict]] = {}
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "done":
            break
        t = time_corpus(run, texts, ref_bs) if cmd == "corpus" else time_batches(run, texts, int(cmd))
        passes.setdefault(cmd, []).append(t)
        _say(t)
    result = {
        "kind": job["kind"],
        "dim": int(np.asarray(first).shape[-1]),
        "load_s": round(load_s, 2),
        "rss_after_load_mb": rss_loaded,
        "peak_rss_mb": _peak_rss_mb(),
        "timings": {k: _summary(v) for k, v in passes.items()},
        "versions": {d: v for d in dists if (v := _version(d))},
        "python": sys.version.split()[0],
    }
    tmp = job["result"] + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=2)
    os.replace(tmp, job["result"])
    _say({"done": True})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
