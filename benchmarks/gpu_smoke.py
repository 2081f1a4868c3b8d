"""One command for the first GPU machine: what runs, how fast, how close to CPU fp32 (issue 16).

    python -m edgepack.benchmarks.gpu_smoke --out gpu-smoke            # on an NVIDIA box
    python -m edgepack.benchmarks.gpu_smoke --dry-run --out smoke-cpu  # CI: everything but the GPU calls

Needs only torch (with CUDA) and transformers (4.x or 5.x; no optimum, no internet). Steps, each skipped
with the reason when it cannot run, all inside ``--budget-s`` (default 480 s):

1. environment: torch/CUDA/GPU, transformers, onnxruntime providers, tensorrt;
2. ``--wheels DIR``: pip-installs missing optional packages from carried wheels (``--no-index``);
3. the GPU/TensorRT tests (``pytest -m "gpu or tensorrt"``) when the test suite and pytest are present;
4. a random MiniLM-sized BERT classifier (``--model DIR`` for a real HF folder) timed over batch 1/8/32 x
   sequence 32/128 for torch fp32, fp16, fp16 + CUDA graphs, ONNX Runtime CUDA and TensorRT where present,
   each checked against CPU fp32 torch on the same inputs (max abs diff, cosine);
5. ``gpu_smoke.json`` and ``gpu_smoke.md`` in ``--out``.

``--dry-run`` runs the same code on the CPU with a tiny model and a small grid: GPU-only variants are
listed as skipped ("dry run"), the GPU tests are not started, pip is not called.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

GRID = ((1, 8, 32), (32, 128))
DRY_GRID = ((1, 2), (8, 16))
OPTIONAL = ("onnx", "onnxruntime", "tensorrt")  # what --wheels may install
TORCH_VARIANTS = ("fp32", "fp16", "fp16-graph")


class Smoke:
    """Collects steps (ok / skipped / failed with a reason) within a time budget."""

    def __init__(self, budget_s: float, dry_run: bool):
        self.t0, self.budget_s, self.dry_run = time.monotonic(), budget_s, dry_run
        self.steps: list[dict] = []

    def left(self) -> float:
        return self.budget_s - (time.monotonic() - self.t0)

    def step(self, name: str, fn: Callable[[], Any], need_s: float = 0.0) -> Any:
        if self.left() < need_s:
            self.steps.append({"step": name, "status": "skipped", "why": f"time budget ({self.budget_s:.0f} s) spent"})
            return None
        t = time.monotonic()
        try:
            result = fn()
        except Skip as e:
            self.steps.append({"step": name, "status": "skipped", "why": str(e)})
            return None
        except Exception as e:  # noqa: BLE001 (a smoke run reports every failure and goes on)
            self.steps.append({"step": name, "status": "failed", "why": f"{type(e).__name__}: {e}"[:500]})
            return None
        self.steps.append({"step": name, "status": "ok", "seconds": round(time.monotonic() - t, 2)})
        return result


class Skip(Exception):
    """A step that cannot run here; the message says why."""


def environment() -> dict:
    env: dict[str, Any] = {"python": platform.python_version(), "machine": platform.machine()}
    import torch

    env["torch"] = torch.__version__
    env["cuda_available"] = bool(torch.cuda.is_available())
    if env["cuda_available"]:
        env["cuda"] = torch.version.cuda
        env["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        env["compute_capability"] = ".".join(map(str, torch.cuda.get_device_capability()))
    for mod in ("transformers", "onnx", "onnxruntime", "tensorrt"):
        try:
            env[mod] = importlib.import_module(mod).__version__
        except Exception:  # noqa: BLE001 (missing or broken: reported as absent)
            env[mod] = None
    if env["onnxruntime"]:
        env["ort_providers"] = importlib.import_module("onnxruntime").get_available_providers()
    return env


def install_from_wheels(wheels: str | None, dry_run: bool) -> dict:
    """pip-install the missing OPTIONAL packages from ``wheels`` (offline); {package: what happened}."""
    missing = [m for m in OPTIONAL if importlib.util.find_spec(m) is None]
    if not missing:
        return {}
    if not wheels:
        return {m: "missing (no --wheels folder given)" for m in missing}
    out = {}
    for m in missing:
        pkg = {"onnxruntime": "onnxruntime-gpu"}.get(m, m)
        cmd = [sys.executable, "-m", "pip", "install", "--no-index", "--find-links", wheels, pkg]
        if dry_run:
            out[m] = "dry run: " + " ".join(cmd[2:])
            continue
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=False)
        out[m] = "installed" if proc.returncode == 0 else f"not installed: {proc.stderr.strip().splitlines()[-1:]}"
    importlib.invalidate_caches()
    return out


def run_gpu_tests(smoke: Smoke) -> dict:
    root = Path(__file__).resolve().parents[1]
    if not (root / "tests").is_dir():
        raise Skip("no tests/ folder next to this install (a wheel install has none)")
    if importlib.util.find_spec("pytest") is None:
        raise Skip("pytest is not installed")
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "gpu or tensorrt", "-rs", "tests"]
    if smoke.dry_run:
        raise Skip("dry run: would run " + " ".join(cmd[2:]))
    proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=max(30, smoke.left() - 120),
                          check=False)
    lines = proc.stdout.strip().splitlines()
    return {"returncode": proc.returncode, "summary": lines[-1] if lines else "", "tail": lines[-40:]}


def make_model(model_dir: str | None, tiny: bool):
    """(model, input names): an HF sequence classifier, random MiniLM-sized (or tiny) unless ``model_dir``."""
    import torch
    from transformers import AutoModelForSequenceClassification, BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    if model_dir:
        model = AutoModelForSequenceClassification.from_pretrained(model_dir)
    else:
        size = (
            {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 64}
            if tiny
            else {"hidden_size": 384, "num_hidden_layers": 6, "num_attention_heads": 12, "intermediate_size": 1536}
        )
        model = BertForSequenceClassification(BertConfig(vocab_size=1000, max_position_embeddings=512, num_labels=2,
                                                         **size))
    return model.eval(), ["input_ids", "attention_mask", "token_type_ids"]


class TorchRunner:
    """A copy of the model on ``device`` in ``dtype`` with the runner interface (and what CudaGraphRunner needs)."""

    def __init__(self, model: Any, names: list[str], dtype: str, device: str):
        import copy

        import torch

        self.torch, self.device, self.input_names, self.output_names = torch, device, names, ["logits"]
        if device.startswith("cuda"):
            torch.cuda.set_device(torch.device(device))
            if dtype == "fp32":
                from edgepack.benchmarks.torch_cuda import exact_fp32

                exact_fp32(torch)
        tdtype = {"fp32": torch.float32, "fp16": torch.float16}[dtype]
        self.model = copy.deepcopy(model).to(device=device, dtype=tdtype).eval()

    def infer(self, feeds: dict) -> dict:
        import numpy as np

        torch = self.torch
        args = {n: torch.from_numpy(np.ascontiguousarray(feeds[n])).to(self.device) for n in self.input_names}
        with torch.inference_mode():
            return {"logits": self.model(**args).logits.float().cpu().numpy()}

    def synchronize(self) -> None:
        if self.device.startswith("cuda"):
            self.torch.cuda.synchronize()


def export_onnx(model: Any, names: list[str], path: Path) -> Path:
    """The fp32 model as ONNX (torch's exporter; needs the onnx package)."""
    if importlib.util.find_spec("onnx") is None:
        raise Skip("the onnx package is missing (carry its wheel with --wheels)")
    import torch
    from edgepack.benchmarks.gpu_latency import synthetic_feeds

    feeds = synthetic_feeds(names, 2, 16)
    args = tuple(torch.from_numpy(feeds[n]) for n in names)
    axes = {n: {0: "batch", 1: "sequence"} for n in names} | {"logits": {0: "batch"}}
    torch.onnx.export(model.float().cpu(), args, str(path), input_names=names, output_names=["logits"],
                      dynamic_axes=axes, opset_version=17, dynamo=False)
    return path


def ort_runner(onnx_path: Path, dry_run: bool, device: int):
    from edgepack.runtime.gpu_runners import OrtIoBindingRunner, ort_provider_options

    if importlib.util.find_spec("onnxruntime") is None:
        raise Skip("onnxruntime is not installed")
    import onnxruntime as ort

    if dry_run:
        return OrtIoBindingRunner(onnx_path, ["CPUExecutionProvider"], device="cpu")
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        raise Skip(f"this onnxruntime has no CUDAExecutionProvider ({ort.get_available_providers()}): "
                   "onnxruntime-gpu is not installed")
    return OrtIoBindingRunner(onnx_path, ort_provider_options("cuda", device), "cuda", device)


def tensorrt_runner(onnx_path: Path, out: Path, device: int, max_batch: int, max_seq: int):
    """Build an fp16 (TensorRT 10) or fp32 (11: no fp16 flag) engine and open it with the runtime."""
    if importlib.util.find_spec("tensorrt") is None:
        raise Skip("tensorrt is not installed (its wheels exceed what can be carried)")
    from edgepack.export.trt_build import build_serialized, network_typing
    from edgepack.export.trt_engine import TrtBuildConfig
    from edgepack.runtime.trt_engine import TensorRTRunner, detect_runtime_env, import_tensorrt
    from edgepack.runtime.trt_profiles import input_profiles

    from edgepack.artifact import ArtifactWriter
    from edgepack.contract import RuntimeContract, ShapeRange

    trt = import_tensorrt("the TensorRT smoke step")
    precision = "fp16" if network_typing(trt) == "weak" else "fp32"
    shape = ShapeRange(1, min(8, max_batch), max_batch, 1, min(128, max_seq), max_seq)
    specs = [{"name": n, "dtype": "int64", "shape": ["batch", "sequence"]}
             for n in ("input_ids", "attention_mask", "token_type_ids")]
    plan, _, dtypes = build_serialized(trt, onnx_path, [input_profiles(specs, shape)],
                                       TrtBuildConfig(precision=precision, shapes=shape), "none", [],
                                       out / "calib.cache", b"", device=device)
    with ArtifactWriter(out / "trt") as w:
        (w.dir / "model.plan").write_bytes(plan)
        art = w.commit(stage="export", format="tensorrt", task="text-classification", files={"engine": "model.plan"},
                       inputs=[{**s, "dtype": dtypes.get(s["name"], "int64")} for s in specs],
                       outputs=[{"name": "logits", "dtype": "float32", "shape": ["batch", 2]}],
                       runtime=RuntimeContract(**detect_runtime_env(trt, device).contract_fields(),
                                               precision=precision, profiles=(shape,)))
    return TensorRTRunner(art, device)


def parity(runner: Any, reference: Any, names: list[str], batch: int, seq: int) -> dict:
    from edgepack.benchmarks.gpu_latency import synthetic_feeds

    from edgepack.compare import compare

    feeds = synthetic_feeds(names, batch, seq, seed=1)
    feeds["attention_mask"][:, seq // 2:] = 0  # padded rows: the mask must be honoured
    c = compare(reference.infer(feeds)["logits"], runner.infer(feeds)["logits"])
    return {"max_abs_diff": c.max_abs_diff, "min_cosine": c.min_cosine}


def run(args: argparse.Namespace) -> dict:
    smoke = Smoke(args.budget_s, args.dry_run)
    env = smoke.step("environment", environment) or {}
    if not args.dry_run and not env.get("cuda_available"):
        raise SystemExit("edgepack: error: torch sees no CUDA GPU here; use --dry-run to check the command on CPU")
    installed = smoke.step("install from wheels", lambda: install_from_wheels(args.wheels, args.dry_run)) or {}
    tests = smoke.step("GPU/TensorRT tests", lambda: run_gpu_tests(smoke), need_s=180)
    batches, seqs = DRY_GRID if args.dry_run else GRID
    iters = 3 if args.dry_run else args.iters
    device = "cpu" if args.dry_run else f"cuda:{args.device}"
    model, names = make_model(args.model, tiny=args.dry_run and not args.model)
    reference = TorchRunner(model, names, "fp32", "cpu")
    work = Path(tempfile.mkdtemp(prefix="edgepack-smoke-"))
    makers: dict[str, Callable[[], Any]] = {
        "torch-fp32": lambda: TorchRunner(model, names, "fp32", device),
        "torch-fp16": lambda: TorchRunner(model, names, "fp16", device),
    }
    from edgepack.benchmarks.gpu_latency import CudaGraphRunner, measure_grid

    def graph():
        if args.dry_run:
            raise Skip("dry run: CUDA graphs need a GPU")
        return CudaGraphRunner(TorchRunner(model, names, "fp16", device))

    def onnx_path():
        return work / "model.onnx" if (work / "model.onnx").is_file() else export_onnx(model, names, work / "model.onnx")

    def trt():
        if args.dry_run:
            raise Skip("dry run: TensorRT needs a GPU")
        return tensorrt_runner(onnx_path(), work, args.device, max(batches), max(seqs))

    ort_name = "ort-cpu (stands in for ort-cuda)" if args.dry_run else "ort-cuda"
    makers |= {"torch-fp16-graph": graph, ort_name: lambda: ort_runner(onnx_path(), args.dry_run, args.device),
               "tensorrt": trt}
    variants = []
    for name, make in makers.items():
        runner = smoke.step(f"open {name}", make, need_s=30)
        if runner is None:
            continue
        record = {"variant": name}
        record["parity"] = smoke.step(f"parity {name}", lambda r=runner: parity(r, reference, names, 4, max(seqs)))
        record["latency"] = smoke.step(f"latency {name}", lambda r=runner: measure_grid(
            r, batches, seqs, warmup=2 if args.dry_run else 5, iters=iters), need_s=20)
        variants.append(record)
    return {"dry_run": args.dry_run, "device": device, "environment": env, "installed": installed,
            "tests": tests, "grid": {"batches": list(batches), "seqs": list(seqs), "iters": iters},
            "variants": variants, "steps": smoke.steps, "seconds": round(time.monotonic() - smoke.t0, 1)}


def markdown(report: dict) -> str:
    env = report["environment"]
    lines = [f"# GPU smoke run{' (dry run on CPU)' if report['dry_run'] else ''}", "",
             (f"torch {env.get('torch')}, CUDA {env.get('cuda')}, GPUs {env.get('gpus')}, transformers "
              f"{env.get('transformers')}, onnxruntime {env.get('onnxruntime')} {env.get('ort_providers', '')}, "
              f"tensorrt {env.get('tensorrt')}; {report['seconds']} s"), "",
             "| variant | batch | seq | p50 ms | p99 ms | seq/s | max abs diff vs CPU fp32 | min cosine |",
             "|---|---|---|---|---|---|---|---|"]
    for v in report["variants"]:
        p = v.get("parity") or {}
        for row in v.get("latency") or [{}]:
            lines.append(f"| {v['variant']} | {row.get('batch', '-')} | {row.get('seq', '-')} | "
                         f"{row.get('p50_ms', float('nan')):.3f} | {row.get('p99_ms', float('nan')):.3f} | "
                         f"{row.get('sequences_per_s', float('nan')):.1f} | "
                         f"{p.get('max_abs_diff', float('nan')):.2e} | {p.get('min_cosine', float('nan')):.6f} |")
    lines += ["", "| step | status | why / seconds |", "|---|---|---|"]
    lines += [f"| {s['step']} | {s['status']} | {s.get('why', s.get('seconds', ''))} |" for s in report["steps"]]
    if report.get("installed"):
        lines += ["", "Optional packages: " + "; ".join(f"{k}: {v}" for k, v in report["installed"].items())]
    if report.get("tests"):
        lines += ["", f"GPU tests: {report['tests']['summary']}"]
    return "\n".join(lines) + "\n"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The command's options (shared by ``python -m edgepack.benchmarks.gpu_smoke`` and ``edgepack gpu-smoke``)."""
    p.add_argument("--out", default="gpu-smoke", help="folder for gpu_smoke.json and gpu_smoke.md")
    p.add_argument("--model", help="an HF sequence-classification folder (default: a random MiniLM-sized BERT)")
    p.add_argument("--device", type=int, default=0, help="CUDA device index (default: 0)")
    p.add_argument("--iters", type=int, default=20, help="timed calls per shape (default: 20)")
    p.add_argument("--budget-s", type=float, default=480.0, help="time budget in seconds (default: 480)")
    p.add_argument("--wheels", help="a folder of wheels to install missing optional packages from (offline)")
    p.add_argument("--dry-run", action="store_true", help="run on the CPU with a tiny model: no GPU calls")


def execute(args: argparse.Namespace) -> int:
    """Run the smoke steps and write ``gpu_smoke.json`` + ``gpu_smoke.md`` into ``args.out``."""
    report = run(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_smoke.json").write_text(json.dumps(report, indent=1, default=str))
    (out / "gpu_smoke.md").write_text(markdown(report))
    print(markdown(report))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m edgepack.benchmarks.gpu_smoke", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    return execute(p.parse_args(argv))


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
