"""The report a person reads first: teacher -> student -> pruned -> INT8, measured in one process.

Called by the runner (``edgepack.pipeline.runner.run_recipe``) with every step's artifact by step name; it
picks what to compare by the recipe's passes, and checks the recipe's ``goals`` (none: no goal lines).

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
PEER_TEACHER = "peer: optimum INT8 of the teacher"


def report_targets(recipe: Any, model: str, results: dict, work: Path) -> tuple[list, dict[str, str]]:
    """The artifacts to compare, teacher first, plus the peer path a user would otherwise take.

    Artifacts are found by the recipe's steps and their passes: the teacher is the last ``finetune``
    output (else the recipe's model); each ``distill``/``prune`` output is a torch target; the last fp32
    ONNX (``onnx``/``fuse``) and the last ``quantize`` output are ONNX targets. Returns the targets and
    ``{"final": label}``, the label of the last edgepack ONNX target (the one the goals are checked on).
    """
    from edgepack.benchmarks.suite import Target

    steps = recipe.steps
    tuned = [s.name for s in steps if s.kind == "finetune"]
    teacher = str(results[tuned[-1]].path) if tuned else model
    subject = "student" if any(s.kind == "distill" for s in steps) else "teacher"
    targets = [Target.torch(TEACHER, teacher)]
    final_torch, fp32, int8 = teacher, None, None
    for s in steps:
        if s.kind in ("distill", "prune"):
            label = {"student": "student", "pruned": f"pruned {subject}"}.get(s.name, s.name)
            targets.append(Target.torch(f"{label} (torch fp32)", results[s.name].path))
            final_torch = results[s.name].path
        elif s.kind in ("onnx", "fuse"):
            fp32 = results[s.name].path
        elif s.kind == "quantize":
            int8 = results[s.name].path
    roles: dict[str, str] = {}
    if fp32 is not None:
        roles["final"] = f"{subject} ONNX fp32 (edgepack)"
        targets.append(Target.onnx(roles["final"], fp32))
    if int8 is not None:
        roles["final"] = f"{subject} ONNX INT8 (edgepack)"
        targets.append(Target.onnx(roles["final"], int8))
    if recipe.bench.peer:
        targets.append(Target.peer_optimum(PEER_TEACHER, teacher,
                                           quantize="dynamic-per-channel", work_dir=work / "peer-teacher"))
        if str(final_torch) != teacher:
            targets.append(Target.peer_optimum(f"peer: optimum INT8 of the same {subject}", final_torch,
                                               quantize="dynamic-per-channel", work_dir=work / "peer-student"))
    return targets, roles


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


def transfer_comparisons(results: dict) -> list[dict]:
    """Each distillation that also trained its student without the transfer set: both accuracies and the
    paired bootstrap interval of the difference (``metrics["transfer_comparison"]``), by step name."""
    return [{"step": n, **a.metrics["transfer_comparison"]} for n, a in results.items()
            if isinstance(a, Artifact) and a.stage == "distill" and a.metrics.get("transfer_comparison")]


def _transfer_markdown(comparisons: list[dict]) -> list[str]:
    from edgepack.scoring import describe_difference

    out = ["", "## Transfer set", ""]
    for c in comparisons:
        out.append(f"- {c['step']}: with {c['transfer_texts']} transfer texts {100 * c['accuracy_a']:.1f}%, "
                   f"without {100 * c['accuracy_b']:.1f}% (seed {c['seed']}, {c['steps']} optimizer steps each). "
                   + describe_difference(c, "with the transfer set", "without") + ".")
    return out


def to_markdown(recipe: Any, lines: list[dict], batch_sizes: tuple[int, ...], goals: list[dict],
                stage_times: dict, env: dict, transfer: list[dict] = ()) -> str:
    head = ["artifact", "accuracy (95% CI)", "size MB"]
    for b in batch_sizes:
        head += [f"b{b} p50 ms", f"b{b} speed-up vs teacher"]
    head += ["vs peer INT8 teacher (b1)", "where"]
    peer = next((l for l in lines if l["target"] == PEER_TEACHER), None)
    from edgepack.benchmarks.results import machine_line

    out = [f"# edgepack report: {recipe.name}", "", machine_line(env), "",
           (f"Recipe `{recipe.source}`; output `{recipe.output}`. All timings were measured in one process, "
            f"targets interleaved, {env.get('threads')} threads, on real validation texts (on the machine "
            f"above: INT8 numbers from CPUs with other features differ). Accuracy: whole validation split "
            f"({env.get('n_eval')} examples), 95% bootstrap interval: differences inside the intervals are noise."),
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
    if goals:
        out += ["", "## Goals", ""]
        out += [f"- {'PASS' if g['ok'] else 'MISS'}: {g['what']} (measured: {g['measured']})" for g in goals]
    if transfer:
        out += _transfer_markdown(list(transfer))
    out += ["", "## Stage times", ""]
    for k, v in stage_times.items():
        out.append(f"- {k}: " + ("skipped (done before)" if v["skipped"] else f"{v['seconds']:.0f} s"))
    out += ["", "![accuracy vs latency](accuracy_vs_latency.png)", ""]
    return "\n".join(out)


def check_goals(goals: Any, lines: list[dict], final: str | None) -> list[dict]:
    """The recipe's goals (``Goals`` or None) checked on the ``final`` target's measured numbers vs the
    teacher's; reported, never hidden. No goals, or nothing measured to check them on: no lines."""
    t = next((l for l in lines if l["target"] == TEACHER), None)
    q = next((l for l in lines if l["target"] == final), None)
    if goals is None or t is None or q is None:
        return []
    out = []
    if goals.min_accuracy_ratio is not None and t["accuracy"] and q["accuracy"] is not None:
        rel = q["accuracy"] / t["accuracy"]
        out.append({"what": f"{final} accuracy >= {100 * goals.min_accuracy_ratio:g}% of the teacher's",
                    "ok": rel >= goals.min_accuracy_ratio, "measured": f"{100 * rel:.1f}%"})
    for b in (1, 8):
        want = getattr(goals, f"min_speedup_b{b}")
        if want is not None:
            speed = q.get(f"b{b}_speedup_vs_teacher") or 0
            out.append({"what": f"{final} batch-{b} latency >= {want:g}x lower than the torch fp32 teacher",
                        "ok": speed >= want, "measured": f"{speed:.2f}x"})
    if goals.max_size_mb is not None and q.get("size_mb") is not None:
        out.append({"what": f"{final} size <= {goals.max_size_mb:g} MB", "ok": q["size_mb"] <= goals.max_size_mb,
                    "measured": f"{q['size_mb']:.1f} MB"})
    return out


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


def embedding_section(rows: list[dict], results: dict) -> tuple[list[str], dict]:
    """Embedding models: each target's cosine to the teacher's embeddings on the same texts (bench rows),
    and each embedding student's own metrics (``edgepack.embed_metrics``, from its distill artifact).
    Returns markdown lines and their data; nothing for classifiers."""
    cos: dict[str, list] = {}
    for r in rows:
        if r.get("mean_cosine_vs_baseline") is not None:
            cos.setdefault(r["target"], [r["mean_cosine_vs_baseline"], r["min_cosine_vs_baseline"]])
    students = {n: a.metrics for n, a in results.items()
                if isinstance(a, Artifact) and a.task == "feature-extraction" and "nn_agreement" in a.metrics}
    if not cos and not students:
        return [], {}
    out = ["", "## Embeddings", "", ("Cosine similarity of each model's embeddings to the teacher's, same validation "
                                     "texts (a narrower student is in its own space: no cosine, see its neighbour "
                                     "metrics):"), "",
           "| artifact | mean cosine | worst text |", "|---|---|---|"]
    out += [f"| {t} | {c[0]:.4f} | {c[1]:.4f} |" for t, c in cos.items()]
    if students:
        out += ["", ("Distilled students on their validation texts (nearest neighbours among those texts; linear "
                     "probe: logistic regression on the training embeddings, scored on validation):"), "",
                "| step | dim | mean cosine vs teacher | NN agreement | recall@10 | probe accuracy | teacher probe |",
                "|---|---|---|---|---|---|---|"]
        for n, m in students.items():
            c = m.get("mean_cosine_vs_teacher")
            projected = m.get("projected_mean_cosine_vs_teacher")
            c_txt = _fmt(c, ".4f") if c is not None else f"{_fmt(projected, '.4f')} (projected)"
            pct = {k: None if m.get(k) is None else 100 * m[k] for k in ("probe_accuracy", "teacher_probe_accuracy")}
            out.append(f"| {n} | {m.get('embedding_dim', '–')} | {c_txt} | {_fmt(m.get('nn_agreement'), '.3f')} | "
                       f"{_fmt(m.get('recall_at_10'), '.3f')} | {_fmt(pct['probe_accuracy'], '.1f')}% | "
                       f"{_fmt(pct['teacher_probe_accuracy'], '.1f')}% |")
    keep = ("embedding_dim", "mean_cosine_vs_teacher", "projected_mean_cosine_vs_teacher", "nn_agreement",
            "recall_at_10", "probe_accuracy", "teacher_probe_accuracy", "eval_texts")
    return out + [""], {"cosine_vs_teacher": cos,
                        "students": {n: {k: m[k] for k in keep if k in m} for n, m in students.items()}}


def write_report(recipe: Any, model: str, results: dict, timings: dict, out: Path) -> Path:
    """Benchmark the recipe's artifacts (``results``: step name -> Artifact, from the runner) and write
    report.md / report.json / the plot into ``out``. ``model``: the recipe's input model folder."""
    from edgepack.benchmarks.results import environment
    from edgepack.benchmarks.suite import BenchConfig, run_benchmarks

    from edgepack.data import load_data

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ds = load_data(recipe.data)
    targets, roles = report_targets(recipe, model, results, recipe.output / ".peer")
    bench = recipe.bench
    cfg = BenchConfig(batch_sizes=tuple(bench.batch_sizes), threads=bench.threads, texts=tuple(ds.val_texts),
                      max_timed_texts=bench.texts, repeats=bench.repeats)
    rows = run_benchmarks(targets, cfg, baseline=TEACHER, labels=ds.val_labels, log=lambda s: print("  " + s))
    paths = {t.name: t.path for t in targets}
    lines = summarize(rows, cfg.batch_sizes, paths)
    g = check_goals(recipe.goals, lines, roles.get("final"))
    env = {**environment(bench.threads), "threads": bench.threads, "n_eval": len(ds.val_texts)}
    plot(lines, out / "accuracy_vs_latency.png")
    transfer = transfer_comparisons(results)
    md = to_markdown(recipe, lines, cfg.batch_sizes, g, timings, env, transfer)
    emb_md, emb = embedding_section(rows, results)
    md += "\n".join(emb_md)
    artifacts = {n: {"path": str(a.path), "stage": a.stage, "metrics": a.metrics}
                 for n, a in results.items() if isinstance(a, Artifact)}
    report = {"recipe": recipe.source, "name": recipe.name, "summary": lines, "goals": g, "transfer": transfer,
              "rows": rows, "stage_times": timings, "artifacts": artifacts, "environment": env,
              **({"embeddings": emb} if emb else {})}
    _atomic_write_text(out / "report.json", json.dumps(_jsonable(report), indent=2) + "\n")
    _atomic_write_text(out / "report.md", md)
    print(md)
    return out
