"""Training objectives as nn.Modules whose forward returns ``(loss, parts)`` (what ``edgepack.train`` steps).

Wrapping the student, the learned projections and the loss in one module lets accelerate/DDP see
every trainable parameter and hook the forward pass. Importing this module imports torch: import it
inside the functions that train.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from edgepack import losses

_MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def _inputs(batch: dict) -> dict:
    return {k: v for k, v in batch.items() if k in _MODEL_INPUTS}


class ClassifierObjective(nn.Module):
    """Plain fine-tuning: cross-entropy of ``model(**inputs).logits`` with ``labels``."""

    def __init__(self, model: Any):
        super().__init__()
        self.model = model

    def forward(self, labels: Any, **inputs: Any):
        logits = self.model(**_inputs(inputs)).logits
        loss = losses.hard_ce(logits, labels)
        return loss, {"ce": loss.detach()}


class DistillObjective(nn.Module):
    """alpha_kd * kd_kl(T) + (1 - alpha_kd) * hard_ce + sum of weighted feature losses from the layer map.

    Batch keys: model inputs, optional ``labels`` (B,) (teacher argmax when absent), ``logits_T`` (B, C),
    and the teacher features from ``TeacherCache.targets``. ``matches``: objects with ``feature``
    ("hidden", "embedding" or "attention"), ``layer_S``, ``layer_T``, ``weight`` and ``key``
    (``edgepack.distill.layer_map.LayerMatch``); empty = logits only (what pruning recovery uses).
    """

    def __init__(self, student: Any, projections: Any = None, matches: tuple = (),
                 temperature: float = 2.0, alpha_kd: float = 0.9):
        super().__init__()
        self.student = student
        self.proj = projections if projections is not None else nn.ModuleDict()
        self.matches = matches
        self.temperature, self.alpha_kd = temperature, alpha_kd
        self._hidden = any(m.feature in ("hidden", "embedding") for m in matches)
        self._attn = any(m.feature == "attention" for m in matches)

    def forward(self, logits_T: Any, labels: Any = None, **batch: Any):
        inputs = _inputs(batch)
        out = self.student(**inputs, output_hidden_states=self._hidden, output_attentions=self._attn)
        mask = inputs["attention_mask"]
        parts = {}
        loss = 0.0
        if self.alpha_kd > 0:
            parts["kd"] = losses.kd_kl(out.logits, logits_T, self.temperature)
            loss = loss + self.alpha_kd * parts["kd"]
        if self.alpha_kd < 1:
            gold = labels if labels is not None else logits_T.argmax(-1)
            parts["ce"] = losses.hard_ce(out.logits, gold)
            loss = loss + (1 - self.alpha_kd) * parts["ce"]
        for m in self.matches:
            proj = self.proj[m.key] if m.key in self.proj else None  # noqa: SIM401 (ModuleDict has no get)
            if m.feature == "hidden":
                term = losses.hidden_mse(out.hidden_states[m.layer_S + 1], batch[f"hidden_T_{m.layer_T}"], mask, proj)
            elif m.feature == "embedding":
                term = losses.embedding_mse(out.hidden_states[0], batch["emb_T"], mask, proj)
            else:
                term = losses.attention_kl(out.attentions[m.layer_S], batch[f"attn_T_{m.layer_T}"], mask)
            parts[m.key] = term
            loss = loss + m.weight * term
        return loss, {k: v.detach() for k, v in parts.items()}


EMBEDDING_LOSSES = ("cosine", "mse", "both")


class EmbeddingObjective(nn.Module):
    """Embedding models: the student's pooled embedding against the teacher's.

    loss "cosine": 1 - cos (scale-free: what L2-normalized embeddings compare); "mse": per-element MSE of
    the unnormalized pooled embeddings (norms too, for dot-product scores); "both": their sum.
    pooling: "mean" or "cls", the teacher's (``edgepack.losses.pool``). projection: a learned
    ``nn.Linear(H_S, H_T)`` when the widths differ (trained here, dropped with the objective).
    Batch keys: model inputs and ``pooled_T`` (B, H_T) (``TeacherCache.targets``, ``Needs(pooled=True)``).
    """

    def __init__(self, student: Any, pooling: str = "mean", loss: str = "cosine", projection: Any = None):
        super().__init__()
        if loss not in EMBEDDING_LOSSES:
            raise ValueError(f"loss must be one of {EMBEDDING_LOSSES}, got {loss!r}")
        self.student, self.pooling, self.loss, self.proj = student, pooling, loss, projection

    def forward(self, pooled_T: Any, **batch: Any):
        inputs = _inputs(batch)
        e_S = losses.pool(self.student(**inputs).last_hidden_state, inputs["attention_mask"], self.pooling)  # (B, H_S)
        if self.proj is not None:
            e_S = self.proj(e_S)  # (B, H_T)
        parts = {}
        if self.loss in ("cosine", "both"):
            parts["cos"] = losses.cosine_distance(e_S, pooled_T)
        if self.loss in ("mse", "both"):
            parts["mse"] = losses.pooled_mse(e_S, pooled_T)
        loss = sum(parts.values())
        return loss, {k: v.detach() for k, v in parts.items()}
