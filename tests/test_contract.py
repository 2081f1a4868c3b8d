"""The typed runtime contract: validation of every field, round trips, and manifests that carry a bad one."""

import json

import pytest

from edgepack.artifact import Artifact, ArtifactError, ArtifactWriter
from edgepack.contract import ContractError, RuntimeContract, ShapeRange

FULL = RuntimeContract(
    max_length=128, pad_token_id=0, model_type="bert", num_heads=4, hidden_size=32, num_layers=2, opset=18,
    pooling="cls", normalize=False, precision="int8-static", fused=False, quantization="static-int8-minmax",
    target_cpu="avx2", reduce_range=True, weight_type="qint8", torch_source="/m",
    tensorrt_version="10.3.0", gpu_name="NVIDIA H100", compute_capability="9.0",
    profiles=(ShapeRange(1, 4, 8, 1, 16, 32), ShapeRange(1, 4, 8, 33, 64, 128)), int8_mode="qdq",
    sparse_weights=False, onnx_sha256="ab" * 32, calibration_batches=0,
    model_name="m", platform="tensorrt_plan", ensemble="m_text",
)


def test_round_trip_through_dict_and_json():
    d = FULL.to_dict()
    assert d["profiles"][1] == {"min_batch": 1, "opt_batch": 4, "max_batch": 8, "min_seq": 33, "opt_seq": 64,
                                "max_seq": 128}
    assert RuntimeContract.from_dict(json.loads(json.dumps(d))) == FULL
    assert RuntimeContract.from_dict({}) == RuntimeContract()
    assert RuntimeContract().to_dict() == {"precision": "fp32", "fused": False}  # unset fields left out


BAD_FIELDS = [
    ("max_length", 0, "'max_length' must be >= 1, got 0"),
    ("max_length", "128", "'max_length' must be an integer, got str '128'"),
    ("max_length", True, "'max_length' must be an integer, got bool True"),
    ("pad_token_id", -1, "'pad_token_id' must be >= 0"),
    ("model_type", 3, "'model_type' must be a string"),
    ("num_heads", 0, "'num_heads' must be >= 1"),
    ("hidden_size", 3.5, "'hidden_size' must be an integer"),
    ("num_layers", 0, "'num_layers' must be >= 1"),
    ("opset", 0, "'opset' must be >= 1"),
    ("pooling", "max", "'pooling' must be one of mean, cls, got 'max'"),
    ("normalize", 1, "'normalize' must be true or false, got int 1"),
    ("precision", "int4", "'precision' must be one of fp32, fp16, int8-dynamic, int8-static, nf4, got 'int4'"),
    ("precision", None, "'precision' must be a string"),
    ("fused", "yes", "'fused' must be true or false"),
    ("quantization", 1, "'quantization' must be a string"),
    ("target_cpu", "avx9", "'target_cpu' must be one of auto, avx2, avx512-vnni, arm64"),
    ("reduce_range", "no", "'reduce_range' must be true or false"),
    ("weight_type", "int4", "'weight_type' must be one of qint8, quint8"),
    ("torch_source", 1, "'torch_source' must be a string"),
    ("tensorrt_version", 10, "'tensorrt_version' must be a string"),
    ("gpu_name", 1, "'gpu_name' must be a string"),
    ("compute_capability", "9", "'compute_capability' must look like '9.0'"),
    ("compute_capability", 9.0, "'compute_capability' must be a string"),
    ("profiles", 3, "'profiles' must be a list of shape ranges"),
    ("profiles", [{"min_batch": 0}], "'profiles': batch lengths must satisfy 1 <= min <= opt <= max"),
    ("profiles", [{"max_seq": 64, "bogus": 1}], "'profiles': unknown ShapeRange option"),
    ("int8_mode", "auto", "'int8_mode' must be one of none, qdq, calibrate, cache"),
    ("sparse_weights", 0, "'sparse_weights' must be true or false"),
    ("onnx_sha256", 1, "'onnx_sha256' must be a string"),
    ("calibration_batches", -1, "'calibration_batches' must be >= 0"),
    ("model_name", 1, "'model_name' must be a string"),
    ("platform", "pytorch_libtorch", "'platform' must be one of onnxruntime_onnx, tensorrt_plan"),
    ("ensemble", 1, "'ensemble' must be a string"),
]


