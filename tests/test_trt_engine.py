"""TensorRT engines: graph checks and INT8 planning (export), compatibility checks of the recorded
environment and profile read-back (runtime), on CPU; the engine build/run itself (marked ``tensorrt`` + ``gpu``; skipped where TensorRT or a GPU is missing)."""

import importlib.util
import json

import numpy as np
import pytest
from edgepack.export.trt_engine import TrtBuildConfig, build_engine, plan_int8
from edgepack.export.trt_graph import count_2to4_weights, inspect_onnx_for_trt, is_2to4_sparse
from edgepack.runtime.trt_engine import (
    RuntimeEnv,
    check_engine_compatibility,
    engine_profiles,
    load_engine,
    parse_nvidia_smi,
)

from edgepack.artifact import Artifact, ArtifactError, ArtifactWriter
from edgepack.contract import RuntimeContract, ShapeRange
from edgepack.errors import EdgepackError, MissingDependencyError

HAS_TRT = importlib.util.find_spec("tensorrt") is not None
H100 = RuntimeEnv("10.3.0", "NVIDIA H100 80GB HBM3", "9.0")
H100_RT = RuntimeContract(**H100.contract_fields())


@pytest.fixture(scope="module")
def onnx_art(tiny_bert, tmp_path_factory):
    from edgepack.export.onnx_export import export_onnx

    return export_onnx(tiny_bert, tmp_path_factory.mktemp("trt") / "onnx")


def _engine_artifact(tmp_path, runtime):
    """A tensorrt-format artifact with runtime contract ``runtime`` (the plan bytes are never parsed here)."""
    with ArtifactWriter(tmp_path / "engine", overwrite=True) as w:
        (w.dir / "model.plan").write_bytes(b"plan")
        return w.commit(
            stage="export",
            format="tensorrt",
            task="text-classification",
            files={"engine": "model.plan"},
            runtime=runtime,
        )


# --- compatibility -------------------------------------------------------------------------------
def test_compatible_engine_passes_and_same_arch_other_gpu_warns():
    assert check_engine_compatibility(H100_RT, H100) == []
    other = RuntimeEnv("10.3.0", "NVIDIA H200", "9.0")
    (warning,) = check_engine_compatibility(H100_RT, other)
    assert "built on NVIDIA H100 80GB HBM3 and runs on NVIDIA H200" in warning


def test_mismatched_engine_is_refused_with_a_clear_error():
    with pytest.raises(
        ArtifactError, match=r"built with TensorRT 10.3.0 but this process has TensorRT 10.8.0"
    ):
        check_engine_compatibility(H100_RT, RuntimeEnv("10.8.0", H100.gpu_name, "9.0"))
    with pytest.raises(ArtifactError, match=r"compute capability 9.0\) but this GPU is NVIDIA A100.*8.0"):
        check_engine_compatibility(H100_RT, RuntimeEnv("10.3.0", "NVIDIA A100-SXM4-80GB", "8.0"))
    with pytest.raises(ArtifactError, match="does not record 'compute_capability'"):
        check_engine_compatibility(RuntimeContract(tensorrt_version="10.3.0", gpu_name="x"), H100)


def test_parse_nvidia_smi():
    assert parse_nvidia_smi("NVIDIA H100 80GB HBM3, 9.0\n") == ("NVIDIA H100 80GB HBM3", "9.0")
    with pytest.raises(EdgepackError, match="could not read"):
        parse_nvidia_smi("\n")


def test_engine_profiles_read_back_from_manifest(tmp_path):
    ranges = [ShapeRange(1, 4, 8, 1, 16, 32), ShapeRange(1, 4, 8, 33, 64, 128)]
    art = _engine_artifact(tmp_path, H100_RT.replace(profiles=tuple(ranges)))
    assert engine_profiles(Artifact.open(art.path)) == ranges
    with pytest.raises(ArtifactError, match="records no optimization 'profiles'"):
        engine_profiles(_engine_artifact(tmp_path, H100_RT))


@pytest.mark.skipif(HAS_TRT, reason="checks the message shown when TensorRT is missing")
def test_opening_an_engine_without_tensorrt_is_one_clear_line(tmp_path):
    art = _engine_artifact(tmp_path, H100_RT)
    with pytest.raises(
        MissingDependencyError, match=r"running a TensorRT engine needs the 'tensorrt' package"
    ):
        load_engine(art)


