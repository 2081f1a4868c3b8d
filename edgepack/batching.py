"""The one tokenize / pad / batch path for torch models, in training and in evaluation.

Tokenize once (``encode``), batch by similar length, pad each batch only to its own longest text
(``pad_batch``). Review snippets are short (median ~26 tokens) and padding to a fixed length wastes
most of the compute on CPU, so training batches are built from length-sorted pools (seeded, reshuffled
each epoch) and padded dynamically. ``batches`` walks texts in input order (importance scoring,
evaluation, same-batch latency). torch is imported inside the functions that build tensors; the lean
runtime has its own numpy encoder (``edgepack.runtime.text``).
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass
class Encoded:
    """Token ids per example (unpadded). token_type_ids is None for models without segments."""

    input_ids: list[list[int]]
    token_type_ids: list[list[int]] | None
    pad_id: int

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def lengths(self) -> list[int]:
        return [len(x) for x in self.input_ids]


def encode(tokenizer: Any, texts: list[str], pairs: list[str] | None, max_length: int) -> Encoded:
    """Tokenize (truncating to ``max_length``) without padding."""
    enc = tokenizer(texts, pairs, truncation=True, max_length=max_length, padding=False)
    tt = enc.get("token_type_ids") if "token_type_ids" in tokenizer.model_input_names else None
    return Encoded(list(enc["input_ids"]), list(tt) if tt is not None else None, tokenizer.pad_token_id or 0)


def pad_batch(enc: Encoded, idx: list[int]) -> dict:
    """Tensors for examples ``idx``, padded to the longest: input_ids/attention_mask(/token_type_ids) (B, L)."""
    import torch

    L = max(len(enc.input_ids[i]) for i in idx)
    ids = torch.full((len(idx), L), enc.pad_id, dtype=torch.long)
    mask = torch.zeros((len(idx), L), dtype=torch.long)
    out = {"input_ids": ids, "attention_mask": mask}
    if enc.token_type_ids is not None:
        out["token_type_ids"] = torch.zeros((len(idx), L), dtype=torch.long)
    for r, i in enumerate(idx):
        n = len(enc.input_ids[i])
        ids[r, :n] = torch.tensor(enc.input_ids[i])
        mask[r, :n] = 1
        if enc.token_type_ids is not None:
            out["token_type_ids"][r, :n] = torch.tensor(enc.token_type_ids[i])
    return out


def batches(tokenizer: Any, texts: Sequence[str], labels: Sequence[int] | None, batch_size: int,
            max_length: int) -> Iterator[tuple[dict, Any]]:
    """Yield (padded batch dict (B, L), label tensor (B,) or None) over ``texts`` in input order.

    Each batch is tokenized (truncated to ``max_length``) and padded to its own longest text.
    """
    import torch

    for s in range(0, len(texts), batch_size):
        enc = encode(tokenizer, list(texts[s:s + batch_size]), None, max_length)
        y = torch.tensor(list(labels[s:s + batch_size])) if labels is not None else None
        yield pad_batch(enc, list(range(len(enc)))), y


def batch_plan(lengths: list[int], batch_size: int, seed: int, epoch: int, pool: int = 50) -> list[list[int]]:
    """Seeded batches for one epoch: shuffle, sort pools of ``pool`` batches by length, shuffle batches.

    The same (seed, epoch) always gives the same plan, which is what makes resume exact.
    """
    rng = random.Random(seed * 100_003 + epoch)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    batches = []
    for s in range(0, len(order), pool * batch_size):
        chunk = sorted(order[s:s + pool * batch_size], key=lambda i: lengths[i])
        batches += [chunk[j:j + batch_size] for j in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


def sorted_batches(lengths: list[int], batch_size: int) -> list[list[int]]:
    """Deterministic length-sorted batches for inference (restore order with the indices)."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    return [order[j:j + batch_size] for j in range(0, len(order), batch_size)]


def predict_logits(model: Any, enc: Encoded, batch_size: int = 64, device: Any = None) -> Any:
    """Logits (N, C) float32 on CPU, in input order, with the model in eval mode and no grad."""
    return predict_rows(model, enc, lambda out, batch: out.logits, batch_size, device)


def predict_rows(model: Any, enc: Encoded, head: Any, batch_size: int = 64, device: Any = None) -> Any:
    """``head(model_output, batch)`` -> (B, D) for length-sorted batches, gathered as (N, D) float32 on CPU in
    input order, with the model in eval mode and no grad (logits, pooled embeddings, ...)."""
    import torch

    was_training = model.training
    model.eval()
    out = None
    with torch.inference_mode():
        for idx in sorted_batches(enc.lengths, batch_size):
            b = {k: v.to(device) if device is not None else v for k, v in pad_batch(enc, idx).items()}
            rows = head(model(**b), b).float().cpu()
            if out is None:
                out = torch.empty((len(enc), rows.shape[-1]), dtype=torch.float32)
            out[torch.as_tensor(idx)] = rows
    model.train(was_training)
    return out if out is not None else torch.zeros((0, 0))


def classification_metrics(logits: Any, labels: list[int], num_classes: int) -> dict:
    """accuracy and macro_f1 (edgepack.scoring) of argmax(logits) against ``labels``."""
    import numpy as np

    from edgepack.scoring import accuracy, macro_f1

    pred = logits.argmax(-1).numpy()
    gold = np.asarray(labels)
    return {"accuracy": accuracy(pred, gold), "macro_f1": macro_f1(pred, gold, num_classes)}
