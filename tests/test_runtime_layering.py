"""The runtime floor imports only the core and its own lean libraries, at module level and inside functions.

``edgepack.runtime`` may import: the standard library, numpy, tokenizers, onnxruntime, tensorrt (inside
functions only), starlette/uvicorn/orjson/uvloop (the ``serve`` extra), ``edgepack.runtime.*`` and the core modules in
``edgepack/``. Never torch/transformers/optimum/peft/onnx, and never a pass (export, quantize, prune,
distill) or the benchmarks above it.
"""

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNTIME = ROOT / "runtime"
CORE = {p.stem for p in (ROOT / "edgepack").glob("*.py")} - {"__init__", "__main__"}
THIRD_PARTY = {"numpy", "tokenizers", "onnxruntime", "starlette", "uvicorn", "orjson", "uvloop"}
FUNCTION_ONLY = {"tensorrt", "onnxruntime"}  # heavy: imported when a session or engine opens
# core modules that are orchestration, not ground floor (they import passes): the runtime keeps off them
CORE_OFF_LIMITS = {"run", "report", "recipe", "recipe_cli", "pipeline", "cli", "hf", "testing"}


def _imports(path: Path) -> list[tuple[str, int, bool]]:
    """(module, line, at_module_level) for every import statement in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top = {id(n) for n in tree.body}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno, id(node) in top) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append((node.module, node.lineno, id(node) in top))
    return out


def _problem(module: str, module_level: bool) -> str | None:
    root = module.split(".")[0]
    if root == "edgepack":
        parts = module.split(".")
        if len(parts) == 1 or parts[1] == "runtime":
            return None
        if parts[1] in CORE and parts[1] not in CORE_OFF_LIMITS:
            return None
        return "imports above or beside the runtime floor"
    if root in sys.stdlib_module_names or root == "__future__":
        return None
    if root in FUNCTION_ONLY:
        return "imports a heavy library at module level" if module_level else None
    if root in THIRD_PARTY:
        return None
    return "imports a library the lean runtime does not depend on"


def test_runtime_imports_only_the_core_and_lean_libraries():
    bad = []
    for path in sorted(RUNTIME.glob("*.py")):
        for module, line, module_level in _imports(path):
            why = _problem(module, module_level)
            if why:
                bad.append(f"runtime/{path.name}:{line} {why}: {module}")
    assert bad == []


def test_the_rule_catches_what_it_should():
    assert _problem("edgepack.export.trt_engine", False)
    assert _problem("edgepack.benchmarks.torch_cuda", False)
    assert _problem("edgepack.hf", False) and _problem("edgepack.run", False)
    assert _problem("torch", False) and _problem("transformers", False) and _problem("onnx", False)
    assert _problem("tensorrt", True) and not _problem("tensorrt", False)
    assert not _problem("edgepack.contract", True) and not _problem("edgepack.runtime.cuda", True)
    assert not _problem("numpy", True) and not _problem("ctypes", True)


def test_importing_every_runtime_module_loads_no_pass_and_no_heavy_library():
    mods = [f"edgepack.runtime.{p.stem}" for p in sorted(RUNTIME.glob("*.py")) if p.stem != "__init__"]
    code = (
        "import importlib, json, sys\n"
        f"for m in {mods!r}: importlib.import_module(m)\n"
        "heavy = ('torch', 'transformers', 'optimum', 'peft', 'onnx', 'tensorrt')\n"
        "upper = ('edgepack.export', 'edgepack.quantize', 'edgepack.prune', 'edgepack.distill',"
        " 'edgepack.benchmarks')\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in heavy or m.startswith(upper))))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.strip().splitlines()[-1]) == []
