"""Benchmark library: result structure, ratios, equivalent work across targets, outputs. No timing asserts."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from edgepack.errors import EdgepackError
from edgepack.testing import SAMPLE_TEXTS

TEXTS = SAMPLE_TEXTS + [t.upper() for t in SAMPLE_TEXTS]  # 14 texts of varied lengths
LABELS = [i % 2 for i in range(len(TEXTS))]


@pytest.fixture(scope="module")
def tiny_onnx(tiny_bert, tmp_path_factory):
    from edgepack.export.onnx_export import export_onnx

    return export_onnx(tiny_bert, tmp_path_factory.mktemp("bench") / "onnx").path


@pytest.fixture(scope="module")
def encoder_onnx(tiny_encoder, tmp_path_factory):
    from edgepack.export.onnx_export import export_onnx

    return export_onnx(tiny_encoder, tmp_path_factory.mktemp("bench") / "enc-onnx").path


@pytest.fixture(scope="module")
def rows(tiny_bert, tiny_onnx):
    from edgepack.benchmarks.suite import BenchConfig, Target, run_benchmarks

    cfg = BenchConfig(batch_sizes=(1, 4), threads=1, texts=TEXTS, warmup=1, repeats=2)
    return run_benchmarks(
        [Target.torch("torch", tiny_bert), Target.onnx("onnx", tiny_onnx)],
        cfg,
        baseline="torch",
        labels=LABELS,
    )


def test_result_rows_structure_and_ratios(rows, tiny_onnx):
    assert [(r["target"], r["batch_size"]) for r in rows] == [
        ("torch", 1),
        ("onnx", 1),
        ("torch", 4),
        ("onnx", 4),
    ]
    by = {(r["target"], r["batch_size"]): r for r in rows}
    for r in rows:
        for key in ("p50_ms", "p90_ms", "p99_ms", "texts_per_s", "size_bytes", "peak_rss_mb", "load_rss_mb"):
            assert r[key] is not None, key
        assert r["p50_ms"] <= r["p90_ms"] <= r["p99_ms"]
        assert r["baseline"] == "torch" and r["threads"] == 1 and r["seq_len"] is None
        base = by[("torch", r["batch_size"])]
        assert r["ratio_vs_baseline"] == pytest.approx(base["p50_ms"] / r["p50_ms"])
        assert r["throughput_ratio_vs_baseline"] == pytest.approx(r["texts_per_s"] / base["texts_per_s"])
    assert by[("torch", 1)]["ratio_vs_baseline"] == 1.0
    # whole batches only: 14 texts -> 14 calls at batch 1, 3 calls (12 texts) at batch 4; 2 rounds each
    assert (
        by[("onnx", 1)]["n"] == 28 and by[("onnx", 4)]["n"] == 6 and by[("onnx", 4)]["texts_per_pass"] == 12
    )
    assert by[("onnx", 1)]["size_bytes"] == (tiny_onnx / "model.onnx").stat().st_size
    assert by[("onnx", 1)]["kind"] == "onnx" and by[("torch", 1)]["precision"] == "fp32"


def test_accuracy_and_agreement_with_labels(rows):
    torch_row, onnx_row = rows[0], rows[1]
    assert torch_row["accuracy"] == onnx_row["accuracy"]  # same predictions
    assert 0.0 <= torch_row["accuracy"] <= 1.0 and torch_row["n_eval"] == len(TEXTS)
    lo, hi = torch_row["accuracy_ci95"]
    assert lo <= torch_row["accuracy"] <= hi
    assert onnx_row["agreement_vs_baseline"] == 1.0
    assert "agreement_vs_baseline" not in torch_row  # the baseline is not compared with itself


@pytest.mark.parametrize("which", ["classifier", "encoder"])
def test_torch_and_onnx_targets_do_the_same_work(which, tiny_bert, tiny_onnx, tiny_encoder, encoder_onnx):
    from edgepack.benchmarks.targets import Target

    hf, onnx = (tiny_bert, tiny_onnx) if which == "classifier" else (tiny_encoder, encoder_onnx)
    t = Target.torch("t", hf).open(threads=1)
    o = Target.onnx("o", onnx).open(threads=1)
    for batch in (TEXTS[:1], TEXTS[:5], TEXTS):
        a, b = t.run(batch), o.run(batch)
        assert a.shape == b.shape == (len(batch), 2 if which == "classifier" else 32)
        np.testing.assert_allclose(a, b, atol=1e-4, rtol=1e-3)
    if which == "encoder":  # pooled and L2-normalized like the runtime
        np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    assert t.task == o.task and t.labels == o.labels


def test_peer_optimum_target_on_tiny_classifier(tiny_bert, tmp_path):
    from edgepack.benchmarks.peer import peer_export
    from edgepack.benchmarks.targets import Target

    torch_out = Target.torch("t", tiny_bert).open(threads=1).run(TEXTS)
    fp32 = Target.peer_optimum("p32", tiny_bert, work_dir=tmp_path).open(threads=1)
    np.testing.assert_allclose(fp32.run(TEXTS), torch_out, atol=1e-4)
    assert fp32.info["precision"] == "fp32" and fp32.labels == ["negative", "positive"]
    q = Target.peer_optimum("p8", tiny_bert, quantize="dynamic-per-channel", work_dir=tmp_path).open(
        threads=1
    )
    got = q.run(TEXTS)
    assert q.info["precision"] == "int8-dynamic-per-channel" and q.info["path"].endswith(
        "model_quantized.onnx"
    )
    assert q.size_bytes < fp32.size_bytes
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-5)
    assert np.abs(got - torch_out).max() < 0.05  # int8 noise on a random tiny model, not a different model
    # an unchanged source is not exported again
    out, _ = peer_export(tiny_bert, tmp_path, "dynamic-per-channel")
    before = (out / "model_quantized.onnx").stat().st_mtime_ns
    peer_export(tiny_bert, tmp_path, "dynamic-per-channel")
    assert (out / "model_quantized.onnx").stat().st_mtime_ns == before


def test_peer_without_work_dir_cleans_up(tiny_bert):
    from pathlib import Path

    from edgepack.benchmarks.targets import Target

    ot = Target.peer_optimum("p", tiny_bert).open(threads=1)
    where = Path(ot.info["path"]).parent.parent
    assert where.is_dir()
    ot.close()
    assert not where.exists()


def test_seq_len_mode_uses_exact_token_lengths(tiny_bert, tiny_onnx):
    from edgepack.benchmarks.suite import BenchConfig, Target, run_benchmarks, synthetic_text
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_bert)
    for n in (3, 16, 100):
        assert len(tok(synthetic_text(n))["input_ids"]) == n
    cfg = BenchConfig(batch_sizes=(2,), threads=1, seq_lens=(16, 32), warmup=0, repeats=1, seq_len_calls=3)
    rows = run_benchmarks([Target.onnx("onnx", tiny_onnx), Target.torch("torch", tiny_bert)], cfg)
    assert [(r["target"], r["seq_len"]) for r in rows] == [
        ("onnx", 16),
        ("torch", 16),
        ("onnx", 32),
        ("torch", 32),
    ]
    assert all(r["n"] == 3 and r["texts_per_pass"] == 6 and r["baseline"] == "onnx" for r in rows)
    assert "accuracy" not in rows[0]


def test_json_and_markdown_outputs(rows, tmp_path):
    from edgepack.benchmarks.suite import BenchConfig, to_markdown, write_results

    from edgepack.cpu import host_cpu

    cfg = BenchConfig(batch_sizes=(1, 4), threads=1, texts=TEXTS)
    write_results(rows, cfg, json_path=tmp_path / "b.json", markdown_path=tmp_path / "b.md")
    report = json.loads((tmp_path / "b.json").read_text())
    assert set(report) == {"config", "environment", "results"}
    assert report["config"]["texts"] == "14 texts" and report["config"]["batch_sizes"] == [1, 4]
    assert report["environment"]["threads"] == 1 and "onnxruntime" in report["environment"]["versions"]
    assert report["results"][1]["ratio_vs_baseline"] == pytest.approx(rows[1]["ratio_vs_baseline"])
    md = (tmp_path / "b.md").read_text()
    assert md.strip() == to_markdown(rows, env=report["environment"])
    # the machine, with the CPU features INT8 numbers depend on, is in both outputs
    cpu = host_cpu()
    assert report["environment"]["cpu"] == cpu.describe() and report["environment"]["cpu_features"] == cpu.to_dict()
    assert md.startswith(f"Machine: {cpu.describe()}, ")
    assert "### batch 1, 14 real texts, 1 threads" in md and "### batch 4, 12 real texts" in md
    assert "| torch | torch-cpu | fp32 |" in md and "1.00x" in md and "(baseline)" in md
    assert "100.0% same label" in md and "speed-up vs torch" in md and "accuracy [95% CI]" in md


def test_config_and_run_errors(tiny_onnx):
    from edgepack.benchmarks.suite import BenchConfig, Target, run_benchmarks

    with pytest.raises(EdgepackError, match="batch sizes must be positive"):
        BenchConfig(batch_sizes=(0,), texts=TEXTS)
    with pytest.raises(EdgepackError, match="not both or neither"):
        BenchConfig(texts=TEXTS, seq_lens=(16,))
    with pytest.raises(EdgepackError, match="batch size 32 needs at least that many texts"):
        BenchConfig(batch_sizes=(1, 32), texts=TEXTS)
    cfg = BenchConfig(batch_sizes=(1,), threads=1, texts=TEXTS, warmup=0, repeats=1)
    t = Target.onnx("a", tiny_onnx)
    with pytest.raises(EdgepackError, match="must be unique"):
        run_benchmarks([t, t], cfg)
    with pytest.raises(EdgepackError, match="baseline 'zzz' is not one of the targets: a"):
        run_benchmarks([t], cfg, baseline="zzz")
    with pytest.raises(EdgepackError, match="got 3 labels for 14 texts"):
        run_benchmarks([t], cfg, labels=[0, 1, 0])
    with pytest.raises(EdgepackError, match=r"the given labels include \['meh'\]"):
        run_benchmarks([t], cfg, labels=["positive", "meh"] * 7)
    with pytest.raises(EdgepackError, match="model path not found"):
        Target.torch("x", "/nonexistent/model")
    with pytest.raises(EdgepackError, match="unknown peer quantization"):
        Target.peer_optimum("x", tiny_onnx, quantize="int4")


def test_string_labels_map_through_model_labels(tiny_bert, tiny_onnx):
    from edgepack.benchmarks.suite import BenchConfig, Target, run_benchmarks

    cfg = BenchConfig(batch_sizes=(7,), threads=1, texts=TEXTS, warmup=0, repeats=1)
    names = [["negative", "positive"][i] for i in LABELS]
    a = run_benchmarks([Target.onnx("o", tiny_onnx)], cfg, labels=names)[0]
    b = run_benchmarks([Target.onnx("o", tiny_onnx)], cfg, labels=LABELS)[0]
    assert a["accuracy"] == b["accuracy"]


@pytest.mark.slow
def test_real_minilm_synthetic_lengths_and_peer_int8_fidelity(minilm_path, tmp_path):
    from edgepack.benchmarks.suite import synthetic_text
    from edgepack.benchmarks.targets import Target
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(minilm_path)
    assert [len(tok(synthetic_text(n))["input_ids"]) for n in (16, 128)] == [16, 128]
    ref = Target.torch("t", minilm_path).open(threads=2).run(TEXTS)  # (14, 384), L2-normalized mean pooling
    q = Target.peer_optimum("q", minilm_path, "dynamic-per-channel", work_dir=tmp_path).open(threads=2)
    got = q.run(TEXTS)
    assert got.shape == ref.shape == (len(TEXTS), 384) and q.task == "feature-extraction"
    assert (got * ref).sum(axis=1).min() > 0.97  # cosine; measured ~0.99 for per-channel int8 on this model


def test_isolated_memory_lean_runtime_needs_less_than_torch(tiny_bert, tiny_onnx):
    from edgepack.benchmarks.suite import BenchConfig, Target, run_benchmarks, to_markdown

    cfg = BenchConfig(batch_sizes=(7,), threads=1, texts=TEXTS, warmup=0, repeats=1, isolated_memory=True)
    rows = run_benchmarks([Target.torch("torch", tiny_bert), Target.onnx("onnx", tiny_onnx)], cfg)
    alone = {r["target"]: r["peak_rss_isolated_mb"] for r in rows}
    # the lean runtime process never imports torch (hundreds of MB); a tiny model adds little to either
    assert 0 < alone["onnx"] < alone["torch"] - 100
    assert "peak RSS MB alone" in to_markdown(rows)


def test_isolated_memory_reports_child_failure(tiny_onnx):
    import dataclasses

    from edgepack.benchmarks.memory import isolated_peak_rss_mb
    from edgepack.benchmarks.targets import Target

    bad = dataclasses.replace(Target.onnx("o", tiny_onnx), backend="no-such-backend")
    with pytest.raises(
        EdgepackError, match="memory measurement of 'o' failed: .*unknown backend 'no-such-backend'"
    ):
        isolated_peak_rss_mb(bad, TEXTS, 2, 1)


def test_auto_target_kinds_and_resolved_backend(tiny_bert, tiny_onnx):
    from edgepack.benchmarks.targets import Target

    assert Target.auto("a", tiny_bert).kind == "torch"
    t = Target.auto("b", tiny_onnx)
    assert t.kind == "onnx"
    assert t.open(threads=1).info["backend"] == "ort-cpu"


def test_markdown_cautions_when_the_cpu_was_busy(rows):
    import os

    from edgepack.benchmarks.suite import to_markdown

    busy = [{**r, "load_avg": (os.cpu_count() or 1) + 3.0} for r in rows]
    quiet = [{**r, "load_avg": 0.0} for r in rows]
    assert "Caution: the load average reached" in to_markdown(busy)
    assert "Caution" not in to_markdown(quiet)
    assert all("load_avg" in r for r in rows)


def test_quantize_budget_and_bench_time_with_the_one_protocol(monkeypatch, tiny_onnx):
    """Both publish speed-ups from edgepack.timing.time_interleaved with the same protocol settings."""
    from edgepack.benchmarks import suite
    from edgepack.benchmarks.suite import BenchConfig, Target, run_benchmarks
    from edgepack.quantize import budget

    from edgepack import timing

    assert suite.time_interleaved is timing.time_interleaved and budget.time_interleaved is timing.time_interleaved
    seen: dict[str, timing.TimingProtocol] = {}

    def spy(who):
        def call(runs, batches, protocol, **kw):
            seen[who] = protocol
            return timing.time_interleaved(runs, batches, protocol, **kw)

        return call

    monkeypatch.setattr(suite, "time_interleaved", spy("bench"))
    monkeypatch.setattr(budget, "time_interleaved", spy("quantize"))
    run_benchmarks([Target.onnx("o", tiny_onnx)], BenchConfig(batch_sizes=(2,), threads=1, texts=TEXTS))

    class Fake:
        def infer(self, texts):
            return np.zeros((len(texts), 2))

    lat = budget.time_predictors({"parent": Fake(), "int8": Fake()}, TEXTS, 2, 3, rounds=5)
    assert set(lat) == {"parent", "int8"} and all(v >= 0 for v in lat.values())
    # the same warm-up, turns and settle calls; only the number of passes is the stage's own setting
    assert seen["bench"] == timing.TimingProtocol()
    assert replace(seen["quantize"], repeats=seen["bench"].repeats) == seen["bench"]


def test_environment_records_the_cpu_features(monkeypatch):
    from edgepack.benchmarks import results
    from edgepack.benchmarks.results import environment, machine_line

    from edgepack.cpu import parse_cpuinfo

    epyc = parse_cpuinfo("model name\t: AMD EPYC 7B13\nflags\t\t: fpu sse avx avx2 fma\n", "x86_64")
    monkeypatch.setattr(results, "host_cpu", lambda: epyc)
    env = environment(threads=2)
    assert env["cpu"] == "AMD EPYC 7B13 (AVX2; no AVX-512, no VNNI)"
    assert env["cpu_features"]["vnni"] is False and env["cpu_features"]["target"] == "avx2"
    line = machine_line(env)
    assert line.startswith("Machine: AMD EPYC 7B13 (AVX2; no AVX-512, no VNNI), ") and "cores" in line
