"""The report a person reads first: teacher -> student -> pruned -> INT8, measured in one process.

Writes ``report.md``, ``report.json`` and ``accuracy_vs_latency.png`` (one point per artifact, the Pareto
front drawn) into the report folder. Accuracy is on the whole validation split with a 95% bootstrap
interval; latency is measured on real validation texts by ``edgepack.benchmarks.suite`` with every target
interleaved in the same process, so the ratios are comparable even on a noisy machine.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from edgepack.artifact import Artifact, _atomic_write_text, _jsonable

TEACHER = "teacher (torch fp32)"


def report_targets(recipe: Any, pipe: Any, roles: dict, work: Path) -> list:
    """The artifacts to compare, teacher first, plus the peer path a user would otherwise take."""
    from edgepack.benchmarks.suite import Target

    res = pipe.results
    teacher = str(res[roles["teacher"]].path) if roles["teacher"] else roles["base"]
    targets = [Target.torch(TEACHER, teacher)]
    if "student" in res:
        targets.append(Target.torch("student (torch fp32)", res["student"].path))
    if "pruned" in res:
        targets.append(Target.torch("pruned student (torch fp32)", res["pruned"].path))
    fp32 = res.get("fused") or res["onnx"]
    targets.append(Target.onnx("student ONNX fp32 (edgepack)", fp32.path))
    if "int8" in res:
        targets.append(Target.onnx("student ONNX INT8 (edgepack)", res["int8"].path))
    if recipe.bench.peer:
        final_torch = res[roles["torch_final"]].path if roles["torch_final"] else teacher
        targets.append(Target.peer_optimum("peer: optimum INT8 of the teacher", teacher,
                                           quantize="dynamic-per-channel", work_dir=work / "peer-teacher"))
        targets.append(Target.peer_optimum("peer: optimum INT8 of the same student", final_torch,
                                           quantize="dynamic-per-channel", work_dir=work / "peer-student"))
    return targets


def summarize(rows: list[dict], batch_sizes: tuple[int, ...], paths: dict[str, str]) -> list[dict]:
    """One line per target: accuracy, size and p50 latency per batch size with speed-ups."""
    by = {}
    for r in rows:
        by.setdefault(r["target"], {"target": r["target"], "path": paths.get(r["target"], ""),
                                    "accuracy": r.get("accuracy"), "accuracy_ci95": r.get("accuracy_ci95"),
                                    "agreement_vs_teacher": r.get("agreement_vs_baseline"),
                                    "size_mb": round(r["size_bytes"] / 1e6, 2) if r.get("size_bytes") else None,
                                    "params": r.get("params"), "load_rss_mb": r.get("load_rss_mb")})
        by[r["target"]][f"b{r['batch_size']}_p50_ms"] = r["p50_ms"]
        by[r["target"]][f"b{r['batch_size']}_p99_ms"] = r["p99_ms"]
        by[r["target"]][f"b{r['batch_size']}_speedup_vs_teacher"] = r["ratio_vs_baseline"]
    return list(by.values())


def _fmt(v: Any, spec: str) -> str:
    return "–" if v is None else format(v, spec)


def to_markdown(recipe: Any, lines: list[dict], batch_sizes: tuple[int, ...], goals: list[dict],
                stage_times: dict, env: dict) -> str:
    head = ["artifact", "accuracy (95% CI)", "size MB"]
    for b in batch_sizes:
        head += [f"b{b} p50 ms", f"b{b} speed-up vs teacher"]
    head += ["vs peer INT8 teacher (b1)", "where"]
    peer = next((l for l in lines if l["target"].startswith("peer: optimum INT8 of the teacher")), None)
    out = [f"# edgepack report: {recipe.name}", "",
           f"Recipe `{recipe.source}`; output `{recipe.output}`. All timings were measured in one process, "
           f"targets interleaved, {env.get('threads')} threads, on real validation texts "
           f"(machine: {env.get('cpu', '?')}). Accuracy: whole validation split "
           f"({env.get('n_eval')} examples), 95% bootstrap interval: differences inside the intervals are noise.",
           "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for l in lines:
        ci = l.get("accuracy_ci95")
        acc = "–" if l["accuracy"] is None else f"{100 * l['accuracy']:.1f}% ({100 * ci[0]:.1f}–{100 * ci[1]:.1f})"
        cells = [l["target"], acc, _fmt(l["size_mb"], ".1f")]
        for b in batch_sizes:
            cells += [_fmt(l.get(f"b{b}_p50_ms"), ".2f"), _fmt(l.get(f"b{b}_speedup_vs_teacher"), ".2f") + "x"]
        vs_peer = peer["b1_p50_ms"] / l["b1_p50_ms"] if peer and l.get("b1_p50_ms") else None
        cells += [_fmt(vs_peer, ".2f") + "x", f"`{l['path']}`"]
        out.append("| " + " | ".join(cells) + " |")
    out += ["", "## Goals", ""]
    out += [f"- {'PASS' if g['ok'] else 'MISS'}: {g['what']} (measured: {g['measured']})" for g in goals]
    out += ["", "## Stage times", ""]
    for k, v in stage_times.items():
        out.append(f"- {k}: " + ("skipped (done before)" if v["skipped"] else f"{v['seconds']:.0f} s"))
    out += ["", "![accuracy vs latency](accuracy_vs_latency.png)", ""]
    return "\n".join(out)


def goals(lines: list[dict]) -> list[dict]:
    """The default recipe's targets, checked on the measured numbers (reported, never hidden)."""
    t = next(l for l in lines if l["target"] == TEACHER)
    q = next((l for l in lines if "INT8 (edgepack)" in l["target"]), None)
    if q is None or t["accuracy"] is None or q["accuracy"] is None:
        return []
    rel = q["accuracy"] / t["accuracy"]
    speed = q.get("b1_speedup_vs_teacher") or 0
    return [{"what": "INT8 student accuracy >= 96% of the teacher's", "ok": rel >= 0.96, "measured": f"{100 * rel:.1f}%"},
            {"what": "INT8 student batch-1 latency >= 8x lower than the torch fp32 teacher", "ok": speed >= 8,
             "measured": f"{speed:.2f}x"}]


