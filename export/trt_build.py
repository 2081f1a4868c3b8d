"""The TensorRT builder calls (TensorRT 10 and 11 Python API); imported only when an engine is built.

TensorRT 11 removed weak typing: ``BuilderFlag.FP16``/``INT8`` and the INT8 calibrator API are gone and
every network is strongly typed (precision comes from the graph: an fp16 ONNX graph, Q/DQ for INT8).
:func:`network_typing` tells which API this ``tensorrt`` has: ``"weak"`` (TensorRT 10: builder flags,
calibration) or ``"strong"`` (no FP16 flag: ``NetworkDefinitionCreationFlag.STRONGLY_TYPED``, no flags).
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


def make_calibrator(trt: Any, batches: Sequence[dict[str, np.ndarray]], cache_path: Path, device: int = 0):
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
                    t = self.device_tensors[name] = torch.empty_like(host, device=f"cuda:{device}")
                t.copy_(host)
                ptrs.append(int(t.data_ptr()))
            torch.cuda.synchronize(device)
            return ptrs

        def read_calibration_cache(self):
            if cache_path.is_file() and cache_path.stat().st_size > 0:
                return cache_path.read_bytes()
            return None

        def write_calibration_cache(self, cache) -> None:
            cache_path.write_bytes(bytes(cache))

    return EntropyCalibrator()


def network_typing(trt: Any) -> str:
    """"weak" where the precision builder flags (FP16, INT8) exist (TensorRT 10), else "strong" (11+)."""
    flags = trt.BuilderFlag
    return "weak" if hasattr(flags, "FP16") and hasattr(flags, "INT8") else "strong"


def _parse_onnx(trt: Any, builder: Any, logger: Any, onnx_path: Path, typing: str = "weak"):
    flags = 0
    creation = trt.NetworkDefinitionCreationFlag
    explicit = getattr(creation, "EXPLICIT_BATCH", None)
    if explicit is not None and typing == "weak":  # required before TensorRT 10, deprecated (always on) from 10
        flags |= 1 << int(explicit)
    strongly = getattr(creation, "STRONGLY_TYPED", None)
    if typing == "strong" and strongly is not None:  # accepted (and implied) on 11
        flags |= 1 << int(strongly)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EdgepackError(f"TensorRT's ONNX parser rejected {onnx_path}: {errors}")
    return network, parser


def _set_timing_cache(config: Any, data: bytes, warnings: list[str]) -> None:
    """Use the shared timing cache ``data``; start an empty one when TensorRT cannot read or use it
    (``create_timing_cache`` may return None for a cache from another version; ``set_timing_cache``
    returns False on a mismatch)."""
    cache = config.create_timing_cache(data) if data else None
    if data and (cache is None or not config.set_timing_cache(cache, ignore_mismatch=False)):
        warnings.append("the shared timing cache was written by another TensorRT version or GPU: starting a new one")
        cache = None
    if cache is None:
        cache = config.create_timing_cache(b"")
        if cache is None or not config.set_timing_cache(cache, ignore_mismatch=False):
            raise EdgepackError("TensorRT could not create an empty timing cache (see its log above)")


def build_serialized(
    trt: Any,
    onnx_path: Path,
    profiles: list[dict[str, tuple[Shape, Shape, Shape]]],
    cfg: Any,
    int8_mode: str,
    calib_batches: Sequence[dict[str, np.ndarray]],
    calib_cache: Path,
    timing_cache: bytes,
    warnings: list[str] | None = None,
    device: int = 0,
) -> tuple[bytes, bytes, dict[str, str]]:
    """Parse, configure and build; returns (serialized engine, updated timing cache, IO dtype names).

    The IO dtypes are the network's after parsing (TensorRT before 10 imports int64 inputs as int32),
    which is what a Triton config or a client must send. With strong typing (:func:`network_typing`)
    ``onnx_path`` must already carry the precision (an fp16 graph, Q/DQ nodes): no precision flag is set.
    Problems TensorRT tolerates (a timing cache from another version) are appended to ``warnings``.
    """
    warnings = warnings if warnings is not None else []
    typing = network_typing(trt)
    if typing == "strong" and int8_mode in ("calibrate", "cache"):
        raise EdgepackError(
            f"TensorRT {getattr(trt, '__version__', '11+')} has no INT8 calibration (removed with weak typing): "
            "quantize with `edgepack quantize ONNX OUT --methods static-int8-trt` and build from that Q/DQ model"
        )
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network, parser = _parse_onnx(trt, builder, logger, onnx_path, typing)
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
    if typing == "weak" and cfg.precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)
    if typing == "weak" and cfg.precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
    if cfg.precision == "fp32" and hasattr(trt.BuilderFlag, "TF32"):
        config.clear_flag(trt.BuilderFlag.TF32)  # on by default: fp32 engines keep fp32 matmuls (parity)
    if cfg.sparse_weights:
        config.set_flag(trt.BuilderFlag.SPARSE_WEIGHTS)
    _set_timing_cache(config, timing_cache, warnings)

    for prof in profiles:
        p = builder.create_optimization_profile()
        for name in net_inputs:
            mn, opt, mx = prof[name]
            p.set_shape(name, mn, opt, mx)
        config.add_optimization_profile(p)

    calibrator = None
    if int8_mode in ("calibrate", "cache"):
        calibrator = make_calibrator(trt, calib_batches, calib_cache, device)
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
    timing_obj = config.get_timing_cache()
    timing = timing_obj.serialize() if timing_obj is not None else b""
    del parser, calibrator
    return bytes(serialized), bytes(timing), io_dtypes
