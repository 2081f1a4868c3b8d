"""GPU runners: ONNX Runtime CUDA / TensorRT execution providers, native TensorRT, torch CUDA.

Every runner has ``input_names``, ``output_names`` and ``infer(feeds) -> {name: np.ndarray}`` like the
CPU :class:`edgepack.runtime.ort.OrtRunner`, plus ``synchronize()`` for benchmarks. Libraries are
imported when a runner is created; a missing one is one clear line (MissingDependencyError).

- :class:`OrtIoBindingRunner`: ONNX Runtime with IO binding (inputs copied once, outputs allocated on
  the device and copied back once), for ``CUDAExecutionProvider`` or ``TensorrtExecutionProvider``
  (engine and timing caches on disk, explicit optimization profiles).
- :class:`TensorRTRunner`: a ``tensorrt`` artifact through the TensorRT runtime: profile chosen per
  input shape, device buffers from torch, execution on a CUDA stream (``execute_async_v3``).
- :class:`TorchCudaRunner`: the torch model on CUDA in fp16/bf16/fp32, or 8-/4-bit with bitsandbytes.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np

from edgepack.artifact import Artifact
from edgepack.errors import EdgepackError, MissingDependencyError

ORT_GPU_PROVIDERS = {"cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider"}


def ort_provider_options(
    provider: str,
    device_id: int = 0,
    cache_dir: str | Path | None = None,
    fp16: bool = False,
    int8: bool = False,
    workspace_mb: int = 2048,
    profile_options: dict[str, str] | None = None,
) -> list[tuple[str, dict[str, Any]]]:
    """The ``providers`` list for an ORT session on ``provider`` ("cuda" or "tensorrt").

    TensorRT gets CUDA as a fallback for the nodes it does not take. ``cache_dir`` enables TensorRT's
    engine and timing caches there (the first session builds, later ones load in seconds);
    ``profile_options`` are ``trt_profile_{min,opt,max}_shapes`` from
    :func:`edgepack.export.trt_profiles.ort_trt_profile_options`.
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
            raise EdgepackError(f"ONNX Runtime fell back to {self.providers} instead of {names[0]}")

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


class TensorRTRunner:
    """Run a ``tensorrt`` artifact: shapes set per call, one profile per shape range, a CUDA stream."""

    def __init__(self, artifact: Artifact, device_id: int = 0):
        from edgepack.export.trt_engine import engine_profiles, load_engine

        self.torch = _import_torch_cuda("the TensorRT runner")
        self.loaded = load_engine(artifact, device_id)
        trt, engine = self.loaded.trt, self.loaded.engine
        self.trt, self.engine = trt, engine
        self.ranges = engine_profiles(artifact)
        if len(self.ranges) != engine.num_optimization_profiles:
            raise EdgepackError(
                f"manifest lists {len(self.ranges)} profiles but the engine has {engine.num_optimization_profiles}"
            )
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        self.input_names = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.output_names = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        self.dtypes = {n: np.dtype(trt.nptype(engine.get_tensor_dtype(n))) for n in names}
        self.context = engine.create_execution_context()
        self.stream = self.torch.cuda.Stream(device=device_id)
        self.device = f"cuda:{device_id}"
        self.profile = -1
        self.warnings = self.loaded.warnings

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from edgepack.export.trt_profiles import select_profile

        torch, ctx = self.torch, self.context
        first = feeds[self.input_names[0]]
        batch, seq = int(first.shape[0]), int(first.shape[1]) if first.ndim > 1 else 1
        profile = select_profile(self.ranges, batch, seq)
        handle = self.stream.cuda_stream
        if profile != self.profile:
            ctx.set_optimization_profile_async(profile, handle)
            self.profile = profile
        keep = []  # device tensors must live until the stream is done
        with torch.cuda.stream(self.stream):
            for name in self.input_names:
                host = np.ascontiguousarray(feeds[name], dtype=self.dtypes[name])  # e.g. int64 -> int32
                dev = torch.from_numpy(host).to(self.device, non_blocking=False)
                ctx.set_input_shape(name, tuple(host.shape))
                ctx.set_tensor_address(name, int(dev.data_ptr()))
                keep.append(dev)
            outs = {}
            for name in self.output_names:
                shape = tuple(ctx.get_tensor_shape(name))
                dev = torch.empty(shape, dtype=_torch_dtype(torch, self.dtypes[name]), device=self.device)
                ctx.set_tensor_address(name, int(dev.data_ptr()))
                outs[name] = dev
            if not ctx.execute_async_v3(handle):
                raise EdgepackError("TensorRT execution failed (see its log above)")
        self.stream.synchronize()
        return {n: t.cpu().numpy() for n, t in outs.items()}

    def synchronize(self) -> None:
        self.stream.synchronize()


