"""The TensorRT builder calls (TensorRT 10 Python API); imported only when an engine is built.

Kept apart from :mod:`edgepack.export.trt_engine` so the planning and checks there stay importable
and testable without TensorRT. Device memory for calibration batches comes from torch (CUDA tensors),
which every GPU host running the edgepack tools has.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edgepack.errors import EdgepackError

Shape = tuple[int, ...]


def make_calibrator(trt: Any, batches: Sequence[dict[str, np.ndarray]], cache_path: Path):
    """An ``IInt8EntropyCalibrator2`` that feeds ``batches`` (equal-shape dicts) from GPU memory and
    reads/writes its scales at ``cache_path`` (an existing, non-empty cache skips calibration)."""
    import torch

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)  # pybind trampolines need the explicit base init
            self.batches = list(batches)
            self.index = 0
            self.device_tensors: dict[str, torch.Tensor] = {}
            self.batch_size = int(next(iter(self.batches[0].values())).shape[0]) if self.batches else 1

        def get_batch_size(self) -> int:
            return self.batch_size

        def get_batch(self, names: list[str]):
            if self.index >= len(self.batches):
                return None  # tells TensorRT calibration data is exhausted
            batch = self.batches[self.index]
            self.index += 1
            ptrs = []
            for name in names:
                host = torch.from_numpy(np.ascontiguousarray(batch[name]))
                t = self.device_tensors.get(name)
                if t is None or t.shape != host.shape or t.dtype != host.dtype:
                    t = self.device_tensors[name] = torch.empty_like(host, device="cuda")
                t.copy_(host)
                ptrs.append(int(t.data_ptr()))
            torch.cuda.synchronize()
            return ptrs

        def read_calibration_cache(self):
            if cache_path.is_file() and cache_path.stat().st_size > 0:
                return cache_path.read_bytes()
            return None

        def write_calibration_cache(self, cache) -> None:
            cache_path.write_bytes(bytes(cache))

    return EntropyCalibrator()


def _parse_onnx(trt: Any, builder: Any, logger: Any, onnx_path: Path):
    flags = 0
    explicit = getattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH", None)
    if explicit is not None:  # required before TensorRT 10, deprecated (always on) from 10
        flags |= 1 << int(explicit)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EdgepackError(f"TensorRT's ONNX parser rejected {onnx_path}: {errors}")
    return network, parser


def build_serialized(
    trt: Any,
    onnx_path: Path,
    profiles: list[dict[str, tuple[Shape, Shape, Shape]]],
    cfg: Any,
    int8_mode: str,
    calib_batches: Sequence[dict[str, np.ndarray]],
    calib_cache: Path,
    timing_cache: bytes,
) -> tuple[bytes, bytes, dict[str, str]]:
    """Parse, configure and build; returns (serialized engine, updated timing cache, IO dtype names).

    The IO dtypes are the network's after parsing (TensorRT before 10 imports int64 inputs as int32),
    which is what a Triton config or a client must send.
    """
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network, parser = _parse_onnx(trt, builder, logger, onnx_path)
    net_inputs = [network.get_input(i).name for i in range(network.num_inputs)]
    io = [network.get_input(i) for i in range(network.num_inputs)]
    io += [network.get_output(i) for i in range(network.num_outputs)]
    io_dtypes = {t.name: np.dtype(trt.nptype(t.dtype)).name for t in io}
    missing = set(net_inputs) - set(profiles[0])
    if missing:
        raise EdgepackError(f"the ONNX graph has inputs {sorted(missing)} that the manifest does not declare")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(cfg.workspace_mb) << 20)
    config.builder_optimization_level = int(cfg.optimization_level)
    if cfg.precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)
    if cfg.precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
    if cfg.sparse_weights:
        config.set_flag(trt.BuilderFlag.SPARSE_WEIGHTS)
    cache = config.create_timing_cache(timing_cache)
    config.set_timing_cache(cache, ignore_mismatch=False)

    for prof in profiles:
        p = builder.create_optimization_profile()
        for name in net_inputs:
            mn, opt, mx = prof[name]
            p.set_shape(name, mn, opt, mx)
        config.add_optimization_profile(p)

    calibrator = None
    if int8_mode in ("calibrate", "cache"):
        calibrator = make_calibrator(trt, calib_batches, calib_cache)
        config.int8_calibrator = calibrator
        # Calibration runs at one shape: the calibration batch shape (or the opt shape with a cache).
        shape_of = (
            {n: tuple(calib_batches[0][n].shape) for n in net_inputs}
            if calib_batches
            else {n: profiles[0][n][1] for n in net_inputs}
        )
        cp = builder.create_optimization_profile()
        for name in net_inputs:
            cp.set_shape(name, shape_of[name], shape_of[name], shape_of[name])
        config.set_calibration_profile(cp)

    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EdgepackError("TensorRT failed to build the engine; its log above says why")
    timing = config.get_timing_cache().serialize()
    del parser, calibrator
    return bytes(serialized), bytes(timing), io_dtypes