# --- graph checks and INT8 planning --------------------------------------------------------------
def test_2to4_detection(onnx_art, tmp_path):
    import onnx
    from onnx import numpy_helper

    w = np.arange(1, 33, dtype=np.float32).reshape(8, 4)  # (K, N)
    assert not is_2to4_sparse(w, 0)
    w[1::4] = 0
    w[2::4] = 0
    assert is_2to4_sparse(w, 0) and not is_2to4_sparse(w.T.copy(), 0) and is_2to4_sparse(w.T.copy(), 1)

    model = onnx.load(str(onnx_art.file("model")))
    total, sparse = count_2to4_weights(model)
    assert total >= 8 and sparse == 0  # 2 layers x (Q, K, V, O, FFN in, FFN out) at least
    axis_of = {
        n.input[1]: (1 if n.op_type == "Gemm" and any(a.name == "transB" and a.i for a in n.attribute) else 0)
        for n in model.graph.node
        if n.op_type in ("MatMul", "Gemm")
    }
    for init in model.graph.initializer:
        a = numpy_helper.to_array(init)
        if init.name in axis_of and a.ndim == 2:
            a = np.moveaxis(a.copy(), axis_of[init.name], 0)  # (K, N)
            a.reshape(-1, 4, a.shape[1])[:, :2] = 0  # zero 2 of every 4 along K
            init.CopyFrom(numpy_helper.from_array(np.moveaxis(a, 0, axis_of[init.name]).copy(), init.name))
    assert count_2to4_weights(model) == (total, total)


def test_plan_int8_modes(onnx_art, tmp_path):
    from onnxruntime.quantization import QuantType, quantize_dynamic

    fp32 = inspect_onnx_for_trt(onnx_art.file("model"))
    assert not fp32.has_qdq and not fp32.dynamic_quant_ops and not fp32.contrib_ops
    assert plan_int8(fp32, TrtBuildConfig(precision="fp16"), False) == "none"
    assert plan_int8(fp32, TrtBuildConfig(precision="int8"), True) == "calibrate"
    with pytest.raises(EdgepackError, match="needs calibration samples"):
        plan_int8(fp32, TrtBuildConfig(precision="int8"), False)
    cache = tmp_path / "calib.cache"
    cache.write_bytes(b"TRT-100300-EntropyCalibration2\n")
    assert plan_int8(fp32, TrtBuildConfig(precision="int8", calibration_cache=str(cache)), False) == "cache"

    dyn = tmp_path / "dyn.onnx"
    quantize_dynamic(str(onnx_art.file("model")), str(dyn), weight_type=QuantType.QInt8)
    with pytest.raises(EdgepackError, match="dynamically quantized .*MatMulInteger.*TensorRT cannot import"):
        plan_int8(inspect_onnx_for_trt(dyn), TrtBuildConfig(precision="int8"), True)


def test_plan_int8_qdq_and_fused_graphs(onnx_art, tmp_path):
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.transformers.optimizer import optimize_model

    class Reader(CalibrationDataReader):
        def __init__(self):
            rng = np.random.default_rng(0)
            self.it = iter(
                [
                    {
                        "input_ids": rng.integers(5, 100, (2, 8)).astype(np.int64),
                        "attention_mask": np.ones((2, 8), np.int64),
                        "token_type_ids": np.zeros((2, 8), np.int64),
                    }
                    for _ in range(4)
                ]
            )

        def get_next(self):
            return next(self.it, None)

    qdq = tmp_path / "qdq.onnx"
    quantize_static(
        str(onnx_art.file("model")),
        str(qdq),
        Reader(),
        quant_format=QuantFormat.QDQ,
        op_types_to_quantize=["MatMul"],
    )
    report = inspect_onnx_for_trt(qdq)  # ORT's default: asymmetric uint8 activations
    assert report.has_qdq and report.asymmetric_qdq
    with pytest.raises(EdgepackError, match=r"asymmetrically .*TensorRT refuses.*--methods static-int8-trt"):
        plan_int8(report, TrtBuildConfig(precision="int8"), False)
    with pytest.raises(EdgepackError, match="Q/DQ .* --precision int8"):
        plan_int8(report, TrtBuildConfig(precision="fp16"), False)

    sym = tmp_path / "sym.onnx"  # what the static-int8-trt preset asks ORT for
    quantize_static(
        str(onnx_art.file("model")), str(sym), Reader(), quant_format=QuantFormat.QDQ,
        op_types_to_quantize=["MatMul"], activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
        extra_options={"ActivationSymmetric": True, "WeightSymmetric": True},
    )
    report = inspect_onnx_for_trt(sym)
    assert report.has_qdq and report.asymmetric_qdq == ()
    assert plan_int8(report, TrtBuildConfig(precision="int8"), False) == "qdq"

    qop = tmp_path / "qop.onnx"
    quantize_static(
        str(onnx_art.file("model")),
        str(qop),
        Reader(),
        quant_format=QuantFormat.QOperator,
        op_types_to_quantize=["MatMul"],
    )
    with pytest.raises(EdgepackError, match="QOperator format .*QLinearMatMul.*Q/DQ graphs only"):
        plan_int8(inspect_onnx_for_trt(qop), TrtBuildConfig(precision="int8"), False)

    fused = tmp_path / "fused.onnx"
    optimize_model(
        str(onnx_art.file("model")), model_type="bert", num_heads=4, hidden_size=32
    ).save_model_to_file(str(fused))
    with pytest.raises(EdgepackError, match="contrib ops .*com.microsoft.*build from the unfused export"):
        plan_int8(inspect_onnx_for_trt(fused), TrtBuildConfig(), False)


