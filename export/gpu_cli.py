"""`edgepack export tensorrt|triton`: argparse only at import time; stages imported when a command runs."""

from __future__ import annotations

import argparse

from edgepack.cli_config import Opt, add_config_arguments, overwrite_of

TRT_EXAMPLES = """\
examples:
  edgepack export tensorrt out/onnx out/trt-fp16                       # FP16, batch 1..32, seq 1..max_length
  edgepack export tensorrt out/onnx out/trt --batch 1,8,32 --seq 1,64,128 --seq-buckets 32
  edgepack export tensorrt out/onnx out/trt-int8 --precision int8 --calib-data reviews.txt
  edgepack export tensorrt out/onnx-qdq out/trt-int8 --precision int8  # Q/DQ graph: no calibration
  edgepack export tensorrt out/onnx-24 out/trt-sparse --sparse-weights  # 2:4-pruned weights

Needs TensorRT (pip install "edgepack[gpu-tools]") and an NVIDIA GPU. The engine only loads with the
same TensorRT version on the same GPU architecture; both are recorded in the manifest and checked."""

TRITON_EXAMPLES = """\
examples:
  edgepack export triton out/onnx out/triton --name student           # onnxruntime backend + text ensemble
  edgepack export triton out/trt-fp16 out/triton --name student       # tensorrt_plan backend
  edgepack export triton out/onnx out/triton --tokenizer client --instance-kind cpu
then:  tritonserver --model-repository=out/triton     (see out/triton/README.md and docs/gpu.md)"""


def add_tensorrt_parser(targets) -> None:
    """Add ``export tensorrt`` to the ``export`` sub-parsers."""
    from edgepack.export.trt_engine import PRECISIONS, TrtBuildConfig

    from edgepack.contract import ShapeRange

    r = ShapeRange()
    t = targets.add_parser(
        "tensorrt",
        help="ONNX artifact -> TensorRT engine (FP16/INT8, profiles, timing cache)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=TRT_EXAMPLES,
        description="Build a serialized TensorRT engine from an 'onnx' artifact with the TensorRT Python API.",
    )
    t.add_argument(
        "source", help="an 'onnx' artifact (fp32, or Q/DQ static INT8; not fused, not dynamic INT8)"
    )
    t.add_argument("out", help="output artifact directory")
    t.add_argument(
        "--batch",
        help=f"MIN,OPT,MAX batch sizes of the profile (default: {r.min_batch},{r.opt_batch},{r.max_batch})",
    )
    t.add_argument("--seq", help="MIN,OPT,MAX sequence lengths (default: 1,min(128,max_length),max_length)")
    t.add_argument("--calib-data", help="INT8 calibration texts: a file with one text per line")
    t.add_argument("--device", type=int, default=0, help="CUDA device id (default: 0)")
    add_config_arguments(
        t,
        TrtBuildConfig,
        skip=("shapes",),  # --batch / --seq (a --config file may give shapes: {min_batch: ...})
        groups={"": "engine"},
        options={
            "precision": Opt(help="int8 keeps fp16 for the rest", choices=PRECISIONS),
            "seq_buckets": Opt(
                help="split the sequence range into extra profiles at these lengths, e.g. 32,64 "
                "(short inputs then run on kernels tuned for them)"
            ),
            "sparse_weights": Opt(help="enable 2:4 sparse kernels (2:4-pruned models)"),
            "workspace_mb": Opt(help="builder workspace limit in MiB"),
            "optimization_level": Opt("--opt-level", "builder optimization level", choices=range(6)),
            "timing_cache": Opt(help="timing-cache file shared across builds (read, then updated)", metavar="FILE"),
            "calibration_cache": Opt(help="reuse INT8 scales from this cache (skips calibration)", metavar="FILE"),
            "calib_batch_size": Opt("--calib-batch", "calibration batch size"),
            "calib_max_batches": Opt("--calib-batches", "max calibration batches"),
            "calib_seq": Opt(help="calibration sequence length", default_text="the profile's OPT length"),
        },
    )
    t.set_defaults(func=_tensorrt)


