"""`edgepack export tensorrt|triton` command lines."""

import importlib.util

import pytest
from edgepack.export.triton_check import check_repository
from edgepack.export.triton_pbtxt import parse_pbtxt

from edgepack.pipeline.cli import main


@pytest.fixture(scope="module")
def onnx_dir(tiny_bert, tmp_path_factory):
    from edgepack.export.onnx_export import export_onnx

    return export_onnx(tiny_bert, tmp_path_factory.mktemp("cli") / "onnx").path


def test_export_triton_cli(onnx_dir, tmp_path, capsys):
    rc = main(
        [
            "export",
            "triton",
            str(onnx_dir),
            str(tmp_path / "repo"),
            "--name",
            "stu",
            "--max-batch",
            "8",
            "--preferred-batch",
            "2,8",
            "--queue-delay-us",
            "500",
            "--instances",
            "2",
            "--gpus",
            "0,1",
            "--ort-trt",
            "FP16",
        ]
    )
    assert rc == 0
    out = capsys.readouterr().out
    assert "structural check passed; send requests to 'stu_text'" in out
    assert f"tritonserver --model-repository={tmp_path / 'repo'}" in out
    assert check_repository(tmp_path / "repo") == []
    cfg = parse_pbtxt((tmp_path / "repo/stu/config.pbtxt").read_text())
    assert cfg["dynamic_batching"] == {"preferred_batch_size": [2, 8], "max_queue_delay_microseconds": 500}
    assert cfg["instance_group"] == [{"count": 2, "kind": "KIND_GPU", "gpus": [0, 1]}]
    acc = cfg["optimization"]["execution_accelerators"]["gpu_execution_accelerator"][0]
    assert acc["name"] == "tensorrt" and {"key": "precision_mode", "value": "FP16"} in acc["parameters"]


def test_export_cli_errors_are_one_line(onnx_dir, tmp_path, capsys):
    assert main(["export", "triton", str(onnx_dir), str(tmp_path / "r"), "--preferred-batch", "64"]) == 2
    assert "preferred_batch_sizes: [64] must lie in 1..max_batch_size (32)" in capsys.readouterr().err
    assert main(["export", "tensorrt", str(onnx_dir), str(tmp_path / "e"), "--seq", "1,64,512"]) == 2
    assert "max sequence length 512 exceeds the model's max_length 128" in capsys.readouterr().err
    assert main(["export", "tensorrt", str(onnx_dir), str(tmp_path / "e"), "--batch", "8,1,4"]) == 2
    assert "batch lengths must satisfy 1 <= min <= opt <= max" in capsys.readouterr().err
    assert (
        main(
            [
                "export",
                "tensorrt",
                str(onnx_dir),
                str(tmp_path / "e"),
                "--precision",
                "int8",
                "--calib-data",
                str(tmp_path / "missing.txt"),
            ]
        )
        == 2
    )
    assert "cannot read calibration data" in capsys.readouterr().err


@pytest.mark.skipif(
    importlib.util.find_spec("tensorrt") is not None, reason="checks the message without TensorRT"
)
def test_export_tensorrt_without_tensorrt(onnx_dir, tmp_path, capsys):
    assert main(["export", "tensorrt", str(onnx_dir), str(tmp_path / "e")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "needs the 'tensorrt' package" in err


def test_help_teaches(capsys):
    with pytest.raises(SystemExit):
        main(["export", "tensorrt", "--help"])
    text = capsys.readouterr().out
    assert "--seq-buckets" in text and "--calib-data" in text and "edgepack export tensorrt out/onnx" in text
