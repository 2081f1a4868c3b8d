"""Frozen config dataclasses for fine-tuning and distillation; each checks itself when built.

The CLI and the YAML recipe layer both build these same objects (``edgepack.config.config_from_dict``).
The training loop's settings are ``edgepack.train.TrainConfig``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from edgepack.distill.layer_map import FEATURES, LayerMatch
from edgepack.distill.student import StudentConfig

from edgepack.config import (
    ConfigError,
    check_choice,
    check_fields,
    check_fraction,
    check_min,
    check_positive,
    check_unit,
)
from edgepack.train import TrainConfig

CACHES = ("memory", "disk", "none")
EMBEDDING_LOSSES = ("cosine", "mse", "both")  # edgepack.objectives.EmbeddingObjective
QUANTIZED_BASES = ("8bit", "4bit")


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


@dataclass(frozen=True)
class TransferSettings:
    """A transfer set: extra unlabeled texts the teacher labels (soft targets, cached with the training set).

    path: a ``.txt`` file (one text per line) or a CSV/TSV/JSONL/Parquet file (``text_column``); None = only
    augmented copies of the training texts. max_texts: a seeded sample of at most N source texts (the
    file's, else the training texts that get augmented). augment_copies: augmented copies of each source text,
    each word dropped with probability ``word_dropout``, replaced by the teacher's mask token with
    probability ``mask``, and ``swap`` * words pairs of neighbouring spans swapped (seeded by ``seed``).
    compare: also train the same student without the transfer set, same seed and optimizer steps, and
    record both validation accuracies with a paired bootstrap interval of their difference.
    """

    path: str | None = None
    text_column: str = "text"
    max_texts: int | None = None
    augment_copies: int = 0
    word_dropout: float = 0.1
    mask: float = 0.0
    swap: float = 0.1
    seed: int = 0
    compare: bool = True

    def __post_init__(self) -> None:
        check_fields(self)
        check_min(self, 1, "max_texts")
        check_min(self, 0, "augment_copies", "seed")
        check_fraction(self, "word_dropout", "mask", "swap")


def _student_train() -> TrainConfig:
    """A student starts far from its teacher's function: it learns at twice the fine-tuning rate."""
    return TrainConfig(lr=1e-4)


@dataclass(frozen=True)
class EmbeddingSettings:
    """Distilling an embedding (feature-extraction) teacher: ``edgepack.distill.embedding``.

    loss: "cosine" (1 - cos of pooled embeddings), "mse" (per element, unnormalized) or "both" (sum).
    eval_examples: validation texts the neighbour metrics use (an N x N similarity matrix).
    probe_examples: training texts the linear probe is fitted on (labeled data only; 0 = no probe).
    """

    loss: str = "cosine"
    eval_examples: int = 2000
    probe_examples: int = 5000

    def __post_init__(self) -> None:
        check_fields(self)
        check_choice(self, "loss", EMBEDDING_LOSSES)
        check_min(self, 2, "eval_examples")
        check_min(self, 0, "probe_examples")


@dataclass(frozen=True)
class DistillConfig:
    """Knowledge distillation.

    loss = alpha_kd * kd_kl(T) + (1 - alpha_kd) * hard_ce + sum(match.weight * feature loss).
    layer_map: explicit feature matches; empty with ``features`` set = the default map for those
    features. cache: where teacher outputs live between epochs ("memory", "disk" or "none").
    transfer: extra unlabeled distillation texts (``TransferSettings``; None = the training set only).
    """

    student: StudentConfig = field(default_factory=StudentConfig)
    train: TrainConfig = field(default_factory=_student_train)
    temperature: float = 2.0
    alpha_kd: float = 0.9
    features: tuple[str, ...] = ()  # e.g. ("hidden",), ("hidden", "attention", "embedding")
    feature_weight: float = 1.0
    layer_map: tuple[LayerMatch, ...] = ()
    cache: str = "memory"
    transfer: TransferSettings | None = None  # extra unlabeled texts the teacher labels
    embedding: EmbeddingSettings = field(default_factory=EmbeddingSettings)  # embedding teachers only

    def __post_init__(self) -> None:
        check_fields(self)
        check_unit(self, "alpha_kd")
        check_positive(self, "temperature")
        check_min(self, 0, "feature_weight")
        check_choice(self, "features", FEATURES)
        check_choice(self, "cache", CACHES)
        if self.transfer is not None and self.transfer.path is None and self.transfer.augment_copies == 0:
            raise ConfigError("transfer.augment_copies", "must be >= 1 when the transfer set has no file (path: null)")
