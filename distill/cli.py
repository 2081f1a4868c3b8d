"""``edgepack finetune`` and ``edgepack distill``: fill the config dataclasses, call the stage.

Imports only argparse/stdlib at import time; torch & co. are imported by the handlers.
"""

from __future__ import annotations

import argparse
import json

from edgepack.cli_config import Opt, add_config_arguments, overwrite_of

FINETUNE_EPILOG = """\
examples:
  edgepack finetune BASE_DIR runs/teacher                       # full fine-tune on the built-in example
  edgepack finetune BASE_DIR runs/teacher --data reviews.csv --text-column review --label-column stars
  edgepack finetune BASE_DIR runs/teacher --lora --lora-r 8     # LoRA; artifact = merged model + adapter/
Re-running the same command after an interrupt resumes from the last checkpoint (.OUT.work/).
Multi-GPU: accelerate launch --multi_gpu --num_processes N -m edgepack finetune ..."""

DISTILL_EPILOG = """\
examples:
  edgepack distill runs/teacher runs/student3 --layers 3                      # k of n teacher layers
  edgepack distill runs/teacher runs/student2 --layers 2 --features hidden attention
  edgepack distill runs/teacher runs/narrow --layers 3 --hidden-size 256 --heads 4 \\
      --intermediate-size 1024 --init truncated --features hidden
loss = alpha*KL(T) + (1-alpha)*CE + feature terms (default map: student block i <- teacher block
round((i+1)*n/k)-1). --layer-map takes JSON: '[{"layer_T": 5, "layer_S": 2, "feature": "hidden"}]'.
  edgepack distill runs/teacher runs/s --init pretrained --student-model runs/minilm-l3   # own tokenizer
  edgepack distill runs/teacher runs/s --transfer unlabeled.txt --augment-copies 1       # + transfer set
An embedding (feature-extraction) teacher gives an embedding student trained on its pooled embeddings:
  edgepack distill MINILM_DIR runs/emb3 --layers 3 --data texts.csv --label-column none --embedding-loss cosine"""


