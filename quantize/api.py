"""The quantize stage: build candidates, measure them against the parent, keep the fastest within budget.

>>> from edgepack.quantize import QuantizeConfig, quantize
>>> art = quantize("out/onnx", DataSpec(path="reviews.csv"), QuantizeConfig(max_accuracy_drop=1.0), "out/int8")
>>> print(art.metrics["table"])
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgepack.outputs import check_output, clean_stale, make_temp_dir
from edgepack.artifact import Artifact, ArtifactWriter
from edgepack.config import config_to_dict
from edgepack.data import Dataset, DataSpec, as_dataset
from edgepack.errors import EdgepackError
from edgepack.quantize.budget import Measurement, Row, format_table, score, select, time_predictors
from edgepack.quantize.config import DynamicInt8Config, QuantizeConfig
from edgepack.quantize.graph import open_onnx_parent
from edgepack.quantize.methods import builder_for
from edgepack.quantize.mixed import NotNeeded


class NoCandidateError(EdgepackError):
    """No candidate is both within the accuracy budget and faster than its parent."""


def eval_data(data: DataSpec | Dataset | tuple | list, max_eval: int | None = None) -> Dataset:
    """The quantization data (``edgepack.data.as_dataset``) as its evaluation view: ``val_*`` holds at
    most ``max_eval`` texts to measure on, ``calibration_texts`` the texts to calibrate with."""
    return as_dataset(data, "quantization data").eval_view(max_eval)


def _labels_for(parent: Artifact, ds: Dataset) -> list[int] | None:
    """Eval labels re-indexed into the artifact's label order (by name)."""
    if ds.val_labels is None or parent.task != "text-classification":
        return None
    return ds.aligned_to(parent.labels, "quantization eval data").val_labels


@dataclass(frozen=True)
class Budget:
    """What a budget-aware method (mixed precision) needs: the drop of a candidate, the allowed drop."""

    drop_of: Callable[[Artifact], float]
    max_drop: float
    plain_in_stage: bool = False  # plain dynamic INT8 is a candidate too: mixed precision skips itself if it suffices


def build_candidate(parent: Artifact, method: str, mcfg: Any, out: Path, calibration_texts: Sequence[str],
                    budget: Budget | None = None) -> Artifact:
    """Build one method's candidate artifact at ``out`` with the builder registered for ``type(mcfg)``
    (``edgepack.quantize.methods``); ``budget`` is passed on for budget-aware methods (mixed precision)."""
    return builder_for(mcfg)(parent, out, mcfg, method, calibration_texts, budget)


def _open(a: Artifact, cfg: QuantizeConfig):
    """A candidate (or the parent) on the backend and threads the stage measures on."""
    from edgepack.runtime import Predictor

    return Predictor.open(a.path, backend=cfg.backend, intra_op_threads=cfg.intra_op_threads, batch_size=32)


def measure(parent: Artifact, candidates: dict[str, Artifact | str], ds: Dataset, cfg: QuantizeConfig
            ) -> tuple[Measurement, list[Measurement]]:
    """Accuracy, size and latency of the parent and each candidate (a failed build is a str: its error).

    ``ds``: the evaluation view (``eval_data``); its ``val_texts`` are scored and timed.
    """
    labels = _labels_for(parent, ds)
    preds = {"parent": _open(parent, cfg)}
    for name, c in candidates.items():
        if isinstance(c, Artifact):
            preds[name] = _open(c, cfg)
    ref = preds["parent"].infer(ds.val_texts)
    scores = {name: score(parent.task, p.infer(ds.val_texts), ref, labels) for name, p in preds.items()}
    lat = time_predictors(preds, ds.val_texts, cfg.latency_batch_size, cfg.latency_batches, cfg.latency_rounds)

    def m(name: str, a: Artifact) -> Measurement:
        sc = scores[name]
        return Measurement(name, a.runtime.precision, sc["accuracy"], a.file("model").stat().st_size,
                           lat[name], int(a.metrics.get("quantized_ops", 0)), sc["min_cosine"],
                           accuracy_ci95=sc["accuracy_ci95"])

    cands = [m(n, c) if isinstance(c, Artifact) else Measurement(n, "?", float("nan"), 0, float("nan"), error=c)
             for n, c in candidates.items()]
    return m("parent", parent), cands


