"""Frozen config dataclasses for fine-tuning and distillation; they round-trip through dict / JSON.

The CLI and the YAML recipe layer both build these same objects (``config_from_dict``). The training
loop's settings are ``edgepack.train.TrainConfig``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from edgepack.distill.layer_map import LayerMatch
from edgepack.distill.student import StudentConfig

from edgepack.config import config_from_dict, config_to_dict  # noqa: F401  (re-exported)
from edgepack.errors import EdgepackError
from edgepack.train import TrainConfig


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
