"""Pruning recovery on tiny random BERTs: a distillation objective run by the core trainer (edgepack.train).

It moves the pruned model toward its teacher (KD for classifiers, cosine for embedding models), keeps
frozen embeddings and unstructured masks fixed, shows a progress bar, and resumes after an interrupt
to the same weights as an uninterrupted run.
"""

import copy
import dataclasses

import pytest

torch = pytest.importorskip("torch")

from edgepack.errors import EdgepackError
from edgepack.testing import SAMPLE_TEXTS, logits

LABELS = [1, 0, 1, 0, 1, 0, 0]


def _logits(model, tok, texts=SAMPLE_TEXTS):
    return logits(model, tok, texts)


def test_recovery_pulls_pruned_model_toward_teacher(lm):
    from edgepack.prune import recovery, structured
    from edgepack.prune.config import RecoveryConfig

    teacher = copy.deepcopy(lm.model)
    with torch.no_grad():  # a confident teacher: a random tiny model's outputs are nearly uniform
        teacher.classifier.weight.mul_(200.0)
    structured.prune_ffn(lm.model, {0: range(56), 1: range(56)})
    texts = SAMPLE_TEXTS * 8

    def kl():
        t, s = _logits(teacher, lm.tokenizer, texts), _logits(lm.model, lm.tokenizer, texts)
        return float(torch.nn.functional.kl_div(s.log_softmax(-1), t.log_softmax(-1), log_target=True,
                                                reduction="batchmean"))

    start = kl()
    stats = recovery.recover(lm.model, teacher, lm.tokenizer, texts, None,
                             RecoveryConfig(steps=30, batch_size=8, lr=3e-3, alpha_kd=1.0, warmup_ratio=0.0))
    assert stats["steps"] == 30 and not lm.model.training
    assert kl() < 0.5 * start


def test_recovery_can_keep_word_embeddings_fixed(lm):
    from edgepack.prune import recovery
    from edgepack.prune.config import RecoveryConfig

    teacher = copy.deepcopy(lm.model)
    with torch.no_grad():  # a teacher that disagrees, so the student gets real gradients
        teacher.classifier.weight.mul_(50.0)
    emb = lm.model.get_input_embeddings().weight
    emb_before, layer_before = emb.detach().clone(), lm.model.classifier.weight.detach().clone()
    recovery.recover(lm.model, teacher, lm.tokenizer, SAMPLE_TEXTS * 4, None,
                     RecoveryConfig(steps=5, batch_size=8, lr=1e-2, weight_decay=0.0, freeze_embeddings=True))
    assert torch.equal(emb.detach(), emb_before) and emb.requires_grad  # unchanged, and trainable again
    assert not torch.equal(lm.model.classifier.weight.detach(), layer_before)


def test_unstructured_masks_stay_enforced_during_recovery(lm):
    from edgepack.prune import recovery, unstructured
    from edgepack.prune.config import RecoveryConfig

    teacher = copy.deepcopy(lm.model)
    with torch.no_grad():
        teacher.classifier.weight.mul_(50.0)
    unstructured.magnitude_prune(lm.model, 0.5)
    masked = {n: m for n, m in lm.model.named_modules() if hasattr(m, "weight_mask")}
    before = {n: (m.weight_mask.clone(), m.weight_orig.detach().clone()) for n, m in masked.items()}
    recovery.recover(lm.model, teacher, lm.tokenizer, SAMPLE_TEXTS * 4, LABELS * 4,
                     RecoveryConfig(steps=5, batch_size=8, lr=1e-2, weight_decay=0.0))
    for n, m in masked.items():
        mask, orig = before[n]
        assert torch.equal(m.weight_mask, mask)
        assert not torch.equal(m.weight_orig.detach(), orig)  # kept weights trained
    unstructured.make_permanent(lm.model)
    assert unstructured.target_sparsity(lm.model) == pytest.approx(0.5, abs=1e-3)
    for n, (mask, _) in before.items():
        assert torch.all(dict(lm.model.named_modules())[n].weight.detach()[mask == 0] == 0)


