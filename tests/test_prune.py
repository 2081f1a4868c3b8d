"""Pruning on tiny random BERTs: exact surgery, reload parity, sparsity targets, importance, errors."""

import copy
import json

import pytest

torch = pytest.importorskip("torch")

from edgepack.config import config_from_dict, config_to_dict
from edgepack.errors import EdgepackError
from edgepack.testing import SAMPLE_TEXTS, logits

LABELS = [1, 0, 1, 0, 1, 0, 0]


def _logits(model, tok, texts=SAMPLE_TEXTS):
    return logits(model, tok, texts)


def _zero_heads(model, heads):
    """Zero the output-projection columns of the given heads: the same function as removing them."""
    from edgepack.prune import arch

    dh = arch.head_size(model)
    with torch.no_grad():
        for layer, hs in heads.items():
            dense = arch.layers(model)[layer].attention.output.dense
            for h in hs:
                dense.weight[:, h * dh:(h + 1) * dh] = 0


def _zero_neurons(model, neurons):
    from edgepack.prune import arch

    with torch.no_grad():
        for layer, ns in neurons.items():
            up = arch.layers(model)[layer].intermediate.dense
            up.weight[ns] = 0
            up.bias[ns] = 0  # GELU(0) = 0, so the neuron contributes nothing


def test_head_pruning_is_exact(lm):
    from edgepack.prune import structured

    ref = copy.deepcopy(lm.model)
    heads = {0: [1, 3], 1: [0]}
    unchanged = _logits(ref, lm.tokenizer)
    _zero_heads(ref, heads)
    removed = structured.prune_heads(lm.model, heads)
    assert removed == heads
    assert lm.model.bert.encoder.layer[0].attention.self.query.out_features == 2 * 8
    got, want = _logits(lm.model, lm.tokenizer), _logits(ref, lm.tokenizer)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(got, unchanged, atol=1e-5)  # the heads mattered: the test can fail


def test_ffn_pruning_is_exact_and_shrinks(lm):
    from edgepack.prune import structured

    ref = copy.deepcopy(lm.model)
    neurons = {0: list(range(0, 64, 2)), 1: list(range(10, 42))}
    unchanged = _logits(ref, lm.tokenizer)
    _zero_neurons(ref, neurons)
    assert structured.prune_ffn(lm.model, neurons) == {0: 32, 1: 32}
    layer = lm.model.bert.encoder.layer[1]
    assert layer.intermediate.dense.weight.shape == (32, 32) and layer.output.dense.weight.shape == (32, 32)
    assert lm.model.config.intermediate_size == 32
    got, want = _logits(lm.model, lm.tokenizer), _logits(ref, lm.tokenizer)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(got, unchanged, atol=1e-5)


def test_drop_layers_renumbers_pruned_heads(lm):
    from edgepack.prune import structured

    structured.prune_heads(lm.model, {1: [2]})
    assert structured.drop_layers(lm.model, [0]) == [0]
    assert lm.model.config.num_hidden_layers == 1
    assert lm.model.config.pruned_heads == {0: [2]}
    assert _logits(lm.model, lm.tokenizer).shape == (len(SAMPLE_TEXTS), 2)