def add_triton_parser(targets) -> None:
    """Add ``export triton`` to the ``export`` sub-parsers."""
    from edgepack.export.triton_repo import KINDS, ORT_TRT_PRECISIONS, TOKENIZER_MODES, TritonConfig

    r = targets.add_parser(
        "triton",
        help="ONNX or TensorRT artifact -> Triton model repository (checked)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=TRITON_EXAMPLES,
        description="Write a Triton model repository (config.pbtxt, versioned model file, tokenizer step) "
        "and check it structurally against the model graph.",
    )
    r.add_argument(
        "source", help="an 'onnx' artifact (onnxruntime backend) or 'tensorrt' artifact (tensorrt backend)"
    )
    r.add_argument("out", help="output repository directory (an edgepack 'triton' artifact)")
    add_config_arguments(
        r,
        TritonConfig,
        groups={"": "repository"},
        options={
            "model_name": Opt("--name", "model name in Triton"),
            "max_batch_size": Opt("--max-batch", "max_batch_size (0 disables batching)"),
            "preferred_batch_sizes": Opt("--preferred-batch", "dynamic batching preferred sizes"),
            "max_queue_delay_us": Opt("--queue-delay-us", "max queue delay in microseconds"),
            "instance_count": Opt("--instances", "instances per device"),
            "instance_kind": Opt(choices=tuple(KINDS)),
            "gpus": Opt(help="GPU ids for the instances, e.g. 0,1", default_text="all"),
            "tokenizer": Opt(
                help="ensemble: Python-backend tokenizer + ensemble taking raw TEXT; "
                "client: callers send token ids (see the repository README)",
                choices=TOKENIZER_MODES,
            ),
            "pad_to_multiple_of": Opt(
                "--pad-multiple", "tokenizer step pads lengths to a multiple of this so requests batch together"
            ),
            "ort_trt_accelerator": Opt(
                "--ort-trt", "onnxruntime backend: run through its TensorRT accelerator", choices=ORT_TRT_PRECISIONS
            ),
            "version": Opt("--model-version", "model version directory"),
        },
    )
    r.set_defaults(func=_triton)


def tensorrt_config(args, max_length: int):
    """The TrtBuildConfig: the profile's sequence range defaults to the model's ``max_length``; then the
    --config file, then explicit flags (--batch / --seq set ``shapes``)."""
    from edgepack.runtime.trt_profiles import parse_range

    from edgepack.cli_config import config_from_args

    shapes = {}
    if args.batch:
        shapes.update(zip(("min_batch", "opt_batch", "max_batch"), parse_range(args.batch, "--batch")))
    if args.seq:
        shapes.update(zip(("min_seq", "opt_seq", "max_seq"), parse_range(args.seq, "--seq")))
    base = {"shapes": {"min_seq": 1, "opt_seq": min(128, max_length), "max_seq": max_length}}
    return config_from_args(args, base=base, override={"shapes": shapes} if shapes else None)


def _tensorrt(args) -> int:
    from pathlib import Path

    from edgepack.export.trt_engine import build_engine

    from edgepack.artifact import Artifact
    from edgepack.errors import EdgepackError

    art = Artifact.open(args.source).require(format="onnx")
    cfg = tensorrt_config(args, art.runtime.max_length or 512)
    texts = None
    if args.calib_data:
        try:
            lines = Path(args.calib_data).read_text(encoding="utf-8").splitlines()
        except OSError as e:
            raise EdgepackError(f"cannot read calibration data {args.calib_data}: {e}") from None
        texts = [line.strip() for line in lines if line.strip()]
    out = build_engine(art, args.out, cfg, calibration_texts=texts, device=args.device,
                       overwrite=overwrite_of(args))
    e = out.runtime
    print(
        f"wrote {out.path}  ({e.precision}, int8: {e.int8_mode}, {len(e.profiles)} profile(s), "
        f"TensorRT {e.tensorrt_version} on {e.gpu_name} sm{e.compute_capability}, "
        f"{out.metrics['size_bytes'] / 1e6:.1f} MB in {out.metrics['build_seconds']:.0f} s)"
    )
    return 0


def _triton(args) -> int:
    from edgepack.export.triton_repo import export_triton

    from edgepack.cli_config import config_from_args

    art = export_triton(args.source, args.out, config_from_args(args), overwrite=overwrite_of(args))
    entry = art.runtime.ensemble or art.runtime.model_name
    print(f"wrote {art.path}  ({art.runtime.platform}; structural check passed; send requests to '{entry}')")
    print(f"start: tritonserver --model-repository={art.path}")
    return 0
