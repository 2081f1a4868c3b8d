"""ONNX dynamic INT8 with ``onnxruntime.quantization.quantize_dynamic``, on plain or fused graphs.

Weights become int8 (per output channel by default), activations are quantized per batch at run time,
so no calibration data is needed. Fused graphs (com.microsoft Attention / EmbedLayerNormalization)
work because ``DefaultTensorType`` tells the quantizer to assume float where shape inference cannot
type the contrib ops (optimum's ORTQuantizer fails on such graphs).
"""

from __future__ import annotations

import os
from pathlib import Path

from edgepack.quantize.config import DynamicInt8Config
from edgepack.quantize.graph import (
    excluded_nodes,
    int8_runtime,
    open_onnx_parent,
    quiet_quantization_logs,
    write_onnx_candidate,
)

from edgepack.artifact import Artifact


def quantize_dynamic_model(src: str | os.PathLike, dst: str | os.PathLike, cfg: DynamicInt8Config,
                           keep_float: tuple[str, ...] = ()) -> dict:
    """Quantize the ONNX file ``src`` into ``dst``; returns {"excluded_nodes": n}.

    ``keep_float``: exact node names left in float besides ``cfg.exclude`` (mixed precision).
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    cfg = cfg.resolved()
    quiet_quantization_logs()
    model = onnx.load(str(src))
    skip = list(dict.fromkeys(excluded_nodes(model, cfg.exclude) + list(keep_float)))
    ops = [o for o in cfg.op_types if o not in cfg.exclude.op_types]
    weight_type = QuantType.QInt8 if cfg.weight_type == "qint8" else QuantType.QUInt8
    common = dict(reduce_range=cfg.reduce_range, weight_type=weight_type,
                  extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    attention = [n.name for n in model.graph.node if n.op_type == "Attention" and n.name not in skip]
    if cfg.per_channel and cfg.attention_per_tensor and attention and "Attention" in ops:
        # pass 1: fused Attention nodes only, per-tensor (ORT's fast QAttention path)
        tmp = Path(dst).with_suffix(".attn.onnx")
        try:
            quantize_dynamic(model, tmp, op_types_to_quantize=["Attention"], nodes_to_quantize=attention,
                             per_channel=False, **common)
            model = onnx.load(str(tmp))
        finally:
            tmp.unlink(missing_ok=True)
        ops = [o for o in ops if o != "Attention"]
    if ops:
        quantize_dynamic(model, dst, op_types_to_quantize=ops, per_channel=cfg.per_channel,
                         nodes_to_exclude=skip, **common)
    else:
        onnx.save(model, str(dst))
    return {"excluded_nodes": len(skip)}


def quantize_dynamic_onnx(
    source: str | os.PathLike | Artifact, out: str | os.PathLike, cfg: DynamicInt8Config = DynamicInt8Config(),
    method: str = "dynamic-int8", keep_float: tuple[str, ...] = (),
) -> Artifact:
    """Dynamic-INT8 quantize an fp32 ``onnx`` artifact into ``out`` (precision ``int8-dynamic``).

    The artifact records the target CPU and whether weights are 7-bit (``runtime.target_cpu``,
    ``runtime.reduce_range``), so the runtime can warn when it runs on a CPU that saturates.
    """
    parent = open_onnx_parent(source)
    cfg = cfg.resolved()
    return write_onnx_candidate(parent, out, lambda s, d: quantize_dynamic_model(s, d, cfg, keep_float),
                                precision="int8-dynamic", method=method, cfg=cfg, runtime=int8_runtime(cfg))
