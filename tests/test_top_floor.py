"""The top floor's import rules: the core (edgepack/) imports no stage and no pipeline module, and no stage
imports the pipeline. ``edgepack/__main__.py`` is the one exception: the program entry point, not library code."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("distill", "prune", "quantize", "export", "runtime", "benchmarks")


def imports(path: Path) -> list[tuple[int, str]]:
    """Every absolute import in ``path``, module- and function-level, as (line, module)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.lineno, node.module))
    return out


def test_core_imports_no_stage_and_no_pipeline():
    upward = tuple(f"edgepack.{name}" for name in (*STAGES, "pipeline"))
    bad = [f"{p.relative_to(ROOT)}:{line} imports {mod}" for p in sorted((ROOT / "edgepack").glob("*.py"))
           if p.name != "__main__.py" for line, mod in imports(p) if mod.startswith(upward)]
    assert bad == []


def test_no_stage_imports_the_pipeline():
    bad = [f"{p.relative_to(ROOT)}:{line} imports {mod}" for stage in STAGES for p in sorted((ROOT / stage).glob("*.py"))
           for line, mod in imports(p) if mod.startswith("edgepack.pipeline")]
    assert bad == []
