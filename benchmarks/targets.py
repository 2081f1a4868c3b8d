"""Models under test: one uniform ``texts -> outputs`` callable per backend, for fair latency comparisons.

A :class:`Target` names a model and how to run it; ``target.open(threads)`` loads it and returns an
:class:`OpenTarget` whose ``run(texts)`` tokenizes, runs and post-processes one batch end to end and returns
probabilities ``(B, C)`` (classification) or pooled embeddings ``(B, D)`` (feature extraction), so every
backend is timed on the same texts doing the same work:

* ``Target.torch``: torch eager fp32 from an ``hf`` artifact, HF folder or LoRA adapter
  (``edgepack.hf.load_model``), HF tokenizer padded to the batch's longest text.
* ``Target.onnx``: any ``onnx`` (fp32 / int8 / fused) or ``tensorrt`` artifact through the lean runtime
  ``edgepack.runtime.Predictor`` on a registered backend (``ort-cpu``; ``ort-cuda``, ``tensorrt`` ... where
  the GPU backends are present).
* ``Target.peer_optimum``: the path a user would otherwise take with optimum-onnx (:mod:`edgepack.benchmarks.peer`):
  ``ORTModelForSequenceClassification.from_pretrained(dir, export=True)`` (or ``...ForFeatureExtraction``),
  optionally ``ORTQuantizer`` dynamic int8 with ``AutoQuantizationConfig.avx512_vnni`` (per-tensor or
  per-channel), run with the HF tokenizer at ``padding=True``.

Threads are fixed per target: ``torch.set_num_threads`` and ONNX Runtime ``intra_op_num_threads``
(inter-op 1, as in ``edgepack.runtime.ort.OrtRunner``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgepack.artifact import Artifact, is_artifact
from edgepack.contract import RuntimeContract
from edgepack.errors import EdgepackError

KINDS = ("torch", "onnx", "peer-optimum")
PEER_QUANTIZE = ("fp32", "dynamic", "dynamic-per-channel")


@dataclass
class OpenTarget:
    """A loaded target. ``run(texts)`` -> probabilities (B, C) or embeddings (B, D), in input order."""

    name: str
    run: Callable[[Sequence[str]], np.ndarray]
    task: str
    labels: list[str]
    size_bytes: int
    info: dict  # kind, backend, precision, path, threads: written into every result row
    sync: Callable[[], None] | None = None  # device sync after each call (GPU runners)
    cleanup: Callable[[], None] | None = None

    def close(self) -> None:
        if self.cleanup is not None:
            self.cleanup()
            self.cleanup = None


@dataclass(frozen=True)
class Target:
    """A model to benchmark: ``name`` (unique in a comparison), ``kind`` (see KINDS) and its ``path``."""

    name: str
    kind: str
    path: str
    backend: str = "auto"  # onnx targets: a runtime backend name (edgepack/runtime/backends.py)
    quantize: str = "fp32"  # peer targets: one of PEER_QUANTIZE
    work_dir: str | None = None  # peer targets: where the optimum export goes (reused when up to date)
    max_length: int | None = None  # truncation; None: the model's limit
    options: dict = field(default_factory=dict, compare=False, hash=False)  # extra Predictor.open options

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise EdgepackError(f"unknown target kind {self.kind!r}; use one of {', '.join(KINDS)}")
        if self.quantize not in PEER_QUANTIZE:
            raise EdgepackError(
                f"unknown peer quantization {self.quantize!r}; use one of {', '.join(PEER_QUANTIZE)}"
            )
        if not Path(self.path).expanduser().exists():
            raise EdgepackError(f"target '{self.name}': model path not found: {self.path}")

    # --- constructors ---------------------------------------------------------------------
    @classmethod
    def torch(cls, name: str, path: str | os.PathLike, max_length: int | None = None) -> Target:
        """Torch eager fp32 (CPU) from an ``hf`` artifact, a Hugging Face folder or a LoRA adapter."""
        return cls(name, "torch", str(path), max_length=max_length)

    @classmethod
    def onnx(
        cls,
        name: str,
        path: str | os.PathLike,
        backend: str = "auto",
        max_length: int | None = None,
        **predictor_options: Any,
    ) -> Target:
        """An ``onnx`` or ``tensorrt`` artifact through ``edgepack.runtime.Predictor`` on ``backend``."""
        return cls(name, "onnx", str(path), backend=backend, max_length=max_length, options=predictor_options)

    @classmethod
    def peer_optimum(
        cls,
        name: str,
        path: str | os.PathLike,
        quantize: str = "fp32",
        work_dir: str | os.PathLike | None = None,
        max_length: int | None = None,
    ) -> Target:
        """optimum-onnx export (+ ``ORTQuantizer`` dynamic int8 if ``quantize`` says so) of a torch model."""
        return cls(
            name,
            "peer-optimum",
            str(path),
            quantize=quantize,
            work_dir=None if work_dir is None else str(work_dir),
            max_length=max_length,
        )

    @classmethod
    def auto(cls, name: str, path: str | os.PathLike, backend: str = "auto") -> Target:
        """``torch`` for an ``hf`` artifact / HF folder / adapter, ``onnx`` for an onnx/tensorrt artifact."""
        p = Path(path).expanduser()
        if not p.exists():
            raise EdgepackError(f"artifact or model folder not found: {p}")
        if is_artifact(p):
            fmt = Artifact.open(p, verify=False).format
            if fmt == "hf":
                return cls.torch(name, p)
            if fmt in ("onnx", "tensorrt"):
                return cls.onnx(name, p, backend=backend)
            raise EdgepackError(
                f"{p} is a '{fmt}' artifact; bench runs 'hf', 'onnx' and 'tensorrt' artifacts"
            )
        if p.is_dir() and ((p / "config.json").is_file() or (p / "adapter_config.json").is_file()):
            return cls.torch(name, p)
        raise EdgepackError(f"{p} is neither an edgepack artifact nor a Hugging Face model folder")

    def prepare(self) -> None:
        """Do the one-off work before loading (the peer path's export and quantization into ``work_dir``)."""
        if self.kind == "peer-optimum" and self.work_dir is not None:
            from edgepack.benchmarks.peer import peer_export

            peer_export(self.path, self.work_dir, self.quantize)

    def open(self, threads: int | None = None, batch_size: int = 32) -> OpenTarget:
        """Load the model with ``threads`` intra-op threads; ``batch_size`` is the runtime's largest batch."""
        if self.kind == "peer-optimum":
            from edgepack.benchmarks.peer import open_peer

            return open_peer(self, threads, batch_size)
        opener = {"torch": _open_torch, "onnx": _open_onnx}[self.kind]
        return opener(self, threads, batch_size)


# --- shared post-processing ---------------------------------------------------------------
def postprocess(task: str, runtime: RuntimeContract, logits_or_hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Logits (B, C) -> softmax probabilities; last_hidden_state (B, T, H) -> pooled (B, H), like the runtime."""
    from edgepack.runtime.text import cls_pool, mean_pool, softmax

    x = np.asarray(logits_or_hidden, dtype=np.float32)
    if task == "text-classification":
        return softmax(x)
    if x.ndim == 2:  # already pooled
        return x
    pooling, normalize = runtime.embedding_pooling()
    if pooling == "cls":
        return cls_pool(x, normalize)
    return mean_pool(x, np.asarray(mask), normalize)


def weights_size(folder: Path) -> int:
    """Bytes of the weight files in a model folder (safetensors / bin / onnx, with external data)."""
    exts = (".safetensors", ".bin", ".onnx", ".data", ".onnx_data")
    return int(sum(p.stat().st_size for p in Path(folder).iterdir() if p.is_file() and p.suffix in exts))


def _set_torch_threads(threads: int | None) -> None:
    import torch

    if threads:
        torch.set_num_threads(int(threads))


# --- torch eager --------------------------------------------------------------------------
def _open_torch(t: Target, threads: int | None, batch_size: int) -> OpenTarget:
    import torch

    from edgepack.hf import load_model

    _set_torch_threads(threads)
    lm = load_model(t.path)
    max_len = t.max_length or lm.max_length
    tok, model = lm.tokenizer, lm.model

    def run(texts: Sequence[str]) -> np.ndarray:
        enc = tok(list(texts), padding=True, truncation=True, max_length=max_len, return_tensors="pt")
        with torch.inference_mode():
            out = model(**enc)
        x = out.logits if lm.task == "text-classification" else out.last_hidden_state
        return postprocess(lm.task, lm.runtime, x.numpy(), enc["attention_mask"].numpy())

    src = Path(lm.source)
    size = (
        int(lm.artifact.manifest["files"]["weights"]["bytes"])
        if lm.artifact and lm.artifact.has("weights")
        else weights_size(src)
    )
    info = {
        "kind": "torch",
        "backend": "torch-cpu",
        "precision": "fp32",
        "path": str(src),
        "threads": threads,
    }
    return OpenTarget(t.name, run, lm.task, lm.labels, size, info)


# --- edgepack runtime ---------------------------------------------------------------------
def _open_onnx(t: Target, threads: int | None, batch_size: int) -> OpenTarget:
    from edgepack.runtime.predictor import Predictor

    pred = Predictor.open(
        t.path,
        backend=t.backend,
        intra_op_threads=threads,
        max_length=t.max_length,
        batch_size=max(batch_size, 1),
        **t.options,
    )
    art = pred.artifact
    model = art.file("model" if art.has("model") else "engine")  # onnx graph, or TensorRT plan
    size = model.stat().st_size + sum(p.stat().st_size for p in model.parent.glob(model.name + ".data"))
    rt = art.runtime
    info = {
        "kind": "onnx" if art.format == "onnx" else art.format,
        "backend": _resolved_backend(t.backend, art.format),
        "precision": rt.precision + ("-fused" if rt.fused else ""),
        "path": str(art.path),
        "threads": threads,
    }
    if getattr(pred.runner, "providers", None):
        info["providers"] = list(pred.runner.providers)
    sync = getattr(pred.runner, "synchronize", None)
    return OpenTarget(t.name, pred.infer, pred.task, pred.labels, int(size), info, sync=sync)


def _resolved_backend(backend: str, fmt: str) -> str:
    """The backend name "auto" picks for this format, as ``edgepack.runtime.backends.open_runner`` does."""
    from edgepack.runtime.backends import AUTO_ORDER, BACKENDS

    if backend != "auto":
        return backend
    names = (n for n in AUTO_ORDER if fmt in BACKENDS[n].formats and BACKENDS[n].available())
    return next(names, "auto")
