"""Bad output targets: nothing but an edgepack artifact the user agreed to replace is ever destroyed."""

import json
import os

import pytest

from edgepack import outputs
from edgepack.artifact import Artifact, ArtifactError, ArtifactWriter
from edgepack.errors import EdgepackError


def _write(out, payload=b"weights", overwrite=False, sources=()):
    with ArtifactWriter(out, overwrite=overwrite, sources=sources) as w:
        (w.dir / "model.onnx").write_bytes(payload)
        return w.commit(stage="export", format="onnx", task="text-classification", files={"model": "model.onnx"})


def _precious(folder, manifest="{}"):
    folder.mkdir()
    (folder / "manifest.json").write_text(manifest)
    (folder / "precious.txt").write_text("years of work")


def test_existing_folder_needs_overwrite(tmp_path):
    _write(tmp_path / "a")
    with pytest.raises(ArtifactError) as e:
        _write(tmp_path / "a", b"new")
    assert str(e.value) == f"output {tmp_path / 'a'} already exists; pass --overwrite (overwrite=True) to replace it"
    assert _write(tmp_path / "a", b"new", overwrite=True).file("model").read_bytes() == b"new"


def test_empty_manifest_folder_is_never_wiped(tmp_path):
    _precious(tmp_path / "p")
    with pytest.raises(ArtifactError) as e:
        _write(tmp_path / "p", overwrite=True)
    assert str(e.value) == (f"refusing to replace {tmp_path / 'p'}: it is not a valid edgepack artifact "
                            f"(corrupt manifest {tmp_path / 'p' / 'manifest.json'}: missing 'files')")
    assert (tmp_path / "p" / "precious.txt").read_text() == "years of work"


def test_artifact_with_a_user_file_added_is_not_wiped(tmp_path):
    art = _write(tmp_path / "a")
    (art.path / "notes.txt").write_text("mine")
    with pytest.raises(ArtifactError) as e:
        _write(tmp_path / "a", overwrite=True)
    assert str(e.value) == f"refusing to replace {art.path}: it holds notes.txt, which is not part of the artifact"
    assert (art.path / "notes.txt").read_text() == "mine"


def test_plain_folder_file_and_symlink_targets(tmp_path):
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "x").write_text("x")
    with pytest.raises(ArtifactError, match="not a valid edgepack artifact"):
        _write(tmp_path / "plain", overwrite=True)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ArtifactError, match="it is a file, not an artifact folder"):
        _write(tmp_path / "file", overwrite=True)
    target = _write(tmp_path / "real")
    os.symlink(target.path, tmp_path / "link")
    with pytest.raises(ArtifactError, match="it is a symlink"):
        _write(tmp_path / "link", overwrite=True)
    (tmp_path / "empty").mkdir()
    assert _write(tmp_path / "empty").path == tmp_path / "empty"  # an empty folder holds nothing to lose


def test_output_equal_to_inside_or_containing_the_source(tmp_path):
    src = _write(tmp_path / "m" / "src")
    with pytest.raises(ArtifactError) as e:
        _write(src.path, overwrite=True, sources=(src,))
    assert str(e.value) == f"output {src.path} is the source; write to another folder"
    with pytest.raises(ArtifactError) as e:
        _write(tmp_path / "m", overwrite=True, sources=(src.path,))
    assert str(e.value) == f"output {tmp_path / 'm'} contains the source {src.path}; write to another folder"
    with pytest.raises(ArtifactError, match="is inside the source"):
        _write(src.path / "nested", sources=(src.path,))
    # the parent passed to commit is checked too
    with pytest.raises(ArtifactError, match="is the source"), ArtifactWriter(src.path, overwrite=True) as w:
        (w.dir / "model.onnx").write_bytes(b"x")
        w.commit(stage="s", format="onnx", task="text-classification", files={"model": "model.onnx"}, parent=src)
    assert Artifact.open(src.path).file("model").read_bytes() == b"weights"


def test_replacement_is_an_atomic_exchange(tmp_path):
    _write(tmp_path / "a", b"old")
    _write(tmp_path / "a", b"new", overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"]
    assert Artifact.open(tmp_path / "a").file("model").read_bytes() == b"new"


def test_crash_between_fallback_renames_keeps_and_restores_the_old_artifact(tmp_path, monkeypatch):
    """Without renameat2 the old artifact is moved aside first; a crash then leaves it whole, and the next
    write puts it back before anything else happens."""
    _write(tmp_path / "a", b"old")
    monkeypatch.setattr(outputs, "_exchange", lambda a, b: False)
    real = os.replace

    def crashing_replace(a, b):
        if str(b) == str(tmp_path / "a"):
            raise KeyboardInterrupt  # the process dies between moving the old one aside and renaming in the new
        return real(a, b)

    monkeypatch.setattr(outputs.os, "replace", crashing_replace)
    with pytest.raises(KeyboardInterrupt):
        _write(tmp_path / "a", b"new", overwrite=True)
    monkeypatch.setattr(outputs.os, "replace", real)
    aside = [p for p in tmp_path.iterdir() if p.name.startswith(".a.old-")]
    assert not (tmp_path / "a").exists() and len(aside) == 1 and (aside[0] / "old" / "model.onnx").is_file()
    # simulate the crashed process being gone: rename its pid to one that does not exist
    dead = tmp_path / f".a.old-{2 ** 22 + 7}-x"
    os.replace(aside[0], dead)
    assert outputs.clean_stale(tmp_path / "a") == [dead]
    assert Artifact.open(tmp_path / "a").file("model").read_bytes() == b"old"


def test_stale_temp_folders_are_cleaned_on_the_next_write(tmp_path):
    dead, legacy = 2 ** 22 + 7, ".a.tmp-k3j2h1"
    for name in (f".a.tmp-{dead}-abc", f".a.old-{dead}-def", legacy, f".a.tmp-{os.getppid()}-live", ".b.tmp-1-x"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "junk").write_text("x")
    _write(tmp_path / "a")
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == [".a.tmp-" + f"{os.getppid()}-live", ".b.tmp-1-x", "a"]  # a live writer's and b's stay


def test_early_check_fails_before_work(tmp_path):
    _precious(tmp_path / "p", json.dumps({"files": {}}))
    with pytest.raises(ArtifactError, match="already exists; pass --overwrite"):
        outputs.check_output(tmp_path / "p", False)
    with pytest.raises(ArtifactError, match="holds precious.txt"):
        outputs.check_output(tmp_path / "p", True)


def test_prune_cli_refuses_existing_output_in_one_line(tmp_path, tiny_bert, capsys):
    from edgepack.pipeline.cli import main

    _precious(tmp_path / "out")
    assert main(["prune", str(tiny_bert), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "already exists; pass --overwrite" in err
    assert main(["prune", str(tiny_bert), str(tmp_path / "out"), "--overwrite"]) == 2
    assert "not a valid edgepack artifact" in capsys.readouterr().err
    assert (tmp_path / "out" / "precious.txt").is_file()


def test_peer_work_dir_is_checked_before_removal(tmp_path):
    from edgepack.benchmarks.peer import check_peer_dir

    (tmp_path / "fp32").mkdir()
    (tmp_path / "fp32" / "thesis.tex").write_text("x")
    with pytest.raises(EdgepackError, match="not a peer export edgepack wrote"):
        check_peer_dir(tmp_path / "fp32")
    (tmp_path / "fp32" / "edgepack-peer.json").write_text(json.dumps({"fingerprint": "f"}))
    check_peer_dir(tmp_path / "fp32")
    check_peer_dir(tmp_path / "missing")
