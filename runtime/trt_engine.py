"""Open a ``tensorrt`` artifact safely and run it: the runtime side of TensorRT (no torch).

An engine only runs on the TensorRT version and GPU architecture it was built for. The artifact's
runtime contract records ``tensorrt_version``, ``gpu_name`` and ``compute_capability``;
:func:`load_engine` refuses a mismatch with one clear line instead of TensorRT's deserialization failure
(:func:`check_engine_compatibility` is pure Python and tested on CPU). :class:`TensorRTRunner` picks the
optimization profile per input shape (:func:`edgepack.runtime.trt_profiles.select_profile`) and runs on
device buffers and a stream from the CUDA driver (:mod:`edgepack.runtime.cuda`). ``tensorrt`` is imported
only inside functions. Building engines is :mod:`edgepack.export.trt_engine`.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from typing import Any

import numpy as np
from edgepack.runtime.cuda import CudaDevice, DeviceBuffers
from edgepack.runtime.trt_profiles import select_profile

from edgepack.artifact import Artifact, ArtifactError
from edgepack.contract import RuntimeContract, ShapeRange
from edgepack.errors import EdgepackError, MissingDependencyError


@dataclass(frozen=True)
class RuntimeEnv:
    """The TensorRT version and GPU an engine is built on or opened on."""

    tensorrt_version: str
    gpu_name: str
    compute_capability: str  # "9.0"

    def contract_fields(self) -> dict:
        """The runtime contract fields that record this environment."""
        return {"tensorrt_version": self.tensorrt_version, "gpu_name": self.gpu_name,
                "compute_capability": self.compute_capability}


SUPPORTED_TENSORRT = (10, 11)  # major versions: 10.x (weak typing + calibrators) and 11.x (strongly typed)


def check_tensorrt_version(version: str) -> int:
    """The major version of TensorRT ``version``; EdgepackError when edgepack does not support it."""
    try:
        major = int(str(version).split(".")[0])
    except ValueError:
        raise EdgepackError(f"cannot read the TensorRT version {version!r}") from None
    if major not in SUPPORTED_TENSORRT:
        lo, hi = SUPPORTED_TENSORRT[0], SUPPORTED_TENSORRT[-1]
        raise EdgepackError(
            f"TensorRT {version} is not supported: edgepack builds and runs engines with TensorRT "
            f'{lo}.x-{hi}.x; install one with: pip install "tensorrt>={lo},<{hi + 1}"'
        )
    return major


def import_tensorrt(purpose: str):
    """Import tensorrt (a supported version) or raise MissingDependencyError / EdgepackError naming ``purpose``."""
    try:
        import tensorrt
    except ImportError:
        raise MissingDependencyError("tensorrt", "gpu-tools", purpose) from None
    check_tensorrt_version(getattr(tensorrt, "__version__", "unknown"))
    return tensorrt


def parse_nvidia_smi(text: str) -> tuple[str, str]:
    """(name, compute capability) of the first GPU from ``nvidia-smi --query-gpu=name,compute_cap
    --format=csv,noheader`` output."""
    for line in text.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) >= 2 and parts[0]:
            return parts[0], parts[1]
    raise EdgepackError(f"could not read the GPU name from nvidia-smi output: {text!r}")


def detect_gpu(device: int = 0) -> tuple[str, str]:
    """(name, "major.minor") of CUDA device ``device``, from the CUDA driver, else nvidia-smi."""
    try:
        cuda = CudaDevice(device)
        return cuda.name(), cuda.compute_capability()
    except EdgepackError:
        pass
    try:
        out = subprocess.run(
            ["nvidia-smi", f"--id={device}", "--query-gpu=name,compute_cap", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=30, check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        raise EdgepackError("no NVIDIA GPU found (the CUDA driver sees none and nvidia-smi failed)") from None
    return parse_nvidia_smi(out)


def detect_runtime_env(trt: Any = None, device: int = 0) -> RuntimeEnv:
    """The TensorRT version in this process and the GPU it runs on."""
    trt = trt or import_tensorrt("inspecting the TensorRT environment")
    name, cc = detect_gpu(device)
    return RuntimeEnv(str(trt.__version__), name, cc)


def check_engine_compatibility(rt: RuntimeContract, env: RuntimeEnv) -> list[str]:
    """Raise ArtifactError when an engine's recorded TensorRT version or GPU architecture differs from
    ``env``; return warnings for differences TensorRT tolerates (another GPU of the same architecture)."""
    for key in ("tensorrt_version", "compute_capability", "gpu_name"):
        if not getattr(rt, key):
            raise ArtifactError(f"this TensorRT artifact does not record '{key}'; rebuild it with edgepack")
    if rt.tensorrt_version != env.tensorrt_version:
        raise ArtifactError(
            f"engine was built with TensorRT {rt.tensorrt_version} but this process has TensorRT "
            f"{env.tensorrt_version}; engines only load in the version that built them: rebuild it here "
            "(`edgepack export tensorrt ONNX_ARTIFACT OUT`)"
        )
    if rt.compute_capability != env.compute_capability:
        raise ArtifactError(
            f"engine was built for {rt.gpu_name} (compute capability {rt.compute_capability}) "
            f"but this GPU is {env.gpu_name} (compute capability {env.compute_capability}); engines are "
            "tied to the GPU architecture: rebuild it on this GPU"
        )
    if rt.gpu_name != env.gpu_name:
        return [
            (f"engine was built on {rt.gpu_name} and runs on {env.gpu_name} (same architecture "
             f"{env.compute_capability}); it loads, but rebuild it here for the best kernels")
        ]
    return []


@dataclass
class LoadedEngine:
    """A deserialized engine; ``runtime`` is kept because it must outlive ``engine``."""

    trt: Any
    runtime: Any
    engine: Any
    warnings: list[str]


def load_engine(art: Artifact, device: int = 0) -> LoadedEngine:
    """Deserialize a ``tensorrt`` artifact's engine after checking TensorRT version and GPU architecture."""
    art.require(format="tensorrt")
    trt = import_tensorrt("running a TensorRT engine")
    warnings = check_engine_compatibility(art.runtime, detect_runtime_env(trt, device))
    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    engine = runtime.deserialize_cuda_engine(art.file("engine").read_bytes())
    if engine is None:
        raise ArtifactError(f"TensorRT could not deserialize {art.file('engine')} (see TensorRT's log above)")
    return LoadedEngine(trt, runtime, engine, warnings)


