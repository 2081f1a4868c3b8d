"""Triton repository export: config.pbtxt generation and parsing, structural checks, tokenizer step."""

import importlib.util
import json
import shutil

import numpy as np
import pytest
from edgepack.export.triton_check import check_repository
from edgepack.export.triton_pbtxt import Ident, as_list, format_pbtxt, parse_pbtxt
from edgepack.export.triton_repo import TritonConfig, config_dims, export_triton

from edgepack.errors import EdgepackError


@pytest.fixture(scope="module")
def onnx_cls(tiny_bert, tmp_path_factory):
    from edgepack.export.onnx_export import export_onnx

    return export_onnx(tiny_bert, tmp_path_factory.mktemp("trit") / "onnx")


@pytest.fixture(scope="module")
def onnx_enc(tiny_encoder, tmp_path_factory):
    from edgepack.export.onnx_export import export_onnx

    return export_onnx(tiny_encoder, tmp_path_factory.mktemp("trit") / "onnx_enc")


@pytest.fixture(scope="module")
def repo(onnx_cls, tmp_path_factory):
    return export_triton(
        onnx_cls, tmp_path_factory.mktemp("trit") / "repo", TritonConfig(model_name="student")
    )


def _copy(repo, tmp_path):
    dst = tmp_path / "repo"
    shutil.copytree(repo.path, dst)
    return dst


# --- pbtxt -----------------------------------------------------------------------------------------
def test_pbtxt_round_trip_and_other_spellings():
    cfg = {
        "name": "m",
        "max_batch_size": 8,
        "input": [{"name": "x", "data_type": Ident("TYPE_FP32"), "dims": [-1, 3]}],
        "dynamic_batching": {"preferred_batch_size": [2, 4], "max_queue_delay_microseconds": 50},
        "parameters": [{"key": "k", "value": {"string_value": 'a "q"'}}],
        "flag": True,
        "ratio": 0.25,
    }
    text = format_pbtxt(cfg)
    assert "data_type: TYPE_FP32" in text and 'name: "x"' in text
    assert parse_pbtxt(text) == cfg
    hand = '# comment\nname: "a"\ninput { name: "x" dims: [1] }\ninput { name: "y", dims: [ 2 ] }\nkind: KIND_GPU'
    got = parse_pbtxt(hand)
    assert [i["name"] for i in as_list(got["input"])] == ["x", "y"] and got["kind"] == "KIND_GPU"


def test_pbtxt_errors_are_clear():
    with pytest.raises(EdgepackError, match="missing '}'"):
        parse_pbtxt('input { name: "x" ')
    with pytest.raises(EdgepackError, match="line 2"):
        parse_pbtxt('name: "a"\n  @@@')


def test_config_dims_drop_batch_axis_and_refuse_fixed_batch():
    assert config_dims(["batch_size", "sequence_length", 32], True, "h") == [-1, 32]
    assert config_dims(["batch_size", 2], False, "l") == [-1, 2]
    with pytest.raises(EdgepackError, match="fixed first axis"):
        config_dims([4, 2], True, "l")


def test_triton_config_validation():
    with pytest.raises(EdgepackError, match=r"^preferred_batch_sizes: \[16\] must lie in 1..max_batch_size \(8\)$"):
        TritonConfig(max_batch_size=8, preferred_batch_sizes=(4, 16))
    with pytest.raises(EdgepackError, match="^model_name may only use letters, digits, _ . -, got 'a b'$"):
        TritonConfig(model_name="a b")
    with pytest.raises(EdgepackError, match="^max_batch_size must be >= 1 for the tokenizer ensemble"):
        TritonConfig(max_batch_size=0, preferred_batch_sizes=())


