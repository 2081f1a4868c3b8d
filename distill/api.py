"""``distill(teacher, data, DistillConfig(...), out) -> Artifact``: knowledge distillation as one stage.

>>> from edgepack.data import example_spec
>>> from edgepack.distill import distill, DistillConfig, StudentConfig
>>> art = distill("runs/teacher", example_spec(), DistillConfig(student=StudentConfig(num_layers=3)), "runs/s3")
>>> art.metrics["accuracy"], art.metrics["teacher_accuracy"]
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path
from typing import Any

from edgepack.distill.configs import DistillConfig

from edgepack.artifact import Artifact, ArtifactWriter
from edgepack.config import config_to_dict
from edgepack.data import Dataset, DataSpec, load_data
from edgepack.errors import EdgepackError
from edgepack.fingerprint import data_content_id, path_content_id
from edgepack.outputs import check_output


def resolve_data(data: DataSpec | Dataset, labels: list[str]) -> Dataset:
    """Load ``data``; the teacher's label names fix the label order unless they are generic (LABEL_i).

    Unlabeled data (``label_column=None``) takes the teacher's label names; the teacher labels it.
    A Dataset is re-indexed into the teacher's order (``Dataset.aligned_to``: foreign names refused).
    """
    if isinstance(data, Dataset):
        return data.aligned_to(labels, "training data")
    if not isinstance(data, DataSpec):
        raise EdgepackError(f"training data must be a DataSpec or a Dataset; got {type(data).__name__}")
    generic = all(l == f"LABEL_{i}" for i, l in enumerate(labels))
    if data.labels is None and labels and (not generic or not data.label_column):
        data = dataclasses.replace(data, labels=tuple(labels))
    return load_data(data)


def distill(teacher: str | os.PathLike, data: DataSpec | Dataset, cfg: DistillConfig, out: str | os.PathLike,
            work_dir: str | os.PathLike | None = None, keep_work: bool = False,
            on_step: Any = None, cache_dir: str | os.PathLike | None = None, overwrite: bool = False) -> Artifact:
    """Distill a text-classification ``teacher`` (HF folder, PEFT adapter or ``hf`` artifact) into a student;
    a feature-extraction teacher goes to ``edgepack.distill.embedding`` (pooled-embedding distillation).

    Writes an ``hf`` artifact at ``out`` whose metrics hold the student's and the teacher's validation
    accuracy / macro-F1, parameter counts and weight sizes. Re-running after an interrupt resumes
    from the last checkpoint in ``work_dir`` (default ``.OUT.work`` beside ``out``). on_step(step) is
    called after every optimizer step (progress hooks; tests raise from it to simulate a kill).
    cache_dir: keep the teacher cache there (keyed by teacher weights, token ids and features) so
    several students of one teacher share it.
    """
    import torch
    from edgepack.distill.layer_map import default_layer_map, make_projections, validate_layer_map
    from edgepack.distill.student import _layer_attr, make_student, student_layers

    from edgepack.batching import classification_metrics, encode, pad_batch, predict_logits
    from edgepack.hf import count_parameters, hf_inputs_spec, load_model, save_model
    from edgepack.objectives import DistillObjective
    from edgepack.teacher_cache import Needs, build_cache, load_or_build_cache
    from edgepack.train import train, work_dir_for

    out = check_output(out, overwrite, (teacher,))
    work = Path(work_dir) if work_dir else work_dir_for(out)
    lm = load_model(teacher)
    if lm.task == "feature-extraction":  # embedding teacher: pooled-embedding distillation
        from edgepack.distill.embedding import distill_embeddings

        return distill_embeddings(lm, teacher, data, cfg, out, work, keep_work, on_step, cache_dir, overwrite)
    from edgepack.distill.embedding import check_classifier_options

    check_classifier_options(cfg, lm.source)
    ds = resolve_data(data, lm.labels)
    if ds.num_labels != lm.model.config.num_labels:
        raise EdgepackError(f"the data has {ds.num_labels} labels {ds.label_names} but the teacher predicts "
                            f"{lm.model.config.num_labels}")
    t_model, tcfg = lm.model, cfg.train
    # Attention maps come from the eager attention path (transformers falls back to it when asked).
    n_T = getattr(t_model.config, _layer_attr(t_model.config))
    matches_given = cfg.layer_map or default_layer_map(n_T, cfg.student.num_layers, cfg.features, cfg.feature_weight)
    # HF returns attention probabilities after dropout, which are not distributions: no dropout there.
    no_attn_dropout = {"attention_probs_dropout_prob": 0.0, "attention_dropout": 0.0}
    student = make_student(t_model, cfg.student, seed=tcfg.seed,
                           overrides=no_attn_dropout if any(m.feature == "attention" for m in matches_given) else None)
    student.config.id2label = dict(enumerate(ds.label_names))
    student.config.label2id = {n: i for i, n in enumerate(ds.label_names)}
    n_S = getattr(student.config, _layer_attr(student.config))
    matches = matches_given
    try:
        validate_layer_map(matches, n_T, n_S)
    except ValueError as e:
        raise EdgepackError(str(e)) from None
    projections = make_projections(matches, student.config.hidden_size, t_model.config.hidden_size)
    if tcfg.freeze_embeddings:
        student.get_input_embeddings().weight.requires_grad_(False)

    tok = lm.tokenizer
    enc_tr = encode(tok, ds.train_texts, ds.train_pairs, tcfg.max_length)
    enc_va = encode(tok, ds.val_texts, ds.val_pairs, tcfg.max_length)
    device = torch.device("cuda") if torch.cuda.is_available() else None
    if device is not None:
        t_model.to(device)
    work.mkdir(parents=True, exist_ok=True)
    needs = Needs.from_matches(matches)
    if cache_dir is not None:
        cache = load_or_build_cache(t_model, enc_tr, needs, Path(cache_dir), lm.source, tcfg, device)
    else:
        cache = build_cache(t_model, enc_tr, needs, tcfg.eval_batch_size, cfg.cache,
                            work / "teacher_cache.safetensors", device, tcfg.progress)
    t_val = predict_logits(t_model, enc_va, tcfg.eval_batch_size, device)
    val_gold = ds.val_labels if ds.val_labels is not None else t_val.argmax(-1).tolist()
    teacher_metrics = classification_metrics(t_val, val_gold, ds.num_labels)
    t_model.cpu()

    def collate(idx: list[int]) -> dict:
        b = pad_batch(enc_tr, idx)
        if ds.train_labels is not None:
            b["labels"] = torch.tensor([ds.train_labels[i] for i in idx])
        b.update(cache.targets(idx, b["input_ids"].shape[1]))
        return b

    def evaluate(obj: Any) -> dict:
        dev = next(obj.parameters()).device
        logits = predict_logits(obj.student, enc_va, tcfg.eval_batch_size, dev)
        m = classification_metrics(logits, val_gold, ds.num_labels)
        m["agreement"] = float((logits.argmax(-1) == t_val.argmax(-1)).float().mean())
        return m

    objective = DistillObjective(student, projections, matches, cfg.temperature, cfg.alpha_kd)
    fingerprint = {"distill": config_to_dict(dataclasses.replace(cfg, train=tcfg)),  # contents, not paths
                   "teacher": [str(lm.source), path_content_id(lm.source)],
                   "data": [len(enc_tr), sum(enc_tr.lengths), ds.label_names, data_content_id(ds)]}
    result = train(objective, enc_tr.lengths, collate, evaluate, tcfg, work, fingerprint, on_step, desc="distill")
    student = objective.student.cpu().eval()

    with ArtifactWriter(out, overwrite=overwrite, sources=(teacher,)) as w:
        files = save_model(student, tok, w.dir)
        t_bytes = _weights_bytes(lm)
        metrics = {**{k: v for k, v in result.best.items() if k in ("accuracy", "macro_f1", "agreement")},
                   "teacher_accuracy": teacher_metrics["accuracy"], "teacher_macro_f1": teacher_metrics["macro_f1"],
                   "params": count_parameters(student), "teacher_params": count_parameters(t_model),
                   "size_bytes": (w.dir / files["weights"]).stat().st_size, "teacher_size_bytes": t_bytes,
                   "train_seconds": round(result.seconds, 1), "steps": result.steps,
                   "resumed_from_step": result.resumed_from_step,
                   "best_epoch": result.best.get("epoch"), "history": result.history}
        extra = {"teacher": str(lm.source), "student_layers_from_teacher":
                 list(student_layers(cfg.student, n_T)) if cfg.student.init != "random" else [],
                 "layer_map": [dataclasses.asdict(m) for m in matches], "data": ds.source,
                 "train_examples": len(enc_tr), "val_examples": len(enc_va)}
        art = w.commit(stage="distill", format="hf", task="text-classification", files=files,
                       labels=ds.label_names, inputs=hf_inputs_spec(tok), parent=lm.artifact,
                       config=config_to_dict(cfg), metrics=metrics, extra=extra)
    if not keep_work:
        shutil.rmtree(work, ignore_errors=True)
    return art


def _weights_bytes(lm: Any) -> int | None:
    for name in ("model.safetensors", "pytorch_model.bin"):
        p = Path(lm.source) / name
        if p.is_file():
            return p.stat().st_size
    return None
