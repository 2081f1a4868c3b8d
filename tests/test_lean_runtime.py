"""The runtime must serve predictions without importing torch or transformers."""

import json
import subprocess
import sys

import pytest
from edgepack.export.onnx_export import export_onnx

LEAN_SCRIPT = """
import json, sys
from edgepack.runtime import Predictor
from edgepack.artifact import Artifact
p = Predictor.open(sys.argv[1])
out = p.predict(["a gripping film", "dull", "the plot is thin"])
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "transformers", "optimum", "peft", "onnx"))
print(json.dumps({"n": len(out), "label": out[0]["label"], "heavy": heavy}))
"""


@pytest.fixture(scope="module")
def onnx_art(tiny_bert, tmp_path_factory):
    pytest.importorskip("torch")
    return export_onnx(tiny_bert, tmp_path_factory.mktemp("lean") / "onnx")


def test_predictor_imports_no_torch_or_transformers(onnx_art):
    r = subprocess.run([sys.executable, "-c", LEAN_SCRIPT, str(onnx_art.path)], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res["n"] == 3 and res["label"] in ("negative", "positive")
    assert res["heavy"] == []


def test_cli_predict_and_inspect_are_lean(onnx_art):
    code = ("import sys, runpy; from edgepack.pipeline.cli import main; rc = main(sys.argv[1:]); "
            "heavy = [m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers')]; "
            "print('HEAVY', heavy); sys.exit(rc)")
    for args in (["predict", str(onnx_art.path), "nice film"], ["inspect", str(onnx_art.path)]):
        r = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        assert "HEAVY []" in r.stdout


def test_import_edgepack_core_is_lean():
    code = ("import sys, edgepack, edgepack.artifact, edgepack.scoring, edgepack.compare, edgepack.timing, "
            "edgepack.pipeline.cli; edgepack.pipeline.cli.build_parser(); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch','transformers','onnx','onnxruntime','numpy')))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "torch" not in r.stdout and "transformers" not in r.stdout and "onnxruntime" not in r.stdout
