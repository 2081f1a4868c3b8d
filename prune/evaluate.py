"""Accuracy and same-process latency of torch models (used to report what pruning bought and cost).

Scoring, comparing and timing are the project's own (``edgepack.scoring``, ``edgepack.compare``,
``edgepack.timing``), so a pruning speed-up means what an ``edgepack bench`` speed-up means.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from edgepack.batching import batches


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
    """accuracy, macro-F1 and the accuracy's bootstrap 95% interval (``edgepack.scoring``) on labelled texts."""
    import numpy as np

    from edgepack.scoring import classification_report

    pred = predict(model, tokenizer, texts, max_length=max_length)
    r = classification_report(pred, np.asarray(labels), int(model.config.num_labels))
    return {"accuracy": r["accuracy"], "macro_f1": r["macro_f1"], "accuracy_ci95": r["accuracy_ci95"],
            "n_eval": r["n"]}


def compare_latency(models: dict[str, Any], tokenizer: Any, texts: Sequence[str], batch_size: int = 8,
                    runs: int = 20, warmup: int = 3, max_length: int = 128) -> dict[str, dict]:
    """Torch eager latency of each model on the same real-text batches (``edgepack.timing`` protocol).

    ``runs`` batches of ``batch_size`` texts (padded to their longest; cycled when there are fewer texts)
    are timed once per model, the models taking turns. Returns, per model, the ``summarize_ms`` fields
    (``p50_ms`` ...) and ``speedup_vs_<first>``: the first model's p50 / this model's p50.
    """
    from edgepack.timing import TimingProtocol, time_torch_models

    encs = [enc for enc, _ in batches(tokenizer, texts[: batch_size * max(runs, 1)], None, batch_size, max_length)]
    encs = [e for e in encs if e["input_ids"].shape[0] == batch_size] or encs
    timed = time_torch_models(models, [encs[r % len(encs)] for r in range(max(runs, 1))],
                              TimingProtocol(warmup=warmup, repeats=1))
    first = next(iter(models))
    ratio = timed.speedups(first)
    return {k: {**s, f"speedup_vs_{first}": ratio[k]} for k, s in timed.summaries().items()}


def embedding_agreement(model: Any, reference: Any, tokenizer: Any, texts: Sequence[str], max_length: int = 128,
                        pooling: str = "mean") -> dict:
    """Cosine similarity of the pooled embeddings (``pooling``: "mean" or "cls", ``edgepack.losses.pool``) of
    ``model`` vs ``reference`` (mean and min over texts)."""
    import torch

    from edgepack.compare import compare_many
    from edgepack.losses import pool

    pairs = []
    with torch.inference_mode():
        for enc, _ in batches(tokenizer, texts, None, 64, max_length):
            a = pool(model(**enc).last_hidden_state, enc["attention_mask"], pooling)
            b = pool(reference(**enc).last_hidden_state, enc["attention_mask"], pooling)
            pairs.append((b.float().numpy(), a.float().numpy(), None))
    c = compare_many(pairs)
    return {"cosine_mean": c.mean_cosine, "cosine_min": c.min_cosine}
