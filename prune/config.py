"""Frozen pruning configs that check themselves when built (dicts / JSON / YAML go through edgepack.config)."""

from __future__ import annotations

from dataclasses import dataclass, field

from edgepack.config import (
    ConfigError,
    check_choice,
    check_fields,
    check_fraction,
    check_min,
    check_positive,
    check_unit,
)

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

    def __post_init__(self) -> None:
        check_fields(self)
        check_min(self, 0, "steps", "seed", "weight_decay", "checkpoint_every")
        check_min(self, 1, "batch_size")
        check_min(self, 2, "max_length")
        check_unit(self, "alpha_kd")
        check_positive(self, "temperature", "lr")
        check_fraction(self, "warmup_ratio")


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

    def __post_init__(self) -> None:
        check_fields(self)
        check_fraction(self, "head_fraction", "ffn_fraction", "sparsity")
        check_choice(self, "head_scope", HEAD_SCOPES)
        check_choice(self, "importance", IMPORTANCE_METHODS)
        check_min(self, 1, "ffn_multiple_of", "batch_size", "importance_examples", "eval_examples")
        check_min(self, 2, "max_length")
        check_min(self, 0, "latency_runs", "seed")
        if self.sparsity and self.semi_structured_24:
            raise ConfigError("semi_structured_24", "cannot be combined with sparsity: choose either sparsity "
                                                    "(unstructured) or semi_structured_24, not both")
        if len(set(self.drop_layers)) != len(self.drop_layers):
            raise ConfigError("drop_layers", f"has duplicates: {list(self.drop_layers)}")
