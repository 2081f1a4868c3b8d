"""GPU latency: device-synchronized p50/p90/p99 and throughput per (batch, sequence length), plus GPU memory.

Works with any runner (``infer(feeds) -> dict``) and a ``sync`` callable that waits for the device
(``torch.cuda.synchronize``, a TensorRT runner's stream, or nothing for CPU runners whose outputs are
already on the host). Timing is the project's one protocol (:func:`edgepack.timing.time_interleaved`, one
target): ``perf_counter_ns`` around call + sync after a warm-up, so queued GPU work is never counted as done.

    python -m edgepack.benchmarks.gpu_latency out/onnx --backend ort-cuda --batches 1,8,32 --seqs 32,128
    python -m edgepack.benchmarks.gpu_latency runs/teacher --torch fp32,fp16,fp16-graph,int8
"""

from __future__ import annotations

import argparse
import json
import subprocess
from typing import Any, Callable, Sequence

import numpy as np

from edgepack.timing import TimingProtocol, time_interleaved


def synthetic_feeds(
    input_names: Sequence[str], batch: int, seq: int, vocab: int = 100, seed: int = 0
) -> dict[str, np.ndarray]:
    """Full-length (batch, seq) int64 token feeds, ids in [5, vocab) (valid for any vocabulary of 100+;
    latency does not depend on the id values): latency at a declared shape."""
    rng = np.random.default_rng(seed)
    cols = {
        "input_ids": rng.integers(5, vocab, (batch, seq), dtype=np.int64),
        "attention_mask": np.ones((batch, seq), np.int64),
        "token_type_ids": np.zeros((batch, seq), np.int64),
    }
    return {n: cols[n] for n in input_names}


def parse_smi_memory(text: str) -> dict[str, float]:
    """{"used_mb", "total_mb"} of the first GPU from ``nvidia-smi --query-gpu=memory.used,memory.total
    --format=csv,noheader,nounits`` output."""
    used, total = (float(x) for x in text.strip().splitlines()[0].split(",")[:2])
    return {"used_mb": used, "total_mb": total}


def gpu_memory() -> dict[str, float]:
    """GPU memory now: torch's allocator peak when torch drives the GPU, and the device-wide use
    (nvidia-smi, which also sees ONNX Runtime's and TensorRT's allocations). Empty without a GPU."""
    out: dict[str, float] = {}
    try:
        import torch

        if torch.cuda.is_available():
            out["torch_peak_allocated_mb"] = torch.cuda.max_memory_allocated() / 2**20
            free, total = torch.cuda.mem_get_info()
            out.update(used_mb=(total - free) / 2**20, total_mb=total / 2**20)
    except ImportError:
        pass
    if "used_mb" not in out:
        try:
            text = subprocess.run(
                ["nvidia-smi", "--query-gpu=memory.used,memory.total", "--format=csv,noheader,nounits"],
                capture_output=True,
                text=True,
                timeout=30,
                check=True,
            ).stdout
            out.update(parse_smi_memory(text))
        except (OSError, subprocess.SubprocessError, ValueError):
            pass
    return out


def measure_grid(
    runner: Any,
    batches: Sequence[int],
    seqs: Sequence[int],
    sync: Callable[[], None] | None = None,
    warmup: int = 5,
    iters: int = 30,
    memory: Callable[[], dict] = gpu_memory,
) -> list[dict]:
    """Latency and throughput of ``runner`` at every (batch, seq): one record per shape."""
    sync = sync or getattr(runner, "synchronize", None)
    rows = []
    for b in batches:
        for t in seqs:
            feeds = synthetic_feeds(runner.input_names, b, t)
            timed = time_interleaved({"runner": runner.infer}, [feeds], TimingProtocol(warmup, repeats=iters),
                                     sync=sync, size=lambda f, b=b: b)
            stats = timed.summary("runner")
            mean_s = stats["mean_ms"] / 1e3
            rows.append(
                {
                    "batch": b,
                    "seq": t,
                    **stats,
                    "sequences_per_s": b / mean_s,
                    "tokens_per_s": b * t / mean_s,
                    **memory(),
                }
            )
    return rows


