"""The measured demo: fp32 ONNX vs fused fp32 vs every quantizer, in one process, on real texts.

``run_demo(onnx_artifact, data, out_dir)`` builds the fused graph and each candidate (from the plain and
the fused graph), measures accuracy (or cosine for embedding models), size and batch-8 latency against
the plain fp32 ONNX parent with the same interleaved timing the quantize stage uses, applies the budget
rules, and writes ``demo.json`` + ``demo.txt`` into ``out_dir``. ``python examples/quantize_demo.py ONNX OUT``
runs it from a shell on the embedded example data. An example script, not package code: it is not installed.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from edgepack.quantize.api import build_candidate, eval_data, measure
from edgepack.quantize.budget import format_table, select
from edgepack.quantize.config import QuantizeConfig
from edgepack.quantize.graph import open_onnx_parent

from edgepack.artifact import Artifact
from edgepack.config import config_to_dict

# (candidate name, graph it is built from, method)
DEMO_CANDIDATES = (
    ("dynamic-int8", "plain", "dynamic-int8"),
    ("dynamic-int8 (fused)", "fused", "dynamic-int8"),
    ("dynamic-int8-per-tensor (fused)", "fused", "dynamic-int8-per-tensor"),
    ("static-int8-minmax", "plain", "static-int8-minmax"),
    ("static-int8-percentile", "plain", "static-int8-percentile"),
)

DEMO_CONFIG = QuantizeConfig(max_eval_samples=500)


def run_demo(onnx_artifact: str | os.PathLike | Artifact, data: Any, out_dir: str | os.PathLike,
             cfg: QuantizeConfig = DEMO_CONFIG, candidates=DEMO_CANDIDATES) -> dict:
    """Measure every demo candidate against the fp32 ONNX parent; returns (and writes) the results."""
    from edgepack.export.fusion import optimize_onnx

    parent = open_onnx_parent(onnx_artifact)
    out = Path(out_dir).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    ds = eval_data(data, cfg.max_eval_samples)
    graphs = {"plain": parent}
    built: dict[str, Artifact | str] = {}
    try:
        graphs["fused"] = optimize_onnx(parent, out / "fused")
        built["fused fp32"] = graphs["fused"]
    except Exception as e:  # noqa: BLE001  (a model type ORT cannot fuse: fused candidates are reported as failed)
        built["fused fp32"] = f"{type(e).__name__}: {e}"[:300]
    for name, graph, method in candidates:
        try:
            built[name] = build_candidate(graphs[graph], method, cfg.method_config(method),
                                          out / name.replace(" ", "_").replace("(", "").replace(")", ""),
                                          ds.calibration_texts)
        except Exception as e:  # noqa: BLE001  (a method that fails on this graph is reported, never chosen)
            built[name] = f"{type(e).__name__}: {e}"[:300]
    pm, cands = measure(parent, built, ds, cfg)
    best, rows = select(pm, cands, cfg.max_accuracy_drop)
    table = format_table(pm, rows, cfg.max_accuracy_drop)
    result = {
        "parent": str(parent.path), "task": parent.task, "eval_texts": len(ds.val_texts),
        "labelled": ds.val_labels is not None, "config": config_to_dict(cfg), "selected": best.m.name if best else None,
        "parent_row": {"accuracy": pm.accuracy, "size_bytes": pm.size_bytes, "latency_ms": pm.latency_ms},
        "candidates": [r.to_dict() for r in rows], "table": table,
    }
    (out / "demo.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    (out / "demo.txt").write_text(table + "\n")
    print(table)
    return result


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description="Compare fp32, fused fp32 and every quantizer of an fp32 ONNX "
                                 "artifact on the embedded Rotten Tomatoes example, in one process.")
    ap.add_argument("onnx", help="fp32 onnx artifact (edgepack export onnx)")
    ap.add_argument("out", help="directory for the candidates, demo.json and demo.txt")
    args = ap.parse_args(argv)
    from edgepack.data import example_spec

    run_demo(args.onnx, example_spec(), args.out)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
