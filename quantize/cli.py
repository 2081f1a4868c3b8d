"""`edgepack quantize` and `edgepack quantize-torch`: argparse only at import time."""

from __future__ import annotations

import argparse

from edgepack.cpu import TARGETS, host_cpu
from edgepack.quantize.config import DEFAULT_METHODS

_METHODS = ("dynamic-int8", "dynamic-int8-per-tensor", "dynamic-int8-mixed", "static-int8-minmax",
            "static-int8-entropy", "static-int8-percentile", "static-int8-smooth", "static-int8-trt", "fp16")

_EPILOG = """\
methods:
  dynamic-int8             int8 weights per channel, activations quantized per batch (no calibration)
  dynamic-int8-per-tensor  one scale per weight matrix (smaller, less accurate)
  dynamic-int8-mixed       dynamic-int8 with the MatMuls whose INT8 error is largest (measured per node on
                           calibration texts) kept float, as few as the budget allows: for models with
                           activation outliers, where plain INT8 misses the budget (skipped when it does not)
  static-int8-minmax|entropy|percentile
                           QDQ format calibrated on training texts (the format TensorRT INT8 reads)
  static-int8-smooth       static INT8 after SmoothQuant-style scaling: activation outlier channels are divided
                           down and the MatMul weights multiplied up, so both quantize well
  static-int8-trt          symmetric int8 activations and weights (zero points 0): what TensorRT accepts
  fp16                     half precision for GPUs (LayerNorm/Softmax/reductions kept fp32)

Every candidate is measured against the parent in this process: accuracy on the validation texts
and latency at batch 8 on real texts. The fastest candidate within --max-accuracy-drop that is also
faster than the parent is written; a table of all candidates is printed and stored in the manifest.

INT8 on x86 depends on the CPU that runs the model: without VNNI (AVX2-only CPUs) full 8-bit weights
saturate the integer kernels, so --target-cpu avx2 (7-bit weights) is the choice for a model that must be
right on any x86 machine. The target is recorded; the runtime warns when a model quantized for
avx512-vnni is opened on a CPU without VNNI.

examples:
  edgepack quantize out/onnx out/int8                               # built-in example data, 1-point budget
  edgepack quantize out/onnx out/int8 --target-cpu avx2             # built on a VNNI server, runs on AVX2 boxes
  edgepack quantize out/onnx out/int8 --data reviews.csv --max-accuracy-drop 0.5
  edgepack quantize out/fused out/int8 --methods dynamic-int8,static-int8-entropy --exclude classifier
"""


def register(sub) -> None:
    p = sub.add_parser(
        "quantize", help="INT8/FP16-quantize an ONNX artifact, keeping the fastest candidate within an accuracy budget",
        description="Quantize an fp32 ONNX artifact with several methods and keep the fastest one within budget.",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("source", help="an fp32 'onnx' artifact (from `edgepack export onnx` or `export optimize`)")
    p.add_argument("out", help="output artifact directory (replaced atomically)")
    p.add_argument("--max-accuracy-drop", type=float, default=1.0,
                   help="largest allowed accuracy drop vs the parent, in points (default: 1.0)")
    p.add_argument("--methods", default=",".join(DEFAULT_METHODS),
                   help=f"comma-separated candidates (default: %(default)s); known: {', '.join(_METHODS)}")
    p.add_argument("--data", help="CSV/TSV/JSONL/Parquet with text (and label) columns; default: built-in example")
    p.add_argument("--text-column", default="text", help="default: text")
    p.add_argument("--label-column", default="label", help="default: label; 'none' for unlabeled data")
    p.add_argument("--exclude", action="append", default=[], metavar="PATTERN",
                   help="keep matching nodes float: node/initializer name pattern, or preset 'classifier' / "
                        "'embeddings' (repeatable)")
    p.add_argument("--exclude-op-type", action="append", default=[], metavar="OP",
                   help="keep every node of this op type float, e.g. Gather (repeatable)")
    p.add_argument("--eval-samples", type=int, default=1000, help="validation texts scored (default: 1000)")
    p.add_argument("--threads", type=int, help="ONNX Runtime intra-op threads (default: all cores)")
    p.add_argument("--target-cpu", default="auto", choices=TARGETS,
                   help="the CPU the INT8 model will run on: avx2 = any x86 without VNNI (7-bit weights, "
                        "right everywhere), avx512-vnni = x86 with VNNI (full 8-bit weights, wrong on AVX2-only "
                        f"CPUs), arm64; default: auto = this machine ({host_cpu().target})")
    p.set_defaults(func=_quantize)

    t = sub.add_parser(
        "quantize-torch", help="torch-side quantization: dynamic int8 (CPU) or bitsandbytes int8/nf4 (GPU)",
        description="Quantize a torch model into a 'torch-quantized' artifact (safetensors).\n\n"
                    "example:\n  edgepack quantize-torch runs/student out/torch-int8 --method torch-dynamic-int8",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    t.add_argument("source", help="Hugging Face folder, LoRA adapter folder or 'hf' artifact")
    t.add_argument("out", help="output artifact directory")
    t.add_argument("--method", default="torch-dynamic-int8", choices=["torch-dynamic-int8", "bnb-int8", "bnb-nf4"],
                   help="default: torch-dynamic-int8 (bnb-* need the bitsandbytes package)")
    t.set_defaults(func=_quantize_torch)


def _quantize(args) -> int:
    from edgepack.quantize.api import quantize
    from edgepack.quantize.config import Exclusions, QuantizeConfig

    from edgepack.data import DataSpec, example_spec

    label = None if args.label_column.lower() == "none" else args.label_column
    spec = (DataSpec(path=args.data, text_column=args.text_column, label_column=label) if args.data
            else example_spec())
    cfg = QuantizeConfig(
        methods=tuple(m.strip() for m in args.methods.split(",") if m.strip()),
        max_accuracy_drop=args.max_accuracy_drop,
        exclude=Exclusions(nodes=tuple(args.exclude), op_types=tuple(args.exclude_op_type)),
        max_eval_samples=args.eval_samples, intra_op_threads=args.threads, target_cpu=args.target_cpu,
    )
    art = quantize(args.source, spec, cfg, args.out)
    m = art.metrics
    print(f"wrote {art.path}: {m['method']}, {m['size_ratio']:.2f}x smaller, {m['speedup']:.2f}x faster, "
          f"accuracy {m['accuracy']:.2f} (drop {m['accuracy_drop']:.2f})")
    return 0


def _quantize_torch(args) -> int:
    from edgepack.quantize.torch_quant import TorchQuantConfig, quantize_torch

    art = quantize_torch(args.source, args.out, TorchQuantConfig(method=args.method))
    print(f"wrote {art.path}: {args.method}, {art.metrics['size_bytes'] / 1e6:.1f} MB, "
          f"{art.metrics['quantized_ops']} quantized layers")
    return 0
