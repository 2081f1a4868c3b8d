"""Teacher fine-tuning on tiny random models: full, LoRA with merge parity, and the errors."""

import csv
import importlib.util

import pytest

torch = pytest.importorskip("torch")

from edgepack.distill.configs import FinetuneConfig, LoraSettings
from edgepack.distill.finetune import finetune

from edgepack.batching import encode, pad_batch
from edgepack.data import DataSpec
from edgepack.errors import EdgepackError, MissingDependencyError
from edgepack.testing import SAMPLE_TEXTS
from edgepack.train import TrainConfig

FAST = TrainConfig(epochs=2, batch_size=8, lr=3e-3, progress=False)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    p = tmp_path_factory.mktemp("ft") / "d.csv"
    rows = [(f"{s} {i}", "good" if i % 2 else "bad") for i in range(8) for s in SAMPLE_TEXTS]
    with open(p, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        w.writerows(rows)
    return DataSpec(path=str(p), val_fraction=0.25)


def _logits(model, tok):
    enc = encode(tok, SAMPLE_TEXTS, None, 64)
    with torch.no_grad():
        return model.eval()(**pad_batch(enc, list(range(len(enc))))).logits


def test_full_finetune_of_an_encoder(tiny_encoder, data, tmp_path):
    art = finetune(tiny_encoder, data, FinetuneConfig(train=FAST), tmp_path / "t")
    assert art.stage == "finetune" and art.task == "text-classification" and art.labels == ["bad", "good"]
    assert art.metrics["trainable_params"] == art.metrics["params"] and len(art.metrics["history"]) == 2
    assert art.metrics["history"][1]["train_loss"] < art.metrics["history"][0]["train_loss"]
    assert not art.has("adapter_config")


def test_lora_adapter_load_and_merge_parity(tiny_encoder, data, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification

    from edgepack.hf import load_model

    art = finetune(tiny_encoder, data, FinetuneConfig(lora=LoraSettings(r=4, alpha=8), train=FAST), tmp_path / "l")
    m = art.metrics
    assert m["merge_max_abs_diff"] <= 1e-5 and m["merge_tolerance"] == 1e-4
    assert m["trainable_params"] < m["params"] / 2
    assert art.file("adapter_weights").is_file() and art.file("adapter_config").is_file()
    merged = load_model(art.path)  # the artifact: merged weights
    via_adapter = load_model(art.path / "adapter")  # the adapter folder, merged by edgepack.hf on load
    assert via_adapter.task == "text-classification" and via_adapter.labels == ["bad", "good"]
    ref = _logits(merged.model, merged.tokenizer)
    torch.testing.assert_close(_logits(via_adapter.model, via_adapter.tokenizer), ref, atol=1e-5, rtol=1e-5)
    # and the unmerged adapter model (LoRA applied on the fly) gives the same logits
    base = AutoModelForSequenceClassification.from_pretrained(tiny_encoder, num_labels=2)
    peft_model = PeftModel.from_pretrained(base, art.path / "adapter")
    torch.testing.assert_close(_logits(peft_model, merged.tokenizer), ref, atol=1e-5, rtol=1e-5)
    # the merge really changed the attention weights (the adapter was trained)
    base_q = peft_model.get_base_model().bert.encoder.layer[0].attention.self.query.base_layer.weight
    assert not torch.allclose(merged.model.bert.encoder.layer[0].attention.self.query.weight, base_q)


@pytest.mark.skipif(importlib.util.find_spec("bitsandbytes") is not None, reason="bitsandbytes is installed")
def test_quantized_base_needs_bitsandbytes(tiny_encoder, data, tmp_path):
    with pytest.raises(MissingDependencyError, match="bitsandbytes"):
        finetune(tiny_encoder, data, FinetuneConfig(lora=LoraSettings(quantize_base="8bit"), train=FAST), tmp_path / "q")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available() or importlib.util.find_spec("bitsandbytes") is None,
                    reason="needs CUDA and bitsandbytes")
def test_qlora_merges_into_full_precision_base(tiny_encoder, data, tmp_path):
    art = finetune(tiny_encoder, data, FinetuneConfig(lora=LoraSettings(r=4, quantize_base="8bit"), train=FAST),
                   tmp_path / "q")
    assert art.metrics["merge_max_abs_diff"] <= 1e-4
    from safetensors.torch import load_file

    assert all(v.dtype == torch.float32 for v in load_file(art.file("weights")).values())


def test_finetune_errors(tiny_encoder, data, tmp_path):
    with pytest.raises(EdgepackError, match="base model not found"):
        finetune(tmp_path / "nothing", data, FinetuneConfig(train=FAST), tmp_path / "x")
    with pytest.raises(EdgepackError, match="needs labelled data"):
        finetune(tiny_encoder, DataSpec(path=data.path, label_column=None), FinetuneConfig(train=FAST), tmp_path / "x")
    with pytest.raises(EdgepackError, match="missing column"):
        finetune(tiny_encoder, DataSpec(path=data.path, text_column="sentence"), FinetuneConfig(train=FAST),
                 tmp_path / "x")
