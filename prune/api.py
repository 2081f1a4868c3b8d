"""The prune stage: ``prune(source, data, PruneConfig, out) -> Artifact`` (an ``hf`` artifact).

Order: drop layers -> score heads/FFN neurons on real batches -> remove them -> attach unstructured /
2:4 masks -> optional recovery (distillation from the teacher on the core trainer ``edgepack.train``,
resumable from ``.OUT.work``) -> fold masks -> evaluate and time the result against the unpruned model
in the same process -> save. The manifest records what was removed, sparsity, parameter counts,
accuracy before/after and the latency ratio; ``pruning.json`` holds the full lists of removed heads
and neurons.
"""

from __future__ import annotations

import copy
import dataclasses
import gzip
import json
import os
import random
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgepack.prune.config import PruneConfig

from edgepack.artifact import Artifact, ArtifactWriter
from edgepack.errors import EdgepackError


@dataclass(frozen=True)
class TextData:
    """Texts and label indices for pruning (what ``edgepack.distill.data.load_data`` returns, or your own)."""

    train_texts: Sequence[str]
    train_labels: Sequence[int] | None = None
    val_texts: Sequence[str] = ()
    val_labels: Sequence[int] | None = None
    label_names: Sequence[str] = ()


def resolve_data(data: Any) -> TextData:
    """Accept None (the embedded example), a ``DataSpec``, a ``Dataset``/``TextData`` or a dict of lists."""
    if data is None or (hasattr(data, "text_column") and hasattr(data, "val_fraction")):
        from edgepack.distill.data import example_spec, load_data

        data = load_data(data if data is not None else example_spec())
    if isinstance(data, dict):
        data = TextData(**data)
    if not hasattr(data, "train_texts"):
        raise EdgepackError(f"cannot use {type(data).__name__} as pruning data: pass a DataSpec, a Dataset or TextData")
    td = TextData(list(data.train_texts), data.train_labels, list(data.val_texts or []), data.val_labels,
                  list(data.label_names or []))
    if not td.train_texts:
        raise EdgepackError("pruning data has no training texts (needed to score heads and neurons)")
    if td.train_labels is not None and len(td.train_labels) != len(td.train_texts):
        raise EdgepackError(f"{len(td.train_texts)} training texts but {len(td.train_labels)} labels")
    if td.val_labels is not None and len(td.val_labels) != len(td.val_texts):
        raise EdgepackError(f"{len(td.val_texts)} validation texts but {len(td.val_labels)} labels")
    return td


def _quality(model: Any, reference: Any, tok: Any, d: TextData, classifier: bool, n: int | None) -> dict:
    from edgepack.prune.evaluate import embedding_agreement, evaluate

    texts = list(d.val_texts)[:n] if n else list(d.val_texts)
    if not texts:
        return {}
    if classifier and d.val_labels is not None:
        return evaluate(model, tok, texts, list(d.val_labels)[: len(texts)])
    if not classifier:
        return embedding_agreement(model, reference, tok, texts)
    return {}


def _gzip_size(path: Path) -> int:
    """Bytes of ``path`` gzip-compressed (level 6), streamed; what a zero-heavy file costs to ship."""
    class _Count:
        n = 0

        def write(self, b):
            self.n += len(b)

        def flush(self):
            pass

    sink = _Count()
    with open(path, "rb") as f, gzip.GzipFile(fileobj=sink, mode="wb", compresslevel=6, mtime=0) as g:
        shutil.copyfileobj(f, g, 1 << 20)
    return sink.n