def _add_data(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data (default: the built-in Rotten Tomatoes example)")
    g.add_argument("--data", metavar="FILE", help="CSV / TSV / JSONL / Parquet file")
    g.add_argument("--text-column", default="text", help="column with the text (default: %(default)s)")
    g.add_argument("--text-pair-column", help="optional second text column (sentence pairs)")
    g.add_argument("--label-column", default="label",
                   help="label column (default: %(default)s); 'none' = unlabeled, the teacher labels it")
    g.add_argument("--labels", nargs="+", metavar="NAME", help="label names in index order (rejects others)")
    g.add_argument("--val-fraction", type=float, default=0.1, help="validation share (default: %(default)s)")
    g.add_argument("--max-examples", type=int, help="use a seeded sample of at most N rows")


def _train_options() -> dict[str, Opt]:
    """Flag names and help for config fields (the rest: --<field-name>; --help shows the dataclass default)."""
    from edgepack.train import MIXED_PRECISION

    return {
        "train.lr": Opt(help="peak learning rate"),
        "train.warmup_ratio": Opt(help="linear warm-up share of the optimizer steps"),
        "train.grad_accum": Opt(help="gradient accumulation steps"),
        "train.max_length": Opt(help="truncate texts to N tokens"),
        "train.checkpoint_every": Opt(help="resumable checkpoint every N optimizer steps (0 = at epoch ends only)",
                                      metavar="STEPS"),
        "train.patience": Opt(help="early-stop after N epochs without gain (0 = off)"),
        "train.mixed_precision": Opt(help="auto = bf16/fp16 on CUDA, none on CPU", choices=MIXED_PRECISION),
        "train.max_steps": Opt(help="stop after N optimizer steps (quick runs)"),
        "train.freeze_embeddings": Opt(help="keep word embeddings fixed (faster on CPU)"),
        "train.progress": Opt(help="progress bar"),
    }


def _finetune_options() -> dict[str, Opt]:
    from edgepack.distill.configs import QUANTIZED_BASES

    return {
        **_train_options(),
        "lora.r": Opt(help="LoRA rank"),
        "lora.alpha": Opt(help="LoRA scale"),
        "lora.target_modules": Opt("--lora-targets", "module names", default_text="peft's choice, query/value for BERT"),
        "lora.quantize_base": Opt("--quantize-base", "QLoRA on a bitsandbytes base (CUDA)", choices=QUANTIZED_BASES),
        "merge_tolerance": Opt(help="max |merged - adapter| logits after merging the LoRA weights"),
    }


def _distill_options() -> dict[str, Opt]:
    from edgepack.distill.configs import CACHES, EMBEDDING_LOSSES
    from edgepack.distill.student import INITS

    return {
        **_train_options(),
        "student.num_layers": Opt("--layers", "student blocks"),
        "student.layers": Opt("--from-layers", "teacher blocks to copy (0-based)", metavar="I",
                              default_text="round((i+1)*n/k)-1"),
        "student.hidden_size": Opt(help="narrower student (needs --init truncated or random)", default_text="the teacher's"),
        "student.num_heads": Opt("--heads", "attention heads", default_text="the teacher's"),
        "student.intermediate_size": Opt(help="feed-forward size", default_text="the teacher's"),
        "student.init": Opt(help="how the student's weights start", choices=INITS),
        "student.model": Opt("--student-model", "pretrained student (with --init pretrained): model folder or "
                             "'hf' artifact; it keeps its own tokenizer", metavar="DIR"),
        "transfer.path": Opt("--transfer", "unlabeled transfer texts the teacher labels: .txt (one per line) "
                             "or CSV/TSV/JSONL/Parquet", metavar="FILE"),
        "transfer.augment_copies": Opt("--augment-copies", "augmented copies per transfer text (or per training "
                                       "text without --transfer)"),
        "temperature": Opt(help="softmax temperature"),
        "alpha_kd": Opt("--alpha", "weight of the soft-target KL"),
        "features": Opt(help="feature losses through the default layer map: hidden, attention, embedding"),
        "layer_map": Opt(help="explicit layer map as JSON (overrides --features)", parse=json.loads, metavar="JSON"),
        "cache": Opt(help="where cached teacher outputs live", choices=CACHES),
        "embedding.loss": Opt(help="embedding teachers: loss on pooled embeddings", choices=EMBEDDING_LOSSES),
        "embedding.eval_examples": Opt(help="embedding teachers: validation texts for the neighbour metrics"),
        "embedding.probe_examples": Opt(help="embedding teachers: training texts for the linear probe (0 = none)"),
    }


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``finetune`` and ``distill`` subcommands."""
    from edgepack.distill.configs import DistillConfig, FinetuneConfig

    fmt = argparse.RawDescriptionHelpFormatter
    p = sub.add_parser("finetune", help="fine-tune a teacher (full or LoRA) on labelled text",
                       description="Fine-tune an encoder for text classification; writes an 'hf' artifact.",
                       epilog=FINETUNE_EPILOG, formatter_class=fmt)
    p.add_argument("base", help="Hugging Face model folder or 'hf' artifact")
    p.add_argument("out", help="output artifact directory")
    p.add_argument("--lora", action="store_true", help="train LoRA adapters (peft) instead of all weights "
                                                       "(any --lora-* option implies it)")
    _add_data(p)
    add_config_arguments(p, FinetuneConfig, options=_finetune_options(), prefixes={"train": ""},
                         groups={"": "fine-tuning", "train": "training", "lora": "LoRA"})
    p.set_defaults(func=_run_finetune)

    p = sub.add_parser("distill", help="distill a fine-tuned teacher into a smaller student",
                       description="Knowledge distillation into a student; writes an 'hf' artifact.",
                       epilog=DISTILL_EPILOG, formatter_class=fmt)
    p.add_argument("teacher", help="teacher: HF folder, PEFT adapter folder or 'hf' artifact")
    p.add_argument("out", help="output artifact directory")
    _add_data(p)
    add_config_arguments(p, DistillConfig, options=_distill_options(), prefixes={"train": "", "student": ""},
                         groups={"": "losses", "train": "training", "student": "student", "transfer": "transfer set"})
    p.set_defaults(func=_run_distill)


def _data_spec(a: argparse.Namespace):
    from edgepack.data import DataSpec, example_spec

    if not a.data:
        return example_spec(val_fraction=a.val_fraction, max_examples=a.max_examples)
    return DataSpec(path=a.data, text_column=a.text_column, text_pair_column=a.text_pair_column,
                    label_column=None if a.label_column.lower() == "none" else a.label_column,
                    val_fraction=a.val_fraction, max_examples=a.max_examples,
                    labels=tuple(a.labels) if a.labels else None)


def _report(art) -> None:
    keep = ("accuracy", "macro_f1", "teacher_accuracy", "params", "teacher_params", "merge_max_abs_diff",
            "train_seconds", "mean_cosine_vs_teacher", "nn_agreement", "recall_at_10", "probe_accuracy",
            "teacher_probe_accuracy", "embedding_dim")
    print(json.dumps({"artifact": str(art.path), **{k: v for k, v in art.metrics.items() if k in keep}}, indent=2))


def finetune_config(a: argparse.Namespace):
    """The FinetuneConfig: --config file, then explicit flags; --lora (or any --lora-* option) turns LoRA on."""
    from edgepack.cli_config import config_from_args

    return config_from_args(a, override={"lora": {}} if a.lora else None)


def distill_config(a: argparse.Namespace):
    """The DistillConfig: --config file, then explicit flags."""
    from edgepack.cli_config import config_from_args

    return config_from_args(a)


def _run_finetune(a: argparse.Namespace) -> int:
    from edgepack.distill.finetune import finetune

    _report(finetune(a.base, _data_spec(a), finetune_config(a), a.out, overwrite=overwrite_of(a)))
    return 0


def _run_distill(a: argparse.Namespace) -> int:
    from edgepack.distill.api import distill

    cfg = distill_config(a)
    _report(distill(a.teacher, _data_spec(a), cfg, a.out, overwrite=overwrite_of(a)))
    return 0
