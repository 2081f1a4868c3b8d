"""What TensorRT will make of an ONNX graph, read with the ``onnx`` package only (runs on CPU).

TensorRT's ONNX parser imports explicit Q/DQ quantization (QuantizeLinear/DequantizeLinear) but not
ONNX Runtime's dynamic quantization (MatMulInteger, DynamicQuantizeLinear) nor its contrib ops
(``com.microsoft`` Attention, EmbedLayerNormalization...). ``SPARSE_WEIGHTS`` only pays off when weight
matrices hold a 2:4 pattern along the reduction axis; :func:`count_2to4_weights` says how many do.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

DYNAMIC_QUANT_OPS = ("DynamicQuantizeLinear", "MatMulInteger", "ConvInteger", "DynamicQuantizeMatMul")
QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")
QOPERATOR_OPS = (
    "QLinearMatMul",
    "QLinearConv",
    "QLinearAdd",
    "QLinearMul",
    "QGemm",
)  # ORT's QOperator format


@dataclass(frozen=True)
class OnnxTrtReport:
    op_types: tuple[str, ...]
    has_qdq: bool
    dynamic_quant_ops: tuple[str, ...]
    qoperator_ops: tuple[str, ...]
    contrib_ops: tuple[str, ...]  # ops outside the default ONNX domain
    weight_matrices: int  # 2-D float initializers feeding MatMul/Gemm
    sparse_2to4_weights: int  # of those, how many hold a 2:4 pattern
    asymmetric_qdq: tuple[str, ...] = ()  # tensors quantized to uint8 or with non-zero zero points
    fp16_weights: bool = False  # most float initializers are fp16 (an fp16 graph, e.g. quantize fp16)


def asymmetric_qdq_tensors(model) -> tuple[str, ...]:
    """Tensors whose Q/DQ pair TensorRT's ONNX parser refuses: uint8 (including the default zero point
    when none is given) or int8 with a non-zero zero point. TensorRT reads symmetric int8 only."""
    from onnx import TensorProto, numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    consts = {n.output[0]: n for n in model.graph.node if n.op_type == "Constant" and n.output}
    bad = []
    for node in model.graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        zp_name = node.input[2] if len(node.input) > 2 else ""
        if not zp_name:
            has_type = any(a.name == "output_dtype" for a in node.attribute)
            if node.op_type == "QuantizeLinear" and not has_type:
                bad.append(node.input[0])  # default zero point: uint8 0
            continue
        if zp_name in inits:
            t = inits[zp_name]
        elif zp_name in consts:
            t = next((a.t for a in consts[zp_name].attribute if a.name == "value"), None)
        else:
            continue
        if t is None or t.data_type not in (TensorProto.UINT8, TensorProto.INT8):
            continue
        if t.data_type == TensorProto.UINT8 or numpy_helper.to_array(t).any():
            bad.append(node.input[0])
    return tuple(dict.fromkeys(bad))


def is_2to4_sparse(w: np.ndarray, axis: int) -> bool:
    """True when every group of 4 consecutive elements along ``axis`` has at most 2 non-zeros.

    ``axis`` is the reduction (input-channel) axis: 0 for a MatMul weight (K, N), 1 for a Gemm weight
    with transB=1 (N, K). The axis length must be a multiple of 4.
    """
    if w.ndim != 2 or w.shape[axis] % 4 or w.size == 0:
        return False
    m = np.moveaxis(w, axis, -1) != 0  # (N, K)
    groups = m.reshape(m.shape[0], -1, 4)  # (N, K/4, 4)
    return bool((groups.sum(axis=-1) <= 2).all())


def count_2to4_weights(model) -> tuple[int, int]:
    """(float weight matrices feeding MatMul/Gemm, how many of them are 2:4 sparse)."""
    from onnx import numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    # Weights may reach MatMul through a DequantizeLinear or Transpose; follow one hop back.
    producers = {o: n for n in model.graph.node for o in n.output}
    seen, total, sparse = set(), 0, 0
    for node in model.graph.node:
        if node.op_type not in ("MatMul", "Gemm") or len(node.input) < 2:
            continue
        name = node.input[1]
        axis = 0
        if node.op_type == "Gemm":
            axis = 1 if any(a.name == "transB" and a.i == 1 for a in node.attribute) else 0
        src = producers.get(name)
        if name not in inits and src is not None and src.op_type in ("DequantizeLinear", "Transpose"):
            if src.op_type == "Transpose":
                axis = 1 - axis
            name = src.input[0]
        if name not in inits or name in seen:
            continue
        seen.add(name)
        w = numpy_helper.to_array(inits[name])
        if w.ndim != 2:
            continue
        total += 1
        sparse += is_2to4_sparse(w, axis)
    return total, sparse


def inspect_onnx_for_trt(path: str | Path) -> OnnxTrtReport:
    """Summarize the ONNX graph at ``path`` for a TensorRT build."""
    import onnx

    model = onnx.load(str(path))
    ops = tuple(sorted({n.op_type for n in model.graph.node}))
    contrib = tuple(
        sorted({f"{n.domain}:{n.op_type}" for n in model.graph.node if n.domain not in ("", "ai.onnx")})
    )
    total, sparse = count_2to4_weights(model)
    from onnx import TensorProto

    n16 = sum(i.data_type == TensorProto.FLOAT16 for i in model.graph.initializer)
    n32 = sum(i.data_type == TensorProto.FLOAT for i in model.graph.initializer)
    return OnnxTrtReport(
        op_types=ops,
        has_qdq=any(o in ops for o in QDQ_OPS),
        dynamic_quant_ops=tuple(o for o in DYNAMIC_QUANT_OPS if o in ops),
        qoperator_ops=tuple(o for o in QOPERATOR_OPS if o in ops),
        contrib_ops=contrib,
        weight_matrices=total,
        sparse_2to4_weights=sparse,
        asymmetric_qdq=asymmetric_qdq_tensors(model),
        fp16_weights=n16 > 0 and n16 >= n32,
    )
