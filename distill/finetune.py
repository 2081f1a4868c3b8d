"""``finetune(base, data, FinetuneConfig(...), out) -> Artifact``: make a teacher, fully or with LoRA.

The base may be a Hugging Face folder (an encoder such as all-MiniLM-L6-v2 gets a fresh
classification head) or an ``hf`` artifact. With ``FinetuneConfig(lora=LoraSettings(...))`` only the
LoRA matrices and the classifier train (peft); the artifact then holds the merged model
(``merge_and_unload``) and, under ``adapter/``, the adapter itself. The merge is checked: merged logits
must match the adapter model's within ``merge_tolerance`` on the validation texts (recorded as
``merge_max_abs_diff``).

``LoraSettings(quantize_base="8bit"|"4bit")`` trains the adapter on a bitsandbytes-quantized base
(QLoRA; needs a CUDA GPU and bitsandbytes). The adapter is then merged into a freshly loaded
full-precision base, never into quantized weights; the check compares against that fp32 base with
the adapter applied, and the quantized model's own gap is recorded as ``quantized_max_abs_diff``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from edgepack.distill.configs import FinetuneConfig, LoraSettings

from edgepack.artifact import Artifact, ArtifactWriter, is_artifact
from edgepack.config import config_to_dict
from edgepack.data import Dataset, DataSpec
from edgepack.errors import EdgepackError, MissingDependencyError
from edgepack.fingerprint import data_content_id, path_content_id
from edgepack.outputs import check_output


def _base_dir(base: str | os.PathLike) -> tuple[Path, Artifact | None]:
    src = Path(base).expanduser().resolve()
    if is_artifact(src):
        art = Artifact.open(src).require(format="hf")
        return art.path, art
    if (src / "adapter_config.json").is_file():
        raise EdgepackError(f"{src} is a LoRA adapter; fine-tune its base model, or merge it first "
                            "(edgepack export / hf.load_model merge adapters when loading)")
    if not (src / "config.json").is_file():
        raise EdgepackError(f"base model not found: {src} (need a Hugging Face folder with config.json)")
    return src, None


def _load_base(src: Path, labels: list[str], quantize: str | None = None) -> Any:
    from transformers import AutoConfig, AutoModelForSequenceClassification

    from edgepack.hf import check_supported

    check_supported(AutoConfig.from_pretrained(src))
    kw: dict = {"num_labels": len(labels), "id2label": dict(enumerate(labels)),
                "label2id": {n: i for i, n in enumerate(labels)}, "ignore_mismatched_sizes": True}
    if quantize:
        try:
            import bitsandbytes  # noqa: F401
            from transformers import BitsAndBytesConfig
        except ImportError:
            raise MissingDependencyError("bitsandbytes", "gpu-tools", f"LoRA on a {quantize} base") from None
        kw["quantization_config"] = BitsAndBytesConfig(load_in_8bit=quantize == "8bit",
                                                       load_in_4bit=quantize == "4bit")
    else:
        kw["dtype"] = "float32"
    return AutoModelForSequenceClassification.from_pretrained(src, **kw)


def _wrap_lora(model: Any, lora: LoraSettings) -> Any:
    try:
        from peft import LoraConfig, TaskType, get_peft_model, prepare_model_for_kbit_training
    except ImportError:
        raise MissingDependencyError("peft", "tools", "LoRA fine-tuning") from None
    from edgepack.families import family_of

    if lora.quantize_base:
        model = prepare_model_for_kbit_training(model)
    # None: peft's default for the model type; families peft has none for (ModernBERT, MPNet, DistilBERT)
    # get theirs from edgepack.families (attention query/value; ModernBERT's fused Wqkv)
    fam = family_of(model.config.model_type)
    targets = lora.target_modules or fam.lora_targets
    # the classification head beyond `classifier` (DeBERTa's pooler, ModernBERT's head, DistilBERT's
    # pre_classifier) trains in full and is saved with the adapter, like the classifier itself
    pcfg = LoraConfig(task_type=TaskType.SEQ_CLS, r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                      target_modules=list(targets) if targets else None,
                      modules_to_save=list(fam.head_modules) or None)
    return get_peft_model(model, pcfg)


def finetune(base: str | os.PathLike, data: DataSpec | Dataset, cfg: FinetuneConfig, out: str | os.PathLike,
             work_dir: str | os.PathLike | None = None, keep_work: bool = False,
             on_step: Any = None, overwrite: bool = False) -> Artifact:
    """Fine-tune ``base`` for text classification on ``data``; write an ``hf`` artifact at ``out``.

    metrics: accuracy, macro_f1 (validation, best epoch), params, size_bytes, train_seconds, history;
    with LoRA also merge_max_abs_diff and trainable_params. Resumes from ``work_dir`` after an interrupt.
    """
    import torch
    from edgepack.distill.api import resolve_data
    from transformers import AutoTokenizer

    from edgepack.batching import classification_metrics, encode, pad_batch, predict_logits
    from edgepack.hf import count_parameters, hf_inputs_spec, save_model
    from edgepack.objectives import ClassifierObjective
    from edgepack.train import train, work_dir_for

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    out = check_output(out, overwrite, (base,))
    work = Path(work_dir) if work_dir else work_dir_for(out)
    src, parent = _base_dir(base)
    ds = resolve_data(data, parent.labels if parent else [])
    if ds.train_labels is None:
        raise EdgepackError("fine-tuning needs labelled data (set label_column)")
    tcfg, lora = cfg.train, cfg.lora
    torch.manual_seed(tcfg.seed)
    model = _load_base(src, ds.label_names, lora.quantize_base if lora else None)
    if lora:
        model = _wrap_lora(model, lora)
    elif tcfg.freeze_embeddings:
        model.get_input_embeddings().weight.requires_grad_(False)
    tok = AutoTokenizer.from_pretrained(src)
    enc_tr = encode(tok, ds.train_texts, ds.train_pairs, tcfg.max_length)
    enc_va = encode(tok, ds.val_texts, ds.val_pairs, tcfg.max_length)

    def collate(idx: list[int]) -> dict:
        return {**pad_batch(enc_tr, idx), "labels": torch.tensor([ds.train_labels[i] for i in idx])}

    def evaluate(obj: Any) -> dict:
        dev = next(obj.parameters()).device
        return classification_metrics(predict_logits(obj.model, enc_va, tcfg.eval_batch_size, dev),
                                      ds.val_labels, ds.num_labels)

    objective = ClassifierObjective(model)
    fingerprint = {"lora": config_to_dict(lora) if lora else None, "base": [str(src), path_content_id(src)],
                   "data": [len(enc_tr), sum(enc_tr.lengths), ds.label_names, data_content_id(ds)]}
    result = train(objective, enc_tr.lengths, collate, evaluate, tcfg, work, fingerprint, on_step, desc="finetune")
    model = objective.model.eval()
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)

    with ArtifactWriter(out, overwrite=overwrite, sources=(base,)) as w:
        files, extra, merge = {}, {"base_model": str(src), "data": ds.source}, {}
        if lora:
            model, merge = _merge_lora(model, src, ds.label_names, enc_va, tcfg.eval_batch_size, w.dir / "adapter",
                                       cfg.merge_tolerance, lora)
            files.update({"adapter_config": "adapter/adapter_config.json",
                          "adapter_weights": "adapter/adapter_model.safetensors"})
            extra["adapter"] = "adapter"
        files.update(save_model(model, tok, w.dir))
        if lora:
            tok.save_pretrained(w.dir / "adapter")
            model.config.to_json_file(w.dir / "adapter" / "config.json")  # label names for hf.load_model
        metrics = {**{k: result.best[k] for k in ("accuracy", "macro_f1")}, **merge,
                   "params": count_parameters(model), "trainable_params": trainable,
                   "size_bytes": (w.dir / files["weights"]).stat().st_size, "train_seconds": round(result.seconds, 1),
                   "steps": result.steps, "best_epoch": result.best.get("epoch"), "history": result.history}
        art = w.commit(stage="finetune", format="hf", task="text-classification", files=files,
                       labels=ds.label_names, inputs=hf_inputs_spec(tok), parent=parent,
                       config=config_to_dict(cfg), metrics=metrics, extra=extra)
    if not keep_work:
        shutil.rmtree(work, ignore_errors=True)
    return art


def _merge_lora(peft_model: Any, src: Path, labels: list[str], enc_va: Any, bs: int, adapter_dir: Path,
                tol: float, lora: LoraSettings) -> tuple[Any, dict]:
    """Save the adapter, merge it into a full-precision base and check merged vs adapter logits."""
    from peft import PeftModel

    from edgepack.batching import Encoded, predict_logits

    peft_model.save_pretrained(adapter_dir, safe_serialization=True)
    n = min(len(enc_va), 256)
    probe = Encoded(enc_va.input_ids[:n], enc_va.token_type_ids[:n] if enc_va.token_type_ids else None,
                    enc_va.pad_id)
    info = {}
    if lora.quantize_base:  # reference: the adapter on a fresh fp32 base (the quantized model differs)
        q_logits = predict_logits(peft_model, probe, bs, next(peft_model.parameters()).device)
        peft_model = PeftModel.from_pretrained(_load_base(src, labels), adapter_dir).eval()
    ref = predict_logits(peft_model, probe, bs)
    merged = peft_model.merge_and_unload().eval()
    got = predict_logits(merged, probe, bs)
    diff = float((got - ref).abs().max())
    info["merge_max_abs_diff"], info["merge_tolerance"] = diff, tol
    if lora.quantize_base:
        info["quantized_max_abs_diff"] = float((got - q_logits).abs().max())
    if not diff <= tol:
        raise EdgepackError(f"LoRA merge check failed: merged logits differ from the adapter model's by {diff:.2e} "
                            f"(> {tol:.1e})")
    return merged, info
