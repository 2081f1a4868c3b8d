"""Graph helpers shared by the ONNX quantizers: exclusions, op counts, writing the candidate artifact."""

from __future__ import annotations

import fnmatch
import os
import tempfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from edgepack.quantize.config import EXCLUDE_PRESETS, Exclusions
from edgepack.runtime.parity import compare_onnx

from edgepack.artifact import Artifact, ArtifactError, ArtifactWriter
from edgepack.config import config_to_dict
from edgepack.errors import EdgepackError

# Ops that compute on int8 data once ONNX Runtime has optimized the session graph.
INT8_OPS = frozenset({
    "MatMulInteger", "DynamicQuantizeMatMul", "MatMulIntegerToFloat", "QLinearMatMul", "QAttention",
    "QEmbedLayerNormalization", "QGemm", "QLinearConv", "ConvInteger", "QLinearAdd", "QLinearMul",
    "QLinearSoftmax", "QLinearGlobalAveragePool", "DynamicQuantizeLSTM", "GatherBlockQuantized", "MatMulNBits",
})
# Ops that carry weights; counted as "float" when their weight initializer is float32.
WEIGHT_OPS = frozenset({"MatMul", "Gemm", "FusedMatMul", "FusedGemm", "Attention", "Gather",
                        "EmbedLayerNormalization", "Conv"})


def excluded_nodes(model: Any, exclude: Exclusions) -> list[str]:
    """Names of the nodes of ``model`` (an onnx.ModelProto) matched by ``exclude``.

    A node matches a pattern when its name or one of the initializers it reads matches (fnmatch;
    a pattern without wildcards matches as a substring). Presets: "classifier", "embeddings".
    """
    patterns: list[str] = []
    for p in exclude.nodes:
        for q in EXCLUDE_PRESETS.get(p, (p,)):
            patterns.append(q if any(c in q for c in "*?[") else f"*{q}*")
    inits = {i.name for i in model.graph.initializer}
    names = []
    for node in model.graph.node:
        keys = [node.name] + [i for i in node.input if i in inits]
        if node.op_type in exclude.op_types or any(fnmatch.fnmatchcase(k, p) for k in keys for p in patterns):
            names.append(node.name)
    unnamed = [n for n in model.graph.node if not n.name]
    if unnamed and patterns:
        raise EdgepackError(f"{len(unnamed)} graph nodes have no name, so name exclusions cannot address them")
    return names


def op_counts(model_path: str | os.PathLike) -> Counter:
    """Op type -> count in an ONNX file."""
    import onnx

    m = onnx.load(str(model_path), load_external_data=False)
    return Counter(n.op_type for n in m.graph.node)


def runtime_op_summary(model_path: str | os.PathLike) -> dict[str, int]:
    """How many weight-bearing ops run quantized (int8) / fp16 / fp32 in ONNX Runtime's optimized CPU graph.

    The session's own optimized graph is read back, so QDQ pairs that ORT fuses into QLinear ops and
    DynamicQuantizeLinear+MatMulInteger folds are counted as they really execute.
    """
    import onnx
    from edgepack.runtime.ort import import_onnxruntime

    ort = import_onnxruntime()
    with tempfile.TemporaryDirectory() as tmp:
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        opts.optimized_model_filepath = str(Path(tmp) / "opt.onnx")
        ort.InferenceSession(str(model_path), sess_options=opts, providers=["CPUExecutionProvider"])
        m = onnx.load(str(Path(tmp) / "opt.onnx"))
    dtypes = {i.name: i.data_type for i in m.graph.initializer}
    # a weight behind DequantizeLinear is int8 data that becomes float just before a float op
    dq_out = {n.output[0]: dtypes.get(n.input[0]) for n in m.graph.node if n.op_type == "DequantizeLinear"}
    int8, fp16, fp32 = 0, 0, 0
    for node in m.graph.node:
        if node.op_type in INT8_OPS:
            int8 += 1
        elif node.op_type in WEIGHT_OPS:
            w = [dtypes.get(i) or dq_out.get(i) for i in node.input]
            w = [t for t in w if t is not None]
            if any(t in (onnx.TensorProto.INT8, onnx.TensorProto.UINT8) for t in w):
                int8 += 1
            elif any(t == onnx.TensorProto.FLOAT16 for t in w):
                fp16 += 1
            elif any(t == onnx.TensorProto.FLOAT for t in w):
                fp32 += 1
    return {"quantized_ops": int8, "fp16_ops": fp16, "fp32_weight_ops": fp32}


