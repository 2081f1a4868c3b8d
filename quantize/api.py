"""The quantize stage: build candidates, measure them against the parent, keep the fastest within budget.

>>> from edgepack.quantize import QuantizeConfig, quantize
>>> art = quantize("out/onnx", DataSpec(path="reviews.csv"), QuantizeConfig(max_accuracy_drop=1.0), "out/int8")
>>> print(art.metrics["table"])
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from edgepack.artifact import Artifact, ArtifactWriter
from edgepack.errors import EdgepackError
from edgepack.quantize.budget import Measurement, Row, format_table, score, select, time_predictors
from edgepack.quantize.config import DynamicInt8Config, Fp16Config, QuantizeConfig, StaticInt8Config, to_dict
from edgepack.quantize.graph import open_onnx_parent


class NoCandidateError(EdgepackError):
    """No candidate is both within the accuracy budget and faster than its parent."""


@dataclass(frozen=True)
class TextData:
    """Texts to evaluate on (``labels``: indices into ``label_names``, or None) and to calibrate with."""

    eval_texts: list[str]
    eval_labels: list[int] | None
    calibration_texts: list[str]
    label_names: list[str] | None = None


def as_text_data(data: Any, max_eval: int | None = None) -> TextData:
    """Accept a DataSpec, a Dataset, ``(texts, labels)``, a list of texts, or a TextData."""
    if isinstance(data, TextData):
        td = data
    elif type(data).__name__ == "DataSpec":
        from edgepack.distill.data import load_data

        return as_text_data(load_data(data), max_eval)
    elif hasattr(data, "val_texts"):  # edgepack.distill.data.Dataset
        val = list(data.val_texts) or list(data.train_texts)
        labels = data.val_labels if data.val_texts else data.train_labels
        td = TextData(val, list(labels) if labels is not None else None, list(data.train_texts) or val,
                      list(data.label_names) or None)
    elif isinstance(data, tuple) and len(data) == 2:
        texts, labels = list(data[0]), (list(data[1]) if data[1] is not None else None)
        td = TextData(texts, labels, texts)
    elif isinstance(data, (list, tuple)) and data and all(isinstance(t, str) for t in data):
        td = TextData(list(data), None, list(data))
    else:
        raise EdgepackError("data must be a DataSpec, a Dataset, (texts, labels) or a list of texts; "
                            f"got {type(data).__name__}")
    if not td.eval_texts:
        raise EdgepackError("no evaluation texts given")
    if td.eval_labels is not None and len(td.eval_labels) != len(td.eval_texts):
        raise EdgepackError(f"{len(td.eval_texts)} texts but {len(td.eval_labels)} labels")
    if max_eval is not None and len(td.eval_texts) > max_eval:
        labels = td.eval_labels[:max_eval] if td.eval_labels is not None else None
        td = TextData(td.eval_texts[:max_eval], labels, td.calibration_texts, td.label_names)
    return td


def _labels_for(parent: Artifact, td: TextData) -> list[int] | None:
    """Eval labels re-indexed into the artifact's label order (by name)."""
    from edgepack.distill.data import align_labels

    if td.eval_labels is None or parent.task != "text-classification":
        return None
    return align_labels(list(td.eval_labels), list(td.label_names or []), list(parent.labels or []),
                        "quantization eval data")


def build_candidate(parent: Artifact, method: str, mcfg: Any, out: Path, calibration_texts: Sequence[str]) -> Artifact:
    """Build one method's candidate artifact at ``out``."""
    if isinstance(mcfg, DynamicInt8Config):
        from edgepack.quantize.onnx_dynamic import quantize_dynamic_onnx

        return quantize_dynamic_onnx(parent, out, mcfg, method=method)
    if isinstance(mcfg, StaticInt8Config):
        from edgepack.quantize.onnx_static import quantize_static_onnx

        return quantize_static_onnx(parent, out, calibration_texts, mcfg, method=method)
    if isinstance(mcfg, Fp16Config):
        from edgepack.quantize.fp16 import convert_fp16_onnx

        return convert_fp16_onnx(parent, out, mcfg, method=method)
    raise EdgepackError(f"no builder for {type(mcfg).__name__}")


