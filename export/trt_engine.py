"""Build a TensorRT engine from an ``onnx`` artifact, and open one safely.

``build_engine(onnx_artifact, out, TrtBuildConfig(...))`` parses the ONNX graph with TensorRT's ONNX
parser, sets FP16 / INT8 / sparse-weights flags, one optimization profile per declared shape range,
a workspace limit and a timing cache, and writes a ``tensorrt`` artifact (``model.plan`` + tokenizer +
caches). INT8 comes from the graph's Q/DQ nodes (explicit quantization, e.g. ``quantize/onnx_static``)
or, for a float graph, from an entropy calibrator fed by real tokenized samples; its calibration cache
is stored in the artifact and can be reused (``calibration_cache=``) to skip calibration.

An engine only runs on the TensorRT version and GPU architecture it was built for. The manifest records
``tensorrt_version``, ``gpu_name`` and ``compute_capability``; :func:`load_engine` refuses a mismatch
with one clear line instead of TensorRT's deserialization failure. Everything before the first
``import tensorrt`` (graph checks, profiles, compatibility checks) is pure Python and tested on CPU.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from edgepack.export.trt_graph import OnnxTrtReport, inspect_onnx_for_trt
from edgepack.export.trt_profiles import (
    ShapeRange,
    bucketed_ranges,
    calibration_batches,
    check_against_model,
    input_profiles,
)

from edgepack.artifact import Artifact, ArtifactError, ArtifactWriter, sha256_file
from edgepack.config import ConfigError, check_between, check_choice, check_fields, check_min, config_to_dict
from edgepack.errors import EdgepackError, MissingDependencyError

PRECISIONS = ("fp32", "fp16", "int8")
ENGINE_FILE = "model.plan"


@dataclass(frozen=True)
class TrtBuildConfig:
    precision: str = "fp16"  # fp32 | fp16 | int8 (int8 keeps fp16 for the rest)
    shapes: ShapeRange = ShapeRange()  # declared min/opt/max batch and sequence lengths
    seq_buckets: tuple[int, ...] = ()  # extra profiles: split the sequence range at these lengths
    sparse_weights: bool = False  # BuilderFlag.SPARSE_WEIGHTS (for 2:4-pruned weights)
    workspace_mb: int = 2048  # MemoryPoolType.WORKSPACE limit
    optimization_level: int = 3  # builder_optimization_level 0..5
    timing_cache: str | None = None  # shared timing-cache file: read before, updated after
    calibration_cache: str | None = None  # reuse INT8 scales from this file (no calibration run)
    calib_batch_size: int = 8
    calib_max_batches: int = 32
    calib_seq: int | None = None  # None: shapes.opt_seq

    def __post_init__(self) -> None:
        check_fields(self)
        check_choice(self, "precision", PRECISIONS)
        check_min(self, 16, "workspace_mb")
        check_between(self, "optimization_level", 0, 5)
        check_min(self, 1, "calib_batch_size", "calib_max_batches", "calib_seq")
        if any(b < 1 for b in self.seq_buckets):
            raise ConfigError("seq_buckets", f"must be sequence lengths >= 1, got {list(self.seq_buckets)}")


@dataclass(frozen=True)
class RuntimeEnv:
    """The TensorRT version and GPU an engine is built on or opened on."""

    tensorrt_version: str
    gpu_name: str
    compute_capability: str  # "9.0"

    def to_extra(self) -> dict:
        return {
            "tensorrt_version": self.tensorrt_version,
            "gpu_name": self.gpu_name,
            "compute_capability": self.compute_capability,
        }


def import_tensorrt(purpose: str):
    """Import tensorrt or raise MissingDependencyError naming ``purpose``."""
    try:
        import tensorrt
    except ImportError:
        raise MissingDependencyError("tensorrt", "gpu-tools", purpose) from None
    return tensorrt


def parse_nvidia_smi(text: str) -> tuple[str, str]:
    """(name, compute capability) of the first GPU from ``nvidia-smi --query-gpu=name,compute_cap
    --format=csv,noheader`` output."""
    for line in text.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) >= 2 and parts[0]:
            return parts[0], parts[1]
    raise EdgepackError(f"could not read the GPU name from nvidia-smi output: {text!r}")


def detect_gpu(device: int = 0) -> tuple[str, str]:
    """(name, "major.minor") of CUDA device ``device``, via torch when it sees a GPU, else nvidia-smi."""
    try:
        import torch

        if torch.cuda.is_available():
            major, minor = torch.cuda.get_device_capability(device)
            return torch.cuda.get_device_name(device), f"{major}.{minor}"
    except ImportError:
        pass
    try:
        out = subprocess.run(
            ["nvidia-smi", f"--id={device}", "--query-gpu=name,compute_cap", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        raise EdgepackError("no NVIDIA GPU found (torch sees none and nvidia-smi failed)") from None
    return parse_nvidia_smi(out)


def detect_runtime_env(trt: Any = None, device: int = 0) -> RuntimeEnv:
    """The TensorRT version in this process and the GPU it runs on."""
    trt = trt or import_tensorrt("inspecting the TensorRT environment")
    name, cc = detect_gpu(device)
    return RuntimeEnv(str(trt.__version__), name, cc)


def check_engine_compatibility(extra: dict, env: RuntimeEnv) -> list[str]:
    """Raise ArtifactError when an engine's recorded TensorRT version or GPU architecture differs from
    ``env``; return warnings for differences TensorRT tolerates (another GPU of the same architecture)."""
    for key in ("tensorrt_version", "compute_capability", "gpu_name"):
        if not extra.get(key):
            raise ArtifactError(f"this TensorRT artifact does not record '{key}'; rebuild it with edgepack")
    if extra["tensorrt_version"] != env.tensorrt_version:
        raise ArtifactError(
            f"engine was built with TensorRT {extra['tensorrt_version']} but this process has TensorRT "
            f"{env.tensorrt_version}; engines only load in the version that built them: rebuild it here "
            "(`edgepack export tensorrt ONNX_ARTIFACT OUT`)"
        )
    if str(extra["compute_capability"]) != env.compute_capability:
        raise ArtifactError(
            f"engine was built for {extra['gpu_name']} (compute capability {extra['compute_capability']}) "
            f"but this GPU is {env.gpu_name} (compute capability {env.compute_capability}); engines are "
            "tied to the GPU architecture: rebuild it on this GPU"
        )
    if extra["gpu_name"] != env.gpu_name:
        return [
            f"engine was built on {extra['gpu_name']} and runs on {env.gpu_name} (same architecture "
            f"{env.compute_capability}); it loads, but rebuild it here for the best kernels"
        ]
    return []


def plan_int8(report: OnnxTrtReport, cfg: TrtBuildConfig, have_texts: bool) -> str:
    """How INT8 is obtained: "none", "qdq" (explicit), "calibrate" or "cache"; raises on a bad mix."""
    if report.dynamic_quant_ops:
        raise EdgepackError(
            f"this ONNX graph is dynamically quantized ({', '.join(report.dynamic_quant_ops)}), which "
            "TensorRT cannot import; build from the fp32 export (and --precision int8) or a Q/DQ static-INT8 export"
        )
    if report.qoperator_ops:
        raise EdgepackError(
            f"this ONNX graph is quantized in ONNX Runtime's QOperator format ({', '.join(report.qoperator_ops)}); "
            "TensorRT imports Q/DQ graphs only: quantize with the QDQ format (edgepack quantize static INT8)"
        )
    if report.contrib_ops:
        raise EdgepackError(
            f"this ONNX graph uses ONNX Runtime contrib ops ({', '.join(report.contrib_ops)}) from "
            "`export optimize`; TensorRT's parser does not know them: build from the unfused export"
        )
    if report.has_qdq:
        if cfg.precision != "int8":
            raise EdgepackError("this graph has Q/DQ (static INT8) nodes: build it with --precision int8")
        return "qdq"
    if cfg.precision != "int8":
        return "none"
    if cfg.calibration_cache:
        if not Path(cfg.calibration_cache).is_file():
            raise EdgepackError(f"calibration cache not found: {cfg.calibration_cache}")
        return "cache"
    if not have_texts:
        raise EdgepackError(
            "INT8 from a float graph needs calibration samples (--calib-data FILE with one text per line) "
            "or a calibration cache (--calibration-cache), or a Q/DQ model from `edgepack quantize`"
        )
    return "calibrate"


def build_engine(
    source: str | os.PathLike | Artifact,
    out: str | os.PathLike,
    cfg: TrtBuildConfig = TrtBuildConfig(),
    calibration_texts: Sequence[str] | None = None,
    device: int = 0,
) -> Artifact:
    """Build a ``tensorrt`` artifact at ``out`` from an ``onnx`` artifact (needs TensorRT and a GPU)."""
    art = source if isinstance(source, Artifact) else Artifact.open(source)
    art.require(format="onnx")
    check_against_model(cfg.shapes, art.extra.get("max_length"))
    ranges = bucketed_ranges(cfg.shapes, cfg.seq_buckets)
    profiles = [input_profiles(art.inputs, r) for r in ranges]
    report = inspect_onnx_for_trt(art.file("model"))
    int8 = plan_int8(report, cfg, bool(calibration_texts))
    if cfg.sparse_weights and report.sparse_2to4_weights == 0:
        raise EdgepackError(
            "--sparse-weights was asked for but no weight matrix in this graph has a 2:4 pattern; prune "
            "with the 2:4 pattern first (edgepack prune --pattern 2:4) or drop the flag"
        )
    calib = []
    if int8 == "calibrate":
        calib = calibration_batches(
            calibration_texts or [],
            str(art.file("tokenizer")),
            [i["name"] for i in art.inputs],
            cfg.calib_batch_size,
            cfg.calib_seq or cfg.shapes.opt_seq,
            int(art.extra.get("pad_token_id", 0)),
            cfg.calib_max_batches,
        )
    trt = import_tensorrt("building a TensorRT engine")
    env = detect_runtime_env(trt, device)
    with ArtifactWriter(Path(out)) as w:
        t0 = time.perf_counter()
        timing_in = (
            Path(cfg.timing_cache).read_bytes()
            if cfg.timing_cache and Path(cfg.timing_cache).is_file()
            else b""
        )
        calib_out = w.dir / "calibration.cache"
        if int8 == "cache":
            shutil.copyfile(cfg.calibration_cache, calib_out)
        from edgepack.export.trt_build import build_serialized

        plan, timing, io_dtypes = build_serialized(
            trt,
            art.file("model"),
            profiles,
            cfg,
            int8,
            calib,
            calib_out,
            timing_in,
        )
        (w.dir / ENGINE_FILE).write_bytes(plan)
        (w.dir / "timing.cache").write_bytes(timing)
        if cfg.timing_cache:
            _atomic_bytes(Path(cfg.timing_cache), timing)
        shutil.copyfile(art.file("tokenizer"), w.dir / "tokenizer.json")
        files = {"engine": ENGINE_FILE, "tokenizer": "tokenizer.json", "timing_cache": "timing.cache"}
        if calib_out.is_file():
            files["calibration_cache"] = "calibration.cache"
        return w.commit(
            stage="export",
            format="tensorrt",
            task=art.task,
            labels=art.labels,
            inputs=with_dtypes(art.inputs, io_dtypes),
            outputs=with_dtypes(art.outputs, io_dtypes),
            files=files,
            parent=art,
            config={**config_to_dict(cfg), "int8_mode": int8, "device": device},
            metrics={
                "build_seconds": round(time.perf_counter() - t0, 2),
                "size_bytes": len(plan),
                **{k: v for k, v in art.metrics.items() if k in ("accuracy", "macro_f1")},
            },
            extra={
                **art.extra,
                **env.to_extra(),
                "precision": cfg.precision,
                "int8_mode": int8,
                "sparse_weights": cfg.sparse_weights,
                "profiles": [config_to_dict(r) for r in ranges],
                "onnx_sha256": sha256_file(art.file("model")),
                "calibration_batches": len(calib),
            },
        )


@dataclass
class LoadedEngine:
    """A deserialized engine; ``runtime`` is kept because it must outlive ``engine``."""

    trt: Any
    runtime: Any
    engine: Any
    warnings: list[str]


def load_engine(art: Artifact, device: int = 0) -> LoadedEngine:
    """Deserialize a ``tensorrt`` artifact's engine after checking TensorRT version and GPU architecture."""
    art.require(format="tensorrt")
    trt = import_tensorrt("running a TensorRT engine")
    warnings = check_engine_compatibility(art.extra, detect_runtime_env(trt, device))
    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    engine = runtime.deserialize_cuda_engine(art.file("engine").read_bytes())
    if engine is None:
        raise ArtifactError(f"TensorRT could not deserialize {art.file('engine')} (see TensorRT's log above)")
    return LoadedEngine(trt, runtime, engine, warnings)


def engine_profiles(art: Artifact) -> list[ShapeRange]:
    """The optimization profiles recorded in a ``tensorrt`` artifact, in engine order."""
    try:
        return [ShapeRange(**p) for p in art.extra["profiles"]]
    except (KeyError, TypeError) as e:
        raise ArtifactError(f"{art.path}: manifest has no valid 'profiles' entry ({e})") from None


def with_dtypes(specs: list[dict], dtypes: dict[str, str]) -> list[dict]:
    """Manifest IO specs with the engine's dtypes where it changed them (e.g. int64 -> int32)."""
    return [{**s, "dtype": dtypes.get(s["name"], s["dtype"])} for s in specs]


def _atomic_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


__all__ = [
    "TrtBuildConfig",
    "RuntimeEnv",
    "LoadedEngine",
    "build_engine",
    "load_engine",
    "engine_profiles",
    "plan_int8",
    "check_engine_compatibility",
    "detect_runtime_env",
    "parse_nvidia_smi",
    "import_tensorrt",
]
