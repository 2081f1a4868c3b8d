"""Resume by content: editing the data CSV in place recomputes from the first stage that read it; a run
with nothing changed skips every stage."""

import pytest

from edgepack.data import Dataset
from edgepack.fingerprint import content_key, data_content_id, path_content_id

pytest.importorskip("torch")
pytest.importorskip("yaml")

RECIPE = """
name: tiny-resume
output: {out}
model: {model}
data: {{path: {csv}, val_fraction: 0.25}}
defaults: {{max_length: 32, seed: 0, progress: false}}
passes:
  - prune: {{ffn_fraction: 0.5, importance_examples: 8, latency_runs: 0, recovery: {{steps: 1}}}}
  - onnx: {{opset: 18, max_length: 32}}
"""


def _csv(path, flip=False):
    rows = ["text,label"] + [f'"a film {i}",{"positive" if (i % 2) ^ flip else "negative"}' for i in range(16)]
    path.write_text("\n".join(rows) + "\n")


def test_editing_the_csv_in_place_recomputes_from_the_first_stage_that_read_it(tmp_path, tiny_bert):
    from edgepack.pipeline import load_recipe, run_recipe

    csv = tmp_path / "data.csv"
    _csv(csv)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(RECIPE.format(out=tmp_path / "run", model=tiny_bert, csv=csv))

    def ran():
        out = run_recipe(load_recipe(recipe), log=lambda m: None, report=False)
        return [k for k, v in out["timings"].items() if not v["skipped"]]

    assert ran() == ["pruned", "onnx"]
    assert ran() == []  # nothing changed: every stage skipped
    _csv(csv, flip=True)  # same path, same size, other labels
    assert ran() == ["pruned", "onnx"]
    assert ran() == []


def test_content_ids(tmp_path):
    f = tmp_path / "d.csv"
    f.write_text("text,label\nx,1\n")
    a = path_content_id(f)
    f.write_text("text,label\nx,0\n")
    assert a.startswith("sha256:") and path_content_id(f) != a
    assert path_content_id("org/hub-model") == "org/hub-model"
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "w.bin").write_bytes(b"1")
    t = path_content_id(tmp_path / "m")
    (tmp_path / "m" / "w.bin").write_bytes(b"2")
    assert t.startswith("tree:") and path_content_id(tmp_path / "m") != t
    assert content_key({"path": str(f), "seed": 0}) == {"path": path_content_id(f), "seed": 0}
    d1 = Dataset(["a", "b"], [0, 1], label_names=["n", "p"])
    d2 = Dataset(["a", "b"], [1, 0], label_names=["n", "p"])  # same sizes and lengths, other labels
    assert data_content_id(d1) != data_content_id(d2) and data_content_id(d1) == data_content_id(
        Dataset(["a", "b"], [0, 1], label_names=["n", "p"]))