def prune(source: str | os.PathLike | Artifact, data: Any, cfg: PruneConfig, out: str | os.PathLike,
          teacher: str | os.PathLike | None = None, progress: bool = True,
          work_dir: str | os.PathLike | None = None, keep_work: bool = False, on_step: Any = None) -> Artifact:
    """Prune the model at ``source`` (HF folder, PEFT adapter or ``hf`` artifact) and write an ``hf`` artifact.

    ``data``: see ``resolve_data``. ``teacher``: model whose soft targets drive recovery (default:
    the unpruned source). Recovery keeps resumable checkpoints in ``work_dir`` (default ``.OUT.work``
    beside ``out``, removed after success unless ``keep_work``): re-running after an interrupt
    resumes there. on_step(step) is called after every recovery step. Raises EdgepackError for bad
    configs, data or models.
    """
    import torch
    from edgepack.prune import arch, importance, recovery, structured, unstructured
    from edgepack.prune.evaluate import compare_latency

    from edgepack.hf import count_parameters, hf_inputs_spec, load_model, save_model
    from edgepack.train import work_dir_for

    cfg.validate()
    out = Path(out).expanduser().resolve()
    work = Path(work_dir) if work_dir else work_dir_for(out)
    torch.manual_seed(cfg.seed)
    lm = load_model(source.path if isinstance(source, Artifact) else source)
    model, tok = lm.model, lm.tokenizer
    arch.family(model)  # fail early for unsupported families
    classifier = lm.task == "text-classification"
    d = resolve_data(data)
    if classifier and d.label_names and len(d.label_names) != model.config.num_labels:
        raise EdgepackError(f"the data has {len(d.label_names)} labels {list(d.label_names)} but the model has "
                            f"{model.config.num_labels} ({lm.labels})")
    if classifier and d.label_names and lm.labels:  # same names, maybe another order: use the model's
        from edgepack.distill.data import align_labels

        d = dataclasses.replace(d, train_labels=align_labels(d.train_labels, d.label_names, lm.labels, "pruning data"),
                                val_labels=align_labels(d.val_labels, d.label_names, lm.labels, "pruning data"),
                                label_names=list(lm.labels))
    before = _quality(model, model, tok, d, classifier, cfg.eval_examples)
    params_before = count_parameters(model)
    original = copy.deepcopy(model)
    teacher_model = load_model(teacher, task=lm.task).model if teacher else original

    report: dict[str, Any] = {"dropped_layers": [], "removed_heads": {}, "removed_ffn": {}}
    if cfg.drop_layers:
        report["dropped_layers"] = structured.drop_layers(model, cfg.drop_layers)
    if cfg.head_fraction or cfg.ffn_fraction:
        method = cfg.importance if cfg.importance != "auto" else ("taylor" if classifier else "activation")
        # a seeded random subset, so an ordered training file still gives a mix of classes
        pick = random.Random(cfg.seed).sample(range(len(d.train_texts)), min(cfg.importance_examples,
                                                                             len(d.train_texts)))
        labels = [d.train_labels[i] for i in pick] if d.train_labels is not None and classifier else None
        imp = importance.compute_importance(model, tok, [d.train_texts[i] for i in pick], labels, method,
                                            cfg.batch_size, cfg.max_length)
        report["importance"] = {"method": method, "examples": imp.examples}
        if cfg.head_fraction:
            chosen = structured.select_heads(model, imp.heads, cfg.head_fraction, cfg.head_scope)
            report["removed_heads"] = structured.prune_heads(model, chosen)
        if cfg.ffn_fraction:
            chosen_ffn = structured.select_ffn(imp.ffn, cfg.ffn_fraction, cfg.ffn_multiple_of)
            structured.prune_ffn(model, chosen_ffn)
            report["removed_ffn"] = chosen_ffn
    if cfg.sparsity:
        unstructured.magnitude_prune(model, cfg.sparsity, cfg.include_embeddings)
    elif cfg.semi_structured_24:
        unstructured.semi_structured_24(model)
    rec_labels = d.train_labels if classifier else None
    fingerprint = {"source": str(lm.source), "teacher": str(teacher) if teacher else None}
    report["recovery"] = recovery.recover(model, teacher_model, tok, list(d.train_texts), rec_labels,
                                          cfg.recovery, work, progress, on_step, fingerprint)
    unstructured.make_permanent(model)
    model.eval()
    after = _quality(model, original, tok, d, classifier, cfg.eval_examples)
    latency = {}
    if cfg.latency_runs and d.val_texts:
        latency = compare_latency({"unpruned": original, "pruned": model}, tok, list(d.val_texts),
                                  batch_size=8, runs=cfg.latency_runs, max_length=cfg.max_length)
    sparse = unstructured.sparsity_report(model, cfg.include_embeddings)
    n_layers = len(arch.layers(model))
    structure = {"num_layers": n_layers, "heads_per_layer": [arch.heads_in_layer(model, i) for i in range(n_layers)],
                 "ffn_size": arch.ffn_size(model, 0)}
    with ArtifactWriter(out) as w:
        files = save_model(model, tok, w.dir)
        full = {**report, **structure, "removed_ffn": {str(k): v for k, v in report["removed_ffn"].items()}}
        (w.dir / "pruning.json").write_text(json.dumps(full, indent=1) + "\n")
        files["pruning"] = "pruning.json"
        size = (w.dir / "model.safetensors").stat().st_size
        metrics = {**after, "params": count_parameters(model), "size_bytes": size,
                   "target_sparsity": sparse["target_sparsity"], "model_sparsity": sparse["model_sparsity"]}
        if cfg.sparsity or cfg.semi_structured_24:
            metrics.update(sparse_bytes=sparse["sparse_bytes"], gzip_bytes=_gzip_size(w.dir / "model.safetensors"))
        if latency:
            metrics["latency_speedup_b8"] = latency["pruned"]["speedup_vs_unpruned"]
        extra = {**lm.extra, **structure,
                 "params_before": params_before, "before": before,
                 "removed_heads": {str(k): v for k, v in report["removed_heads"].items()},
                 "removed_ffn_per_layer": {str(k): len(v) for k, v in report["removed_ffn"].items()},
                 "dropped_layers": report["dropped_layers"], "importance": report.get("importance"),
                 "recovery": report["recovery"], "latency_torch_b8": latency,
                 "teacher": str(teacher) if teacher else "unpruned source"}
        if "accuracy" in before and "accuracy" in after:
            extra["accuracy_drop_points"] = 100.0 * (before["accuracy"] - after["accuracy"])
        outputs = [{"name": "logits", "dtype": "float32", "shape": ["batch", len(lm.labels)]}] if classifier else []
        art = w.commit(stage="prune", format="hf", task=lm.task, files=files, labels=lm.labels,
                       inputs=hf_inputs_spec(tok), outputs=outputs, parent=lm.artifact,
                       config=cfg.to_dict(), metrics=metrics, extra=extra)
    if not keep_work:
        shutil.rmtree(work, ignore_errors=True)
    return art
