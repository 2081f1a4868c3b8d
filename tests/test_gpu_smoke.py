"""`edgepack gpu-smoke --dry-run` / `python -m edgepack.benchmarks.gpu_smoke --dry-run` runs in CI on CPU
(issue 16, item 6): every step but the GPU calls, one JSON and one Markdown report."""

import json
import subprocess
import sys

from edgepack.benchmarks.gpu_smoke import markdown


def test_dry_run_writes_json_and_markdown_and_says_what_it_skipped(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "edgepack.benchmarks.gpu_smoke", "--dry-run", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=600, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((tmp_path / "gpu_smoke.json").read_text())
    assert report["dry_run"] and report["device"] == "cpu"
    steps = {s["step"]: s for s in report["steps"]}
    assert not [s for s in report["steps"] if s["status"] == "failed"], report["steps"]
    assert steps["open torch-fp16-graph"]["status"] == "skipped" and "dry run" in steps["open torch-fp16-graph"]["why"]
    assert steps["open tensorrt"]["status"] == "skipped"
    assert "dry run: would run" in steps["GPU/TensorRT tests"]["why"]
    fp32 = next(v for v in report["variants"] if v["variant"] == "torch-fp32")
    assert fp32["parity"]["max_abs_diff"] < 1e-5 and len(fp32["latency"]) == 4  # 2 batches x 2 lengths
    assert report["seconds"] < 480
    assert (tmp_path / "gpu_smoke.md").read_text() == markdown(report)


def test_edgepack_gpu_smoke_subcommand_passes_its_options_through(monkeypatch):
    from edgepack.benchmarks import gpu_smoke
    from edgepack.pipeline.cli import main

    seen = []
    monkeypatch.setattr(gpu_smoke, "execute", lambda args: seen.append(args) or 0)
    assert main(["gpu-smoke", "--dry-run", "--out", "x", "--device", "1"]) == 0
    assert seen[0].dry_run and seen[0].out == "x" and seen[0].device == 1
