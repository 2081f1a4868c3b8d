"""INT8 target CPUs: feature detection, what `auto` picks, both settings on any machine, the runtime warning."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from edgepack.cpu import host_cpu, int8_mismatch, needs_reduce_range, parse_cpuinfo, resolve_target
from edgepack.errors import EdgepackError
from edgepack.testing import SAMPLE_TEXTS

EPYC = "processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse2 avx avx2 fma bmi2\n"
XEON = ("model name\t: Intel(R) Xeon(R) Platinum 8488C\nflags\t\t: avx avx2 avx512f avx512bw avx512_vnni "
        "amx_tile amx_int8\n")
ALDER = "model name\t: 12th Gen Intel(R) Core(TM) i7-12700\nflags\t\t: avx avx2 avx_vnni\n"
GRAVITON = "processor\t: 0\nFeatures\t: fp asimd asimddp\nCPU implementer\t: 0x41\n"


def test_parse_cpuinfo_reads_the_int8_relevant_features():
    epyc, xeon, alder, arm = (parse_cpuinfo(EPYC, "x86_64"), parse_cpuinfo(XEON, "x86_64"),
                              parse_cpuinfo(ALDER, "x86_64"), parse_cpuinfo(GRAVITON, "aarch64"))
    assert (epyc.avx2, epyc.avx512, epyc.vnni, epyc.amx, epyc.target) == (True, False, False, False, "avx2")
    assert (xeon.avx512, xeon.vnni, xeon.amx, xeon.target) == (True, True, True, "avx512-vnni")
    assert (alder.avx512, alder.vnni, alder.target) == (False, True, "avx512-vnni")  # AVX-VNNI does not saturate
    assert (arm.arch, arm.target) == ("arm64", "arm64")
    assert epyc.describe() == "AMD EPYC (AVX2; no AVX-512, no VNNI)"
    assert xeon.describe().endswith("(AVX2, AVX-512, VNNI, AMX)")
    assert host_cpu().target in ("avx2", "avx512-vnni", "arm64")


def test_targets_resolve_and_pick_reduce_range():
    epyc, xeon = parse_cpuinfo(EPYC, "x86_64"), parse_cpuinfo(XEON, "x86_64")
    assert resolve_target("auto", epyc) == "avx2" and resolve_target("auto", xeon) == "avx512-vnni"
    assert resolve_target("avx2", xeon) == "avx2"  # an explicit target wins over the machine
    assert needs_reduce_range("avx2") and not needs_reduce_range("avx512-vnni") and not needs_reduce_range("arm64")
    with pytest.raises(EdgepackError, match="unknown target_cpu 'avx9'; choose one of auto, avx2, avx512-vnni"):
        resolve_target("avx9")


def test_int8_mismatch_only_for_full_8bit_s8_weights_on_x86_without_vnni():
    epyc, xeon = parse_cpuinfo(EPYC, "x86_64"), parse_cpuinfo(XEON, "x86_64")
    arm = parse_cpuinfo(GRAVITON, "aarch64")
    assert "re-quantize it with --target-cpu avx2" in int8_mismatch(False, "qint8", epyc)
    assert int8_mismatch(None, "qint8", epyc)  # recorded before targets existed: full 8-bit weights
    assert int8_mismatch(True, "qint8", epyc) is None  # 7-bit weights: right on AVX2
    assert int8_mismatch(False, "quint8", epyc) is None  # U8U8 does not saturate
    assert int8_mismatch(False, "qint8", xeon) is None and int8_mismatch(False, "qint8", arm) is None


def test_configs_record_the_resolved_target():
    from edgepack.quantize.config import DynamicInt8Config, QuantizeConfig, StaticInt8Config

    auto = DynamicInt8Config().resolved()
    assert auto.target_cpu == host_cpu().target
    assert auto.reduce_range is (host_cpu().target == "avx2")  # what this machine's default picks
    assert DynamicInt8Config(target_cpu="avx2").resolved().reduce_range is True
    assert DynamicInt8Config(target_cpu="avx512-vnni").resolved().reduce_range is False
    assert DynamicInt8Config(target_cpu="avx2", reduce_range=False).resolved().reduce_range is False  # explicit
    assert StaticInt8Config(target_cpu="avx2").resolved().reduce_range is True
    stage = QuantizeConfig(target_cpu="avx2")
    assert stage.method_config("dynamic-int8").target_cpu == "avx2"
    assert stage.method_config("static-int8-minmax").target_cpu == "avx2"
    with pytest.raises(EdgepackError, match="^target_cpu must be one of auto, avx2, avx512-vnni, arm64, got 'x86'$"):
        QuantizeConfig(target_cpu="x86")
    with pytest.raises(EdgepackError, match="^target_cpu must be one of auto, avx2, avx512-vnni, arm64, got 'x86'$"):
        DynamicInt8Config(target_cpu="x86")


@pytest.fixture(scope="module")
def fp32_onnx(tiny_bert, tmp_path_factory):
    pytest.importorskip("optimum.exporters.onnx")
    from edgepack.export.onnx_export import OnnxExportConfig, export_onnx

    return export_onnx(tiny_bert, tmp_path_factory.mktemp("t") / "fp32", OnnxExportConfig(opset=17))


def _open_quietly(path):
    from edgepack.runtime import Predictor

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Predictor.open(path)


@pytest.mark.parametrize("method", ["dynamic-int8", "static-int8-minmax"])
def test_avx2_target_is_right_on_this_machine_whatever_it_is(fp32_onnx, tmp_path, method):
    from edgepack.quantize.api import build_candidate
    from edgepack.quantize.config import QuantizeConfig

    art = build_candidate(fp32_onnx, method, QuantizeConfig(target_cpu="avx2").method_config(method),
                          tmp_path / "q", SAMPLE_TEXTS * 4)
    assert art.runtime.target_cpu == "avx2" and art.runtime.reduce_range is True
    assert art.manifest["config"]["reduce_range"] is True
    floor = 25.0 if method.startswith("dynamic") else 20.0
    assert art.metrics["sqnr_db"] >= floor, f"{method} for avx2 on {host_cpu().describe()}: {art.metrics['sqnr_db']:.1f} dB"
    np.testing.assert_allclose(_open_quietly(art.path).infer(SAMPLE_TEXTS), _open_quietly(fp32_onnx.path).infer(SAMPLE_TEXTS),
                               atol=0.02)


def test_vnni_target_warns_once_on_a_cpu_without_vnni(fp32_onnx, tmp_path, monkeypatch):
    from edgepack.quantize.config import DynamicInt8Config
    from edgepack.quantize.onnx_dynamic import quantize_dynamic_onnx
    from edgepack.runtime import Predictor, predictor

    import edgepack.cpu

    vnni = quantize_dynamic_onnx(fp32_onnx, tmp_path / "vnni", DynamicInt8Config(target_cpu="avx512-vnni"))
    avx2 = quantize_dynamic_onnx(fp32_onnx, tmp_path / "avx2", DynamicInt8Config(target_cpu="avx2"))
    assert vnni.runtime.target_cpu == "avx512-vnni" and vnni.runtime.reduce_range is False
    if host_cpu().vnni:  # full 8-bit weights are right where VNNI is
        assert vnni.metrics["sqnr_db"] >= 25.0
    monkeypatch.setattr(predictor, "_WARNED", set())
    monkeypatch.setattr(edgepack.cpu, "host_cpu", lambda: parse_cpuinfo(EPYC, "x86_64"))
    with pytest.warns(RuntimeWarning, match=r"quantized for avx512-vnni; this CPU \(AMD EPYC .*no VNNI\).*"
                                            r"--target-cpu avx2"):
        Predictor.open(vnni.path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Predictor.open(vnni.path)  # once per model
        Predictor.open(avx2.path)  # 7-bit weights: nothing to warn about
        monkeypatch.setattr(predictor, "_WARNED", set())
        monkeypatch.setattr(edgepack.cpu, "host_cpu", lambda: parse_cpuinfo(XEON, "x86_64"))
        Predictor.open(vnni.path)  # on a VNNI CPU it is right
