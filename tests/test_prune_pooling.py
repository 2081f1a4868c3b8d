"""Pruning an embedding model pools its embeddings the way its runtime contract says (mean or CLS).

The recovery objective compares the student's and the teacher's pooled vectors; the before/after
agreement compares the pruned and the unpruned model's. A sentence-transformers folder that pools the
CLS token must be recovered and measured on the CLS vector, which the runtime serves, not the mean.
"""


import pytest

torch = pytest.importorskip("torch")

from edgepack.testing import SAMPLE_TEXTS, make_tiny_model, st_cls_copy


@pytest.fixture(scope="module")
def encoders(tmp_path_factory):
    """A plain BertModel folder (mean pooling) and a sentence-transformers copy that pools the CLS token.
    Large random weights (init_std 0.5), so removing FFN neurons moves the embeddings visibly."""
    d = tmp_path_factory.mktemp("enc")
    mean = make_tiny_model(d / "mean", task="feature-extraction", seed=3, init_std=0.5)
    cls = st_cls_copy(mean, d / "cls")
    return {"mean": mean, "cls": cls}


def _pooled(hidden, mask, pooling):
    """Reference pooling written out here (not edgepack.losses.pool), so the check is independent."""
    if pooling == "cls":
        return hidden[:, 0]
    m = mask.unsqueeze(-1).float()
    return (hidden * m).sum(1) / m.sum(1)


class Stop(Exception):
    pass


@pytest.mark.parametrize("source, teacher", [("mean", None), ("cls", None), ("mean", "cls"), ("cls", "mean")])
def test_recovery_pools_student_and_teacher_as_their_contracts_say(encoders, source, teacher, tmp_path, monkeypatch):
    from edgepack.prune.api import prune
    from edgepack.prune.config import PruneConfig, RecoveryConfig
    from transformers import AutoModel

    import edgepack.losses
    import edgepack.train
    from edgepack.data import Dataset

    seen = {}
    real_cosine = edgepack.losses.cosine_distance

    def record(e_S, e_T):
        seen["e_S"], seen["e_T"] = e_S.detach().clone(), e_T.detach().clone()
        return real_cosine(e_S, e_T)

    def first_batch_only(objective, lengths, collate, *args, **kwargs):
        objective.eval()
        batch = collate(list(range(len(lengths))))
        with torch.no_grad():
            objective(**batch)
        seen["batch"], seen["student"] = batch, objective.student
        raise Stop

    monkeypatch.setattr(edgepack.losses, "cosine_distance", record)
    monkeypatch.setattr(edgepack.train, "train", first_batch_only)
    texts = SAMPLE_TEXTS * 2
    cfg = PruneConfig(ffn_fraction=0.25, latency_runs=0, recovery=RecoveryConfig(steps=2, batch_size=8))
    with pytest.raises(Stop):
        prune(encoders[source], Dataset(texts, val_texts=SAMPLE_TEXTS), cfg, tmp_path / "out", progress=False,
              teacher=encoders[teacher] if teacher else None)

    b = seen["batch"]
    inputs = {k: b[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in b}
    t_model = AutoModel.from_pretrained(encoders[teacher or source]).eval()
    with torch.no_grad():
        h_S = seen["student"](**inputs).last_hidden_state
        h_T = t_model(**inputs).last_hidden_state
    mask = inputs["attention_mask"]
    t_pooling = teacher or source
    torch.testing.assert_close(seen["e_S"], _pooled(h_S, mask, source), atol=1e-5, rtol=0)
    torch.testing.assert_close(seen["e_T"], _pooled(h_T, mask, t_pooling), atol=1e-5, rtol=0)
    # the two poolings give clearly different vectors here, so the checks above tell them apart
    for h, p in ((h_S, source), (h_T, t_pooling)):
        other = "mean" if p == "cls" else "cls"
        assert (_pooled(h, mask, other) - _pooled(h, mask, p)).abs().max() > 0.1


def test_pruned_embedding_agreement_uses_the_contract_pooling(encoders, tmp_path):
    from edgepack.prune.api import prune
    from edgepack.prune.config import PruneConfig, RecoveryConfig
    from transformers import AutoModel, AutoTokenizer

    from edgepack.data import Dataset

    cfg = PruneConfig(ffn_fraction=0.5, latency_runs=0, recovery=RecoveryConfig(steps=0))
    art = prune(encoders["cls"], Dataset(SAMPLE_TEXTS * 2, val_texts=SAMPLE_TEXTS), cfg, tmp_path / "out",
                progress=False)
    assert art.runtime.embedding_pooling() == ("cls", False)
    tok = AutoTokenizer.from_pretrained(art.path)
    pruned, unpruned = AutoModel.from_pretrained(art.path).eval(), AutoModel.from_pretrained(encoders["cls"]).eval()
    cos = {"cls": [], "mean": []}
    with torch.no_grad():
        for t in SAMPLE_TEXTS:
            enc = tok(t, return_tensors="pt")
            h_a, h_b = pruned(**enc).last_hidden_state, unpruned(**enc).last_hidden_state
            for p, values in cos.items():
                a, b = _pooled(h_a, enc["attention_mask"], p)[0], _pooled(h_b, enc["attention_mask"], p)[0]
                values.append(float(torch.nn.functional.cosine_similarity(a, b, dim=0)))
    assert art.metrics["cosine_mean"] == pytest.approx(sum(cos["cls"]) / len(SAMPLE_TEXTS), abs=1e-5)
    assert art.metrics["cosine_min"] == pytest.approx(min(cos["cls"]), abs=1e-5)
    assert abs(sum(cos["mean"]) - sum(cos["cls"])) / len(SAMPLE_TEXTS) > 1e-3  # the mean vector would not match
