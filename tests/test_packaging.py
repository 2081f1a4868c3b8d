"""Install extras never mix ONNX Runtime builds (issue 16, item 1).

`onnxruntime` and `onnxruntime-gpu` both own the `onnxruntime/` folder; an environment with both stops every
ORT call (``check_single_ort_build``). So `tools` pulls no build, `cpu`/`gpu` pick one, and every install line
the README, docs/gpu.md and the Makefile give resolves to exactly one. The slow test asks pip itself to
resolve the documented GPU install (``pip install --dry-run --report``).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
from edgepack.runtime.ort import ORT_DISTRIBUTIONS

ROOT = Path(__file__).resolve().parents[1]
EXTRAS_RE = re.compile(r'(?:edgepack|\.)\[([a-z0-9,\- ]+)\]')


def _extras() -> dict[str, list[str]]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]


def _dist_name(req: str) -> str:
    return re.split(r"[<>=!~;\[ ]", req, maxsplit=1)[0].strip().lower()


def ort_builds(extras: list[str]) -> set[str]:
    """The ONNX Runtime distributions an install with ``extras`` asks for (base dependencies included)."""
    table = _extras()
    base = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    reqs = list(base) + [r for e in extras for r in table[e]]
    return {_dist_name(r) for r in reqs} & set(ORT_DISTRIBUTIONS)


def install_lines(path: Path) -> list[tuple[str, list[str]]]:
    """(line, extras) of every `pip install ...edgepack[...]` / `-e ".[...]"` line in ``path``."""
    out = []
    for line in path.read_text().splitlines():
        if "pip" not in line.lower() or "install" not in line:
            continue
        for m in EXTRAS_RE.finditer(line):
            out.append((line.strip(), [e.strip() for e in m.group(1).split(",")]))
    return out


def gpu_install_line() -> list[str]:
    """The extras of the documented GPU-host install (docs/gpu.md's first install line)."""
    lines = install_lines(ROOT / "docs" / "gpu.md")
    assert lines, "docs/gpu.md documents no `pip install ...edgepack[...]` line"
    return lines[0][1]


def test_tools_pulls_no_onnx_runtime_build_and_cpu_gpu_pick_one():
    table = _extras()
    assert ort_builds(["tools"]) == set(), f"tools pulls {ort_builds(['tools'])}"
    assert ort_builds([]) == set()
    assert ort_builds(["cpu"]) == {"onnxruntime"}
    assert ort_builds(["gpu"]) == {"onnxruntime-gpu"}
    assert ort_builds(["gpu-tools", "serve", "dev"]) == set()
    assert "tensorrt>=10,<12" in table["gpu-tools"]  # TensorRT 10.x and 11.x (what PyPI resolves today)


@pytest.mark.parametrize("doc", ["README.md", "docs/gpu.md", "Makefile"])
def test_every_documented_install_line_has_at_most_one_build(doc):
    lines = install_lines(ROOT / doc)
    assert lines
    for line, extras in lines:
        builds = ort_builds(extras)
        assert len(builds) <= 1, f"{doc}: `{line}` installs {sorted(builds)} side by side"
        if "tools" in extras:  # the tools import onnxruntime: an install line with them must pick one
            assert len(builds) == 1, f"{doc}: `{line}` installs the tools without an ONNX Runtime build"


def test_gpu_and_make_install_lines_pick_the_right_build():
    assert ort_builds(gpu_install_line()) == {"onnxruntime-gpu"}
    make = [e for _, e in install_lines(ROOT / "Makefile")]
    assert make and all(ort_builds(e) == {"onnxruntime"} for e in make)  # `make install` stays CPU


def _pip_resolve(specs: list[str], report: Path) -> None:
    """``pip install --dry-run --report`` of ``specs``; skips when pip cannot reach what it needs."""
    cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
           "--disable-pip-version-check", "--report", str(report), *specs]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
    except subprocess.TimeoutExpired:
        pytest.skip("pip did not finish resolving within 15 minutes")
    if proc.returncode == 0:
        return
    err = proc.stderr.lower()
    if "pypi.nvidia.com" in err:
        pytest.skip("tensorrt's placeholder package fetches its libraries from https://pypi.nvidia.com/, "
                    "which this machine cannot reach")
    offline = ("connection", "network", "resolve host", "temporary failure", "could not fetch", "proxy",
               "timed out", "no matching distribution")
    if any(s in err for s in offline):
        pytest.skip("pip cannot reach the package index")
    pytest.fail(f"pip could not resolve {specs}:\n{proc.stderr[-3000:]}")


def _resolved(report: Path) -> set[str]:
    return {i["metadata"]["name"].lower() for i in json.loads(report.read_text())["install"]}


@pytest.mark.slow
@pytest.mark.parametrize("with_tensorrt", [False, True], ids=["without-tensorrt", "as-documented"])
def test_pip_resolves_the_documented_gpu_install_to_one_build(tmp_path, with_tensorrt):
    """pip itself resolves the docs/gpu.md install (this machine's platform): exactly one ORT build.

    ``as-documented`` needs https://pypi.nvidia.com/ (tensorrt's placeholder package builds its metadata from
    there); ``without-tensorrt`` resolves the same extras with gpu-tools' other requirements, from PyPI only."""
    extras = gpu_install_line()
    specs = [f"{ROOT}[{','.join(extras)}]"]
    if not with_tensorrt:
        specs = [f"{ROOT}[{','.join(e for e in extras if e != 'gpu-tools')}]"]
        specs += [r for r in _extras()["gpu-tools"] if _dist_name(r) != "tensorrt"] if "gpu-tools" in extras else []
    _pip_resolve(specs, tmp_path / "report.json")
    names = _resolved(tmp_path / "report.json")
    assert names & set(ORT_DISTRIBUTIONS) == {"onnxruntime-gpu"}, sorted(names & set(ORT_DISTRIBUTIONS))
    assert ("tensorrt" in names) == with_tensorrt
