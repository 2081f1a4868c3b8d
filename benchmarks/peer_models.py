"""The model files each peer runs, all made from one local sentence-transformers folder (no hub).

* edgepack: ``export_onnx`` (fp32, unfused: the kind of file fastembed ships), ``optimize_onnx`` (fused fp32:
  what edgepack serves) and ``quantize`` with ``dynamic-int8`` and ``dynamic-int8-mixed`` for this CPU
  (``target_cpu=auto``) within the stage's default budget (1 point of 100 x mean cosine to the fp32 parent):
  on an AVX2-only CPU plain dynamic INT8 lost 1.28 points, so the mixed candidate keeps a few MatMuls float.
* fastembed: a folder in the layout fastembed downloads (``model.onnx`` + the tokenizer files), holding either
  edgepack's fp32 export or edgepack's INT8 file, read with ``specific_model_path``.
* sentence-transformers: a copy of the model folder in which its own ONNX backend exports ``onnx/model.onnx``
  and ``export_dynamic_quantized_onnx_model`` writes ``onnx/model_qint8_<config>.onnx`` (run in its venv).

Every folder is reused when present and complete; a failure raises EdgepackError with the reason.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from edgepack.artifact import Artifact, is_artifact
from edgepack.errors import EdgepackError

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "config.json", "vocab.txt")
MAX_LENGTH = 256  # all-MiniLM-L6-v2's max_seq_length in sentence-transformers; fastembed truncates there too


def _reuse(path: Path, source: str) -> Artifact | None:
    if not is_artifact(path):
        return None
    try:
        art = Artifact.open(path)
    except EdgepackError:
        return None
    src = art.runtime.torch_source or ""
    return art if Path(src).resolve() == Path(source).resolve() else None


def edgepack_models(model: str, root: Path, calib_texts: Sequence[str], log=print) -> dict[str, Path]:
    """``{"fp32": unfused export, "fused": fused fp32, "int8": dynamic INT8 of the fused}`` under ``root``."""
    from edgepack.export.fusion import optimize_onnx
    from edgepack.export.onnx_export import OnnxExportConfig, export_onnx
    from edgepack.quantize.api import quantize
    from edgepack.quantize.config import QuantizeConfig

    out = {name: root / f"edgepack-{name}" for name in ("fp32", "fused", "int8")}
    fp32 = _reuse(out["fp32"], model)
    if fp32 is None:
        log("peers: edgepack export onnx (fp32) ...")
        fp32 = export_onnx(model, out["fp32"], OnnxExportConfig(task="feature-extraction", max_length=MAX_LENGTH),
                           overwrite=True)
    fused = _reuse(out["fused"], model)
    if fused is None:
        log("peers: edgepack export optimize (fused fp32) ...")
        fused = optimize_onnx(fp32, out["fused"], overwrite=True)
    if _reuse(out["int8"], model) is None:
        log("peers: edgepack quantize (dynamic-int8, dynamic-int8-mixed) ...")
        cfg = QuantizeConfig(methods=("dynamic-int8", "dynamic-int8-mixed"), max_eval_samples=300, latency_rounds=2)
        quantize(fused, list(calib_texts), cfg, out["int8"], overwrite=True)
    return out


def fastembed_folder(model_file: Path, model: str, out: Path) -> Path:
    """A folder fastembed reads with ``specific_model_path``: ``model.onnx`` plus the model's tokenizer files."""
    if (out / "model.onnx").is_file() and (out / "model.onnx").stat().st_size == model_file.stat().st_size:
        return out
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    shutil.copyfile(model_file, tmp / "model.onnx")
    for name in TOKENIZER_FILES:
        if (Path(model) / name).is_file():
            shutil.copyfile(Path(model) / name, tmp / name)
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    return out


_ST_EXPORT = """
import sys
from sentence_transformers import SentenceTransformer, export_dynamic_quantized_onnx_model
folder, config = sys.argv[1], sys.argv[2]
model = SentenceTransformer(folder, device="cpu", backend="onnx", local_files_only=True)  # exports onnx/model.onnx
model.save_pretrained(folder)
export_dynamic_quantized_onnx_model(model, config, folder)
"""


def st_quantized(model: str, python: Path, out: Path, config: str) -> tuple[Path, str]:
    """(folder, file name) of sentence-transformers' dynamic INT8 ONNX model for ``config`` (e.g. ``avx2``).

    Its file is ``onnx/model_qint8_<config>.onnx`` (``quint8`` for configs with uint8 weights, such as avx2).
    """
    found = sorted(out.glob(f"onnx/model_q*int8_{config}.onnx"))
    if found:
        return out, found[0].relative_to(out).as_posix()
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(model, tmp, ignore=shutil.ignore_patterns("*.onnx", "onnx", "openvino", "__pycache__", "*.py"))
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([str(python), "-c", _ST_EXPORT, str(tmp), config], capture_output=True, text=True,
                          env=env, check=False)
    found = sorted(tmp.glob(f"onnx/model_q*int8_{config}.onnx"))
    if proc.returncode != 0 or not found:
        lines = [ln for ln in (proc.stderr or proc.stdout).splitlines() if ln.strip() and "Warning" not in ln]
        raise EdgepackError(f"sentence-transformers ONNX int8 export failed: {' | '.join(lines[-4:])[-800:]}")
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    return out, found[0].relative_to(tmp).as_posix()
