"""Sensitivity-guided mixed precision: keep the MatMuls whose INT8 error hurts most in float.

Larger transformers carry activation outliers: a few hidden channels tens of times larger than the rest.
Dynamic INT8 quantizes each activation tensor with one scale per batch, so an outlier channel sets the
scale and the other channels lose their precision; whole embeddings then collapse while most MatMuls
quantize fine. The fix the field uses (Olive / Intel Neural Compressor / ORT's QDQ debugging tools) is
to measure each node's own error and keep the worst few in float.

``node_sensitivity`` runs the fp32 parent once over calibration batches, reads the input activation of
every weight-bearing MatMul (and fused Attention), and simulates that node's dynamic INT8 arithmetic
(u8 activations with the batch's range, s8 weights per channel or per tensor, 7-bit when the target needs
``reduce_range``): the node's SQNR in dB, its error alone, free of the error of the nodes before it.
``build_mixed`` then keeps the k least accurate nodes float for k = 1, 2, 4, ... and bisects to the
smallest k whose candidate is within the accuracy budget, up to ``max_float_fraction`` of the nodes.
"""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from edgepack.quantize.config import DynamicInt8Config, Exclusions, MixedInt8Config

from edgepack.artifact import Artifact, ArtifactWriter
from edgepack.errors import EdgepackError


class NotNeeded(EdgepackError):
    """The plain candidate is already within budget: no node needs to stay float."""


@dataclass(frozen=True)
class NodeError:
    node: str
    op_type: str
    sqnr_db: float  # this node's dynamic-INT8 output vs fp32 on the same fp32 input; lower is worse


def _weight_nodes(model: Any, skip: set[str]) -> list[tuple[Any, np.ndarray]]:
    """(node, fp32 weight (K, N)) of every MatMul / fused Attention that dynamic INT8 would quantize."""
    from onnx import numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    out = []
    for node in model.graph.node:
        if node.name in skip or node.op_type not in ("MatMul", "Attention") or len(node.input) < 2:
            continue
        w = inits.get(node.input[1])
        if w is None or len(w.dims) != 2 or w.data_type != 1:  # 1 = FLOAT
            continue
        out.append((node, numpy_helper.to_array(w).astype(np.float32)))
    return out


def _fake_quant_weight(w: np.ndarray, per_channel: bool, reduce_range: bool) -> np.ndarray:
    qmax = 63.0 if reduce_range else 127.0  # symmetric s8 (7-bit when reduce_range)
    amax = np.abs(w).max(axis=0, keepdims=True) if per_channel else np.abs(w).max()
    scale = np.where(amax > 0, amax / qmax, 1.0)
    return np.clip(np.round(w / scale), -qmax, qmax) * scale


def _fake_quant_activation(x: np.ndarray) -> np.ndarray:
    """ONNX DynamicQuantizeLinear: u8, asymmetric, the range of the whole tensor (padding included)."""
    lo, hi = min(0.0, float(x.min())), max(0.0, float(x.max()))
    scale = (hi - lo) / 255.0 or 1.0
    zp = np.clip(np.round(-lo / scale), 0, 255)
    return (np.clip(np.round(x / scale) + zp, 0, 255) - zp) * scale


def node_sensitivity(model_path: str | os.PathLike, batches: list[dict[str, np.ndarray]], cfg: DynamicInt8Config,
                     skip: tuple[str, ...] = ()) -> list[NodeError]:
    """Every quantizable node's own INT8 error on ``batches``, worst (lowest SQNR) first."""
    import onnx
    from edgepack.quantize.graph import probe_activations, real_rows

    cfg = cfg.resolved()
    model = onnx.load(str(model_path))
    nodes = _weight_nodes(model, set(skip))
    if not nodes:
        return []
    signal = np.zeros(len(nodes))
    noise = np.zeros(len(nodes))
    wq = [_fake_quant_weight(w, cfg.per_channel and not (n.op_type == "Attention" and cfg.attention_per_tensor),
                             bool(cfg.reduce_range)) for n, w in nodes]
    for acts, mask in probe_activations(model, [n.input[0] for n, _ in nodes], batches):
        rows: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for i, (node, w) in enumerate(nodes):
            name = node.input[0]
            if name not in rows:  # the batch's range (padding included, as ORT does), scored on real tokens
                x = acts[name].astype(np.float32)
                rows[name] = (real_rows(x, mask), real_rows(_fake_quant_activation(x), mask))
            x, xq = rows[name]
            y = x @ w
            signal[i] += float(np.square(y, dtype=np.float64).sum())
            noise[i] += float(np.square(y - xq @ wq[i], dtype=np.float64).sum())
    errs = [NodeError(n.name, n.op_type, float("inf") if e == 0 else 10.0 * math.log10(max(s, 1e-30) / e))
            for (n, _), s, e in zip(nodes, signal, noise)]
    return sorted(errs, key=lambda r: r.sqnr_db)


