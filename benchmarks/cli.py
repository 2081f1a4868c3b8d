"""`edgepack bench`: latency, throughput, memory and size of artifacts compared in one process."""

from __future__ import annotations

import argparse
import sys

EPILOG = """\
Each ARTIFACT is an edgepack artifact (hf -> torch eager fp32; onnx/tensorrt -> the lean runtime) or a
Hugging Face model folder; write NAME=PATH to choose its name (default: the folder name). All targets are
loaded in one process and timed interleaved on the same texts, so ratios stay meaningful on a busy machine.
Latency is end to end: tokenize + run + post-process, per call of --batch-sizes texts.

examples:
  edgepack bench runs/teacher runs/student-int8 --example
  edgepack bench teacher=runs/teacher int8=runs/int8 --peer runs/teacher --baseline teacher \\
      --example --batch-sizes 1,8 --threads 2 --json bench.json --markdown bench.md
  edgepack bench out/minilm-onnx --seq-lens 16,128 --batch-sizes 1,8
  edgepack bench out/onnx --backend ort-cuda --texts reviews.txt       # GPU backends where present
"""


def _gpu_smoke(args) -> int:
    from edgepack.benchmarks.gpu_smoke import execute

    return execute(args)


def register_gpu_smoke(sub) -> None:
    """``edgepack gpu-smoke``: the same as ``python -m edgepack.benchmarks.gpu_smoke`` (standard library only)."""
    from edgepack.benchmarks.gpu_smoke import __doc__ as doc
    from edgepack.benchmarks.gpu_smoke import add_arguments

    p = sub.add_parser("gpu-smoke", help="one-command GPU check: tests, latency grid, parity (--dry-run on CPU)",
                       description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    p.set_defaults(func=_gpu_smoke)


def register(sub) -> None:
    register_gpu_smoke(sub)
    p = sub.add_parser(
        "bench",
        help="benchmark artifacts (latency, throughput, memory, size) and compare",
        description="Benchmark one or more models in one process and report ratios vs a baseline.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "artifacts", nargs="+", metavar="ARTIFACT", help="artifact or model folder, optionally NAME=PATH"
    )
    p.add_argument("--baseline", help="target name the speed-ups refer to (default: the first ARTIFACT)")
    p.add_argument(
        "--peer",
        metavar="TORCH_MODEL_DIR",
        help="also time the optimum-onnx path a user would otherwise take on this torch model "
        "(ORTModelFor* export=True, ORTQuantizer dynamic int8, avx512_vnni)",
    )
    p.add_argument(
        "--peer-variants",
        default="fp32,dynamic,dynamic-per-channel",
        help="peer variants to time (default: fp32,dynamic,dynamic-per-channel)",
    )
    p.add_argument("--peer-work-dir", help="where the peer exports go and are reused (default: a temp dir)")
    p.add_argument("--batch-sizes", default="1,8", help="comma-separated batch sizes (default: 1,8)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--seq-lens", help="synthetic texts of these token lengths, e.g. 16,128")
    src.add_argument(
        "--texts",
        metavar="FILE",
        help="real texts: a .txt file (one per line) or CSV/TSV/JSONL with a 'text' (and 'label') column",
    )
    src.add_argument(
        "--example",
        action="store_true",
        help="the Rotten Tomatoes validation texts (the default when no source is given)",
    )
    p.add_argument("--num-texts", type=int, default=64, help="texts timed per round (default: 64)")
    p.add_argument(
        "--accuracy",
        action="store_true",
        help="also measure accuracy on all labelled texts (--example or a file with a label column)",
    )
    p.add_argument("--threads", type=int, default=2, help="intra-op threads per target (default: 2)")
    p.add_argument("--warmup", type=int, default=3, help="untimed calls per target and workload (default: 3)")
    p.add_argument("--repeats", type=int, default=3, help="timed passes over the texts (default: 3)")
    p.add_argument(
        "--interleave",
        type=int,
        default=16,
        help="timed calls per target before the next one takes a turn (default: 16)",
    )
    p.add_argument(
        "--settle",
        type=int,
        default=3,
        help="untimed calls at the start of every turn, so a target's weights are back in cache and the "
        "previous library's threads are idle before timing resumes (default: 3)",
    )
    p.add_argument(
        "--min-seconds", type=float, default=0.0, help="keep timing at least this long per workload"
    )
    p.add_argument(
        "--isolated-memory",
        action="store_true",
        help="also measure each target's peak memory alone in a fresh process (a few seconds per target)",
    )
    p.add_argument(
        "--backend", default="auto", help="runtime backend for onnx/tensorrt artifacts (default: auto)"
    )
    p.add_argument("--json", metavar="OUT", help="write the results (with config and environment) as JSON")
    p.add_argument("--markdown", metavar="OUT", help="write the Markdown tables to this file")
    p.set_defaults(func=_bench)


def parse_int_list(value: str, option: str, minimum: int = 1) -> tuple[int, ...]:
    """'1,8' -> (1, 8); raises EdgepackError naming ``option`` for anything else."""
    from edgepack.errors import EdgepackError

    try:
        items = tuple(int(x) for x in value.split(","))
    except ValueError:
        items = ()
    if not items or any(x < minimum for x in items):
        raise EdgepackError(
            f"{option} must be comma-separated integers >= {minimum}, e.g. 1,8; got '{value}'"
        )
    return items


def _targets(args) -> list:
    from pathlib import Path

    from edgepack.benchmarks.targets import PEER_QUANTIZE, Target

    from edgepack.errors import EdgepackError

    targets, names = [], set()
    for spec in args.artifacts:
        name, _, path = spec.partition("=") if "=" in spec else ("", "", spec)
        name = name or Path(path).expanduser().resolve().name
        base, i = name, 2
        while name in names:
            name, i = f"{base}-{i}", i + 1
        names.add(name)
        targets.append(Target.auto(name, path, backend=args.backend))
    if args.peer:
        if not Path(args.peer).expanduser().is_dir():
            raise EdgepackError(f"--peer: torch model folder not found: {args.peer}")
        variants = [v.strip() for v in args.peer_variants.split(",") if v.strip()]
        bad = [v for v in variants if v not in PEER_QUANTIZE]
        if bad or not variants:
            raise EdgepackError(
                f"--peer-variants: unknown {bad or variants}; choose from {', '.join(PEER_QUANTIZE)}"
            )
        short = {"fp32": "optimum-fp32", "dynamic": "optimum-int8", "dynamic-per-channel": "optimum-int8-pc"}
        targets += [
            Target.peer_optimum(short[v], args.peer, quantize=v, work_dir=args.peer_work_dir)
            for v in variants
        ]
    return targets


def _texts(args) -> tuple[list[str] | None, list | None]:
    from pathlib import Path

    from edgepack.errors import EdgepackError

    if args.seq_lens:
        return None, None
    if args.texts and Path(args.texts).suffix.lower() == ".txt":
        try:
            lines = Path(args.texts).read_text(encoding="utf-8").splitlines()
        except OSError as e:
            raise EdgepackError(f"cannot read {args.texts}: {e.strerror}") from None
        texts = [line for line in lines if line.strip()]
        if not texts:
            raise EdgepackError(f"{args.texts} has no texts")
        return texts, None
    if args.texts:
        from edgepack.loaders import read_rows

        rows = read_rows(args.texts)
        if not rows or "text" not in rows[0]:
            raise EdgepackError(f"{args.texts} needs a 'text' column")
        labels = (
            [r.get("label") for r in rows] if all(r.get("label") not in (None, "") for r in rows) else None
        )
        if labels and all(str(v).isdigit() for v in labels):
            labels = [int(v) for v in labels]  # class indices
        return [str(r["text"]) for r in rows], labels
    from edgepack.data import example_spec, load_data

    data = load_data(example_spec())
    return data.val_texts, [data.label_names[i] for i in data.val_labels]


def _bench(args) -> int:
    from edgepack.benchmarks.results import environment
    from edgepack.benchmarks.suite import BenchConfig, run_benchmarks, to_markdown, write_results

    from edgepack.errors import EdgepackError

    batch_sizes = parse_int_list(args.batch_sizes, "--batch-sizes")
    seq_lens = parse_int_list(args.seq_lens, "--seq-lens", minimum=3) if args.seq_lens else None
    if args.num_texts < 1:
        raise EdgepackError("--num-texts must be >= 1")
    targets = _targets(args)
    texts, labels = _texts(args)
    if args.accuracy and labels is None:
        raise EdgepackError("--accuracy needs labelled texts: use --example or a file with a 'label' column")
    if texts is not None and not args.accuracy:
        texts, labels = texts[: args.num_texts], None
    cfg = BenchConfig(
        batch_sizes=batch_sizes,
        threads=args.threads,
        texts=texts,
        seq_lens=seq_lens,
        warmup=args.warmup,
        repeats=args.repeats,
        interleave=args.interleave,
        settle=args.settle,
        min_seconds=args.min_seconds,
        max_timed_texts=args.num_texts,
        isolated_memory=args.isolated_memory,
    )
    rows = run_benchmarks(
        targets,
        cfg,
        baseline=args.baseline,
        labels=labels,
        log=lambda s: print(f"[bench] {s}", file=sys.stderr),
    )
    env = environment(cfg.threads)  # the machine line (CPU and its INT8 features) in every output
    print(to_markdown(rows, env=env))
    write_results(rows, cfg, json_path=args.json, markdown_path=args.markdown, env=env)
    return 0
