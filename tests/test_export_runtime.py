"""ONNX export parity against torch, fusion, and the lean runtime on tiny random models."""

import numpy as np
import pytest

from edgepack.artifact import ArtifactError
from edgepack.errors import EdgepackError
from edgepack.export.onnx_export import OnnxExportConfig, export_onnx
from edgepack.hf import load_model
from edgepack.runtime import Predictor
from edgepack.testing import SAMPLE_TEXTS

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def cls_onnx(tiny_bert, tmp_path_factory):
    return export_onnx(tiny_bert, tmp_path_factory.mktemp("x") / "onnx", OnnxExportConfig())


@pytest.fixture(scope="module")
def enc_onnx(tiny_encoder, tmp_path_factory):
    return export_onnx(tiny_encoder, tmp_path_factory.mktemp("x") / "onnx", OnnxExportConfig())


def _torch_logits(model_dir, ids, mask):
    lm = load_model(model_dir)
    with torch.inference_mode():
        return lm.model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask)).logits.numpy()


@pytest.mark.parametrize("batch,length", [(1, 3), (7, 40), (1, 40), (7, 3)])
def test_onnx_logits_match_torch_dynamic_shapes(cls_onnx, tiny_bert, batch, length):
    from edgepack.runtime.ort import OrtRunner

    rng = np.random.default_rng(batch * 100 + length)
    ids = rng.integers(5, 100, size=(batch, length), dtype=np.int64)
    mask = np.ones_like(ids)
    mask[::2, length // 2 + 1:] = 0  # padded rows
    got = OrtRunner(cls_onnx.file("model")).infer(
        {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)})["logits"]
    np.testing.assert_allclose(got, _torch_logits(tiny_bert, ids, mask), atol=1e-4, rtol=1e-3)


def test_manifest_of_export(cls_onnx, tiny_bert):
    assert cls_onnx.format == "onnx" and cls_onnx.task == "text-classification"
    assert cls_onnx.labels == ["negative", "positive"]
    assert [i["name"] for i in cls_onnx.inputs] == ["input_ids", "attention_mask", "token_type_ids"]
    assert cls_onnx.inputs[0]["shape"][0] != 1 and isinstance(cls_onnx.inputs[0]["shape"][1], str)  # dynamic
    assert cls_onnx.outputs[0]["name"] == "logits" and cls_onnx.outputs[0]["shape"][1] == 2
    assert cls_onnx.metrics["max_abs_diff"] < 1e-4
    assert cls_onnx.runtime.precision == "fp32" and cls_onnx.runtime.max_length == 128


def test_predictor_matches_torch_pipeline(cls_onnx, tiny_bert):
    lm = load_model(tiny_bert)
    enc = lm.tokenizer(SAMPLE_TEXTS, padding=True, truncation=True, max_length=128, return_tensors="pt")
    with torch.inference_mode():
        ref = torch.softmax(lm.model(**enc).logits, -1).numpy()
    pred = Predictor.open(cls_onnx.path, batch_size=3)  # forces sorting + several batches
    np.testing.assert_allclose(pred.infer(SAMPLE_TEXTS), ref, atol=1e-5)
    out = pred.predict(SAMPLE_TEXTS)
    assert [o["label"] for o in out] == [["negative", "positive"][i] for i in ref.argmax(1)]
    assert out[0]["scores"]["negative"] == pytest.approx(float(ref[0, 0]), abs=1e-5)


def test_embeddings_match_torch_mean_pooling(enc_onnx, tiny_encoder):
    lm = load_model(tiny_encoder)
    enc = lm.tokenizer(SAMPLE_TEXTS, padding=True, return_tensors="pt")
    with torch.inference_mode():
        h = lm.model(**enc).last_hidden_state
    m = enc["attention_mask"].unsqueeze(-1).float()
    ref = torch.nn.functional.normalize((h * m).sum(1) / m.sum(1), dim=-1).numpy()
    got = Predictor.open(enc_onnx.path, batch_size=2).infer(SAMPLE_TEXTS)
    np.testing.assert_allclose(got, ref, atol=1e-5)
    assert enc_onnx.runtime.pooling == "mean" and enc_onnx.outputs[0]["name"] == "last_hidden_state"


def test_fusion_is_validated_and_fuses_attention(cls_onnx, tmp_path):
    from edgepack.export.fusion import optimize_onnx

    fused = optimize_onnx(cls_onnx, tmp_path / "fused")
    assert fused.metrics["fused_ops"].get("Attention") == 2  # one per layer
    assert fused.metrics["max_abs_diff"] < 1e-4 and fused.runtime.fused is True
    a = Predictor.open(cls_onnx.path).infer(SAMPLE_TEXTS)
    b = Predictor.open(fused.path).infer(SAMPLE_TEXTS)
    np.testing.assert_allclose(a, b, atol=1e-5)


def _op_types(path) -> set[str]:
    import onnx

    return {n.op_type for n in onnx.load(str(path)).graph.node}


