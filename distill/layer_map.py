"""Which student layer learns from which teacher layer: plain data the user can override.

Layers are numbered like Hugging Face ``hidden_states``: 0 is the embedding output, i+1 the output of
transformer block i. For attention, ``layer`` is the block index (0-based) as in ``attentions``.
The default maps student block i (of k) to teacher block ``round((i+1)*n/k) - 1`` (of n), so the
last student block always learns from the last teacher block. A student deeper than its teacher (a
pretrained student, k > n) is mapped the other way round: each teacher block j is imitated by student
block ``round((j+1)*k/n) - 1``, so every teacher block is used once, the last by the last student block,
and the student blocks in between learn only from the logits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from edgepack.config import check_choice, check_fields, check_min
from edgepack.errors import EdgepackError

FEATURES = ("hidden", "attention", "embedding")


@dataclass(frozen=True)
class LayerMatch:
    """One feature-matching term: student ``layer_S`` imitates teacher ``layer_T``.

    feature: "hidden" (block outputs, hidden_mse; layers are block indices 0-based), "attention"
    (attention probabilities, attention_kl; block indices) or "embedding" (embedding output,
    embedding_mse; layers ignored). weight multiplies the loss term.
    """

    layer_T: int
    layer_S: int
    feature: str = "hidden"
    weight: float = 1.0

    def __post_init__(self) -> None:
        check_fields(self)
        check_min(self, 0, "layer_T", "layer_S", "weight")
        check_choice(self, "feature", FEATURES)

    @property
    def key(self) -> str:
        return f"{self.feature}_{self.layer_S}"


def default_teacher_layer(i: int, n_T: int, n_S: int) -> int:
    """Teacher block index for student block ``i``: round((i+1)*n/k) - 1 (halves round up)."""
    return int(math.floor((i + 1) * n_T / n_S + 0.5)) - 1


def default_layer_map(n_T: int, n_S: int, features: tuple[str, ...] = ("hidden",),
                      weight: float = 1.0) -> tuple[LayerMatch, ...]:
    """One LayerMatch per student block (per teacher block when the student is deeper) and requested
    feature, plus one for "embedding"."""
    if n_S < 1 or n_T < 1:
        raise ValueError(f"need at least one layer in each model, got student {n_S} and teacher {n_T}")
    pairs = ([(default_teacher_layer(i, n_T, n_S), i) for i in range(n_S)] if n_S <= n_T
             else [(j, default_teacher_layer(j, n_S, n_T)) for j in range(n_T)])
    out = []
    for f in features:
        if f == "embedding":
            out.append(LayerMatch(0, 0, "embedding", weight))
            continue
        out += [LayerMatch(t, s, f, weight) for t, s in pairs]
    return tuple(out)


def validate_layer_map(matches: tuple[LayerMatch, ...], n_T: int, n_S: int) -> None:
    """Raise ValueError when a match points outside either model."""
    for m in matches:
        if m.feature == "embedding":
            continue
        if not (0 <= m.layer_T < n_T and 0 <= m.layer_S < n_S):
            raise ValueError(f"layer match {m} is out of range: teacher has {n_T} blocks, student {n_S}")


def layer_matches(cfg, n_T: int, n_S: int) -> tuple[LayerMatch, ...]:
    """A distill config's layer map (``cfg.layer_map``, else the default map for ``cfg.features``) for a
    teacher of ``n_T`` blocks and a student of ``n_S``; EdgepackError (one line) when a match is out of range."""
    matches = cfg.layer_map or default_layer_map(n_T, n_S, cfg.features, cfg.feature_weight)
    try:
        validate_layer_map(matches, n_T, n_S)
    except ValueError as e:
        raise EdgepackError(str(e)) from None
    return matches


def attention_overrides(cfg) -> dict | None:
    """Student config overrides when a distill config matches attention: HF returns attention probabilities
    after dropout, which are not distributions, so no dropout there (None: nothing to override)."""
    if "attention" in cfg.features or any(m.feature == "attention" for m in cfg.layer_map):
        return {"attention_probs_dropout_prob": 0.0, "attention_dropout": 0.0}
    return None


def make_projections(matches: tuple[LayerMatch, ...], hidden_S: int, hidden_T: int):
    """A ``torch.nn.ModuleDict`` of learned ``Linear(hidden_S, hidden_T)`` per hidden/embedding match
    (empty when the sizes agree). They are trained with the student and dropped afterwards."""
    import torch

    mods = {}
    if hidden_S != hidden_T:
        for m in matches:
            if m.feature in ("hidden", "embedding"):
                mods[m.key] = torch.nn.Linear(hidden_S, hidden_T)
    return torch.nn.ModuleDict(mods)
