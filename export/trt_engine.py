"""Build a TensorRT engine from an ``onnx`` artifact (the build side; opening one is the runtime's).

``build_engine(onnx_artifact, out, TrtBuildConfig(...))`` parses the ONNX graph with TensorRT's ONNX
parser, sets FP16 / INT8 (TensorRT 10) / sparse-weights flags, one optimization profile per declared shape range,
a workspace limit and a timing cache, and writes a ``tensorrt`` artifact (``model.plan`` + tokenizer +
caches). INT8 comes from the graph's Q/DQ nodes (explicit quantization, e.g. ``quantize/onnx_static``)
or, for a float graph, from an entropy calibrator fed by real tokenized samples; its calibration cache
is stored in the artifact and can be reused (``calibration_cache=``) to skip calibration.
TensorRT 11 has no precision flags and no calibration (strongly typed networks only): fp16 is built from
an fp16 copy of the graph (:func:`fp16_graph`) and INT8 from Q/DQ graphs only (``static-int8-trt``).

An engine only runs on the TensorRT version and GPU architecture it was built for. The artifact's
runtime contract records ``tensorrt_version``, ``gpu_name`` and ``compute_capability`` (detected with
:func:`edgepack.runtime.trt_engine.detect_runtime_env`, the same function that checks them when
:func:`edgepack.runtime.trt_engine.load_engine` opens the engine). Everything before the first
``import tensorrt`` (graph checks, profiles) is pure Python and tested on CPU.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from edgepack.export.trt_graph import OnnxTrtReport, inspect_onnx_for_trt
from edgepack.export.trt_profiles import bucketed_ranges, calibration_batches, check_against_model
from edgepack.runtime.trt_engine import detect_runtime_env, import_tensorrt
from edgepack.runtime.trt_profiles import input_profiles

from edgepack.artifact import Artifact, ArtifactWriter, sha256_file
from edgepack.config import ConfigError, check_between, check_choice, check_fields, check_min, config_to_dict
from edgepack.contract import ShapeRange
from edgepack.errors import EdgepackError

PRECISIONS = ("fp32", "fp16", "int8")
CONTRACT_PRECISION = {"fp32": "fp32", "fp16": "fp16", "int8": "int8-static"}  # TensorRT INT8 scales are static
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
        if report.asymmetric_qdq:
            raise EdgepackError(
                f"this Q/DQ graph quantizes {len(report.asymmetric_qdq)} tensors asymmetrically (uint8 or non-zero "
                "zero points), which TensorRT refuses: re-quantize with `edgepack quantize ONNX OUT --methods static-int8-trt`"
            )
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
    overwrite: bool = False,
) -> Artifact:
    """Build a ``tensorrt`` artifact at ``out`` from an ``onnx`` artifact (needs TensorRT and a GPU)."""
    art = source if isinstance(source, Artifact) else Artifact.open(source)
    art.require(format="onnx")
    check_against_model(cfg.shapes, art.runtime.max_length)
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
            art.runtime.pad_token_id or 0,
            cfg.calib_max_batches,
        )
    trt = import_tensorrt("building a TensorRT engine")
    from edgepack.export.trt_build import build_serialized, network_typing

    typing = network_typing(trt)
    if typing == "strong" and int8 in ("calibrate", "cache"):
        raise EdgepackError(
            f"TensorRT {trt.__version__} has no INT8 calibration (removed with weak typing): quantize with "
            "`edgepack quantize ONNX OUT --methods static-int8-trt` and build from that Q/DQ model"
        )
    use_device(device, torch_too=int8 == "calibrate")
    env = detect_runtime_env(trt, device)
    warnings: list[str] = []
    with ArtifactWriter(Path(out), overwrite=overwrite, sources=(source,)) as w:
        t0 = time.perf_counter()
        timing_in = (
            Path(cfg.timing_cache).read_bytes()
            if cfg.timing_cache and Path(cfg.timing_cache).is_file()
            else b""
        )
        calib_out = w.dir / "calibration.cache"
        if int8 == "cache":
            shutil.copyfile(cfg.calibration_cache, calib_out)
        onnx_path = art.file("model")
        if typing == "strong" and cfg.precision == "fp16" and not report.fp16_weights:
            onnx_path = fp16_graph(onnx_path, w.dir / ".fp16.onnx")  # strongly typed: precision from the graph
        plan, timing, io_dtypes = build_serialized(
            trt, onnx_path, profiles, cfg, int8, calib, calib_out, timing_in, warnings, device
        )
        if onnx_path != art.file("model"):
            onnx_path.unlink()
        for msg in warnings:
            print(f"edgepack: warning: {msg}")
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
            config={**config_to_dict(cfg), "int8_mode": int8, "device": device, "network_typing": typing},
            metrics={
                "build_seconds": round(time.perf_counter() - t0, 2),
                "size_bytes": len(plan),
                **{k: v for k, v in art.metrics.items() if k in ("accuracy", "macro_f1")},
            },
            runtime=art.runtime.replace(
                **env.contract_fields(),
                precision=CONTRACT_PRECISION[cfg.precision],
                int8_mode=int8,
                sparse_weights=cfg.sparse_weights,
                profiles=tuple(ranges),
                onnx_sha256=sha256_file(art.file("model")),
                calibration_batches=len(calib),
            ),
            extra=art.extra,
        )


def fp16_graph(src: Path, dst: Path) -> Path:
    """An fp16 copy of the fp32 ONNX graph ``src`` at ``dst`` (what a strongly typed fp16 build needs):
    the core fp16 conversion that ``edgepack quantize --methods fp16`` uses, sensitive ops kept fp32."""
    import onnx

    from edgepack.fp16 import save_fp16

    save_fp16(onnx.load(str(src)), dst)
    return dst


def use_device(device: int, torch_too: bool = False) -> None:
    """Make CUDA device ``device`` current for TensorRT (the driver's primary context on this thread)
    and, when torch feeds calibration batches, for torch too."""
    from edgepack.runtime.cuda import CudaDevice

    CudaDevice(device)  # current on this thread: the CUDA runtime inside TensorRT uses this context
    if torch_too:
        import torch

        torch.cuda.set_device(device)


def with_dtypes(specs: list[dict], dtypes: dict[str, str]) -> list[dict]:
    """Manifest IO specs with the engine's dtypes where it changed them (e.g. int64 -> int32)."""
    return [{**s, "dtype": dtypes.get(s["name"], s["dtype"])} for s in specs]


def _atomic_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


__all__ = ["TrtBuildConfig", "build_engine", "fp16_graph", "plan_int8", "use_device", "with_dtypes"]
