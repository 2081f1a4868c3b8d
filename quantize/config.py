"""Frozen configs for every quantization method and the stage, and the method-name presets.

A method name (``--methods dynamic-int8,static-int8-entropy``) maps to one config instance (``METHODS``);
a config fully describes how a candidate is built, so it is recorded in the candidate's manifest. The
builder for each config type is registered in ``edgepack.quantize.methods``. Every config checks itself
when built; dicts / JSON / YAML go through ``edgepack.config``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from edgepack.config import (
    ConfigError,
    check_choice,
    check_fields,
    check_min,
    check_unit,
    config_from_dict,
    config_to_dict,
)
from edgepack.cpu import TARGETS, needs_reduce_range, resolve_target
from edgepack.fp16 import FP16_BLOCKED_OPS

SELECT_BY = ("latency", "size")  # what the quantize stage optimises within the accuracy budget

# Node patterns (fnmatch on node names and on the initializer names a node reads; a pattern without
# wildcards matches as a substring). Presets name the usual suspects of a BERT-style encoder.
EXCLUDE_PRESETS = {
    "classifier": ("classifier", "pooler"),
    "embeddings": ("embeddings", "EmbedLayerNormalization"),
}
QTYPES = ("qint8", "quint8")
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")


@dataclass(frozen=True)
class Exclusions:
    """What stays float: node/initializer name patterns and whole op types."""

    nodes: tuple[str, ...] = ()  # e.g. ("classifier", "*layer.5*")  or presets "classifier", "embeddings"
    op_types: tuple[str, ...] = ()  # e.g. ("Gather", "EmbedLayerNormalization")

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass(frozen=True)
class DynamicInt8Config:
    """ONNX Runtime dynamic INT8: int8 weights, activations quantized on the fly per batch."""

    per_channel: bool = True  # per output channel weight scales: much better accuracy than per-tensor
    # ORT's CPU QAttention is ~2x slower with per-channel weights than per-tensor (measured on MiniLM),
    # so fused Attention nodes get per-tensor weights while the other MatMuls stay per-channel.
    attention_per_tensor: bool = True
    # the CPU the model will run on (edgepack.cpu): auto | avx2 | avx512-vnni | arm64; auto = this machine
    target_cpu: str = "auto"
    reduce_range: bool | None = None  # 7-bit weights; None: what target_cpu needs (True for avx2)
    weight_type: str = "qint8"  # qint8 | quint8
    op_types: tuple[str, ...] = ("MatMul", "Attention", "Gather", "EmbedLayerNormalization")
    exclude: Exclusions = Exclusions()

    def __post_init__(self) -> None:
        check_fields(self)
        check_choice(self, "target_cpu", TARGETS)
        check_choice(self, "weight_type", QTYPES)

    def resolved(self) -> DynamicInt8Config:
        """This config with ``target_cpu`` and ``reduce_range`` decided (what the artifact records)."""
        return _resolve(self)


@dataclass(frozen=True)
class CalibrationConfig:
    """Real samples for static quantization, tokenized as the runtime does and padded per batch."""

    num_samples: int = 128
    batch_size: int = 8
    seed: int = 0

    def __post_init__(self) -> None:
        check_fields(self)
        check_min(self, 1, "num_samples", "batch_size")
        check_min(self, 0, "seed")


@dataclass(frozen=True)
class StaticInt8Config:
    """ONNX Runtime static INT8 in QDQ format (what TensorRT's INT8 path consumes)."""

    method: str = "minmax"  # minmax | entropy | percentile
    per_channel: bool = True
    activation_type: str = "quint8"  # u8 activations x s8 weights: the fast path on x86 CPUs
    weight_type: str = "qint8"
    target_cpu: str = "auto"  # as in DynamicInt8Config
    reduce_range: bool | None = None  # None: what target_cpu needs
    # zero points 0 (TensorRT's ONNX parser refuses others); with activation_type="qint8"
    symmetric_activations: bool = False
    smooth_alpha: float | None = None  # SmoothQuant migration strength (0.5 typical); None: no smoothing
    percentile: float = 99.999  # for method="percentile"
    op_types: tuple[str, ...] = ("MatMul", "Gather")
    matmul_const_weight_only: bool = True  # False also quantizes the attention score/context MatMuls
    calibration: CalibrationConfig = CalibrationConfig()
    exclude: Exclusions = Exclusions()

    def __post_init__(self) -> None:
        check_fields(self)
        check_choice(self, "method", CALIBRATION_METHODS)
        check_choice(self, "activation_type", QTYPES)
        check_choice(self, "weight_type", QTYPES)
        check_choice(self, "target_cpu", TARGETS)
        if not 50.0 < self.percentile <= 100.0:
            raise ConfigError("percentile", f"must be in (50, 100], got {self.percentile}")
        check_unit(self, "smooth_alpha")
        if self.symmetric_activations and self.activation_type != "qint8":
            raise ConfigError("symmetric_activations", "needs activation_type 'qint8'")

    def resolved(self) -> StaticInt8Config:
        return _resolve(self)


def _resolve(cfg: Any) -> Any:
    target = resolve_target(cfg.target_cpu)
    rr = needs_reduce_range(target) if cfg.reduce_range is None else cfg.reduce_range
    return dataclasses.replace(cfg, target_cpu=target, reduce_range=rr)


@dataclass(frozen=True)
class Fp16Config:
    """FP16 weights and compute for GPU execution; numerically sensitive ops stay FP32."""

    keep_io_types: bool = True  # inputs/outputs stay int64/float32, so the runtime is unchanged
    op_block_list: tuple[str, ...] = FP16_BLOCKED_OPS
    exclude: Exclusions = Exclusions()

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass(frozen=True)
class MixedInt8Config:
    """Dynamic INT8 with the MatMuls whose INT8 error is largest kept float, as few as the budget allows.

    Each node's own error is measured on calibration texts (``edgepack.quantize.mixed``); the search keeps
    the k worst float for k = 1, 2, 4, ... then bisects, up to ``max_float_fraction`` of the nodes.
    """

    base: DynamicInt8Config = DynamicInt8Config()
    max_float_fraction: float = 0.5
    max_trials: int = 8  # candidates built and scored at most
    calibration: CalibrationConfig = CalibrationConfig(num_samples=64)
    target_cpu: str = "auto"  # passed to the base config
    exclude: Exclusions = Exclusions()  # added to the base config's exclusions

    def __post_init__(self) -> None:
        check_fields(self)
        check_choice(self, "target_cpu", TARGETS)
        if not 0.0 < self.max_float_fraction <= 1.0:
            raise ConfigError("max_float_fraction", f"must be in (0, 1], got {self.max_float_fraction}")
        check_min(self, 2, "max_trials")

    def dynamic(self) -> DynamicInt8Config:
        """The dynamic-INT8 config each trial quantizes with."""
        merged = Exclusions(nodes=self.base.exclude.nodes + self.exclude.nodes,
                            op_types=self.base.exclude.op_types + self.exclude.op_types)
        return dataclasses.replace(self.base, target_cpu=self.target_cpu, exclude=merged)


METHODS: dict[str, Any] = {
    "dynamic-int8": DynamicInt8Config(),
    "dynamic-int8-per-tensor": DynamicInt8Config(per_channel=False),
    "dynamic-int8-mixed": MixedInt8Config(),
    "static-int8-minmax": StaticInt8Config(method="minmax"),
    "static-int8-entropy": StaticInt8Config(method="entropy"),
    "static-int8-percentile": StaticInt8Config(method="percentile"),
    "static-int8-smooth": StaticInt8Config(method="minmax", smooth_alpha=0.5),
    # TensorRT reads Q/DQ with zero points 0 only: symmetric int8 activations and weights
    "static-int8-trt": StaticInt8Config(method="entropy", activation_type="qint8", symmetric_activations=True),
    "fp16": Fp16Config(),
}
DEFAULT_METHODS = ("dynamic-int8", "dynamic-int8-per-tensor", "dynamic-int8-mixed", "static-int8-minmax")


@dataclass(frozen=True)
class QuantizeConfig:
    """The quantize stage: build each method's candidate, keep the fastest one within the accuracy budget."""

    methods: tuple[str, ...] = DEFAULT_METHODS
    max_accuracy_drop: float = 1.0  # points (accuracy in %), vs the parent on the same validation texts
    exclude: Exclusions = Exclusions()  # added to every method's own exclusions
    max_eval_samples: int | None = 1000  # validation texts used for accuracy (None: all)
    latency_batch_size: int = 8  # texts per timed call, padded to each batch's longest (as the runtime does)
    latency_batches: int = 24  # distinct batches timed per pass
    latency_rounds: int = 5  # timed passes over the batches, models in turns (edgepack.timing); p50 counts
    intra_op_threads: int | None = None
    backend: str = "auto"  # runtime backend the latency is measured on (the target)
    target_cpu: str = "auto"  # INT8 methods quantize for this CPU (edgepack.cpu.TARGETS); auto = this machine
    overrides: dict = field(default_factory=dict)  # method name -> config dict replacing its defaults
    # latency: the fastest candidate within budget that beats the parent; size: the smallest within budget
    # (for devices whose storage or memory is the limit, where a slower INT8 model may still be the right one)
    select_by: str = "latency"

    def __post_init__(self) -> None:
        check_fields(self)
        check_choice(self, "select_by", SELECT_BY)
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown:
            raise ConfigError("methods", f"has unknown quantization method(s) {', '.join(map(repr, unknown))}; "
                                         f"known: {', '.join(METHODS)}")
        if not self.methods:
            raise ConfigError("methods", "must name at least one quantization method")
        check_min(self, 0, "max_accuracy_drop")
        check_min(self, 1, "max_eval_samples", "latency_batch_size", "latency_batches", "latency_rounds",
                  "intra_op_threads")
        check_choice(self, "target_cpu", TARGETS)
        for name in self.overrides:  # build each override now, so a bad one fails here naming its key
            if name not in METHODS:
                raise ConfigError("overrides", f"names unknown quantization method {name!r}; "
                                               f"known: {', '.join(METHODS)}")
            try:
                self.method_config(name)
            except ConfigError as e:
                raise e.under(f"overrides.{name}") from None

    def method_config(self, name: str) -> Any:
        """The config for ``name`` with overrides and the stage-wide exclusions applied."""
        base = METHODS[name]
        if name in self.overrides:
            base = config_from_dict(type(base), {**config_to_dict(base), **self.overrides[name]})
        changes: dict[str, Any] = {}
        if hasattr(base, "exclude"):
            changes["exclude"] = Exclusions(nodes=base.exclude.nodes + self.exclude.nodes,
                                            op_types=base.exclude.op_types + self.exclude.op_types)
        if hasattr(base, "target_cpu") and "target_cpu" not in self.overrides.get(name, {}):
            changes["target_cpu"] = self.target_cpu
        return dataclasses.replace(base, **changes)

