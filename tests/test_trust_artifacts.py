"""Bad-input corpus for artifacts: each crafted folder or manifest gets its exact one-line ArtifactError."""

import json
import os

import pytest

from edgepack.artifact import Artifact, ArtifactError, ArtifactWriter
from edgepack.manifest_check import MAX_MANIFEST_BYTES


def _write(root, name="art", fmt="onnx"):
    with ArtifactWriter(root / name) as w:
        (w.dir / "model.onnx").write_bytes(b"weights")
        (w.dir / "tokenizer.json").write_text('{"a": 1}')
        return w.commit(stage="export", format=fmt, task="text-classification", labels=["neg", "pos"],
                        files={"model": "model.onnx", "tokenizer": "tokenizer.json"})


def _edit(art, fn):
    m = json.loads((art.path / "manifest.json").read_text())
    fn(m)
    (art.path / "manifest.json").write_text(json.dumps(m))


def _set_path(path):
    def fn(m):
        m["files"]["model"]["path"] = path
    return fn


SHA = "0" * 64
# (case id, how to break the artifact, the exact error; {root} is the artifact folder, {m} its manifest)
CORPUS = [
    ("traversal", lambda a: _edit(a, _set_path("../secret")),
     "corrupt manifest {m}: files.model: path '../secret' must be relative, inside the artifact, without '..'"),
    ("absolute", lambda a: _edit(a, _set_path("/etc/passwd")),
     "corrupt manifest {m}: files.model: path '/etc/passwd' must be relative, inside the artifact, without '..'"),
    ("dot-segment", lambda a: _edit(a, _set_path("./model.onnx")),
     "corrupt manifest {m}: files.model: path './model.onnx' must be relative, inside the artifact, without '..'"),
    ("backslash", lambda a: _edit(a, _set_path("..\\x")),
     "corrupt manifest {m}: files.model: path '..\\\\x' must be relative, inside the artifact, without '..'"),
    ("path-not-string", lambda a: _edit(a, _set_path(3)),
     "corrupt manifest {m}: files.model: path must be a non-empty string"),
    ("missing-sha256", lambda a: _edit(a, lambda m: m["files"]["model"].pop("sha256")),
     "corrupt manifest {m}: files.model: 'sha256' must be 64 lowercase hex digits"),
    ("bytes-wrong-type", lambda a: _edit(a, lambda m: m["files"]["model"].update(bytes="7")),
     "corrupt manifest {m}: files.model: 'bytes' must be a non-negative integer"),
    ("entry-not-dict", lambda a: _edit(a, lambda m: m["files"].update(model="model.onnx")),
     "corrupt manifest {m}: files.model: must be an object with path, sha256, bytes"),
    ("files-missing", lambda a: _edit(a, lambda m: m.pop("files")),
     "corrupt manifest {m}: missing 'files'"),
    ("files-list", lambda a: _edit(a, lambda m: m.update(files=[])),
     "corrupt manifest {m}: 'files' has the wrong type (list)"),
    ("schema-string", lambda a: _edit(a, lambda m: m.update(schema="2")),
     "corrupt manifest {m}: 'schema' has the wrong type (str)"),
    ("schema-bool", lambda a: _edit(a, lambda m: m.update(schema=True)),
     "corrupt manifest {m}: 'schema' has the wrong type (bool)"),
    ("labels-wrong", lambda a: _edit(a, lambda m: m.update(labels=[1, 2])),
     "corrupt manifest {m}: 'labels' must be a list of strings"),
    ("runtime-list", lambda a: _edit(a, lambda m: m.update(runtime=[])),
     "corrupt manifest {m}: 'runtime' has the wrong type (list)"),
    ("not-object", lambda a: (a.path / "manifest.json").write_text("[1, 2]"),
     "corrupt manifest {m}: not a JSON object"),
    ("truncated", lambda a: (a.path / "manifest.json").write_text('{"schema": 2, "files": {'),
     "corrupt manifest {m}: Expecting property name enclosed in double quotes: line 1 column 25 (char 24)"),
    ("deep-nesting", lambda a: (a.path / "manifest.json").write_text('{"files": {}, "extra": ' + "[" * 100000
                                                                     + "]" * 100000 + "}"),
     "corrupt manifest {m}: nested too deeply"),
    ("huge", lambda a: (a.path / "manifest.json").write_bytes(b" " * (MAX_MANIFEST_BYTES + 1)),
     f"corrupt manifest {{m}}: {MAX_MANIFEST_BYTES + 1} bytes, over the {MAX_MANIFEST_BYTES} limit"),
    ("not-utf8", lambda a: (a.path / "manifest.json").write_bytes(b"\xff\xfe{}"),
     "corrupt manifest {m}: 'utf-8' codec can't decode byte 0xff in position 0: invalid start byte"),
    ("manifest-symlink", lambda a: (os.replace(a.path / "manifest.json", a.path.parent / "m.json"),
                                    os.symlink(a.path.parent / "m.json", a.path / "manifest.json")),
     "refusing {m}: it is a symlink"),
    ("file-symlink", lambda a: (os.remove(a.path / "model.onnx"), os.symlink("/etc/hostname", a.path / "model.onnx")),
     "artifact {root}: refusing model.onnx: symlinks and special files are not allowed"),
    ("dir-symlink", lambda a: os.symlink("/etc", a.path / "sub"),
     "artifact {root}: refusing sub: symlinks and special files are not allowed"),
    ("unlisted-external-data", lambda a: (a.path / "model.onnx.data").write_bytes(b"\0" * 16),
     "artifact {root}: unlisted file model.onnx.data is not in the manifest; refusing to load unverified files"),
    ("unlisted-nested", lambda a: ((a.path / "d").mkdir(), (a.path / "d" / "x.bin").write_bytes(b"1")),
     "artifact {root}: unlisted file d/x.bin is not in the manifest; refusing to load unverified files"),
    ("missing-file", lambda a: (a.path / "tokenizer.json").unlink(),
     "artifact {root}: file for 'tokenizer' is missing: tokenizer.json"),
    ("tampered", lambda a: (a.path / "model.onnx").write_bytes(b"weightz"),
     "artifact {root}: checksum mismatch for model.onnx (file was modified or corrupted)"),
    ("truncated-file", lambda a: (a.path / "model.onnx").write_bytes(b"w"),
     "artifact {root}: model.onnx has 1 bytes, manifest says 7 (truncated or modified)"),
    ("bad-contract", lambda a: _edit(a, lambda m: m["runtime"].update(max_length="long")),
     None),  # the contract's own message; only one line and an ArtifactError is checked
]


