"""Activation outliers on a tiny encoder: plain dynamic INT8 misses a 1-point budget, mixed precision meets it.

The outlier model is built the way real ones look (channels tens of times larger than the rest, compensated
in the weights that read them, so the fp32 function stays sane): in every layer, 6 FFN neurons and 3 value
channels are scaled up 100x and the rows of the next projection scaled down by the same factor.
All INT8 here targets ``avx2`` (7-bit weights): exact on every x86 CPU, so the numbers do not depend on CI's CPU.
"""

from __future__ import annotations

import numpy as np
import pytest

from edgepack.data import SAMPLE_SENTENCES

pytest.importorskip("onnxruntime")
pytest.importorskip("optimum.exporters.onnx")

TEXTS = [f"{a} {b}" for a in SAMPLE_SENTENCES for b in SAMPLE_SENTENCES]  # 49 texts
FFN_CH, V_CH, SCALE = [3, 17, 40, 99, 120, 200], [5, 33, 50], 100.0


def _outlier_encoder(root, outliers: bool):
    import torch
    from transformers import BertModel

    from edgepack.testing import make_tiny_model

    path = make_tiny_model(root, task="feature-extraction", layers=4, hidden=64, heads=4, intermediate=256, seed=1)
    if outliers:
        m = BertModel.from_pretrained(path)
        with torch.no_grad():
            for layer in m.encoder.layer:
                up, down = layer.intermediate.dense, layer.output.dense
                up.weight[FFN_CH] *= SCALE
                up.bias[FFN_CH] = up.bias[FFN_CH].abs() * SCALE + SCALE  # active (positive) after GELU
                down.weight[:, FFN_CH] /= SCALE
                v, o = layer.attention.self.value, layer.attention.output.dense
                v.weight[V_CH] *= SCALE
                v.bias[V_CH] *= SCALE
                o.weight[:, V_CH] /= SCALE
        m.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def outlier_onnx(tmp_path_factory):
    from edgepack.export.onnx_export import OnnxExportConfig, export_onnx

    root = tmp_path_factory.mktemp("outliers")
    return export_onnx(_outlier_encoder(root / "hf", True), root / "fp32", OnnxExportConfig(opset=17))


@pytest.fixture(scope="module")
def plain_onnx(tmp_path_factory):
    from edgepack.export.onnx_export import OnnxExportConfig, export_onnx

    root = tmp_path_factory.mktemp("plain")
    return export_onnx(_outlier_encoder(root / "hf", False), root / "fp32", OnnxExportConfig(opset=17))


def _mean_cosine(a, b) -> float:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return float((a * b).sum(axis=1).mean())


def _embed(art):
    from edgepack.runtime import Predictor

    return Predictor.open(art.path).infer(TEXTS)


def _stage(max_drop: float = 1.0, methods=("dynamic-int8", "dynamic-int8-mixed")):
    from edgepack.quantize.config import QuantizeConfig

    return QuantizeConfig(methods=methods, target_cpu="avx2", max_accuracy_drop=max_drop)


def test_sensitivity_finds_the_outlier_fed_matmuls(outlier_onnx, plain_onnx):
    from edgepack.quantize.calibration import calibration_batches
    from edgepack.quantize.config import CalibrationConfig, DynamicInt8Config
    from edgepack.quantize.mixed import node_sensitivity

    cfg = DynamicInt8Config(target_cpu="avx2")
    calib = CalibrationConfig(num_samples=32)
    ranked = node_sensitivity(outlier_onnx.file("model"), calibration_batches(outlier_onnx, TEXTS, calib), cfg)
    assert len(ranked) == 24  # q, k, v, attention output, FFN in, FFN out of 4 layers
    fed = [r.node for r in ranked if "/output/dense/" in r.node]  # FFN out and attention out read the outliers
    worst = [r.node for r in ranked[:8]]
    assert sorted(worst) == sorted(fed), worst
    # the outlier-fed ones lose most of their signal (measured: -0.1 to 14 dB vs 36-38 dB for the rest)
    assert ranked[7].sqnr_db < 20.0 and ranked[8].sqnr_db > 30.0
    clean = node_sensitivity(plain_onnx.file("model"), calibration_batches(plain_onnx, TEXTS, calib), cfg)
    assert min(r.sqnr_db for r in clean) > 25.0  # without outliers every node quantizes well


def test_plain_int8_misses_the_budget_and_mixed_precision_meets_it(outlier_onnx, tmp_path):
    from edgepack.quantize.api import _budget, build_candidate

    from edgepack.data import as_dataset

    stage = _stage()
    budget = _budget(outlier_onnx, as_dataset(TEXTS).eval_view(None), stage)
    ref = _embed(outlier_onnx)
    plain = build_candidate(outlier_onnx, "dynamic-int8", stage.method_config("dynamic-int8"), tmp_path / "plain",
                            TEXTS, budget)
    assert _mean_cosine(_embed(plain), ref) < 0.99 and budget.drop_of(plain) > 1.0
    mixed = build_candidate(outlier_onnx, "dynamic-int8-mixed", stage.method_config("dynamic-int8-mixed"),
                            tmp_path / "mixed", TEXTS, budget)
    cos = _mean_cosine(_embed(mixed), ref)
    assert cos >= 0.99, cos
    m = mixed.metrics
    assert 1 <= len(m["float_nodes"]) <= 12 and m["float_fraction"] <= 0.5
    assert all("/output/dense/" in f["node"] and f["sqnr_db"] < 20 and "dB alone" in f["why"] for f in m["float_nodes"])
    assert m["search"][0] == {"float_nodes": 0, "accuracy_drop": pytest.approx(budget.drop_of(plain), abs=1e-3),
                              "within_budget": False}
    assert m["search"][-1]["within_budget"] or any(s["within_budget"] for s in m["search"])
    assert mixed.config["keep_float"] == [f["node"] for f in m["float_nodes"]]
    assert mixed.runtime.target_cpu == "avx2"
    assert m["quantized_ops"] > 0 and m["size_bytes"] < outlier_onnx.file("model").stat().st_size
    assert not list(tmp_path.glob("mixed.k*"))  # trial candidates cleaned up


