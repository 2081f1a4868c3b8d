"""ONNX Runtime: guarded import (one build per environment) and a runner over dicts of numpy arrays."""

from __future__ import annotations

import functools
import importlib.metadata as md
import threading
from collections.abc import Callable, Sequence
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
        self._shapes = bindable_shapes(self.session)  # None: no bound calls for this graph
        if self._shapes is not None:  # an upper bound on a bound call's bytes per (row, token) cell
            names, outputs = self._shapes
            self._cell_bytes = 8 * len(names) + sum(
                int(np.prod([d for d in dims if d > 0])) * np.dtype(dt).itemsize for dims, dt in outputs.values())
        self._local = threading.local()  # each thread its own bound buffers: a session runs calls concurrently

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if feeds.keys() - self._inputs:  # feeds the graph does not take (e.g. token_type_ids)
            feeds = {k: v for k, v in feeds.items() if k in self._inputs}
        return dict(zip(self.output_names, self._run(self.output_names, feeds)))

    def bound(self, batch: int, length: int, make_inputs: Callable[[int, int], dict] | None = None
              ) -> BoundCall | None:
        """This thread's reusable call for (batch, length) int64 inputs, or None: the graph's inputs are not all
        (batch, length) int64 tensors or its output shapes do not follow from those two, or the call's buffers
        would pass ``BOUND_CALL_MAX_BYTES`` (there the run dwarfs what binding saves).

        ``make_inputs(batch, length)`` builds the input arrays when the call is first made (default: zeros of
        every graph input); the caller writes them before each ``call.run()``. The arrays ``run`` returns are
        the call's own and are overwritten by its next run on this thread (copy what must outlive it)."""
        if self._shapes is None or batch * length * self._cell_bytes > BOUND_CALL_MAX_BYTES:
            return None
        try:
            return self._local.calls[batch, length]
        except (AttributeError, KeyError):
            pass
        local = self._local
        if not hasattr(local, "calls") or local.nbytes > BOUND_CACHE_BYTES:  # past the budget: start over
            local.calls, local.nbytes = {}, 0
        call = self._make_call(batch, length, (make_inputs or _zeros_inputs(self._shapes[0]))(batch, length))
        local.calls[batch, length] = call
        local.nbytes += call.nbytes
        return call

    def bind(self, feeds: dict[str, np.ndarray]) -> BoundCall | None:
        """A call bound to copies of ``feeds`` (the graph's inputs, int64 (B, T)), kept by no cache: what a
        bare ONNX Runtime call costs at its cheapest (``benchmarks/overhead.py`` times it). None where
        ``bound`` would be (for any size)."""
        if self._shapes is None:
            return None
        batch, length = next(iter(feeds.values())).shape
        return self._make_call(batch, length, {k: np.array(v, dtype=np.int64) for k, v in feeds.items()})

    def _make_call(self, batch: int, length: int, inputs: dict[str, np.ndarray]) -> BoundCall:
        names, outputs = self._shapes
        if set(inputs) != set(names) or any(a.shape != (batch, length) or a.dtype != np.int64
                                            for a in inputs.values()):
            raise EdgepackError(f"bound call inputs must be {list(names)}, int64 of shape ({batch}, {length})")
        shapes = {k: tuple(batch if d == _BATCH else length if d == _LENGTH else d for d in dims)
                  for k, (dims, _) in outputs.items()}
        return BoundCall(self.session, inputs, {k: np.zeros(shapes[k], dt) for k, (_, dt) in outputs.items()})


# A bound call's buffers (inputs + outputs) at most this large; larger calls run through session.run, whose
# per-call cost is then a negligible share of the model's work (512 KiB: ~330 tokens of a 384-wide encoder,
# a run of several ms, where binding saves ~30 us).
BOUND_CALL_MAX_BYTES = 1 << 19
# Bound buffers each thread keeps per runner; past it the thread's calls are dropped and made anew.
BOUND_CACHE_BYTES = 8 << 20
_BATCH, _LENGTH = -1, -2  # placeholders for the two input dims in an output's dims
_OUTPUT_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16}


def _zeros_inputs(names: Sequence[str]) -> Callable[[int, int], dict]:
    return lambda batch, length: {k: np.zeros((batch, length), np.int64) for k in names}


def bindable_shapes(session) -> tuple[tuple[str, ...], dict[str, tuple[tuple[int, ...], type]]] | None:
    """(input names, {output: (dims, dtype)}) when every input is an int64 tensor of the same two named dims
    (batch, length) and every output is a float tensor whose dims are numbers or those names (given as
    ``_BATCH`` / ``_LENGTH``); None otherwise, or off the CPU provider (bound CPU buffers would add copies)."""
    if session.get_providers()[0] != "CPUExecutionProvider":
        return None
    ins = session.get_inputs()
    dims = list(ins[0].shape) if ins else []
    if len(dims) != 2 or not all(isinstance(d, str) for d in dims) or dims[0] == dims[1]:
        return None
    if any(i.type != "tensor(int64)" or list(i.shape) != dims for i in ins):
        return None
    named = {dims[0]: _BATCH, dims[1]: _LENGTH}
    outputs = {}
    for o in session.get_outputs():
        dt = _OUTPUT_DTYPES.get(o.type)
        shape = [named.get(d) if isinstance(d, str) else d for d in o.shape]
        if dt is None or not shape or not all(isinstance(d, int) and (d > 0 or d in (_BATCH, _LENGTH))
                                              for d in shape):
            return None
        outputs[o.name] = (tuple(shape), dt)
    return tuple(i.name for i in ins), outputs


class BoundCall:
    """One model call bound once (ONNX Runtime IOBinding) to numpy buffers of fixed shapes: ``run()`` runs the
    session on whatever ``inputs`` hold and returns ``outputs``, written in place, so a call neither wraps
    arrays nor allocates. At batch 1 on the 3-layer INT8 student (AVX2, one thread, interleaved): 26-40 us
    less per call than ``session.run`` on the same arrays (~0.4 ms)."""

    def __init__(self, session, inputs: dict[str, np.ndarray], outputs: dict[str, np.ndarray]):
        ort = import_onnxruntime()
        self.inputs, self.outputs = inputs, outputs
        self.nbytes = sum(a.nbytes for a in (*inputs.values(), *outputs.values()))
        self._session = session
        io = session.io_binding()
        for name, a in inputs.items():  # an OrtValue over a CPU numpy array shares its memory
            io.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(a))
        for name, a in outputs.items():
            io.bind_ortvalue_output(name, ort.OrtValue.ortvalue_from_numpy(a))
        self._io = io  # keeps the OrtValues (and through them the arrays) alive
        self._checked: bool | None = None  # None: not run yet; False: outputs differ from the declared shapes
        try:  # the binding's own entry point: the public wrapper re-checks WebGPU graph capture per call
            self._call = functools.partial(session._sess.run_with_iobinding, io._iobinding, None)
        except AttributeError:
            self._call = functools.partial(session.run_with_iobinding, io)

    def run(self) -> dict[str, np.ndarray]:
        if self._checked:
            self._call()
            return self.outputs
        # The first run goes through session.run: the bound outputs are used from then on only if ORT's
        # real output shapes are the declared ones (else a bound run would fail), and this run's arrays are
        # fresh ones.
        outputs = dict(zip(self.outputs, self._session.run(list(self.outputs), self.inputs)))
        if self._checked is None:
            self._checked = all(outputs[k].shape == a.shape and outputs[k].dtype == a.dtype
                                for k, a in self.outputs.items())
        return outputs
