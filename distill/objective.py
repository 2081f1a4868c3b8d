"""Training objectives as nn.Modules whose forward returns ``(loss, parts)`` (what the trainer steps).

Wrapping the student, the learned projections and the loss in one module lets accelerate/DDP see
every trainable parameter and hook the forward pass.
"""

from __future__ import annotations

from typing import Any

from edgepack.distill import losses
from edgepack.distill.layer_map import LayerMatch

_MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def _torch_module():
    import torch

    return torch.nn.Module


class ClassifierObjective(_torch_module()):
    """Plain fine-tuning: cross-entropy of ``model(**inputs).logits`` with ``labels``."""

    def __init__(self, model: Any):
        super().__init__()
        self.model = model

    def forward(self, labels: Any, **inputs: Any):
        logits = self.model(**{k: v for k, v in inputs.items() if k in _MODEL_INPUTS}).logits
        loss = losses.hard_ce(logits, labels)
        return loss, {"ce": loss.detach()}


class DistillObjective(_torch_module()):
    """alpha * kd_kl + (1 - alpha) * hard_ce + sum of weighted feature losses from the layer map.

    Batch keys: model inputs, optional ``labels`` (B,) (teacher argmax when absent), ``logits_T`` (B, C),
    and the teacher features from ``TeacherCache.targets``.
    """

    def __init__(self, student: Any, projections: Any, matches: tuple[LayerMatch, ...],
                 temperature: float, alpha_kd: float):
        super().__init__()
        self.student = student
        self.proj = projections
        self.matches = matches
        self.temperature, self.alpha_kd = temperature, alpha_kd
        self._hidden = any(m.feature in ("hidden", "embedding") for m in matches)
        self._attn = any(m.feature == "attention" for m in matches)

    def forward(self, logits_T: Any, labels: Any = None, **batch: Any):
        inputs = {k: v for k, v in batch.items() if k in _MODEL_INPUTS}
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
            proj = self.proj[m.key] if m.key in self.proj else None
            if m.feature == "hidden":
                term = losses.hidden_mse(out.hidden_states[m.layer_S + 1], batch[f"hidden_T_{m.layer_T}"], mask, proj)
            elif m.feature == "embedding":
                term = losses.embedding_mse(out.hidden_states[0], batch["emb_T"], mask, proj)
            else:
                term = losses.attention_kl(out.attentions[m.layer_S], batch[f"attn_T_{m.layer_T}"], mask)
            parts[m.key] = term
            loss = loss + m.weight * term
        return loss, {k: v.detach() for k, v in parts.items()}
