"""`edgepack export onnx|optimize|...`: argparse only at import time; the stages are imported when run."""

from __future__ import annotations

import argparse
import importlib.util


def register(sub) -> None:
    p = sub.add_parser(
        "export", help="export a model: onnx, optimize (graph fusion), tensorrt, triton",
        description="Export a torch model to ONNX and build deployment targets from ONNX artifacts.",
    )
    targets = p.add_subparsers(dest="target", metavar="TARGET")
    targets.required = True

    o = targets.add_parser(
        "onnx", help="HF folder / LoRA adapter / hf artifact -> validated ONNX artifact",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Export with optimum-onnx (dynamic batch and sequence axes), copy tokenizer.json, and\n"
                    "validate against torch on batch 1 and 7, lengths 3 and 40, and real sentences.\n\n"
                    "example:\n  edgepack export onnx runs/student out/onnx --opset 18",
    )
    o.add_argument("source", help="Hugging Face model folder, PEFT/LoRA adapter folder, or an edgepack 'hf' artifact")
    o.add_argument("out", help="output artifact directory (replaced atomically)")
    o.add_argument("--opset", type=int, default=18, help="ONNX opset (default: 18)")
    o.add_argument("--task", choices=["text-classification", "feature-extraction"],
                   help="default: from the model's architecture")
    o.add_argument("--atol", type=float, default=1e-4, help="max abs difference vs torch (default: 1e-4)")
    o.add_argument("--max-length", type=int, help="runtime truncation length (default: the model's limit, <= 512)")
    o.add_argument("--base-model", help="base model folder for a LoRA adapter whose recorded base is elsewhere")
    o.set_defaults(func=_onnx)

    f = targets.add_parser(
        "optimize", help="fuse an ONNX artifact's transformer subgraphs with ONNX Runtime's optimizer",
        description="Fuse Attention / EmbedLayerNorm / BiasGelu (and, for GPU, SkipLayerNorm) and validate "
                    "against the parent.",
    )
    f.add_argument("source", help="an fp32 'onnx' artifact")
    f.add_argument("out", help="output artifact directory")
    f.add_argument("--opt-level", type=int, default=1, choices=[0, 1, 2, 99],
                   help="1 (default): portable fusions; 2/99 add ORT-specific ones")
    f.add_argument("--gpu", action="store_true", help="fuse for the CUDA execution provider")
    f.add_argument("--atol", type=float, default=1e-4, help="max abs difference vs the parent (default: 1e-4)")
    f.add_argument("--skip-layer-norm", action=argparse.BooleanOptionalAction, default=None,
                   help="fuse residual Add + LayerNorm into SkipLayerNormalization (default: only with --gpu; "
                        "ONNX Runtime's CPU kernel for it is slower than the unfused ops)")
    f.set_defaults(func=_optimize)

    if importlib.util.find_spec("edgepack.export.gpu_cli") is not None:
        from edgepack.export import gpu_cli

        gpu_cli.add_tensorrt_parser(targets)
        gpu_cli.add_triton_parser(targets)


def _onnx(args) -> int:
    from edgepack.export.onnx_export import OnnxExportConfig, export_onnx

    cfg = OnnxExportConfig(opset=args.opset, task=args.task, atol=args.atol, max_length=args.max_length)
    art = export_onnx(args.source, args.out, cfg, base_model=args.base_model)
    m = art.metrics
    print(f"wrote {art.path}  ({art.task}, {m['size_bytes'] / 1e6:.1f} MB, max |onnx - torch| = {m['max_abs_diff']:.2e})")
    return 0


def _optimize(args) -> int:
    from edgepack.export.fusion import FusionConfig, optimize_onnx

    art = optimize_onnx(args.source, args.out, FusionConfig(
        opt_level=args.opt_level, use_gpu=args.gpu, atol=args.atol, skip_layer_norm=args.skip_layer_norm))
    fused = ", ".join(f"{k} x{v}" for k, v in art.metrics["fused_ops"].items()) or "nothing"
    print(f"wrote {art.path}  (fused: {fused}; max |fused - parent| = {art.metrics['max_abs_diff']:.2e})")
    return 0
