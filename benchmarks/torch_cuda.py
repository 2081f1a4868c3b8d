"""The torch model on a GPU as a benchmark baseline: fp32/fp16/bf16, or 8-/4-bit with bitsandbytes.

Not a runtime backend (the lean runtime never imports torch): benchmarks time it next to the runtime's
ONNX Runtime and TensorRT runners. Importing this module registers it as the ``torch-cuda`` backend for
``hf`` artifacts/folders (``open_runner(art, "torch-cuda")``, ``python -m edgepack.benchmarks.gpu_latency``).
The runner has the runtime's runner interface: ``input_names``, ``output_names``,
``infer(feeds) -> {name: np.ndarray}`` and ``synchronize()``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
from edgepack.runtime.backends import Backend, register_backend

from edgepack.artifact import Artifact
from edgepack.errors import EdgepackError, MissingDependencyError


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

        if device.startswith("cuda"):
            torch.cuda.set_device(torch.device(device))  # "cuda:1": streams, graphs and bnb follow it
            if dtype == "fp32":
                exact_fp32(torch)
        path = source.path if isinstance(source, Artifact) else source
        lm = load_model(path)
        self.task, self.torch, self.device = lm.task, torch, device
        if dtype in ("int8", "nf4"):
            self.model = _load_bnb(lm, dtype, torch.device(device).index or 0)
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


def exact_fp32(torch: Any) -> None:
    """Turn TF32 off for matmuls and convolutions: fp32 on Ampere+ GPUs then matches the CPU to ~1e-5."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False


def use_eager_attention(model: Any) -> str:
    """Switch a Hugging Face model to eager attention; returns the implementation now in use.

    CUDA-graph capture needs it: the SDPA path checks on the host whether the mask is all ones (a
    device-to-host sync, illegal during capture, and a captured all-ones mask would be dropped for good).
    Eager attention always adds the 4-D mask built from ``attention_mask``.
    """
    setter = getattr(model, "set_attn_implementation", None)  # transformers >= 4.56 (5.x included)
    if callable(setter):
        try:
            setter("eager")
        except (ValueError, TypeError, AttributeError):
            pass
    config = getattr(model, "config", None)
    if config is not None and getattr(config, "_attn_implementation", "eager") != "eager":
        config._attn_implementation = "eager"
    return getattr(config, "_attn_implementation", "eager") if config is not None else "unknown"


def _load_bnb(lm: Any, dtype: str, device: int = 0):
    """Reload the model's weights through bitsandbytes (8-bit LLM.int8 or 4-bit NF4) on GPU ``device``."""
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
    return cls.from_pretrained(lm.source, quantization_config=q, device_map={"": device}).eval()


def _import_torch_cuda(purpose: str):
    try:
        import torch
    except ImportError:
        raise MissingDependencyError("torch", "tools", purpose) from None
    if not torch.cuda.is_available():
        raise EdgepackError(f"{purpose} needs a CUDA GPU, and torch sees none here")
    return torch


def _torch_cuda_ok() -> bool:
    if importlib.util.find_spec("torch") is None:
        return False
    import torch

    return bool(torch.cuda.is_available())


def _make_torch_cuda(
    artifact: Artifact, intra_op_threads: int | None = None, dtype: str = "fp16", device_id: int = 0, **_: Any
):
    return TorchCudaRunner(artifact, dtype=dtype, device=f"cuda:{device_id}")


register_backend(
    Backend("torch-cuda", ("hf",), _torch_cuda_ok, _make_torch_cuda, "torch on CUDA (fp16/bf16, bitsandbytes int8/nf4)")
)
