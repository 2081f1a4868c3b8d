"""Frozen config dataclasses for fine-tuning and distillation; each checks itself when built.

The CLI and the YAML recipe layer both build these same objects (``edgepack.config.config_from_dict``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from edgepack.distill.layer_map import FEATURES, LayerMatch
from edgepack.distill.student import StudentConfig

from edgepack.config import check_choice, check_fields, check_fraction, check_min, check_positive, check_unit

MIXED_PRECISION = ("auto", "no", "fp16", "bf16")
CACHES = ("memory", "disk", "none")
QUANTIZED_BASES = ("8bit", "4bit")


@dataclass(frozen=True)
class TrainConfig:
    """The training loop shared by finetune and distill.

    batch_size is per optimizer micro-step; the effective batch is batch_size * grad_accum * processes.
    warmup_ratio: fraction of optimizer steps with linear warm-up, then linear decay to 0.
    checkpoint_every: save a resumable checkpoint every N optimizer steps (0 = only at epoch ends).
    patience: stop after this many epochs without a better validation accuracy (0 = never).
    mixed_precision: "auto" (bf16/fp16 on CUDA, none on CPU), "no", "fp16" or "bf16".
    """

    epochs: int = 3
    batch_size: int = 32
    eval_batch_size: int = 64
    lr: float = 5e-5
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    grad_accum: int = 1
    max_grad_norm: float = 1.0
    max_length: int = 128
    seed: int = 0
    checkpoint_every: int = 0
    patience: int = 0
    mixed_precision: str = "auto"
    max_steps: int | None = None  # stop after this many optimizer steps (tests, quick runs)
    freeze_embeddings: bool = False  # keep word embeddings fixed (faster on CPU, little accuracy cost)
    progress: bool = True

    def __post_init__(self) -> None:
        check_fields(self)
        check_min(self, 0, "epochs", "seed", "checkpoint_every", "patience", "weight_decay")
        check_min(self, 1, "batch_size", "eval_batch_size", "grad_accum", "max_steps")
        check_min(self, 2, "max_length")
        check_positive(self, "lr", "max_grad_norm")
        check_fraction(self, "warmup_ratio")
        check_choice(self, "mixed_precision", MIXED_PRECISION)


@dataclass(frozen=True)
class LoraSettings:
    """LoRA through peft. quantize_base: None, "8bit" or "4bit" (bitsandbytes; merged into fp32 later)."""

    r: int = 8
    alpha: int = 16
    dropout: float = 0.1
    target_modules: tuple[str, ...] | None = None  # None = peft's default for the architecture
    quantize_base: str | None = None

    def __post_init__(self) -> None:
        check_fields(self)
        check_min(self, 1, "r", "alpha")
        check_fraction(self, "dropout")
        check_choice(self, "quantize_base", QUANTIZED_BASES)


@dataclass(frozen=True)
class FinetuneConfig:
    """Teacher fine-tuning: full (lora=None) or LoRA."""

    train: TrainConfig = field(default_factory=TrainConfig)
    lora: LoraSettings | None = None
    merge_tolerance: float = 1e-4  # max |merged - adapter| logits allowed after merge_and_unload

    def __post_init__(self) -> None:
        check_fields(self)
        check_positive(self, "merge_tolerance")


def _student_train() -> TrainConfig:
    """A student starts far from its teacher's function: it learns at twice the fine-tuning rate."""
    return TrainConfig(lr=1e-4)


@dataclass(frozen=True)
class DistillConfig:
    """Knowledge distillation.

    loss = alpha_kd * kd_kl(T) + (1 - alpha_kd) * hard_ce + sum(match.weight * feature loss).
    layer_map: explicit feature matches; empty with ``features`` set = the default map for those
    features. cache: where teacher outputs live between epochs ("memory", "disk" or "none").
    """

    student: StudentConfig = field(default_factory=StudentConfig)
    train: TrainConfig = field(default_factory=_student_train)
    temperature: float = 2.0
    alpha_kd: float = 0.9
    features: tuple[str, ...] = ()  # e.g. ("hidden",), ("hidden", "attention", "embedding")
    feature_weight: float = 1.0
    layer_map: tuple[LayerMatch, ...] = ()
    cache: str = "memory"

    def __post_init__(self) -> None:
        check_fields(self)
        check_unit(self, "alpha_kd")
        check_positive(self, "temperature")
        check_min(self, 0, "feature_weight")
        check_choice(self, "features", FEATURES)
        check_choice(self, "cache", CACHES)
