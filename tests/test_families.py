"""Six encoder families through every stage, on tiny random models (edgepack.testing.make_tiny_family_model).

bert and distilbert (WordPiece, pad 0), roberta (byte-level BPE, pad 1), mpnet (WordPiece, pad 1),
deberta-v2 (Unigram/Metaspace, v3 layout: relative attention, no token types) and modernbert (byte-level
BPE with its special tokens last, pad 304; alternating global/16-token local attention, GLU FFN): export
parity with torch, ONNX Runtime fusion, dynamic INT8, the lean runtime against torch, FFN/head/layer
pruning (and the families that refuse heads), distillation from teacher blocks, LoRA fine-tuning.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")
pytest.importorskip("optimum.exporters.onnx")

from edgepack.errors import EdgepackError
from edgepack.testing import FAMILIES, SAMPLE_TEXTS, make_tiny_family_model, write_labelled_csv
from edgepack.train import TrainConfig

# Longer than ModernBERT's 16-token local window, so its local layers really mask something.
TEXTS = SAMPLE_TEXTS + [" ".join(SAMPLE_TEXTS[:3])]
PAD = {"bert": 0, "distilbert": 0, "roberta": 1, "mpnet": 1, "deberta-v2": 0, "modernbert": 304}
ATOL = 1e-4
HEADS_REFUSED = {
    "mpnet": "head pruning is not supported for mpnet: its relative position bias is shared by all layers with one "
             "head count (prune FFN neurons or layers instead)",
    "deberta-v2": "head pruning is not supported for deberta-v2: transformers cannot prune or reload pruned heads "
                  "of its disentangled attention (prune FFN neurons or layers instead)",
    "modernbert": "head pruning is not supported for modernbert: its fused Wqkv and config hold one head count "
                  "for every layer (prune FFN neurons or layers instead)",
}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """{family: (classifier folder, feature-extraction folder)}, built lazily."""
    root, made = tmp_path_factory.mktemp("fam"), {}

    def get(family: str, task: str = "text-classification"):
        key = (family, task)
        if key not in made:
            made[key] = make_tiny_family_model(root / f"{family}-{task}", family, task=task, seed=1)
        return made[key]

    return get


@pytest.fixture(scope="module")
def exported(models, tmp_path_factory):
    from edgepack.export.onnx_export import export_onnx

    root, done = tmp_path_factory.mktemp("fam_onnx"), {}

    def get(family: str, task: str = "text-classification"):
        if (family, task) not in done:
            done[family, task] = export_onnx(models(family, task), root / f"{family}-{task}")
        return done[family, task]

    return get


def _torch_outputs(folder, texts):
    from edgepack.hf import load_model

    lm = load_model(folder)
    enc = lm.tokenizer(list(texts), padding=True, return_tensors="pt")
    with torch.no_grad():
        out = lm.model(**enc)
    return lm, enc, out


@pytest.mark.parametrize("family", FAMILIES)
def test_export_and_runtime_match_torch_logits(exported, models, family):
    from edgepack.runtime import Predictor

    art = exported(family)
    assert art.metrics["max_abs_diff"] <= ATOL
    names = [i["name"] for i in art.inputs]
    assert names == (["input_ids", "attention_mask", "token_type_ids"] if family == "bert"
                     else ["input_ids", "attention_mask"])
    assert art.runtime.model_type == family and art.runtime.pad_token_id == PAD[family]
    _, enc, out = _torch_outputs(models(family), TEXTS)
    p = Predictor.open(art.path)
    # the runtime's tokenizer.json (WordPiece, BPE or Unigram) gives the ids and padding transformers gives
    feeds = p.encoder.feeds(p.encoder.encode(TEXTS), p._feed_names)
    np.testing.assert_array_equal(feeds["input_ids"], enc["input_ids"].numpy())
    np.testing.assert_array_equal(feeds["attention_mask"], enc["attention_mask"].numpy())
    assert (feeds["input_ids"] == PAD[family]).any()  # some rows are padded, with the family's pad id
    ref = torch.softmax(out.logits, -1).numpy()
    got = p.infer(TEXTS)
    assert np.abs(got - ref).max() <= ATOL
    assert np.ptp(ref[:, 0]) > 100 * ATOL  # the texts give clearly different outputs


@pytest.mark.parametrize("family", FAMILIES)
def test_runtime_embeddings_match_torch_hidden_states(exported, models, family):
    from edgepack.runtime import Predictor

    art = exported(family, "feature-extraction")
    _, enc, out = _torch_outputs(models(family, "feature-extraction"), TEXTS)
    mask = enc["attention_mask"].unsqueeze(-1).float()
    ref = torch.nn.functional.normalize((out.last_hidden_state * mask).sum(1) / mask.sum(1), dim=-1).numpy()
    got = Predictor.open(art.path).infer(TEXTS)
    assert np.abs(got - ref).max() <= ATOL
    assert np.abs(ref[0] - ref[1]).max() > 100 * ATOL


# What ORT's BERT optimizer (the only encoder optimizer it has) fuses on each family's graph (CPU options:
# no SkipLayerNormalization); attention fuses only where its subgraph is BERT's.
ATTENTION_FUSED = {"bert": True, "distilbert": True, "roberta": True, "mpnet": False, "deberta-v2": False,
                   "modernbert": False}


@pytest.mark.parametrize("family", FAMILIES)
def test_fusion_where_ort_can(exported, family, tmp_path):
    from edgepack.export.fusion import optimize_onnx

    art = optimize_onnx(exported(family), tmp_path / "fused")
    ops = art.metrics["fused_ops"]
    assert art.metrics["max_abs_diff"] <= ATOL and art.runtime.fused
    assert ("Attention" in ops) == ATTENTION_FUSED[family], ops
    assert ops.get("Gelu", 0) + ops.get("BiasGelu", 0) + ops.get("FastGelu", 0) >= 2, ops


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("task", ["feature-extraction", "text-classification"])
def test_dynamic_int8_sqnr_floor(exported, family, task, tmp_path):
    """SQNR of the hidden states (every unit of every real token) against the floor test_quantize uses; a
    random 2-class head's two logits are a noisier measure (23-42 dB over these families on this seed), so
    classifiers are held to runtime probabilities within 0.05 of fp32."""
    from edgepack.quantize.api import build_candidate
    from edgepack.quantize.config import QuantizeConfig
    from edgepack.runtime import Predictor

    parent = exported(family, task)
    art = build_candidate(parent, "dynamic-int8", QuantizeConfig().method_config("dynamic-int8"), tmp_path / "q",
                          TEXTS * 4)
    # weights shrink (on these tiny graphs the file itself is mostly graph structure, which INT8 adds to)
    assert art.metrics["quantized_ops"] > 0 and _weight_bytes(art) < 0.6 * _weight_bytes(parent)
    assert art.runtime.precision == "int8-dynamic"
    got, ref = Predictor.open(art.path).infer(TEXTS), Predictor.open(parent.path).infer(TEXTS)
    if task == "feature-extraction":
        assert art.metrics["sqnr_db"] >= 25.0, f"{family}: SQNR {art.metrics['sqnr_db']:.1f} dB"
        assert (got * ref).sum(1).min() >= 0.995  # cosine of the L2-normalized embeddings
    else:  # probabilities span ~0.07-0.93 here; ~23 dB on the logits moves one by up to ~0.04
        np.testing.assert_allclose(got, ref, atol=0.05)


def _weight_bytes(art) -> int:
    import onnx
    from onnx.numpy_helper import to_array

    return sum(to_array(i).nbytes for i in onnx.load(str(art.file("model"))).graph.initializer)


def _logits(model, enc):
    with torch.no_grad():
        return model(**enc).logits


@pytest.mark.parametrize("family", FAMILIES)
def test_ffn_pruning_equals_masking_and_reloads(models, family, tmp_path):
    from edgepack.prune import arch, structured
    from transformers import AutoModelForSequenceClassification

    lm, enc, _ = _torch_outputs(models(family), TEXTS)
    model = lm.model
    size = arch.ffn_size(model, 0)
    remove = {i: list(range(i, size, 4)) for i in range(len(arch.layers(model)))}  # a quarter, spread out
    fam = arch.family(model)
    hooks = []
    for i, layer in enumerate(arch.layers(model)):
        mask = torch.ones(size)
        mask[remove[i]] = 0
        hooks.append(arch.get_path(layer, fam.ffn_down).register_forward_pre_hook(
            lambda mod, inp, m=mask: (inp[0] * m,) + tuple(inp[1:])))
    masked = _logits(model, enc)
    for h in hooks:
        h.remove()
    assert not torch.allclose(masked, _logits(model, enc), atol=ATOL)  # the removed neurons mattered
    structured.prune_ffn(model, remove)
    assert arch.ffn_size(model, 0) == size - len(remove[0])
    if fam.ffn_gated:  # GLU: the up projection lost the input and the gate row of each neuron
        assert arch.get_path(arch.layers(model)[0], fam.ffn_up).out_features == 2 * arch.ffn_size(model, 0)
    torch.testing.assert_close(_logits(model, enc), masked, atol=1e-5, rtol=1e-5)
    model.save_pretrained(tmp_path / "p")
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "p").eval()
    torch.testing.assert_close(_logits(reloaded, enc), masked, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("family", FAMILIES)
def test_head_pruning_or_its_one_line_refusal(models, family, tmp_path):
    from edgepack.prune import structured
    from transformers import AutoModelForSequenceClassification

    lm, enc, _ = _torch_outputs(models(family), TEXTS)
    if family in HEADS_REFUSED:
        with pytest.raises(EdgepackError) as e:
            structured.prune_heads(lm.model, {0: [1]})
        assert str(e.value) == HEADS_REFUSED[family]
        return
    assert structured.prune_heads(lm.model, {0: [1], 1: [0, 3]}) == {0: [1], 1: [0, 3]}
    lm.model.save_pretrained(tmp_path / "p")
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "p").eval()
    torch.testing.assert_close(_logits(reloaded, enc), _logits(lm.model, enc), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("family", sorted(HEADS_REFUSED))
def test_prune_stage_refuses_heads_before_any_work(models, family, tmp_path):
    from edgepack.prune.api import prune
    from edgepack.prune.config import PruneConfig

    with pytest.raises(EdgepackError) as e:
        prune(models(family), None, PruneConfig(head_fraction=0.25), tmp_path / "p")
    assert str(e.value) == HEADS_REFUSED[family]
    assert not (tmp_path / "p").exists()


def _modernbert(tmp_path, layers: int, every: int):
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    folder = make_tiny_family_model(tmp_path / "mb", "modernbert", layers=layers, seed=2)
    cfg = AutoConfig.from_pretrained(folder)
    cfg.global_attn_every_n_layers = every
    torch.manual_seed(0)
    return AutoModelForSequenceClassification.from_config(cfg).eval(), AutoTokenizer.from_pretrained(folder)


def _windows(model):
    return [layer.attn.local_attention for layer in model.model.layers]


def test_modernbert_layer_dropping_keeps_attention_kinds(tmp_path):
    from edgepack.prune import structured
    from transformers import AutoModelForSequenceClassification

    model, tok = _modernbert(tmp_path, layers=4, every=3)  # global, local, local, global
    enc = tok(TEXTS, padding=True, return_tensors="pt")
    windows = _windows(model)
    assert windows[0] == windows[3] == (-1, -1) and windows[1] == (8, 8)
    structured.drop_layers(model, [1, 2])
    assert model.config.global_attn_every_n_layers == 1 and _windows(model) == [(-1, -1), (-1, -1)]
    model.save_pretrained(tmp_path / "p")
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "p").eval()
    assert _windows(reloaded) == _windows(model)
    torch.testing.assert_close(_logits(reloaded, enc), _logits(model, enc), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("drop,message", [
    ([0], "modernbert must keep block 0: it has no attention pre-norm, so another block cannot take its place"),
    ([1], ("blocks [0, 2, 3] have attention kinds ['global', 'global', 'local'], which no "
           "global_attn_every_n_layers reproduces (global blocks must be evenly spaced from block 0); keep other blocks")),
])
def test_modernbert_layer_dropping_refusals(tmp_path, drop, message):
    from edgepack.prune import structured

    model, _ = _modernbert(tmp_path, layers=4, every=2)
    with pytest.raises(EdgepackError) as e:
        structured.drop_layers(model, drop)
    assert str(e.value) == message
    assert len(model.model.layers) == 4  # nothing changed


def test_modernbert_student_attention_kinds(tmp_path):
    """A student block runs the attention kind of its *position*; make_student picks (families.attention_overrides)
    the global_attn_every_n_layers that keeps the copied blocks' kinds, and warns when none can."""
    from edgepack.distill.student import StudentConfig, make_student

    from edgepack.families import attention_overrides

    teacher, _ = _modernbert(tmp_path, layers=4, every=2)  # G L G L
    t_windows = _windows(teacher)
    cfg = StudentConfig(num_layers=2, layers=(0, 2))
    overrides, changed = attention_overrides(teacher.config, (0, 2))
    assert overrides == {"global_attn_every_n_layers": 1} and changed == []
    assert _windows(make_student(teacher, cfg)) == [t_windows[0], t_windows[2]]  # both global, as in the teacher
    # without the override, position decides: teacher block 2 (global) would run local
    assert _windows(make_student(teacher, cfg, overrides={"global_attn_every_n_layers": 2}))[1] == (8, 8)
    # the default blocks of a 2-of-4 student (1, 3) are both local: no value keeps block 0's kind
    assert attention_overrides(teacher.config, (1, 3)) == ({"global_attn_every_n_layers": 2}, [0])
    with pytest.warns(UserWarning, match=r"student blocks \[0\] \(copied from teacher blocks \[1\]\) run the other"):
        student = make_student(teacher, StudentConfig(num_layers=2))
    assert _windows(student)[1] == t_windows[3]