def engine_profiles(art: Artifact) -> list[ShapeRange]:
    """The optimization profiles recorded in a ``tensorrt`` artifact, in engine order."""
    if not art.runtime.profiles:
        raise ArtifactError(f"{art.path}: the runtime contract records no optimization 'profiles'")
    return list(art.runtime.profiles)


class TensorRTRunner:
    """Run a ``tensorrt`` artifact: shapes set per call, one profile per shape range, a CUDA stream."""

    def __init__(self, artifact: Artifact, device_id: int = 0):
        self.ranges = engine_profiles(artifact)
        self.cuda = CudaDevice(device_id)  # current before TensorRT touches the device
        self.loaded = load_engine(artifact, device_id)
        trt, engine = self.loaded.trt, self.loaded.engine
        self.trt, self.engine = trt, engine
        if len(self.ranges) != engine.num_optimization_profiles:
            raise EdgepackError(
                f"manifest lists {len(self.ranges)} profiles but the engine has {engine.num_optimization_profiles}"
            )
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        self.input_names = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.output_names = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        self.dtypes = {n: np.dtype(trt.nptype(engine.get_tensor_dtype(n))) for n in names}
        self.context = engine.create_execution_context()
        self.stream = self.cuda.create_stream()
        self.buffers = DeviceBuffers(self.cuda)
        self.profile = -1
        self.warnings = self.loaded.warnings

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        ctx, cuda, stream = self.context, self.cuda, self.stream
        cuda.activate()  # the batcher may call from another thread
        first = feeds[self.input_names[0]]
        batch, seq = int(first.shape[0]), int(first.shape[1]) if first.ndim > 1 else 1
        profile = select_profile(self.ranges, batch, seq)
        if profile != self.profile:
            ctx.set_optimization_profile_async(profile, stream)
            self.profile = profile
        keep = []  # host inputs must live until the stream is done with them
        for name in self.input_names:
            host = np.ascontiguousarray(feeds[name], dtype=self.dtypes[name])  # e.g. int64 -> int32
            ptr = self.buffers.get(name, host.nbytes)
            cuda.to_device(ptr, host, stream)
            ctx.set_input_shape(name, tuple(host.shape))
            ctx.set_tensor_address(name, ptr)
            keep.append(host)
        outs = {}
        for name in self.output_names:
            host = np.empty(tuple(ctx.get_tensor_shape(name)), dtype=self.dtypes[name])
            ptr = self.buffers.get(name, host.nbytes)
            ctx.set_tensor_address(name, ptr)
            outs[name] = (host, ptr)
        if not ctx.execute_async_v3(stream):
            raise EdgepackError("TensorRT execution failed (see its log above)")
        for host, ptr in outs.values():
            cuda.to_host(host, ptr, stream)
        cuda.synchronize(stream)
        return {n: host for n, (host, _) in outs.items()}

    def synchronize(self) -> None:
        self.cuda.synchronize(self.stream)


__all__ = [
    "SUPPORTED_TENSORRT",
    "LoadedEngine",
    "RuntimeEnv",
    "TensorRTRunner",
    "check_engine_compatibility",
    "check_tensorrt_version",
    "detect_gpu",
    "detect_runtime_env",
    "engine_profiles",
    "import_tensorrt",
    "load_engine",
    "parse_nvidia_smi",
]