def open_onnx_parent(source: str | os.PathLike | Artifact, need_fp32: bool = True) -> Artifact:
    """Open and check an fp32 ``onnx`` artifact to quantize."""
    parent = source if isinstance(source, Artifact) else Artifact.open(source)
    if parent.format != "onnx":
        raise ArtifactError(
            f"{parent.path} is a '{parent.format}' artifact; quantization needs an 'onnx' artifact: "
            f"run `edgepack export onnx {parent.path} OUT` first"
        )
    precision = parent.runtime.precision
    if need_fp32 and precision != "fp32":
        raise EdgepackError(f"{parent.path} is already {precision}; quantize the fp32 ONNX artifact instead")
    return parent


def write_onnx_candidate(
    parent: Artifact, out: str | os.PathLike, build: Callable[[Path, Path], dict], *,
    precision: str, method: str, cfg: Any, runtime: dict | None = None,
) -> Artifact:
    """Run ``build(parent_model, out_model) -> extra metrics`` into a new artifact shaped like the parent.

    The artifact keeps the parent's inputs/outputs/labels/runtime contract (so ``Predictor`` opens it
    unchanged), sets ``runtime.precision`` and ``runtime.quantization`` (plus the given ``runtime`` fields),
    copies the tokenizer and records size, op counts and the SQNR and max abs diff vs the parent
    (``edgepack.runtime.parity.compare_onnx``).
    """
    with ArtifactWriter(Path(out)) as w:
        model = w.dir / "model.onnx"
        metrics = dict(build(parent.file("model"), model) or {})
        (w.dir / "tokenizer.json").write_bytes(parent.file("tokenizer").read_bytes())
        parity = compare_onnx(parent, model)
        size = model.stat().st_size
        metrics.update(size_bytes=size, size_ratio=parent.file("model").stat().st_size / size,
                       sqnr_db=parity.sqnr_db, max_abs_diff=parity.max_abs_diff, **runtime_op_summary(model))
        return w.commit(
            stage="quantize", format="onnx", task=parent.task, labels=parent.labels, inputs=parent.inputs,
            outputs=parent.outputs, files={"model": "model.onnx", "tokenizer": "tokenizer.json"},
            parent=parent, config={"method": method, **config_to_dict(cfg)}, metrics=metrics,
            runtime=parent.runtime.replace(precision=precision, quantization=method, **(runtime or {})),
            extra=parent.extra,
        )


def probe_activations(model: Any, names: list[str], batches: list[dict[str, np.ndarray]]):
    """Yield ``({name: tensor}, attention mask)`` per batch: the intermediate tensors ``names`` of ``model``
    (an onnx.ModelProto, left unchanged) computed by ONNX Runtime on each batch of feeds."""
    import onnx
    from edgepack.runtime.ort import OrtRunner

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    have = {o.name for o in probe.graph.output}
    for n in dict.fromkeys(names):
        if n not in have:
            probe.graph.output.append(onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "probe.onnx"
        onnx.save(probe, str(path))
        runner = OrtRunner(path, disabled_optimizers=())
        for feeds in batches:
            yield runner.infer(feeds), feeds["attention_mask"].astype(bool)


def real_rows(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The (rows, channels) of ``x`` that belong to real tokens (all rows when ``x`` is not per token)."""
    if x.ndim == 3 and x.shape[:2] == mask.shape:
        return x[mask]
    return x.reshape(-1, x.shape[-1])


def int8_runtime(cfg: Any) -> dict:
    """The runtime contract fields that say which CPUs an INT8 model is right on (read by the runtime)."""
    return {"target_cpu": cfg.target_cpu, "reduce_range": bool(cfg.reduce_range), "weight_type": cfg.weight_type}


def quiet_quantization_logs() -> None:
    """ORT's quantizer logs a pre-processing hint through the root logger on every call."""
    import logging

    class _Drop(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            return "pre-processing before quantization" not in record.getMessage()

    root = logging.getLogger()
    if not any(isinstance(f, _Drop) for f in root.filters):
        root.addFilter(_Drop())
