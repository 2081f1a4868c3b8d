"""CLI errors are one clear line (exit 2, no traceback); --help teaches."""

import subprocess
import sys

import pytest

from edgepack.pipeline.cli import main


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "edgepack", *args], capture_output=True, text=True, timeout=300)


def test_help_lists_pipeline_and_examples():
    r = run_cli("--help")
    assert r.returncode == 0
    assert "edgepack export onnx" in r.stdout and "predict" in r.stdout and "inspect" in r.stdout


@pytest.mark.parametrize("args,message", [
    (["predict", "/no/such/artifact", "hi"], "artifact directory not found: /no/such/artifact"),
    (["inspect", "/no/such/artifact"], "artifact directory not found"),
    (["export", "onnx", "/no/such/model", "/tmp/edgepack-never-written"], "model directory not found"),
])
def test_missing_paths_give_one_line(args, message):
    r = run_cli(*args)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [f"edgepack: error: {r.stderr.strip().split('error: ', 1)[1]}"]
    assert message in r.stderr and "Traceback" not in r.stderr


def test_unsupported_architecture_and_corrupt_artifact(tmp_path, tiny_bert, capsys):
    gpt = tmp_path / "gpt"
    gpt.mkdir()
    (gpt / "config.json").write_text('{"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]}')
    assert main(["export", "onnx", str(gpt), str(tmp_path / "o")]) == 2
    assert "unsupported model type 'gpt2'" in capsys.readouterr().err

    assert main(["export", "onnx", str(tiny_bert), str(tmp_path / "onnx")]) == 0
    assert "max |onnx - torch|" in capsys.readouterr().out
    model = tmp_path / "onnx" / "model.onnx"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model.write_bytes(bytes(data))
    assert main(["predict", str(tmp_path / "onnx"), "hello"]) == 2
    err = capsys.readouterr().err
    assert "checksum mismatch for model.onnx" in err and err.count("\n") == 1


def test_predict_reads_file_and_prints_json(tmp_path, tiny_bert, capsys):
    import json

    assert main(["export", "onnx", str(tiny_bert), str(tmp_path / "onnx")]) == 0
    capsys.readouterr()
    texts = tmp_path / "texts.txt"
    texts.write_text("great film\n\ndull\n")
    assert main(["predict", str(tmp_path / "onnx"), "--file", str(texts), "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["text"] for r in rows] == ["great film", "dull"]
    assert all(r["label"] in ("negative", "positive") and 0.5 <= r["score"] <= 1 for r in rows)
    assert main(["predict", str(tmp_path / "onnx")]) == 2
    assert "no texts" in capsys.readouterr().err
