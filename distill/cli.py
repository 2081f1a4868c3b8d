"""``edgepack finetune`` and ``edgepack distill``: fill the config dataclasses, call the stage.

Imports only argparse/stdlib at import time; torch & co. are imported by the handlers.
"""

from __future__ import annotations

import argparse
import json

FINETUNE_EPILOG = """\
examples:
  edgepack finetune BASE_DIR runs/teacher                       # full fine-tune on the built-in example
  edgepack finetune BASE_DIR runs/teacher --data reviews.csv --text-column review --label-column stars
  edgepack finetune BASE_DIR runs/teacher --lora --lora-r 8     # LoRA; artifact = merged model + adapter/
Re-running the same command after an interrupt resumes from the last checkpoint (.OUT.work/).
Multi-GPU: accelerate launch --multi_gpu --num_processes N -m edgepack.cli finetune ..."""

DISTILL_EPILOG = """\
examples:
  edgepack distill runs/teacher runs/student3 --layers 3                      # k of n teacher layers
  edgepack distill runs/teacher runs/student2 --layers 2 --features hidden attention
  edgepack distill runs/teacher runs/narrow --layers 3 --hidden-size 256 --heads 4 \\
      --intermediate-size 1024 --init truncated --features hidden
loss = alpha*KL(T) + (1-alpha)*CE + feature terms (default map: student block i <- teacher block
round((i+1)*n/k)-1). --layer-map takes JSON: '[{"layer_T": 5, "layer_S": 2, "feature": "hidden"}]'."""


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