def test_saved_artifact_reloads_with_same_outputs(tiny_bert, tmp_path):
    from edgepack.prune.api import prune
    from edgepack.prune.config import PruneConfig, RecoveryConfig
    from transformers import AutoModelForSequenceClassification

    from edgepack.artifact import Artifact
    from edgepack.data import Dataset
    from edgepack.hf import load_model

    texts = SAMPLE_TEXTS * 4
    labels = LABELS * 4
    data = Dataset(texts, labels, SAMPLE_TEXTS, LABELS, ["negative", "positive"])
    cfg = PruneConfig(head_fraction=0.25, ffn_fraction=0.5, drop_layers=(), latency_runs=2,
                      recovery=RecoveryConfig(steps=3, batch_size=4))
    art = prune(tiny_bert, data, cfg, tmp_path / "pruned")
    reopened = Artifact.open(art.path)  # checksums verified
    assert reopened.stage == "prune" and reopened.format == "hf"
    assert reopened.metrics["params"] < reopened.extra["params_before"]
    assert sum(reopened.extra["heads_per_layer"]) == 6 and reopened.extra["ffn_size"] == 32
    assert reopened.extra["removed_ffn_per_layer"] == {"0": 32, "1": 32}
    assert config_from_dict(PruneConfig, reopened.config) == cfg
    assert json.loads(reopened.file("pruning").read_text())["steps"] == ["heads", "ffn"]
    full = json.loads(reopened.file("pruning").read_text())
    assert len(full["removed_ffn"]["0"]) == 32
    plain = AutoModelForSequenceClassification.from_pretrained(art.path).eval()
    loaded = load_model(art.path)
    torch.testing.assert_close(_logits(plain, loaded.tokenizer), _logits(loaded.model, loaded.tokenizer),
                               atol=1e-6, rtol=0)
    # the accuracy recorded in the manifest is the reloaded model's accuracy on the validation texts
    pred = _logits(plain, loaded.tokenizer).argmax(-1)
    assert reopened.metrics["accuracy"] == pytest.approx(float((pred == torch.tensor(LABELS)).float().mean()))


def test_data_labels_are_matched_to_the_model_by_name(tiny_bert, tmp_path):
    """The same data with its label names in the other order scores the same (labels re-indexed)."""
    from edgepack.prune.api import prune
    from edgepack.prune.config import PruneConfig

    from edgepack.data import Dataset

    cfg = PruneConfig(ffn_fraction=0.5, latency_runs=0)
    flipped = [1 - y for y in LABELS]
    a = prune(tiny_bert, Dataset(SAMPLE_TEXTS, LABELS, SAMPLE_TEXTS, LABELS, ["negative", "positive"]), cfg,
              tmp_path / "a")
    b = prune(tiny_bert, Dataset(SAMPLE_TEXTS, flipped, SAMPLE_TEXTS, flipped, ["positive", "negative"]), cfg,
              tmp_path / "b")
    assert a.metrics["accuracy"] == b.metrics["accuracy"]
    assert a.extra["before"] == b.extra["before"]
    with pytest.raises(EdgepackError, match="are not the model's"):
        prune(tiny_bert, Dataset(SAMPLE_TEXTS, LABELS, SAMPLE_TEXTS, LABELS, ["cat", "dog"]), cfg, tmp_path / "c")


def test_saved_pruned_model_matches_in_memory_model(lm, tmp_path):
    from edgepack.prune import structured
    from transformers import AutoModelForSequenceClassification

    from edgepack.hf import save_model

    structured.prune_heads(lm.model, {0: [0, 2], 1: [3]})
    structured.prune_ffn(lm.model, {0: list(range(48)), 1: list(range(16, 64))})
    structured.drop_layers(lm.model, [-1])
    save_model(lm.model, lm.tokenizer, tmp_path)
    again = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    torch.testing.assert_close(_logits(again, lm.tokenizer), _logits(lm.model, lm.tokenizer), atol=1e-6, rtol=0)


@pytest.mark.parametrize("target", [0.3, 0.5, 0.9])
def test_global_magnitude_sparsity_hits_target(lm, target):
    from edgepack.prune import unstructured

    reached = unstructured.magnitude_prune(lm.model, target)
    unstructured.make_permanent(lm.model)
    assert reached == pytest.approx(target, abs=1e-3)
    assert unstructured.target_sparsity(lm.model) == pytest.approx(target, abs=1e-3)
    rep = unstructured.sparsity_report(lm.model)
    assert 0 < rep["model_sparsity"] < target  # embeddings, LayerNorms, classifier untouched
    assert not any(n.endswith("_orig") for n, _ in lm.model.named_parameters())


def test_magnitude_pruning_removes_smallest_weights(lm):
    from edgepack.prune import unstructured

    ws = [m.weight.detach().abs().flatten().clone() for m, _ in unstructured.target_weights(lm.model)]
    threshold = torch.cat(ws).kthvalue(int(0.5 * sum(w.numel() for w in ws))).values
    unstructured.magnitude_prune(lm.model, 0.5)
    unstructured.make_permanent(lm.model)
    for (m, _), before in zip(unstructured.target_weights(lm.model), ws):
        kept = m.weight.detach().abs().flatten() != 0
        assert (before[kept] >= threshold).all()  # one global threshold, not per layer


