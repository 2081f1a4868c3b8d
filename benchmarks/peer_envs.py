"""Each peer in its own virtual environment, installed from PyPI with pip and reused while its spec is unchanged.

Peers pin other numpy / onnxruntime / transformers versions than edgepack's and than each other's, so each gets
a venv under ``<cache>/<name>`` (default ``~/.cache/edgepack/peers``). A venv is reused when its marker file
(``edgepack-peer-env.json``, written last) records the same requirement list; otherwise it is rebuilt.
``torch==2.13.0`` is pinned wherever a peer needs torch, so pip takes the CPU wheel instead of a CUDA build.
An install that fails is reported with pip's last lines, never retried silently.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from edgepack.errors import EdgepackError

TORCH = "torch==2.13.0"  # the CPU wheel on this machine's disk; an unpinned torch pulls a multi-GB CUDA build
MARKER = "edgepack-peer-env.json"


@dataclass(frozen=True)
class PeerEnv:
    """A venv: its folder name and the requirements pip installs into it (in one resolver run)."""

    name: str
    requirements: tuple[str, ...]
    check: str  # a Python statement that must run in the venv once installed (imports the peer)
    note: str = ""


def edgepack_source() -> Path:
    """The folder holding edgepack's pyproject.toml (this checkout)."""
    return Path(__file__).resolve().parents[1]


ENVS: dict[str, PeerEnv] = {
    "edgepack": PeerEnv(
        "edgepack", (f"{edgepack_source()}[cpu,serve]",),
        "import edgepack.runtime.predictor, edgepack.runtime.server",
        "the lean runtime install (numpy, tokenizers, onnxruntime, starlette, uvicorn): no torch",
    ),
    "fastembed": PeerEnv("fastembed", ("fastembed==0.9.1",), "import fastembed"),
    "sentence-transformers": PeerEnv(
        "sentence-transformers", (TORCH, "sentence-transformers[onnx]", "optimum-onnx"),
        "from sentence_transformers import SentenceTransformer, export_dynamic_quantized_onnx_model",
    ),
    "infinity": PeerEnv(
        "infinity", (TORCH, "infinity-emb[server,optimum]==0.0.78", "sentence-transformers>=3.0.1,<4"),
        "import infinity_emb, sentence_transformers",
        "its torch engine needs sentence-transformers",
    ),
}


def default_cache() -> Path:
    return Path(os.environ.get("EDGEPACK_PEERS_CACHE", Path.home() / ".cache" / "edgepack" / "peers"))


def venv_python(folder: Path) -> Path:
    return folder / "bin" / "python"


def folder_bytes(folder: Path) -> int:
    """Bytes of every regular file under ``folder`` (symlinks not followed), i.e. the install's disk size."""
    total = 0
    for root, _dirs, files in os.walk(folder):
        for f in files:
            p = os.path.join(root, f)
            if not os.path.islink(p):
                total += os.path.getsize(p)
    return total


def _spec(env: PeerEnv) -> dict:
    """What a reusable venv must match: the requirements, Python, and the sources of local-folder requirements."""
    spec = {"requirements": list(env.requirements), "python": sys.version.split()[0]}
    local = [r.split("[")[0] for r in env.requirements if r.startswith("/")]
    if local:
        spec["sources"] = {p: _tree_hash(Path(p)) for p in local}
    return spec


def _tree_hash(folder: Path) -> str:
    """sha256 over what a lean edgepack install runs (pyproject, core, runtime, CLI, and the benchmarks the peer
    benchmark runs in it): a change reinstalls it."""
    import hashlib

    h = hashlib.sha256()
    files = [folder / "pyproject.toml"] + [p for sub in ("edgepack", "runtime", "pipeline", "benchmarks")
                                            for p in sorted((folder / sub).rglob("*")) if p.suffix in (".py", ".yaml")]
    for p in files:
        if p.is_file():
            h.update(str(p.relative_to(folder)).encode() + b"\0" + p.read_bytes())
    return h.hexdigest()


def _tail(text: str, n: int = 6) -> str:
    lines = [ln for ln in text.splitlines() if ln.strip(" ^~\t") and "is ignored: it is neither" not in ln]
    return " | ".join(lines[-n:])[-1200:]


def ensure_env(env: PeerEnv, cache: Path, log=print, timeout_s: float = 1800) -> dict:
    """Install (or reuse) ``env``'s venv under ``cache``; returns ``{"ok", "python", "install_mb", ...}``.

    On failure ``ok`` is False and ``error`` says why (pip's last lines); nothing is raised for a peer that
    cannot be installed, since the benchmark reports it and goes on.
    """
    folder = cache / env.name
    marker = folder / MARKER
    try:
        info = json.loads(marker.read_text(encoding="utf-8"))
        if info.get("spec") == _spec(env):
            if info.get("ok") is False:  # a failed install is not retried while the spec is the same
                return {**info, "reused": True, "error": f"{info['error']} (recorded by an earlier run; delete "
                                                         f"{folder} to retry)"}
            return {**info, "ok": True, "reused": True, "python": str(venv_python(folder))}
    except (OSError, ValueError, AttributeError, KeyError):
        pass
    if folder.exists():
        if not (folder / "pyvenv.cfg").is_file():
            raise EdgepackError(f"refusing to replace {folder}: it is not a virtual environment")
        shutil.rmtree(folder)
    cache.mkdir(parents=True, exist_ok=True)
    log(f"peers: installing {env.name} ({' '.join(env.requirements)}) into {folder} ...")
    t0 = time.perf_counter()
    steps = [
        [sys.executable, "-m", "venv", str(folder)],
        [str(venv_python(folder)), "-m", "pip", "install", "--disable-pip-version-check", "-q", *env.requirements],
        [str(venv_python(folder)), "-c", env.check],
    ]
    for cmd in steps:
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
        except subprocess.TimeoutExpired:
            return {"ok": False, "error": f"`{' '.join(cmd[:4])} ...` took longer than {timeout_s:g} s"}
        if proc.returncode != 0:
            what = "pip install failed" if "pip" in cmd else ("import check failed" if "-c" in cmd else "venv failed")
            error = f"{what}: {_tail(proc.stderr or proc.stdout)}"
            if cmd[0] != sys.executable:  # pip's or the import's verdict: remembered, so reruns skip it
                _write_marker(marker, {"spec": _spec(env), "ok": False, "error": error, "packages": _freeze(folder)})
            return {"ok": False, "error": error}
    info = {
        "spec": _spec(env),
        "ok": True,
        "install_s": round(time.perf_counter() - t0, 1),
        "install_mb": round(folder_bytes(folder) / 1e6, 1),
        "packages": _freeze(folder),
    }
    _write_marker(marker, info)
    return {**info, "reused": False, "python": str(venv_python(folder))}


def _write_marker(marker: Path, info: dict) -> None:
    tmp = marker.with_suffix(".tmp")
    tmp.write_text(json.dumps(info, indent=2), encoding="utf-8")
    os.replace(tmp, marker)


def _freeze(folder: Path) -> dict[str, str]:
    """name -> version of every distribution in the venv (what the numbers depend on)."""
    code = ("import importlib.metadata as m, json; "
            "print(json.dumps({d.metadata['Name'].lower(): d.version for d in m.distributions()}))")
    proc = subprocess.run([str(venv_python(folder)), "-c", code], capture_output=True, text=True, check=False)
    try:
        return dict(sorted(json.loads(proc.stdout).items()))
    except ValueError:
        return {}
