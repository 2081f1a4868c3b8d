"""The peer benchmark's report: one JSON document and Markdown tables, written atomically, with the machine line.

A row either carries numbers or ``error`` (why the peer could not be installed or run); a row with an error
is listed under "Could not run" with its reason and never shows a number.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgepack.benchmarks.results import _atomic_write, machine_line

RUNTIME_BASELINE = "fastembed-fp32"  # fastembed as it ships models: an fp32 ONNX export
SERVER_BASELINE = "infinity-torch"


def _f(v: Any, spec: str = ".1f") -> str:
    return "–" if v is None else format(v, spec)


def paired_ratio(t: dict, base: dict, key: str = "texts_per_s", rounds: str = "texts_per_s_passes") -> float | None:
    """Throughput of ``t`` over ``base``: the median of their per-round ratios where both list the same number
    of rounds (round i of each ran close in time), else the ratio of their ``key``."""
    import statistics

    a, b = t.get(rounds) or [], base.get(rounds) or []
    if len(a) == len(b) > 1 and all(b):
        return statistics.median(x / y for x, y in zip(a, b))
    v, w = t.get(key), base.get(key)
    return v / w if v and w else None


def _times(r: float | None) -> str:
    return "–" if r is None else f"{r:.2f}x"


def _paired(t: dict, base: dict, key: str = "texts_per_s", rounds: str = "texts_per_s_passes") -> str:
    return _times(paired_ratio(t, base, key, rounds))


def _by_name(rows: Sequence[dict], key: str) -> dict[str, dict]:
    return {r[key]: r for r in rows if not r.get("error")}


def runtime_table(rows: Sequence[dict], batch_sizes: Sequence[int]) -> list[str]:
    ok = [r for r in rows if not r.get("error")]
    if not ok:
        return ["(no runtime peer ran)"]
    base = _by_name(rows, "peer").get(RUNTIME_BASELINE, {})
    head = ["peer", "model file"]
    for bs in batch_sizes:
        head += [f"texts/s b{bs}", f"p50 ms b{bs}", f"vs {RUNTIME_BASELINE} b{bs}"]
    head += [f"corpus texts/s b{max(batch_sizes)}", f"vs {RUNTIME_BASELINE} corpus"]
    head += ["peak RSS MB", "install MB", "cos mean", "cos min"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in ok:
        cells = [r["peer"], r.get("model_file", "")]
        for bs in batch_sizes:
            t = r["timings"].get(str(bs), {})
            bt = base.get("timings", {}).get(str(bs), {}) if base else {}
            cells += [_f(t.get("texts_per_s")), _f(t.get("p50_ms"), ".2f"), _paired(t, bt)]
        t = r["timings"].get("corpus", {})
        bt = base.get("timings", {}).get("corpus", {}) if base else {}
        cells += [_f(t.get("texts_per_s")), _paired(t, bt)]
        cells += [_f(r.get("peak_rss_mb"), ".0f"), _f(r.get("install_mb"), ".0f"),
                  _f(r.get("cos_mean"), ".4f"), _f(r.get("cos_min"), ".4f")]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def versus_table(rows: Sequence[dict], batch_sizes: Sequence[int], ours: str = "edgepack-int8") -> list[str]:
    """``ours`` against every other peer that ran: paired throughput ratios per batch size and on the corpus."""
    by = _by_name(rows, "peer")
    if ours not in by:
        return []
    keys = [*map(str, batch_sizes), "corpus"]
    head = ["peer", *(f"{ours} / peer, b{k}" if k != "corpus" else f"{ours} / peer, corpus" for k in keys)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, r in by.items():
        if name != ours:
            cells = [name] + [_paired(by[ours]["timings"].get(k, {}), r["timings"].get(k, {})) for k in keys]
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def ceiling_table(rows: Sequence[dict], batch_sizes: Sequence[int]) -> list[str]:
    """Each edgepack model file's ceiling on these texts here (``row["ceiling"]``) and what it allows against
    the baseline: no runtime, ours included, can beat the baseline by more with that file on this machine."""
    by = _by_name(rows, "peer")
    base = by.get(RUNTIME_BASELINE, {}).get("timings", {})
    have = [r for r in by.values() if r.get("ceiling")]
    if not have:
        return []
    keys = [*map(str, batch_sizes), "corpus"]
    big = str(max(batch_sizes))
    head = ["model file of", "floor us/token (shape)", "mean tokens/text", "ceiling texts/s",
            *(f"ceiling / {RUNTIME_BASELINE} " + (f"b{k}" if k != "corpus" else k) for k in keys),
            f"in-order padding b{big}"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in have:
        c = r["ceiling"]
        if c.get("error"):
            lines.append("| " + " | ".join([r["peer"], f"could not be measured: {c['error']}"] + [""] *
                                           (len(head) - 2)) + " |")
            continue
        ratios = [_times(c["texts_per_s"] / v if (v := base.get(k, {}).get("texts_per_s")) else None) for k in keys]
        lines.append("| " + " | ".join([r["peer"], f"{c['floor_us_per_token']:.1f} ({c['floor_shape']})",
                                        f"{c['mean_tokens']:.1f}", _f(c["texts_per_s"]), *ratios,
                                        _times((c.get("padding_in_order") or {}).get(big))]) + " |")
    return lines


def server_table(rows: Sequence[dict]) -> list[str]:
    ok = [r for r in rows if not r.get("error")]
    if not ok:
        return ["(no server ran)"]
    base = {r["texts_per_request"]: r for r in ok if r["server"] == SERVER_BASELINE}
    head = ["server", "texts/request", "req/s", "texts/s", "p50 ms", "p99 ms", "errors", f"req/s vs {SERVER_BASELINE}",
            "RSS MB after"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in ok:
        b = base.get(r["texts_per_request"], {})
        cells = [r["server"], str(r["texts_per_request"]), _f(r.get("throughput_rps")),
                 _f((r.get("throughput_rps") or 0) * r["texts_per_request"]), _f(r.get("p50_ms")),
                 _f(r.get("p99_ms")), str(r.get("errors", "–")), _paired(r, b, "throughput_rps", "rps_per_round"),
                 _f(r.get("rss_mb"), ".0f")]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def failures(report: dict) -> list[str]:
    """One line per peer (runtime row, server row or install) that could not run, with its reason."""
    seen, out = set(), []
    for section, key in (("runtime", "peer"), ("server", "server")):
        for r in report.get(section, {}).get("rows", []):
            if r.get("error") and r[key] not in seen:
                seen.add(r[key])
                out.append(f"- {section} `{r[key]}`: {r['error']}")
    return out


def to_markdown(report: dict) -> str:
    cfg = report["config"]
    lines = [f"## Peer benchmark: {cfg['model_name']} embeddings", "", machine_line(report["environment"]), ""]
    load = report.get("load_average")
    if load:
        lines += [(f"Load average (1 min) before / after: {load['before']:.2f} / {load['after']:.2f} on "
                  f"{report['environment'].get('cpu_count')} cores{load.get('note', '')}."), ""]
    rt = report.get("runtime")
    if rt is not None:
        lines += [f"### Runtime: {cfg['texts']} texts, {cfg['threads']} threads, one process per peer in its own venv",
                  "", *runtime_table(rt["rows"], cfg["batch_sizes"]), "",
                  (f"texts/s: median of {cfg['rounds']} passes, the peers loaded at once in their own processes and "
                  "taking turns pass by pass (so load on the machine falls on all alike), one call per batch of "
                  f"texts in input order (end to end: tokenize, run, pool, normalize); p50 per call. cos: each "
                  f"peer's embeddings vs {rt.get('reference', 'the reference')} on the same texts. "
                  "corpus: all texts in one call, each tool batching them its own way (edgepack sorts by length, "
                  "so a batch pads less). vs: the median of the per-round ratios (the two passes of a round ran "
                  "seconds apart). install MB: the peer's whole venv on disk."), ""]
        versus = versus_table(rt["rows"], cfg["batch_sizes"])
        if versus:
            lines += ["edgepack-int8 against each peer (texts/s ratio, median of the per-round ratios):", "",
                      *versus, ""]
        ceiling = ceiling_table(rt["rows"], cfg["batch_sizes"])
        if ceiling:
            lines += [("Ceiling on this machine: the bare model call (`session.run`) at its cheapest measured shape "
                       "(rows x tokens, full rows: no padding, no tokenization, no pooling), times the texts' mean "
                       "token count (`python -m edgepack.benchmarks.token_cost FILE --texts T`). No runtime, "
                       "edgepack included, embeds these texts faster with that file here, so no ratio to the "
                       "baseline above the ceiling's can be reached on this machine. In-order padding: the tokens "
                       "a runtime runs when it pads each batch of texts, taken in their order, to its longest, "
                       "over the real tokens: given the very same file, a runtime that pads nothing beats one that "
                       "pads like that by about this factor at that batch size, and not much more."),
                      "", *ceiling, ""]
    sv = report.get("server")
    if sv is not None:
        n = cfg.get("server_rounds", 1)
        title = (f"### Server: {cfg['clients']} closed-loop clients on loopback, {n} x {cfg['duration']:g} s per "
                 "server and texts/request")
        lines += [title, "", *server_table(sv["rows"]), "",
                  ("errors: responses other than 200 plus transport failures. Endpoints: edgepack "
                  "`/v1/embeddings`, Infinity `/embeddings` (both OpenAI-style `{\"input\": [...]}`). The servers "
                  "run at once, each idle while another is loaded, and take turns (rotating order); a row "
                  "merges its turns, and the ratio is the median of per-round ratios. RSS: the server's "
                  "processes together."), ""]
    fail = failures(report)
    if fail:
        lines += ["### Could not run", "", *fail, ""]
    return "\n".join(lines).rstrip() + "\n"


def write_report(report: dict, out_dir: str | os.PathLike) -> tuple[Path, Path]:
    """``peers.json`` and ``peers.md`` in ``out_dir`` (each replaced atomically); returns both paths."""
    out = Path(out_dir)
    json_path, md_path = out / "peers.json", out / "peers.md"
    _atomic_write(json_path, json.dumps(report, indent=2, default=str) + "\n")
    _atomic_write(md_path, to_markdown(report))
    return json_path, md_path