# --- repository --------------------------------------------------------------------------------------
def test_repository_layout_and_config_matches_onnx_graph(repo):
    assert check_repository(repo.path) == []
    root = repo.path
    for rel in (
        "student/1/model.onnx",
        "student/config.pbtxt",
        "student/labels.txt",
        "student/tokenizer.json",
        "student_tokenizer/1/model.py",
        "student_tokenizer/1/tokenizer.json",
        "student_text/config.pbtxt",
        "README.md",
    ):
        assert (root / rel).is_file(), rel
    cfg = parse_pbtxt((root / "student/config.pbtxt").read_text())
    assert cfg["platform"] == "onnxruntime_onnx" and cfg["max_batch_size"] == 32
    assert {i["name"]: i["dims"] for i in cfg["input"]} == {
        "input_ids": [-1],
        "attention_mask": [-1],
        "token_type_ids": [-1],
    }
    assert cfg["output"] == [
        {"name": "logits", "data_type": "TYPE_FP32", "dims": [2], "label_filename": "labels.txt"}
    ]
    assert cfg["dynamic_batching"] == {
        "preferred_batch_size": [8, 16, 32],
        "max_queue_delay_microseconds": 100,
    }
    assert cfg["instance_group"][0]["kind"] == "KIND_GPU"
    assert (root / "student/labels.txt").read_text().split() == ["negative", "positive"]
    assert "tritonserver --model-repository=" in (root / "README.md").read_text()


def test_feature_extraction_repo_client_tokenization(onnx_enc, tmp_path):
    art = export_triton(
        onnx_enc,
        tmp_path / "r",
        TritonConfig(model_name="enc", tokenizer="client", instance_kind="cpu", instance_count=2),
    )
    assert check_repository(art.path) == []
    assert sorted(p.name for p in art.path.iterdir() if p.is_dir()) == ["enc"]
    cfg = parse_pbtxt((art.path / "enc/config.pbtxt").read_text())
    assert cfg["output"][0]["dims"] == [-1, 32]  # (sequence, hidden) without the batch axis
    assert cfg["instance_group"] == [{"count": 2, "kind": "KIND_CPU"}]


def test_checker_catches_dims_inconsistent_with_graph(repo, tmp_path):
    root = _copy(repo, tmp_path)
    p = root / "student/config.pbtxt"
    p.write_text(p.read_text().replace("dims: [ 2 ]", "dims: [ 3 ]", 1))
    errs = check_repository(root)
    assert any("'logits' axis 0 is 2 in the model but 3" in e for e in errs), errs


def test_checker_catches_wrong_dtype_missing_input_and_file(repo, tmp_path):
    root = _copy(repo, tmp_path)
    cfg = parse_pbtxt((root / "student/config.pbtxt").read_text())
    cfg["input"] = [i for i in cfg["input"] if i["name"] != "token_type_ids"]
    cfg["input"][0]["data_type"] = Ident("TYPE_INT32")
    cfg["dynamic_batching"]["preferred_batch_size"] = [64]
    (root / "student/config.pbtxt").write_text(format_pbtxt(cfg))
    (root / "student_tokenizer/1/model.py").unlink()
    errs = "\n".join(check_repository(root))
    assert "needs inputs ['token_type_ids']" in errs
    assert "'input_ids' is int64 in the model but TYPE_INT32" in errs
    assert "preferred_batch_size [64] outside 1..max_batch_size (32)" in errs
    assert "student_tokenizer: version 1 has no model.py" in errs
    assert (
        "step 1 leaves inputs ['token_type_ids']" not in errs
    )  # the step still feeds it; the model lacks it
    assert "step 1 feeds 'token_type_ids', which student does not take" in errs


def test_checker_catches_broken_ensemble(repo, tmp_path):
    root = _copy(repo, tmp_path)
    p = root / "student_text/config.pbtxt"
    p.write_text(p.read_text().replace('model_name: "student_tokenizer"', 'model_name: "nope"'))
    errs = "\n".join(check_repository(root))
    assert "step 0 uses model 'nope', which is not in the repository" in errs
    assert "step 1 reads 'input_ids' before any step produces it" in errs


