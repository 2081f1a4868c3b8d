"""The quantize stage removes candidate scratch folders that killed runs left beside its output, and only those."""

from __future__ import annotations

import os

import pytest

from edgepack.testing import SAMPLE_TEXTS

pytest.importorskip("onnxruntime")
pytest.importorskip("optimum.exporters.onnx")

CALIB = SAMPLE_TEXTS * 4
DEAD = 2 ** 22 + 7  # above the default pid_max: no such process


@pytest.fixture(scope="module")
def fp32_onnx(tiny_bert, tmp_path_factory):
    from edgepack.export.onnx_export import OnnxExportConfig, export_onnx

    return export_onnx(tiny_bert, tmp_path_factory.mktemp("q") / "fp32", OnnxExportConfig(opset=17))


def test_rerun_removes_dead_runs_candidate_folders_only(fp32_onnx, tmp_path, monkeypatch):
    from edgepack.quantize import NoCandidateError, QuantizeConfig, api, quantize
    from edgepack.quantize.budget import Measurement

    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "keep.txt").write_text("x")
    dead = [f".out.candidates-{DEAD}-ab12", ".out.candidates-k3j2h1x9"]  # a killed run's; a pid-less (older) one
    kept_dirs = [f".out.candidates-{os.getppid()}-live",  # a live process's run on the same output
                 f".other.candidates-{DEAD}-cd34", ".out.work", "notes"]  # another output's; not candidates
    for name in dead + kept_dirs:
        (tmp_path / name).mkdir()
        (tmp_path / name / "model.onnx").write_bytes(b"junk")
    (tmp_path / f".out.candidates-{DEAD}-file").write_text("a file, not a folder")
    (tmp_path / f".out.candidates-{DEAD}-link").symlink_to(outside, target_is_directory=True)
    during = {}

    def fake_measure(parent, built, ds, cfg):  # the listing while the run works; then nothing qualifies
        during["names"] = sorted(p.name for p in tmp_path.iterdir())
        return Measurement("parent", "fp32", 90.0, 1000, 10.0), [Measurement("dynamic-int8", "int8-dynamic",
                                                                             80.0, 250, 5.0)]

    monkeypatch.setattr(api, "measure", fake_measure)
    cfg = QuantizeConfig(methods=("dynamic-int8",), max_accuracy_drop=1.0)
    with pytest.raises(NoCandidateError):  # nothing written, so ArtifactWriter's own cleanup never ran
        quantize(fp32_onnx, (CALIB, [0] * len(CALIB)), cfg, tmp_path / "out", verbose=False)

    ours = [n for n in during["names"] if n.startswith(f".out.candidates-{os.getpid()}-")]
    assert len(ours) == 1 and (set(during["names"]) - set(ours)).isdisjoint(dead)  # removed before building
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted([*kept_dirs, f".out.candidates-{DEAD}-file", f".out.candidates-{DEAD}-link",
                           "elsewhere"])  # our own scratch is gone too
    for name in kept_dirs:
        assert (tmp_path / name / "model.onnx").read_bytes() == b"junk"
    assert (outside / "keep.txt").read_text() == "x"
