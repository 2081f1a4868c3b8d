"""The pruning demo: every pruning kind on one classifier, one comparison table.

``run_demo(source, out_dir)`` writes one ``hf`` artifact per variant under ``out_dir`` and
``demo.json`` with, per variant, validation accuracy (and drop vs the unpruned model, in points),
parameters, file size (and gzip size for the sparse variants) and the torch eager CPU speed-up at
batch 8 on real validation texts, all variants timed interleaved in this one process.
``python examples/prune_demo.py SOURCE OUT_DIR`` runs it from a shell (formerly ``edgepack prune-demo``).
An example script, not package code: it is not installed with edgepack.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from edgepack.prune.config import PruneConfig, RecoveryConfig


def demo_variants(recovery_steps: int = 150) -> dict[str, PruneConfig]:
    """The variants reported: FFN 50% + recovery (the headline), heads 25% / 50% + recovery,
    FFN 50% without recovery (what recovery buys), 50% magnitude sparsity, 2:4."""
    rec = RecoveryConfig(steps=recovery_steps, batch_size=32, lr=1e-4, max_length=64)
    off = {"latency_runs": 0}  # latency is measured once for all variants at the end
    return {
        "ffn50": PruneConfig(ffn_fraction=0.5, **off),
        "ffn50_recovered": PruneConfig(ffn_fraction=0.5, recovery=rec, **off),
        "heads25_recovered": PruneConfig(head_fraction=0.25, recovery=rec, **off),
        "heads50_recovered": PruneConfig(head_fraction=0.5, recovery=rec, **off),
        "magnitude50": PruneConfig(sparsity=0.5, **off),
        "two_four": PruneConfig(semi_structured_24=True, **off),
    }


def run_demo(source: str | os.PathLike, out_dir: str | os.PathLike, data: Any = None,
             teacher: str | os.PathLike | None = None, recovery_steps: int = 150, latency_runs: int = 30,
             variants: dict[str, PruneConfig] | None = None, echo: bool = False) -> dict:
    """Prune ``source`` every way in ``variants`` (default ``demo_variants``) and compare them.

    ``data``: as for ``edgepack.prune.api.prune`` (default: the embedded Rotten Tomatoes example).
    Returns the table written to ``out_dir/demo.json``.
    """
    from edgepack.prune.api import prune, resolve_data
    from edgepack.prune.evaluate import compare_latency

    from edgepack.hf import load_model

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    d = resolve_data(data)
    variants = variants if variants is not None else demo_variants(recovery_steps)
    rows: dict[str, dict] = {}
    arts = {}
    for name, cfg in variants.items():
        t0 = time.perf_counter()
        art = prune(source, d, cfg, out / name, teacher=teacher)
        arts[name] = art
        m, x = art.metrics, art.extra
        rows[name] = {"accuracy": m.get("accuracy"), "accuracy_before": x["before"].get("accuracy"),
                      "accuracy_drop_points": x.get("accuracy_drop_points"), "params": m["params"],
                      "params_before": x["params_before"], "size_bytes": m["size_bytes"],
                      "gzip_bytes": m.get("gzip_bytes"), "sparse_bytes": m.get("sparse_bytes"),
                      "target_sparsity": m["target_sparsity"], "heads_per_layer": x["heads_per_layer"],
                      "ffn_size": x["ffn_size"], "recovery_steps": x["recovery"].get("steps", 0),
                      "stage_seconds": round(time.perf_counter() - t0, 1)}
        if echo:
            print(f"[prune-demo] {name}: accuracy {rows[name]['accuracy']} (before {rows[name]['accuracy_before']}), "
                  f"{rows[name]['stage_seconds']} s", flush=True)
    base = load_model(source)
    models = {"unpruned": base.model, **{k: load_model(a.path).model for k, a in arts.items()}}
    lat = compare_latency(models, base.tokenizer, list(d.val_texts), batch_size=8, runs=latency_runs) \
        if latency_runs else {}
    for name, row in rows.items():
        if lat:
            row["speedup_b8"] = lat[name]["speedup_vs_unpruned"]
            row["p50_ms_b8"] = lat[name]["p50_ms"]
    result = {"source": str(source), "teacher": str(teacher) if teacher else "unpruned source",
              "val_examples": len(d.val_texts), "latency": {"batch": 8, "runs": latency_runs,
                                                            "unpruned_p50_ms": lat.get("unpruned", {}).get("p50_ms")},
              "variants": rows}
    (out / "demo.json").write_text(json.dumps(result, indent=1) + "\n")
    if echo:
        print(format_table(result))
    return result


def format_table(result: dict) -> str:
    """A plain-text table of a ``run_demo`` result."""
    head = f"{'variant':<20}{'acc':>8}{'drop pts':>10}{'params':>12}{'MB':>8}{'gzip MB':>9}{'sparsity':>10}{'speed-up b8':>13}"
    lines = [head, "-" * len(head)]
    for name, r in result["variants"].items():
        gz = f"{r['gzip_bytes'] / 1e6:.1f}" if r.get("gzip_bytes") else "-"
        acc = f"{r['accuracy']:.4f}" if r.get("accuracy") is not None else "-"
        drop = f"{r['accuracy_drop_points']:.2f}" if r.get("accuracy_drop_points") is not None else "-"
        sp = f"{r['speedup_b8']:.2f}x" if r.get("speedup_b8") else "-"
        lines.append(f"{name:<20}{acc:>8}{drop:>10}{r['params']:>12,}{r['size_bytes'] / 1e6:>8.1f}{gz:>9}"
                     f"{r['target_sparsity']:>10.2f}{sp:>13}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description="Run FFN-50%+recovery, heads 25%/50%, 50% magnitude and 2:4 "
                                 "variants of a classifier on the embedded Rotten Tomatoes example; latency "
                                 "measured in one process.")
    ap.add_argument("source", help="fine-tuned classifier (hf artifact or folder)")
    ap.add_argument("out", help="directory for the variant artifacts and demo.json")
    ap.add_argument("--teacher", help="teacher for recovery (default: the unpruned source)")
    ap.add_argument("--recovery-steps", type=int, default=150, help="recovery steps per structured variant (default 150)")
    ap.add_argument("--latency-runs", type=int, default=30, help="timed batch-8 runs per model (default 30)")
    args = ap.parse_args(argv)
    run_demo(args.source, args.out, teacher=args.teacher, recovery_steps=args.recovery_steps,
             latency_runs=args.latency_runs, echo=True)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
