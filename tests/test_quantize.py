"""ONNX quantizers on tiny random models: SQNR floors vs fp32, exclusions, the budget stage, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgepack.errors import EdgepackError
from edgepack.testing import SAMPLE_TEXTS

pytest.importorskip("onnxruntime")
pytest.importorskip("optimum.exporters.onnx")

CALIB = SAMPLE_TEXTS * 4


@pytest.fixture(scope="module")
def fp32_onnx(tiny_bert, tmp_path_factory):
    from edgepack.export.onnx_export import OnnxExportConfig, export_onnx

    return export_onnx(tiny_bert, tmp_path_factory.mktemp("q") / "fp32", OnnxExportConfig(opset=17))


@pytest.fixture(scope="module")
def fused_onnx(fp32_onnx, tmp_path_factory):
    from edgepack.export.fusion import optimize_onnx

    return optimize_onnx(fp32_onnx, tmp_path_factory.mktemp("q") / "fused")


def _probs(art):
    from edgepack.runtime import Predictor

    return Predictor.open(art.path).infer(SAMPLE_TEXTS)


@pytest.mark.parametrize("graph", ["fp32_onnx", "fused_onnx"])
@pytest.mark.parametrize("method,floor_db,precision", [
    ("dynamic-int8", 25.0, "int8-dynamic"),
    ("dynamic-int8-per-tensor", 25.0, "int8-dynamic"),
    ("static-int8-minmax", 20.0, "int8-static"),
    ("static-int8-entropy", 20.0, "int8-static"),
    ("static-int8-percentile", 20.0, "int8-static"),
    ("fp16", 50.0, "fp16"),
])
def test_quantizer_sqnr_floor_and_runtime(request, tmp_path, graph, method, floor_db, precision):
    from edgepack.quantize.api import build_candidate
    from edgepack.quantize.config import QuantizeConfig

    parent = request.getfixturevalue(graph)
    art = build_candidate(parent, method, QuantizeConfig().method_config(method), tmp_path / method, CALIB)
    m = art.metrics
    assert m["sqnr_db"] >= floor_db, f"{method} on {graph}: SQNR {m['sqnr_db']:.1f} dB < {floor_db} dB"
    assert art.runtime.precision == precision and art.runtime.quantization == method
    assert art.file("tokenizer").read_bytes() == parent.file("tokenizer").read_bytes()
    if precision.startswith("int8"):
        assert m["quantized_ops"] > 0 and m["size_bytes"] < parent.file("model").stat().st_size
    # the lean runtime opens it unchanged and agrees with the parent within the SQNR-implied error
    got, ref = _probs(art), _probs(parent)
    np.testing.assert_allclose(got, ref, atol=0.02)


def test_dynamic_per_channel_attention_is_per_tensor_on_fused_graph(fused_onnx, tmp_path):
    from edgepack.quantize.graph import op_counts
    from edgepack.quantize.onnx_dynamic import quantize_dynamic_onnx

    art = quantize_dynamic_onnx(fused_onnx, tmp_path / "d")
    ops = op_counts(art.file("model"))
    assert ops["QAttention"] == 2 and ops["Attention"] == 0  # both layers' fused attention run in int8
    assert ops["MatMulInteger"] > 0 and ops["MatMul"] == 0


def test_excluded_nodes_stay_float(fp32_onnx, tmp_path):
    import onnx

    from edgepack.quantize.config import DynamicInt8Config, Exclusions
    from edgepack.quantize.onnx_dynamic import quantize_dynamic_onnx

    cfg = DynamicInt8Config(exclude=Exclusions(nodes=("*layer.1/*", "embeddings")))
    art = quantize_dynamic_onnx(fp32_onnx, tmp_path / "x", cfg)
    m = onnx.load(str(art.file("model")))
    inits = {i.name: i for i in m.graph.initializer}
    kept = [n for n in m.graph.node if n.name.startswith("/bert/encoder/layer.1/") and n.op_type == "MatMul"
            and any(i in inits for i in n.input)]
    assert len(kept) == 6  # q, k, v, attention output, intermediate, output dense of layer 1
    for n in kept:  # their weights are still fp32 initializers
        assert all(inits[i].data_type == onnx.TensorProto.FLOAT for i in n.input if i in inits)
    gathers = [n for n in m.graph.node if n.op_type == "Gather" and "embeddings" in n.name]
    assert gathers and all(inits[n.input[0]].data_type == onnx.TensorProto.FLOAT for n in gathers if n.input[0] in inits)
    layer0 = [n for n in m.graph.node if n.name.startswith("/bert/encoder/layer.0/") and n.op_type == "MatMulInteger"]
    assert layer0, "layer 0 was not excluded and must be quantized"
    assert art.metrics["excluded_nodes"] >= 6


def test_exclude_op_type_keeps_all_of_that_type_float(fp32_onnx, tmp_path):
    from edgepack.quantize.config import DynamicInt8Config, Exclusions
    from edgepack.quantize.graph import op_counts
    from edgepack.quantize.onnx_dynamic import quantize_dynamic_onnx

    art = quantize_dynamic_onnx(fp32_onnx, tmp_path / "x", DynamicInt8Config(exclude=Exclusions(op_types=("MatMul",))))
    ops = op_counts(art.file("model"))
    assert ops["MatMulInteger"] == 0 and ops["DynamicQuantizeLinear"] == 0 and ops["MatMul"] >= 16
    assert ops["DequantizeLinear"] > 0  # the embedding Gathers (not excluded) are still int8


def test_quantize_stage_selects_within_budget_and_records_table(fp32_onnx, tmp_path, capsys):
    from edgepack.quantize import QuantizeConfig, quantize
    from edgepack.runtime import Predictor

    labels = [i % 2 for i in range(len(CALIB))]
    cfg = QuantizeConfig(methods=("dynamic-int8", "static-int8-minmax"), max_accuracy_drop=100.0,
                         latency_batches=2, latency_rounds=3)
    try:
        art = quantize(fp32_onnx, (CALIB, labels), cfg, tmp_path / "sel")
    except EdgepackError as e:  # on a tiny model neither may beat fp32 under load: then nothing is written
        assert "faster than it" in str(e) and not (tmp_path / "sel").exists()
        return
    m = art.metrics
    assert [c["name"] for c in m["candidates"]] == ["dynamic-int8", "static-int8-minmax"]
    chosen = [c for c in m["candidates"] if c["status"] == "selected"]
    assert len(chosen) == 1 and chosen[0]["name"] == m["method"] and chosen[0]["latency_ratio"] < 1.0
    assert m["latency_ms"] < m["parent_latency_ms"]
    assert art.manifest["parent"]["path"] == str(fp32_onnx.path)
    assert art.runtime.precision in ("int8-dynamic", "int8-static")
    assert "parent (fp32)" in capsys.readouterr().out
    assert Predictor.open(art.path).infer(["great film"]).shape == (1, 2)
    json.dumps(art.manifest)  # the whole manifest, table included, is JSON


def test_stage_writes_nothing_when_no_candidate_qualifies(fp32_onnx, tmp_path, monkeypatch):
    import edgepack.quantize.api as api
    from edgepack.quantize import NoCandidateError, QuantizeConfig, quantize
    from edgepack.quantize.budget import Measurement

    def fake_measure(parent, built, td, cfg):  # measured numbers: one over budget, one slower than fp32
        return (Measurement("parent", "fp32", 90.0, 1000, 10.0),
                [Measurement("dynamic-int8", "int8-dynamic", 88.0, 250, 5.0),
                 Measurement("fp16", "fp16", 90.0, 500, 30.0)])

    monkeypatch.setattr(api, "measure", fake_measure)
    cfg = QuantizeConfig(methods=("dynamic-int8", "fp16"), max_accuracy_drop=1.0)
    with pytest.raises(NoCandidateError, match="nothing written") as e:
        quantize(fp32_onnx, (CALIB, [0] * len(CALIB)), cfg, tmp_path / "none")
    assert "over budget" in str(e.value) and "not faster than parent" in str(e.value)
    assert not (tmp_path / "none").exists()
    assert not [p for p in tmp_path.iterdir() if "candidates" in p.name]  # scratch removed


def test_bad_inputs(tiny_bert, fp32_onnx, tmp_path):
    from edgepack.quantize import QuantizeConfig, quantize
    from edgepack.quantize.onnx_dynamic import quantize_dynamic_onnx
    from edgepack.quantize.onnx_static import quantize_static_onnx
    from edgepack.quantize.config import StaticInt8Config

    with pytest.raises(EdgepackError, match=r"unknown quantization method\(s\) 'int3'; known: dynamic-int8"):
        QuantizeConfig(methods=("int3",))
    with pytest.raises(EdgepackError, match="not an edgepack artifact"):
        quantize_dynamic_onnx(tiny_bert, tmp_path / "a")
    with pytest.raises(EdgepackError, match="max_accuracy_drop must be >= 0"):
        QuantizeConfig(max_accuracy_drop=-1)
    with pytest.raises(EdgepackError, match="^method must be one of minmax, entropy, percentile, got 'kl'$"):
        StaticInt8Config(method="kl")
    with pytest.raises(EdgepackError, match="needs calibration texts"):
        quantize_static_onnx(fp32_onnx, tmp_path / "c", [], StaticInt8Config())
    with pytest.raises(EdgepackError, match="3 texts but 2 labels"):
        quantize(fp32_onnx, (["a", "b", "c"], [0, 1]), QuantizeConfig(), tmp_path / "d")
    int8 = quantize_dynamic_onnx(fp32_onnx, tmp_path / "e")
    with pytest.raises(EdgepackError, match="already int8-dynamic"):
        quantize_dynamic_onnx(int8, tmp_path / "f")


def test_configs_round_trip_through_json():
    from edgepack.quantize.config import METHODS, QuantizeConfig

    from edgepack.config import config_from_dict as from_dict
    from edgepack.config import config_to_dict as to_dict

    cfg = QuantizeConfig(methods=("dynamic-int8", "fp16"), max_accuracy_drop=0.5,
                         overrides={"dynamic-int8": {"per_channel": False}})
    again = from_dict(QuantizeConfig, json.loads(json.dumps(to_dict(cfg))))
    assert again == cfg
    for c in METHODS.values():
        assert from_dict(type(c), json.loads(json.dumps(to_dict(c)))) == c
    assert cfg.method_config("dynamic-int8").per_channel is False
    with pytest.raises(EdgepackError, match=r"unknown QuantizeConfig option\(s\) nope; valid: "):
        from_dict(QuantizeConfig, {"nope": 1})


def test_eval_labels_are_matched_to_the_model_by_name():
    from types import SimpleNamespace

    from edgepack.quantize.api import _labels_for

    from edgepack.data import Dataset

    model = SimpleNamespace(task="text-classification", labels=["rotten", "fresh"])
    ds = Dataset([], val_texts=["a", "b", "c"], val_labels=[0, 1, 1], label_names=["fresh", "rotten"])
    assert _labels_for(model, ds) == [1, 0, 0]
    only_fresh = Dataset([], val_texts=["a"], val_labels=[0], label_names=["fresh"])  # an eval set without some class
    assert _labels_for(model, only_fresh) == [1]
    with pytest.raises(EdgepackError, match="not the model's"):
        _labels_for(model, Dataset([], val_texts=["a"], val_labels=[0], label_names=["cat", "dog"]))
