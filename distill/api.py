"""``distill(teacher, data, DistillConfig(...), out) -> Artifact``: knowledge distillation as one stage.

>>> from edgepack.data import example_spec
>>> from edgepack.distill import distill, DistillConfig, StudentConfig
>>> art = distill("runs/teacher", example_spec(), DistillConfig(student=StudentConfig(num_layers=3)), "runs/s3")
>>> art.metrics["accuracy"], art.metrics["teacher_accuracy"]
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
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

    The student is built from the teacher, or loaded with its own tokenizer (``init="pretrained"``,
    ``edgepack.distill.pretrained``): each model then tokenizes the texts itself. ``cfg.transfer`` adds
    unlabeled texts the teacher labels (``edgepack.distill.transfer``); with ``compare`` the same student is
    also trained without them (same seed and optimizer steps) and ``metrics["transfer_comparison"]``
    holds both accuracies and the paired bootstrap interval of their difference.
    """
    import torch
    from edgepack.distill.layer_map import attention_overrides, layer_matches
    from edgepack.distill.pretrained import check_feature_transfer, load_pretrained_student, same_tokenization
    from edgepack.distill.student import _layer_attr, make_student, student_layers
    from edgepack.distill.transfer import transfer_texts

    from edgepack.batching import Encoded, classification_metrics, encode, predict_logits
    from edgepack.hf import count_parameters, hf_inputs_spec, load_model, model_max_length, save_model
    from edgepack.scoring import paired_bootstrap_ci
    from edgepack.teacher_cache import ConcatCache, Needs, build_cache, load_or_build_cache
    from edgepack.train import work_dir_for

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
    t_model, tcfg, tok = lm.model, cfg.train, lm.tokenizer
    n_T = getattr(t_model.config, _layer_attr(t_model.config))

    # The student, and the tokenizer it reads its texts with.
    no_attn_dropout = attention_overrides(cfg)
    if cfg.student.init == "pretrained":
        student, tok_S, student_src = load_pretrained_student(cfg.student.model, ds.label_names, tcfg.seed,
                                                              no_attn_dropout)
    else:
        student, tok_S, student_src = make_student(t_model, cfg.student, seed=tcfg.seed,
                                                   overrides=no_attn_dropout), tok, None
    student.config.id2label = dict(enumerate(ds.label_names))
    student.config.label2id = {n: i for i, n in enumerate(ds.label_names)}
    n_S = getattr(student.config, _layer_attr(student.config))
    matches = layer_matches(cfg, n_T, n_S)
    if tcfg.freeze_embeddings:
        student.get_input_embeddings().weight.requires_grad_(False)

    # Texts: the training split plus the transfer set; each model tokenizes them itself.
    extra_texts = []
    if cfg.transfer is not None:
        if ds.train_pairs is not None:
            raise EdgepackError("a transfer set holds single texts, but the training data has text pairs")
        extra_texts = transfer_texts(cfg.transfer, ds.train_texts, getattr(tok, "mask_token", None))
    texts, n_train = ds.train_texts + extra_texts, len(ds.train_texts)
    enc_tr = encode(tok, texts, ds.train_pairs, tcfg.max_length)
    enc_va = encode(tok, ds.val_texts, ds.val_pairs, tcfg.max_length)
    if tok_S is tok:
        enc_tr_S, enc_va_S = enc_tr, enc_va
    else:
        max_len_S = min(tcfg.max_length, model_max_length(student.config, tok_S))
        enc_tr_S = encode(tok_S, texts, ds.train_pairs, max_len_S)
        enc_va_S = encode(tok_S, ds.val_texts, ds.val_pairs, max_len_S)
        check_feature_transfer(matches, same_tokenization(enc_tr, enc_tr_S), texts)

    # Teacher outputs: cached once for every text (keyed by the teacher's token ids).
    device = torch.device("cuda") if torch.cuda.is_available() else None
    if device is not None:
        t_model.to(device)
    work.mkdir(parents=True, exist_ok=True)
    needs = Needs.from_matches(matches)
    caches = []  # the training set's (shared by every student of this teacher), then the transfer set's
    for part, (a, b) in enumerate([(0, n_train), (n_train, len(texts))][:1 + bool(extra_texts)]):
        enc = Encoded(enc_tr.input_ids[a:b], enc_tr.token_type_ids[a:b] if enc_tr.token_type_ids else None,
                      enc_tr.pad_id)
        if cache_dir is not None:
            caches.append(load_or_build_cache(t_model, enc, needs, Path(cache_dir), lm.source, tcfg, device))
        else:
            path = work / f"teacher_cache{'-transfer' * part}.safetensors"
            caches.append(build_cache(t_model, enc, needs, tcfg.eval_batch_size, cfg.cache, path, device, tcfg.progress))
    cache = caches[0] if len(caches) == 1 else ConcatCache(caches)
    t_val = predict_logits(t_model, enc_va, tcfg.eval_batch_size, device)
    val_gold = ds.val_labels if ds.val_labels is not None else t_val.argmax(-1).tolist()
    teacher_metrics = classification_metrics(t_val, val_gold, ds.num_labels)
    t_model.cpu()

    fingerprint = {"distill": config_to_dict(dataclasses.replace(cfg, train=tcfg)),  # contents, not paths
                   "teacher": [str(lm.source), path_content_id(lm.source)],
                   "student": path_content_id(student_src) if student_src else None,
                   "data": [len(enc_tr), sum(enc_tr.lengths), ds.label_names, data_content_id(ds)],
                   "transfer": hashlib.sha256("\n".join(extra_texts).encode()).hexdigest() if extra_texts else None}
    run = _Run(matches, cfg, ds, enc_tr_S, enc_va_S, cache, val_gold, t_val, t_model.config.hidden_size,
               fingerprint, on_step)
    initial = copy.deepcopy(student) if extra_texts and cfg.transfer.compare else None
    student, result = run.train(student, len(texts), tcfg, work)
    comparison = None
    if initial is not None:  # the same student without the transfer set: same seed, same optimizer steps
        base, base_result = run.train(initial, n_train, dataclasses.replace(tcfg, max_steps=result.steps),
                                      work / "without-transfer")
        with_, without = (predict_logits(m, enc_va_S, tcfg.eval_batch_size).argmax(-1).numpy()
                          for m in (student, base))
        comparison = {**paired_bootstrap_ci(with_, without, val_gold, seed=tcfg.seed),
                      "transfer_texts": len(extra_texts), "train_texts": n_train, "steps": result.steps,
                      "steps_without": base_result.steps, "seed": tcfg.seed,
                      "agreement_with": result.best.get("agreement"),
                      "agreement_without": base_result.best.get("agreement")}

    with ArtifactWriter(out, overwrite=overwrite, sources=(teacher,)) as w:
        files = save_model(student, tok_S, w.dir)
        t_bytes = _weights_bytes(lm)
        metrics = {**{k: v for k, v in result.best.items() if k in ("accuracy", "macro_f1", "agreement")},
                   "teacher_accuracy": teacher_metrics["accuracy"], "teacher_macro_f1": teacher_metrics["macro_f1"],
                   "params": count_parameters(student), "teacher_params": count_parameters(t_model),
                   "size_bytes": (w.dir / files["weights"]).stat().st_size, "teacher_size_bytes": t_bytes,
                   "train_seconds": round(result.seconds, 1), "steps": result.steps,
                   "resumed_from_step": result.resumed_from_step,
                   "best_epoch": result.best.get("epoch"), "history": result.history}
        if comparison is not None:
            metrics["transfer_comparison"] = comparison
        extra = {"teacher": str(lm.source), "student_layers_from_teacher":
                 list(student_layers(cfg.student, n_T)) if cfg.student.init not in ("random", "pretrained") else [],
                 "layer_map": [dataclasses.asdict(m) for m in matches], "data": ds.source,
                 "train_examples": n_train, "transfer_examples": len(extra_texts), "val_examples": len(enc_va)}
        if student_src is not None:
            extra.update(student_model=str(student_src), student_tokenizer="own")
        art = w.commit(stage="distill", format="hf", task="text-classification", files=files,
                       labels=ds.label_names, inputs=hf_inputs_spec(tok_S), parent=lm.artifact,
                       config=config_to_dict(cfg), metrics=metrics, extra=extra)
    if not keep_work:
        shutil.rmtree(work, ignore_errors=True)
    return art


