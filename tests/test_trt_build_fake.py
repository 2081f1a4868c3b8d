"""The TensorRT build against fake ``tensorrt`` modules shaped like TensorRT 10 and 11 (issue 16, items 2/3/7).

TensorRT 11 removed ``BuilderFlag.FP16``/``INT8`` and the INT8 calibrator (strongly typed networks only);
TensorRT 10 keeps them. The fakes record every builder call, so both branches are tested on CPU: no flag
and an fp16 graph on 11, the flags on 10; calibration refused on 11; versions outside 10-11 refused;
TF32 off for fp32 engines; a stale shared timing cache replaced; the requested GPU made current.
"""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
from edgepack.export import trt_engine as te
from edgepack.export.trt_build import build_serialized, network_typing
from edgepack.export.trt_engine import TrtBuildConfig, build_engine
from edgepack.runtime.trt_engine import RuntimeEnv, check_tensorrt_version, import_tensorrt

from edgepack.errors import EdgepackError


def fake_builder_trt(version: str = "11.4.0", calls: list | None = None):
    """A ``tensorrt`` module with the builder API of ``version`` (10.x: weak typing, 11.x: strong only)."""
    import onnx

    calls = calls if calls is not None else []
    weak = int(version.split(".")[0]) < 11
    flag_names = ["SPARSE_WEIGHTS", "TF32"] + (["FP16", "INT8"] if weak else [])
    BuilderFlag = types.SimpleNamespace(**{n: n for n in flag_names})
    creation = types.SimpleNamespace(STRONGLY_TYPED=2, **({"EXPLICIT_BATCH": 0} if weak else {}))

    class Tensor:
        def __init__(self, name, dtype):
            self.name, self.dtype = name, dtype

    class Network:
        def __init__(self, flags):
            self.flags, self.inputs, self.outputs = flags, [], []

        num_inputs = property(lambda self: len(self.inputs))
        num_outputs = property(lambda self: len(self.outputs))

        def get_input(self, i):
            return self.inputs[i]

        def get_output(self, i):
            return self.outputs[i]

    class OnnxParser:
        num_errors = 0

        def __init__(self, network, logger):
            self.network = network

        def parse_from_file(self, path):
            model = onnx.load(path)
            fp16 = sum(i.data_type == onnx.TensorProto.FLOAT16 for i in model.graph.initializer)
            calls.append(("parse", path, fp16))
            self.network.inputs = [Tensor(i.name, "int64") for i in model.graph.input]
            self.network.outputs = [Tensor(o.name, "float32") for o in model.graph.output]
            return True

    class Cache:
        def serialize(self):
            return b"timing"

    class Profile:
        def set_shape(self, name, mn, opt, mx):
            calls.append(("shape", name, mn, opt, mx))

    class Config:
        builder_optimization_level = 3

        def set_memory_pool_limit(self, pool, size):
            calls.append(("workspace", size))

        def set_flag(self, flag):
            calls.append(("set_flag", getattr(BuilderFlag, flag)))  # AttributeError like TensorRT 11

        def clear_flag(self, flag):
            calls.append(("clear_flag", flag))

        def create_timing_cache(self, data):
            calls.append(("create_timing_cache", bytes(data)))
            return None if data == b"stale" else Cache()

        def set_timing_cache(self, cache, ignore_mismatch):
            return cache is not None

        def get_timing_cache(self):
            return Cache()

        def add_optimization_profile(self, p):
            calls.append(("profile",))

        def set_calibration_profile(self, p):
            calls.append(("calibration_profile",))

        def __setattr__(self, name, value):
            if name == "int8_calibrator" and not weak:
                raise AttributeError("int8_calibrator")  # removed in 11
            calls.append(("setattr", name))
            object.__setattr__(self, name, value)

    class Builder:
        def __init__(self, logger):
            pass

        def create_network(self, flags=0):
            calls.append(("create_network", flags))
            return Network(flags)

        def create_builder_config(self):
            return Config()

        def create_optimization_profile(self):
            return Profile()

        def build_serialized_network(self, network, config):
            return b"plan"

    class Logger:
        WARNING = 2

        def __init__(self, level):
            pass

    mod = types.SimpleNamespace(
        __version__=version, BuilderFlag=BuilderFlag, NetworkDefinitionCreationFlag=creation, Builder=Builder,
        OnnxParser=OnnxParser, Logger=Logger, MemoryPoolType=types.SimpleNamespace(WORKSPACE="WORKSPACE"),
        nptype=lambda t: {"int64": np.int64, "float32": np.float32}[t],
    )
    if weak:
        class IInt8EntropyCalibrator2:
            def __init__(self):
                pass

        mod.IInt8EntropyCalibrator2 = IInt8EntropyCalibrator2
    return mod


@pytest.fixture(scope="module")
def onnx_art(tiny_bert, tmp_path_factory):
    from edgepack.export.onnx_export import export_onnx

    return export_onnx(tiny_bert, tmp_path_factory.mktemp("trtfake") / "onnx")


@pytest.fixture
def fake_env(monkeypatch):
    """Install a fake tensorrt of a given version; GPU detection and device selection recorded."""
    used = []

    def install(version):
        calls: list = []
        monkeypatch.setitem(sys.modules, "tensorrt", fake_builder_trt(version, calls))
        monkeypatch.setattr(te, "detect_runtime_env", lambda trt, device: RuntimeEnv(version, "Fake GPU", "9.0"))
        monkeypatch.setattr(te, "use_device", lambda device, torch_too=False: used.append(device))
        return calls

    install.used = used
    return install


