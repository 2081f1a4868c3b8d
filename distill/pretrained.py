"""A pretrained student of any supported family, with its own tokenizer, and what it can learn from a teacher.

``load_pretrained_student(path, labels)`` loads a local HF folder, PEFT adapter or ``hf`` artifact
(``edgepack.hf.load_model``). A classifier keeps its head (it must predict as many labels as the teacher);
a feature-extraction checkpoint (a plain encoder, e.g. a sentence-embedding model) gets a fresh
classification head sized to the teacher's labels.

Each model tokenizes the raw texts itself. Logit distillation always works (the teacher's soft targets are
per example). Hidden-state / embedding-output transfer is per token, so it needs the *same tokenization*:
the student's tokenizer must give exactly the teacher's token ids on every training text (widths may
differ: a learned projection maps the student's width to the teacher's); so do attention maps (with
unequal head counts both are averaged over heads first, ``edgepack.losses.attention_kl``).
``check_feature_transfer`` raises one EdgepackError line naming why otherwise.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgepack.errors import EdgepackError


def load_pretrained_student(path: str, labels: list[str], seed: int = 0, overrides: dict | None = None):
    """``(model, tokenizer, source)``: a text-classification model for the teacher's ``labels`` in train mode.

    overrides: config attributes set before the weights load (e.g. no attention dropout).
    """
    import torch
    from transformers import AutoModelForSequenceClassification

    from edgepack.hf import load_model

    lm = load_model(path)
    n = len(labels)
    id2label, label2id = dict(enumerate(labels)), {l: i for i, l in enumerate(labels)}
    config = lm.model.config.__class__.from_dict(lm.model.config.to_dict())
    for k, v in (overrides or {}).items():
        if hasattr(config, k):
            setattr(config, k, v)
    if lm.task == "text-classification":
        if config.num_labels != n:
            raise EdgepackError(f"the pretrained student {lm.source} predicts {config.num_labels} labels but the "
                                f"teacher {n}; start from its encoder (a feature-extraction checkpoint) instead")
        config.id2label, config.label2id = id2label, label2id
        model = lm.model.__class__(config)
        model.load_state_dict(lm.model.state_dict())
    else:  # feature extraction: the encoder's weights under a fresh, seeded classification head
        config.num_labels, config.id2label, config.label2id = n, id2label, label2id
        config.architectures = None
        torch.manual_seed(seed)
        model = AutoModelForSequenceClassification.from_config(config)
        missing, unexpected = model.base_model.load_state_dict(lm.model.state_dict(), strict=False)
        lost = [k for k in missing + unexpected if not k.startswith("pooler.")]
        if lost:
            raise EdgepackError(f"cannot put a classification head on {lm.source}: weights {lost[:3]} do not fit "
                                f"{type(model).__name__}")
    return model.train(), lm.tokenizer, Path(lm.source)


def same_tokenization(enc_T: Any, enc_S: Any) -> int | None:
    """None when both encodings hold the same token ids for every example, else the first example that differs."""
    for i, (a, b) in enumerate(zip(enc_T.input_ids, enc_S.input_ids)):
        if a != b:
            return i
    return None if len(enc_T) == len(enc_S) else min(len(enc_T), len(enc_S))


def check_feature_transfer(matches: tuple, differs_at: int | None, texts: list[str]) -> None:
    """Refuse feature matches when the two tokenizations differ (see the module docstring), in one line."""
    kinds = sorted({m.feature for m in matches})
    if kinds and differs_at is not None:
        text = texts[differs_at] if differs_at < len(texts) else ""
        raise EdgepackError(f"{'/'.join(kinds)} transfer needs the same tokenization, but the student's tokenizer "
                            f"splits training text {differs_at} ({text[:40]!r}) differently from the teacher's; "
                            "distill the logits only (no features, no layer_map)")
