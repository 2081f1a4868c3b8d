"""The peer benchmark without installing peers: arguments, the report writer, and peers that cannot run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from edgepack.benchmarks import peer_envs, peer_runner, peers
from edgepack.benchmarks.peers_report import to_markdown, write_report

from edgepack.errors import EdgepackError


def _args(*argv: str):
    return peers.parse_args(list(argv))


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--peers", "edgepack-int8,tei"], ("unknown peer(s) 'tei'; known: edgepack-fp32, edgepack-int8, "
         "fastembed-fp32, fastembed-int8, st-onnx-int8, st-torch, edgepack-serve-fp32, edgepack-serve-int8, "
         "edgepack-serve-int8-workers, infinity-torch, infinity-optimum")),
        (["--threads", "0"], "--threads must be at least 1, got 0"),
        (["--texts-per-request", "0"], "--texts-per-request must be at least 1, got 0"),
        (["--texts", "8"], "--texts must be at least 32 (the largest batch), got 8"),
        (["--duration", "0"], "--duration must be positive, got 0"),
        (["--only", "server", "--peers", "st-torch"], "--peers st-torch names no server peer"),
        (["--model", "/nonexistent/folder"], "--model /nonexistent/folder: not a model folder (no config.json)"),
    ],
)
def test_bad_arguments_fail_with_one_line(argv, message):
    with pytest.raises(EdgepackError) as e:
        _args(*argv)
    assert str(e.value) == message


def test_only_and_peers_split_the_lists():
    a = _args("--peers", "edgepack-int8, infinity-torch,st-torch")
    assert (a.runtime_peers, a.server_peers) == (["edgepack-int8", "st-torch"], ["infinity-torch"])
    a = _args("--only", "runtime")
    assert a.server_peers == [] and a.runtime_peers == list(peers.RUNTIME_PEERS)


def _report() -> dict:
    timings = {"1": {"texts_per_s": 100.0, "p50_ms": 9.5}, "32": {"texts_per_s": 400.0, "p50_ms": 70.0},
               "corpus": {"texts_per_s": 600.0}}
    base = {"1": {"texts_per_s": 50.0, "p50_ms": 19.0}, "32": {"texts_per_s": 100.0, "p50_ms": 300.0},
            "corpus": {"texts_per_s": 120.0}}
    return {
        "config": {"model_name": "all-MiniLM-L6-v2", "texts": 512, "threads": 2, "batch_sizes": [1, 32],
                   "rounds": 3, "clients": 32, "duration": 15.0},
        "environment": {"cpu": "AMD EPYC (AVX2; no AVX-512, no VNNI)", "cpu_count": 2, "python": "3.11.7",
                        "versions": {"onnxruntime": "1.32.0"}},
        "load_average": {"before": 1.0, "after": 1.5, "note": ""},
        "runtime": {"reference": "st-torch", "rows": [
            {"peer": "edgepack-int8", "model_file": "int8, 23 MB", "timings": timings, "peak_rss_mb": 180.0,
             "install_mb": 120.0, "cos_mean": 0.99512, "cos_min": 0.9801},
            {"peer": "fastembed-fp32", "model_file": "fp32, 90 MB", "timings": base, "peak_rss_mb": 300.0,
             "install_mb": 252.0, "cos_mean": 1.0, "cos_min": 0.99999},
            {"peer": "st-onnx-int8", "runs": [], "error": "could not install its venv (sentence-transformers): "
             "pip install failed: No matching distribution found for sentence-transformers"},
        ]},
        "server": {"rows": [
            {"server": "edgepack-serve-int8", "texts_per_request": 1, "throughput_rps": 150.0, "p50_ms": 200.0,
             "p99_ms": 270.0, "errors": 0, "rss_mb": 150.0},
            {"server": "infinity-torch", "texts_per_request": 1, "throughput_rps": 60.0, "p50_ms": 500.0,
             "p99_ms": 690.0, "errors": 0, "rss_mb": 700.0},
            {"server": "infinity-optimum", "texts_per_request": 1, "error": "RuntimeError: exited with code 1: "
             "Could not find any ONNX files"},
        ]},
    }


def test_markdown_rows_ratios_and_failures():
    md = to_markdown(_report())
    lines = md.splitlines()
    assert "Machine: AMD EPYC (AVX2; no AVX-512, no VNNI), 2 cores, Python 3.11.7, onnxruntime 1.32.0" in lines
    assert ("| edgepack-int8 | int8, 23 MB | 100.0 | 9.50 | 2.00x | 400.0 | 70.00 | 4.00x | 600.0 | 5.00x | 180 | 120 | 0.9951 "
            "| 0.9801 |") in lines
    assert "| fastembed-fp32 | fp32, 90 MB | 50.0 | 19.00 | 1.00x | 100.0 | 300.00 | 1.00x | 120.0 | 1.00x | 300 | 252 | 1.0000 | 1.0000 |" in lines
    assert "| edgepack-serve-int8 | 1 | 150.0 | 150.0 | 200.0 | 270.0 | 0 | 2.50x | 150 |" in lines
    # a peer that could not run has its reason and no row of numbers
    assert ("- runtime `st-onnx-int8`: could not install its venv (sentence-transformers): pip install failed: "
            "No matching distribution found for sentence-transformers") in lines
    assert "- server `infinity-optimum`: RuntimeError: exited with code 1: Could not find any ONNX files" in lines
    assert not [ln for ln in lines if ln.startswith(("| st-onnx-int8", "| infinity-optimum"))]


def test_the_ceiling_table_bounds_the_ratios_to_the_baseline():
    rep = _report()
    rows = rep["runtime"]["rows"]
    rows[0]["ceiling"] = {"texts_per_s": 500.0, "mean_tokens": 26.4, "floor_us_per_token": 75.8,
                          "floor_shape": "16x64", "padding_in_order": {"1": 1.0, "32": 1.93}}
    rows.append({"peer": "edgepack-fp32", "timings": rows[0]["timings"], "ceiling": {"error": "token_cost exited"}})
    lines = to_markdown(rep).splitlines()
    # fastembed-fp32 (the baseline) does 50 / 100 / 120 texts/s at b1 / b32 / corpus
    assert "| edgepack-int8 | 75.8 (16x64) | 26.4 | 500.0 | 10.00x | 5.00x | 4.17x | 1.93x |" in lines
    assert "| edgepack-fp32 | could not be measured: token_cost exited |  |  |  |  |  |  |" in lines
    assert not [ln for ln in to_markdown(_report()).splitlines() if "ceiling" in ln.lower()]  # none measured


def test_write_report_is_atomic_json_and_markdown(tmp_path):
    out = tmp_path / "res"
    json_path, md_path = write_report(_report(), out)
    assert json.loads(json_path.read_text()) == _report()
    assert md_path.read_text() == to_markdown(_report())
    assert sorted(p.name for p in out.iterdir()) == ["peers.json", "peers.md"]  # no temp files left


def test_a_peer_that_cannot_install_is_reported_not_measured(tmp_path, monkeypatch, capsys):
    calls = []

    def failing_env(env, cache, log=print):
        calls.append(env.name)
        return {"ok": False, "error": "pip install failed: ERROR: No matching distribution found for fastembed==0.9.1"}

    monkeypatch.setattr(peers, "ensure_env", failing_env)
    rc = peers.main(["--only", "runtime", "--peers", "fastembed-fp32,fastembed-int8", "--out", str(tmp_path / "o"),
                     "--cache", str(tmp_path / "cache"), "--texts", "32"])
    assert rc == 0 and calls == ["fastembed"]  # installed (tried) once for both peers
    report = json.loads((tmp_path / "o" / "peers.json").read_text())
    rows = report["runtime"]["rows"]
    reason = ("could not install its venv (fastembed): pip install failed: ERROR: No matching distribution found "
              "for fastembed==0.9.1")
    assert [(r["peer"], r["error"], r["runs"]) for r in rows] == [("fastembed-fp32", reason, []),
                                                                  ("fastembed-int8", reason, [])]
    out = capsys.readouterr().out
    assert f"- runtime `fastembed-fp32`: {reason}" in out and "(no runtime peer ran)" in out


def _session(env_name: str):
    """A Session whose ``env_name`` venv is this interpreter's, with one thread."""
    s = peers.Session.__new__(peers.Session)
    s.args = _args("--threads", "1")
    s.envs = {env_name: {"ok": True, "python": sys.executable}}
    return s