@pytest.fixture(scope="module")
def kd_data(tmp_path_factory):
    d = tmp_path_factory.mktemp("kd")
    write_labelled_csv(d / "data.csv", 64)
    from edgepack.data import DataSpec

    return DataSpec(path=str(d / "data.csv"), val_fraction=0.2)


@pytest.mark.parametrize("family", FAMILIES)
def test_distill_from_teacher_layers_loss_falls(family, kd_data, tmp_path):
    from edgepack.distill.api import distill
    from edgepack.distill.configs import DistillConfig
    from edgepack.distill.student import StudentConfig
    from safetensors.torch import load_file

    teacher = make_tiny_family_model(tmp_path / "t", family, layers=4, labels=["neg", "pos"], seed=3)
    cfg = DistillConfig(student=StudentConfig(num_layers=2), features=("hidden",),
                        train=TrainConfig(epochs=4, batch_size=8, lr=3e-3, progress=False))
    art = distill(teacher, kd_data, cfg, tmp_path / "s")
    losses = [h["train_loss"] for h in art.metrics["history"]]
    assert losses[-1] < 0.8 * losses[0], losses
    assert art.metrics["steps"] >= 24 and art.extra["student_layers_from_teacher"] == [1, 3]
    assert art.metrics["params"] < art.metrics["teacher_params"]
    assert set(load_file(art.file("weights"))) < set(load_file(teacher / "model.safetensors"))