def plot(lines: list[dict], path: Path) -> None:
    """Accuracy vs batch-1 latency, one labelled point per artifact, Pareto front as a step line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = [(l["b1_p50_ms"], 100 * l["accuracy"], l["target"]) for l in lines
           if l.get("b1_p50_ms") and l.get("accuracy") is not None]
    fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
    for x, y, name in pts:
        ax.scatter(x, y, s=40, color="tab:red" if name.startswith("peer") else "tab:blue", zorder=3)
        ax.annotate(name, (x, y), textcoords="offset points", xytext=(5, 4), fontsize=7)
    front, best = [], -1.0
    for x, y, _ in sorted(pts):
        if y > best:
            front.append((x, y))
            best = y
    if len(front) > 1:
        ax.step([p[0] for p in front], [p[1] for p in front], where="post", color="tab:gray", ls="--", lw=1,
                label="Pareto front")
        ax.legend(loc="lower right", fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("batch-1 latency, p50 (ms, log scale; lower is better)")
    ax.set_ylabel("validation accuracy (%)")
    ax.set_title("accuracy vs latency (same process, same texts)")
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, path)


def write_report(recipe: Any, cfgs: dict, pipe: Any, roles: dict, out: Path) -> Path:
    """Benchmark the pipeline's artifacts and write report.md / report.json / the plot into ``out``."""
    from edgepack.benchmarks.results import environment
    from edgepack.benchmarks.suite import BenchConfig, run_benchmarks
    from edgepack.data import load_data

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ds = load_data(cfgs["data"])
    targets = report_targets(recipe, pipe, roles, recipe.output / ".peer")
    bench = recipe.bench
    cfg = BenchConfig(batch_sizes=tuple(bench.batch_sizes), threads=bench.threads, texts=tuple(ds.val_texts),
                      max_timed_texts=bench.texts, repeats=bench.repeats)
    rows = run_benchmarks(targets, cfg, baseline=TEACHER, labels=ds.val_labels, log=lambda s: print("  " + s))
    paths = {t.name: t.path for t in targets}
    lines = summarize(rows, cfg.batch_sizes, paths)
    g = goals(lines)
    env = {**environment(bench.threads), "threads": bench.threads, "n_eval": len(ds.val_texts)}
    plot(lines, out / "accuracy_vs_latency.png")
    md = to_markdown(recipe, lines, cfg.batch_sizes, g, pipe.timings, env)
    artifacts = {n: {"path": str(a.path), "stage": a.stage, "metrics": a.metrics}
                 for n, a in pipe.results.items() if isinstance(a, Artifact)}
    report = {"recipe": recipe.source, "name": recipe.name, "summary": lines, "goals": g, "rows": rows,
              "stage_times": pipe.timings, "artifacts": artifacts, "environment": env}
    _atomic_write_text(out / "report.json", json.dumps(_jsonable(report), indent=2) + "\n")
    _atomic_write_text(out / "report.md", md)
    print(md)
    return out