@pytest.mark.parametrize("case,breaker,message", CORPUS, ids=[c[0] for c in CORPUS])
def test_bad_artifact_corpus(tmp_path, case, breaker, message):
    art = _write(tmp_path)
    breaker(art)
    with pytest.raises(ArtifactError) as e:
        Artifact.open(art.path)
    text = str(e.value)
    assert "\n" not in text
    if message is not None:
        assert text == message.format(root=art.path, m=art.path / "manifest.json")


def test_traversal_does_not_reveal_outside_files(tmp_path):
    """A crafted path never reaches the disk: the error is the same whether the target exists or not."""
    outside = tmp_path / "outside.bin"
    outside.write_bytes(b"x" * 123)
    msgs = []
    for target in ("../outside.bin", "../nothing-here.bin"):
        art = _write(tmp_path, f"art-{len(msgs)}")
        _edit(art, _set_path(target))
        with pytest.raises(ArtifactError) as e:
            Artifact.open(art.path)
        msgs.append(str(e.value).replace(target, "T").replace(str(art.path), "A"))
    assert msgs[0] == msgs[1] and "123" not in msgs[0]


def test_unlisted_hf_adapter_file_is_refused(tmp_path):
    art = _write(tmp_path, fmt="hf")
    (art.path / "adapter_config.json").write_text('{"base_model_name_or_path": "/elsewhere"}')
    with pytest.raises(ArtifactError, match="unlisted file adapter_config.json is not in the manifest"):
        Artifact.open(art.path)


def test_writer_lists_every_file_it_wrote(tmp_path):
    """Files a stage writes but does not name (adapter files, ONNX external data) are listed and verified."""
    with ArtifactWriter(tmp_path / "a") as w:
        (w.dir / "model.onnx").write_bytes(b"graph")
        (w.dir / "model.onnx.data").write_bytes(b"weights")
        (w.dir / "adapter").mkdir()
        (w.dir / "adapter" / "adapter_config.json").write_text("{}")
        art = w.commit(stage="export", format="onnx", task="text-classification", files={"model": "model.onnx"})
    assert {e["path"] for e in art.manifest["files"].values()} == {
        "model.onnx", "model.onnx.data", "adapter/adapter_config.json"}
    (art.path / "model.onnx.data").write_bytes(b"weightz")
    with pytest.raises(ArtifactError, match="checksum mismatch for model.onnx.data"):
        Artifact.open(art.path)


def test_writer_refuses_symlinks_in_its_output(tmp_path):
    with pytest.raises(ArtifactError, match="stage wrote link: artifacts cannot hold symlinks"), \
            ArtifactWriter(tmp_path / "a") as w:
        (w.dir / "model.onnx").write_bytes(b"graph")
        os.symlink("/etc/hostname", w.dir / "link")
        w.commit(stage="export", format="onnx", task="text-classification", files={"model": "model.onnx"})


def test_onnx_external_data_is_verified_and_run(tmp_path):
    """A real ONNX graph with external weights: listed, verified, run from its path; tampering is refused."""
    np = pytest.importorskip("numpy")
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from edgepack.runtime.backends import verified_model_bytes
    from edgepack.runtime.ort import OrtRunner
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.full((4, 2), 0.5, dtype=np.float32), "W")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "W"], ["logits"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 2])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with ArtifactWriter(tmp_path / "ext") as wr:
        onnx.save_model(model, str(wr.dir / "model.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
                        location="model.onnx.data", size_threshold=0)
        art = wr.commit(stage="export", format="onnx", task="text-classification", files={"model": "model.onnx"})
    art = Artifact.open(art.path)
    assert art.has("model.onnx.data") and verified_model_bytes(art) is None
    out = OrtRunner(art.file("model")).infer({"x": np.ones((1, 4), np.float32)})["logits"]
    assert np.allclose(out, 2.0)
    data = bytearray((art.path / "model.onnx.data").read_bytes())
    data[0] ^= 0xFF
    (art.path / "model.onnx.data").write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="checksum mismatch for model.onnx.data"):
        Artifact.open(art.path)


def test_read_verified_checks_the_bytes_it_returns(tmp_path):
    art = _write(tmp_path)
    assert art.read_verified("model") == b"weights"
    (art.path / "model.onnx").write_bytes(b"weightz")
    with pytest.raises(ArtifactError, match="checksum mismatch for model.onnx"):
        art.read_verified("model")


def test_cli_inspect_prints_one_line_and_exits_2(tmp_path, capsys):
    from edgepack.pipeline.cli import main

    art = _write(tmp_path)
    (art.path / "model.onnx.data").write_bytes(b"evil")
    assert main(["inspect", str(art.path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "unlisted file model.onnx.data" in err
