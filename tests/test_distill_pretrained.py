"""Pretrained students with their own tokenizer, feature transfer rules, transfer sets and the report's comparison."""

import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("yaml")

from edgepack.distill.api import distill
from edgepack.distill.configs import DistillConfig, TransferSettings
from edgepack.distill.layer_map import default_layer_map
from edgepack.distill.student import StudentConfig
from edgepack.distill.transfer import augment, transfer_texts

from edgepack.config import config_from_dict
from edgepack.data import DataSpec, load_data
from edgepack.errors import EdgepackError
from edgepack.testing import SAMPLE_TEXTS, make_tiny_model, varied_texts, write_labelled_csv
from edgepack.train import TrainConfig

FAST = TrainConfig(epochs=2, batch_size=8, lr=3e-3, progress=False, max_length=32)


def make_tiny_roberta(out, texts, hidden=48, layers=3, heads=4):
    """A random RobertaModel (feature extraction) with a byte-level BPE tokenizer trained on ``texts``."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import RobertaConfig, RobertaModel, RobertaTokenizerFast

    out.mkdir(parents=True, exist_ok=True)
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(texts, vocab_size=400, min_frequency=1,
                            special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    bpe.save_model(str(out))
    tok = RobertaTokenizerFast(vocab_file=str(out / "vocab.json"), merges_file=str(out / "merges.txt"),
                               model_max_length=64)
    cfg = RobertaConfig(vocab_size=len(tok), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                        intermediate_size=64, max_position_embeddings=70, pad_token_id=tok.pad_token_id,
                        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, type_vocab_size=1)
    torch.manual_seed(1)
    RobertaModel(cfg).save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("pstu")
    teacher = make_tiny_model(d / "teacher", layers=4, labels=["neg", "pos"], seed=3)
    texts = varied_texts(48)
    write_labelled_csv(d / "data.csv", 48)
    (d / "unlabeled.txt").write_text("\n".join(f"{a} {b}" for a, b in zip(texts, reversed(texts))) + "\n\n")
    roberta = make_tiny_roberta(d / "roberta", texts + list(SAMPLE_TEXTS))
    return {"dir": d, "teacher": teacher, "data": DataSpec(path=str(d / "data.csv"), val_fraction=0.25),
            "roberta": roberta, "unlabeled": d / "unlabeled.txt"}


def test_pretrained_config_is_checked():
    with pytest.raises(EdgepackError, match=r"^model is required with init='pretrained' \(a model folder or 'hf' "
                                            r"artifact\)$"):
        StudentConfig(init="pretrained")
    with pytest.raises(EdgepackError, match="^model is only used with init='pretrained', not 'truncated'$"):
        StudentConfig(init="truncated", model="x")
    with pytest.raises(EdgepackError, match=r"^hidden_size does not apply to init='pretrained' \(the model's own "
                                            r"shape is used\)$"):
        StudentConfig(init="pretrained", model="x", hidden_size=64)
    with pytest.raises(EdgepackError, match=r"^transfer.augment_copies must be >= 1 when the transfer set has no "
                                            r"file \(path: null\)$"):
        DistillConfig(transfer=TransferSettings())
    cfg = config_from_dict(DistillConfig, {"student": {"init": "pretrained", "model": "/m"},
                                           "transfer": {"path": "t.txt", "augment_copies": 2}})
    assert cfg.student.model == "/m" and cfg.transfer == TransferSettings(path="t.txt", augment_copies=2)


def test_default_map_for_deeper_students():
    # every teacher block once, the last by the last student block
    assert [(m.layer_T, m.layer_S) for m in default_layer_map(4, 6)] == [(0, 1), (1, 2), (2, 4), (3, 5)]
    assert [(m.layer_T, m.layer_S) for m in default_layer_map(2, 7)] == [(0, 3), (1, 6)]
    assert [(m.layer_T, m.layer_S) for m in default_layer_map(3, 3)] == [(0, 0), (1, 1), (2, 2)]


def test_augmentation_is_seeded_and_perturbs():
    import random

    text = "the plot is thin and the jokes fall flat but the cast is great"
    a = augment(text, random.Random(1), 0.2, 0.1, 0.2, "[MASK]")
    assert a == augment(text, random.Random(1), 0.2, 0.1, 0.2, "[MASK]") and a != text
    assert sorted(augment(text, random.Random(2), 0.0, 0.0, 0.5, None).split()) == sorted(text.split())  # swaps only
    assert augment("dull", random.Random(0), 0.99, 0.0, 0.0, None) == "dull"  # at least one word is kept
    cfg = TransferSettings(augment_copies=2, max_texts=3, seed=5)
    got = transfer_texts(cfg, ["a b c d", "e f g h", "i j k l", "m n o p", "q r s t"])
    assert len(got) == 6 and got == transfer_texts(cfg, ["a b c d", "e f g h", "i j k l", "m n o p", "q r s t"])


def test_hidden_transfer_across_tokenizers_is_refused(setup, tmp_path):
    first = load_data(setup["data"]).train_texts[0]
    for features in (("hidden",), ("attention",)):
        cfg = DistillConfig(student=StudentConfig(init="pretrained", model=str(setup["roberta"])), features=features,
                            train=FAST)
        want = (f"{features[0]} transfer needs the same tokenization, but the student's tokenizer splits training "
                f"text 0 ({first[:40]!r}) differently from the teacher's; distill the logits only (no features, "
                "no layer_map)")
        with pytest.raises(EdgepackError) as e:
            distill(setup["teacher"], setup["data"], cfg, tmp_path / features[0])
        assert str(e.value) == want


def test_wider_deeper_pretrained_student_learns_hidden_states_through_a_projection(setup, tmp_path):
    # same WordPiece vocabulary as the teacher, so the tokenizations agree; 6 blocks of width 48 vs 4 of 32
    student = make_tiny_model(tmp_path / "bert6", task="feature-extraction", layers=6, hidden=48, heads=4, seed=1)
    cfg = DistillConfig(student=StudentConfig(init="pretrained", model=str(student)), features=("hidden",),
                        alpha_kd=0.5, train=TrainConfig(epochs=4, batch_size=8, lr=3e-3, progress=False, max_length=32))
    art = distill(setup["teacher"], setup["data"], cfg, tmp_path / "s")
    losses = [h["train_loss"] for h in art.metrics["history"]]
    assert losses[-1] < 0.7 * losses[0], losses
    assert [(m["layer_T"], m["layer_S"]) for m in art.extra["layer_map"]] == [(0, 1), (1, 2), (2, 4), (3, 5)]
    from edgepack.hf import load_model

    lm = load_model(art.path)
    assert (lm.model.config.hidden_size, lm.model.config.num_hidden_layers, lm.labels) == (48, 6, ["neg", "pos"])


def test_transfer_set_is_labelled_by_the_teacher(setup, tmp_path):
    from edgepack.distill.transfer import read_texts
    from safetensors.torch import load_file

    from edgepack.batching import encode, predict_logits
    from edgepack.hf import load_model

    cfg = DistillConfig(train=FAST, student=StudentConfig(num_layers=2),
                        transfer=TransferSettings(path=str(setup["unlabeled"]), augment_copies=1, compare=False))
    art = distill(setup["teacher"], setup["data"], cfg, tmp_path / "s", cache_dir=tmp_path / "cache")
    texts = transfer_texts(cfg.transfer, [], "[MASK]")
    assert len(texts) == 2 * len(read_texts(str(setup["unlabeled"]))) == 2 * 48
    assert art.extra["transfer_examples"] == len(texts) and "transfer_comparison" not in art.metrics
    caches = {len(t["logits"]): t["logits"] for t in map(load_file, (tmp_path / "cache").glob("*.safetensors"))}
    assert sorted(caches) == [36, 96]  # the training split's cache (shared) and the transfer set's
    lm = load_model(setup["teacher"])
    want = predict_logits(lm.model, encode(lm.tokenizer, texts, None, 32))
    assert want.abs().max() > 1e-3 and torch.allclose(caches[96], want, atol=1e-5)


RECIPE = """
name: pstu
output: {out}
model: {teacher}
data: {{path: {csv}, val_fraction: 0.25}}
defaults: {{max_length: 32, seed: 0, progress: false}}
passes:
  - distill:
      student: {{init: pretrained, model: roberta}}
      transfer: {{path: unlabeled.txt, augment_copies: 1}}
      train: {{epochs: 2, batch_size: 8, lr: 3.0e-3}}
