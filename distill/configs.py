"""Frozen config dataclasses for fine-tuning and distillation; they round-trip through dict / JSON.

The CLI and the YAML recipe layer both build these same objects (``config_from_dict``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from edgepack.distill.layer_map import LayerMatch
from edgepack.distill.student import StudentConfig

from edgepack.config import config_from_dict, config_to_dict  # noqa: F401  (re-exported)
from edgepack.errors import EdgepackError


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


@dataclass(frozen=True)
class LoraSettings:
    """LoRA through peft. quantize_base: None, "8bit" or "4bit" (bitsandbytes; merged into fp32 later)."""

    r: int = 8
    alpha: int = 16
    dropout: float = 0.1
    target_modules: tuple[str, ...] | None = None  # None = peft's default for the architecture
    quantize_base: str | None = None


@dataclass(frozen=True)
class FinetuneConfig:
    """Teacher fine-tuning: full (lora=None) or LoRA."""

    train: TrainConfig = field(default_factory=TrainConfig)
    lora: LoraSettings | None = None
    merge_tolerance: float = 1e-4  # max |merged - adapter| logits allowed after merge_and_unload


@dataclass(frozen=True)
class DistillConfig:
    """Knowledge distillation.

    loss = alpha_kd * kd_kl(T) + (1 - alpha_kd) * hard_ce + sum(match.weight * feature loss).
    layer_map: explicit feature matches; empty with ``features`` set = the default map for those
    features. cache: where teacher outputs live between epochs ("memory", "disk" or "none").
    """

    student: StudentConfig = field(default_factory=StudentConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    temperature: float = 2.0
    alpha_kd: float = 0.9
    features: tuple[str, ...] = ()  # e.g. ("hidden",), ("hidden", "attention", "embedding")
    feature_weight: float = 1.0
    layer_map: tuple[LayerMatch, ...] = ()
    cache: str = "memory"

    def __post_init__(self) -> None:
        if not 0.0 <= self.alpha_kd <= 1.0:
            raise EdgepackError(f"alpha_kd must be in [0, 1], got {self.alpha_kd}")
        if self.temperature <= 0:
            raise EdgepackError(f"temperature must be > 0, got {self.temperature}")
        if self.cache not in ("memory", "disk", "none"):
            raise EdgepackError(f"cache must be memory, disk or none, got {self.cache!r}")
