"""`edgepack prune` on tiny models, and the lean import of the CLI module (the demo: tests/test_examples.py)."""

import json
import subprocess
import sys

import pytest

from edgepack.testing import SAMPLE_TEXTS


def test_cli_module_imports_without_torch():
    code = "import sys, edgepack.prune.cli, edgepack.prune.config; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_flags_override_config_file(tmp_path):
    from edgepack.pipeline.cli import build_parser
    from edgepack.prune.cli import _config

    cfg_file = tmp_path / "p.json"
    cfg_file.write_text(json.dumps({"ffn_fraction": 0.25, "recovery": {"steps": 5, "lr": 2e-5}}))
    args = build_parser().parse_args(["prune", "src", "out", "--config", str(cfg_file), "--heads", "0.5",
                                      "--drop-layers", "1,-1", "--recovery-steps", "9"])
    cfg = _config(args)
    assert (cfg.ffn_fraction, cfg.head_fraction, cfg.drop_layers) == (0.25, 0.5, (1, -1))
    assert (cfg.recovery.steps, cfg.recovery.lr) == (9, 2e-5)


def test_cli_reports_bad_config_in_one_line(tiny_bert, tmp_path, capsys):
    from edgepack.pipeline.cli import main

    assert main(["prune", str(tiny_bert), str(tmp_path / "o"), "--ffn", "1.0"]) == 2
    assert "ffn_fraction must be in [0, 1)" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_cli_prunes_tiny_model_on_a_csv(tiny_bert, tmp_path, capsys):
    pytest.importorskip("torch")
    from edgepack.pipeline.cli import main

    from edgepack.artifact import Artifact

    data = tmp_path / "d.csv"
    rows = ["text,label"] + [f'"{t}",{"positive" if i % 2 else "negative"}' for i, t in enumerate(SAMPLE_TEXTS * 4)]
    data.write_text("\n".join(rows) + "\n")
    rc = main(["prune", str(tiny_bert), str(tmp_path / "o"), "--ffn", "0.5", "--heads", "0.25",
               "--data", str(data), "--latency-runs", "2", "--recovery-steps", "2"])
    assert rc == 0
    art = Artifact.open(tmp_path / "o")
    assert art.extra["ffn_size"] == 32 and sum(art.extra["heads_per_layer"]) == 6
    assert "accuracy" in capsys.readouterr().out