bench: {{batch_sizes: [1], threads: 1, texts: 4, repeats: 1, peer: false}}
"""


def test_recipe_distils_bert_into_a_roberta_with_a_transfer_set(setup, tmp_path):
    from edgepack.pipeline import load_recipe, run_recipe

    from edgepack.hf import load_model

    d = setup["dir"]
    path = d / "recipe.yaml"  # relative student / transfer paths start at the recipe's folder
    path.write_text(RECIPE.format(out=tmp_path / "run", teacher=setup["teacher"], csv=d / "data.csv"))
    run_recipe(load_recipe(path), log=lambda s: None)
    art_dir = tmp_path / "run" / "student"
    manifest = json.loads((art_dir / "manifest.json").read_text())
    assert manifest["extra"]["student_model"] == str(setup["roberta"])
    assert [i["name"] for i in manifest["inputs"]] == ["input_ids", "attention_mask"]  # RoBERTa's, no segments
    lm = load_model(art_dir)  # the student's own BPE tokenizer is saved with it
    assert lm.model.config.model_type == "roberta" and "merges.txt" in manifest["files"]
    assert lm.tokenizer("a gripping film")["input_ids"] != load_model(setup["teacher"]).tokenizer(
        "a gripping film")["input_ids"]
    c = manifest["metrics"]["transfer_comparison"]
    assert c["steps"] == c["steps_without"] == manifest["metrics"]["steps"] and c["transfer_texts"] == 96
    assert c["accuracy_a"] == manifest["metrics"]["accuracy"]
    assert abs(c["diff"] - (c["accuracy_a"] - c["accuracy_b"])) < 1e-12
    assert c["ci95"][0] <= c["diff"] <= c["ci95"][1]
    report = json.loads((tmp_path / "run" / "report" / "report.json").read_text())
    assert report["transfer"] == [{"step": "student", **c}]
    md = (tmp_path / "run" / "report" / "report.md").read_text()
    line = next(l for l in md.splitlines() if l.startswith("- student: with 96 transfer texts"))
    assert f"{100 * c['accuracy_a']:.1f}%, without {100 * c['accuracy_b']:.1f}% (seed 0, {c['steps']} optimizer" in line
    assert "paired 95% CI" in line


def test_paired_bootstrap_interval_and_its_wording():
    import numpy as np

    from edgepack.scoring import describe_difference, paired_bootstrap_ci

    gold = np.array([0, 1] * 50)
    a, b = gold.copy(), gold.copy()
    b[:20] = 1 - b[:20]  # b is wrong on 20 of 100 examples, a on none
    d = paired_bootstrap_ci(a, b, gold)
    assert (d["accuracy_a"], d["accuracy_b"], d["n"]) == (1.0, 0.8, 100) and d["diff"] == pytest.approx(0.2)
    assert 0.1 < d["ci95"][0] < 0.2 < d["ci95"][1] < 0.3
    assert describe_difference(d, "A", "B") == (f"A is more accurate than B: +20.0 points (paired 95% CI "
                                                f"{100 * d['ci95'][0]:+.1f} to {100 * d['ci95'][1]:+.1f}, n=100)")
    flip = paired_bootstrap_ci(b, a, gold)
    assert describe_difference(flip, "B", "A").startswith("B is less accurate than A: -20.0 points")
    c = b.copy()
    c[20:22] = 1 - c[20:22]  # two more mistakes elsewhere: the difference (-2 points) is inside the noise
    assert describe_difference(paired_bootstrap_ci(c, b, gold), "C", "B").endswith(
        "the interval holds 0, so no difference is shown")
    with pytest.raises(ValueError, match="need two equal, non-empty prediction sets"):
        paired_bootstrap_ci(a[:3], b, gold)
