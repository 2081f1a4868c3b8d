"""Export a torch model (HF folder, LoRA adapter or ``hf`` artifact) to a validated ONNX artifact.

The graph comes from optimum-onnx's exporter (dynamic batch and sequence axes). Every export is then
checked against torch on several input shapes with ONNX Runtime; a max abs difference above
``atol`` fails the export and nothing is written.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgepack.artifact import Artifact, ArtifactWriter
from edgepack.compare import compare_many
from edgepack.config import check_choice, check_fields, check_min, check_positive, config_to_dict
from edgepack.contract import RuntimeContract
from edgepack.errors import EdgepackError
from edgepack.hf import LoadedModel, load_model

# (batch, sequence length) pairs checked against torch, besides real sample sentences.
VALIDATION_SHAPES = ((1, 3), (7, 40))
TASKS = ("text-classification", "feature-extraction")


@dataclass(frozen=True)
class OnnxExportConfig:
    opset: int = 18  # optimum recommends >= 18 for BERT; ORT fuses these graphs fully
    task: str | None = None  # None: from the model's architecture
    atol: float = 1e-4  # max abs difference allowed vs torch (logits, or last_hidden_state)
    max_length: int | None = None  # runtime truncation; None: the model's limit (<= 512)

    def __post_init__(self) -> None:
        check_fields(self)
        check_min(self, 11, "opset")  # the exporter needs opset 11+ for BERT-style graphs
        check_choice(self, "task", TASKS)
        check_positive(self, "atol")
        check_min(self, 2, "max_length")


def onnx_io_spec(model_path: Path) -> tuple[list[dict], list[dict]]:
    """Inputs and outputs of an ONNX graph as manifest entries (symbolic dims kept by name)."""
    import onnx

    m = onnx.load(str(model_path), load_external_data=False)
    inits = {i.name for i in m.graph.initializer}

    def spec(v) -> dict:
        t = v.type.tensor_type
        dims = [d.dim_param or d.dim_value for d in t.shape.dim]
        return {"name": v.name, "dtype": onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name, "shape": dims}

    return [spec(v) for v in m.graph.input if v.name not in inits], [spec(v) for v in m.graph.output]


def export_onnx(
    source: str | os.PathLike, out: str | os.PathLike, cfg: OnnxExportConfig = OnnxExportConfig(),
    base_model: str | None = None, overwrite: bool = False,
) -> Artifact:
    """Export ``source`` to an ``onnx`` artifact at ``out``; raises EdgepackError when validation fails."""
    lm = load_model(source, task=cfg.task, base_model=base_model)
    try:
        from optimum.exporters.onnx import onnx_export_from_model
    except ImportError:
        from edgepack.errors import MissingDependencyError

        raise MissingDependencyError("optimum-onnx", "tools", "ONNX export") from None
    max_length = cfg.max_length or lm.max_length
    if max_length > lm.max_length:
        raise EdgepackError(f"max_length {max_length} exceeds the model's limit {lm.max_length}")
    with ArtifactWriter(Path(out), overwrite=overwrite, sources=(source, base_model)) as w, tempfile.TemporaryDirectory() as scratch:
        onnx_export_from_model(
            lm.model, scratch, opset=cfg.opset, task=lm.task, do_validation=False, device="cpu",
        )
        os.replace(Path(scratch) / "model.onnx", w.dir / "model.onnx")
        _save_runtime_tokenizer(lm.tokenizer, w.dir / "tokenizer.json")
        max_diff = validate_against_torch(lm, w.dir / "model.onnx", max_length)
        if max_diff > cfg.atol:
            raise EdgepackError(
                f"ONNX export does not match torch: max abs difference {max_diff:.3g} > atol {cfg.atol:g}"
            )
        inputs, outputs = onnx_io_spec(w.dir / "model.onnx")
        c = lm.model.config
        parent = lm.artifact
        return w.commit(
            stage="export", format="onnx", task=lm.task, labels=lm.labels, inputs=inputs, outputs=outputs,
            files={"model": "model.onnx", "tokenizer": "tokenizer.json"}, parent=parent,
            config={**config_to_dict(cfg), "source": str(lm.source)},
            metrics={"max_abs_diff": max_diff, "size_bytes": (w.dir / "model.onnx").stat().st_size,
                     **({k: v for k, v in parent.metrics.items() if k in ("accuracy", "macro_f1")} if parent else {})},
            runtime=RuntimeContract(
                pooling=lm.runtime.pooling, normalize=lm.runtime.normalize,
                max_length=max_length, pad_token_id=int(lm.tokenizer.pad_token_id or 0),
                model_type=c.model_type, num_heads=c.num_attention_heads, hidden_size=c.hidden_size,
                num_layers=c.num_hidden_layers, opset=cfg.opset, precision="fp32", fused=False,
                torch_source=str(lm.source),
            ),
        )


def _save_runtime_tokenizer(tokenizer, path: Path) -> None:
    """Write tokenizer.json with padding/truncation cleared (the runtime sets both per request)."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
    tok.no_padding()
    tok.no_truncation()
    tok.save(str(path))


def sample_feeds(lm: LoadedModel, max_length: int, seed: int = 0) -> list[dict[str, np.ndarray]]:
    """Validation inputs: random ids at VALIDATION_SHAPES (with padded rows) plus real sample sentences."""
    from edgepack.data import SAMPLE_SENTENCES

    rng = np.random.default_rng(seed)
    names = lm.tokenizer.model_input_names
    vocab = lm.model.config.vocab_size
    feeds = []
    for b, t in VALIDATION_SHAPES:
        t = min(t, max_length)
        ids = rng.integers(low=min(1000, vocab // 2), high=vocab, size=(b, t), dtype=np.int64)
        mask = np.ones((b, t), dtype=np.int64)
        for row in range(1, b, 2):  # every other row padded, to check masking
            keep = int(rng.integers(1, t + 1))
            mask[row, keep:] = 0
            ids[row, keep:] = lm.tokenizer.pad_token_id or 0
        f = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        feeds.append({k: v for k, v in f.items() if k in names})
    enc = lm.tokenizer(list(SAMPLE_SENTENCES), padding=True, truncation=True, max_length=max_length,
                       return_tensors="np")
    feeds.append({k: enc[k].astype(np.int64) for k in names})
    return feeds


def torch_outputs(lm: LoadedModel, feeds: dict[str, np.ndarray]) -> np.ndarray:
    """Logits (B, C) or last_hidden_state (B, T, H) from the torch model."""
    import torch

    with torch.inference_mode():
        out = lm.model(**{k: torch.from_numpy(v) for k, v in feeds.items()})
    return (out.logits if lm.task == "text-classification" else out.last_hidden_state).numpy()


def validate_against_torch(lm: LoadedModel, onnx_path: Path, max_length: int) -> float:
    """Max abs difference between ONNX Runtime and torch over the sample feeds (padded positions ignored)."""
    from edgepack.runtime.ort import OrtRunner

    runner = OrtRunner(onnx_path)
    key = "logits" if lm.task == "text-classification" else "last_hidden_state"
    pairs = []
    for feeds in sample_feeds(lm, max_length):
        ref = torch_outputs(lm, feeds)
        pairs.append((ref, runner.infer(feeds)[key], feeds["attention_mask"] if ref.ndim == 3 else None))
    return compare_many(pairs).max_abs_diff