def quantize(source: str | os.PathLike | Artifact, data: DataSpec | Dataset | tuple | list, cfg: QuantizeConfig,
             out: str | os.PathLike, verbose: bool = True, overwrite: bool = False) -> Artifact:
    """Quantize an fp32 ``onnx`` artifact with each of ``cfg.methods`` and write the best one to ``out``.

    ``data``: a DataSpec, Dataset, (texts, labels) or list of texts (validation + calibration).
    Raises NoCandidateError (with the table) when no candidate is within budget and faster than the parent.
    """
    parent = open_onnx_parent(source)
    ds = eval_data(data, cfg.max_eval_samples)
    out = check_output(out, overwrite, (parent,))
    out.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(out)  # scratch folders of killed runs on this output (their PID is dead)
    scratch = make_temp_dir(out, "candidates")  # .OUT.candidates-PID-xxxx
    try:
        from tqdm.auto import tqdm

        built: dict[str, Artifact | str] = {}
        budget = _budget(parent, ds, cfg)
        bar = tqdm(cfg.methods, desc="quantize: build candidates", unit="method", disable=not verbose)
        for method in bar:
            bar.set_postfix_str(method)
            try:
                built[method] = build_candidate(parent, method, cfg.method_config(method), scratch / method,
                                                ds.calibration_texts, budget)
            except NotNeeded as e:
                built[method] = str(e)
            except Exception as e:  # a method that fails on this graph is reported, never chosen
                built[method] = f"{type(e).__name__}: {e}"[:300]
        if verbose:
            print(f"quantize: measuring the parent and {sum(isinstance(b, Artifact) for b in built.values())} "
                  f"candidates on {len(ds.val_texts)} texts ({cfg.latency_rounds} timed rounds)")
        pm, cands = measure(parent, built, ds, cfg)
        best, rows = select(pm, cands, cfg.max_accuracy_drop, cfg.select_by)
        table = format_table(pm, rows, cfg.max_accuracy_drop)
        if verbose:
            print(table)
        if best is None:
            raise NoCandidateError(f"no quantized candidate is within {cfg.max_accuracy_drop:g} accuracy points of "
                                   f"the parent and {'faster' if cfg.select_by == 'latency' else 'smaller'} than it; "
                                   f"nothing written.\n{table}")
        return _write_selected(parent, built[best.m.name], best, pm, rows, table, cfg, ds, out, overwrite)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _budget(parent: Artifact, ds: Dataset, cfg: QuantizeConfig) -> Budget:
    """The stage's own accuracy measure as a function of one candidate, for budget-aware methods."""
    labels = _labels_for(parent, ds)
    cache: dict[str, Any] = {}

    def drop_of(cand: Artifact) -> float:
        if "ref" not in cache:
            cache["ref"] = _open(parent, cfg).infer(ds.val_texts)
            cache["acc"] = score(parent.task, cache["ref"], cache["ref"], labels)["accuracy"]
        got = _open(cand, cfg).infer(ds.val_texts)
        return cache["acc"] - score(parent.task, got, cache["ref"], labels)["accuracy"]

    plain = {m for m in cfg.methods if isinstance(cfg.method_config(m), DynamicInt8Config)}
    return Budget(drop_of, cfg.max_accuracy_drop, plain_in_stage=bool(plain))


def _write_selected(parent: Artifact, cand: Artifact, best: Row, pm: Measurement, rows: list[Row], table: str,
                    cfg: QuantizeConfig, ds: Dataset, out: Path, overwrite: bool = False) -> Artifact:
    with ArtifactWriter(out, overwrite=overwrite, sources=(parent,)) as w:
        for role in ("model", "tokenizer"):
            shutil.copyfile(cand.file(role), w.dir / cand.manifest["files"][role]["path"])
        metrics = {
            "method": best.m.name, "accuracy": best.m.accuracy, "parent_accuracy": pm.accuracy,
            "accuracy_drop": best.accuracy_drop, "accuracy_metric": _metric_name(parent, ds),
            "size_bytes": best.m.size_bytes, "parent_size_bytes": pm.size_bytes, "size_ratio": best.size_ratio,
            "latency_ms": best.m.latency_ms, "parent_latency_ms": pm.latency_ms, "speedup": 1 / best.latency_ratio,
            "latency_batch_size": cfg.latency_batch_size, "min_cosine": best.m.min_cosine,
            **{k: cand.metrics[k] for k in ("sqnr_db", "max_abs_diff", "quantized_ops", "fp16_ops",
                                            "fp32_weight_ops", "float_nodes", "float_fraction", "search")
               if k in cand.metrics},
            "candidates": [r.to_dict() for r in rows], "table": table,
        }
        return w.commit(
            stage="quantize", format="onnx", task=parent.task, labels=parent.labels, inputs=parent.inputs,
            outputs=parent.outputs, files={r: cand.manifest["files"][r]["path"] for r in ("model", "tokenizer")},
            parent=parent, config={**config_to_dict(cfg), "selected": best.m.name, "method_config": cand.config},
            metrics=metrics, runtime=cand.runtime, extra=cand.extra,
        )


def _metric_name(parent: Artifact, ds: Dataset) -> str:
    if parent.task == "feature-extraction":
        return "100 x mean cosine vs parent"
    return "accuracy %" if ds.val_labels is not None else "agreement % with the parent's labels"