def _flags(calls, kind="set_flag"):
    return {c[1] for c in calls if c[0] == kind}


def test_supported_tensorrt_versions_and_clear_errors_outside(monkeypatch):
    assert check_tensorrt_version("10.3.0") == 10 and check_tensorrt_version("11.4.0.106") == 11
    for bad in ("8.6.1", "9.3.0", "12.0.0"):
        with pytest.raises(EdgepackError, match=rf"TensorRT {bad} is not supported.*10.x-11.x.*tensorrt>=10,<12"):
            check_tensorrt_version(bad)
    monkeypatch.setitem(sys.modules, "tensorrt", types.SimpleNamespace(__version__="8.6.1"))
    with pytest.raises(EdgepackError, match="TensorRT 8.6.1 is not supported"):
        import_tensorrt("building a TensorRT engine")


def test_network_typing_follows_the_builder_flags():
    assert network_typing(fake_builder_trt("10.8.0")) == "weak"
    assert network_typing(fake_builder_trt("11.4.0")) == "strong"


def test_tensorrt_11_fp16_builds_an_fp16_graph_strongly_typed(onnx_art, tmp_path, fake_env):
    calls = fake_env("11.4.0")
    art = build_engine(onnx_art, tmp_path / "e", TrtBuildConfig(precision="fp16"), device=1)
    (parse,) = [c for c in calls if c[0] == "parse"]
    assert parse[2] > 0, "TensorRT 11 must be given an fp16 ONNX graph"
    assert [c[1] for c in calls if c[0] == "create_network"] == [1 << 2]  # STRONGLY_TYPED
    assert _flags(calls) == set()  # no precision flags: they do not exist on 11
    assert art.runtime.precision == "fp16" and art.config["network_typing"] == "strong"
    assert fake_env.used == [1]  # the requested GPU is made current before building
    assert not any(p.name.endswith(".onnx") for p in art.path.iterdir())  # the fp16 copy is not kept


def test_tensorrt_10_fp16_keeps_the_weakly_typed_flags(onnx_art, tmp_path, fake_env):
    calls = fake_env("10.8.0")
    art = build_engine(onnx_art, tmp_path / "e", TrtBuildConfig(precision="fp16"))
    (parse,) = [c for c in calls if c[0] == "parse"]
    assert parse[2] == 0  # the fp32 graph, FP16 from the flag
    assert [c[1] for c in calls if c[0] == "create_network"] == [1 << 0]  # EXPLICIT_BATCH, not strongly typed
    assert _flags(calls) == {"FP16"}
    assert art.config["network_typing"] == "weak"


@pytest.mark.parametrize("version", ["10.8.0", "11.4.0"])
def test_fp32_engines_turn_tf32_off(onnx_art, tmp_path, fake_env, version):
    calls = fake_env(version)
    build_engine(onnx_art, tmp_path / "e", TrtBuildConfig(precision="fp32"))
    assert _flags(calls, "clear_flag") == {"TF32"} and _flags(calls) == set()


def test_tensorrt_11_refuses_calibration_and_names_the_qdq_preset(onnx_art, tmp_path, fake_env):
    fake_env("11.4.0")
    cache = tmp_path / "calib.cache"
    cache.write_bytes(b"TRT-100300-EntropyCalibration2\n")
    with pytest.raises(EdgepackError, match="no INT8 calibration.*--methods static-int8-trt"):
        build_engine(onnx_art, tmp_path / "e", TrtBuildConfig(precision="int8", calibration_cache=str(cache)))
    assert not (tmp_path / "e").exists()


def test_tensorrt_10_int8_calibration_keeps_the_calibrator(onnx_art, tmp_path, fake_env):
    calls = fake_env("10.8.0")
    cache = tmp_path / "calib.cache"
    cache.write_bytes(b"TRT-100800-EntropyCalibration2\n")
    art = build_engine(onnx_art, tmp_path / "e", TrtBuildConfig(precision="int8", calibration_cache=str(cache)))
    assert _flags(calls) == {"FP16", "INT8"}
    assert ("setattr", "int8_calibrator") in calls and ("calibration_profile",) in calls
    assert art.runtime.int8_mode == "cache"


def test_a_stale_shared_timing_cache_is_replaced_with_a_warning(onnx_art, tmp_path, fake_env, capsys):
    calls = fake_env("11.4.0")
    shared = tmp_path / "shared.cache"
    shared.write_bytes(b"stale")  # create_timing_cache returns None for it, as for another version's
    build_engine(onnx_art, tmp_path / "e", TrtBuildConfig(precision="fp32", timing_cache=str(shared)))
    assert [c[1] for c in calls if c[0] == "create_timing_cache"] == [b"stale", b""]
    assert "timing cache was written by another TensorRT version" in capsys.readouterr().out
    assert shared.read_bytes() == b"timing"


def test_build_serialized_refuses_calibration_on_strong_typing(tmp_path):
    with pytest.raises(EdgepackError, match="no INT8 calibration"):
        build_serialized(fake_builder_trt("11.0.0"), tmp_path / "m.onnx", [{}], TrtBuildConfig(precision="int8"),
                         "calibrate", [], tmp_path / "c", b"")
