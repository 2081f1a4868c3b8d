"""The example scripts in examples/ (not package code): they load, show --help, and the prune demo runs."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from edgepack.testing import SAMPLE_TEXTS

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def load_example(name: str):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("name", ["distill_demo", "prune_demo", "quantize_demo", "make_pretrained_student",
                                  "distill_students"])
def test_example_script_help(name):
    r = subprocess.run([sys.executable, str(EXAMPLES / f"{name}.py"), "--help"], capture_output=True, text=True,
                       timeout=120, check=False)
    assert r.returncode == 0, r.stderr
    assert "usage:" in r.stdout


def test_examples_are_not_package_code():
    assert all(importlib.util.find_spec(f"edgepack.{stage}.demo") is None for stage in ("distill", "prune", "quantize"))


def test_prune_demo_writes_every_variant_and_a_table(tiny_bert, tmp_path):
    pytest.importorskip("torch")
    from edgepack.data import Dataset

    demo = load_example("prune_demo")
    labels = [i % 2 for i in range(len(SAMPLE_TEXTS) * 4)]
    data = Dataset(SAMPLE_TEXTS * 4, labels, SAMPLE_TEXTS * 2, labels[:14], ["negative", "positive"])
    res = demo.run_demo(tiny_bert, tmp_path, data=data, recovery_steps=2, latency_runs=2)
    assert set(res["variants"]) == set(demo.demo_variants())
    assert json.loads((tmp_path / "demo.json").read_text()) == res
    v = res["variants"]
    assert v["ffn50_recovered"]["ffn_size"] == 32 and sum(v["heads50_recovered"]["heads_per_layer"]) == 4
    assert v["magnitude50"]["target_sparsity"] == pytest.approx(0.5, abs=1e-3)
    assert v["two_four"]["gzip_bytes"] < v["two_four"]["size_bytes"]
    assert all(r["speedup_b8"] > 0 for r in v.values())
    assert "ffn50_recovered" in demo.format_table(res)
