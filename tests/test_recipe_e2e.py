"""The whole recipe on a tiny random model and a small CSV: passes, resume, report files, goals."""

import json
import shutil

import pytest

pytest.importorskip("torch")
pytest.importorskip("yaml")

RECIPE = """
name: tiny
output: {out}
model: {model}
data: {{path: {csv}, val_fraction: 0.25}}
defaults: {{max_length: 32, seed: 0, progress: false}}
passes:
  - finetune: {{train: {{epochs: 1, batch_size: 8, max_steps: 4}}}}
  - distill: {{student: {{num_layers: 1}}, train: {{epochs: 1, batch_size: 8, max_steps: 4}}}}
  - prune: {{ffn_fraction: 0.5, importance_examples: 16, latency_runs: 0, recovery: {{steps: 2}}}}
  - onnx: {{opset: 18, max_length: 64}}
  - fuse: {{}}
  - triton: {{}}
bench: {{batch_sizes: [1, 4], threads: 1, texts: 8, peer: true}}
goals: {{min_speedup_b1: 1000, max_size_mb: 1000}}
"""


@pytest.fixture()
def tiny_recipe(tmp_path, tiny_bert):
    from edgepack.testing import SAMPLE_TEXTS

    csv = tmp_path / "data.csv"
    rows = ["text,label"] + [f'"{t} {i}",{"positive" if i % 2 else "negative"}' for i in range(12)
                             for t in SAMPLE_TEXTS[:4]]
    csv.write_text("\n".join(rows) + "\n")
    path = tmp_path / "recipe.yaml"
    path.write_text(RECIPE.format(out=tmp_path / "run", csv=csv, model=tiny_bert))
    return path


def test_recipe_runs_resumes_and_reports(tiny_recipe, tmp_path):
    from edgepack.pipeline import load_recipe, run_recipe

    logs = []
    out = run_recipe(load_recipe(tiny_recipe), log=logs.append)
    run = tmp_path / "run"
    assert [k for k, v in out["timings"].items() if not v["skipped"]] == [
        "teacher", "student", "pruned", "onnx", "fused", "triton", "report"]
    report = json.loads((run / "report" / "report.json").read_text())
    names = [line["target"] for line in report["summary"]]
    assert names[0] == "teacher (torch fp32)" and "student ONNX fp32 (edgepack)" in names
    assert any(n.startswith("peer: optimum") for n in names)
    for line in report["summary"]:
        assert 0 <= line["accuracy"] <= 1 and line["b1_p50_ms"] > 0
    assert (run / "report" / "accuracy_vs_latency.png").stat().st_size > 10_000
    md = (run / "report" / "report.md").read_text()
    assert "| teacher (torch fp32) |" in md and "95%" in md
    # the goals are the recipe's, checked on the final edgepack model (here the fused fp32 ONNX)
    assert [(g["ok"], g["what"].split(" ")[:4]) for g in report["goals"]] == [
        (False, ["student", "ONNX", "fp32", "(edgepack)"]), (True, ["student", "ONNX", "fp32", "(edgepack)"])]
    assert "## Goals" in md and "MISS: student ONNX fp32 (edgepack) batch-1 latency >= 1000x" in md
    assert any(line.startswith("[3/7] pruned: running (prune)") for line in logs)
    from edgepack.cpu import host_cpu

    assert host_cpu().describe() in md and report["environment"]["cpu_features"] == host_cpu().to_dict()
    # pruning recovery after distillation learns from the fine-tuned teacher, not the unpruned student
    pruned = json.loads((run / "pruned" / "manifest.json").read_text())
    assert pruned["extra"]["teacher"] == str(run / "teacher")

    logs.clear()
    out = run_recipe(load_recipe(tiny_recipe), log=logs.append)
    assert all(v["skipped"] for v in out["timings"].values())

    shutil.rmtree(run / "pruned")
    out = run_recipe(load_recipe(tiny_recipe), log=logs.append)
    redone = [k for k, v in out["timings"].items() if not v["skipped"]]
    assert redone == ["pruned", "onnx", "fused", "triton", "report"]
