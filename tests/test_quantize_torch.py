"""Torch-side quantization: dynamic int8 round trip through safetensors; bitsandbytes skipped when absent."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from edgepack.errors import MissingDependencyError
from edgepack.testing import SAMPLE_TEXTS

torch = pytest.importorskip("torch")


def _logits(model, tok):
    enc = tok(SAMPLE_TEXTS, padding=True, return_tensors="pt")
    with torch.inference_mode():
        return model(**enc).logits.numpy()


def test_torch_dynamic_int8_round_trip_sqnr(tiny_bert, tmp_path):
    from edgepack.hf import load_model
    from edgepack.compare import sqnr_db
    from edgepack.quantize.torch_quant import QWEIGHTS, load_quantized_torch, quantize_torch

    art = quantize_torch(tiny_bert, tmp_path / "tq")
    assert art.format == "torch-quantized" and art.runtime.precision == "int8-dynamic"
    assert art.runtime.quantization == "torch-dynamic-int8"
    assert art.file("weights").name == QWEIGHTS and art.metrics["quantized_ops"] == 13  # 6 Linear x 2 layers + pooler
    lm = load_model(tiny_bert)
    ref = _logits(lm.model, lm.tokenizer)
    got = _logits(load_quantized_torch(art.path), lm.tokenizer)
    assert sqnr_db(ref, got) >= 25.0
    # the classifier was skipped: it is still a float nn.Linear
    assert type(load_quantized_torch(art.path).classifier) is torch.nn.Linear


def test_torch_quant_bad_method(tiny_bert, tmp_path):
    from edgepack.errors import EdgepackError
    from edgepack.quantize.torch_quant import TorchQuantConfig

    with pytest.raises(EdgepackError, match="^method must be one of torch-dynamic-int8, bnb-int8, bnb-nf4, got 'int2'$"):
        TorchQuantConfig(method="int2")


@pytest.mark.skipif(importlib.util.find_spec("bitsandbytes") is not None, reason="bitsandbytes is installed")
def test_bitsandbytes_missing_is_a_clear_error(tiny_bert, tmp_path):
    from edgepack.quantize.torch_quant import TorchQuantConfig, quantize_torch

    with pytest.raises(MissingDependencyError, match="needs the 'bitsandbytes' package"):
        quantize_torch(tiny_bert, tmp_path / "x", TorchQuantConfig(method="bnb-nf4"))
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("method", ["bnb-int8", "bnb-nf4"])
def test_bitsandbytes_save_and_load(tiny_bert, tmp_path, method):
    pytest.importorskip("bitsandbytes")
    from edgepack.hf import load_model
    from edgepack.compare import sqnr_db
    from edgepack.quantize.torch_quant import TorchQuantConfig, load_quantized_torch, quantize_torch

    art = quantize_torch(tiny_bert, tmp_path / method, TorchQuantConfig(method=method))
    assert art.metrics["quantized_ops"] > 0
    lm = load_model(tiny_bert)
    got = _logits(load_quantized_torch(art.path), lm.tokenizer)
    assert sqnr_db(_logits(lm.model, lm.tokenizer), got) >= (20.0 if method == "bnb-int8" else 10.0)
    assert np.isfinite(got).all()
