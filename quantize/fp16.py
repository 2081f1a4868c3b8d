"""FP16 conversion for GPU execution, with numerically sensitive ops kept in FP32.

The conversion itself is the core's ``edgepack.fp16.save_fp16`` (ONNX Runtime's own converter, bundled
with onnxruntime): it inserts Cast nodes at the boundaries of blocked ops and, with ``keep_io_types``,
keeps the graph's float inputs/outputs fp32; this module adds the node exclusions of ``Fp16Config``.
On a CPU, ONNX Runtime runs most fp16 ops through casts, so an fp16 model is usually slower there:
the accuracy budget measures this and never picks it over a faster parent.
"""

from __future__ import annotations

import os

from edgepack.quantize.config import Fp16Config
from edgepack.quantize.graph import excluded_nodes, open_onnx_parent, write_onnx_candidate

from edgepack.artifact import Artifact
from edgepack.fp16 import save_fp16


def convert_fp16_model(src: str | os.PathLike, dst: str | os.PathLike, cfg: Fp16Config) -> dict:
    """Convert the ONNX file ``src`` to fp16 into ``dst``; returns {"excluded_nodes": n, "blocked_ops": [...]}."""
    import onnx

    model = onnx.load(str(src))
    skip = excluded_nodes(model, cfg.exclude)
    blocked = sorted(set(cfg.op_block_list) | set(cfg.exclude.op_types))
    save_fp16(model, dst, blocked, skip, cfg.keep_io_types)
    return {"excluded_nodes": len(skip), "blocked_ops": blocked}


def convert_fp16_onnx(
    source: str | os.PathLike | Artifact, out: str | os.PathLike, cfg: Fp16Config = Fp16Config(),
    method: str = "fp16",
) -> Artifact:
    """Convert an fp32 ``onnx`` artifact to an fp16 one (precision ``fp16``) at ``out``."""
    parent = open_onnx_parent(source)
    return write_onnx_candidate(parent, out, lambda s, d: convert_fp16_model(s, d, cfg),
                                precision="fp16", method=method, cfg=cfg)
