"""Export an ``onnx`` or ``tensorrt`` artifact as an NVIDIA Triton model repository.

Layout (``NAME`` = ``TritonConfig.model_name``)::

    repo/
      NAME/config.pbtxt            platform onnxruntime_onnx | tensorrt_plan, dims from the graph
      NAME/1/model.onnx|model.plan
      NAME/tokenizer.json          for client-side tokenization
      NAME/labels.txt              classification labels (Triton's classification extension)
      NAME_tokenizer/              Python backend: TEXT -> token ids     (tokenizer="ensemble")
      NAME_text/                   ensemble: TEXT -> tokenizer -> NAME    (tokenizer="ensemble")
      README.md, manifest.json

Start it with ``tritonserver --model-repository=repo`` (see docs/gpu.md). The repository is an edgepack
artifact (format ``triton``), and :func:`edgepack.export.triton_check.check_repository` verifies it
structurally: model files, config fields, and dims consistent with the ONNX graph.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from edgepack.export.triton_pbtxt import Ident, format_pbtxt

from edgepack.artifact import Artifact, ArtifactWriter
from edgepack.config import ConfigError, check_choice, check_fields, check_min, config_to_dict
from edgepack.errors import EdgepackError

NP_TO_TRITON = {
    "bool": "TYPE_BOOL",
    "uint8": "TYPE_UINT8",
    "int8": "TYPE_INT8",
    "int16": "TYPE_INT16",
    "int32": "TYPE_INT32",
    "int64": "TYPE_INT64",
    "float16": "TYPE_FP16",
    "float32": "TYPE_FP32",
    "float64": "TYPE_FP64",
    "bfloat16": "TYPE_BF16",
    "object": "TYPE_STRING",
    "bytes": "TYPE_STRING",
}
PLATFORMS = {"onnx": ("onnxruntime_onnx", "model.onnx"), "tensorrt": ("tensorrt_plan", "model.plan")}
KINDS = {"gpu": "KIND_GPU", "cpu": "KIND_CPU", "auto": "KIND_AUTO"}
TOKENIZER_MODES = ("ensemble", "client")
ORT_TRT_PRECISIONS = ("FP32", "FP16")


@dataclass(frozen=True)
class TritonConfig:
    model_name: str = "edgepack_model"
    max_batch_size: int = 32
    preferred_batch_sizes: tuple[int, ...] = (8, 16, 32)
    max_queue_delay_us: int = 100  # how long the dynamic batcher waits to fill a batch
    instance_count: int = 1  # model instances per device
    instance_kind: str = "gpu"  # gpu | cpu | auto
    gpus: tuple[int, ...] = ()  # empty: all visible GPUs
    tokenizer: str = "ensemble"  # ensemble (Python-backend step) | client
    pad_to_multiple_of: int = 16  # tokenizer step: round lengths so requests batch together
    ort_trt_accelerator: str | None = None  # onnxruntime on GPU: None | "FP32" | "FP16" (TensorRT EP)
    version: int = 1

    def __post_init__(self) -> None:
        check_fields(self)
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", self.model_name):
            raise ConfigError("model_name", f"may only use letters, digits, _ . -, got {self.model_name!r}")
        check_min(self, 0, "max_batch_size", "max_queue_delay_us")
        check_min(self, 1, "instance_count", "pad_to_multiple_of", "version")
        if any(g < 0 for g in self.gpus):
            raise ConfigError("gpus", f"must be GPU ids >= 0, got {list(self.gpus)}")
        bad = [b for b in self.preferred_batch_sizes if not 1 <= b <= self.max_batch_size]
        if bad:
            raise ConfigError("preferred_batch_sizes",
                              f"{bad} must lie in 1..max_batch_size ({self.max_batch_size})", ": ")
        check_choice(self, "instance_kind", tuple(KINDS))
        check_choice(self, "tokenizer", TOKENIZER_MODES)
        if self.tokenizer == "ensemble" and self.max_batch_size == 0:
            raise ConfigError("max_batch_size", "must be >= 1 for the tokenizer ensemble (tokenizer: ensemble)")
        check_choice(self, "ort_trt_accelerator", ORT_TRT_PRECISIONS)


def triton_dtype(np_name: str) -> str:
    """Triton's data type for a numpy dtype name ("int64" -> "TYPE_INT64")."""
    try:
        return NP_TO_TRITON[np_name]
    except KeyError:
        raise EdgepackError(f"no Triton data type for {np_name!r}") from None


