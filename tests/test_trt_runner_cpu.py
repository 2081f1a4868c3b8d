"""The TensorRT runner's plumbing on CPU: CUDA driver calls (ctypes) and TensorRT replaced by in-memory fakes.

What runs here is the real :class:`edgepack.runtime.trt_engine.TensorRTRunner` and
:class:`edgepack.runtime.cuda.CudaDevice` code: argument marshalling through ctypes, host <-> "device"
copies of real numpy memory, dtype conversion to the engine's input types, buffer reuse, profile choice
per shape, and the version check before deserializing. Only the driver library and ``tensorrt`` are
fakes; the real engine path is tests/test_trt_engine.py (marked tensorrt + gpu).
"""

import ctypes
import sys
import types

import numpy as np
import pytest
from edgepack.runtime import cuda as cuda_mod
from edgepack.runtime.trt_engine import TensorRTRunner

from edgepack.artifact import ArtifactError, ArtifactWriter
from edgepack.contract import RuntimeContract, ShapeRange
from edgepack.errors import EdgepackError


class FakeDriver:
    """libcuda's calls used by CudaDevice, over a dict of bytearrays keyed by fake device addresses."""

    def __init__(self):
        self.mem: dict[int, bytearray] = {}
        self.next_ptr, self.fail = 0x1000, set()
        self.allocs = self.frees = self.activations = 0

    def _status(self, name):
        return 2 if name in self.fail else 0

    def cuInit(self, flags):
        return 0

    def cuDeviceGetCount(self, n):
        n._obj.value = 1
        return 0

    def cuDeviceGet(self, dev, ordinal):
        dev._obj.value = ordinal
        return 0

    def cuDevicePrimaryCtxRetain(self, ctx, dev):
        ctx._obj.value = 0xC0
        return 0

    def cuCtxSetCurrent(self, ctx):
        self.activations += 1
        return 0

    def cuDeviceGetName(self, buf, length, dev):
        buf.value = b"Fake GPU"
        return 0

    def cuDeviceGetAttribute(self, value, attr, dev):
        value._obj.value = {75: 9, 76: 0}[attr.value]
        return 0

    def cuGetErrorString(self, status, text):
        text._obj.value = b"CUDA_ERROR_OUT_OF_MEMORY"
        return 0

    def cuStreamCreate(self, stream, flags):
        stream._obj.value = 0x5
        return 0

    def cuStreamSynchronize(self, stream):
        return 0

    def cuMemAlloc_v2(self, ptr, nbytes):
        if "cuMemAlloc_v2" in self.fail:
            return 2
        self.next_ptr += 0x1000
        self.mem[self.next_ptr] = bytearray(nbytes.value)
        ptr._obj.value = self.next_ptr
        self.allocs += 1
        return 0

    def cuMemFree_v2(self, ptr):
        del self.mem[ptr.value]
        self.frees += 1
        return 0

    def cuMemcpyHtoDAsync_v2(self, dst, src, nbytes, stream):
        self.mem[dst.value][: nbytes.value] = ctypes.string_at(src.value, nbytes.value)
        return 0

    def cuMemcpyDtoHAsync_v2(self, dst, src, nbytes, stream):
        ctypes.memmove(dst.value, bytes(self.mem[src.value][: nbytes.value]), nbytes.value)
        return 0