def test_a_runner_that_fails_gives_its_reason(tmp_path):
    """The runner in an interpreter without the peer's library: the row says why instead of a number."""
    try:
        import fastembed  # noqa: F401
        pytest.skip("fastembed is installed here")
    except ImportError:
        pass
    (tmp_path / "texts.json").write_text(json.dumps(["a film"] * 4))
    s = _session("fastembed")
    job = {"kind": "fastembed", "model": str(tmp_path), "threads": 1, "batch_sizes": [1]}
    with pytest.raises(EdgepackError) as e:
        peers._PeerProcess(s, "fastembed-fp32", job, Path(peer_runner.__file__), tmp_path / "texts.json",
                           tmp_path / "fastembed-fp32")
    msg = str(e.value)
    assert msg.startswith("the runner failed (exited with code 1): ")
    assert "ModuleNotFoundError: No module named 'fastembed'" in msg


def test_runner_takes_turns_and_reports_every_pass(tmp_path, tiny_encoder):
    """A live runner (edgepack's kind, a tiny model): ready after load, one pass per turn, then its result."""
    from edgepack.export.onnx_export import OnnxExportConfig, export_onnx

    art = export_onnx(tiny_encoder, tmp_path / "onnx", OnnxExportConfig()).path
    texts = [f"a film number {i} " + "good " * (i % 7) for i in range(40)]
    (tmp_path / "texts.json").write_text(json.dumps(texts))
    s = _session("edgepack")
    job = {"kind": "edgepack", "model": str(art), "threads": 1, "batch_sizes": [1, 32]}
    peer = peers._PeerProcess(s, "edgepack-int8", job, Path(peer_runner.__file__), tmp_path / "texts.json",
                              tmp_path / "edgepack-int8")
    try:
        for key in ("1", "32", "corpus", "1"):
            t = peer.turn(key)
            assert t["texts_per_s"] > 0
        res = peer.finish()
    finally:
        peer.stop()
    assert len(res["timings"]["1"]["texts_per_s_passes"]) == 2 and len(res["timings"]["corpus"]["texts_per_s_passes"]) == 1
    assert res["timings"]["1"]["texts_per_s"] == pytest.approx(np.median(res["timings"]["1"]["texts_per_s_passes"]), abs=0.06)
    emb = np.load(tmp_path / "edgepack-int8.npy")
    assert emb.shape == (40, res["dim"]) and np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)


