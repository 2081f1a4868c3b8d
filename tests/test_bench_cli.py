"""`edgepack bench`: one-line errors for bad input, and a small end-to-end comparison with JSON/Markdown."""

from __future__ import annotations

import json

import pytest

from edgepack.pipeline.cli import main
from edgepack.testing import SAMPLE_TEXTS


@pytest.fixture(scope="module")
def tiny_onnx(tiny_bert, tmp_path_factory):
    from edgepack.export.onnx_export import export_onnx

    return export_onnx(tiny_bert, tmp_path_factory.mktemp("bench-cli") / "onnx").path


def _err(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("edgepack: error: ") and "\n" not in err, err
    return err


def test_missing_artifact(capsys, tmp_path):
    err = _err(capsys, ["bench", str(tmp_path / "nope"), "--seq-lens", "8"])
    assert "artifact or model folder not found" in err and "nope" in err


def test_not_a_model_folder(capsys, tmp_path):
    (tmp_path / "junk").mkdir()
    err = _err(capsys, ["bench", str(tmp_path / "junk"), "--seq-lens", "8"])
    assert "neither an edgepack artifact nor a Hugging Face model folder" in err


@pytest.mark.parametrize("value", ["1,x", "0,8", "", "1;8"])
def test_bad_batch_size_list(capsys, tiny_onnx, value):
    err = _err(capsys, ["bench", str(tiny_onnx), "--batch-sizes", value, "--seq-lens", "8"])
    assert f"--batch-sizes must be comma-separated integers >= 1, e.g. 1,8; got '{value}'" in err


def test_bad_seq_lens_and_peer(capsys, tiny_onnx, tmp_path):
    assert "--seq-lens must be comma-separated integers >= 3" in _err(
        capsys, ["bench", str(tiny_onnx), "--seq-lens", "2"]
    )
    err = _err(capsys, ["bench", str(tiny_onnx), "--seq-lens", "8", "--peer", str(tmp_path / "missing")])
    assert "--peer: torch model folder not found" in err
    err = _err(
        capsys,
        ["bench", str(tiny_onnx), "--seq-lens", "8", "--peer", str(tmp_path), "--peer-variants", "int4"],
    )
    assert "--peer-variants: unknown ['int4']" in err


def test_accuracy_needs_labels(capsys, tiny_onnx, tmp_path):
    f = tmp_path / "t.txt"
    f.write_text("\n".join(SAMPLE_TEXTS))
    err = _err(capsys, ["bench", str(tiny_onnx), "--texts", str(f), "--accuracy"])
    assert "--accuracy needs labelled texts" in err


def test_unknown_baseline(capsys, tiny_onnx, tmp_path):
    err = _err(capsys, ["bench", f"a={tiny_onnx}", "--seq-lens", "8", "--baseline", "b"])
    assert "baseline 'b' is not one of the targets: a" in err


def test_bench_compares_torch_and_onnx_on_a_text_file(capsys, tiny_bert, tiny_onnx, tmp_path):
    f = tmp_path / "texts.txt"
    f.write_text("\n".join(SAMPLE_TEXTS * 2) + "\n\n")
    rc = main(
        [
            "bench",
            f"teacher={tiny_bert}",
            f"onnx={tiny_onnx}",
            "--texts",
            str(f),
            "--batch-sizes",
            "1,4",
            "--threads",
            "1",
            "--warmup",
            "0",
            "--repeats",
            "1",
            "--json",
            str(tmp_path / "r.json"),
            "--markdown",
            str(tmp_path / "r.md"),
        ]
    )
    out = capsys.readouterr().out
    assert rc == 0
    report = json.loads((tmp_path / "r.json").read_text())
    rows = report["results"]
    assert [(r["target"], r["kind"], r["batch_size"]) for r in rows] == [
        ("teacher", "torch", 1),
        ("onnx", "onnx", 1),
        ("teacher", "torch", 4),
        ("onnx", "onnx", 4),
    ]
    assert all(r["baseline"] == "teacher" and r["threads"] == 1 for r in rows)
    assert rows[1]["agreement_vs_baseline"] == 1.0
    assert report["config"]["texts"] == "14 texts" and rows[0]["texts_per_pass"] == 14
    assert (
        "### batch 4, 12 real texts, 1 threads" in out
        and (tmp_path / "r.md").read_text().strip() == out.strip()
    )
    from edgepack.cpu import host_cpu

    assert f"Machine: {host_cpu().describe()}" in out  # numbers from other CPUs are never compared blindly
    assert report["environment"]["cpu_features"]["vnni"] is host_cpu().vnni


def test_bench_csv_with_labels_gives_accuracy(capsys, tiny_onnx, tmp_path):
    f = tmp_path / "d.csv"
    f.write_text(
        "text,label\n"
        + "\n".join(f'"{t}",{["negative", "positive"][i % 2]}' for i, t in enumerate(SAMPLE_TEXTS))
    )
    rc = main(
        [
            "bench",
            str(tiny_onnx),
            "--texts",
            str(f),
            "--accuracy",
            "--batch-sizes",
            "7",
            "--threads",
            "1",
            "--warmup",
            "0",
            "--repeats",
            "1",
            "--json",
            str(tmp_path / "r.json"),
        ]
    )
    assert rc == 0
    row = json.loads((tmp_path / "r.json").read_text())["results"][0]
    assert row["n_eval"] == 7 and 0.0 <= row["accuracy"] <= 1.0
    assert "accuracy [95% CI]" in capsys.readouterr().out


def test_help_teaches(capsys):
    with pytest.raises(SystemExit):
        main(["bench", "--help"])
    out = capsys.readouterr().out
    assert "--peer TORCH_MODEL_DIR" in out and "default: 1,8" in out and "examples:" in out


def test_bench_jsonl_with_integer_labels(tiny_onnx, tmp_path):
    f = tmp_path / "d.jsonl"
    f.write_text("\n".join(json.dumps({"text": t, "label": str(i % 2)}) for i, t in enumerate(SAMPLE_TEXTS)))
    args = ["bench", str(tiny_onnx), "--texts", str(f), "--accuracy", "--batch-sizes", "7", "--threads", "1"]
    assert main([*args, "--warmup", "0", "--repeats", "1", "--json", str(tmp_path / "r.json")]) == 0
    assert json.loads((tmp_path / "r.json").read_text())["results"][0]["n_eval"] == 7
