"""Distilling an embedding (feature-extraction) teacher into a smaller embedding student.

``distill()`` sends a feature-extraction teacher here. The student (``make_student``: k of the teacher's
layers, or a narrower truncated/random config) learns the teacher's *pooled* sentence embedding, pooled
the teacher's way (mean over real tokens or the CLS token, from the teacher's runtime contract or its
sentence-transformers ``1_Pooling`` config): ``edgepack.objectives.EmbeddingObjective`` with
``cfg.embedding.loss`` (cosine, MSE or both) on the cached teacher embeddings, on the one training loop.
``features`` / ``layer_map`` add the classifier path's layer terms (hidden states, attention, embedding
output: student block i imitates a teacher block, through a dropped projection when narrower).

Widths. A student narrower than the teacher (``hidden_size``) is trained through a learned
``Linear(H_S, H_T)`` on its pooled embedding, which is dropped afterwards: the served embedding is the
student's own H_S-dim pooled (and, like the teacher's, normalized) vector. It is *not* in the teacher's
space, so a corpus indexed with the teacher must be re-embedded with the student; what carries over is
the geometry (which texts are near which), measured by ``nn_agreement`` and ``recall_at_10``.

The artifact (``hf``, task feature-extraction) records the teacher's pooling and normalization in its
runtime contract, so export and the runtime serve the student's embeddings exactly as trained and
evaluated. Metrics (``edgepack.embed_metrics``, on validation texts): mean cosine to the teacher (same
width), nearest-neighbour agreement, recall@10 overlap, and with labeled data a linear probe for student
and teacher.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
from edgepack.distill.configs import DistillConfig

from edgepack.artifact import Artifact, ArtifactWriter
from edgepack.config import config_to_dict
from edgepack.contract import RuntimeContract
from edgepack.data import Dataset, DataSpec, as_dataset
from edgepack.errors import EdgepackError
from edgepack.fingerprint import data_content_id, path_content_id


def check_options(cfg: DistillConfig, source: Any) -> None:
    """Refuse the classification-only options on an embedding teacher (one line naming the option)."""
    default = DistillConfig()
    for name in ("alpha_kd", "temperature"):
        if getattr(cfg, name) != getattr(default, name):
            raise EdgepackError(f"distill: '{name}' applies to text-classification teachers; {source} is an "
                                "embedding model (feature-extraction), distilled on pooled embeddings "
                                "(embedding.loss: cosine, mse or both; features / layer_map add layer terms)")


def check_classifier_options(cfg: DistillConfig, source: Any) -> None:
    """Refuse embedding-only settings on a text-classification teacher."""
    if cfg.embedding != DistillConfig().embedding:
        raise EdgepackError(f"distill: 'embedding' settings apply to embedding (feature-extraction) teachers; "
                            f"{source} is a text-classification model")


def embed(model: Any, enc: Any, pooling: str, normalize: bool, batch_size: int = 64, device: Any = None) -> np.ndarray:
    """Pooled (and, if ``normalize``, L2-normalized) embeddings (N, H) float32, in input order, no grad."""
    import torch.nn.functional as F

    from edgepack.batching import predict_rows
    from edgepack.losses import pool

    if not len(enc):
        return np.zeros((0, model.config.hidden_size), dtype=np.float32)

    def head(out: Any, batch: dict) -> Any:
        e = pool(out.last_hidden_state, batch["attention_mask"], pooling).float()  # (B, H)
        return F.normalize(e, dim=-1) if normalize else e

    return predict_rows(model, enc, head, batch_size, device).numpy()


def distill_embeddings(lm: Any, teacher: str | os.PathLike, data: DataSpec | Dataset | list, cfg: DistillConfig,
                       out: Path, work: Path, keep_work: bool = False, on_step: Any = None,
                       cache_dir: str | os.PathLike | None = None, overwrite: bool = False) -> Artifact:
    """Distill the loaded feature-extraction teacher ``lm`` (``edgepack.hf.load_model``) into a student at ``out``.

    data: texts with optional labels (a DataSpec, a Dataset or a list of texts; labels feed only the
    linear probe). Called by ``edgepack.distill.distill``, which checks ``out`` and picks ``work``.
    """
    import torch
    from edgepack.distill.layer_map import attention_overrides, layer_matches, make_projections
    from edgepack.distill.student import _layer_attr, make_student

    from edgepack.batching import encode, pad_batch
    from edgepack.objectives import EmbeddingObjective
    from edgepack.teacher_cache import Needs, build_cache, load_or_build_cache
    from edgepack.train import train

    check_options(cfg, lm.source)
    ds = as_dataset(data, "training data")
    if not ds.train_texts:
        raise EdgepackError("distill: the data has no training texts")
    if ds.train_pairs is not None:
        raise EdgepackError("distill: embedding teachers take single texts; the data has text pairs")
    pooling, normalize = lm.runtime.embedding_pooling()
    t_model, tcfg, emb = lm.model, cfg.train, cfg.embedding
    student = make_student(t_model, cfg.student, seed=tcfg.seed, overrides=attention_overrides(cfg))
    h_S, h_T = student.config.hidden_size, t_model.config.hidden_size
    n_T, n_S = (getattr(m.config, _layer_attr(m.config)) for m in (t_model, student))
    matches = layer_matches(cfg, n_T, n_S)
    torch.manual_seed(tcfg.seed)
    projection = torch.nn.Linear(h_S, h_T) if h_S != h_T else None
    feature_proj = make_projections(matches, h_S, h_T)
    if tcfg.freeze_embeddings:
        student.get_input_embeddings().weight.requires_grad_(False)

    tok = lm.tokenizer
    val = ds.eval_view(emb.eval_examples)  # the validation split (else the training texts), capped
    enc_tr = encode(tok, ds.train_texts, None, tcfg.max_length)
    enc_va = encode(tok, val.val_texts, None, tcfg.max_length)
    device = torch.device("cuda") if torch.cuda.is_available() else None
    if device is not None:
        t_model.to(device)
    work.mkdir(parents=True, exist_ok=True)
    layers = Needs.from_matches(matches)
    needs = Needs(layers.hidden, layers.attention, layers.embedding, pooled=True, pooling=pooling)
    if cache_dir is not None:
        cache = load_or_build_cache(t_model, enc_tr, needs, Path(cache_dir), lm.source, tcfg, device)
    else:
        cache = build_cache(t_model, enc_tr, needs, tcfg.eval_batch_size, cfg.cache,
                            work / "teacher_cache.safetensors", device, tcfg.progress)
    val_T = embed(t_model, enc_va, pooling, normalize, tcfg.eval_batch_size, device)
    t_model.cpu()

    def collate(idx: list[int]) -> dict:
        b = pad_batch(enc_tr, idx)
        b.update(cache.targets(idx, b["input_ids"].shape[1]))
        return b

    objective = EmbeddingObjective(student, pooling, emb.loss, projection, matches, feature_proj)
    fingerprint = {"distill": config_to_dict(cfg), "pooling": [pooling, normalize],
                   "teacher": [str(lm.source), path_content_id(lm.source)],
                   "data": [len(enc_tr), sum(enc_tr.lengths), data_content_id(ds)]}
    result = train(objective, enc_tr.lengths, collate, None, tcfg, work, fingerprint, on_step, desc="distill")
    student = objective.student.cpu().eval()
    metrics = _evaluate(student, objective.proj, cache, enc_tr, ds, val, enc_va, val_T, pooling, normalize, cfg)

    art = _write(student, lm, teacher, ds, cfg, metrics, result, len(enc_tr), len(enc_va), out, overwrite)
    if not keep_work:
        shutil.rmtree(work, ignore_errors=True)
    return art


def _write(student: Any, lm: Any, teacher: Any, ds: Dataset, cfg: DistillConfig, metrics: dict, result: Any,
           n_train: int, n_val: int, out: Path, overwrite: bool) -> Artifact:
    """The student's ``hf`` artifact: task feature-extraction, the teacher's pooling in its runtime contract."""
    from edgepack.distill.student import _layer_attr, student_layers

    from edgepack.hf import count_parameters, hf_inputs_spec, save_model

    pooling, normalize = lm.runtime.embedding_pooling()
    h_S, h_T = student.config.hidden_size, lm.model.config.hidden_size
    with ArtifactWriter(out, overwrite=overwrite, sources=(teacher,)) as w:
        files = save_model(student, lm.tokenizer, w.dir)
        t_weights = Path(lm.source) / "model.safetensors"
        metrics = {**metrics, "params": count_parameters(student), "teacher_params": count_parameters(lm.model),
                   "size_bytes": (w.dir / files["weights"]).stat().st_size,
                   "teacher_size_bytes": t_weights.stat().st_size if t_weights.is_file() else None,
                   "embedding_dim": h_S, "teacher_embedding_dim": h_T, "train_seconds": round(result.seconds, 1),
                   "steps": result.steps, "resumed_from_step": result.resumed_from_step, "history": result.history}
        n_T = getattr(lm.model.config, _layer_attr(lm.model.config))
        extra = {"teacher": str(lm.source), "student_layers_from_teacher":
                 list(student_layers(cfg.student, n_T)) if cfg.student.init != "random" else [],
                 "embedding_space": "teacher" if h_S == h_T else
                 f"student's own {h_S}-dim space (the {h_S}->{h_T} training projection was dropped): "
                 "re-embed a teacher-built index",
                 "data": ds.source, "train_examples": n_train, "val_examples": n_val}
        return w.commit(stage="distill", format="hf", task="feature-extraction", files=files, labels=[],
                        inputs=hf_inputs_spec(lm.tokenizer), parent=lm.artifact, config=config_to_dict(cfg),
                        metrics=metrics, extra=extra, runtime=RuntimeContract(pooling=pooling, normalize=normalize))


def _evaluate(student: Any, proj: Any, cache: Any, enc_tr: Any, ds: Dataset, val: Dataset, enc_va: Any,
              val_T: np.ndarray, pooling: str, normalize: bool, cfg: DistillConfig) -> dict:
    """embed_metrics on the validation texts; the linear probe when both splits are labeled. A narrower
    student also gets ``projected_mean_cosine_vs_teacher`` (through the training projection, then dropped)."""
    import torch

    from edgepack.batching import Encoded
    from edgepack.embed_metrics import embedding_report, l2_normalize, mean_cosine

    bs = cfg.train.eval_batch_size
    val_S = embed(student, enc_va, pooling, normalize, bs)
    probe = None
    n = min(cfg.embedding.probe_examples, len(enc_tr))
    if n and ds.train_labels is not None and val.val_labels is not None:
        head = Encoded(enc_tr.input_ids[:n], enc_tr.token_type_ids[:n] if enc_tr.token_type_ids else None,
                       enc_tr.pad_id)
        train_S = embed(student, head, pooling, normalize, bs)
        train_T = cache.head_rows(list(range(n))).numpy()  # (n, H_T) pooled, unnormalized
        probe = (train_S, l2_normalize(train_T) if normalize else train_T, ds.train_labels[:n], val.val_labels)
    metrics = embedding_report(val_S, val_T, probe=probe, num_classes=ds.num_labels or None)
    if proj is not None:
        with torch.inference_mode():
            projected = proj.cpu()(torch.from_numpy(embed(student, enc_va, pooling, False, bs))).numpy()
        metrics["projected_mean_cosine_vs_teacher"] = mean_cosine(projected, val_T)
    return metrics