def test_embedding_model_recovery_raises_cosine_agreement(tiny_encoder, tmp_path):
    from edgepack.prune import recovery, structured
    from edgepack.prune.config import RecoveryConfig
    from edgepack.prune.evaluate import embedding_agreement
    from transformers import AutoModel, AutoTokenizer

    from edgepack.testing import make_tiny_model

    # the teacher: another random encoder (same vocabulary), far from the student (cosine near 0)
    teacher = AutoModel.from_pretrained(make_tiny_model(tmp_path / "t", task="feature-extraction", seed=5)).eval()
    student = AutoModel.from_pretrained(tiny_encoder, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    tok = AutoTokenizer.from_pretrained(tiny_encoder)
    structured.prune_ffn(student, {0: range(48), 1: range(48)})
    texts = SAMPLE_TEXTS * 8

    def distance():
        return 1.0 - embedding_agreement(student, teacher, tok, texts)["cosine_mean"]

    start = distance()
    stats = recovery.recover(student, teacher, tok, texts, None,
                             RecoveryConfig(steps=30, batch_size=8, lr=3e-3, warmup_ratio=0.0))
    assert stats["steps"] == 30 and stats["loss_last"] < 0.2 * stats["loss_first"]
    assert start > 0.5 and distance() < 0.1 * start


def test_recovery_shows_progress_and_runs_on_the_core_trainer(lm, monkeypatch, capfd):
    from edgepack.prune import recovery
    from edgepack.prune.config import RecoveryConfig

    import edgepack.train

    calls = []
    real = edgepack.train.train

    def spy(*args, **kwargs):
        calls.append(kwargs.get("desc"))
        return real(*args, **kwargs)

    monkeypatch.setattr(edgepack.train, "train", spy)
    teacher = copy.deepcopy(lm.model)
    stats = recovery.recover(lm.model, teacher, lm.tokenizer, SAMPLE_TEXTS * 2, LABELS * 2,
                             RecoveryConfig(steps=6, batch_size=4), progress=True)
    assert calls == ["recovery"]
    err = capfd.readouterr().err
    assert "recovery" in err and "6/6" in err  # the tqdm bar
    # 14 texts in batches of 4 = 4 steps per epoch: 6 steps take 2 epochs
    assert (stats["steps"], stats["epochs"], stats["examples"], stats["resumed_from_step"]) == (6, 2, 14, 0)


class Killed(Exception):
    pass


def test_recovery_resumes_after_interrupt_to_the_same_weights(tiny_bert, tmp_path):
    from edgepack.prune.api import prune
    from edgepack.prune.config import PruneConfig, RecoveryConfig
    from safetensors.torch import load_file

    from edgepack.data import Dataset

    data = Dataset(SAMPLE_TEXTS * 4, LABELS * 4, SAMPLE_TEXTS, LABELS, ["negative", "positive"])
    # 28 texts in batches of 4 = 7 steps per epoch, 12 steps = 2 epochs; removed neurons and masks both
    rec = RecoveryConfig(steps=12, batch_size=4, lr=1e-2, checkpoint_every=4)
    cfg = PruneConfig(ffn_fraction=0.5, sparsity=0.3, latency_runs=0, recovery=rec)
    ref = prune(tiny_bert, data, cfg, tmp_path / "ref", progress=False)

    def kill_at_10(step):
        if step == 10:
            raise Killed("simulated kill at step 10")

    with pytest.raises(Killed):
        prune(tiny_bert, data, cfg, tmp_path / "run", progress=False, on_step=kill_at_10)
    assert (tmp_path / ".run.work" / "checkpoint" / "state.json").is_file()
    assert not (tmp_path / "run").exists()
    other = dataclasses.replace(cfg, recovery=dataclasses.replace(rec, lr=2e-2))
    with pytest.raises(EdgepackError, match="holds a checkpoint of a different run"):
        prune(tiny_bert, data, other, tmp_path / "run", progress=False)
    got = prune(tiny_bert, data, cfg, tmp_path / "run", progress=False)
    assert not (tmp_path / ".run.work").exists() and not (tmp_path / ".ref.work").exists()
    r_ref, r_got = ref.extra["recovery"], got.extra["recovery"]
    # checkpoints at steps 4, 7 (end of epoch 1) and 8: the killed run resumes mid-epoch-2 from step 8
    assert r_got["resumed_from_step"] == 8 and r_ref["resumed_from_step"] == 0
    assert r_got["steps"] == r_ref["steps"] == 12 and r_got["epochs"] == 2
    assert r_got["loss_first"] == pytest.approx(r_ref["loss_first"], abs=1e-7)
    assert r_got["loss_last"] == pytest.approx(r_ref["loss_last"], abs=1e-6)
    w_ref, w_got = load_file(ref.file("weights")), load_file(got.file("weights"))
    assert w_ref.keys() == w_got.keys()
    for k in w_ref:
        torch.testing.assert_close(w_got[k], w_ref[k], atol=1e-6, rtol=0)
    assert got.metrics["model_sparsity"] == ref.metrics["model_sparsity"] > 0