class _Run:
    """One student's training on the first ``n`` examples (the training split, then the transfer texts).

    Student batches are the student's token ids; teacher targets come from the cache by example index.
    """

    def __init__(self, matches, cfg, ds, enc, enc_va, cache, val_gold, t_val, hidden_T, fingerprint, on_step):
        self.hidden_T = hidden_T
        self.matches, self.cfg, self.ds, self.enc, self.enc_va, self.cache = matches, cfg, ds, enc, enc_va, cache
        self.val_gold, self.t_val, self.fingerprint, self.on_step = val_gold, t_val, fingerprint, on_step

    def collate(self, idx: list[int]) -> dict:
        import torch

        from edgepack.batching import pad_batch

        b = pad_batch(self.enc, idx)
        b.update(self.cache.targets(idx, b["input_ids"].shape[1]))
        gold = self.ds.train_labels
        if gold is not None:  # the data's labels; the teacher's argmax for transfer texts (index >= len(gold))
            t_arg = b["logits_T"].argmax(-1).tolist()
            b["labels"] = torch.tensor([gold[i] if i < len(gold) else t_arg[r] for r, i in enumerate(idx)])
        return b

    def evaluate(self, obj: Any) -> dict:
        from edgepack.batching import classification_metrics, predict_logits

        dev = next(obj.parameters()).device
        logits = predict_logits(obj.student, self.enc_va, self.cfg.train.eval_batch_size, dev)
        m = classification_metrics(logits, self.val_gold, self.ds.num_labels)
        m["agreement"] = float((logits.argmax(-1) == self.t_val.argmax(-1)).float().mean())
        return m

    def train(self, student: Any, n: int, tcfg: Any, work: Path) -> tuple[Any, Any]:
        import torch
        from edgepack.distill.layer_map import make_projections

        from edgepack.objectives import DistillObjective
        from edgepack.train import train

        torch.manual_seed(tcfg.seed)  # the projections start the same in every run
        projections = make_projections(self.matches, student.config.hidden_size, self.hidden_T)
        objective = DistillObjective(student, projections, self.matches, self.cfg.temperature, self.cfg.alpha_kd)
        fp = {**self.fingerprint, "examples": n, "steps": tcfg.max_steps}
        result = train(objective, self.enc.lengths[:n], self.collate, self.evaluate, tcfg, work, fp,
                       self.on_step, desc="distill")
        return objective.student.cpu().eval(), result


def _weights_bytes(lm: Any) -> int | None:
    for name in ("model.safetensors", "pytorch_model.bin"):
        p = Path(lm.source) / name
        if p.is_file():
            return p.stat().st_size
    return None