def test_mixed_precision_skips_itself_when_plain_int8_is_within_budget(plain_onnx, tmp_path):
    from edgepack.quantize.api import _budget, build_candidate
    from edgepack.quantize.mixed import NotNeeded

    from edgepack.data import as_dataset

    stage = _stage()
    budget = _budget(plain_onnx, as_dataset(TEXTS).eval_view(None), stage)
    with pytest.raises(NotNeeded, match=r"not needed: plain dynamic INT8 is within budget \(drop "):
        build_candidate(plain_onnx, "dynamic-int8-mixed", stage.method_config("dynamic-int8-mixed"),
                        tmp_path / "m", TEXTS, budget)
    alone = _stage(methods=("dynamic-int8-mixed",))  # without the plain candidate it is the plain model
    art = build_candidate(plain_onnx, "dynamic-int8-mixed", alone.method_config("dynamic-int8-mixed"),
                          tmp_path / "m2", TEXTS, _budget(plain_onnx, as_dataset(TEXTS).eval_view(None), alone))
    assert art.metrics["float_nodes"] == [] and art.metrics["float_fraction"] == 0.0


def test_mixed_precision_gives_up_clearly_when_the_budget_is_impossible(outlier_onnx, tmp_path):
    from edgepack.quantize.api import _budget, build_candidate

    from edgepack.data import as_dataset
    from edgepack.errors import EdgepackError

    stage = _stage(max_drop=0.0)
    budget = _budget(outlier_onnx, as_dataset(TEXTS).eval_view(None), stage)
    import dataclasses

    mcfg = dataclasses.replace(stage.method_config("dynamic-int8-mixed"), max_float_fraction=0.1)
    with pytest.raises(EdgepackError, match=r"still over budget with the 2 least accurate of 24 MatMuls kept float"):
        build_candidate(outlier_onnx, "dynamic-int8-mixed", mcfg, tmp_path / "m", TEXTS, budget)
    assert not list(tmp_path.iterdir())


def test_smoothing_keeps_the_fp32_function_and_helps_static_int8(outlier_onnx, tmp_path):
    from edgepack.quantize.api import build_candidate
    from edgepack.quantize.calibration import calibration_batches
    from edgepack.quantize.config import CalibrationConfig
    from edgepack.quantize.smooth import smooth_model
    from edgepack.runtime.ort import OrtRunner

    batches = calibration_batches(outlier_onnx, TEXTS, CalibrationConfig(num_samples=32))
    stats = smooth_model(outlier_onnx.file("model"), tmp_path / "s.onnx", batches, 0.5)
    assert stats["smoothed_tensors"] == 16  # 4 per layer: the Q/K/V input, attention-out input, FFN in, FFN out
    assert stats["max_channel_ratio"] > 20
    a, b = OrtRunner(outlier_onnx.file("model")), OrtRunner(tmp_path / "s.onnx")
    for feeds in batches[:2]:
        ra, rb = a.infer(feeds)["last_hidden_state"], b.infer(feeds)["last_hidden_state"]
        np.testing.assert_allclose(rb, ra, atol=1e-4, rtol=1e-4)  # an exact rewrite in fp32
    stage = _stage(methods=("static-int8-minmax", "static-int8-smooth"))
    plain = build_candidate(outlier_onnx, "static-int8-minmax", stage.method_config("static-int8-minmax"),
                            tmp_path / "p", TEXTS)
    smooth = build_candidate(outlier_onnx, "static-int8-smooth", stage.method_config("static-int8-smooth"),
                             tmp_path / "q", TEXTS)
    assert smooth.metrics["sqnr_db"] > plain.metrics["sqnr_db"] + 3.0, (plain.metrics["sqnr_db"], smooth.metrics["sqnr_db"])


def test_tensorrt_preset_has_symmetric_activations(plain_onnx, tmp_path):
    import onnx
    from edgepack.quantize.api import build_candidate
    from edgepack.quantize.config import QuantizeConfig
    from onnx import numpy_helper

    art = build_candidate(plain_onnx, "static-int8-trt", QuantizeConfig().method_config("static-int8-trt"),
                          tmp_path / "t", TEXTS)
    m = onnx.load(str(art.file("model")))
    inits = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    zps = [inits[n.input[2]] for n in m.graph.node if n.op_type == "QuantizeLinear" and len(n.input) > 2]
    assert zps and all(z.dtype == np.int8 and not z.any() for z in zps)
    assert art.metrics["sqnr_db"] >= 15.0
    from edgepack.export.trt_engine import TrtBuildConfig, plan_int8
    from edgepack.export.trt_graph import inspect_onnx_for_trt

    assert plan_int8(inspect_onnx_for_trt(art.file("model")), TrtBuildConfig(precision="int8"), False) == "qdq"
