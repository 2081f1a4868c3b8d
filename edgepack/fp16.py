"""FP16 copies of ONNX graphs with numerically sensitive ops kept FP32.

One conversion for the passes that need it: quantize's ``fp16`` method (``edgepack.quantize.fp16``, which
adds node exclusions) and strongly typed TensorRT fp16 builds (``edgepack.export.trt_engine``). Uses ONNX
Runtime's own converter (``OnnxModel.convert_float_to_float16``, bundled with onnxruntime); it inserts
Cast nodes at the boundaries of blocked ops and, with ``keep_io_types``, keeps float inputs/outputs fp32.
Importing this module is lean (onnx and onnxruntime are imported by ``save_fp16``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

FP16_BLOCKED_OPS = ("Pow", "ReduceMean", "Sqrt", "Softmax", "LayerNormalization", "Erf")


def save_fp16(model: Any, dst: str | os.PathLike, op_block_list: Sequence[str] = FP16_BLOCKED_OPS,
              node_block_list: Sequence[str] = (), keep_io_types: bool = True) -> None:
    """Convert ``model`` (an onnx.ModelProto, changed in place) to fp16 and save it at ``dst``;
    ops in ``op_block_list`` and nodes named in ``node_block_list`` stay fp32."""
    from onnxruntime.transformers.onnx_model import OnnxModel

    om = OnnxModel(model)
    om.convert_float_to_float16(keep_io_types=keep_io_types, op_block_list=list(op_block_list),
                                node_block_list=list(node_block_list))
    om.save_model_to_file(str(dst))