def test_build_config_and_request_validation(onnx_art, tmp_path):
    with pytest.raises(EdgepackError, match="precision must be one of fp32, fp16, int8"):
        TrtBuildConfig(precision="int4")
    with pytest.raises(EdgepackError, match="exceeds the model's max_length 128"):
        build_engine(onnx_art, tmp_path / "e", TrtBuildConfig(shapes=ShapeRange(max_seq=256)))
    with pytest.raises(EdgepackError, match="no weight matrix in this graph has a 2:4 pattern"):
        build_engine(onnx_art, tmp_path / "e", TrtBuildConfig(sparse_weights=True))
    with pytest.raises(EdgepackError, match="at least one full batch"):
        build_engine(
            onnx_art, tmp_path / "e", TrtBuildConfig(precision="int8"), calibration_texts=["one text"]
        )
    assert not (tmp_path / "e").exists()


@pytest.mark.skipif(HAS_TRT, reason="checks the message shown when TensorRT is missing")
def test_build_without_tensorrt_is_one_clear_line(onnx_art, tmp_path):
    with pytest.raises(
        MissingDependencyError, match=r"building a TensorRT engine needs the 'tensorrt' package.*gpu-tools"
    ):
        build_engine(onnx_art, tmp_path / "e", TrtBuildConfig())


# --- TensorRT + GPU (run only where both exist) ------------------------------------------------
def _ort_reference(onnx_art, feeds):
    from edgepack.runtime.ort import OrtRunner

    return OrtRunner(onnx_art.file("model")).infer(feeds)["logits"]


def _feeds(batch, seq, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "input_ids": rng.integers(5, 100, (batch, seq)).astype(np.int64),
        "attention_mask": np.ones((batch, seq), np.int64),
        "token_type_ids": np.zeros((batch, seq), np.int64),
    }


@pytest.mark.tensorrt
@pytest.mark.gpu
@pytest.mark.parametrize("precision,atol", [("fp32", 1e-4), ("fp16", 2e-2)])
def test_engine_matches_onnx_runtime(onnx_art, tmp_path, precision, atol):
    pytest.importorskip("tensorrt")
    from edgepack.runtime.trt_engine import TensorRTRunner

    cfg = TrtBuildConfig(
        precision=precision,
        shapes=ShapeRange(1, 4, 8, 1, 32, 64),
        seq_buckets=(16,),
        timing_cache=str(tmp_path / "timing.cache"),
    )
    art = build_engine(onnx_art, tmp_path / "engine", cfg)
    assert art.runtime.tensorrt_version and art.runtime.compute_capability and len(art.runtime.profiles) == 2
    assert art.runtime.precision == precision
    assert (tmp_path / "timing.cache").stat().st_size > 0
    runner = TensorRTRunner(art)
    for b, t in ((1, 5), (8, 16), (3, 40)):  # profile 0, 0, 1
        feeds = _feeds(b, t)
        np.testing.assert_allclose(runner.infer(feeds)["logits"], _ort_reference(onnx_art, feeds), atol=atol)
    with pytest.raises(EdgepackError, match="outside every optimization profile"):
        runner.infer(_feeds(16, 8))


@pytest.mark.tensorrt
@pytest.mark.gpu
def test_int8_calibration_writes_and_reuses_cache(onnx_art, tmp_path):
    pytest.importorskip("tensorrt")
    from edgepack.testing import SAMPLE_TEXTS

    texts = SAMPLE_TEXTS * 8
    cfg = TrtBuildConfig(precision="int8", shapes=ShapeRange(1, 4, 8, 1, 32, 64), calib_batch_size=4)
    art = build_engine(onnx_art, tmp_path / "int8", cfg, calibration_texts=texts)
    assert art.runtime.int8_mode == "calibrate" and art.has("calibration_cache")
    assert art.runtime.precision == "int8-static"
    again = build_engine(
        onnx_art,
        tmp_path / "int8b",
        TrtBuildConfig(
            precision="int8", shapes=cfg.shapes, calibration_cache=str(art.file("calibration_cache"))
        ),
    )
    assert again.runtime.int8_mode == "cache"


@pytest.mark.tensorrt
@pytest.mark.gpu
def test_engine_from_another_tensorrt_version_is_refused(onnx_art, tmp_path):
    pytest.importorskip("tensorrt")
    art = build_engine(onnx_art, tmp_path / "engine", TrtBuildConfig(shapes=ShapeRange(1, 1, 2, 1, 8, 16)))
    m = json.loads((art.path / "manifest.json").read_text())
    m["runtime"]["tensorrt_version"] = "8.6.1"
    (art.path / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ArtifactError, match="built with TensorRT 8.6.1"):
        load_engine(Artifact.open(art.path))
