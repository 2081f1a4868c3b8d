"""``edgepack prune``: fills a PruneConfig (``--config FILE``, then flags derived from its fields) and calls
``edgepack.prune.api.prune``.

Only argparse/stdlib are imported here; torch and transformers load inside the handler.
"""

from __future__ import annotations

import argparse

EPILOG = """\
what it does (in this order):
  --drop-layers    remove whole encoder layers
  --heads F        remove the least important share F of attention heads (Taylor scores on real batches)
  --ffn F          remove the share F of FFN neurons in every layer (the matrices really shrink)
  --sparsity S     zero the S smallest-magnitude encoder weights (global threshold; dense files, gzip shrinks)
  --two-four       2:4 semi-structured mask for GPUs with sparse tensor cores
  --recovery-steps N  distill N steps from the teacher (--teacher, else the unpruned model); resumable
The result is an `hf` artifact that reloads with from_pretrained; its manifest records removed heads and
neurons, parameter count, sparsity, accuracy before/after and the torch latency ratio at batch 8.

examples:
  edgepack prune runs/student3 runs/pruned --ffn 0.5 --recovery-steps 150 --teacher runs/teacher
  edgepack prune runs/teacher runs/heads --heads 0.25 --data reviews.csv --text-column review
  edgepack prune runs/teacher runs/sparse --sparsity 0.5
  edgepack prune runs/teacher runs/p --config prune.yaml     # a PruneConfig as YAML/JSON (flags override)
"""


def _options() -> dict:
    """Flag names and help for PruneConfig fields (the rest: --<field-name>; --help shows the dataclass default)."""
    from edgepack.prune.config import HEAD_SCOPES, IMPORTANCE_METHODS

    from edgepack.cli_config import Opt

    return {
        "head_fraction": Opt("--heads", "share of attention heads to remove, in [0, 1)"),
        "head_scope": Opt(help="rank heads across layers (global) or per layer", choices=HEAD_SCOPES),
        "ffn_fraction": Opt("--ffn", "share of FFN neurons removed per layer, in [0, 1)"),
        "ffn_multiple_of": Opt(help="round the kept FFN size to a multiple of N"),
        "drop_layers": Opt(help="layer indices to remove, e.g. 1,3 or -1"),
        "sparsity": Opt(help="global magnitude sparsity of encoder weights, in [0, 1)"),
        "semi_structured_24": Opt("--two-four", "2:4 semi-structured mask on encoder Linear weights"),
        "include_embeddings": Opt(help="also magnitude-prune the word embeddings"),
        "importance": Opt(help="unit scoring: taylor (labelled loss gradient), activation (no labels)",
                          choices=IMPORTANCE_METHODS),
        "importance_examples": Opt(help="training texts used for scoring"),
        "eval_examples": Opt(help="validation texts to evaluate", default_text="all"),
        "latency_runs": Opt(help="timed batch-8 runs per model, 0 = skip"),
        "recovery.steps": Opt(help="recovery distillation steps on the core trainer (0 = none)"),
        "recovery.lr": Opt(help="recovery learning rate"),
        "recovery.alpha_kd": Opt(help="weight of the soft-target KL (1 - it on the gold labels)"),
        "recovery.checkpoint_every": Opt(help="resumable recovery checkpoint every N steps (0 = at epoch ends only)",
                                         metavar="STEPS"),
    }


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``prune`` to the edgepack command line (the every-variant demo: examples/prune_demo.py)."""
    from edgepack.prune.config import PruneConfig

    from edgepack.cli_config import add_config_arguments

    p = sub.add_parser("prune", help="structured (heads, FFN neurons, layers) and unstructured pruning",
                       description="Prune a torch model (HF folder, LoRA adapter or hf artifact) into an hf artifact.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", help="model folder, PEFT adapter folder or edgepack hf artifact")
    p.add_argument("out", help="output artifact directory (replaced atomically)")
    p.add_argument("--teacher", help="model whose soft targets drive recovery (default: the unpruned source)")
    add_config_arguments(p, PruneConfig, options=_options(),
                         groups={"": "what to remove and how to score it", "recovery": "recovery"})
    _data_args(p)
    p.set_defaults(func=_run_prune)


def _data_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data (default: the embedded Rotten Tomatoes example)")
    g.add_argument("--data", help="CSV/TSV/JSONL/Parquet file with texts and labels")
    g.add_argument("--text-column", default="text", help="text column (default text)")
    g.add_argument("--label-column", default="label", help="label column (default label)")


def _config(args: argparse.Namespace):
    """The PruneConfig: --config file, then the flags given explicitly."""
    from edgepack.cli_config import config_from_args

    return config_from_args(args)


def _run_prune(args: argparse.Namespace) -> int:
    from edgepack.prune.api import prune

    from edgepack.cli_config import overwrite_of
    from edgepack.data import DataSpec

    cfg = _config(args)
    data = DataSpec(path=args.data, text_column=args.text_column, label_column=args.label_column) if args.data else None
    art = prune(args.source, data, cfg, args.out, teacher=args.teacher, progress=True,
                overwrite=overwrite_of(args))
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
