"""`edgepack export onnx|optimize|...`: argparse only at import time; the stages are imported when run."""

from __future__ import annotations

import argparse
import importlib.util

from edgepack.cli_config import Opt, add_config_arguments, overwrite_of


def register(sub) -> None:
    from edgepack.export.fusion import OPT_LEVELS, FusionConfig
    from edgepack.export.onnx_export import TASKS, OnnxExportConfig

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
    o.add_argument("--base-model", help="base model folder for a LoRA adapter whose recorded base is elsewhere")
    add_config_arguments(o, OnnxExportConfig, groups={"": "export"}, options={
        "opset": Opt(help="ONNX opset"),
        "task": Opt(help="what the graph outputs", choices=TASKS, default_text="from the model's architecture"),
        "atol": Opt(help="max abs difference vs torch"),
        "max_length": Opt(help="runtime truncation length", default_text="the model's limit, <= 512"),
    })
    o.set_defaults(func=_onnx)

    f = targets.add_parser(
        "optimize", help="fuse an ONNX artifact's transformer subgraphs with ONNX Runtime's optimizer",
        description="Fuse Attention / EmbedLayerNorm / BiasGelu (and, for GPU, SkipLayerNorm) and validate "
                    "against the parent.",
    )
    f.add_argument("source", help="an fp32 'onnx' artifact")
    f.add_argument("out", help="output artifact directory")
    add_config_arguments(f, FusionConfig, groups={"": "fusion"}, options={
        "opt_level": Opt(help="1: portable fusions; 2/99 add ORT-specific ones", choices=OPT_LEVELS),
        "use_gpu": Opt("--gpu", "fuse for the CUDA execution provider"),
        "atol": Opt(help="max abs difference vs the parent"),
        "skip_layer_norm": Opt(help="fuse residual Add + LayerNorm into SkipLayerNormalization (ONNX Runtime's "
                                    "CPU kernel for it is slower than the unfused ops)", default_text="only with --gpu"),
    })
    f.set_defaults(func=_optimize)

    if importlib.util.find_spec("edgepack.export.gpu_cli") is not None:
        from edgepack.export import gpu_cli

        gpu_cli.add_tensorrt_parser(targets)
        gpu_cli.add_triton_parser(targets)


def _onnx(args) -> int:
    from edgepack.export.onnx_export import export_onnx

    from edgepack.cli_config import config_from_args

    art = export_onnx(args.source, args.out, config_from_args(args), base_model=args.base_model,
                      overwrite=overwrite_of(args))
    m = art.metrics
    print(f"wrote {art.path}  ({art.task}, {m['size_bytes'] / 1e6:.1f} MB, max |onnx - torch| = {m['max_abs_diff']:.2e})")
    return 0


def _optimize(args) -> int:
    from edgepack.export.fusion import optimize_onnx

    from edgepack.cli_config import config_from_args

    art = optimize_onnx(args.source, args.out, config_from_args(args), overwrite=overwrite_of(args))
    fused = ", ".join(f"{k} x{v}" for k, v in art.metrics["fused_ops"].items()) or "nothing"
    print(f"wrote {art.path}  (fused: {fused}; max |fused - parent| = {art.metrics['max_abs_diff']:.2e})")
    return 0