class CudaGraphRunner:
    """A torch model replayed from a captured CUDA graph (static shapes: one capture per input shape)."""

    def __init__(self, torch_runner: Any):
        from edgepack.benchmarks.torch_cuda import use_eager_attention

        self.base, self.torch = torch_runner, torch_runner.torch
        self.input_names, self.output_names = torch_runner.input_names, torch_runner.output_names
        self.graphs: dict[tuple, tuple] = {}
        # SDPA's mask check syncs with the host (illegal while capturing): capture eager attention,
        # which always applies the explicit 4-D mask built from attention_mask
        self.attention = use_eager_attention(torch_runner.model)

    def _capture(self, feeds: dict[str, np.ndarray]) -> tuple:
        torch, model = self.torch, self.base.model
        static = {n: torch.from_numpy(feeds[n]).to(self.base.device) for n in self.input_names}
        s = torch.cuda.Stream(device=self.base.device)
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s), torch.inference_mode():
            for _ in range(3):  # warm up kernels/allocations outside the graph
                model(**static)
        torch.cuda.current_stream().wait_stream(s)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph), torch.inference_mode():
            out = getattr(model(**static), self.output_names[0])
        return graph, static, out

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        key = tuple(feeds[n].shape for n in self.input_names)
        if key not in self.graphs:
            self.graphs[key] = self._capture(feeds)
        graph, static, out = self.graphs[key]
        for n in self.input_names:
            static[n].copy_(self.torch.from_numpy(feeds[n]))
        graph.replay()
        return {self.output_names[0]: out.float().cpu().numpy()}

    def synchronize(self) -> None:
        self.torch.cuda.synchronize()


def torch_variant(source: str, variant: str, device: int = 0) -> Any:
    """A torch CUDA runner on GPU ``device`` for ``fp32``, ``fp16``, ``bf16``, ``fp16-graph`` (CUDA graphs),
    ``int8``, ``nf4``."""
    from edgepack.benchmarks.torch_cuda import TorchCudaRunner

    graph = variant.endswith("-graph")
    runner = TorchCudaRunner(source, dtype=variant.removesuffix("-graph"), device=f"cuda:{device}")
    return CudaGraphRunner(runner) if graph else runner


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m edgepack.benchmarks.gpu_latency",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "source", help="an onnx/tensorrt artifact (with --backend) or an hf model folder (with --torch)"
    )
    p.add_argument("--backend", help="registered backend: ort-cuda, ort-tensorrt, tensorrt, ort-cpu, torch-cuda")
    p.add_argument("--torch", help="comma-separated torch variants: fp32,fp16,bf16,fp16-graph,int8,nf4")
    p.add_argument("--batches", default="1,8,32", help="batch sizes (default: 1,8,32)")
    p.add_argument("--seqs", default="32,128", help="sequence lengths (default: 32,128)")
    p.add_argument("--iters", type=int, default=30, help="timed calls per shape (default: 30)")
    p.add_argument("--device", type=int, default=0, help="CUDA device index (default: 0)")
    p.add_argument("--out", help="write the records as JSON here")
    args = p.parse_args(argv)
    batches = [int(x) for x in args.batches.split(",")]
    seqs = [int(x) for x in args.seqs.split(",")]
    runs: list[tuple[str, Any]] = []
    if args.torch:
        runs += [(f"torch-{v}", torch_variant(args.source, v, args.device)) for v in args.torch.split(",")]
    if args.backend:
        import edgepack.benchmarks.torch_cuda  # noqa: F401  (registers the torch-cuda backend)
        from edgepack.runtime.backends import open_runner

        from edgepack.artifact import Artifact

        runs.append((args.backend, open_runner(Artifact.open(args.source), args.backend, device_id=args.device)))
    if not runs:
        p.error("give --backend and/or --torch")
    records = []
    for name, runner in runs:
        for row in measure_grid(runner, batches, seqs, iters=args.iters):
            records.append({"variant": name, **row})
            print(
                f"{name:18s} b{row['batch']:<3d} s{row['seq']:<4d} p50 {row['p50_ms']:8.3f} ms  "
                f"p99 {row['p99_ms']:8.3f} ms  {row['sequences_per_s']:9.1f} seq/s  "
                f"mem {row.get('used_mb', float('nan')):.0f} MB"
            )
    if args.out:
        with open(args.out, "w") as f:
            json.dump(records, f, indent=1)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