def test_the_ceiling_runs_token_cost_in_the_edgepack_venv(tmp_path, tiny_encoder, monkeypatch):
    """``_ceiling`` times the bare model in the venv's interpreter on the benchmark's texts; a failure is a reason."""
    from edgepack.export.onnx_export import OnnxExportConfig, export_onnx
    from tokenizers import Tokenizer

    art = export_onnx(tiny_encoder, tmp_path / "onnx", OnnxExportConfig()).path
    texts = [f"a film number {i} " + "good " * (i % 7) for i in range(40)]
    (tmp_path / "texts.json").write_text(json.dumps(texts))
    s = _session("edgepack")
    monkeypatch.setattr(s, "edgepack_models", lambda: {"int8": art, "fused": tmp_path / "gone"}, raising=False)
    c = peers._ceiling(s, "edgepack-int8", tmp_path / "texts.json")
    tok = Tokenizer.from_file(str(art / "tokenizer.json"))
    mean = sum(len(tok.encode(t).ids) for t in texts) / len(texts)
    assert c["mean_tokens"] == pytest.approx(mean, abs=0.01)
    assert c["texts_per_s"] == pytest.approx(1e6 / (c["floor_us_per_token"] * mean), rel=0.01)
    assert c["floor_shape"] in {f"{b}x{t}" for b in (1, 4, 8, 16, 32) for t in (16, 32, 64)}
    assert c["padding_in_order"]["1"] == 1.0 and c["padding_in_order"]["32"] > 1.0
    bad = peers._ceiling(s, "edgepack-fp32", tmp_path / "texts.json")
    assert bad == {"error": f"token_cost exited with code 2: token_cost: error: artifact directory not found: "
                            f"{tmp_path / 'gone'}"}