def test_two_four_mask_has_exactly_two_per_group(lm):
    from edgepack.prune import unstructured

    assert unstructured.semi_structured_24(lm.model) == pytest.approx(0.5)
    unstructured.make_permanent(lm.model)
    for m, _ in unstructured.target_weights(lm.model):
        groups = (m.weight.detach() != 0).reshape(m.weight.shape[0], -1, 4).sum(-1)
        assert (groups == 2).all()


def test_two_four_keeps_largest_magnitudes():
    from edgepack.prune.unstructured import mask_2to4

    w = torch.tensor([[0.1, -3.0, 2.0, 0.0, 5.0, 4.0, -6.0, 1.0]])
    assert mask_2to4(w).tolist() == [[False, True, True, False, True, False, True, False]]
    with pytest.raises(EdgepackError, match="multiple of 4"):
        mask_2to4(torch.zeros(2, 6))


@pytest.mark.parametrize("method", ["taylor", "activation"])
def test_importance_ranks_zeroed_head_lowest(lm, method):
    from edgepack.prune import importance

    _zero_heads(lm.model, {1: [2]})
    with torch.no_grad():  # also silence one FFN neuron
        lm.model.bert.encoder.layer[0].output.dense.weight[:, 5] = 0
    imp = importance.compute_importance(lm.model, lm.tokenizer, SAMPLE_TEXTS, LABELS, method=method, batch_size=4)
    assert [len(s) for s in imp.heads] == [4, 4] and [len(s) for s in imp.ffn] == [64, 64]
    assert int(imp.heads[1].argmin()) == 2 and float(imp.heads[1][2]) == 0.0
    assert all(float(s.min()) > 0 for s in (imp.heads[0], imp.heads[1][[0, 1, 3]]))
    assert int(imp.ffn[0].argmin()) == 5
    assert all(p.grad is None for p in lm.model.parameters())


def test_select_heads_keeps_one_per_layer_and_uses_original_ids(lm):
    from edgepack.prune import structured

    scores = [torch.tensor([0.1, 0.2, 0.3, 0.4]), torch.tensor([9.0, 9.0, 9.0, 9.0])]
    chosen = structured.select_heads(lm.model, scores, 0.75, scope="global")
    assert sum(map(len, chosen.values())) == 6 and len(chosen[0]) == 3  # layer 0 keeps one head
    structured.prune_heads(lm.model, {0: [0]})
    again = structured.select_heads(lm.model, [torch.tensor([0.5, 0.1, 0.9]), torch.ones(4)], 0.2, "layer")
    assert again[0] == [2]  # current position 1 in layer 0 is original head 2


def test_select_ffn_same_count_per_layer():
    from edgepack.prune.structured import select_ffn

    chosen = select_ffn([torch.arange(64.0), torch.arange(64.0).flip(0)], 0.5, multiple_of=8)
    assert chosen[0] == list(range(32)) and chosen[1] == list(range(32, 64))
    assert len(select_ffn([torch.rand(64)], 0.3, multiple_of=8)[0]) == 64 - 48


