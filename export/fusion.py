"""ONNX Runtime transformer graph fusion (Attention, EmbedLayerNorm, SkipLayerNorm, BiasGelu) as a validated step.

The fused graph is compared with its parent ONNX graph on the same probe texts
(``edgepack.runtime.parity.compare_onnx``); a max abs difference above ``atol`` fails the step.
What fuses depends on the family (``edgepack.families``: every supported family goes through ORT's BERT
optimizer, the only encoder optimizer ORT has). BERT, RoBERTa, DistilBERT and ELECTRA graphs fuse fully;
MPNet keeps its attention unfused (its relative-position bias); DeBERTa-v2 (disentangled attention) and
ModernBERT (rotary, fused Wqkv, sliding-window masks) fuse only Gelu/BiasGelu and LayerNormalization
(plus SkipLayerNormalization when asked): ORT has no fusion pattern for their attention. The counts are
recorded as ``fused_ops``; a graph in which nothing fuses fails the step with one line.
Note: dynamic INT8 quantization of a fused graph needs ``DefaultTensorType`` (see edgepack.quantize);
optimum's ORTQuantizer cannot type the fused ops.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from edgepack.runtime.parity import compare_onnx

from edgepack.artifact import Artifact, ArtifactWriter
from edgepack.config import check_choice, check_fields, check_positive, config_to_dict
from edgepack.errors import EdgepackError
from edgepack.families import FAMILIES

OPT_LEVELS = (0, 1, 2, 99)  # onnxruntime.transformers optimizer levels
# model_type -> onnxruntime.transformers optimizer model_type
FUSABLE_MODEL_TYPES = {mt: fam.ort_fusion for mt, fam in FAMILIES.items() if fam.ort_fusion}


@dataclass(frozen=True)
class FusionConfig:
    opt_level: int = 1  # 1: ORT-independent fusions only, so the graph runs on any provider
    use_gpu: bool = False  # fuse for the CUDA provider (e.g. packed attention layouts)
    atol: float = 1e-4  # max abs difference vs the unfused parent
    # Fuse residual Add + LayerNormalization into com.microsoft.SkipLayerNormalization. None: only for GPU
    # (use_gpu). On the CPU provider ORT 1.32's SkipLayerNormalization kernel is slower than Add +
    # LayerNormalization (3-layer INT8 student: batch 8 5.5 ms unfused vs 8.0 ms fused), and the runtime
    # keeps ORT from fusing it again online (edgepack.runtime.ort.CPU_DISABLED_OPTIMIZERS).
    skip_layer_norm: bool | None = None

    def __post_init__(self) -> None:
        check_fields(self)
        check_choice(self, "opt_level", OPT_LEVELS)
        check_positive(self, "atol")


def optimize_onnx(source: str | os.PathLike | Artifact, out: str | os.PathLike,
                  cfg: FusionConfig = FusionConfig(), overwrite: bool = False) -> Artifact:
    """Fuse the transformer subgraphs of an fp32 ``onnx`` artifact; returns the fused artifact."""
    parent = source if isinstance(source, Artifact) else Artifact.open(source)
    parent.require(format="onnx")
    rt = parent.runtime
    if rt.precision != "fp32":
        raise EdgepackError(f"fuse before quantizing: {parent.path} is already {rt.precision}")
    model_type = FUSABLE_MODEL_TYPES.get(rt.model_type or "")
    if model_type is None or rt.num_heads is None or rt.hidden_size is None:
        raise EdgepackError(f"no ONNX Runtime fusion for model type '{rt.model_type}' "
                            "(the artifact must record model_type, num_heads and hidden_size)")
    import logging

    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    logging.getLogger("onnxruntime.transformers").setLevel(logging.ERROR)
    options = FusionOptions(model_type)
    skip_ln = cfg.use_gpu if cfg.skip_layer_norm is None else cfg.skip_layer_norm
    options.enable_skip_layer_norm = options.enable_bias_skip_layer_norm = bool(skip_ln)
    opt = optimize_model(
        str(parent.file("model")), model_type=model_type, num_heads=rt.num_heads,
        hidden_size=rt.hidden_size, opt_level=cfg.opt_level, use_gpu=cfg.use_gpu,
        optimization_options=options,
    )
    stats = {k: int(v) for k, v in opt.get_fused_operator_statistics().items() if v}
    if not stats:
        raise EdgepackError(f"ONNX Runtime's optimizer fused nothing in this {rt.model_type} graph; "
                            "use the unfused artifact")
    with ArtifactWriter(Path(out), overwrite=overwrite, sources=(parent,)) as w:
        opt.save_model_to_file(str(w.dir / "model.onnx"))
        (w.dir / "tokenizer.json").write_bytes(parent.file("tokenizer").read_bytes())
        diff = compare_onnx(parent, w.dir / "model.onnx").max_abs_diff
        if diff > cfg.atol:
            raise EdgepackError(f"fused graph differs from its parent: max abs diff {diff:.3g} > atol {cfg.atol:g}")
        return w.commit(
            stage="optimize", format="onnx", task=parent.task, labels=parent.labels, inputs=parent.inputs,
            outputs=parent.outputs, files={"model": "model.onnx", "tokenizer": "tokenizer.json"}, parent=parent,
            config={**config_to_dict(cfg), "skip_layer_norm": bool(skip_ln)},
            metrics={"max_abs_diff": diff, "size_bytes": (w.dir / "model.onnx").stat().st_size,
                     "fused_ops": stats},
            runtime=rt.replace(fused=True), extra=parent.extra,
        )