def measure(parent: Artifact, candidates: dict[str, Artifact | str], td: TextData, cfg: QuantizeConfig
            ) -> tuple[Measurement, list[Measurement]]:
    """Accuracy, size and latency of the parent and each candidate (a failed build is a str: its error)."""
    from edgepack.runtime import Predictor

    def open_(a: Artifact):
        return Predictor.open(a.path, backend=cfg.backend, intra_op_threads=cfg.intra_op_threads, batch_size=32)

    labels = _labels_for(parent, td)
    preds = {"parent": open_(parent)}
    for name, c in candidates.items():
        if isinstance(c, Artifact):
            preds[name] = open_(c)
    ref = preds["parent"].infer(td.eval_texts)
    scores = {name: score(parent.task, p.infer(td.eval_texts), ref, labels) for name, p in preds.items()}
    lat = time_predictors(preds, td.eval_texts, cfg.latency_batch_size, cfg.latency_batches, cfg.latency_rounds)

    def m(name: str, a: Artifact) -> Measurement:
        sc = scores[name]
        return Measurement(name, a.extra.get("precision", "fp32"), sc["accuracy"], a.file("model").stat().st_size,
                           lat[name], int(a.metrics.get("quantized_ops", 0)), sc["min_cosine"],
                           accuracy_ci95=sc["accuracy_ci95"])

    cands = [m(n, c) if isinstance(c, Artifact) else Measurement(n, "?", float("nan"), 0, float("nan"), error=c)
             for n, c in candidates.items()]
    return m("parent", parent), cands


def quantize(source: str | os.PathLike | Artifact, data: Any, cfg: QuantizeConfig, out: str | os.PathLike,
             verbose: bool = True) -> Artifact:
    """Quantize an fp32 ``onnx`` artifact with each of ``cfg.methods`` and write the best one to ``out``.

    ``data``: a DataSpec, Dataset, (texts, labels) or list of texts (validation + calibration).
    Raises NoCandidateError (with the table) when no candidate is within budget and faster than the parent.
    """
    parent = open_onnx_parent(source)
    td = as_text_data(data, cfg.max_eval_samples)
    out = Path(out).expanduser().resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.candidates-"))
    try:
        built: dict[str, Artifact | str] = {}
        for method in cfg.methods:
            try:
                built[method] = build_candidate(parent, method, cfg.method_config(method), scratch / method,
                                                td.calibration_texts)
            except Exception as e:  # a method that fails on this graph is reported, never chosen
                built[method] = f"{type(e).__name__}: {e}"[:300]
        pm, cands = measure(parent, built, td, cfg)
        best, rows = select(pm, cands, cfg.max_accuracy_drop)
        table = format_table(pm, rows, cfg.max_accuracy_drop)
        if verbose:
            print(table)
        if best is None:
            raise NoCandidateError(f"no quantized candidate is within {cfg.max_accuracy_drop:g} accuracy points of "
                                   f"the parent and faster than it; nothing written.\n{table}")
        return _write_selected(parent, built[best.m.name], best, pm, rows, table, cfg, td, out)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _write_selected(parent: Artifact, cand: Artifact, best: Row, pm: Measurement, rows: list[Row], table: str,
                    cfg: QuantizeConfig, td: TextData, out: Path) -> Artifact:
    with ArtifactWriter(out) as w:
        for role in ("model", "tokenizer"):
            shutil.copyfile(cand.file(role), w.dir / cand.manifest["files"][role]["path"])
        metrics = {
            "method": best.m.name, "accuracy": best.m.accuracy, "parent_accuracy": pm.accuracy,
            "accuracy_drop": best.accuracy_drop, "accuracy_metric": _metric_name(parent, td),
            "size_bytes": best.m.size_bytes, "parent_size_bytes": pm.size_bytes, "size_ratio": best.size_ratio,
            "latency_ms": best.m.latency_ms, "parent_latency_ms": pm.latency_ms, "speedup": 1 / best.latency_ratio,
            "latency_batch_size": cfg.latency_batch_size, "min_cosine": best.m.min_cosine,
            **{k: cand.metrics[k] for k in ("sqnr_db", "max_abs_diff", "quantized_ops", "fp16_ops",
                                            "fp32_weight_ops") if k in cand.metrics},
            "candidates": [r.to_dict() for r in rows], "table": table,
        }
        return w.commit(
            stage="quantize", format="onnx", task=parent.task, labels=parent.labels, inputs=parent.inputs,
            outputs=parent.outputs, files={r: cand.manifest["files"][r]["path"] for r in ("model", "tokenizer")},
            parent=parent, config={**to_dict(cfg), "selected": best.m.name, "method_config": cand.config},
            metrics=metrics, extra=cand.extra,
        )


def _metric_name(parent: Artifact, td: TextData) -> str:
    if parent.task == "feature-extraction":
        return "100 x mean cosine vs parent"
    return "accuracy %" if td.eval_labels is not None else "agreement % with the parent's labels"