LORA_TARGETS = {"deberta-v2": {"query_proj", "value_proj"}, "modernbert": {"Wqkv"}, "distilbert": {"q_lin", "v_lin"},
                "mpnet": {"q", "v"}}


@pytest.mark.parametrize("family", sorted(LORA_TARGETS))
def test_lora_finetune_default_targets(models, kd_data, family, tmp_path):
    import json

    from edgepack.distill.configs import FinetuneConfig, LoraSettings
    from edgepack.distill.finetune import finetune

    from edgepack.hf import load_model

    base = models(family, "feature-extraction")
    fast = TrainConfig(epochs=2, batch_size=8, lr=3e-3, progress=False)
    art = finetune(base, kd_data, FinetuneConfig(lora=LoraSettings(r=4, alpha=8), train=fast), tmp_path / "l")
    m = art.metrics
    assert set(json.loads(art.file("adapter_config").read_text())["target_modules"]) == LORA_TARGETS[family]
    assert m["merge_max_abs_diff"] <= 1e-5 and m["trainable_params"] < m["params"] / 2
    merged, via_adapter = load_model(art.path), load_model(art.path / "adapter")
    enc = merged.tokenizer(TEXTS, padding=True, return_tensors="pt")
    torch.testing.assert_close(_logits(via_adapter.model, enc), _logits(merged.model, enc), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("type_vocab_size", [0, 2])
def test_deberta_token_types_follow_the_config(tmp_path, type_vocab_size):
    """A DeBERTa tokenizer emits token_type_ids; the graph takes them only when the config has a type
    embedding (v3: none), and text pairs give torch's probabilities either way."""
    import json

    from edgepack.export.onnx_export import export_onnx
    from edgepack.runtime import Predictor
    from transformers import AutoConfig, AutoModelForSequenceClassification

    from edgepack.families import uses_token_type_ids

    folder = make_tiny_family_model(tmp_path / "m", "deberta-v2", seed=1)
    tc = json.loads((folder / "tokenizer_config.json").read_text())
    tc["model_input_names"] = ["input_ids", "token_type_ids", "attention_mask"]
    (folder / "tokenizer_config.json").write_text(json.dumps(tc))
    cfg = AutoConfig.from_pretrained(folder)
    cfg.type_vocab_size = type_vocab_size
    torch.manual_seed(0)
    AutoModelForSequenceClassification.from_config(cfg).save_pretrained(folder)
    art = export_onnx(folder, tmp_path / "onnx")
    takes = "token_type_ids" in [i["name"] for i in art.inputs]
    assert takes == uses_token_type_ids(cfg) == bool(type_vocab_size)
    pairs = [(SAMPLE_TEXTS[0], SAMPLE_TEXTS[1]), (SAMPLE_TEXTS[2], SAMPLE_TEXTS[3])]
    lm, _, _ = _torch_outputs(folder, ["x"])
    enc = lm.tokenizer([a for a, _ in pairs], [b for _, b in pairs], padding=True, return_tensors="pt")
    assert enc["token_type_ids"].any()
    ref = torch.softmax(_logits(lm.model, enc), -1).numpy()
    assert np.abs(Predictor.open(art.path).infer(pairs) - ref).max() <= ATOL


def test_family_table_is_stdlib_and_answers_in_one_line():
    import subprocess
    import sys

    from edgepack.families import alternating_every, family_of, uses_token_type_ids

    code = "import sys, edgepack.families; assert 'torch' not in sys.modules and 'transformers' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
    with pytest.raises(EdgepackError) as e:
        family_of("gpt2", "pruning")
    assert str(e.value) == ("unsupported model type 'gpt2': pruning supports bert, roberta, xlm-roberta, electra, "
                            "mpnet, distilbert, deberta-v2, modernbert encoders")
    assert [uses_token_type_ids({"model_type": t}) for t in ("bert", "roberta", "distilbert", "modernbert")] == [
        True, True, False, False]
    assert alternating_every(["global", "local", "local", "global"]) == 3
    assert alternating_every(["global", "global"]) == 1 and alternating_every(["global", "local"]) == 2
    assert alternating_every(["local", "global"]) is None
    assert alternating_every(["global", "local", "global", "global"]) is None