def test_clear_errors(lm):
    from edgepack.prune import structured
    from edgepack.prune.config import PruneConfig, RecoveryConfig

    with pytest.raises(EdgepackError, match="would remove all heads of layer 0"):
        structured.prune_heads(lm.model, {0: [0, 1, 2, 3]})
    with pytest.raises(EdgepackError, match="layer 5"):
        structured.prune_heads(lm.model, {5: [0]})
    with pytest.raises(EdgepackError, match="cannot remove all 64 FFN neurons"):
        structured.prune_ffn(lm.model, {0: range(64), 1: range(64)})
    with pytest.raises(EdgepackError, match="same size"):
        structured.prune_ffn(lm.model, {0: [1, 2]})
    with pytest.raises(EdgepackError, match="cannot drop all 2 layers"):
        structured.drop_layers(lm.model, [0, 1])
    with pytest.raises(EdgepackError, match=r"ffn_fraction must be in \[0, 1\)"):
        PruneConfig(ffn_fraction=1.0)
    with pytest.raises(EdgepackError, match=r"head_fraction must be in \[0, 1\)"):
        PruneConfig(head_fraction=-0.1)
    with pytest.raises(EdgepackError, match="either sparsity"):
        PruneConfig(sparsity=0.5, semi_structured_24=True)
    with pytest.raises(EdgepackError, match=r"^recovery.alpha_kd must be in \[0, 1\], got 2.0$"):
        config_from_dict(PruneConfig, {"recovery": {"alpha_kd": 2.0}})
    with pytest.raises(EdgepackError, match=r"^alpha_kd must be in \[0, 1\], got 2.0$"):
        RecoveryConfig(alpha_kd=2.0)
    with pytest.raises(EdgepackError, match=r"unknown PruneConfig option\(s\) head_fractoin; valid: "):
        config_from_dict(PruneConfig, {"head_fractoin": 0.5})
    with pytest.raises(EdgepackError, match="taylor importance needs a classification model"):
        from edgepack.prune.importance import compute_importance

        compute_importance(lm.model.bert, lm.tokenizer, SAMPLE_TEXTS, method="taylor")


def test_config_round_trips_through_json():
    from edgepack.prune.config import PruneConfig, RecoveryConfig

    cfg = PruneConfig(head_fraction=0.5, drop_layers=(1, -1), recovery=RecoveryConfig(steps=7, lr=3e-5))
    again = config_from_dict(PruneConfig, json.loads(json.dumps(config_to_dict(cfg))))
    assert again == cfg and isinstance(again.drop_layers, tuple) and again.recovery.steps == 7


def test_feature_extraction_model_prunes_with_activation_importance(tiny_encoder, tmp_path):
    from edgepack.prune.api import prune
    from edgepack.prune.config import PruneConfig

    from edgepack.data import Dataset

    art = prune(tiny_encoder, Dataset(SAMPLE_TEXTS * 3, None, SAMPLE_TEXTS),
                PruneConfig(ffn_fraction=0.25, head_fraction=0.25, latency_runs=0), tmp_path / "enc")
    assert art.task == "feature-extraction" and art.extra["importance"]["method"] == "activation"
    assert art.extra["ffn_size"] == 48
    assert 0.0 < art.metrics["cosine_mean"] <= 1.0 + 1e-6


@pytest.mark.slow
def test_real_minilm_surgery_is_exact_and_reloads(minilm_path, tmp_path):
    """all-MiniLM-L6-v2: half the FFN neurons and a quarter of the heads removed by importance."""
    from edgepack.prune import importance, structured
    from transformers import AutoModel

    from edgepack.hf import load_model, save_model

    lm = load_model(minilm_path)
    imp = importance.compute_importance(lm.model, lm.tokenizer, SAMPLE_TEXTS, method="activation")
    heads = structured.select_heads(lm.model, imp.heads, 0.25)
    neurons = structured.select_ffn(imp.ffn, 0.5, multiple_of=8)
    ref = copy.deepcopy(lm.model)
    dh = 384 // 12
    with torch.no_grad():
        for layer, hs in heads.items():
            for h in hs:
                ref.encoder.layer[layer].attention.output.dense.weight[:, h * dh:(h + 1) * dh] = 0
        for layer, ns in neurons.items():
            ref.encoder.layer[layer].intermediate.dense.weight[ns] = 0
            ref.encoder.layer[layer].intermediate.dense.bias[ns] = 0
    structured.prune_heads(lm.model, heads)
    structured.prune_ffn(lm.model, neurons)
    assert lm.model.config.intermediate_size == 768 and sum(map(len, heads.values())) == 18
    enc = lm.tokenizer(SAMPLE_TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        got = lm.model(**enc).last_hidden_state
        torch.testing.assert_close(got, ref(**enc).last_hidden_state, atol=1e-5, rtol=1e-4)
        save_model(lm.model, lm.tokenizer, tmp_path)
        again = AutoModel.from_pretrained(tmp_path).eval()
        torch.testing.assert_close(again(**enc).last_hidden_state, got, atol=1e-6, rtol=0)
