"""`edgepack quantize` and `edgepack quantize-torch`: argparse only at import time."""

from __future__ import annotations

import argparse

from edgepack.cli_config import Opt, add_config_arguments, overwrite_of
from edgepack.cpu import TARGETS, host_cpu

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
  edgepack quantize out/onnx out/int8 --config quantize.yaml        # a QuantizeConfig (overrides: per-method dicts)
"""


def register(sub) -> None:
    from edgepack.quantize.config import METHODS, SELECT_BY, QuantizeConfig
    from edgepack.quantize.torch_quant import TORCH_METHODS, TorchQuantConfig

    p = sub.add_parser(
        "quantize", help="INT8/FP16-quantize an ONNX artifact, keeping the fastest candidate within an accuracy budget",
        description="Quantize an fp32 ONNX artifact with several methods and keep the fastest one within budget.",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("source", help="an fp32 'onnx' artifact (from `edgepack export onnx` or `export optimize`)")
    p.add_argument("out", help="output artifact directory (replaced atomically)")
    p.add_argument("--data", help="CSV/TSV/JSONL/Parquet with text (and label) columns; default: built-in example")
    p.add_argument("--text-column", default="text", help="default: text")
    p.add_argument("--label-column", default="label", help="default: label; 'none' for unlabeled data")
    add_config_arguments(p, QuantizeConfig, groups={"": "quantization"}, options={
        "methods": Opt(help=f"candidates, comma-separated or repeated; known: {', '.join(METHODS)}",
                       metavar="METHOD"),
        "max_accuracy_drop": Opt(help="largest allowed accuracy drop vs the parent, in points"),
        "exclude.nodes": Opt("--exclude", "keep matching nodes float: node/initializer name pattern, or preset "
                                          "'classifier' / 'embeddings'", metavar="PATTERN"),
        "exclude.op_types": Opt("--exclude-op-type", "keep every node of this op type float, e.g. Gather",
                                metavar="OP"),
        "max_eval_samples": Opt("--eval-samples", "validation texts scored"),
        "latency_batch_size": Opt(help="texts per timed call"),
        "latency_batches": Opt(help="distinct batches timed per pass"),
        "latency_rounds": Opt(help="timed passes over the batches, models in turns (edgepack.timing); p50 counts"),
        "intra_op_threads": Opt("--threads", "ONNX Runtime intra-op threads", default_text="all cores"),
        "backend": Opt(help="runtime backend the latency is measured on"),
        "target_cpu": Opt(help="the CPU the INT8 model will run on: avx2 = any x86 without VNNI (7-bit weights, "
                               "right everywhere), avx512-vnni = x86 with VNNI (full 8-bit weights, wrong on "
                               "AVX2-only CPUs), arm64; auto = this machine "
                               f"({host_cpu().target})", choices=TARGETS),
        "select_by": Opt(help="latency: the fastest candidate within the budget that beats the parent; size: the "
                              "smallest within the budget, even if not faster (storage- or memory-bound devices)",
                         choices=SELECT_BY),
    })
    p.set_defaults(func=_quantize)

    t = sub.add_parser(
        "quantize-torch", help="torch-side quantization: dynamic int8 (CPU) or bitsandbytes int8/nf4 (GPU)",
        description="Quantize a torch model into a 'torch-quantized' artifact (safetensors).\n\n"
                    "example:\n  edgepack quantize-torch runs/student out/torch-int8 --method torch-dynamic-int8",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    t.add_argument("source", help="Hugging Face folder, LoRA adapter folder or 'hf' artifact")
    t.add_argument("out", help="output artifact directory")
    add_config_arguments(t, TorchQuantConfig, options={
        "method": Opt(help="bnb-* need the bitsandbytes package", choices=TORCH_METHODS),
        "per_channel": Opt(help="per-channel int8 weights (torch-dynamic-int8)"),
        "skip_modules": Opt(help="module name substrings kept in fp32", metavar="NAME"),
    })
    t.set_defaults(func=_quantize_torch)


def _quantize(args) -> int:
    from edgepack.quantize.api import quantize

    from edgepack.cli_config import config_from_args

    from edgepack.data import DataSpec, example_spec

    label = None if args.label_column.lower() == "none" else args.label_column
    spec = (DataSpec(path=args.data, text_column=args.text_column, label_column=label) if args.data
            else example_spec())
    art = quantize(args.source, spec, config_from_args(args), args.out, overwrite=overwrite_of(args))
    m = art.metrics
    print(f"wrote {art.path}: {m['method']}, {m['size_ratio']:.2f}x smaller, {m['speedup']:.2f}x faster, "
          f"accuracy {m['accuracy']:.2f} (drop {m['accuracy_drop']:.2f})")
    return 0


def _quantize_torch(args) -> int:
    from edgepack.quantize.torch_quant import quantize_torch

    from edgepack.cli_config import config_from_args

    cfg = config_from_args(args)
    art = quantize_torch(args.source, args.out, cfg, overwrite=overwrite_of(args))
    print(f"wrote {art.path}: {cfg.method}, {art.metrics['size_bytes'] / 1e6:.1f} MB, "
          f"{art.metrics['quantized_ops']} quantized layers")
    return 0
