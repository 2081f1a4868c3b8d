"""The finetune/distill subcommands: lean import, help text, a tiny run, one-line errors."""

import csv
import json
import subprocess
import sys

import pytest

from edgepack.pipeline.cli import main
from edgepack.testing import SAMPLE_TEXTS, make_tiny_model


def test_cli_module_is_lean():
    code = "import sys, edgepack.distill.cli; print(sorted(m for m in ('torch', 'transformers', 'peft') if m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"


def test_help_teaches(capsys):
    with pytest.raises(SystemExit):
        main(["distill", "--help"])
    out = capsys.readouterr().out
    assert "round((i+1)*n/k)-1" in out and "--features" in out and "edgepack distill runs/teacher" in out
    with pytest.raises(SystemExit):
        main(["finetune", "--help"])
    assert "--lora-r" in capsys.readouterr().out


def test_cli_finetune_then_distill(tmp_path, capsys):
    pytest.importorskip("torch")
    base = make_tiny_model(tmp_path / "base", task="feature-extraction")
    data = tmp_path / "d.tsv"
    with open(data, "w", newline="") as f:
        w = csv.writer(f, delimiter="\t")
        w.writerow(["review", "y"])
        w.writerows((f"{s} {i}", "a" if i % 2 else "b") for i in range(6) for s in SAMPLE_TEXTS)
    common = ["--data", str(data), "--text-column", "review", "--label-column", "y", "--epochs", "1",
              "--batch-size", "8", "--no-progress"]
    assert main(["finetune", str(base), str(tmp_path / "t"), *common]) == 0
    out = capsys.readouterr().out
    assert json.loads(out[out.rindex("{\n"):])["artifact"].endswith("/t")
    assert main(["distill", str(tmp_path / "t"), str(tmp_path / "s"), "--layers", "1", "--features", "hidden",
                 *common]) == 0
    out = capsys.readouterr().out
    report = json.loads(out[out.rindex("{\n"):])
    assert report["params"] < report["teacher_params"] and report["artifact"].endswith("/s")


def test_cli_error_is_one_line(tmp_path, capsys):
    pytest.importorskip("torch")
    base = make_tiny_model(tmp_path / "base")
    (tmp_path / "d.csv").write_text("sentence,label\nfine,a\n")
    rc = main(["distill", str(base), str(tmp_path / "s"), "--data", str(tmp_path / "d.csv"), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith("edgepack: error:") and "missing column(s) 'text'" in err
    assert "\n" not in err