def build_mixed(parent: Artifact, out: Path, cfg: MixedInt8Config, batches: list[dict[str, np.ndarray]],
                drop_of: Callable[[Artifact], float], max_drop: float, *, method: str, plain_in_stage: bool,
                ) -> Artifact:
    """The dynamic-INT8 candidate with the fewest float MatMuls that is within ``max_drop`` accuracy points.

    ``drop_of(candidate)``: its accuracy drop vs the parent in points (the stage's own budget measure).
    Raises NotNeeded when the plain candidate is within budget and the stage builds it anyway
    (``plain_in_stage``), and EdgepackError when even ``max_float_fraction`` of the nodes kept float miss.
    """
    from edgepack.quantize.onnx_dynamic import quantize_dynamic_onnx
    from tqdm.auto import tqdm

    base = cfg.dynamic().resolved()
    skip = tuple(_excluded(parent, base.exclude))
    ranking = node_sensitivity(parent.file("model"), batches, base, skip)
    cap = max(1, int(cfg.max_float_fraction * len(ranking)))
    trace: list[dict] = []
    built: dict[int, Artifact] = {}
    bar = tqdm(total=cfg.max_trials, desc=f"{method}: search", unit="trial", leave=False)

    def trial(k: int) -> bool:
        keep = tuple(r.node for r in ranking[:k])
        art = quantize_dynamic_onnx(parent, out.with_name(f"{out.name}.k{k}"), base, method=method, keep_float=keep)
        drop = drop_of(art)
        trace.append({"float_nodes": k, "accuracy_drop": round(drop, 4), "within_budget": drop <= max_drop + 1e-9})
        bar.update(1)
        bar.set_postfix(float_nodes=k, drop=f"{drop:.2f}")
        built[k] = art
        return drop <= max_drop + 1e-9

    try:
        if trial(0):
            if plain_in_stage:
                raise NotNeeded(f"not needed: plain dynamic INT8 is within budget (drop {trace[0]['accuracy_drop']:.2f})")
            return _finish(parent, built[0], out, ranking, 0, trace)
        lo, hi, k = 0, None, 1
        while hi is None and len(trace) < cfg.max_trials:
            if trial(k):
                hi = k
            elif k >= cap:
                break
            else:
                lo, k = k, min(2 * k, cap)
        if hi is None:
            raise EdgepackError(f"still over budget with the {k} least accurate of {len(ranking)} MatMuls kept float "
                                f"(drop {trace[-1]['accuracy_drop']:.2f} > {max_drop:g})")
        while hi - lo > 1 and len(trace) < cfg.max_trials:
            mid = (lo + hi) // 2
            lo, hi = (lo, mid) if trial(mid) else (mid, hi)
        return _finish(parent, built[hi], out, ranking, hi, trace)
    finally:
        bar.close()
        for art in built.values():
            shutil.rmtree(art.path, ignore_errors=True)


def _excluded(parent: Artifact, exclude: Exclusions) -> list[str]:
    import onnx
    from edgepack.quantize.graph import excluded_nodes

    return excluded_nodes(onnx.load(str(parent.file("model")), load_external_data=False), exclude)


def _finish(parent: Artifact, art: Artifact, out: Path, ranking: list[NodeError], k: int, trace: list[dict]) -> Artifact:
    """Copy the chosen trial to ``out`` and record what stayed float and why."""
    total = len(ranking)
    floats = [{"node": r.node, "op_type": r.op_type, "sqnr_db": round(r.sqnr_db, 2), "rank": i + 1,
               "why": f"lowest INT8 accuracy of the model's {total} MatMuls: {r.sqnr_db:.1f} dB alone"}
              for i, r in enumerate(ranking[:k])]
    with ArtifactWriter(out) as w:
        for role in ("model", "tokenizer"):
            shutil.copyfile(art.file(role), w.dir / art.manifest["files"][role]["path"])
        metrics = {**art.metrics, "float_nodes": floats, "float_fraction": k / max(total, 1),
                   "sensitivity": [dataclasses.asdict(r) for r in ranking], "search": trace}
        return w.commit(
            stage="quantize", format="onnx", task=art.task, labels=art.labels, inputs=art.inputs,
            outputs=art.outputs, files={r: art.manifest["files"][r]["path"] for r in ("model", "tokenizer")},
            parent=parent, config={**art.config, "keep_float": [f["node"] for f in floats]},
            metrics=metrics, runtime=art.runtime, extra=art.extra,
        )
