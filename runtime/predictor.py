"""Predictor: texts in, labels/scores or embeddings out, on the lean runtime (no torch, no transformers)."""

from __future__ import annotations

import functools
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from edgepack.runtime.backends import open_runner
from edgepack.runtime.text import FEED_NAMES, Text, TextEncoder, cls_pool, mean_pool, softmax

from edgepack.artifact import Artifact, ArtifactError
from edgepack.cpu import int8_mismatch
from edgepack.errors import EdgepackError

RUNNABLE_FORMATS = ("onnx", "tensorrt")


@dataclass
class Predictor:
    """A loaded model ready to predict. Open with ``Predictor.open(artifact_dir)``."""

    artifact: Artifact
    runner: Any
    encoder: TextEncoder
    # texts per model call: a larger call is sorted by length and cut, so each piece pads only to its own
    # longest text. 16: MiniLM INT8 embeddings in calls of 32 real snippets on a 2-core AVX2 CPU ran 170
    # texts/s at 32, 223 at 16, 248 at 8; the server's demo classifier was best at 16 (its model_batch).
    batch_size: int = 16

    def __post_init__(self) -> None:
        # Facts the hot path reads on every call, looked up once.
        self._classify = self.artifact.task == "text-classification"
        self._pooling = None if self._classify else self.artifact.runtime.embedding_pooling()
        names = getattr(self.runner, "input_names", None)
        self._feed_names = tuple(names) if names else FEED_NAMES
        # Reusable bound calls (ort-cpu) where the graph takes only the encoder's feeds, mask included.
        bindable = {"input_ids", "attention_mask"} <= set(self._feed_names) <= set(FEED_NAMES)
        self._bound = getattr(self.runner, "bound", None) if bindable else None
        self._buffers = functools.partial(self.encoder.buffers, names=self._feed_names)

    @classmethod
    def open(
        cls,
        path: str | os.PathLike,
        backend: str = "auto",
        intra_op_threads: int | None = None,
        max_length: int | None = None,
        batch_size: int = 16,
        inter_op_threads: int | None = None,
        memory_arena: bool = True,
        **backend_opts: Any,
    ) -> Predictor:
        """Open an ``onnx`` (or ``tensorrt``) artifact: verify checksums, load tokenizer and session.

        ONNX Runtime session options (CPU backend): ``intra_op_threads`` (threads per model call; None:
        all cores), ``inter_op_threads`` (None: 1), ``memory_arena`` (ORT's CPU arena; False returns
        memory after each run: lower RSS, slower calls)."""
        art = Artifact.open(path)
        if art.format not in RUNNABLE_FORMATS:
            raise ArtifactError(
                f"{art.path} is a '{art.format}' artifact; the runtime runs exported models "
                f"({', '.join(RUNNABLE_FORMATS)}): run `edgepack export onnx {art.path} OUT` first"
            )
        if art.task not in ("text-classification", "feature-extraction"):
            raise ArtifactError(f"unsupported task '{art.task}' in {art.path}")
        if batch_size < 1:
            raise EdgepackError("batch_size must be >= 1")
        limit = art.runtime.max_length or 512
        if max_length is not None and not 1 <= max_length <= limit:
            raise EdgepackError(f"max_length must be between 1 and the model's limit {limit}")
        try:  # the bytes that were verified are the bytes used
            tok = art.read_verified("tokenizer")
            tok.decode("utf-8")
        except UnicodeDecodeError:
            raise ArtifactError(f"{art.path}: tokenizer.json is not UTF-8 text") from None
        encoder = TextEncoder(tok, max_length or limit, art.runtime.pad_token_id)
        if any(n is not None and n < 1 for n in (intra_op_threads, inter_op_threads)):
            raise EdgepackError("intra_op_threads and inter_op_threads must be >= 1 (or None: ONNX Runtime's choice)")
        runner = open_runner(art, backend, intra_op_threads=intra_op_threads, inter_op_threads=inter_op_threads,
                             memory_arena=memory_arena, **backend_opts)
        _warn_int8_mismatch(art, runner)
        return cls(art, runner, encoder, batch_size)

    @property
    def task(self) -> str:
        return self.artifact.task

    @property
    def labels(self) -> list[str]:
        return self.artifact.labels

    def infer(self, texts: Sequence[Text]) -> np.ndarray:
        """Probabilities (N, C) for classification or pooled embeddings (N, D), in input order.

        Texts are encoded once; a request larger than ``batch_size`` is sorted by token length and cut
        into batches, each padded only to its own longest text, so little work is spent on padding.
        """
        return self.infer_encoded(self.encoder.encode(_check_texts(texts)))

    def _run(self, encodings: list) -> np.ndarray:
        if self._bound is not None:  # this thread's buffers and binding for the shape, reused
            n = len(encodings)
            call = self._bound(n, len(encodings[0]) if n == 1 else max(map(len, encodings)), self._buffers)
            if call is not None and self.encoder.fill(encodings, call.inputs):
                return self._postprocess(call.run(), call.inputs["attention_mask"])
        feeds = self.encoder.feeds(encodings, self._feed_names)
        return self._postprocess(self.runner.infer(feeds), feeds["attention_mask"])

    def _postprocess(self, outputs: dict[str, np.ndarray], mask: np.ndarray) -> np.ndarray:
        if self._classify:
            return softmax(outputs["logits"])
        hidden = outputs.get("last_hidden_state")
        if hidden is None:  # a model that already pools, e.g. "sentence_embedding" (a copy: outputs may be reused)
            return np.array(next(iter(outputs.values())), dtype=np.float32)
        pooling, normalize = self._pooling
        if pooling == "cls":
            return cls_pool(hidden, normalize)
        return mean_pool(hidden, mask, normalize)

    def predict(self, texts: Sequence[Text]) -> list[dict]:
        """JSON-ready results: ``{"label", "score", "scores"}`` per text, or ``{"embedding": [...]}``."""
        return self.to_results(self.infer(texts))

    def warmup(self) -> None:
        """Run one short batch so the first real request does not pay for lazy initialisation."""
        self.infer(["warm up"])

    # Tokenize in one step and run in another (the server's batcher tokenizes on its own thread and forms
    # batches by token count): ``infer(texts) == infer_encoded(encode(texts))`` and
    # ``predict(texts) == to_results(infer(texts))``.
    def encode(self, texts: Sequence[Text]) -> list:
        """One ``tokenizers.Encoding`` per text, truncated to ``max_length`` (``len(e)``: its tokens)."""
        return self.encoder.encode(_check_texts(texts))

    def infer_encoded(self, encodings: Sequence) -> np.ndarray:
        """``infer`` on encodings from ``encode``: one model call per ``batch_size`` rows, input order."""
        if not isinstance(encodings, list):
            encodings = list(encodings)
        if len(encodings) <= self.batch_size:
            return self._run(encodings)
        lengths = np.fromiter((len(e) for e in encodings), dtype=np.int64, count=len(encodings))
        order = np.argsort(lengths, kind="stable")
        result = None
        for start in range(0, len(order), self.batch_size):
            idx = order[start:start + self.batch_size]
            out = self._run([encodings[i] for i in idx])
            if result is None:
                result = np.empty((len(encodings), out.shape[-1]), dtype=np.float32)
            result[idx] = out
        return result

    def to_results(self, out: np.ndarray) -> list[dict]:
        """``predict``'s JSON-ready results from ``infer``'s array."""
        if self.task == "feature-extraction":
            return [{"embedding": row} for row in out.tolist()]
        labels = self.labels or [str(i) for i in range(out.shape[1])]
        best = out.argmax(axis=1)
        return [{"label": labels[b], "score": float(row[b]), "scores": dict(zip(labels, map(float, row)))}
                for b, row in zip(best, out)]


