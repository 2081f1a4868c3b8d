"""GPU-path fixes checked on CPU with fakes (issue 16, items 5 and 7): CUDA-graph capture uses eager
attention, the requested GPU is honoured, TF32 is off for fp32 parity, and ORT's TensorRT provider gets
TensorRT's libraries loaded first and says clearly when it fell back."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
from edgepack.benchmarks import gpu_latency, torch_cuda
from edgepack.benchmarks.torch_cuda import exact_fp32, use_eager_attention
from edgepack.runtime import gpu_runners
from edgepack.runtime.gpu_runners import OrtIoBindingRunner, ort_provider_options

from edgepack.errors import EdgepackError


def test_eager_attention_for_capture_keeps_the_outputs(tiny_bert):
    from edgepack.hf import load_model

    model = load_model(tiny_bert).model.eval()
    model.config._attn_implementation = "sdpa"
    ids = np.array([[5, 6, 7, 8, 0, 0]], np.int64)
    mask = np.array([[1, 1, 1, 1, 0, 0]], np.int64)
    import torch

    with torch.inference_mode():
        ref = model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask)).logits
        assert use_eager_attention(model) == "eager"
        out = model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask)).logits
    assert model.config._attn_implementation == "eager"
    np.testing.assert_allclose(out.numpy(), ref.numpy(), atol=1e-5)  # the padding mask still applies


def test_cuda_graph_runner_switches_to_eager_attention():
    config = types.SimpleNamespace(_attn_implementation="sdpa")
    base = types.SimpleNamespace(torch=None, model=types.SimpleNamespace(config=config),
                                 input_names=["input_ids"], output_names=["logits"], device="cuda:1")
    runner = gpu_latency.CudaGraphRunner(base)
    assert runner.attention == "eager" and config._attn_implementation == "eager"


def test_torch_variants_run_on_the_requested_gpu(monkeypatch):
    seen = []

    class FakeRunner:
        def __init__(self, source, dtype="fp16", device="cuda"):
            seen.append((dtype, device))
            self.torch, self.device = None, device
            self.model = types.SimpleNamespace(config=types.SimpleNamespace(_attn_implementation="sdpa"))
            self.input_names, self.output_names = ["input_ids"], ["logits"]

    monkeypatch.setattr(torch_cuda, "TorchCudaRunner", FakeRunner)
    gpu_latency.torch_variant("m", "fp16-graph", device=1)
    gpu_latency.torch_variant("m", "fp32", device=2)
    assert seen == [("fp16", "cuda:1"), ("fp32", "cuda:2")]


def test_fp32_parity_turns_tf32_off():
    import torch

    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    try:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        exact_fp32(torch)
        assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def test_ort_cuda_provider_has_tf32_off_unless_asked():
    (cuda,) = ort_provider_options("cuda", device_id=1)
    assert cuda[1]["use_tf32"] == 0 and cuda[1]["device_id"] == 1
    assert ort_provider_options("cuda", tf32=True)[0][1]["use_tf32"] == 1
    trt, cuda = ort_provider_options("tensorrt", device_id=1)
    assert trt[1]["device_id"] == 1 and cuda[1]["use_tf32"] == 0


def _fake_ort(events, session_providers):
    class Session:
        def __init__(self, path, sess_options=None, providers=(), provider_options=()):
            events.append(("session", list(providers)))

        def get_inputs(self):
            return [types.SimpleNamespace(name="input_ids")]

        def get_outputs(self):
            return [types.SimpleNamespace(name="logits")]

        def get_providers(self):
            return session_providers

    return types.SimpleNamespace(
        get_available_providers=lambda: ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
        SessionOptions=lambda: types.SimpleNamespace(),
        GraphOptimizationLevel=types.SimpleNamespace(ORT_ENABLE_ALL=99),
        InferenceSession=Session,
        preload_dlls=lambda: events.append(("preload_dlls",)),
    )


@pytest.mark.parametrize("fell_back", [False, True])
def test_ort_tensorrt_provider_loads_tensorrt_first_and_reports_a_fallback(monkeypatch, tmp_path, fell_back):
    from edgepack.runtime import ort as ort_mod

    events: list = []
    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if fell_back else ["TensorrtExecutionProvider"]
    monkeypatch.setattr(ort_mod, "import_onnxruntime", lambda: _fake_ort(events, providers))
    monkeypatch.setitem(sys.modules, "tensorrt", types.SimpleNamespace(__version__="10.8.0"))
    opts = ort_provider_options("tensorrt", cache_dir=tmp_path)
    if fell_back:
        with pytest.raises(EdgepackError, match=r"could not start TensorrtExecutionProvider and fell back to "
                                                 r"\['CUDAExecutionProvider'.*tensorrt 10.8.0 imported first.*libnvinfer"):
            OrtIoBindingRunner(tmp_path / "m.onnx", opts)
    else:
        runner = OrtIoBindingRunner(tmp_path / "m.onnx", opts)
        assert any("tensorrt 10.8.0 imported first" in n for n in runner.preloaded)
    assert events[0] == ("preload_dlls",) and events[1][0] == "session"  # libraries before the session


def test_preload_says_when_tensorrt_is_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import fails
    notes = gpu_runners.preload_gpu_libraries(types.SimpleNamespace(), tensorrt=True)
    assert notes == ["the tensorrt package is not importable, so libnvinfer must be on LD_LIBRARY_PATH"]


def test_docs_say_what_ran_on_a_gpu():
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "gpu.md").read_text()
    assert "## Verified on a GPU" in text and "inputs bound once" not in text
    assert "python -m edgepack.benchmarks.gpu_smoke" in text
