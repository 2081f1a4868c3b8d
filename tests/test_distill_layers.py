"""Default layer map, projections, student initialisation and config round trips."""

import json

import pytest

torch = pytest.importorskip("torch")

from edgepack.distill.configs import DistillConfig
from edgepack.distill.layer_map import LayerMatch, default_layer_map, make_projections
from edgepack.distill.student import StudentConfig, make_student

from edgepack.config import config_from_dict, config_to_dict
from edgepack.errors import EdgepackError
from edgepack.train import TrainConfig


@pytest.mark.parametrize("n,k,want", [(6, 3, [1, 3, 5]), (6, 2, [2, 5]), (6, 4, [1, 2, 4, 5]), (12, 6, [1, 3, 5, 7, 9, 11]),
                                      (6, 6, [0, 1, 2, 3, 4, 5]), (6, 1, [5])])
def test_default_layer_map(n, k, want):
    m = default_layer_map(n, k)
    assert [x.layer_T for x in m] == want and [x.layer_S for x in m] == list(range(k))


def test_layer_map_features_and_projection_shapes():
    m = default_layer_map(6, 3, ("hidden", "attention", "embedding"))
    assert [x.feature for x in m] == ["hidden"] * 3 + ["attention"] * 3 + ["embedding"]
    proj = make_projections(m, 256, 384)
    assert sorted(proj) == ["embedding_0", "hidden_0", "hidden_1", "hidden_2"]  # none for attention
    assert proj["hidden_1"].weight.shape == (384, 256)
    assert proj["hidden_1"](torch.zeros(2, 5, 256)).shape == (2, 5, 384)
    assert len(make_projections(m, 384, 384)) == 0
    with pytest.raises(EdgepackError, match="^feature must be one of hidden, attention, embedding, got 'logits'$"):
        LayerMatch(0, 0, "logits")


def _teacher():
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    return BertForSequenceClassification(BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=6,
                                                    num_attention_heads=4, intermediate_size=64))


def test_student_from_teacher_layers_copies_the_mapped_blocks():
    t = _teacher()
    s = make_student(t, StudentConfig(num_layers=3))
    assert s.config.num_hidden_layers == 3
    for i, j in enumerate([1, 3, 5]):
        for a, b in zip(s.bert.encoder.layer[i].parameters(), t.bert.encoder.layer[j].parameters()):
            assert torch.equal(a, b)
    assert torch.equal(s.classifier.weight, t.classifier.weight)
    assert torch.equal(s.bert.embeddings.word_embeddings.weight, t.bert.embeddings.word_embeddings.weight)
    s2 = make_student(t, StudentConfig(num_layers=2, layers=(0, 2)))
    assert torch.equal(s2.bert.encoder.layer[1].output.dense.weight, t.bert.encoder.layer[2].output.dense.weight)


def test_truncated_and_random_students():
    t = _teacher()
    s = make_student(t, StudentConfig(num_layers=2, hidden_size=16, num_heads=2, intermediate_size=32, init="truncated"))
    w_S, w_T = s.bert.encoder.layer[0].attention.self.query.weight, t.bert.encoder.layer[2].attention.self.query.weight
    assert w_S.shape == (16, 16) and torch.equal(w_S, w_T[:16, :16])
    assert torch.equal(s.bert.embeddings.word_embeddings.weight, t.bert.embeddings.word_embeddings.weight[:, :16])
    r = make_student(t, StudentConfig(num_layers=2, hidden_size=16, num_heads=2, init="random"))
    assert not torch.equal(r.bert.embeddings.word_embeddings.weight, t.bert.embeddings.word_embeddings.weight[:, :16])
    with pytest.raises(EdgepackError, match="keeps the teacher's width"):
        make_student(t, StudentConfig(num_layers=2, hidden_size=16, num_heads=2))
    with pytest.raises(EdgepackError, match="not divisible"):
        make_student(t, StudentConfig(num_layers=2, hidden_size=18, num_heads=4, init="truncated"))
    with pytest.raises(EdgepackError, match="must be 2 indices"):
        make_student(t, StudentConfig(num_layers=2, layers=(0, 9)))


def test_configs_round_trip_through_json():
    cfg = DistillConfig(student=StudentConfig(num_layers=2, layers=(1, 4)), train=TrainConfig(epochs=5, lr=1e-4),
                        features=("hidden", "attention"), layer_map=(LayerMatch(5, 1, "hidden", 0.5),))
    back = config_from_dict(DistillConfig, json.loads(json.dumps(config_to_dict(cfg))))
    assert back == cfg
    with pytest.raises(EdgepackError, match=r"unknown DistillConfig option\(s\) train.epoch; valid"):
        config_from_dict(DistillConfig, {"train": {"epoch": 3}})
    with pytest.raises(EdgepackError, match="alpha_kd must be in"):
        DistillConfig(alpha_kd=1.5)
