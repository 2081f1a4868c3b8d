"""GPU backends: ONNX Runtime CUDA / TensorRT execution providers, and native TensorRT.

Every runner has ``input_names``, ``output_names`` and ``infer(feeds) -> {name: np.ndarray}`` like the
CPU :class:`edgepack.runtime.ort.OrtRunner`, plus ``synchronize()`` for benchmarks. Libraries are
imported when a runner is created; a missing one is one clear line (MissingDependencyError).

- :class:`OrtIoBindingRunner`: ONNX Runtime with IO binding (host inputs copied to the device on every
  call, outputs allocated on the device and copied back once per call), for ``CUDAExecutionProvider`` or ``TensorrtExecutionProvider``
  (engine and timing caches on disk, explicit optimization profiles; TensorRT's libraries are loaded
  before the session opens, and a fallback to another provider is one clear error).
- :class:`edgepack.runtime.trt_engine.TensorRTRunner`: a ``tensorrt`` artifact through the TensorRT
  runtime (registered here as the ``tensorrt`` backend).

The torch CUDA runner is a benchmark baseline, not a runtime backend: :mod:`edgepack.benchmarks.torch_cuda`.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np

from edgepack.artifact import Artifact
from edgepack.errors import EdgepackError

ORT_GPU_PROVIDERS = {"cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider"}


def ort_provider_options(
    provider: str,
    device_id: int = 0,
    cache_dir: str | Path | None = None,
    fp16: bool = False,
    int8: bool = False,
    workspace_mb: int = 2048,
    profile_options: dict[str, str] | None = None,
    tf32: bool = False,
) -> list[tuple[str, dict[str, Any]]]:
    """The ``providers`` list for an ORT session on ``provider`` ("cuda" or "tensorrt").

    TensorRT gets CUDA as a fallback for the nodes it does not take. ``cache_dir`` enables TensorRT's
    engine and timing caches there (the first session builds, later ones load in seconds);
    ``profile_options`` are ``trt_profile_{min,opt,max}_shapes`` from
    :func:`edgepack.runtime.trt_profiles.ort_trt_profile_options`. TF32 is off (``use_tf32=0``) unless
    ``tf32``: fp32 results then match the CPU's to ~1e-5 instead of ~1e-3 on Ampere and newer GPUs.
    """
    if provider not in ORT_GPU_PROVIDERS:
        raise EdgepackError(
            f"unknown ONNX Runtime GPU provider {provider!r}; use one of {list(ORT_GPU_PROVIDERS)}"
        )
    cuda = (
        "CUDAExecutionProvider",
        {
            "device_id": device_id,
            "arena_extend_strategy": "kSameAsRequested",
            "cudnn_conv_algo_search": "HEURISTIC",
            "do_copy_in_default_stream": True,
            "use_tf32": int(bool(tf32)),
        },
    )
    if provider == "cuda":
        return [cuda]
    trt: dict[str, Any] = {
        "device_id": device_id,
        "trt_fp16_enable": bool(fp16),
        "trt_int8_enable": bool(int8),
        "trt_max_workspace_size": int(workspace_mb) << 20,
    }
    if cache_dir is not None:
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
        trt.update(
            trt_engine_cache_enable=True,
            trt_engine_cache_path=str(cache_dir),
            trt_timing_cache_enable=True,
            trt_timing_cache_path=str(cache_dir),
        )
    trt.update(profile_options or {})
    return [("TensorrtExecutionProvider", trt), cuda]


class OrtIoBindingRunner:
    """An ONNX Runtime session run through IO binding (``device="cuda"``, or ``"cpu"`` for the CPU EP)."""

    def __init__(self, model_path: str | Path, providers: list, device: str = "cuda", device_id: int = 0):
        from edgepack.runtime.ort import import_onnxruntime

        ort = import_onnxruntime()
        names = [p if isinstance(p, str) else p[0] for p in providers]
        missing = [n for n in names if n not in ort.get_available_providers()]
        if missing:
            raise EdgepackError(
                f"ONNX Runtime here has no {', '.join(missing)} (available: {ort.get_available_providers()}); "
                'install the GPU build: pip uninstall -y onnxruntime && pip install "edgepack[gpu]"'
            )
        self.preloaded = preload_gpu_libraries(ort, tensorrt="TensorrtExecutionProvider" in names)
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self.session = ort.InferenceSession(
                str(model_path),
                sess_options=opts,
                providers=[p if isinstance(p, str) else p[0] for p in providers],
                provider_options=[{} if isinstance(p, str) else p[1] for p in providers],
            )
        except Exception as e:  # onnxruntime raises its own exception types
            raise EdgepackError(f"ONNX Runtime could not load {model_path}: {e}") from None
        self.device, self.device_id = device, device_id
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.providers = self.session.get_providers()
        if names[0] not in self.providers:
            why = "; ".join(self.preloaded) or "no GPU library was preloaded"
            raise EdgepackError(
                f"ONNX Runtime could not start {names[0]} and fell back to {self.providers} ({why}); "
                + ("its log above names the library it could not load (libnvinfer for TensorRT): "
                   'install TensorRT (pip install "edgepack[gpu-tools]") or put its lib folder on LD_LIBRARY_PATH'
                   if names[0] == "TensorrtExecutionProvider" else "its log above says which library is missing")
            )

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        binding = self.session.io_binding()
        for name in self.input_names:
            if name not in feeds:
                raise EdgepackError(f"missing model input '{name}' (got {sorted(feeds)})")
            binding.bind_cpu_input(name, np.ascontiguousarray(feeds[name]))
        for name in self.output_names:
            binding.bind_output(name, self.device, self.device_id)  # ORT allocates with the run's shape
        self.session.run_with_iobinding(binding)
        outs = binding.copy_outputs_to_cpu()
        return dict(zip(self.output_names, outs))

    def synchronize(self) -> None:
        """Outputs are copied to the host inside ``infer``, which waits for the device."""


def preload_gpu_libraries(ort: Any, tensorrt: bool) -> list[str]:
    """Load the GPU libraries ONNX Runtime's providers look for before a session opens; returns notes.

    ORT's TensorRT provider dlopens ``libnvinfer``; pip's ``tensorrt`` wheels keep it in their own folder,
    which the loader only knows once ``import tensorrt`` has loaded it into the process. ``preload_dlls``
    (ORT 1.21+) does the same for CUDA and cuDNN from the nvidia-* pip packages.
    """
    notes = []
    if hasattr(ort, "preload_dlls"):
        try:
            ort.preload_dlls()
            notes.append("CUDA/cuDNN preloaded")
        except Exception as e:  # a missing optional library is reported, not fatal
            notes.append(f"preload_dlls failed: {e}")
    if tensorrt:
        try:
            import tensorrt as trt

            notes.append(f"tensorrt {getattr(trt, '__version__', '?')} imported first (libnvinfer loaded)")
        except ImportError:
            notes.append("the tensorrt package is not importable, so libnvinfer must be on LD_LIBRARY_PATH")
    return notes


# --- backend registry entries ---------------------------------------------------------------------------
def _ort_has(provider: str) -> bool:
    if importlib.util.find_spec("onnxruntime") is None:
        return False
    try:
        from edgepack.runtime.ort import import_onnxruntime

        return provider in import_onnxruntime().get_available_providers()
    except EdgepackError:
        return False


def default_trt_cache_dir(artifact: Artifact) -> Path:
    """Where ORT's TensorRT EP keeps engines for ``artifact``: keyed by the model's sha256."""
    key = artifact.manifest["files"]["model"]["sha256"][:16]
    return Path.home() / ".cache" / "edgepack" / "ort-trt" / key


def _make_ort_gpu(provider: str):
    def make(
        artifact: Artifact,
        intra_op_threads: int | None = None,
        device_id: int = 0,
        fp16: bool = False,
        cache_dir: str | None = None,
        batch: str = "1,8,32",
        seq: str | None = None,
        **_: Any,
    ):
        from edgepack.runtime.trt_profiles import input_profiles, ort_trt_profile_options, parse_range

        from edgepack.contract import ShapeRange

        profile_opts = None
        if provider == "tensorrt":
            limit = artifact.runtime.max_length or 128
            b = parse_range(batch, "batch")
            s = parse_range(seq, "seq") if seq else (1, min(128, limit), limit)
            prof = input_profiles(artifact.inputs, ShapeRange(*b, *s))
            profile_opts = ort_trt_profile_options([prof])
        providers = ort_provider_options(
            provider,
            device_id,
            cache_dir or default_trt_cache_dir(artifact),
            fp16=fp16,
            profile_options=profile_opts,
        )
        return OrtIoBindingRunner(artifact.file("model"), providers, "cuda", device_id)

    return make


def _make_tensorrt(artifact: Artifact, intra_op_threads: int | None = None, device_id: int = 0, **_: Any):
    from edgepack.runtime.trt_engine import TensorRTRunner

    return TensorRTRunner(artifact, device_id)


def _tensorrt_ok() -> bool:
    from edgepack.runtime.cuda import driver_available

    return importlib.util.find_spec("tensorrt") is not None and driver_available()


def register_gpu_backends() -> None:
    """Add ``tensorrt``, ``ort-tensorrt`` and ``ort-cuda`` to the backend registry.

    Auto order on a GPU host: native TensorRT for ``tensorrt`` artifacts; ORT CUDA for ``onnx``
    artifacts (before ORT CPU). ORT's TensorRT EP is explicit only: it builds engines while the session
    opens (minutes on first use), which "auto" should not spring on anyone.
    """
    from edgepack.runtime.backends import Backend, register_backend

    register_backend(
        Backend(
            "tensorrt",
            ("tensorrt",),
            _tensorrt_ok,
            _make_tensorrt,
            "TensorRT runtime (tensorrt + the CUDA driver)",
        ),
        auto_priority=0,
    )
    register_backend(
        Backend(
            "ort-cuda",
            ("onnx",),
            lambda: _ort_has("CUDAExecutionProvider"),
            _make_ort_gpu("cuda"),
            "ONNX Runtime CUDA execution provider (onnxruntime-gpu)",
        ),
        auto_priority=1,
    )
    register_backend(
        Backend(
            "ort-tensorrt",
            ("onnx",),
            lambda: _ort_has("TensorrtExecutionProvider"),
            _make_ort_gpu("tensorrt"),
            "ONNX Runtime TensorRT execution provider",
        )
    )