class TorchCudaRunner:
    """The torch model (``hf`` artifact or folder) on a device: fp32/fp16/bf16, or int8/nf4 (bitsandbytes)."""

    DTYPES = ("fp32", "fp16", "bf16", "int8", "nf4")

    def __init__(self, source: str | Path | Artifact, dtype: str = "fp16", device: str = "cuda"):
        if dtype not in self.DTYPES:
            raise EdgepackError(f"dtype must be one of {self.DTYPES}, got {dtype!r}")
        torch = (
            _import_torch_cuda("the torch CUDA runner") if device.startswith("cuda") else __import__("torch")
        )
        from edgepack.hf import load_model

        path = source.path if isinstance(source, Artifact) else source
        lm = load_model(path)
        self.task, self.torch, self.device = lm.task, torch, device
        if dtype in ("int8", "nf4"):
            self.model = _load_bnb(lm, dtype)
        else:
            tdtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[dtype]
            self.model = lm.model.to(device=device, dtype=tdtype).eval()
        self.input_names = list(lm.tokenizer.model_input_names)
        self.output_names = ["logits" if lm.task == "text-classification" else "last_hidden_state"]

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        torch = self.torch
        args = {n: torch.from_numpy(np.ascontiguousarray(feeds[n])).to(self.device) for n in self.input_names}
        with torch.inference_mode():
            out = self.model(**args)
        key = self.output_names[0]
        return {key: getattr(out, key).float().cpu().numpy()}

    def synchronize(self) -> None:
        if self.device.startswith("cuda"):
            self.torch.cuda.synchronize()


def _load_bnb(lm: Any, dtype: str):
    """Reload the model's weights through bitsandbytes (8-bit LLM.int8 or 4-bit NF4) on GPU 0."""
    if importlib.util.find_spec("bitsandbytes") is None:
        raise MissingDependencyError("bitsandbytes", "gpu-tools", f"{dtype} torch inference")
    import torch
    from transformers import BitsAndBytesConfig

    q = (
        BitsAndBytesConfig(load_in_8bit=True)
        if dtype == "int8"
        else BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.float16
        )
    )
    cls = type(lm.model)
    return cls.from_pretrained(lm.source, quantization_config=q, device_map={"": 0}).eval()


def _import_torch_cuda(purpose: str):
    try:
        import torch
    except ImportError:
        raise MissingDependencyError("torch", "tools", purpose) from None
    if not torch.cuda.is_available():
        raise EdgepackError(f"{purpose} needs a CUDA GPU, and torch sees none here")
    return torch


def _torch_dtype(torch: Any, dtype: np.dtype):
    return {
        np.dtype("float32"): torch.float32,
        np.dtype("float16"): torch.float16,
        np.dtype("int32"): torch.int32,
        np.dtype("int64"): torch.int64,
        np.dtype("int8"): torch.int8,
        np.dtype("bool"): torch.bool,
    }[np.dtype(dtype)]


# --- backend registry entries ---------------------------------------------------------------------------
def _ort_has(provider: str) -> bool:
    if importlib.util.find_spec("onnxruntime") is None:
        return False
    try:
        from edgepack.runtime.ort import import_onnxruntime

        return provider in import_onnxruntime().get_available_providers()
    except EdgepackError:
        return False


def _torch_cuda_ok() -> bool:
    if importlib.util.find_spec("torch") is None:
        return False
    import torch

    return bool(torch.cuda.is_available())


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
        from edgepack.export.trt_profiles import (
            ShapeRange,
            input_profiles,
            ort_trt_profile_options,
            parse_range,
        )

        profile_opts = None
        if provider == "tensorrt":
            limit = int(artifact.extra.get("max_length", 128))
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
    return TensorRTRunner(artifact, device_id)


def _make_torch_cuda(artifact: Artifact, intra_op_threads: int | None = None, dtype: str = "fp16", **_: Any):
    return TorchCudaRunner(artifact, dtype=dtype)


def register_gpu_backends() -> None:
    """Add ``tensorrt``, ``ort-tensorrt``, ``ort-cuda`` and ``torch-cuda`` to the backend registry.

    Auto order on a GPU host: native TensorRT for ``tensorrt`` artifacts; ORT CUDA for ``onnx``
    artifacts (before ORT CPU). ORT's TensorRT EP is explicit only: it builds engines while the session
    opens (minutes on first use), which "auto" should not spring on anyone.
    """
    from edgepack.runtime.backends import Backend, register_backend

    register_backend(
        Backend(
            "tensorrt",
            ("tensorrt",),
            lambda: importlib.util.find_spec("tensorrt") is not None and _torch_cuda_ok(),
            _make_tensorrt,
            "TensorRT runtime (tensorrt + torch CUDA)",
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
    register_backend(
        Backend(
            "torch-cuda",
            ("hf",),
            _torch_cuda_ok,
            _make_torch_cuda,
            "torch on CUDA (fp16/bf16, bitsandbytes int8/nf4)",
        )
    )
