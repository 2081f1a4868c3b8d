"""A training stage launched as several processes (torchrun, as ``accelerate launch`` does) writes its artifact
once: both processes train (gloo on the CPU), the main one swaps the folder in, the launch exits 0 and prints one
result; a launch onto someone's folder fails on every process and leaves it as it was."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from edgepack.artifact import Artifact

pytest.importorskip("accelerate")


def _launch(*argv: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.pop("RANK", None), env.pop("WORLD_SIZE", None)
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "-m", "edgepack", *argv], capture_output=True, text=True, timeout=timeout, env=env,
                          check=False)


def test_two_processes_finetune_into_one_artifact(tiny_bert, tmp_path):
    out = tmp_path / "ft"
    args = ["finetune", str(tiny_bert), str(out), "--max-examples", "200", "--max-steps", "6", "--batch-size", "8",
            "--no-progress"]
    r = _launch(*args)
    assert r.returncode == 0, r.stderr[-2000:]
    art = Artifact.open(out)  # verifies every checksum
    assert art.stage == "finetune"
    assert r.stdout.count('"artifact":') == 1  # the result is printed once, by the main process
    result = json.loads(r.stdout[r.stdout.index("{"):r.stdout.rindex("}") + 1])
    assert result["artifact"] == str(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ft"]  # no temp folder of either process left
    before = (out / "manifest.json").read_bytes()

    r = _launch(*args)  # someone's folder: both processes refuse, nothing changes
    assert r.returncode != 0
    assert r.stderr.count(f"edgepack: error: output {out} already exists; pass --overwrite") == 2
    assert (out / "manifest.json").read_bytes() == before

    r = _launch(*args, "--overwrite")
    assert r.returncode == 0, r.stderr[-2000:]
    assert Artifact.open(out).manifest["created"] >= json.loads(before)["created"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ft"]


def test_two_processes_distill_through_one_disk_cache_and_export(tiny_bert, tmp_path):
    """--cache disk: the main process writes the teacher cache, the other reads it (before, both wrote one path,
    a race no test can force); export (no training loop: the process group comes up at the artifact's commit)
    also writes once."""
    out = tmp_path / "student"
    r = _launch("distill", str(tiny_bert), str(out), "--layers", "1", "--max-examples", "200", "--max-steps", "4",
                "--batch-size", "8", "--cache", "disk", "--features", "hidden")
    assert r.returncode == 0, r.stderr[-2000:]
    assert Artifact.open(out).stage == "distill"
    assert len(re.findall(r"teacher cache:\s+0%", r.stderr)) == 1  # one progress bar per launch
    r = _launch("export", "onnx", str(out), str(tmp_path / "onnx"))
    assert r.returncode == 0, r.stderr[-2000:]
    assert Artifact.open(tmp_path / "onnx").format == "onnx"
    assert r.stdout.count(f"wrote {tmp_path / 'onnx'}") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["onnx", "student"]


def test_a_plain_run_is_a_world_of_one(monkeypatch):
    from edgepack import ranks

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("RANK", raising=False)
    assert (ranks.world_size(), ranks.rank(), ranks.is_main()) == (1, 0, True)
    ranks.wait_for_everyone()  # returns at once
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")  # a launcher's environment before any process group exists
    assert (ranks.world_size(), ranks.rank(), ranks.is_main()) == (4, 3, False)


def test_the_pipeline_refuses_a_multi_process_launch(monkeypatch, capsys, tmp_path):
    from edgepack.pipeline.cli import main

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    assert main(["run", "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [("edgepack: error: edgepack run does not run under a multi-process launcher (2 processes): its "
                    "export, quantize and benchmark passes would run in every process and time each other; launch "
                    "the training stages that way (edgepack finetune|distill|prune), then give their artifact to a "
                    "recipe's model: and run it in one process")]
    assert not (tmp_path / "out").exists()
