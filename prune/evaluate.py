"""Accuracy and same-process latency of torch models (used to report what pruning bought and cost)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from typing import Any

from edgepack.prune.importance import batches


def predict(model: Any, tokenizer: Any, texts: Sequence[str], batch_size: int = 64, max_length: int = 128) -> Any:
    """Arg-max class index per text (numpy int array)."""
    import numpy as np
    import torch

    model.eval()
    out = []
    with torch.inference_mode():
        for enc, _ in batches(tokenizer, texts, None, batch_size, max_length):
            out.append(model(**enc).logits.argmax(-1).numpy())
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)


def evaluate(model: Any, tokenizer: Any, texts: Sequence[str], labels: Sequence[int], max_length: int = 128) -> dict:
    """accuracy and macro-F1 (``edgepack.metrics``) of a classifier on labelled texts."""
    import numpy as np

    from edgepack.metrics import accuracy, macro_f1

    pred = predict(model, tokenizer, texts, max_length=max_length)
    gold = np.asarray(labels)
    return {"accuracy": accuracy(pred, gold), "macro_f1": macro_f1(pred, gold, int(model.config.num_labels))}


def compare_latency(models: dict[str, Any], tokenizer: Any, texts: Sequence[str], batch_size: int = 8,
                    runs: int = 20, warmup: int = 3, max_length: int = 128) -> dict[str, dict]:
    """Torch eager CPU latency of each model on the same real-text batches, measured interleaved.

    Batches of ``batch_size`` texts are padded to their longest text. Each timed round runs every model
    once on the next batch (round-robin, so load from other processes hits all models alike); returns
    ``{name: {"p50_ms", "min_ms", "speedup_vs_<first>"}}``.
    """
    import torch

    encs = [enc for enc, _ in batches(tokenizer, texts[: batch_size * max(runs, 1)], None, batch_size, max_length)]
    encs = [e for e in encs if e["input_ids"].shape[0] == batch_size] or encs
    times: dict[str, list[float]] = {k: [] for k in models}
    with torch.inference_mode():
        for m in models.values():
            m.eval()
            for _ in range(warmup):
                m(**encs[0])
        for r in range(runs):
            enc = encs[r % len(encs)]
            for name, m in models.items():
                t0 = time.perf_counter_ns()
                m(**enc)
                times[name].append((time.perf_counter_ns() - t0) / 1e6)
    first = next(iter(models))
    # speed-up = median over rounds of (first model's time / this model's time) in the same round:
    # paired ratios cancel most of the load other processes put on a shared CPU
    return {k: {"p50_ms": statistics.median(v), "min_ms": min(v),
                f"speedup_vs_{first}": statistics.median(a / b for a, b in zip(times[first], v))}
            for k, v in times.items()}

def embedding_agreement(model: Any, reference: Any, tokenizer: Any, texts: Sequence[str], max_length: int = 128) -> dict:
    """Cosine similarity of mean-pooled embeddings of ``model`` vs ``reference`` (mean and min over texts)."""
    import torch
    from edgepack.losses import mean_pool

    cos = []
    with torch.inference_mode():
        for enc, _ in batches(tokenizer, texts, None, 64, max_length):
            a = mean_pool(model(**enc).last_hidden_state, enc["attention_mask"])
            b = mean_pool(reference(**enc).last_hidden_state, enc["attention_mask"])
            cos.append(torch.nn.functional.cosine_similarity(a, b, dim=-1))
    c = torch.cat(cos)
    return {"cosine_mean": float(c.mean()), "cosine_min": float(c.min())}
