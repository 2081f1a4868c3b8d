"""The typed runtime contract: what a stage tells the runtime, Triton and TensorRT about a model. Stdlib only.

Every fact a reader needs to run an artifact (tokenization limits, pooling, precision, the CPU an INT8
model was quantized for, the TensorRT build environment and profiles, the Triton entry point) is a typed
field of :class:`RuntimeContract`, stored under the manifest's ``runtime`` key. Writers build it (usually
``parent.runtime.replace(...)``); ``edgepack.artifact.Artifact.open`` validates it, so a reader gets
``art.runtime.max_length`` (an int or None) instead of ``extra.get("max_length")``. Stage reports and
provenance that no reader acts on stay in the manifest's ``extra`` (see docs/CONVENTIONS.md).

Each field is checked in ``__post_init__`` (type, range, enumeration); a bad value is one EdgepackError
line naming the field. ``from_dict`` refuses unknown keys.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Any

from edgepack.config import check_fields, config_from_dict, config_to_dict
from edgepack.cpu import TARGETS
from edgepack.errors import EdgepackError

POOLINGS = ("mean", "cls")  # how the runtime turns last_hidden_state (B, T, H) into an embedding (B, H)
# graph precision of the model: fp32/fp16 floats; INT8 with per-batch (dynamic) or calibrated (static)
# activation scales (TensorRT INT8 is static: calibration or Q/DQ); nf4: 4-bit weights (bitsandbytes)
PRECISIONS = ("fp32", "fp16", "int8-dynamic", "int8-static", "nf4")
WEIGHT_TYPES = ("qint8", "quint8")
INT8_MODES = ("none", "qdq", "calibrate", "cache")  # how a TensorRT engine got its INT8 scales
TRITON_PLATFORMS = ("onnxruntime_onnx", "tensorrt_plan")


class ContractError(EdgepackError):
    """A runtime contract field with a wrong type or value."""


@dataclass(frozen=True)
class ShapeRange:
    """Declared batch and sequence lengths of one TensorRT optimization profile (min <= opt <= max)."""

    min_batch: int = 1
    opt_batch: int = 8
    max_batch: int = 32
    min_seq: int = 1
    opt_seq: int = 128
    max_seq: int = 128

    def __post_init__(self) -> None:
        check_fields(self)
        for what, lo, mid, hi in (
            ("batch", self.min_batch, self.opt_batch, self.max_batch),
            ("sequence", self.min_seq, self.opt_seq, self.max_seq),
        ):
            if not all(isinstance(v, int) and not isinstance(v, bool) for v in (lo, mid, hi)):
                raise EdgepackError(f"{what} lengths must be integers, got {lo}, {mid}, {hi}")
            if not 1 <= lo <= mid <= hi:
                raise EdgepackError(
                    f"{what} lengths must satisfy 1 <= min <= opt <= max; got min={lo} opt={mid} max={hi}"
                )

    def contains(self, batch: int, seq: int) -> bool:
        """Whether a (batch, seq) input fits this profile."""
        return self.min_batch <= batch <= self.max_batch and self.min_seq <= seq <= self.max_seq


@dataclass(frozen=True)
class RuntimeContract:
    """Runtime facts of one artifact; None means "not recorded" (the reader's default applies)."""

    # tokenization and model shape (onnx export)
    max_length: int | None = None  # truncation limit (the model's position limit or less)
    pad_token_id: int | None = None
    model_type: str | None = None  # transformers config.model_type, e.g. "bert"
    num_heads: int | None = None
    hidden_size: int | None = None
    num_layers: int | None = None
    opset: int | None = None
    # post-processing of embedding models
    pooling: str | None = None  # one of POOLINGS; None: mean
    normalize: bool | None = None  # L2-normalize the pooled embedding; None: True for mean, False for cls
    # graph precision and how it was reached
    precision: str = "fp32"  # one of PRECISIONS
    fused: bool = False  # ONNX Runtime transformer fusion applied (contrib ops)
    quantization: str | None = None  # quantization method name, e.g. "dynamic-int8"
    target_cpu: str | None = None  # INT8: the CPU family it was quantized for (edgepack.cpu.TARGETS)
    reduce_range: bool | None = None  # INT8: 7-bit weights (x86 without VNNI)
    weight_type: str | None = None  # INT8: one of WEIGHT_TYPES
    torch_source: str | None = None  # path of the torch model it came from (not shown by the server)
    # TensorRT engine: the environment it loads in, and its optimization profiles in engine order
    tensorrt_version: str | None = None
    gpu_name: str | None = None
    compute_capability: str | None = None  # "9.0"
    profiles: tuple[ShapeRange, ...] = ()
    int8_mode: str | None = None  # one of INT8_MODES
    sparse_weights: bool | None = None
    onnx_sha256: str | None = None  # the graph the engine was built from
    calibration_batches: int | None = None
    # Triton repository: the model and the entry point requests go to
    model_name: str | None = None
    platform: str | None = None  # one of TRITON_PLATFORMS
    ensemble: str | None = None  # the TEXT -> outputs ensemble, when the tokenizer runs server-side

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            _check_type(f.name, getattr(self, f.name), hints[f.name])
        for name in ("max_length", "num_heads", "hidden_size", "num_layers", "opset"):
            _check_min(name, getattr(self, name), 1)
        _check_min("pad_token_id", self.pad_token_id, 0)
        _check_min("calibration_batches", self.calibration_batches, 0)
        for name, allowed in (("pooling", POOLINGS), ("precision", PRECISIONS), ("target_cpu", TARGETS),
                              ("weight_type", WEIGHT_TYPES), ("int8_mode", INT8_MODES),
                              ("platform", TRITON_PLATFORMS)):
            value = getattr(self, name)
            if value is not None and value not in allowed:
                raise ContractError(f"runtime contract field '{name}' must be one of {', '.join(allowed)}, "
                                    f"got {value!r}")
        if self.compute_capability is not None and not _is_capability(self.compute_capability):
            raise ContractError("runtime contract field 'compute_capability' must look like '9.0', "
                                f"got {self.compute_capability!r}")

    # --- readers' helpers ---------------------------------------------------------------------------
    def embedding_pooling(self) -> tuple[str, bool]:
        """(pooling, normalize) with the defaults applied: mean + L2 norm, or cls without."""
        pooling = self.pooling or "mean"
        return pooling, (pooling == "mean") if self.normalize is None else self.normalize

    def replace(self, **changes: Any) -> RuntimeContract:
        """A copy with ``changes`` applied (and validated)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        """The manifest's ``runtime`` entry: recorded fields only (None and empty profiles left out)."""
        out: dict = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None or (f.name == "profiles" and not value):
                continue
            out[f.name] = [config_to_dict(p) for p in value] if f.name == "profiles" else value
        return out

    @classmethod
    def from_dict(cls, data: dict | None) -> RuntimeContract:
        """Build from a manifest's ``runtime`` entry; unknown keys and bad values raise EdgepackError."""
        profiles = data.get("profiles") if isinstance(data, dict) else None
        if isinstance(profiles, (list, tuple)):  # each profile on its own, so the error names the field
            try:
                data = {**data, "profiles": tuple(p if isinstance(p, ShapeRange) else config_from_dict(ShapeRange, p)
                                                  for p in profiles)}
            except EdgepackError as e:
                raise ContractError(f"runtime contract field 'profiles': {e}") from None
        try:
            return config_from_dict(cls, data)
        except ContractError:
            raise
        except EdgepackError as e:  # unknown key, or a bad profile: name the field
            msg = str(e)
            if msg.startswith("unknown RuntimeContract option"):
                raise ContractError("runtime contract has " + msg.removeprefix("unknown RuntimeContract ")
                                    .replace("option(s)", "unknown field(s)", 1)) from None
            raise ContractError(f"runtime contract field 'profiles': {msg}") from None


def _check_type(name: str, value: Any, hint: Any) -> None:
    """Raise ContractError unless ``value`` matches ``hint`` (int, str, bool, X | None, tuple[ShapeRange, ...])."""
    args = typing.get_args(hint)
    if type(None) in args:
        if value is None:
            return
        hint = next(a for a in args if a is not type(None))
    if typing.get_origin(hint) is tuple:
        if not isinstance(value, tuple) or not all(isinstance(v, ShapeRange) for v in value):
            raise ContractError(f"runtime contract field '{name}' must be a list of shape ranges, got {value!r}")
        return
    ok = isinstance(value, hint) and not (hint is int and isinstance(value, bool))
    if not ok:
        want = {int: "an integer", str: "a string", bool: "true or false"}.get(hint, hint.__name__)
        raise ContractError(f"runtime contract field '{name}' must be {want}, got {type(value).__name__} "
                            f"{value!r}")


def _check_min(name: str, value: int | None, low: int) -> None:
    if value is not None and value < low:
        raise ContractError(f"runtime contract field '{name}' must be >= {low}, got {value}")


def _is_capability(text: str) -> bool:
    major, dot, minor = text.partition(".")
    return bool(dot) and major.isdigit() and minor.isdigit()


__all__ = [
    "INT8_MODES",
    "POOLINGS",
    "PRECISIONS",
    "TRITON_PLATFORMS",
    "WEIGHT_TYPES",
    "ContractError",
    "RuntimeContract",
    "ShapeRange",
]
