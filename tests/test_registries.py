"""Quantization methods and pruning steps are looked up in registries: adding one is one registration."""

from dataclasses import dataclass
from pathlib import Path

import pytest
from edgepack.prune import steps
from edgepack.prune.config import PruneConfig
from edgepack.quantize import config as qconfig
from edgepack.quantize import methods
from edgepack.quantize.api import build_candidate

from edgepack.errors import EdgepackError


@dataclass(frozen=True)
class Int4Config:
    group_size: int = 32


@pytest.fixture
def clean_registries(monkeypatch):
    monkeypatch.setattr(methods, "BUILDERS", dict(methods.BUILDERS))
    monkeypatch.setitem(qconfig.__dict__, "METHODS", dict(qconfig.METHODS))
    monkeypatch.setattr(methods, "METHODS", qconfig.METHODS)
    monkeypatch.setattr(steps, "STEPS", dict(steps.STEPS))


def test_built_in_methods_have_builders():
    assert {type(c) for c in qconfig.METHODS.values()} <= set(methods.BUILDERS)


def test_unknown_config_type_lists_the_known_builders():
    with pytest.raises(EdgepackError, match=r"^no quantization builder for Int4Config; known: DynamicInt8Config, "
                                            r"StaticInt8Config, Fp16Config, MixedInt8Config$"):
        build_candidate(None, "int4", Int4Config(), Path("x"), [])


def test_a_registered_method_is_used_by_build_candidate_and_accepted_by_the_stage(clean_registries):
    calls = []

    def build_int4(parent, out, cfg, method, calibration_texts, budget):
        calls.append((parent, out, cfg, method, list(calibration_texts), budget))
        return "artifact"

    with pytest.raises(EdgepackError, match="no builder registered for Int4Config"):
        methods.register_method("int4", Int4Config())
    methods.register_method("int4", Int4Config(group_size=64), build_int4)
    stage = qconfig.QuantizeConfig(methods=("int4", "dynamic-int8"))
    mcfg = stage.method_config("int4")
    assert build_candidate("parent", "int4", mcfg, Path("out"), ["a text"]) == "artifact"
    assert build_candidate("parent", "int4", mcfg, Path("out"), ["a text"], budget="budget") == "artifact"
    assert calls == [("parent", Path("out"), Int4Config(group_size=64), "int4", ["a text"], None),
                     ("parent", Path("out"), Int4Config(group_size=64), "int4", ["a text"], "budget")]


def test_mixed_precision_is_a_registered_method_that_needs_the_budget():
    mixed = qconfig.METHODS["dynamic-int8-mixed"]
    assert isinstance(mixed, qconfig.MixedInt8Config) and methods.builder_for(mixed) is methods.BUILDERS[
        qconfig.MixedInt8Config]
    with pytest.raises(EdgepackError, match=r"^dynamic-int8-mixed needs an accuracy budget"):
        build_candidate(None, "dynamic-int8-mixed", mixed, Path("x"), [])


def test_pruning_steps_run_in_registration_order_when_wanted(clean_registries):
    assert list(steps.STEPS) == ["layers", "heads", "ffn", "unstructured", "2:4"]
    with pytest.raises(EdgepackError, match=r"^unknown pruning step 'int4'; known: layers, heads, ffn, "
                                            r"unstructured, 2:4$"):
        steps.get_step("int4")
    seen = []
    steps.register_step("mark", lambda cfg: cfg.seed == 7)(lambda ctx: seen.append(ctx.cfg.seed))
    with pytest.raises(EdgepackError, match="'mark' is already registered"):
        steps.register_step("mark", lambda cfg: True)(print)
    ctx = steps.PruneContext(model=None, tokenizer=None, cfg=PruneConfig(seed=7), data=None, classifier=True)
    assert steps.run_steps(ctx) == ["mark"] and seen == [7] and ctx.report["steps"] == ["mark"]
    ctx = steps.PruneContext(model=None, tokenizer=None, cfg=PruneConfig(), data=None, classifier=True)
    assert steps.run_steps(ctx) == [] and seen == [7]
    wanted = {n: s.wanted(PruneConfig(drop_layers=(1,), ffn_fraction=0.5, semi_structured_24=True))
              for n, s in steps.STEPS.items()}
    assert wanted == {"layers": True, "heads": False, "ffn": True, "unstructured": False, "2:4": True,
                      "mark": False}
