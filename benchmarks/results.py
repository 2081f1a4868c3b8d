"""Benchmark results as JSON (with the machine and library versions) and as Markdown tables."""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from edgepack.artifact import _jsonable
from edgepack.cpu import host_cpu


def measured(prog: str, measure: Callable[[], dict], as_json: bool) -> tuple[dict | None, int]:
    """A measuring CLI's step: ``(result, 0)`` to print as text; ``(None, 0)`` once printed as one JSON line
    (``as_json``); ``(None, 2)`` after one ``PROG: error: ...`` line on stderr for an EdgepackError (a bad
    artifact or option), never a traceback."""
    import sys

    from edgepack.errors import EdgepackError

    try:
        r = measure()
    except EdgepackError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return None, 2
    if as_json:
        print(json.dumps(r))
        return None, 0
    return r, 0


def environment(threads: int | None = None) -> dict:
    """The machine and library versions a timing depends on.

    ``cpu`` is one line with the model and the features INT8 speed and accuracy depend on (e.g. "AMD EPYC
    (AVX2; no AVX-512, no VNNI)"), ``cpu_features`` the same as fields (``edgepack.cpu.CpuInfo.to_dict``):
    numbers from machines with different features are not comparable.
    """
    import importlib.metadata as md

    cpu = host_cpu()
    versions = {}
    for pkg in (
        "torch",
        "transformers",
        "onnxruntime",
        "onnxruntime-gpu",
        "optimum",
        "optimum-onnx",
        "numpy",
    ):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        load = None
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu.describe(),
        "cpu_features": cpu.to_dict(),
        "cpu_count": os.cpu_count(),
        "load_average": load,
        "threads": threads,
        "versions": versions,
    }


def _config(cfg: Any) -> dict:
    conf = dataclasses.asdict(cfg) if dataclasses.is_dataclass(cfg) else dict(cfg or {})
    if conf.get("texts") is not None:
        conf["texts"] = f"{len(conf['texts'])} texts"
    return conf


def bench_report(results: Sequence[dict], cfg: Any = None, env: dict | None = None) -> dict:
    """A JSON-ready dict: ``{"config", "environment", "results"}`` (texts are counted, not copied).

    ``env``: the ``environment()`` the results were measured in (default: this machine, now).
    """
    conf = _config(cfg)
    return {
        "config": _jsonable(conf),
        "environment": env if env is not None else environment(conf.get("threads")),
        "results": _jsonable(list(results)),
    }


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_results(
    results: Sequence[dict],
    cfg: Any = None,
    json_path: str | os.PathLike | None = None,
    markdown_path: str | os.PathLike | None = None,
    env: dict | None = None,
) -> None:
    """Write the JSON report and/or the Markdown tables (each atomically), both with the same machine line.

    ``env``: the ``environment()`` the results were measured in (default: this machine, now).
    """
    env = env if env is not None else environment(_config(cfg).get("threads"))
    if json_path:
        _atomic_write(Path(json_path), json.dumps(bench_report(results, cfg, env), indent=2) + "\n")
    if markdown_path:
        _atomic_write(Path(markdown_path), to_markdown(results, env=env) + "\n")


def _fmt(v: Any, spec: str = ".1f") -> str:
    return "–" if v is None else format(v, spec)


def _quality_cell(r: dict) -> str:
    if r.get("accuracy") is not None:
        lo, hi = r.get("accuracy_ci95") or (None, None)
        ci = f" [{lo * 100:.1f}, {hi * 100:.1f}]" if lo is not None else ""
        return f"{r['accuracy'] * 100:.2f}%{ci}"
    return "–"


def _fidelity_cell(r: dict) -> str:
    if r["target"] == r.get("baseline"):
        return "(baseline)"
    if r.get("agreement_vs_baseline") is not None:
        return f"{r['agreement_vs_baseline'] * 100:.1f}% same label"
    if r.get("min_cosine_vs_baseline") is not None:
        return f"cos min {r['min_cosine_vs_baseline']:.4f}"
    return "–"