def config_dims(shape: list, batched: bool, name: str) -> list[int]:
    """Triton dims for a graph shape: the batch axis dropped when Triton batches, symbolic dims -> -1."""
    dims = list(shape)
    if batched:
        if not dims or isinstance(dims[0], int) and dims[0] > 0:
            raise EdgepackError(
                f"tensor '{name}' has a fixed first axis {dims[:1]}; Triton batching needs a dynamic batch "
                "axis (export with dynamic axes, or use max_batch_size 0)"
            )
        dims = dims[1:]
    return [d if isinstance(d, int) and d > 0 else -1 for d in dims]


def io_entries(specs: list[dict], batched: bool) -> list[dict]:
    """config.pbtxt ``input``/``output`` entries from manifest-style specs (name, dtype, shape)."""
    return [
        {
            "name": s["name"],
            "data_type": Ident(triton_dtype(s["dtype"])),
            "dims": config_dims(s["shape"], batched, s["name"]),
        }
        for s in specs
    ]


def graph_io(onnx_path: Path) -> tuple[list[dict], list[dict]]:
    """Inputs and outputs of an ONNX graph (name, numpy dtype name, shape with symbolic names kept)."""
    import onnx

    m = onnx.load(str(onnx_path), load_external_data=False)
    inits = {i.name for i in m.graph.initializer}

    def spec(v) -> dict:
        t = v.type.tensor_type
        return {
            "name": v.name,
            "dtype": onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name,
            "shape": [d.dim_param if d.dim_param else (d.dim_value or "?") for d in t.shape.dim],
        }

    return [spec(v) for v in m.graph.input if v.name not in inits], [spec(v) for v in m.graph.output]


def model_config(art: Artifact, cfg: TritonConfig, inputs: list[dict], outputs: list[dict]) -> dict:
    """The config.pbtxt dict of the model itself."""
    platform, filename = PLATFORMS[art.format]
    if art.format == "tensorrt" and cfg.instance_kind == "cpu":
        raise EdgepackError("a TensorRT plan runs on GPU only: use --instance-kind gpu")
    batched = cfg.max_batch_size > 0
    outs = io_entries(outputs, batched)
    if art.task == "text-classification" and art.labels:
        for o in outs:
            if o["name"] == "logits":
                o["label_filename"] = "labels.txt"
    config: dict = {
        "name": cfg.model_name,
        "platform": platform,
        "max_batch_size": cfg.max_batch_size,
        "default_model_filename": filename,
        "input": io_entries(inputs, batched),
        "output": outs,
        "instance_group": [
            {
                "count": cfg.instance_count,
                "kind": Ident(KINDS[cfg.instance_kind]),
                **({"gpus": list(cfg.gpus)} if cfg.gpus and cfg.instance_kind == "gpu" else {}),
            }
        ],
    }
    if batched:
        config["dynamic_batching"] = {
            "preferred_batch_size": list(cfg.preferred_batch_sizes),
            "max_queue_delay_microseconds": cfg.max_queue_delay_us,
        }
    if art.format == "tensorrt":
        limit = max((p.max_batch for p in art.runtime.profiles), default=cfg.max_batch_size)
        if cfg.max_batch_size > limit:
            raise EdgepackError(
                f"max_batch_size {cfg.max_batch_size} exceeds the engine's largest profile batch {limit}"
            )
        if len(art.runtime.profiles) > 1:  # Triton uses profile 0 only unless the group lists them all
            for group in config["instance_group"]:
                group["profile"] = [str(i) for i in range(len(art.runtime.profiles))]
    if cfg.ort_trt_accelerator and art.format == "onnx":
        config["optimization"] = {
            "execution_accelerators": {
                "gpu_execution_accelerator": [
                    {
                        "name": "tensorrt",
                        "parameters": [
                            {"key": "precision_mode", "value": cfg.ort_trt_accelerator},
                            {"key": "max_workspace_size_bytes", "value": str(2 << 30)},
                        ],
                    }
                ]
            }
        }
    return config