def test_runner_times_every_batch_once_after_a_warm_up():
    seen = []

    def run(batch):
        seen.append(len(batch))
        return np.ones((len(batch), 4), dtype=np.float32)

    t = peer_runner.time_batches(run, [f"t{i}" for i in range(70)], 32)
    assert seen == [32, 32, 6] + [32, 32, 6]  # warm-up pass (up to 8 batches), then one timed pass
    assert t["calls"] == 3 and t["texts_per_s"] > 0 and 0 < t["p50_ms"] <= t["p90_ms"]


def test_runner_script_runs_alone(tmp_path):
    """The script copied into each venv imports nothing from edgepack at module level."""
    code = (f"import sys; sys.path.insert(0, {str(tmp_path)!r}); import edgepack_peer_runner as r; "
            "import sys as s; print(sorted(m for m in s.modules if m.startswith('edgepack')))")
    (tmp_path / "edgepack_peer_runner.py").write_text(Path(peer_runner.__file__).read_text())
    out = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, check=False,
                         cwd=tmp_path)
    if "No module named 'numpy'" in out.stderr:  # -S drops site-packages; try with them but from tmp_path
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path)
    assert out.stdout.strip() == "['edgepack_peer_runner']"


def test_env_is_reused_while_its_spec_is_unchanged(tmp_path, monkeypatch):
    env = peer_envs.PeerEnv("demo", ("fastembed==0.9.1",), "import fastembed")
    folder = tmp_path / "demo"
    folder.mkdir()
    (folder / "pyvenv.cfg").write_text("home = /usr\n")
    info = {"spec": peer_envs._spec(env), "install_mb": 251.0, "install_s": 40.0, "packages": {"fastembed": "0.9.1"}}
    (folder / peer_envs.MARKER).write_text(json.dumps(info))

    def no_subprocess(*a, **k):
        raise AssertionError("pip must not run for a venv whose spec is unchanged")

    monkeypatch.setattr(peer_envs.subprocess, "run", no_subprocess)
    got = peer_envs.ensure_env(env, tmp_path)
    assert got["ok"] and got["reused"] and got["install_mb"] == 251.0
    assert got["python"] == str(folder / "bin" / "python")


def test_env_refuses_to_replace_a_folder_that_is_not_a_venv(tmp_path):
    env = peer_envs.PeerEnv("demo", ("fastembed==0.9.1",), "import fastembed")
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "notes.txt").write_text("mine")
    with pytest.raises(EdgepackError) as e:
        peer_envs.ensure_env(env, tmp_path)
    assert str(e.value) == f"refusing to replace {tmp_path / 'demo'}: it is not a virtual environment"
    assert (tmp_path / "demo" / "notes.txt").read_text() == "mine"


def test_a_failed_install_is_remembered_not_retried(tmp_path, monkeypatch):
    env = peer_envs.PeerEnv("demo", ("optimum[onnxruntime]<2",), "from optimum.onnxruntime import ORTModel")
    folder = tmp_path / "demo"
    folder.mkdir()
    (folder / "pyvenv.cfg").write_text("home = /usr\n")
    error = "import check failed: ImportError: cannot import name '_attention_scale'"
    (folder / peer_envs.MARKER).write_text(json.dumps({"spec": peer_envs._spec(env), "ok": False, "error": error}))
    monkeypatch.setattr(peer_envs.subprocess, "run", lambda *a, **k: pytest.fail("pip must not run again"))
    got = peer_envs.ensure_env(env, tmp_path)
    assert got["ok"] is False
    assert got["error"] == f"{error} (recorded by an earlier run; delete {folder} to retry)"


