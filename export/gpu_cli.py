"""`edgepack export tensorrt|triton`: argparse only at import time; stages imported when a command runs."""

from __future__ import annotations

import argparse

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
    t.add_argument("--precision", choices=["fp32", "fp16", "int8"], default="fp16", help="default: fp16")
    t.add_argument(
        "--batch", default="1,8,32", help="MIN,OPT,MAX batch sizes of the profile (default: 1,8,32)"
    )
    t.add_argument("--seq", help="MIN,OPT,MAX sequence lengths (default: 1,min(128,max_length),max_length)")
    t.add_argument(
        "--seq-buckets",
        default="",
        help="split the sequence range into extra profiles at these "
        "lengths, e.g. 32,64 (short inputs then run on kernels tuned for them)",
    )
    t.add_argument(
        "--sparse-weights", action="store_true", help="enable 2:4 sparse kernels (2:4-pruned models)"
    )
    t.add_argument(
        "--workspace-mb", type=int, default=2048, help="builder workspace limit in MiB (default: 2048)"
    )
    t.add_argument(
        "--opt-level", type=int, default=3, choices=range(6), help="builder optimization level (default: 3)"
    )
    t.add_argument("--timing-cache", help="timing-cache file shared across builds (read, then updated)")
    t.add_argument("--calib-data", help="INT8 calibration texts: a file with one text per line")
    t.add_argument("--calibration-cache", help="reuse INT8 scales from this cache (skips calibration)")
    t.add_argument("--calib-batch", type=int, default=8, help="calibration batch size (default: 8)")
    t.add_argument("--calib-batches", type=int, default=32, help="max calibration batches (default: 32)")
    t.add_argument("--device", type=int, default=0, help="CUDA device id (default: 0)")
    t.set_defaults(func=_tensorrt)


def add_triton_parser(targets) -> None:
    """Add ``export triton`` to the ``export`` sub-parsers."""
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
    r.add_argument("--name", default="edgepack_model", help="model name in Triton (default: edgepack_model)")
    r.add_argument(
        "--max-batch", type=int, default=32, help="max_batch_size (default: 32; 0 disables batching)"
    )
    r.add_argument(
        "--preferred-batch", default="8,16,32", help="dynamic batching preferred sizes (default: 8,16,32)"
    )
    r.add_argument(
        "--queue-delay-us", type=int, default=100, help="max queue delay in microseconds (default: 100)"
    )
    r.add_argument("--instances", type=int, default=1, help="instances per device (default: 1)")
    r.add_argument("--instance-kind", choices=["gpu", "cpu", "auto"], default="gpu", help="default: gpu")
    r.add_argument("--gpus", default="", help="GPU ids for the instances, e.g. 0,1 (default: all)")
    r.add_argument(
        "--tokenizer",
        choices=["ensemble", "client"],
        default="ensemble",
        help="ensemble: Python-backend tokenizer + ensemble taking raw TEXT (default); "
        "client: callers send token ids (see the repository README)",
    )
    r.add_argument(
        "--pad-multiple",
        type=int,
        default=16,
        help="tokenizer step pads lengths to a multiple of this so requests batch together (default: 16)",
    )
    r.add_argument(
        "--ort-trt",
        choices=["FP32", "FP16"],
        help="onnxruntime backend: run through its TensorRT accelerator",
    )
    r.set_defaults(func=_triton)


def _ints(text: str) -> tuple[int, ...]:
    from edgepack.errors import EdgepackError

    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise EdgepackError(f"expected comma-separated integers, got {text!r}") from None


def _tensorrt(args) -> int:
    from edgepack.export.trt_engine import TrtBuildConfig, build_engine
    from edgepack.runtime.trt_profiles import parse_range

    from edgepack.artifact import Artifact
    from edgepack.contract import ShapeRange
    from edgepack.errors import EdgepackError

    art = Artifact.open(args.source).require(format="onnx")
    limit = art.runtime.max_length or 512
    seq = parse_range(args.seq, "--seq") if args.seq else (1, min(128, limit), limit)
    shapes = ShapeRange(*parse_range(args.batch, "--batch"), *seq)
    texts = None
    if args.calib_data:
        try:
            texts = [line.strip() for line in open(args.calib_data, encoding="utf-8") if line.strip()]
        except OSError as e:
            raise EdgepackError(f"cannot read calibration data {args.calib_data}: {e}") from None
    cfg = TrtBuildConfig(
        precision=args.precision,
        shapes=shapes,
        seq_buckets=_ints(args.seq_buckets),
        sparse_weights=args.sparse_weights,
        workspace_mb=args.workspace_mb,
        optimization_level=args.opt_level,
        timing_cache=args.timing_cache,
        calibration_cache=args.calibration_cache,
        calib_batch_size=args.calib_batch,
        calib_max_batches=args.calib_batches,
    )
    out = build_engine(art, args.out, cfg, calibration_texts=texts, device=args.device)
    e = out.runtime
    print(
        f"wrote {out.path}  ({e.precision}, int8: {e.int8_mode}, {len(e.profiles)} profile(s), "
        f"TensorRT {e.tensorrt_version} on {e.gpu_name} sm{e.compute_capability}, "
        f"{out.metrics['size_bytes'] / 1e6:.1f} MB in {out.metrics['build_seconds']:.0f} s)"
    )
    return 0


def _triton(args) -> int:
    from edgepack.export.triton_repo import TritonConfig, export_triton

    cfg = TritonConfig(
        model_name=args.name,
        max_batch_size=args.max_batch,
        preferred_batch_sizes=_ints(args.preferred_batch),
        max_queue_delay_us=args.queue_delay_us,
        instance_count=args.instances,
        instance_kind=args.instance_kind,
        gpus=_ints(args.gpus),
        tokenizer=args.tokenizer,
        pad_to_multiple_of=args.pad_multiple,
        ort_trt_accelerator=args.ort_trt,
    )
    art = export_triton(args.source, args.out, cfg)
    entry = art.runtime.ensemble or art.runtime.model_name
    print(f"wrote {art.path}  ({art.runtime.platform}; structural check passed; send requests to '{entry}')")
    print(f"start: tritonserver --model-repository={art.path}")
    return 0
