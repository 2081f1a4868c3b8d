"""ONNX Runtime: guarded import (one build per environment) and a runner over dicts of numpy arrays."""

from __future__ import annotations

import importlib.metadata as md
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edgepack.errors import EdgepackError, MissingDependencyError

ORT_DISTRIBUTIONS = ("onnxruntime", "onnxruntime-gpu", "onnxruntime-directml", "onnxruntime-openvino")


def installed_ort_builds() -> list[str]:
    """Names of the ONNX Runtime distributions installed in this environment."""
    found = []
    for name in ORT_DISTRIBUTIONS:
        try:
            md.version(name)
            found.append(name)
        except md.PackageNotFoundError:
            pass
    return found


def check_single_ort_build(builds: list[str] | None = None) -> None:
    """Fail clearly when several ONNX Runtime builds share the environment (they overwrite each other)."""
    builds = installed_ort_builds() if builds is None else builds
    if len(builds) > 1:
        raise EdgepackError(
            f"several ONNX Runtime builds are installed together ({', '.join(builds)}); they share the "
            "'onnxruntime' package folder and break each other. Keep exactly one: "
            f"pip uninstall -y {' '.join(builds)} && pip install \"edgepack[cpu]\" (or \"edgepack[gpu]\")"
        )


def import_onnxruntime():
    """Import onnxruntime after checking that exactly one build is installed."""
    check_single_ort_build()
    try:
        import onnxruntime
    except ImportError:
        raise MissingDependencyError("onnxruntime", "cpu", "running an ONNX model") from None
    return onnxruntime


# ONNX Runtime's own online fusions that edgepack turns off on the CPU provider. SkipLayerNormFusion folds
# Add (+ bias Add) + LayerNormalization into com.microsoft.SkipLayerNormalization, whose CPU kernel (ORT 1.32)
# is slower than the three ops it replaces after dynamically quantized MatMuls: measured on the 3-layer INT8
# student, session.run at batch 1 0.67 -> 0.55 ms and batch 8 8.0 -> 5.5 ms; fp32 graphs unchanged (+-2%).
CPU_DISABLED_OPTIMIZERS = ("SkipLayerNormFusion",)


class OrtRunner:
    """An ONNX Runtime session: ``infer(feeds) -> {output name: array}``.

    ``disabled_optimizers``: names of ORT graph transformers to skip when the session loads; ``None`` means
    ``CPU_DISABLED_OPTIMIZERS`` on the CPU provider and none on others; ``()`` keeps all of ORT's defaults.
    ``optimized_model_path``: also write the graph as ORT optimized it there (to inspect what runs).
    ``model_bytes``: the verified bytes of ``model_path`` to load from memory (``model_path`` names it).
    ``intra_op_threads`` / ``inter_op_threads``: ORT's thread pools (None: ORT's default, all cores, for
    intra; 1 for inter, since these graphs run sequentially). ``memory_arena``: ORT's CPU memory arena
    (on by default; off returns memory to the system after each run, at some cost per call, which helps
    servers whose batch shapes vary widely and whose RSS must stay low).
    """

    def __init__(
        self,
        model_path: str | Path,
        providers: list | None = None,
        intra_op_threads: int | None = None,
        inter_op_threads: int | None = 1,
        provider_options: list[dict] | None = None,
        disabled_optimizers: Sequence[str] | None = None,
        optimized_model_path: str | Path | None = None,
        model_bytes: bytes | None = None,
        memory_arena: bool = True,
    ):
        ort = import_onnxruntime()
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if intra_op_threads:
            opts.intra_op_num_threads = int(intra_op_threads)
        if inter_op_threads:
            opts.inter_op_num_threads = int(inter_op_threads)
        opts.enable_cpu_mem_arena = bool(memory_arena)
        self.memory_arena = bool(memory_arena)
        if optimized_model_path:
            opts.optimized_model_filepath = str(optimized_model_path)
        providers = providers or ["CPUExecutionProvider"]
        missing = [p for p in providers if (p if isinstance(p, str) else p[0]) not in ort.get_available_providers()]
        if missing:
            raise EdgepackError(
                f"ONNX Runtime provider(s) {missing} are not available in this build "
                f"(available: {ort.get_available_providers()})"
            )
        if disabled_optimizers is None:
            first = providers[0] if isinstance(providers[0], str) else providers[0][0]
            disabled_optimizers = CPU_DISABLED_OPTIMIZERS if first == "CPUExecutionProvider" else ()
        self.disabled_optimizers = tuple(disabled_optimizers)
        try:
            self.session = ort.InferenceSession(
                model_bytes if model_bytes is not None else str(model_path), sess_options=opts, providers=providers, provider_options=provider_options,
                disabled_optimizers=list(self.disabled_optimizers) or None,
            )
        except Exception as e:  # onnxruntime raises its own exception types
            raise EdgepackError(f"ONNX Runtime could not load {model_path}: {e}") from None
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.providers = self.session.get_providers()
        self._inputs = frozenset(self.input_names)
        self._run = self.session.run

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if feeds.keys() - self._inputs:  # feeds the graph does not take (e.g. token_type_ids)
            feeds = {k: v for k, v in feeds.items() if k in self._inputs}
        return dict(zip(self.output_names, self._run(self.output_names, feeds)))
