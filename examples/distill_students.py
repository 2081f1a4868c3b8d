"""Several students of one teacher on the embedded example, compared with paired bootstrap intervals.

    python examples/make_pretrained_student.py runs/minilm-l3 --layers 3
    python examples/distill_students.py run a TEACHER runs/students        # 3 teacher layers
    python examples/distill_students.py run b TEACHER runs/students --pretrained runs/minilm-l3
    python examples/distill_students.py run c TEACHER runs/students --max-steps 722 --transfer-max-texts 4000
    python examples/distill_students.py run d TEACHER runs/students        # hard labels only (alpha_kd=0)
    python examples/distill_students.py table TEACHER a=runs/students/a b=runs/students/b ...

Students: (a) 3 of the teacher's blocks (init teacher-layers); (b) a pretrained student with its own
tokenizer (init pretrained); (c) (a) plus a transfer set of augmented training texts the teacher labels;
(d) (a) on hard labels only. Training settings are the default recipe's distill pass (2 epochs, batch 32,
lr 2e-4, frozen word embeddings, max_length 64, seed 0, T=2, alpha_kd=0.9); the teacher cache is shared
(OUT/cache). ``table`` scores every artifact on the validation split (accuracy, agreement with the teacher)
and the paired bootstrap interval of its accuracy minus the first artifact's.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path


def run(args: argparse.Namespace) -> None:
    from edgepack.distill import DistillConfig, StudentConfig, distill
    from edgepack.distill.configs import TransferSettings

    from edgepack.data import example_spec
    from edgepack.train import TrainConfig

    train = TrainConfig(epochs=2, batch_size=32, lr=2e-4, freeze_embeddings=True, max_length=64, seed=0,
                        max_steps=args.max_steps)
    cfg = DistillConfig(student=StudentConfig(num_layers=3, init="teacher-layers"), train=train,
                        temperature=2.0, alpha_kd=0.9)
    if args.student == "b":
        cfg = DistillConfig(student=StudentConfig(init="pretrained", model=str(args.pretrained)), train=train)
    elif args.student == "c":
        cfg = DistillConfig(student=cfg.student, train=train, transfer=TransferSettings(
            augment_copies=1, max_texts=args.transfer_max_texts, compare=args.compare))
    elif args.student == "d":
        cfg = DistillConfig(student=cfg.student, train=train, alpha_kd=0.0)
    art = distill(args.teacher, example_spec(val_fraction=0.1), cfg, args.out / args.student,
                  cache_dir=args.out / "cache", overwrite=True)
    print(json.dumps({k: v for k, v in art.metrics.items() if k != "history"}, indent=1))


def table(args: argparse.Namespace) -> None:
    from edgepack.batching import encode, predict_logits
    from edgepack.data import example_spec, load_data
    from edgepack.hf import load_model
    from edgepack.scoring import accuracy, bootstrap_ci, paired_bootstrap_ci

    ds = load_data(example_spec(val_fraction=0.1))
    t = load_model(args.teacher)
    pred = {}
    for name, path in [("teacher", args.teacher)] + [tuple(x.split("=", 1)) for x in args.students]:
        lm = t if name == "teacher" else load_model(path)
        enc = encode(lm.tokenizer, ds.val_texts, None, 64)
        pred[name] = predict_logits(lm.model, enc).argmax(-1).numpy()
    names = [n for n in pred if n != "teacher"]
    ref = names[0]
    print(f"| student | accuracy (95% CI) | agreement with teacher | accuracy minus {ref}'s (paired 95% CI) |")
    print("|---|---|---|---|")
    for n in ["teacher"] + names:
        lo, hi = bootstrap_ci(pred[n], ds.val_labels)
        d = paired_bootstrap_ci(pred[n], pred[ref], ds.val_labels) if n not in ("teacher", ref) else None
        diff = "–" if d is None else (f"{100 * d['diff']:+.1f} ({100 * d['ci95'][0]:+.1f} to "
                                      f"{100 * d['ci95'][1]:+.1f})")
        print(f"| {n} | {100 * accuracy(pred[n], ds.val_labels):.1f}% ({100 * lo:.1f}–{100 * hi:.1f}) | "
              f"{100 * accuracy(pred[n], pred['teacher']):.1f}% | {diff} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="distil one student")
    r.add_argument("student", choices="abcd")
    r.add_argument("teacher")
    r.add_argument("out", type=Path)
    r.add_argument("--pretrained", type=Path, help="student b: the pretrained model folder")
    r.add_argument("--max-steps", type=int, help="fix the optimizer steps (default: 2 epochs)")
    r.add_argument("--transfer-max-texts", type=int, help="student c: augment at most N training texts")
    r.add_argument("--compare", action="store_true", help="student c: also train it without the transfer set")
    r.set_defaults(func=run)
    t = sub.add_parser("table", help="score artifacts on the validation split")
    t.add_argument("teacher")
    t.add_argument("students", nargs="+", metavar="NAME=PATH", help="the first one is the reference")
    t.set_defaults(func=table)
    a = p.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    a.func(a)


if __name__ == "__main__":
    main()
