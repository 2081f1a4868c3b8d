"""ONNX static INT8 in QDQ format with calibration on real texts (MinMax, Entropy or Percentile ranges).

QDQ (QuantizeLinear/DequantizeLinear pairs around float ops) is the portable form: ONNX Runtime fuses
the pairs into integer kernels on CPU, and TensorRT reads the same scales for its INT8 engines.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

from edgepack.quantize.calibration import calibration_batches, make_reader
from edgepack.quantize.config import StaticInt8Config
from edgepack.quantize.graph import (
    excluded_nodes,
    int8_runtime,
    open_onnx_parent,
    quiet_quantization_logs,
    write_onnx_candidate,
)

from edgepack.artifact import Artifact


def quantize_static_model(src: str | os.PathLike, dst: str | os.PathLike, batches: list, cfg: StaticInt8Config) -> dict:
    """Calibrate on ``batches`` (list of feeds) and write the QDQ model ``dst``; returns calibration stats."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    cfg = cfg.resolved()
    quiet_quantization_logs()
    with tempfile.TemporaryDirectory() as tmp:
        # symbolic shape inference types the fused com.microsoft ops, so their outputs get calibrated too
        pre = Path(tmp) / "pre.onnx"
        stats = {}
        if cfg.smooth_alpha is not None:
            from edgepack.quantize.smooth import smooth_model

            smoothed = Path(tmp) / "smoothed.onnx"
            stats = smooth_model(src, smoothed, batches, cfg.smooth_alpha)
            src = smoothed
        quant_pre_process(str(src), str(pre), skip_optimization=True, auto_merge=True)
        return {**_quantize(pre, dst, batches, cfg), **stats}


def _quantize(src: Path, dst: str | os.PathLike, batches: list, cfg: StaticInt8Config) -> dict:
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    qtype = {"qint8": QuantType.QInt8, "quint8": QuantType.QUInt8}
    calib = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
             "percentile": CalibrationMethod.Percentile}[cfg.method]
    model = onnx.load(str(src))
    skip = excluded_nodes(model, cfg.exclude)
    ops = [o for o in cfg.op_types if o not in cfg.exclude.op_types]
    extra = {"DefaultTensorType": onnx.TensorProto.FLOAT, "MatMulConstBOnly": cfg.matmul_const_weight_only,
             "CalibPercentile": cfg.percentile, "ActivationSymmetric": cfg.symmetric_activations,
             "WeightSymmetric": True}
    # ORT writes its augmented calibration model into its own temporary directory
    quantize_static(
        str(src), str(dst), make_reader(batches), quant_format=QuantFormat.QDQ, op_types_to_quantize=ops,
        per_channel=cfg.per_channel, reduce_range=cfg.reduce_range, activation_type=qtype[cfg.activation_type],
        weight_type=qtype[cfg.weight_type], nodes_to_exclude=skip, calibrate_method=calib, extra_options=extra,
    )
    return {"calibration_batches": len(batches), "calibration_samples": sum(len(b["input_ids"]) for b in batches),
            "excluded_nodes": len(skip)}


def quantize_static_onnx(
    source: str | os.PathLike | Artifact, out: str | os.PathLike, calibration_texts: Sequence[str],
    cfg: StaticInt8Config = StaticInt8Config(), method: str | None = None,
) -> Artifact:
    """Static-INT8 (QDQ) quantize an fp32 ``onnx`` artifact, calibrated on ``calibration_texts``."""
    cfg = cfg.resolved()
    parent = open_onnx_parent(source)
    batches = calibration_batches(parent, calibration_texts, cfg.calibration, same_shape=cfg.method != "minmax")
    return write_onnx_candidate(parent, out, lambda s, d: quantize_static_model(s, d, batches, cfg),
                                precision="int8-static", method=method or f"static-int8-{cfg.method}", cfg=cfg,
                                runtime=int8_runtime(cfg))
