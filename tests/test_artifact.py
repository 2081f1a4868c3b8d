import json

import pytest

from edgepack.artifact import Artifact, ArtifactError, ArtifactWriter, update_metrics


def _write(tmp_path, name="art", parent=None, payload=b"weights-bytes", overwrite=False):
    with ArtifactWriter(tmp_path / name, overwrite=overwrite) as w:
        (w.dir / "model.bin").write_bytes(payload)
        (w.dir / "sub").mkdir()
        (w.dir / "sub" / "tok.json").write_text('{"a": 1}')
        return w.commit(stage="export", format="onnx", task="text-classification", labels=["neg", "pos"],
                        inputs=[{"name": "input_ids", "dtype": "int64", "shape": ["batch", "sequence"]}],
                        files={"model": "model.bin", "tokenizer": "sub/tok.json"}, parent=parent,
                        config={"opset": 18, "shape": (1, 2)}, metrics={"acc": 0.9})


def test_round_trip(tmp_path):
    art = _write(tmp_path)
    again = Artifact.open(tmp_path / "art")
    assert again.manifest == art.manifest
    assert again.labels == ["neg", "pos"] and again.task == "text-classification"
    assert again.file("model").read_bytes() == b"weights-bytes"
    assert again.config["shape"] == [1, 2]
    assert again.manifest["files"]["model"]["bytes"] == len(b"weights-bytes")
    assert len(again.manifest["files"]["model"]["sha256"]) == 64


def test_lineage_and_parent(tmp_path):
    a = _write(tmp_path, "a")
    b = _write(tmp_path, "b", parent=a)
    c = _write(tmp_path, "c", parent=b)
    assert c.manifest["parent"]["path"] == str(b.path)
    assert [s["path"] for s in c.lineage] == [str(a.path), str(b.path)]


def test_tampered_file_is_refused(tmp_path):
    _write(tmp_path)
    (tmp_path / "art" / "model.bin").write_bytes(b"weights-bytez")  # same size, other content
    with pytest.raises(ArtifactError, match="checksum mismatch for model.bin"):
        Artifact.open(tmp_path / "art")


def test_truncated_file_is_refused(tmp_path):
    _write(tmp_path)
    (tmp_path / "art" / "model.bin").write_bytes(b"weights")
    with pytest.raises(ArtifactError, match="truncated or modified"):
        Artifact.open(tmp_path / "art")


def test_missing_file_and_manifest_errors(tmp_path):
    _write(tmp_path)
    (tmp_path / "art" / "sub" / "tok.json").unlink()
    with pytest.raises(ArtifactError, match="'tokenizer' is missing"):
        Artifact.open(tmp_path / "art")
    with pytest.raises(ArtifactError, match="not found"):
        Artifact.open(tmp_path / "nope")
    (tmp_path / "plain").mkdir()
    with pytest.raises(ArtifactError, match="not an edgepack artifact"):
        Artifact.open(tmp_path / "plain")
    bad = _write(tmp_path, "bad")
    (bad.path / "manifest.json").write_text("{not json")
    with pytest.raises(ArtifactError, match="corrupt manifest"):
        Artifact.open(bad.path)


def test_failed_write_leaves_old_artifact_untouched(tmp_path):
    _write(tmp_path, payload=b"old")
    with pytest.raises(RuntimeError):
        with ArtifactWriter(tmp_path / "art", overwrite=True) as w:
            (w.dir / "model.bin").write_bytes(b"new")
            raise RuntimeError("stage crashed")
    assert Artifact.open(tmp_path / "art").file("model").read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["art"]  # no temp leftovers


def test_overwrite_replaces_and_refuses_foreign_dirs(tmp_path):
    _write(tmp_path, payload=b"old")
    with pytest.raises(ArtifactError, match="already exists; pass --overwrite"):
        _write(tmp_path, payload=b"new")
    assert _write(tmp_path, payload=b"new", overwrite=True).file("model").read_bytes() == b"new"
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(ArtifactError, match="not a valid edgepack artifact"):
        with ArtifactWriter(tmp_path / "mine", overwrite=True):
            pass
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_require_and_unknown_task(tmp_path):
    art = _write(tmp_path)
    with pytest.raises(ArtifactError, match="needs 'hf'"):
        art.require(format="hf")
    with pytest.raises(ArtifactError, match="needs 'feature-extraction'"):
        art.require(task="feature-extraction")
    with pytest.raises(ArtifactError, match="unsupported task 'ner'"):
        with ArtifactWriter(tmp_path / "x") as w:
            (w.dir / "f").write_text("x")
            w.commit(stage="s", format="onnx", task="ner", files={"f": "f"})


def test_update_metrics_keeps_checksums_valid(tmp_path):
    art = update_metrics(_write(tmp_path), latency_ms=1.5)
    again = Artifact.open(art.path)
    assert again.metrics == {"acc": 0.9, "latency_ms": 1.5}
    assert json.loads((art.path / "manifest.json").read_text())["metrics"]["latency_ms"] == 1.5


def test_atomic_text_write_gets_the_usual_file_mode(tmp_path):
    import os
    import stat

    from edgepack.artifact import _atomic_write_text

    old = os.umask(0o022)
    try:
        _atomic_write_text(tmp_path / "report.md", "hello")
    finally:
        os.umask(old)
    assert (tmp_path / "report.md").read_text() == "hello"
    assert stat.S_IMODE((tmp_path / "report.md").stat().st_mode) == 0o644  # not mkstemp's 0600
