"""Frozen pruning configs that round-trip through plain dicts / JSON (the CLI and YAML recipes build them)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from edgepack.config import config_from_dict
from edgepack.errors import EdgepackError

IMPORTANCE_METHODS = ("auto", "taylor", "activation")
HEAD_SCOPES = ("global", "layer")


@dataclass(frozen=True)
class RecoveryConfig:
    """A short distillation after pruning that matches the teacher's outputs (steps=0: off).

    Loss (classification): alpha_kd * T^2 * KL(teacher_T || student_T) + (1 - alpha_kd) * CE(labels)
    (KD only when the data has no labels); feature extraction: 1 - cosine(pooled student, pooled teacher).
    Runs on the core training loop (``edgepack.train``): AdamW, linear warm-up/decay, gradient clipping
    at 1.0, resumable checkpoints every ``checkpoint_every`` steps.
    """

    steps: int = 0
    batch_size: int = 32
    lr: float = 1e-4
    warmup_ratio: float = 0.1
    temperature: float = 2.0
    alpha_kd: float = 0.8  # weight of the soft-target loss; 1 - alpha_kd on hard labels when there are labels
    max_length: int = 64
    weight_decay: float = 0.01
    seed: int = 0
    freeze_embeddings: bool = False  # keep word embeddings fixed (far less optimizer work on CPU)
    checkpoint_every: int = 100  # optimizer steps between resumable checkpoints (0 = only at epoch ends)

    def validate(self) -> None:
        if self.steps < 0:
            raise EdgepackError(f"recovery steps must be >= 0, got {self.steps}")
        if self.batch_size < 1 or self.max_length < 2:
            raise EdgepackError("recovery batch_size must be >= 1 and max_length >= 2")
        if not 0.0 <= self.alpha_kd <= 1.0:
            raise EdgepackError(f"recovery alpha_kd must be in [0, 1], got {self.alpha_kd}")
        if self.checkpoint_every < 0:
            raise EdgepackError(f"recovery checkpoint_every must be >= 0, got {self.checkpoint_every}")
        if self.temperature <= 0 or self.lr <= 0:
            raise EdgepackError("recovery temperature and lr must be > 0")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise EdgepackError(f"recovery warmup_ratio must be in [0, 1), got {self.warmup_ratio}")


@dataclass(frozen=True)
class PruneConfig:
    """What to remove. Structured steps run first (layers, then heads, then FFN neurons), then the
    unstructured masks, then recovery (masks stay enforced while it trains).

    head_fraction: share of all attention heads removed (scope "global": ranked across layers after
      per-layer normalisation; "layer": the same share in every layer); each layer keeps >= 1 head.
    ffn_fraction: share of FFN intermediate neurons removed in every layer (the same count per layer,
      so the config's single intermediate size still describes the model and it reloads with
      from_pretrained); the kept count is rounded to a multiple of ``ffn_multiple_of``.
    drop_layers: layer indices removed outright (negative indices count from the end).
    sparsity: global magnitude (L1) unstructured sparsity over the encoder's Linear weights.
    semi_structured_24: 2:4 mask (2 of every 4 consecutive input weights kept) on the same weights.
    importance: "taylor" (|dL/dgate| on labelled batches; Michel et al. 2019), "activation"
      (mean |activation| x output-weight norm, no labels), "auto" (taylor for classifiers).
    """

    head_fraction: float = 0.0
    head_scope: str = "global"
    ffn_fraction: float = 0.0
    ffn_multiple_of: int = 8
    drop_layers: tuple[int, ...] = ()
    sparsity: float = 0.0
    semi_structured_24: bool = False
    include_embeddings: bool = False  # also magnitude-prune the word embedding matrix
    importance: str = "auto"
    importance_examples: int = 512
    batch_size: int = 16
    max_length: int = 128
    eval_examples: int | None = None  # None = the whole validation split
    latency_runs: int = 10  # timed batch-8 runs per model in the same process (0 = skip)
    recovery: RecoveryConfig = field(default_factory=RecoveryConfig)
    seed: int = 0

    def validate(self) -> PruneConfig:
        """Raise EdgepackError for values out of range; return self."""
        for name in ("head_fraction", "ffn_fraction", "sparsity"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not 0.0 <= v < 1.0:
                raise EdgepackError(f"{name} must be in [0, 1), got {v!r} (1.0 would remove everything)")
        if self.head_scope not in HEAD_SCOPES:
            raise EdgepackError(f"head_scope must be one of {HEAD_SCOPES}, got {self.head_scope!r}")
        if self.importance not in IMPORTANCE_METHODS:
            raise EdgepackError(f"importance must be one of {IMPORTANCE_METHODS}, got {self.importance!r}")
        if self.sparsity and self.semi_structured_24:
            raise EdgepackError("choose either sparsity (unstructured) or semi_structured_24, not both")
        if self.ffn_multiple_of < 1 or self.batch_size < 1 or self.importance_examples < 1:
            raise EdgepackError("ffn_multiple_of, batch_size and importance_examples must be >= 1")
        if len(set(self.drop_layers)) != len(self.drop_layers):
            raise EdgepackError(f"drop_layers has duplicates: {list(self.drop_layers)}")
        self.recovery.validate()
        return self

    @property
    def structured(self) -> bool:
        return bool(self.head_fraction or self.ffn_fraction or self.drop_layers)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PruneConfig:
        """Build from a dict (JSON/YAML); unknown keys raise EdgepackError."""
        return config_from_dict(cls, d)

    @classmethod
    def from_json(cls, text: str) -> PruneConfig:
        return cls.from_dict(json.loads(text))

