"""`edgepack predict` and `edgepack inspect` (lean: no torch needed)."""

from __future__ import annotations

import argparse
import json
import sys


def register(sub) -> None:
    p = sub.add_parser(
        "predict", help="run an exported model on texts (lean runtime)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Classify texts or embed them with an exported artifact.\n\nexamples:\n"
                    '  edgepack predict out/onnx "a gripping film" "dull"\n'
                    "  edgepack predict out/onnx --file reviews.txt --json > predictions.jsonl",
    )
    p.add_argument("artifact", help="an exported artifact directory (onnx)")
    p.add_argument("texts", nargs="*", help="texts to predict (or use --file / stdin)")
    p.add_argument("--file", help="read one text per line from this file ('-' for stdin)")
    p.add_argument("--json", action="store_true", help="print one JSON object per text")
    p.add_argument("--backend", default="auto", help="runtime backend (default: auto = best available)")
    p.add_argument("--threads", type=int, help="intra-op threads (default: ONNX Runtime's choice)")
    p.add_argument("--batch-size", type=int, default=16,
                   help="texts per model call; more texts are sorted by length and cut (default: 16)")
    p.set_defaults(func=_predict)

    i = sub.add_parser("inspect", help="print an artifact's manifest and verify its checksums",
                       description="Show stage, task, labels, inputs, files, lineage and metrics of an artifact.")
    i.add_argument("artifact", help="artifact directory")
    i.add_argument("--json", action="store_true", help="print the raw manifest")
    i.set_defaults(func=_inspect)


def _read_texts(args) -> list[str]:
    from edgepack.errors import EdgepackError

    texts = list(args.texts)
    if args.file:
        try:
            f = sys.stdin if args.file == "-" else open(args.file, encoding="utf-8")
        except OSError as e:
            raise EdgepackError(f"cannot read {args.file}: {e.strerror}") from None
        with f:
            texts += [line.rstrip("\n") for line in f if line.strip()]
    if not texts:
        raise EdgepackError("no texts: pass them as arguments or with --file")
    return texts


def _predict(args) -> int:
    from edgepack.runtime.predictor import Predictor

    texts = _read_texts(args)
    pred = Predictor.open(args.artifact, backend=args.backend, intra_op_threads=args.threads,
                          batch_size=args.batch_size)
    for text, r in zip(texts, pred.predict(texts)):
        if args.json:
            print(json.dumps({"text": text, **r}))
        elif "label" in r:
            print(f"{r['label']}\t{r['score']:.3f}\t{text}")
        else:
            emb = r["embedding"]
            print(f"[{', '.join(f'{x:.4f}' for x in emb[:4])}, ...] (dim {len(emb)})\t{text}")
    return 0


def _inspect(args) -> int:
    from edgepack.artifact import Artifact

    art = Artifact.open(args.artifact)
    if args.json:
        print(json.dumps(art.manifest, indent=2))
        return 0
    m = art.manifest
    print(f"{art.path}\n  stage {art.stage}, format {art.format}, task {art.task}   (checksums OK)")
    if art.labels:
        print(f"  labels: {', '.join(art.labels)}")
    for io in ("inputs", "outputs"):
        if m.get(io):
            print(f"  {io}: " + ", ".join(f"{x['name']} {x['dtype']}{x['shape']}" for x in m[io]))
    for role, e in m["files"].items():
        print(f"  file {role}: {e['path']} ({e['bytes'] / 1e6:.2f} MB, sha256 {e['sha256'][:12]}…)")
    for step in art.lineage:
        print(f"  from: {step['stage']} ({step['format']}) {step['path']}")
    if art.metrics:
        print("  metrics: " + json.dumps(art.metrics))
    if art.runtime.to_dict():
        print("  runtime: " + json.dumps(art.runtime.to_dict()))
    if art.extra:
        print("  extra: " + json.dumps(art.extra))
    return 0