def test_infinity_optimum_starts_inside_its_folder_with_a_bare_file_name(tmp_path):
    from edgepack.benchmarks.peer_servers import infinity_server

    py = tmp_path / "venv" / "bin" / "python"
    opt = infinity_server("infinity-optimum", py, tmp_path / "m", "optimum", "infinity")
    assert opt.cwd == str(tmp_path / "m") and opt.argv[opt.argv.index("--model-id") + 1] == "."
    torch = infinity_server("infinity-torch", py, tmp_path / "m", "torch", "infinity")
    assert torch.cwd is None and torch.argv[torch.argv.index("--model-id") + 1] == str(tmp_path / "m")
    assert opt.argv[0] == str(tmp_path / "venv" / "bin" / "infinity_emb")


def test_paired_ratio_is_the_median_of_per_round_ratios():
    from edgepack.benchmarks.peers_report import paired_ratio, versus_table

    t = {"texts_per_s": 4.0, "texts_per_s_passes": [2.0, 4.0, 6.0]}
    base = {"texts_per_s": 1.0, "texts_per_s_passes": [1.0, 1.0, 2.0]}
    assert paired_ratio(t, base) == 3.0  # rounds: 2x, 4x, 3x (the ratio of medians would be 4x)
    assert paired_ratio({"texts_per_s": 4.0, "texts_per_s_passes": [4.0]}, base) == 4.0  # unpaired: texts/s
    assert paired_ratio({}, base) is None
    rows = [{"peer": "edgepack-int8", "timings": {"1": t, "corpus": t}},
            {"peer": "fastembed-fp32", "timings": {"1": base, "corpus": base}}, {"peer": "x", "error": "no"}]
    assert versus_table(rows, [1])[2:] == ["| fastembed-fp32 | 3.00x | 3.00x |"]
    assert versus_table(rows[1:], [1]) == []


def test_child_server_start_stop_and_a_server_that_dies(tmp_path):
    from edgepack.benchmarks.http_load import ChildServer

    dead = ChildServer([sys.executable, "-c", "import sys; print('boom: no model'); sys.exit(3)"])
    with pytest.raises(RuntimeError, match=r"exited with code 3: boom: no model"):
        dead.start()
    dead.stop()
    assert not dead.log_path.exists()  # its own temporary log is removed
    live = ChildServer([sys.executable, "-m", "http.server", "{port}", "--bind", "127.0.0.1"], ready_path="/",
                       log_path=tmp_path / "srv.log", cwd=str(tmp_path))
    try:
        assert live.start() > 0 and live.proc.poll() is None
    finally:
        live.stop()
    assert live.proc.poll() is not None and (tmp_path / "srv.log").exists()


def test_rss_counts_a_servers_worker_processes():
    import time

    from edgepack.benchmarks.http_load import process_tree, rss_mb

    child = "import time; b = bytearray(64 << 20); b[::4096] = b'x' * len(b[::4096]); time.sleep(30)"
    code = f"import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', {child!r}]); time.sleep(30)"
    parent = subprocess.Popen([sys.executable, "-c", code])
    try:
        deadline = time.time() + 20
        while (len(process_tree(parent.pid)) < 2 or rss_mb(parent.pid)["rss_mb"] < 64) and time.time() < deadline:
            time.sleep(0.1)
        got = rss_mb(parent.pid)
        assert got["processes"] == 2 and got["rss_mb"] >= 64 and got["peak_rss_mb"] >= got["rss_mb"]
    finally:
        for p in process_tree(parent.pid)[1:]:
            subprocess.run(["kill", str(p)], check=False)
        parent.kill()
        parent.wait()


def test_server_ratio_pairs_the_rounds():
    from edgepack.benchmarks.peers_report import server_table

    rows = [{"server": "infinity-torch", "texts_per_request": 1, "throughput_rps": 50.0, "rps_per_round": [40.0, 60.0, 50.0]},
            {"server": "edgepack-serve-int8", "texts_per_request": 1, "throughput_rps": 150.0,
             "rps_per_round": [160.0, 120.0, 200.0]}]
    line = next(ln for ln in server_table(rows) if ln.startswith("| edgepack-serve-int8"))
    assert "| 4.00x |" in line  # rounds 4x, 2x, 4x: median 4x (the ratio of the merged rates would be 3x)