def tokenizer_configs(
    art: Artifact, cfg: TritonConfig, inputs: list[dict], outputs: list[dict]
) -> tuple[dict, dict]:
    """config.pbtxt dicts of the Python-backend tokenizer and of the TEXT -> outputs ensemble."""
    tok_name, ens_name = f"{cfg.model_name}_tokenizer", f"{cfg.model_name}_text"
    token_inputs = [i["name"] for i in inputs]
    rt = art.runtime
    text_in = [{"name": "TEXT", "data_type": Ident("TYPE_STRING"), "dims": [1]}]
    # the step emits what the model takes: int64 for ONNX, possibly int32 for a TensorRT engine
    tok_outs = [
        {"name": i["name"], "data_type": Ident(triton_dtype(i["dtype"])), "dims": [-1]} for i in inputs
    ]
    params = {
        "max_length": rt.max_length or 512,
        "pad_token_id": rt.pad_token_id or 0,
        "pad_to_multiple_of": cfg.pad_to_multiple_of,
        "tokenizer_file": "tokenizer.json",
    }
    tok = {
        "name": tok_name,
        "backend": "python",
        "max_batch_size": cfg.max_batch_size,
        "input": text_in,
        "output": tok_outs,
        "instance_group": [{"count": max(1, cfg.instance_count), "kind": Ident("KIND_CPU")}],
        "parameters": [{"key": k, "value": {"string_value": str(v)}} for k, v in params.items()],
    }
    ens_outputs = io_entries(outputs, True)
    out_map = [{"key": o["name"], "value": o["name"]} for o in outputs]
    if art.task == "feature-extraction" and "attention_mask" in token_inputs:
        ens_outputs.append({"name": "attention_mask", "data_type": Ident("TYPE_INT64"), "dims": [-1]})
    ens = {
        "name": ens_name,
        "platform": "ensemble",
        "max_batch_size": cfg.max_batch_size,
        "input": text_in,
        "output": ens_outputs,
        "ensemble_scheduling": {
            "step": [
                {
                    "model_name": tok_name,
                    "model_version": -1,
                    "input_map": [{"key": "TEXT", "value": "TEXT"}],
                    "output_map": [{"key": n, "value": n} for n in token_inputs],
                },
                {
                    "model_name": cfg.model_name,
                    "model_version": -1,
                    "input_map": [{"key": n, "value": n} for n in token_inputs],
                    "output_map": out_map,
                },
            ]
        },
    }
    return tok, ens


def export_triton(
    source: str | os.PathLike | Artifact, out: str | os.PathLike, cfg: TritonConfig = TritonConfig(),
    overwrite: bool = False,
) -> Artifact:
    """Write a Triton model repository for an ``onnx`` or ``tensorrt`` artifact and check it."""
    from edgepack.export.triton_check import assert_repository_ok

    art = source if isinstance(source, Artifact) else Artifact.open(source)
    art.require(format=("onnx", "tensorrt"))
    if art.format == "onnx":
        inputs, outputs = graph_io(art.file("model"))
        model_file = art.file("model")
    else:
        inputs, outputs, model_file = art.inputs, art.outputs, art.file("engine")
    with ArtifactWriter(Path(out), overwrite=overwrite, sources=(source,)) as w:
        root = w.dir
        mdir = root / cfg.model_name
        (mdir / str(cfg.version)).mkdir(parents=True)
        filename = PLATFORMS[art.format][1]
        shutil.copyfile(model_file, mdir / str(cfg.version) / filename)
        shutil.copyfile(art.file("tokenizer"), mdir / "tokenizer.json")
        (mdir / "config.pbtxt").write_text(format_pbtxt(model_config(art, cfg, inputs, outputs)))
        files = {
            "model": f"{cfg.model_name}/{cfg.version}/{filename}",
            "config": f"{cfg.model_name}/config.pbtxt",
            "tokenizer": f"{cfg.model_name}/tokenizer.json",
        }
        if art.task == "text-classification" and art.labels:
            (mdir / "labels.txt").write_text("\n".join(art.labels) + "\n")
            files["labels"] = f"{cfg.model_name}/labels.txt"
        if cfg.tokenizer == "ensemble":
            tok, ens = tokenizer_configs(art, cfg, inputs, outputs)
            for conf in (tok, ens):
                d = root / conf["name"]
                (d / str(cfg.version)).mkdir(parents=True)
                (d / "config.pbtxt").write_text(format_pbtxt(conf))
                files[f"{conf['name']}_config"] = f"{conf['name']}/config.pbtxt"
            tdir = root / tok["name"] / str(cfg.version)
            shutil.copyfile(Path(__file__).with_name("triton_tokenizer_model.py"), tdir / "model.py")
            shutil.copyfile(art.file("tokenizer"), tdir / "tokenizer.json")
            files["tokenizer_model"] = f"{tok['name']}/{cfg.version}/model.py"
        (root / "README.md").write_text(repository_readme(art, cfg, inputs, outputs))
        files["readme"] = "README.md"
        profiles = len(art.runtime.profiles) if art.format == "tensorrt" else 0
        assert_repository_ok(root, {cfg.model_name: inputs_outputs(inputs, outputs, profiles)})
        return w.commit(
            stage="export",
            format="triton",
            task=art.task,
            labels=art.labels,
            inputs=art.inputs,
            outputs=art.outputs,
            files=files,
            parent=art,
            config={**config_to_dict(cfg), "backend": PLATFORMS[art.format][0]},
            metrics={k: v for k, v in art.metrics.items() if k in ("accuracy", "macro_f1", "size_bytes")},
            runtime=art.runtime.replace(
                model_name=cfg.model_name,
                platform=PLATFORMS[art.format][0],
                ensemble=f"{cfg.model_name}_text" if cfg.tokenizer == "ensemble" else None,
            ),
            extra=art.extra,
        )


