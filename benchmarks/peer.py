"""The peer path of a benchmark: the model exported (and dynamically quantized) the optimum-onnx way.

``peer_export`` writes ``ORTModelFor...from_pretrained(dir, export=True)`` (plus ``ORTQuantizer`` dynamic
int8 with ``AutoQuantizationConfig.avx512_vnni``) into a work folder, reused while the source is unchanged;
``open_peer`` loads it for :class:`edgepack.benchmarks.targets.Target` ``peer-optimum`` targets, run with
the HF tokenizer at ``padding=True`` and post-processed like the runtime.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from edgepack.benchmarks.targets import PEER_QUANTIZE, OpenTarget, Target, postprocess

from edgepack.artifact import Artifact, is_artifact
from edgepack.contract import RuntimeContract
from edgepack.errors import EdgepackError, MissingDependencyError
from edgepack.outputs import check_not_source, replace_dir


def _peer_source(path: Path, scratch: Path) -> tuple[Path, str, RuntimeContract, list[str]]:
    """A plain HF folder optimum can export (an adapter is merged first), its task, runtime contract, labels."""
    from edgepack.hf import load_model

    runtime = RuntimeContract()
    if is_artifact(path):
        art = Artifact.open(path).require(format="hf")
        runtime = art.runtime
    if (path / "config.json").is_file() and not (path / "adapter_config.json").is_file():
        from transformers import AutoConfig

        from edgepack.hf import detect_task, label_names

        cfg = AutoConfig.from_pretrained(path)
        task = detect_task(cfg)
        labels = label_names(cfg) if task == "text-classification" else []
        if task == "feature-extraction":
            pooling, normalize = runtime.embedding_pooling()
            runtime = runtime.replace(pooling=pooling, normalize=normalize)
        return path, task, runtime, labels
    lm = load_model(path)  # a LoRA adapter: merge into its base, as a user would before exporting
    merged = scratch / "merged"
    lm.model.save_pretrained(merged, safe_serialization=True)
    lm.tokenizer.save_pretrained(merged)
    return merged, lm.task, lm.runtime, lm.labels


def _fingerprint(src: Path, quantize: str) -> str:
    """Identifies the exported peer model: source weights/config (size, mtime), variant, optimum version."""
    import importlib.metadata as md

    parts = [str(src.resolve()), quantize, md.version("optimum-onnx")]
    for p in sorted(src.iterdir()):
        if p.is_file() and p.suffix in (".safetensors", ".bin", ".json"):
            st = p.stat()
            parts.append(f"{p.name}:{st.st_size}:{st.st_mtime_ns}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def check_peer_dir(out: Path) -> None:
    """Refuse to replace ``out`` unless it is missing, empty, or a peer export this module wrote."""
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise EdgepackError(f"refusing to replace {out}: it is not a peer export folder")
    if not out.exists() or not any(out.iterdir()):
        return
    try:
        meta = json.loads((out / "edgepack-peer.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        meta = None
    if not isinstance(meta, dict) or not isinstance(meta.get("fingerprint"), str):
        raise EdgepackError(f"refusing to replace {out}: it is not a peer export edgepack wrote "
                            "(no edgepack-peer.json); choose another --peer-work-dir")


def peer_export(
    path: str | os.PathLike, work_dir: str | os.PathLike, quantize: str = "fp32"
) -> tuple[Path, dict]:
    """Export (and quantize) ``path`` the optimum-onnx way into ``work_dir/<quantize>``; returns (dir, meta).

    A previous export in the same place is reused when the source and the variant are unchanged.
    """
    try:
        from optimum.onnxruntime import (
            ORTModelForFeatureExtraction,
            ORTModelForSequenceClassification,
            ORTQuantizer,
        )
        from optimum.onnxruntime.configuration import AutoQuantizationConfig
    except ImportError:
        raise MissingDependencyError("optimum-onnx", "tools", "the optimum peer benchmark") from None
    if quantize not in PEER_QUANTIZE:
        raise EdgepackError(f"unknown peer quantization {quantize!r}; use one of {', '.join(PEER_QUANTIZE)}")
    src_in, work = Path(path).expanduser().resolve(), Path(work_dir).expanduser().resolve()
    out = work / quantize
    check_not_source(out, [src_in])
    check_peer_dir(out)
    work.mkdir(parents=True, exist_ok=True)
    src, task, runtime, labels = _peer_source(src_in, work)
    fp = _fingerprint(src, quantize)
    meta_path = out / "edgepack-peer.json"
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        if meta.get("fingerprint") == fp and "runtime" in meta and (out / meta["file_name"]).is_file():
            return out, meta
    cls = ORTModelForSequenceClassification if task == "text-classification" else ORTModelForFeatureExtraction
    tmp = Path(tempfile.mkdtemp(dir=work, prefix=f".{quantize}.tmp-"))
    try:
        file_name = "model.onnx"
        if quantize == "fp32":
            cls.from_pretrained(src, export=True).save_pretrained(tmp)
        else:  # quantize the fp32 export (made once, shared by the int8 variants)
            fp32_dir, _ = peer_export(src_in, work, "fp32")
            qcfg = AutoQuantizationConfig.avx512_vnni(
                is_static=False, per_channel=quantize == "dynamic-per-channel"
            )
            ORTQuantizer.from_pretrained(fp32_dir, file_name="model.onnx").quantize(
                save_dir=tmp, quantization_config=qcfg
            )
            file_name = "model_quantized.onnx"
        from transformers import AutoTokenizer

        AutoTokenizer.from_pretrained(src).save_pretrained(tmp)
        meta = {
            "fingerprint": fp,
            "file_name": file_name,
            "task": task,
            "runtime": runtime.to_dict(),
            "labels": labels,
            "source": str(src_in),
            "quantize": quantize,
        }
        (tmp / "edgepack-peer.json").write_text(json.dumps(meta, indent=2))
        check_peer_dir(out)
        replace_dir(tmp, out)  # the old export stays whole until the new one is in place
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out, meta


def open_peer(t: Target, threads: int | None, batch_size: int) -> OpenTarget:
    import onnxruntime as ort
    from optimum.onnxruntime import ORTModelForFeatureExtraction, ORTModelForSequenceClassification
    from transformers import AutoTokenizer

    from edgepack.hf import require_torch

    require_torch("the optimum peer benchmark")
    scratch = None
    work = t.work_dir
    if work is None:
        scratch = tempfile.mkdtemp(prefix="edgepack-peer-")
        work = scratch
    try:
        out, meta = peer_export(t.path, work, t.quantize)
        so = ort.SessionOptions()
        if threads:
            so.intra_op_num_threads = int(threads)
        so.inter_op_num_threads = 1
        task = meta["task"]
        cls = (
            ORTModelForSequenceClassification
            if task == "text-classification"
            else ORTModelForFeatureExtraction
        )
        model = cls.from_pretrained(
            out, file_name=meta["file_name"], session_options=so, provider="CPUExecutionProvider"
        )
        tok = AutoTokenizer.from_pretrained(out)
    except BaseException:
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)
        raise
    from edgepack.hf import model_max_length

    max_len = t.max_length or model_max_length(model.config, tok)  # the limit edgepack's export records
    runtime = RuntimeContract.from_dict(meta["runtime"])

    def run(texts: Sequence[str]) -> np.ndarray:
        enc = tok(list(texts), padding=True, truncation=True, max_length=max_len, return_tensors="np")
        res = model(**enc)
        x = res.logits if task == "text-classification" else res.last_hidden_state
        return postprocess(task, runtime, x, enc["attention_mask"])

    info = {
        "kind": "peer-optimum",
        "backend": "optimum-ort-cpu",
        "precision": {
            "fp32": "fp32",
            "dynamic": "int8-dynamic",
            "dynamic-per-channel": "int8-dynamic-per-channel",
        }[t.quantize],
        "path": str(out / meta["file_name"]),
        "threads": threads,
    }
    cleanup = (lambda: shutil.rmtree(scratch, ignore_errors=True)) if scratch else None
    return OpenTarget(
        t.name,
        run,
        task,
        list(meta["labels"]),
        (out / meta["file_name"]).stat().st_size,
        info,
        cleanup=cleanup,
    )