def _add_train(p: argparse.ArgumentParser, epochs: int, lr: float) -> None:
    g = p.add_argument_group("training")
    g.add_argument("--epochs", type=int, default=epochs, help="default: %(default)s")
    g.add_argument("--batch-size", type=int, default=32, help="default: %(default)s")
    g.add_argument("--lr", type=float, default=lr, help="peak learning rate (default: %(default)s)")
    g.add_argument("--warmup-ratio", type=float, default=0.1, help="linear warm-up share (default: %(default)s)")
    g.add_argument("--grad-accum", type=int, default=1, help="gradient accumulation steps (default: %(default)s)")
    g.add_argument("--max-length", type=int, default=128, help="truncate texts to N tokens (default: %(default)s)")
    g.add_argument("--seed", type=int, default=0, help="default: %(default)s")
    g.add_argument("--checkpoint-every", type=int, default=0, metavar="STEPS",
                   help="resumable checkpoint every N optimizer steps (default: epoch ends only)")
    g.add_argument("--patience", type=int, default=0, help="early-stop after N epochs without gain (0 = off)")
    g.add_argument("--mixed-precision", choices=["auto", "no", "fp16", "bf16"], default="auto",
                   help="auto = bf16/fp16 on CUDA, none on CPU")
    g.add_argument("--freeze-embeddings", action="store_true", help="keep word embeddings fixed (faster on CPU)")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``finetune`` and ``distill`` subcommands."""
    fmt = argparse.RawDescriptionHelpFormatter
    p = sub.add_parser("finetune", help="fine-tune a teacher (full or LoRA) on labelled text",
                       description="Fine-tune an encoder for text classification; writes an 'hf' artifact.",
                       epilog=FINETUNE_EPILOG, formatter_class=fmt)
    p.add_argument("base", help="Hugging Face model folder or 'hf' artifact")
    p.add_argument("out", help="output artifact directory")
    _add_data(p)
    _add_train(p, epochs=3, lr=5e-5)
    g = p.add_argument_group("LoRA")
    g.add_argument("--lora", action="store_true", help="train LoRA adapters (peft) instead of all weights")
    g.add_argument("--lora-r", type=int, default=8, help="rank (default: %(default)s)")
    g.add_argument("--lora-alpha", type=int, default=16, help="scale (default: %(default)s)")
    g.add_argument("--lora-dropout", type=float, default=0.1, help="default: %(default)s")
    g.add_argument("--lora-targets", nargs="+", help="module names (default: peft's choice, query/value for BERT)")
    g.add_argument("--quantize-base", choices=["8bit", "4bit"], help="QLoRA on a bitsandbytes base (CUDA)")
    p.set_defaults(func=_run_finetune)

    p = sub.add_parser("distill", help="distill a fine-tuned teacher into a smaller student",
                       description="Knowledge distillation into a student; writes an 'hf' artifact.",
                       epilog=DISTILL_EPILOG, formatter_class=fmt)
    p.add_argument("teacher", help="teacher: HF folder, PEFT adapter folder or 'hf' artifact")
    p.add_argument("out", help="output artifact directory")
    _add_data(p)
    _add_train(p, epochs=3, lr=1e-4)
    g = p.add_argument_group("student")
    g.add_argument("--layers", type=int, default=3, help="student blocks (default: %(default)s)")
    g.add_argument("--from-layers", type=int, nargs="+", metavar="I", help="teacher blocks to copy (0-based)")
    g.add_argument("--hidden-size", type=int, help="narrower student (needs --init truncated or random)")
    g.add_argument("--heads", type=int, help="attention heads")
    g.add_argument("--intermediate-size", type=int, help="feed-forward size")
    g.add_argument("--init", choices=["teacher-layers", "truncated", "random"], default="teacher-layers",
                   help="default: %(default)s")
    g = p.add_argument_group("losses")
    g.add_argument("--temperature", type=float, default=2.0, help="softmax temperature (default: %(default)s)")
    g.add_argument("--alpha", type=float, default=0.9, help="weight of the soft-target KL (default: %(default)s)")
    g.add_argument("--features", nargs="*", default=[], choices=["hidden", "attention", "embedding"],
                   help="feature losses through the default layer map")
    g.add_argument("--feature-weight", type=float, default=1.0, help="default: %(default)s")
    g.add_argument("--layer-map", help="explicit layer map as JSON (overrides --features)")
    g.add_argument("--cache", choices=["memory", "disk"], default="memory",
                   help="where cached teacher outputs live (default: %(default)s)")
    p.set_defaults(func=_run_distill)


def _data_spec(a: argparse.Namespace):
    from edgepack.distill.data import DataSpec, example_spec

    if not a.data:
        return example_spec(val_fraction=a.val_fraction, max_examples=a.max_examples)
    return DataSpec(path=a.data, text_column=a.text_column, text_pair_column=a.text_pair_column,
                    label_column=None if a.label_column.lower() == "none" else a.label_column,
                    val_fraction=a.val_fraction, max_examples=a.max_examples,
                    labels=tuple(a.labels) if a.labels else None)


def _train_cfg(a: argparse.Namespace):
    from edgepack.train import TrainConfig

    return TrainConfig(epochs=a.epochs, batch_size=a.batch_size, lr=a.lr, warmup_ratio=a.warmup_ratio,
                       grad_accum=a.grad_accum, max_length=a.max_length, seed=a.seed,
                       checkpoint_every=a.checkpoint_every, patience=a.patience, mixed_precision=a.mixed_precision,
                       freeze_embeddings=a.freeze_embeddings, progress=not a.no_progress)


def _report(art) -> None:
    keep = ("accuracy", "macro_f1", "teacher_accuracy", "params", "teacher_params", "merge_max_abs_diff",
            "train_seconds")
    print(json.dumps({"artifact": str(art.path), **{k: v for k, v in art.metrics.items() if k in keep}}, indent=2))


def _run_finetune(a: argparse.Namespace) -> int:
    from edgepack.distill.configs import FinetuneConfig, LoraSettings
    from edgepack.distill.finetune import finetune

    lora = None
    if a.lora or a.quantize_base:
        lora = LoraSettings(r=a.lora_r, alpha=a.lora_alpha, dropout=a.lora_dropout,
                            target_modules=tuple(a.lora_targets) if a.lora_targets else None,
                            quantize_base=a.quantize_base)
    _report(finetune(a.base, _data_spec(a), FinetuneConfig(train=_train_cfg(a), lora=lora), a.out))
    return 0


def _run_distill(a: argparse.Namespace) -> int:
    from edgepack.distill.configs import DistillConfig
    from edgepack.distill.layer_map import LayerMatch
    from edgepack.distill.student import StudentConfig
    from edgepack.errors import EdgepackError

    layer_map = ()
    if a.layer_map:
        try:
            layer_map = tuple(LayerMatch(**m) for m in json.loads(a.layer_map))
        except (json.JSONDecodeError, TypeError, ValueError) as e:
            raise EdgepackError(f"--layer-map must be a JSON list of {{layer_T, layer_S, feature, weight}}: {e}") from None
    student = StudentConfig(num_layers=a.layers, layers=tuple(a.from_layers) if a.from_layers else None,
                            hidden_size=a.hidden_size, num_heads=a.heads, intermediate_size=a.intermediate_size,
                            init=a.init)
    cfg = DistillConfig(student=student, train=_train_cfg(a), temperature=a.temperature, alpha_kd=a.alpha,
                        features=tuple(a.features), feature_weight=a.feature_weight, layer_map=layer_map,
                        cache=a.cache)
    from edgepack.distill.api import distill

    _report(distill(a.teacher, _data_spec(a), cfg, a.out))
    return 0
