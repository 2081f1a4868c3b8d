"""A short recovery fine-tune after pruning: the pruned model learns the teacher's soft targets.

Classifiers: alpha * KD-KL(teacher, student at temperature T) + (1 - alpha) * CE(gold labels)
(``edgepack.distill.losses``). Embedding models: 1 - cosine between mean-pooled student and teacher
embeddings. Teacher outputs are computed once up front (the teacher is frozen, dropout off).
Unstructured masks attached with ``torch.nn.utils.prune`` stay enforced during training.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import Any

from edgepack.prune.config import RecoveryConfig

from edgepack.batching import batches


def _kd_kl(logits_S: Any, logits_T: Any, temperature: float) -> Any:
    try:
        from edgepack.distill.losses import kd_kl
    except ImportError:  # distill stage not installed: the same Hinton soft-target KL
        import torch.nn.functional as F

        t = float(temperature)
        return F.kl_div(F.log_softmax(logits_S / t, -1), F.log_softmax(logits_T / t, -1),
                        reduction="batchmean", log_target=True) * t * t
    return kd_kl(logits_S, logits_T, temperature)


def _mean_pool(hidden: Any, mask: Any) -> Any:
    m = mask.unsqueeze(-1).to(hidden.dtype)  # (B, L, 1)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)  # (B, H)


def _outputs(model: Any, enc: dict, classifier: bool) -> Any:
    out = model(**enc)
    return out.logits if classifier else _mean_pool(out.last_hidden_state, enc["attention_mask"])


def recover(student: Any, teacher: Any, tokenizer: Any, texts: Sequence[str], labels: Sequence[int] | None,
            cfg: RecoveryConfig, progress: bool = False) -> dict:
    """Fine-tune ``student`` in place for ``cfg.steps`` steps on ``texts``; returns loss statistics.

    ``teacher`` is any model with the same task and label set (the unpruned model, or a larger
    fine-tuned teacher). ``labels`` (indices) enable the hard-label term for classifiers.
    """
    import torch
    from tqdm.auto import tqdm
    from transformers import get_linear_schedule_with_warmup

    if cfg.steps == 0 or not texts:
        return {"steps": 0}
    classifier = type(student).__name__.endswith("ForSequenceClassification")
    rng = random.Random(cfg.seed)
    torch.manual_seed(cfg.seed)
    order = list(range(len(texts)))
    rng.shuffle(order)
    n_needed = min(len(texts), cfg.steps * cfg.batch_size)
    idx = [order[i % len(order)] for i in range(cfg.steps * cfg.batch_size)]
    # teacher targets once for the examples we will see (at most steps * batch_size distinct ones)
    uniq = order[:n_needed]
    teacher.eval()
    targets: dict[int, Any] = {}
    with torch.inference_mode():
        for s in range(0, len(uniq), 64):
            chunk = uniq[s:s + 64]
            enc, _ = next(batches(tokenizer, [texts[i] for i in chunk], None, 64, cfg.max_length))
            for i, row in zip(chunk, _outputs(teacher, enc, classifier)):
                targets[i] = row.clone()
    frozen = []
    if cfg.freeze_embeddings and hasattr(student, "get_input_embeddings"):
        emb = student.get_input_embeddings().weight
        if emb.requires_grad:
            emb.requires_grad_(False)
            frozen.append(emb)
    params = [p for p in student.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr)
    sched = get_linear_schedule_with_warmup(opt, math.ceil(cfg.warmup_ratio * cfg.steps), cfg.steps)
    student.train()
    losses = []
    try:
        for step in tqdm(range(cfg.steps), desc="recovery", disable=not progress):
            b = idx[step * cfg.batch_size:(step + 1) * cfg.batch_size]
            y = [labels[i] for i in b] if labels is not None and classifier else None
            enc, y_t = next(batches(tokenizer, [texts[i] for i in b], y, cfg.batch_size, cfg.max_length))
            out_S = _outputs(student, enc, classifier)
            out_T = torch.stack([targets[i] for i in b])
            if classifier:
                loss = cfg.alpha * _kd_kl(out_S, out_T, cfg.temperature)
                if y_t is not None and cfg.alpha < 1.0:
                    loss = loss + (1.0 - cfg.alpha) * torch.nn.functional.cross_entropy(out_S, y_t)
            else:
                loss = (1.0 - torch.nn.functional.cosine_similarity(out_S, out_T, dim=-1)).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            losses.append(loss.item())
    finally:
        student.eval()
        for p in frozen:
            p.requires_grad_(True)
    k = max(1, len(losses) // 10)
    return {"steps": cfg.steps, "loss_first": sum(losses[:k]) / k, "loss_last": sum(losses[-k:]) / k,
            "examples_seen": len(idx)}
