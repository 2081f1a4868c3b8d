"""The prune stage: ``prune(source, data, PruneConfig, out) -> Artifact`` (an ``hf`` artifact).

Order: the registered pruning steps the config asks for (``edgepack.prune.steps``: drop layers -> score
heads/FFN neurons on real batches -> remove them -> attach unstructured / 2:4 masks) -> optional recovery
(distillation from the teacher on the core trainer ``edgepack.train``, resumable from ``.OUT.work``) ->
fold masks -> evaluate and time the result against the unpruned model in the same process -> save. The
manifest records what was removed, sparsity, parameter counts, accuracy before/after and the latency
ratio; ``pruning.json`` holds the full lists of removed heads and neurons and the steps that ran.
"""

from __future__ import annotations

import copy
import gzip
import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edgepack.prune.config import PruneConfig

from edgepack.artifact import Artifact, ArtifactWriter
from edgepack.config import config_to_dict
from edgepack.data import Dataset, DataSpec, as_dataset, example_spec
from edgepack.errors import EdgepackError


def resolve_data(data: DataSpec | Dataset | Mapping | None) -> Dataset:
    """The pruning data as a ``Dataset``: None (the embedded example), a DataSpec, a Dataset or a dict of
    Dataset fields (``edgepack.data.as_dataset``). The training split is needed to score units."""
    d = as_dataset(data if data is not None else example_spec(), "pruning data")
    if not d.train_texts:
        raise EdgepackError("pruning data has no training texts (needed to score heads and neurons)")
    return d


def _quality(model: Any, reference: Any, tok: Any, d: Dataset, classifier: bool, n: int | None,
             pooling: str = "mean") -> dict:
    from edgepack.prune.evaluate import embedding_agreement, evaluate

    texts = list(d.val_texts)[:n] if n else list(d.val_texts)
    if not texts:
        return {}
    if classifier and d.val_labels is not None:
        return evaluate(model, tok, texts, list(d.val_labels)[: len(texts)])
    if not classifier:
        return embedding_agreement(model, reference, tok, texts, pooling=pooling)
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


def prune(source: str | os.PathLike | Artifact, data: DataSpec | Dataset | Mapping | None, cfg: PruneConfig,
          out: str | os.PathLike, teacher: str | os.PathLike | None = None, progress: bool = True,
          work_dir: str | os.PathLike | None = None, keep_work: bool = False, on_step: Any = None,
          overwrite: bool = False) -> Artifact:
    """Prune the model at ``source`` (HF folder, PEFT adapter or ``hf`` artifact) and write an ``hf`` artifact.

    ``data``: see ``resolve_data``. ``teacher``: model whose soft targets drive recovery (default:
    the unpruned source). Recovery keeps resumable checkpoints in ``work_dir`` (default ``.OUT.work``
    beside ``out``, removed after success unless ``keep_work``): re-running after an interrupt
    resumes there. on_step(step) is called after every recovery step. Raises EdgepackError for bad
    configs, data or models.
    """
    import torch
    from edgepack.prune import arch, recovery, steps, unstructured
    from edgepack.prune.evaluate import compare_latency

    from edgepack.hf import count_parameters, hf_inputs_spec, load_model, save_model
    from edgepack.outputs import check_output
    from edgepack.train import work_dir_for

    out = Path(out).expanduser().resolve()
    check_output(out, overwrite, (source, teacher))
    work = Path(work_dir) if work_dir else work_dir_for(out)
    torch.manual_seed(cfg.seed)
    lm = load_model(source.path if isinstance(source, Artifact) else source)
    model, tok = lm.model, lm.tokenizer
    arch.family(model)  # fail early for unsupported families
    if cfg.head_fraction:
        arch.check_head_pruning(model)
    classifier = lm.task == "text-classification"
    d = resolve_data(data)
    if classifier and d.label_names and len(d.label_names) != model.config.num_labels:
        raise EdgepackError(f"the data has {len(d.label_names)} labels {list(d.label_names)} but the model has "
                            f"{model.config.num_labels} ({lm.labels})")
    if classifier:  # same names, maybe another order: the model's order (edgepack.data.align_labels)
        d = d.aligned_to(lm.labels, "pruning data")
    pooling = lm.runtime.embedding_pooling()[0]  # embedding models: mean or cls, as the artifact serves it
    before = _quality(model, model, tok, d, classifier, cfg.eval_examples, pooling)
    params_before = count_parameters(model)
    original = copy.deepcopy(model)
    t_lm = load_model(teacher, task=lm.task) if teacher else None
    teacher_model = t_lm.model if t_lm else original

    ctx = steps.PruneContext(model, tok, cfg, d, classifier)
    steps.run_steps(ctx)
    report = ctx.report
    rec_labels = d.train_labels if classifier else None
    fingerprint = {"source": str(lm.source), "teacher": str(teacher) if teacher else None}
    report["recovery"] = recovery.recover(model, teacher_model, tok, list(d.train_texts), rec_labels,
                                          cfg.recovery, work, progress, on_step, fingerprint, pooling,
                                          t_lm.runtime.embedding_pooling()[0] if t_lm else pooling)
    unstructured.make_permanent(model)
    model.eval()
    after = _quality(model, original, tok, d, classifier, cfg.eval_examples, pooling)
    latency = {}
    if cfg.latency_runs and d.val_texts:
        latency = compare_latency({"unpruned": original, "pruned": model}, tok, list(d.val_texts),
                                  batch_size=8, runs=cfg.latency_runs, max_length=cfg.max_length)
    sparse = unstructured.sparsity_report(model, cfg.include_embeddings)
    n_layers = len(arch.layers(model))
    structure = {"heads_per_layer": [arch.heads_in_layer(model, i) for i in range(n_layers)],
                 "ffn_size": arch.ffn_size(model, 0)}
    with ArtifactWriter(Path(out), overwrite=overwrite, sources=(source, teacher)) as w:
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
                       config=config_to_dict(cfg), metrics=metrics, runtime=lm.runtime.replace(num_layers=n_layers),
                       extra=extra)
    if not keep_work:
        shutil.rmtree(work, ignore_errors=True)
    return art
