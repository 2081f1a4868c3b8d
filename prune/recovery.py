"""Pruning recovery: a short distillation of the pruned model from its teacher, on the core training loop.

Classifiers: ``edgepack.objectives.DistillObjective`` on logits, alpha_kd * KD-KL(teacher, student at
temperature T) + (1 - alpha_kd) * CE(gold labels) (KD only when there are no labels). Embedding
models: ``EmbeddingObjective``, 1 - cosine between the student's and the teacher's pooled embeddings,
each pooled as its runtime contract says (mean or CLS, ``edgepack.losses.pool``; normalization does not
change a cosine). The teacher's outputs come from the core teacher cache (computed once, teacher frozen,
dropout off), and ``edgepack.train.train`` runs the steps, so recovery has the same tqdm bar, accelerate
support and resumable checkpoints (in ``work_dir``) as distillation. Unstructured masks attached with
``torch.nn.utils.prune`` stay enforced: the optimizer updates ``weight_orig`` and the module's forward
pre-hook multiplies it by ``weight_mask`` on every call.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from edgepack.prune.config import RecoveryConfig

from edgepack.config import config_to_dict
from edgepack.train import TrainConfig


def train_config(cfg: RecoveryConfig, progress: bool = False) -> TrainConfig:
    """The core trainer's settings for ``cfg``: ``cfg.steps`` optimizer steps, gradients clipped at 1.0."""
    return TrainConfig(batch_size=cfg.batch_size, lr=cfg.lr, weight_decay=cfg.weight_decay,
                       warmup_ratio=cfg.warmup_ratio, max_grad_norm=1.0, max_length=cfg.max_length,
                       seed=cfg.seed, checkpoint_every=cfg.checkpoint_every, max_steps=cfg.steps,
                       freeze_embeddings=cfg.freeze_embeddings, progress=progress)


def _structure(model: Any) -> str:
    """A short hash of the parameter names and shapes (a resumed run must have pruned the same units)."""
    shapes = [(k, list(v.shape)) for k, v in model.state_dict().items()]
    return hashlib.sha256(json.dumps(shapes).encode()).hexdigest()[:16]


def recover(student: Any, teacher: Any, tokenizer: Any, texts: Sequence[str], labels: Sequence[int] | None,
            cfg: RecoveryConfig, work_dir: str | os.PathLike | None = None, progress: bool = False,
            on_step: Callable[[int], None] | None = None, fingerprint: dict | None = None,
            pooling: str = "mean", teacher_pooling: str | None = None) -> dict:
    """Train ``student`` in place for ``cfg.steps`` optimizer steps against ``teacher``; return statistics.

    ``teacher`` is any model with the same task and label set (the unpruned model, or a larger
    fine-tuned teacher). ``labels`` (indices) enable the hard-label term for classifiers. The run sees
    a seeded subset of at most ``steps * batch_size`` distinct texts, in length-pooled batches.
    ``work_dir``: where resumable checkpoints go (None: a temporary folder, no resume); re-running
    with the same arguments after an interrupt resumes there. ``fingerprint``: what else identifies
    the run (source, teacher); a checkpoint of another run is refused. on_step(step) is called after
    every optimizer step. ``pooling`` / ``teacher_pooling`` (embedding models): "mean" or "cls", how the
    student's / the teacher's embedding is pooled (``RuntimeContract.embedding_pooling``; the teacher's
    defaults to the student's). Returns steps, epochs, distinct examples, the first and last epoch's mean
    training loss, seconds and the step resumed from.
    """
    if cfg.steps == 0 or not texts:
        return {"steps": 0}
    if work_dir is None:
        with tempfile.TemporaryDirectory(prefix="edgepack-recovery-") as tmp:
            return recover(student, teacher, tokenizer, texts, labels, cfg, tmp, progress, on_step, fingerprint,
                           pooling, teacher_pooling)

    import torch

    from edgepack.batching import encode, pad_batch
    from edgepack.objectives import DistillObjective, EmbeddingObjective
    from edgepack.teacher_cache import Needs, build_cache
    from edgepack.train import train

    classifier = type(student).__name__.endswith("ForSequenceClassification")
    teacher_pooling = teacher_pooling or pooling
    order = list(range(len(texts)))
    random.Random(cfg.seed).shuffle(order)
    pick = order[:min(len(texts), cfg.steps * cfg.batch_size)]  # the distinct examples the steps will see
    enc = encode(tokenizer, [texts[i] for i in pick], None, cfg.max_length)
    gold = [labels[i] for i in pick] if labels is not None and classifier else None
    device = torch.device("cuda") if torch.cuda.is_available() else None
    try:
        cache = build_cache(teacher.to(device) if device else teacher, enc,
                            Needs(pooled=not classifier, pooling=teacher_pooling), progress=progress, device=device)
    finally:
        teacher.cpu()

    def collate(idx: list[int]) -> dict:
        b = pad_batch(enc, idx)
        if gold is not None:
            b["labels"] = torch.tensor([gold[i] for i in idx])
        b.update(cache.targets(idx, b["input_ids"].shape[1]))
        return b

    if classifier:  # without gold labels the loss is the soft-target KL alone
        objective = DistillObjective(student, temperature=cfg.temperature,
                                     alpha_kd=cfg.alpha_kd if gold is not None else 1.0)
    else:
        objective = EmbeddingObjective(student, pooling)
        fingerprint = {**(fingerprint or {}), "pooling": [pooling, teacher_pooling]}
    fp = {"recovery": config_to_dict(cfg), "model": _structure(student), **(fingerprint or {}),
          "data": [len(enc), hashlib.sha256(json.dumps(enc.input_ids).encode()).hexdigest()[:16], gold is not None]}
    frozen = []
    if cfg.freeze_embeddings and hasattr(student, "get_input_embeddings"):
        emb = student.get_input_embeddings().weight
        if emb.requires_grad:
            emb.requires_grad_(False)
            frozen.append(emb)
    try:
        result = train(objective, enc.lengths, collate, None, train_config(cfg, progress), Path(work_dir), fp,
                       on_step, desc="recovery")
    finally:
        student.cpu().eval()
        for p in frozen:
            p.requires_grad_(True)
    h = result.history
    return {"steps": result.steps, "epochs": len(h), "examples": len(pick), "loss_first": h[0]["train_loss"],
            "loss_last": h[-1]["train_loss"], "seconds": round(result.seconds, 1),
            "resumed_from_step": result.resumed_from_step}