def test_cpu_fusion_keeps_layernorm_unfused_and_runtime_does_not_refuse_it(cls_onnx, tmp_path):
    from edgepack.export.fusion import FusionConfig, optimize_onnx
    from edgepack.runtime.ort import OrtRunner

    cpu = optimize_onnx(cls_onnx, tmp_path / "cpu")
    assert "SkipLayerNormalization" not in _op_types(cpu.file("model"))
    assert cpu.config["skip_layer_norm"] is False
    gpu_style = optimize_onnx(cls_onnx, tmp_path / "sln", FusionConfig(skip_layer_norm=True))
    assert "SkipLayerNormalization" in _op_types(gpu_style.file("model"))
    assert gpu_style.metrics["max_abs_diff"] < 1e-4
    # ORT would fuse Add + LayerNormalization again when the session loads; the CPU runner prevents it
    OrtRunner(cpu.file("model"), optimized_model_path=tmp_path / "ours.onnx")
    assert "SkipLayerNormalization" not in _op_types(tmp_path / "ours.onnx")
    OrtRunner(cpu.file("model"), disabled_optimizers=(), optimized_model_path=tmp_path / "ort.onnx")
    assert "SkipLayerNormalization" in _op_types(tmp_path / "ort.onnx")
    np.testing.assert_allclose(
        Predictor.open(cpu.path).infer(SAMPLE_TEXTS), Predictor.open(gpu_style.path).infer(SAMPLE_TEXTS), atol=1e-5
    )


def test_lora_adapter_is_merged_before_export(tiny_bert, tmp_path):
    peft = pytest.importorskip("peft")
    lm = load_model(tiny_bert)
    cfg = peft.LoraConfig(task_type="SEQ_CLS", r=4, lora_alpha=8, target_modules=["query", "value"])
    pm = peft.get_peft_model(lm.model, cfg)
    with torch.no_grad():  # make the adapter non-trivial (B is zero at init)
        for n, p in pm.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.5)
    ids = torch.randint(5, 100, (3, 9))
    with torch.inference_mode():
        ref = pm(input_ids=ids).logits.numpy()
    pm.save_pretrained(tmp_path / "adapter")
    lm.model.config.save_pretrained(tmp_path / "adapter")  # labels next to the adapter
    art = export_onnx(tmp_path / "adapter", tmp_path / "onnx")
    from edgepack.runtime.ort import OrtRunner

    n = ids.numpy()
    got = OrtRunner(art.file("model")).infer(
        {"input_ids": n, "attention_mask": np.ones_like(n), "token_type_ids": np.zeros_like(n)})["logits"]
    np.testing.assert_allclose(got, ref, atol=1e-4)
    base = load_model(tiny_bert)
    with torch.inference_mode():
        assert not np.allclose(base.model(input_ids=ids).logits.numpy(), ref, atol=1e-3)  # adapter mattered


def test_export_errors(tmp_path, cls_onnx, tiny_bert):
    with pytest.raises(EdgepackError, match="model directory not found"):
        export_onnx(tmp_path / "missing", tmp_path / "o")
    (tmp_path / "empty").mkdir()
    with pytest.raises(EdgepackError, match="no config.json"):
        export_onnx(tmp_path / "empty", tmp_path / "o")
    with pytest.raises(ArtifactError, match="'onnx' artifact"):
        export_onnx(cls_onnx.path, tmp_path / "o")
    gpt = tmp_path / "gpt"
    gpt.mkdir()
    (gpt / "config.json").write_text('{"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]}')
    with pytest.raises(EdgepackError, match="unsupported model type 'gpt2'"):
        export_onnx(gpt, tmp_path / "o")
    with pytest.raises(EdgepackError, match="exceeds the model's limit"):
        export_onnx(tiny_bert, tmp_path / "o", OnnxExportConfig(max_length=4096))
    assert not (tmp_path / "o").exists()


def test_runtime_errors(cls_onnx, tiny_bert):
    with pytest.raises(ArtifactError, match="not an edgepack artifact"):
        Predictor.open(tiny_bert)
    p = Predictor.open(cls_onnx.path)
    with pytest.raises(EdgepackError, match="not a single string"):
        p.infer("one string")
    with pytest.raises(EdgepackError, match="no texts"):
        p.infer([])
    with pytest.raises(EdgepackError, match="text 1 is a int"):
        p.infer(["ok", 3])
    with pytest.raises(EdgepackError, match="unknown backend 'cuda9'"):
        Predictor.open(cls_onnx.path, backend="cuda9")


def test_long_text_is_truncated_to_max_length(cls_onnx):
    p = Predictor.open(cls_onnx.path, max_length=16)
    enc = p.encoder.encode(["great " * 500])
    assert len(enc[0].ids) == 16
    assert p.infer(["great " * 500]).shape == (1, 2)


def test_two_onnxruntime_builds_are_refused():
    from edgepack.runtime.ort import check_single_ort_build

    check_single_ort_build(["onnxruntime"])
    with pytest.raises(EdgepackError, match="onnxruntime, onnxruntime-gpu.*Keep exactly one"):
        check_single_ort_build(["onnxruntime", "onnxruntime-gpu"])