_WARNED: set[str] = set()


def _warn_int8_mismatch(art: Artifact, runner: Any) -> None:
    """Warn once per model when an INT8 model quantized for VNNI runs on a CPU whose kernels saturate."""
    rt = art.runtime
    on_cpu = next(iter(getattr(runner, "providers", None) or ["CPUExecutionProvider"])) == "CPUExecutionProvider"
    if not rt.precision.startswith("int8") or not on_cpu or str(art.path) in _WARNED:
        return
    why = int8_mismatch(rt.reduce_range, rt.weight_type or "qint8")
    if why:
        _WARNED.add(str(art.path))
        target = rt.target_cpu or "a CPU with VNNI (quantized before targets were recorded)"
        warnings.warn(f"{art.path} was quantized for {target}; {why}", RuntimeWarning, stacklevel=3)


def _check_texts(texts: Sequence[Text]) -> list[Text]:
    if isinstance(texts, (str, bytes)):
        raise EdgepackError("texts must be a list of strings, not a single string")
    if type(texts) is not list:  # a list is only read, never kept: no copy
        texts = list(texts)
    if not texts:
        raise EdgepackError("no texts given")
    for i, t in enumerate(texts):
        if isinstance(t, str):
            continue
        if not (isinstance(t, tuple) and len(t) == 2 and all(isinstance(s, str) for s in t)):
            raise EdgepackError(f"text {i} is a {type(t).__name__}; expected a string (or a pair of strings)")
    return texts

