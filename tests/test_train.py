"""The core training loop (edgepack.train) on a tiny classifier: step-based runs and runs without evaluation.

Resume, accumulation and fingerprints are covered through its callers (tests/test_distill_train.py,
tests/test_recovery.py).
"""

import pytest

torch = pytest.importorskip("torch")

from edgepack.errors import EdgepackError
from edgepack.testing import SAMPLE_TEXTS
from edgepack.train import TrainConfig, train, work_dir_for

LABELS = [1, 0, 1, 0, 1, 0, 0]


@pytest.fixture()
def setup(tiny_bert):
    from edgepack.batching import encode, pad_batch
    from edgepack.hf import load_model
    from edgepack.objectives import ClassifierObjective

    lm = load_model(tiny_bert)
    enc = encode(lm.tokenizer, SAMPLE_TEXTS * 2, None, 32)  # 14 examples
    labels = LABELS * 2

    def collate(idx):
        return {**pad_batch(enc, idx), "labels": torch.tensor([labels[i] for i in idx])}

    return ClassifierObjective(lm.model), enc.lengths, collate


def test_max_steps_overrides_epochs_and_no_eval_keeps_the_last_weights(setup, tmp_path):
    objective, lengths, collate = setup
    seen = []
    # 14 examples in batches of 4 = 4 steps per epoch: 6 steps run 2 epochs, whatever ``epochs`` says
    cfg = TrainConfig(epochs=1, batch_size=4, lr=1e-2, max_steps=6, checkpoint_every=0, progress=False)
    result = train(objective, lengths, collate, None, cfg, tmp_path / "w", on_step=seen.append)
    assert result.steps == 6 and seen == [1, 2, 3, 4, 5, 6]
    assert [(h["epoch"], h["step"]) for h in result.history] == [(1, 4), (2, 6)]
    assert result.best == result.history[-1] and "accuracy" not in result.best
    assert not (tmp_path / "w" / "best.safetensors").exists()  # nothing selected: the final weights stay
    from safetensors.torch import load_file

    last = load_file(tmp_path / "w" / "checkpoint" / "model.safetensors")
    for k, v in objective.state_dict().items():
        torch.testing.assert_close(v, last[k], atol=0, rtol=0)


def test_epochs_bound_the_run_without_max_steps(setup, tmp_path):
    objective, lengths, collate = setup
    evals = []

    def evaluate(obj):
        evals.append(obj is objective)
        return {"accuracy": 0.5 + 0.1 * len(evals)}

    cfg = TrainConfig(epochs=2, batch_size=4, lr=1e-3, progress=False)
    result = train(objective, lengths, collate, evaluate, cfg, tmp_path / "w")
    assert result.steps == 8 and evals == [True, True] and result.best["epoch"] == 2


def test_bad_max_steps_and_empty_data_are_user_errors(setup, tmp_path):
    objective, lengths, collate = setup
    with pytest.raises(EdgepackError, match="max_steps must be >= 1"):
        train(objective, lengths, collate, None, TrainConfig(max_steps=0, progress=False), tmp_path)
    with pytest.raises(EdgepackError, match="no training examples"):
        train(objective, [], collate, None, TrainConfig(progress=False), tmp_path)


def test_work_dir_sits_beside_the_output(tmp_path):
    assert work_dir_for(tmp_path / "runs" / "pruned") == tmp_path / "runs" / ".pruned.work"


def test_teacher_cache_keeps_pooled_embeddings_for_embedding_models(tiny_encoder, tmp_path):
    from transformers import AutoModel, AutoTokenizer

    from edgepack.batching import encode, pad_batch
    from edgepack.losses import mean_pool
    from edgepack.teacher_cache import Needs, build_cache

    model, tok = AutoModel.from_pretrained(tiny_encoder).eval(), AutoTokenizer.from_pretrained(tiny_encoder)
    enc = encode(tok, SAMPLE_TEXTS, None, 32)
    idx = [4, 0, 5]
    b = pad_batch(enc, idx)
    with torch.no_grad():
        want = mean_pool(model(**b).last_hidden_state, b["attention_mask"])  # (3, H)
    for mode in ("memory", "disk"):
        cache = build_cache(model, enc, Needs(pooled=True), batch_size=2, mode=mode, path=tmp_path / "c.safetensors",
                            progress=False)
        got = cache.targets(idx, b["input_ids"].shape[1])
        assert list(got) == ["pooled_T"]
        torch.testing.assert_close(got["pooled_T"], want, atol=1e-5, rtol=1e-5)