@pytest.mark.parametrize("field,value,message", BAD_FIELDS)
def test_each_bad_field_is_one_line_naming_it(field, value, message):
    with pytest.raises(ContractError) as e:
        RuntimeContract.from_dict({field: value})
    assert message in str(e.value) and "\n" not in str(e.value)
    assert f"'{field}'" in str(e.value)


def test_every_field_has_a_validation_case():
    import dataclasses

    assert {f.name for f in dataclasses.fields(RuntimeContract)} <= {c[0] for c in BAD_FIELDS}


def test_unknown_keys_are_refused():
    with pytest.raises(ContractError, match="runtime contract has unknown field.s. max_len; valid: "):
        RuntimeContract.from_dict({"max_len": 128})


def test_replace_validates_and_defaults_apply():
    with pytest.raises(ContractError, match="'pooling'"):
        FULL.replace(pooling="sum")
    assert RuntimeContract().embedding_pooling() == ("mean", True)
    assert RuntimeContract(pooling="cls").embedding_pooling() == ("cls", False)
    assert RuntimeContract(pooling="mean", normalize=False).embedding_pooling() == ("mean", False)


def _write(tmp_path, runtime=None, extra=None):
    with ArtifactWriter(tmp_path / "art") as w:
        (w.dir / "model.onnx").write_bytes(b"x")
        return w.commit(stage="export", format="onnx", task="text-classification", files={"model": "model.onnx"},
                        runtime=runtime, extra=extra)


def test_artifact_exposes_the_typed_contract(tmp_path):
    art = _write(tmp_path, FULL, extra={"teacher": "t"})
    again = Artifact.open(art.path)
    assert again.runtime == FULL and again.manifest["runtime"]["max_length"] == 128
    assert again.extra == {"teacher": "t"} and again.manifest["schema"] == 2


@pytest.mark.parametrize("bad,message", [
    ({"max_length": "long"}, "'max_length' must be an integer"),
    ({"pooling": "max"}, "'pooling' must be one of mean, cls"),
    ({"colour": "red"}, "unknown field(s) colour"),
])
def test_manifest_with_a_bad_contract_fails_to_open(tmp_path, bad, message):
    art = _write(tmp_path, RuntimeContract(max_length=64))
    m = json.loads((art.path / "manifest.json").read_text())
    m["runtime"].update(bad)
    (art.path / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ArtifactError) as e:
        Artifact.open(art.path)
    assert message in str(e.value) and "\n" not in str(e.value) and "manifest.json" in str(e.value)


def test_schema_1_manifest_reads_the_contract_from_extra(tmp_path):
    art = _write(tmp_path)
    m = json.loads((art.path / "manifest.json").read_text())
    del m["runtime"]
    m.update(schema=1, extra={"max_length": 96, "precision": "int8-dynamic", "teacher": "t"})
    (art.path / "manifest.json").write_text(json.dumps(m))
    old = Artifact.open(art.path)
    assert old.runtime.max_length == 96 and old.runtime.precision == "int8-dynamic"
    m["extra"].update(precision="torch-dynamic-int8")  # schema 1 wrote torch methods (and TensorRT "int8")
    (art.path / "manifest.json").write_text(json.dumps(m))
    old = Artifact.open(art.path)
    assert old.runtime.precision == "int8-dynamic" and old.runtime.quantization == "torch-dynamic-int8"
    m["extra"]["pooling"] = "max"
    (art.path / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ArtifactError, match="'pooling' must be one of"):
        Artifact.open(art.path)


def test_writers_cannot_put_contract_fields_in_extra(tmp_path):
    with pytest.raises(ValueError, match="max_length belong in the runtime contract"):
        _write(tmp_path, extra={"max_length": 128})
