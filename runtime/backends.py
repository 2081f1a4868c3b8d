"""Backend registry: each backend is a name, an availability check and a runner factory.

A runner has ``input_names`` and ``infer(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]``.
``backend="auto"`` picks the first available backend in ``AUTO_ORDER`` that can run the artifact.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from edgepack.artifact import Artifact
from edgepack.errors import EdgepackError


@dataclass(frozen=True)
class Backend:
    name: str
    formats: tuple[str, ...]  # artifact formats it can run
    available: Callable[[], bool]
    make: Callable[..., Any]  # make(artifact, intra_op_threads=None, inter_op_threads=None, memory_arena=True,
    # **opts) -> runner (GPU backends ignore the CPU session options)
    description: str = ""


BACKENDS: dict[str, Backend] = {}
AUTO_ORDER: list[str] = []


def register_backend(backend: Backend, auto_priority: int | None = None) -> None:
    """Add a backend; ``auto_priority`` places it in the auto order (0 = tried first)."""
    BACKENDS[backend.name] = backend
    if auto_priority is not None and backend.name not in AUTO_ORDER:
        AUTO_ORDER.insert(min(auto_priority, len(AUTO_ORDER)), backend.name)


def _ort_cpu_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("onnxruntime") is not None


def _make_ort_cpu(artifact: Artifact, intra_op_threads: int | None = None, inter_op_threads: int | None = None,
                  memory_arena: bool = True, **_: Any):
    from edgepack.runtime.ort import OrtRunner

    return OrtRunner(artifact.file("model"), ["CPUExecutionProvider"], intra_op_threads=intra_op_threads,
                     inter_op_threads=inter_op_threads or 1, memory_arena=memory_arena,
                     model_bytes=verified_model_bytes(artifact))


def verified_model_bytes(artifact: Artifact) -> bytes | None:
    """The model file's bytes, checked against the manifest, for ONNX Runtime to load from memory (so the
    bytes checked are the bytes run); None when the graph keeps weights in (listed, verified) external files,
    which ONNX Runtime only resolves from the path."""
    if not any(e["path"] != artifact.manifest["files"]["model"]["path"] and not e["path"].endswith(".json")
               for e in artifact.manifest["files"].values()):
        return artifact.read_verified("model")
    return None


register_backend(
    Backend("ort-cpu", ("onnx",), _ort_cpu_available, _make_ort_cpu, "ONNX Runtime, CPU execution provider"),
    auto_priority=0,
)


def open_runner(artifact: Artifact, backend: str = "auto", **opts: Any):
    """Open a runner for ``artifact`` on ``backend`` (a registered name or "auto")."""
    if backend != "auto":
        if backend not in BACKENDS:
            raise EdgepackError(f"unknown backend '{backend}'; known: {', '.join(BACKENDS)}")
        b = BACKENDS[backend]
        if artifact.format not in b.formats:
            raise EdgepackError(f"backend '{backend}' cannot run a '{artifact.format}' artifact")
        if not b.available():
            raise EdgepackError(f"backend '{backend}' is not available here ({b.description}): its library is missing")
        return b.make(artifact, **opts)
    for name in AUTO_ORDER:
        b = BACKENDS[name]
        if artifact.format in b.formats and b.available():
            return b.make(artifact, **opts)
    raise EdgepackError(
        f"no available backend can run a '{artifact.format}' artifact; install \"edgepack[cpu]\" or \"edgepack[gpu]\""
    )


# GPU backends (tensorrt, ort-cuda, ort-tensorrt): registered here, libraries loaded when used.
from edgepack.runtime.gpu_runners import register_gpu_backends  # noqa: E402

register_gpu_backends()
