"""Quantization methods: config type -> builder, and ``register_method`` to add a method in one call.

A builder turns an fp32 ``onnx`` parent into one candidate artifact::

    builder(parent: Artifact, out: Path, cfg, method: str, calibration_texts: Sequence[str],
            budget: Budget | None) -> Artifact

``budget`` (``edgepack.quantize.api.Budget``: the stage's accuracy drop of a candidate and the allowed
drop) is given by the quantize stage to every builder; budget-aware methods (``dynamic-int8-mixed``)
search against it and refuse to run without one, the others ignore it.
``edgepack.quantize.api.build_candidate`` looks the builder up by the method config's type, so a new
method is a frozen config dataclass plus ``register_method("my-int4", MyInt4Config(), build_my_int4)``;
its name then works in ``QuantizeConfig.methods`` and ``--methods``. The built-in builders import
onnx / onnxruntime when they run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgepack.quantize.config import METHODS, DynamicInt8Config, Fp16Config, MixedInt8Config, StaticInt8Config

from edgepack.artifact import Artifact
from edgepack.errors import EdgepackError

if TYPE_CHECKING:
    from edgepack.quantize.api import Budget

Builder = Callable[[Artifact, Path, Any, str, Sequence[str], "Budget | None"], Artifact]
BUILDERS: dict[type, Builder] = {}


def register_builder(config_type: type) -> Callable[[Builder], Builder]:
    """Decorator: build candidates for configs of ``config_type`` with the decorated function."""
    def deco(fn: Builder) -> Builder:
        BUILDERS[config_type] = fn
        return fn

    return deco


def register_method(name: str, config: Any, builder: Builder | None = None) -> None:
    """Make ``name`` a quantization method built from ``config`` (and ``builder`` for its config type)."""
    if builder is not None:
        BUILDERS[type(config)] = builder
    if type(config) not in BUILDERS:
        raise EdgepackError(f"no builder registered for {type(config).__name__}; pass one to register_method")
    METHODS[name] = config


def builder_for(cfg: Any) -> Builder:
    """The builder registered for ``type(cfg)``; EdgepackError listing the known config types otherwise."""
    try:
        return BUILDERS[type(cfg)]
    except KeyError:
        known = ", ".join(t.__name__ for t in BUILDERS)
        raise EdgepackError(f"no quantization builder for {type(cfg).__name__}; known: {known}") from None


@register_builder(DynamicInt8Config)
def _dynamic(parent: Artifact, out: Path, cfg: Any, method: str, calibration_texts: Sequence[str],
             budget: Budget | None = None) -> Artifact:
    from edgepack.quantize.onnx_dynamic import quantize_dynamic_onnx

    return quantize_dynamic_onnx(parent, out, cfg, method=method)


@register_builder(StaticInt8Config)
def _static(parent: Artifact, out: Path, cfg: Any, method: str, calibration_texts: Sequence[str],
            budget: Budget | None = None) -> Artifact:
    from edgepack.quantize.onnx_static import quantize_static_onnx

    return quantize_static_onnx(parent, out, calibration_texts, cfg, method=method)


@register_builder(Fp16Config)
def _fp16(parent: Artifact, out: Path, cfg: Any, method: str, calibration_texts: Sequence[str],
          budget: Budget | None = None) -> Artifact:
    from edgepack.quantize.fp16 import convert_fp16_onnx

    return convert_fp16_onnx(parent, out, cfg, method=method)


@register_builder(MixedInt8Config)
def _mixed(parent: Artifact, out: Path, cfg: Any, method: str, calibration_texts: Sequence[str],
           budget: Budget | None = None) -> Artifact:
    from edgepack.quantize.calibration import calibration_batches
    from edgepack.quantize.mixed import build_mixed

    if budget is None:
        raise EdgepackError(f"{method} needs an accuracy budget to search against (use the quantize stage)")
    batches = calibration_batches(parent, calibration_texts, cfg.calibration)
    return build_mixed(parent, out, cfg, batches, budget.drop_of, budget.max_drop, method=method,
                       plain_in_stage=budget.plain_in_stage)