def inputs_outputs(inputs: list[dict], outputs: list[dict], profiles: int = 0) -> dict:
    """The reference a repository check compares a model's config against: IO specs and, for a
    TensorRT engine, its number of optimization profiles (every instance group must list them all)."""
    return {"inputs": inputs, "outputs": outputs, "profiles": profiles}


def repository_readme(art: Artifact, cfg: TritonConfig, inputs: list[dict], outputs: list[dict]) -> str:
    """How to start Triton on this repository and call it (server-side or client-side tokenization)."""
    names = [i["name"] for i in inputs]
    first_out = outputs[0]["name"]
    max_length, pad_id = art.runtime.max_length or 512, art.runtime.pad_token_id or 0
    lines = [
        f"# Triton repository for `{cfg.model_name}` ({art.task}, {PLATFORMS[art.format][0]})",
        "",
        "Start (match the image's TensorRT version to the engine's for tensorrt_plan models):",
        "",
        "    docker run --gpus=all --rm -p8000:8000 -p8001:8001 -p8002:8002 \\",
        "      -v $PWD:/models nvcr.io/nvidia/tritonserver:<yy.mm>-py3 \\",
        "      tritonserver --model-repository=/models",
        "",
    ]
    if cfg.tokenizer == "ensemble":
        lines += [
            f"Server-side tokenization: send raw text to `{cfg.model_name}_text` (input `TEXT`, BYTES, [B, 1]).",
            "The Python-backend step needs `tokenizers` in the container: `pip install tokenizers`",
            "",
            "    import numpy as np, tritonclient.http as http",
            "    c = http.InferenceServerClient('localhost:8000')",
            "    t = http.InferInput('TEXT', [2, 1], 'BYTES')",
            "    t.set_data_from_numpy(np.array([[b'great film'], [b'dull']], dtype=object))",
            f"    print(c.infer('{cfg.model_name}_text', [t]).as_numpy('{first_out}'))",
            "",
        ]
    lines += [
        f"Client-side tokenization: tokenize with `{cfg.model_name}/tokenizer.json` and call `{cfg.model_name}`",
        f"with {', '.join(names)} (INT64, [B, T], padded to the batch's longest, T <= "
        f"{max_length}, pad id {pad_id}):",
        "",
        "    import numpy as np, tritonclient.http as http",
        "    from tokenizers import Tokenizer",
        "    c = http.InferenceServerClient('localhost:8000')",
        f"    tok = Tokenizer.from_file('{cfg.model_name}/tokenizer.json')",
        f"    tok.enable_truncation({max_length}); tok.enable_padding(pad_id={pad_id})",
        "    enc = tok.encode_batch(['great film', 'dull'])",
        "    cols = {'input_ids': [e.ids for e in enc], 'attention_mask': [e.attention_mask for e in enc],",
        "            'token_type_ids': [e.type_ids for e in enc]}",
        f"    inputs = [http.InferInput(n, [len(enc), len(enc[0].ids)], 'INT64') for n in {names!r}]",
        "    for i in inputs: i.set_data_from_numpy(np.array(cols[i.name()], dtype=np.int64))",
        f"    print(c.infer('{cfg.model_name}', inputs).as_numpy('{first_out}'))",
        "",
    ]
    if art.task == "text-classification":
        lines.append(f"`logits` are raw scores; softmax gives probabilities for labels {art.labels}.")
    else:
        lines.append("`last_hidden_state` is per token: mean-pool it with `attention_mask` for an embedding.")
    return "\n".join(lines) + "\n"