def fake_tensorrt(driver: FakeDriver, version: str = "10.3.0"):
    """A ``tensorrt`` module whose engine computes logits = [sum(ids * mask), sum(mask)] per row."""
    mode = types.SimpleNamespace(INPUT="in", OUTPUT="out")
    io = {"input_ids": ("in", np.int32), "attention_mask": ("in", np.int32), "logits": ("out", np.float32)}

    class Context:
        def __init__(self):
            self.shapes, self.addr, self.profiles = {}, {}, []

        def set_optimization_profile_async(self, index, stream):
            self.profiles.append(index)

        def set_input_shape(self, name, shape):
            self.shapes[name] = shape

        def set_tensor_address(self, name, ptr):
            self.addr[name] = ptr

        def get_tensor_shape(self, name):
            return (self.shapes["input_ids"][0], 2)

        def execute_async_v3(self, stream):
            def read(name):
                n = int(np.prod(self.shapes[name]))
                return np.frombuffer(bytes(driver.mem[self.addr[name]][: n * 4]), np.int32).reshape(self.shapes[name])

            ids, mask = read("input_ids"), read("attention_mask")
            out = np.stack([(ids * mask).sum(1), mask.sum(1)], 1).astype(np.float32)
            driver.mem[self.addr["logits"]][: out.nbytes] = out.tobytes()
            return True

    class Engine:
        num_io_tensors, num_optimization_profiles = 3, 2

        def get_tensor_name(self, i):
            return list(io)[i]

        def get_tensor_mode(self, name):
            return io[name][0]

        def get_tensor_dtype(self, name):
            return io[name][1]

        def create_execution_context(self):
            self.context = Context()
            return self.context

    class Runtime:
        def __init__(self, logger):
            pass

        def deserialize_cuda_engine(self, data):
            return Engine() if data == b"plan" else None

    class Logger:
        WARNING = 2

        def __init__(self, level):
            self.level = level

    return types.SimpleNamespace(__version__=version, TensorIOMode=mode, nptype=lambda t: t, Runtime=Runtime,
                                 Logger=Logger)


@pytest.fixture
def driver(monkeypatch):
    d = FakeDriver()
    monkeypatch.setattr(cuda_mod, "_LIB", d)
    return d


def _engine_artifact(tmp_path, version="10.3.0"):
    rt = RuntimeContract(tensorrt_version=version, gpu_name="Fake GPU", compute_capability="9.0",
                         profiles=(ShapeRange(1, 2, 4, 1, 8, 16), ShapeRange(1, 2, 4, 17, 32, 64)))
    with ArtifactWriter(tmp_path / "engine") as w:
        (w.dir / "model.plan").write_bytes(b"plan")
        return w.commit(stage="export", format="tensorrt", task="text-classification", files={"engine": "model.plan"},
                        runtime=rt)


def _feeds(batch, seq):
    ids = np.arange(batch * seq, dtype=np.int64).reshape(batch, seq)
    mask = np.ones((batch, seq), np.int64)
    mask[0, seq // 2:] = 0
    return {"input_ids": ids, "attention_mask": mask}


def test_runner_copies_through_the_driver_and_picks_profiles(driver, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt(driver))
    runner = TensorRTRunner(_engine_artifact(tmp_path))
    assert runner.input_names == ["input_ids", "attention_mask"] and runner.output_names == ["logits"]
    assert runner.warnings == []
    for batch, seq in ((2, 5), (3, 40), (1, 16)):  # profiles 0, 1, 0
        f = _feeds(batch, seq)
        want = np.stack([(f["input_ids"] * f["attention_mask"]).sum(1), f["attention_mask"].sum(1)], 1)
        np.testing.assert_array_equal(runner.infer(f)["logits"], want.astype(np.float32))
    assert runner.engine.context.profiles == [0, 1, 0]
    allocs = driver.allocs
    runner.infer(_feeds(1, 4))  # smaller than before: buffers are reused
    assert driver.allocs == allocs and driver.activations >= 5
    with pytest.raises(EdgepackError, match="outside every optimization profile"):
        runner.infer(_feeds(8, 4))
    runner.buffers.release()
    assert driver.mem == {}


def test_engine_from_another_tensorrt_is_refused_before_loading(driver, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt(driver, version="10.8.0"))
    with pytest.raises(ArtifactError, match="built with TensorRT 10.3.0 but this process has TensorRT 10.8.0"):
        TensorRTRunner(_engine_artifact(tmp_path))


def test_driver_errors_are_one_line(driver):
    dev = cuda_mod.CudaDevice(0)
    assert (dev.name(), dev.compute_capability()) == ("Fake GPU", "9.0")
    assert cuda_mod.driver_available()
    driver.fail.add("cuMemAlloc_v2")
    with pytest.raises(EdgepackError, match=r"^CUDA cuMemAlloc\(64 bytes\) failed: CUDA_ERROR_OUT_OF_MEMORY$"):
        dev.alloc(64)