def _columns(baseline: str, has_acc: bool, has_alone: bool) -> list[tuple[str, Any]]:
    """(header, cell function) pairs for the Markdown tables."""
    cols: list[tuple[str, Any]] = [
        ("target", lambda r: r["target"]),
        ("backend", lambda r: str(r.get("backend", ""))),
        ("precision", lambda r: str(r.get("precision", ""))),
        ("p50 ms", lambda r: _fmt(r["p50_ms"], ".2f")),
        ("p90 ms", lambda r: _fmt(r["p90_ms"], ".2f")),
        ("p99 ms", lambda r: _fmt(r["p99_ms"], ".2f")),
        ("texts/s", lambda r: _fmt(r["texts_per_s"])),
        ("size MB", lambda r: _fmt(r["size_bytes"] / 1e6)),
        ("load RSS MB", lambda r: _fmt(r.get("load_rss_mb"))),
    ]
    if has_alone:
        cols.append(("peak RSS MB alone", lambda r: _fmt(r.get("peak_rss_isolated_mb"))))
    cols.append(
        (
            f"speed-up vs {baseline}",
            lambda r: f"{r['ratio_vs_baseline']:.2f}x" if r.get("ratio_vs_baseline") else "–",
        )
    )
    if has_acc:
        cols.append(("accuracy [95% CI]", _quality_cell))
    cols.append((f"agreement with {baseline}", _fidelity_cell))
    return cols


def machine_line(env: dict) -> str:
    """"Machine: <CPU model (INT8 features)>, N cores, Python x, onnxruntime y, torch z" for reports."""
    versions = env.get("versions") or {}
    libs = ", ".join(f"{k} {versions[k]}" for k in ("onnxruntime", "onnxruntime-gpu", "torch") if k in versions)
    cores = f", {env['cpu_count']} cores" if env.get("cpu_count") else ""
    python = f", Python {env['python']}" if env.get("python") else ""
    return f"Machine: {env.get('cpu', 'unknown CPU')}{cores}{python}" + (f", {libs}" if libs else "")


def to_markdown(results: Sequence[dict], title: str | None = None, env: dict | None = None) -> str:
    """One table per workload (batch size, and sequence length or real texts), ratios vs the baseline.

    ``env`` (from ``environment()``) adds the machine line (CPU and its INT8 features) on top.
    """
    if not results:
        return "(no benchmark results)"
    baseline = results[0].get("baseline", "")
    cols = _columns(
        baseline,
        any(r.get("accuracy") is not None for r in results),
        any(r.get("peak_rss_isolated_mb") is not None for r in results),
    )
    lines = [f"## {title}", ""] if title else []
    if env is not None:
        lines += [machine_line(env), ""]
    for bs, seq in dict.fromkeys((r["batch_size"], r["seq_len"]) for r in results):
        rows = [r for r in results if (r["batch_size"], r["seq_len"]) == (bs, seq)]
        what = f"sequence length {seq}" if seq else f"{rows[0]['texts_per_pass']} real texts"
        threads = rows[0].get("threads")
        lines += [f"### batch {bs}, {what}" + (f", {threads} threads" if threads else ""), ""]
        lines += ["| " + " | ".join(h for h, _ in cols) + " |", "|" + "---|" * len(cols)]
        lines += ["| " + " | ".join(cell(r) for _, cell in cols) + " |" for r in rows]
        lines.append("")
    lines.append(
        f"Speed-up = {baseline} p50 / target p50 at the same batch size, measured in one process with "
        "targets interleaved; latency is end to end (tokenize + run + post-process)."
    )
    lines += _load_note(results)
    return "\n".join(lines)


def _load_note(results: Sequence[dict]) -> list[str]:
    """A caution when other processes competed for the CPU while timing (1-minute load average > cores)."""
    loads = [r["load_avg"] for r in results if r.get("load_avg") is not None]
    cores = os.cpu_count() or 1
    if not loads or max(loads) <= cores:
        return []
    note = (
        f"Caution: the load average reached {max(loads):.1f} on {cores} cores while timing: other processes "
        "competed for the CPU. Absolute latencies are inflated, and multi-threaded torch suffers most "
        "(its threads wait for each other at every op); compare ratios, ideally also at 1 thread."
    )
    return ["", note]
