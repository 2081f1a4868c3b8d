"""GPU runners and latency benchmark: what runs on CPU is tested here (provider options, the IO-binding
path on the CPU provider, the torch runner on CPU, registry entries, clear errors without a GPU, timing
records); the GPU paths are marked ``gpu`` and skipped when no CUDA device / provider is present."""

import importlib.util

import numpy as np
import pytest
from edgepack.benchmarks.torch_cuda import TorchCudaRunner
from edgepack.runtime.gpu_runners import OrtIoBindingRunner, ort_provider_options

from edgepack.errors import EdgepackError


def _cuda() -> bool:
    if importlib.util.find_spec("torch") is None:
        return False
    import torch

    return torch.cuda.is_available()


def _ort_has(p: str) -> bool:
    import onnxruntime

    return p in onnxruntime.get_available_providers()


@pytest.fixture(scope="module")
def onnx_art(tiny_bert, tmp_path_factory):
    from edgepack.export.onnx_export import export_onnx

    return export_onnx(tiny_bert, tmp_path_factory.mktemp("gpu") / "onnx")


def _feeds(b=3, t=11, seed=0):
    from edgepack.benchmarks.gpu_latency import synthetic_feeds

    f = synthetic_feeds(["input_ids", "attention_mask", "token_type_ids"], b, t, vocab=100, seed=seed)
    f["attention_mask"][b // 2, t // 2 :] = 0  # one padded row
    return f


def _ref(onnx_art, feeds):
    from edgepack.runtime.ort import OrtRunner

    return OrtRunner(onnx_art.file("model")).infer(feeds)["logits"]


def test_provider_options_for_tensorrt_and_cuda(tmp_path):
    trt = ort_provider_options(
        "tensorrt",
        device_id=1,
        cache_dir=tmp_path / "c",
        fp16=True,
        profile_options={"trt_profile_min_shapes": "input_ids:1x1"},
    )
    assert [p[0] for p in trt] == ["TensorrtExecutionProvider", "CUDAExecutionProvider"]
    o = trt[0][1]
    assert o["trt_engine_cache_enable"] and o["trt_engine_cache_path"] == str(tmp_path / "c")
    assert o["trt_timing_cache_enable"] and o["trt_fp16_enable"] and o["device_id"] == 1
    assert o["trt_max_workspace_size"] == 2048 << 20 and o["trt_profile_min_shapes"] == "input_ids:1x1"
    assert (tmp_path / "c").is_dir()
    assert [p[0] for p in ort_provider_options("cuda")] == ["CUDAExecutionProvider"]
    with pytest.raises(EdgepackError, match="unknown ONNX Runtime GPU provider 'rocm'"):
        ort_provider_options("rocm")


def test_io_binding_runner_matches_plain_session_on_cpu(onnx_art):
    """The IO-binding code path (bind inputs, device-allocated outputs, copy back), on the CPU provider."""
    runner = OrtIoBindingRunner(onnx_art.file("model"), ["CPUExecutionProvider"], device="cpu")
    for b, t in ((1, 4), (3, 11)):
        feeds = _feeds(b, t)
        np.testing.assert_allclose(runner.infer(feeds)["logits"], _ref(onnx_art, feeds), atol=1e-6)
    with pytest.raises(EdgepackError, match="missing model input 'token_type_ids'"):
        runner.infer({k: v for k, v in _feeds().items() if k != "token_type_ids"})


@pytest.mark.skipif(_ort_has("CUDAExecutionProvider"), reason="checks the message without the GPU build")
def test_cuda_provider_missing_is_a_clear_error(onnx_art):
    from edgepack.runtime.backends import open_runner

    with pytest.raises(EdgepackError, match="has no CUDAExecutionProvider.*edgepack\\[gpu\\]"):
        OrtIoBindingRunner(onnx_art.file("model"), ort_provider_options("cuda"))
    with pytest.raises(EdgepackError, match="backend 'ort-cuda' is not available here"):
        open_runner(onnx_art, "ort-cuda")


def test_registry_has_gpu_backends_and_auto_falls_back_to_cpu(onnx_art):
    from edgepack.runtime.backends import AUTO_ORDER, BACKENDS, open_runner

    assert {"tensorrt", "ort-cuda", "ort-tensorrt", "torch-cuda"} <= set(BACKENDS)  # torch-cuda: benchmarks
    assert BACKENDS["torch-cuda"].formats == ("hf",)
    assert AUTO_ORDER.index("ort-cuda") < AUTO_ORDER.index("ort-cpu")
    assert BACKENDS["tensorrt"].formats == ("tensorrt",)
    runner = open_runner(onnx_art, "auto")
    if not _ort_has("CUDAExecutionProvider"):
        assert type(runner).__name__ == "OrtRunner"


def test_torch_runner_on_cpu_matches_onnx(tiny_bert, onnx_art):
    runner = TorchCudaRunner(tiny_bert, dtype="fp32", device="cpu")
    assert runner.output_names == ["logits"]
    feeds = _feeds()
    np.testing.assert_allclose(runner.infer(feeds)["logits"], _ref(onnx_art, feeds), atol=1e-4)
    with pytest.raises(EdgepackError, match="dtype must be one of"):
        TorchCudaRunner(tiny_bert, dtype="int3", device="cpu")


@pytest.mark.skipif(_cuda(), reason="checks the message shown without a GPU")
def test_torch_cuda_without_gpu_is_a_clear_error(tiny_bert):
    with pytest.raises(
        EdgepackError, match="the torch CUDA runner needs a CUDA GPU, and torch sees none here"
    ):
        TorchCudaRunner(tiny_bert, dtype="fp16")


def test_latency_grid_records_on_cpu(onnx_art):
    from edgepack.benchmarks.gpu_latency import measure_grid, parse_smi_memory
    from edgepack.runtime.ort import OrtRunner

    rows = measure_grid(
        OrtRunner(onnx_art.file("model")), [1, 4], [8, 16], warmup=1, iters=5, memory=lambda: {"used_mb": 1.0}
    )
    assert [(r["batch"], r["seq"]) for r in rows] == [(1, 8), (1, 16), (4, 8), (4, 16)]
    for r in rows:
        assert 0 < r["p50_ms"] <= r["p90_ms"] <= r["p99_ms"] and r["n"] >= 5
        assert r["sequences_per_s"] == pytest.approx(r["batch"] / (r["mean_ms"] / 1e3))
        assert r["tokens_per_s"] == pytest.approx(r["sequences_per_s"] * r["seq"]) and r["used_mb"] == 1.0
    assert parse_smi_memory("1234, 81559\n") == {"used_mb": 1234.0, "total_mb": 81559.0}


# --- GPU only -----------------------------------------------------------------------------------------
@pytest.mark.gpu
@pytest.mark.skipif(not _cuda(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("variant,atol", [("fp32", 1e-4), ("fp16", 2e-2), ("fp16-graph", 2e-2)])
def test_torch_cuda_variants_match_onnx(tiny_bert, onnx_art, variant, atol):
    from edgepack.benchmarks.gpu_latency import torch_variant

    runner = torch_variant(str(tiny_bert), variant)
    for seed in (0, 1):  # the graph variant replays a captured graph with new inputs
        feeds = _feeds(seed=seed)
        np.testing.assert_allclose(runner.infer(feeds)["logits"], _ref(onnx_art, feeds), atol=atol)


@pytest.mark.gpu
@pytest.mark.skipif(
    not _cuda() or importlib.util.find_spec("bitsandbytes") is None, reason="needs CUDA + bitsandbytes"
)
def test_bitsandbytes_int8_runs_close_to_fp32(tiny_bert, onnx_art):
    runner = TorchCudaRunner(tiny_bert, dtype="int8")
    feeds = _feeds()
    np.testing.assert_allclose(runner.infer(feeds)["logits"], _ref(onnx_art, feeds), atol=0.1)


@pytest.mark.gpu
@pytest.mark.skipif(not _ort_has("CUDAExecutionProvider"), reason="needs onnxruntime-gpu and a GPU")
def test_ort_cuda_io_binding_matches_cpu(onnx_art):
    from edgepack.runtime.backends import open_runner

    runner = open_runner(onnx_art, "ort-cuda")
    feeds = _feeds()
    np.testing.assert_allclose(runner.infer(feeds)["logits"], _ref(onnx_art, feeds), atol=1e-4)
