"""``edgepack prune``: fills a PruneConfig from flags and calls ``edgepack.prune.api.prune``.

Only argparse/stdlib are imported here; torch and transformers load inside the handler.
"""

from __future__ import annotations

import argparse
import json

EPILOG = """\
what it does (in this order):
  --drop-layers    remove whole encoder layers
  --heads F        remove the least important share F of attention heads (Taylor scores on real batches)
  --ffn F          remove the share F of FFN neurons in every layer (the matrices really shrink)
  --sparsity S     zero the S smallest-magnitude encoder weights (global threshold; dense files, gzip shrinks)
  --two-four       2:4 semi-structured mask for GPUs with sparse tensor cores
  --recovery-steps N  fine-tune N steps on the teacher's soft targets (teacher: --teacher, else the unpruned model)
The result is an `hf` artifact that reloads with from_pretrained; its manifest records removed heads and
neurons, parameter count, sparsity, accuracy before/after and the torch latency ratio at batch 8.

examples:
  edgepack prune runs/student3 runs/pruned --ffn 0.5 --recovery-steps 150 --teacher runs/teacher
  edgepack prune runs/teacher runs/heads --heads 0.25 --data reviews.csv --text-column review
  edgepack prune runs/teacher runs/sparse --sparsity 0.5
  edgepack prune runs/teacher runs/p --config prune.json     # a PruneConfig as JSON (flags override)
"""


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``prune`` to the edgepack command line (the every-variant demo: examples/prune_demo.py)."""
    p = sub.add_parser("prune", help="structured (heads, FFN neurons, layers) and unstructured pruning",
                       description="Prune a torch model (HF folder, LoRA adapter or hf artifact) into an hf artifact.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", help="model folder, PEFT adapter folder or edgepack hf artifact")
    p.add_argument("out", help="output artifact directory (replaced atomically)")
    p.add_argument("--config", help="PruneConfig as a JSON file; flags given explicitly override it")
    p.add_argument("--heads", type=float, dest="head_fraction", help="share of attention heads to remove [0,1) (default 0)")
    p.add_argument("--head-scope", choices=["global", "layer"], help="rank heads across layers or per layer (default global)")
    p.add_argument("--ffn", type=float, dest="ffn_fraction", help="share of FFN neurons removed per layer [0,1) (default 0)")
    p.add_argument("--drop-layers", help="comma-separated layer indices to remove, e.g. 1,3 or -1")
    p.add_argument("--sparsity", type=float, help="global magnitude sparsity of encoder weights [0,1) (default 0)")
    p.add_argument("--two-four", action="store_true", default=None, dest="semi_structured_24",
                   help="2:4 semi-structured mask on encoder Linear weights")
    p.add_argument("--importance", choices=["auto", "taylor", "activation"],
                   help="unit scoring: taylor (labelled loss gradient), activation (no labels); default auto")
    p.add_argument("--importance-examples", type=int, help="training texts used for scoring (default 512)")
    p.add_argument("--recovery-steps", type=int, help="recovery fine-tune steps (default 0 = none)")
    p.add_argument("--recovery-lr", type=float, help="recovery learning rate (default 1e-4)")
    p.add_argument("--teacher", help="model whose soft targets drive recovery (default: the unpruned source)")
    p.add_argument("--eval-examples", type=int, help="validation texts to evaluate (default: all)")
    p.add_argument("--latency-runs", type=int, help="timed batch-8 runs per model, 0 = skip (default 10)")
    _data_args(p)
    p.set_defaults(func=_run_prune)


def _data_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data (default: the embedded Rotten Tomatoes example)")
    g.add_argument("--data", help="CSV/TSV/JSONL/Parquet file with texts and labels")
    g.add_argument("--text-column", default="text", help="text column (default text)")
    g.add_argument("--label-column", default="label", help="label column (default label)")


def _config(args: argparse.Namespace):
    from pathlib import Path

    from edgepack.prune.config import PruneConfig

    from edgepack.errors import EdgepackError

    base = {}
    if args.config:
        try:
            base = json.loads(Path(args.config).read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise EdgepackError(f"cannot read --config {args.config}: {e}") from None
    for key in ("head_fraction", "head_scope", "ffn_fraction", "sparsity", "semi_structured_24", "importance",
                "importance_examples", "eval_examples", "latency_runs"):
        if getattr(args, key) is not None:
            base[key] = getattr(args, key)
    if args.drop_layers:
        try:
            base["drop_layers"] = [int(x) for x in args.drop_layers.split(",") if x.strip()]
        except ValueError:
            raise EdgepackError(f"--drop-layers takes comma-separated integers, got {args.drop_layers!r}") from None
    rec = dict(base.get("recovery") or {})
    if args.recovery_steps is not None:
        rec["steps"] = args.recovery_steps
    if args.recovery_lr is not None:
        rec["lr"] = args.recovery_lr
    if rec:
        base["recovery"] = rec
    return PruneConfig.from_dict(base).validate()


def _run_prune(args: argparse.Namespace) -> int:
    from edgepack.distill.data import DataSpec
    from edgepack.prune.api import prune

    cfg = _config(args)
    data = DataSpec(path=args.data, text_column=args.text_column, label_column=args.label_column) if args.data else None
    art = prune(args.source, data, cfg, args.out, teacher=args.teacher, progress=True)
    m, x = art.metrics, art.extra
    print(f"wrote {art.path}")
    print(f"  params {x['params_before']:,} -> {m['params']:,}; heads/layer {x['heads_per_layer']}; "
          f"ffn size {x['ffn_size']}; target sparsity {m['target_sparsity']:.3f}")
    if "accuracy" in m and "accuracy" in x["before"]:
        print(f"  accuracy {x['before']['accuracy']:.4f} -> {m['accuracy']:.4f} "
              f"(drop {x['accuracy_drop_points']:.2f} points)")
    if "latency_speedup_b8" in m:
        print(f"  torch eager CPU speed-up at batch 8 (same process): {m['latency_speedup_b8']:.2f}x")
    return 0