def test_tokenizer_step_matches_runtime_and_feeds_the_model(repo, onnx_cls):
    """The generated Python-backend model.py tokenizes like the runtime; its output runs the repo's model."""
    from edgepack.runtime.ort import OrtRunner
    from edgepack.runtime.predictor import Predictor

    from edgepack.testing import SAMPLE_TEXTS

    spec = importlib.util.spec_from_file_location("tok_model", repo.path / "student_tokenizer/1/model.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    model = mod.TritonPythonModel()
    tok_cfg = parse_pbtxt((repo.path / "student_tokenizer/config.pbtxt").read_text())
    cfg_json = json.dumps(
        {"parameters": {p["key"]: p["value"] for p in tok_cfg["parameters"]}, "output": tok_cfg["output"]}
    )  # Triton hands the config to Python as JSON
    model.initialize(
        {
            "model_config": cfg_json,
            "model_repository": str(repo.path / "student_tokenizer"),
            "model_version": "1",
        }
    )
    assert model.output_names == ["input_ids", "attention_mask", "token_type_ids"]
    assert set(model.output_dtypes.values()) == {np.int64}
    texts = mod.decode_text_tensor(np.array([[t.encode()] for t in SAMPLE_TEXTS], dtype=object))
    assert texts == SAMPLE_TEXTS
    feeds = mod.encode_texts(
        model.tokenizer, texts, model.pad_token_id, model.pad_to_multiple_of, model.max_length
    )
    assert feeds["input_ids"].shape[1] % 16 == 0  # pad_to_multiple_of=16 from config.pbtxt
    logits = OrtRunner(repo.path / "student/1/model.onnx").infer(feeds)["logits"]
    ref = Predictor.open(onnx_cls.path, backend="ort-cpu").infer(SAMPLE_TEXTS)
    e = np.exp(logits - logits.max(-1, keepdims=True))
    np.testing.assert_allclose(e / e.sum(-1, keepdims=True), ref, atol=1e-5)


def test_export_refuses_wrong_format(tiny_bert, tmp_path):
    with pytest.raises(EdgepackError, match="this step needs 'onnx' or 'tensorrt'"):
        from edgepack.artifact import ArtifactWriter

        with ArtifactWriter(tmp_path / "hf") as w:
            (w.dir / "x.txt").write_text("x")
            art = w.commit(stage="t", format="hf", task="text-classification", files={"x": "x.txt"})
        export_triton(art, tmp_path / "out")


@pytest.mark.slow
def test_demo_minilm_repository_passes_check(minilm_path, tmp_path):
    """The real all-MiniLM-L6-v2 encoder exported to ONNX, then to a Triton repository."""
    from edgepack.export.onnx_export import OnnxExportConfig, export_onnx

    art = export_onnx(minilm_path, tmp_path / "onnx", OnnxExportConfig(max_length=128))
    repo = export_triton(art, tmp_path / "repo", TritonConfig(model_name="minilm"))
    assert check_repository(repo.path) == []
    cfg = parse_pbtxt((repo.path / "minilm/config.pbtxt").read_text())
    assert cfg["output"][0]["dims"] == [-1, 384]
    ens = parse_pbtxt((repo.path / "minilm_text/config.pbtxt").read_text())
    assert [o["name"] for o in ens["output"]] == ["last_hidden_state", "attention_mask"]


def _trt_artifact(onnx_art, tmp_path, max_batch=16, profiles=None):
    """A tensorrt-format artifact as build_engine writes it (engine IO int32, one profile). The plan bytes
    are a placeholder: only config generation is exercised, no engine is loaded."""
    from edgepack.artifact import ArtifactWriter
    from edgepack.contract import ShapeRange

    with ArtifactWriter(tmp_path / "trt") as w:
        (w.dir / "model.plan").write_bytes(b"placeholder")
        shutil.copyfile(onnx_art.file("tokenizer"), w.dir / "tokenizer.json")
        return w.commit(
            stage="export",
            format="tensorrt",
            task=onnx_art.task,
            labels=onnx_art.labels,
            inputs=[{**i, "dtype": "int32"} for i in onnx_art.inputs],
            outputs=onnx_art.outputs,
            files={"engine": "model.plan", "tokenizer": "tokenizer.json"},
            runtime=onnx_art.runtime.replace(profiles=profiles or (ShapeRange(1, 8, max_batch, 1, 64, 128),)),
        )


def test_multi_profile_engine_lists_every_profile_and_the_checker_verifies_it(onnx_cls, tmp_path):
    from edgepack.contract import ShapeRange

    buckets = (ShapeRange(1, 8, 16, 1, 16, 32), ShapeRange(1, 8, 16, 33, 64, 96), ShapeRange(1, 8, 16, 97, 128, 128))
    trt = _trt_artifact(onnx_cls, tmp_path, profiles=buckets)
    repo = export_triton(trt, tmp_path / "repo", TritonConfig(model_name="eng", max_batch_size=16,
                                                               preferred_batch_sizes=(16,), gpus=(0, 1)))
    cfg_path = repo.path / "eng/config.pbtxt"
    cfg = parse_pbtxt(cfg_path.read_text())
    assert [g["profile"] for g in cfg["instance_group"]] == [["0", "1", "2"]]
    assert check_repository(repo.path) == []
    text = cfg_path.read_text()
    cfg_path.write_text(text.replace('profile: [ "0", "1", "2" ]', 'profile: [ "0" ]'))
    assert any("3 optimization profiles but instance_group 0 lists ['0']" in e for e in check_repository(repo.path))
    cfg_path.write_text(text.replace('profile: [ "0", "1", "2" ]\n', ""))
    assert any("Triton then uses profile 0 only" in e for e in check_repository(repo.path))
    cfg_path.write_text(text.replace('"2" ]', '"7" ]'))
    assert any("profiles ['7'] the engine does not have" in e for e in check_repository(repo.path))
    single = export_triton(_trt_artifact(onnx_cls, tmp_path / "one"), tmp_path / "r1",
                           TritonConfig(model_name="one", max_batch_size=16, preferred_batch_sizes=(16,)))
    assert "profile" not in parse_pbtxt((single.path / "one/config.pbtxt").read_text())["instance_group"][0]


def test_readme_client_snippets_define_what_they_use(onnx_cls, tmp_path):
    import ast
    import builtins

    for tok in ("client", "ensemble"):
        art = export_triton(onnx_cls, tmp_path / tok, TritonConfig(model_name="m", tokenizer=tok, instance_kind="cpu"))
        readme = (art.path / "README.md").read_text()
        blocks, cur = [], []
        for line in readme.splitlines() + [""]:
            if line.startswith("    ") and not line.strip().startswith(("docker", "-v", "tritonserver")):
                cur.append(line[4:])
            elif cur:
                blocks.append("\n".join(cur))
                cur = []
        code = [b for b in blocks if "infer(" in b]
        assert code, readme
        for block in code:  # each snippet runs on its own: every name it reads is imported or assigned first
            tree = ast.parse(block)
            defined = set(dir(builtins))
            for node in ast.walk(tree):
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    defined |= {(a.asname or a.name).split(".")[0] for a in node.names}
                elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                    defined.add(node.id)
                elif isinstance(node, ast.comprehension):
                    defined |= {n.id for n in ast.walk(node.target) if isinstance(n, ast.Name)}
            used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
            assert used <= defined, (tok, sorted(used - defined), block)


def test_tensorrt_plan_repository(onnx_cls, tmp_path):
    trt = _trt_artifact(onnx_cls, tmp_path)
    repo = export_triton(
        trt,
        tmp_path / "repo",
        TritonConfig(model_name="eng", max_batch_size=16, preferred_batch_sizes=(4, 16)),
    )
    assert check_repository(repo.path) == []
    cfg = parse_pbtxt((repo.path / "eng/config.pbtxt").read_text())
    assert cfg["platform"] == "tensorrt_plan" and (repo.path / "eng/1/model.plan").is_file()
    assert {i["data_type"] for i in cfg["input"]} == {"TYPE_INT32"}
    # the tokenizer step emits the engine's int32 (the ensemble check compares the types)
    tok = parse_pbtxt((repo.path / "eng_tokenizer/config.pbtxt").read_text())
    assert {o["data_type"] for o in tok["output"]} == {"TYPE_INT32"}
    with pytest.raises(EdgepackError, match="exceeds the engine's largest profile batch 16"):
        export_triton(trt, tmp_path / "r2", TritonConfig(max_batch_size=32))
    with pytest.raises(EdgepackError, match="TensorRT plan runs on GPU only"):
        export_triton(
            trt,
            tmp_path / "r3",
            TritonConfig(max_batch_size=16, preferred_batch_sizes=(), instance_kind="cpu"),
        )
