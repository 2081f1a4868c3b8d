"""The house's floors, enforced: every import of every library module (function-level ones too) points down.

ground  edgepack/ (core)           imports no pass, no runtime, no top floor
middle  distill/ prune/ quantize/ export/ (passes)   never import one another; may use runtime and the core
        runtime/                   imports only the core (its full rule, with the libraries it may use and
                                   tensorrt only inside functions, is tests/test_runtime_layering.py)
top     benchmarks/ pipeline/      may import anything below them

Library code never imports the test helpers in ``edgepack.testing``. ``edgepack/__main__.py`` is the program
entry point of ``python -m edgepack`` (not library code) and is the one module allowed to reach the top floor.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]
PASSES = {"distill", "prune", "quantize", "export"}
TOP = {"benchmarks", "pipeline"}
ENTRY_POINTS = {"edgepack/__main__.py"}


def _package_dirs() -> dict[str, str]:
    pp = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return pp["tool"]["setuptools"]["package-dir"]


def _floor(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "edgepack":
        return None
    if len(parts) > 1 and parts[1] in PASSES | TOP | {"runtime"}:
        return parts[1]
    return "core"


def _library_files():
    for pkg, folder in _package_dirs().items():
        for path in sorted((ROOT / folder).glob("*.py")):
            if path.name.startswith("test_") or path.name == "conftest.py":
                continue
            yield pkg, path


def _imports(path: Path):
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield node.lineno, a.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "edgepack":  # `from edgepack import distill` names a package
                for a in node.names:
                    yield node.lineno, f"edgepack.{a.name}"
            else:
                yield node.lineno, node.module


def forbidden_edges() -> list[str]:
    bad = []
    for pkg, path in _library_files():
        rel = path.relative_to(ROOT).as_posix()
        me = _floor(pkg)
        for line, name in _imports(path):
            them = _floor(name)
            where = f"{rel}:{line} imports {name}"
            if name == "edgepack.testing" or name.startswith("edgepack.testing."):
                bad.append(f"library code imports test helpers: {where}")
            if me == "core" and them not in (None, "core") and rel not in ENTRY_POINTS:
                bad.append(f"the core imports a floor above it: {where}")
            if me in PASSES and them in PASSES and them != me:
                bad.append(f"a pass imports another pass: {where}")
            if me in PASSES | {"runtime"} and them in TOP:
                bad.append(f"the middle floor imports the top floor: {where}")
            if me == "runtime" and them not in (None, "core", "runtime"):
                bad.append(f"the runtime imports a pass: {where}")
    return sorted(set(bad))


def test_no_import_points_the_wrong_way():
    edges = forbidden_edges()
    assert not edges, f"{len(edges)} forbidden import edge(s):\n" + "\n".join(edges)


@pytest.mark.parametrize("source,rule", [
    ("from edgepack.distill.api import distill\n", "a pass imports another pass"),
    ("def f():\n    from edgepack.pipeline import run_recipe\n", "the middle floor imports the top floor"),
    ("def f():\n    import edgepack.testing\n", "library code imports test helpers"),
])
def test_the_rule_catches_function_level_imports(tmp_path, monkeypatch, source, rule):
    """The walker sees imports inside functions: a planted edge in a pass is reported."""
    fake = tmp_path / "quantize"
    fake.mkdir()
    (fake / "planted.py").write_text(source)
    me = sys.modules[__name__]
    monkeypatch.setattr(me, "ROOT", tmp_path)
    monkeypatch.setattr(me, "_package_dirs", lambda: {"edgepack.quantize": "quantize"})
    edges = forbidden_edges()
    assert len(edges) == 1 and edges[0].startswith(rule) and "quantize/planted.py" in edges[0]


def test_every_package_folder_is_mapped_and_walked():
    dirs = _package_dirs()
    assert {"edgepack", "edgepack.runtime", "edgepack.benchmarks"} <= set(dirs)
    walked = {pkg for pkg, _ in _library_files()}
    assert walked == set(dirs)
