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
        for m, term in feature_terms(out, batch, mask, self.matches, self.proj):
            parts[m.key] = term
            loss = loss + m.weight * term
        return loss, {k: v.detach() for k, v in parts.items()}


def feature_terms(out: Any, batch: dict, mask: Any, matches: tuple, proj: Any) -> list:
    """``[(match, loss term)]`` for a layer map: the student's hidden states / embedding output / attention
    (``out`` of a forward with them) against the teacher's cached ones in ``batch``; ``proj``: a ModuleDict of
    width projections by match key (``edgepack.distill.layer_map.make_projections``)."""
    terms = []
    for m in matches:
        p = proj[m.key] if m.key in proj else None  # noqa: SIM401 (ModuleDict has no get)
        if m.feature == "hidden":
            term = losses.hidden_mse(out.hidden_states[m.layer_S + 1], batch[f"hidden_T_{m.layer_T}"], mask, p)
        elif m.feature == "embedding":
            term = losses.embedding_mse(out.hidden_states[0], batch["emb_T"], mask, p)
        else:
            term = losses.attention_kl(out.attentions[m.layer_S], batch[f"attn_T_{m.layer_T}"], mask)
        terms.append((m, term))
    return terms


EMBEDDING_LOSSES = ("cosine", "mse", "both")


class EmbeddingObjective(nn.Module):
    """Embedding models: the student's pooled embedding against the teacher's, plus weighted feature terms.

    loss "cosine": 1 - cos (scale-free: what L2-normalized embeddings compare); "mse": per-element MSE of
    the unnormalized pooled embeddings (norms too, for dot-product scores); "both": their sum.
    pooling: "mean" or "cls", the teacher's (``edgepack.losses.pool``). projection: a learned
    ``nn.Linear(H_S, H_T)`` when the widths differ (trained here, dropped with the objective).
    matches / feature_proj: a layer map and its width projections, as in ``DistillObjective`` (empty: the
    pooled embedding only). Batch keys: model inputs, ``pooled_T`` (B, H_T) (``TeacherCache.targets``,
    ``Needs(pooled=True)``) and the teacher features the matches read.
    """

    def __init__(self, student: Any, pooling: str = "mean", loss: str = "cosine", projection: Any = None,
                 matches: tuple = (), feature_proj: Any = None):
        super().__init__()
        if loss not in EMBEDDING_LOSSES:
            raise ValueError(f"loss must be one of {EMBEDDING_LOSSES}, got {loss!r}")
        self.student, self.pooling, self.loss, self.proj = student, pooling, loss, projection
        self.matches = matches
        self.feature_proj = feature_proj if feature_proj is not None else nn.ModuleDict()
        self._hidden = any(m.feature in ("hidden", "embedding") for m in matches)
        self._attn = any(m.feature == "attention" for m in matches)

    def forward(self, pooled_T: Any, **batch: Any):
        inputs = _inputs(batch)
        mask = inputs["attention_mask"]
        out = self.student(**inputs, output_hidden_states=self._hidden, output_attentions=self._attn)
        e_S = losses.pool(out.last_hidden_state, mask, self.pooling)  # (B, H_S)
        if self.proj is not None:
            e_S = self.proj(e_S)  # (B, H_T)
        parts = {}
        if self.loss in ("cosine", "both"):
            parts["cos"] = losses.cosine_distance(e_S, pooled_T)
        if self.loss in ("mse", "both"):
            parts["mse"] = losses.pooled_mse(e_S, pooled_T)
        loss = sum(parts.values())
        for m, term in feature_terms(out, batch, mask, self.matches, self.feature_proj):
            parts[m.key] = term
            loss = loss + m.weight * term
        return loss, {k: v.detach() for k, v in parts.items()}
