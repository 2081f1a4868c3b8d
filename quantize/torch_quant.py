"""Torch-side quantization: dynamic int8 Linear layers for CPU, bitsandbytes 8-bit / nf4 for GPU serving.

Artifacts use the ``torch-quantized`` format and safetensors only (nothing is pickled):

* ``torch-dynamic-int8``: ``torch.ao`` dynamic quantization of every ``nn.Linear`` (per-channel int8
  weights). The file stores each layer's int8 weights, scales and zero points; loading rebuilds the
  fp32 architecture from ``config.json``, applies the same quantization and writes the weights back.
* ``bnb-int8`` / ``bnb-nf4``: transformers' bitsandbytes integration (``BitsAndBytesConfig``); saved
  with ``save_pretrained`` and loaded with ``load_quantized_torch``. bitsandbytes is imported only here.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgepack.artifact import Artifact, ArtifactError, ArtifactWriter
from edgepack.errors import EdgepackError, MissingDependencyError
from edgepack.config import check_choice, check_fields, config_to_dict

TORCH_METHODS = ("torch-dynamic-int8", "bnb-int8", "bnb-nf4")
# the contract's precision of each method (LLM.int8 quantizes activations per batch too)
TORCH_PRECISION = {"torch-dynamic-int8": "int8-dynamic", "bnb-int8": "int8-dynamic", "bnb-nf4": "nf4"}
QWEIGHTS = "quantized_weights.safetensors"


@dataclass(frozen=True)
class TorchQuantConfig:
    method: str = "torch-dynamic-int8"  # torch-dynamic-int8 | bnb-int8 | bnb-nf4
    per_channel: bool = True  # torch-dynamic-int8 only
    skip_modules: tuple[str, ...] = ("classifier",)  # module name substrings kept in fp32

    def __post_init__(self) -> None:
        check_fields(self)
        check_choice(self, "method", TORCH_METHODS)


def require_bitsandbytes() -> None:
    """Raise MissingDependencyError unless bitsandbytes is importable."""
    if importlib.util.find_spec("bitsandbytes") is None:
        raise MissingDependencyError("bitsandbytes", "gpu", "bitsandbytes 8-bit / nf4 quantization")


def _dynamic_int8(model: Any, per_channel: bool, skip: tuple[str, ...]) -> Any:
    """Replace the model's nn.Linear layers (outside ``skip``) with dynamic int8 ones, in place."""
    import torch
    from torch.ao.quantization import default_dynamic_qconfig, per_channel_dynamic_qconfig, quantize_dynamic

    qconfig = per_channel_dynamic_qconfig if per_channel else default_dynamic_qconfig
    spec = {name: qconfig for name, mod in model.named_modules()
            if isinstance(mod, torch.nn.Linear) and not any(s in name for s in skip)}
    return quantize_dynamic(model, spec, dtype=torch.qint8, inplace=True)


def _packed_state(model: Any) -> dict:
    """int8 weights, scales, zero points and float biases of every dynamic-quantized Linear."""
    import torch

    tensors = {}
    for name, mod in model.named_modules():
        if type(mod).__name__ == "Linear" and type(mod).__module__.startswith("torch.ao.nn.quantized.dynamic"):
            w, b = mod._packed_params._weight_bias()
            tensors[f"{name}.int8_weight"] = w.int_repr().contiguous()
            if w.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric):
                tensors[f"{name}.scales"] = w.q_per_channel_scales().float()
                tensors[f"{name}.zero_points"] = w.q_per_channel_zero_points().to(torch.int64)
            else:
                tensors[f"{name}.scales"] = torch.tensor([w.q_scale()], dtype=torch.float32)
                tensors[f"{name}.zero_points"] = torch.tensor([w.q_zero_point()], dtype=torch.int64)
            if b is not None:
                tensors[f"{name}.bias"] = b.detach().contiguous()
    return tensors


def quantize_torch(source: str | os.PathLike, out: str | os.PathLike, cfg: TorchQuantConfig = TorchQuantConfig(),
                   overwrite: bool = False) -> Artifact:
    """Quantize a torch model (HF folder / adapter / ``hf`` artifact) into a ``torch-quantized`` artifact."""
    if cfg.method.startswith("bnb"):
        require_bitsandbytes()
    from edgepack.hf import load_model, save_model

    lm = load_model(source)
    with ArtifactWriter(Path(out), overwrite=overwrite, sources=(source,)) as w:
        if cfg.method == "torch-dynamic-int8":
            from safetensors.torch import save_file

            files = save_model(lm.model, lm.tokenizer, w.dir)  # fp32 config + tokenizer (weights replaced below)
            (w.dir / files.pop("weights")).unlink()
            model = _dynamic_int8(lm.model, cfg.per_channel, cfg.skip_modules)
            packed = _packed_state(model)
            rest = {k: v.contiguous() for k, v in model.state_dict().items()
                    if hasattr(v, "dtype") and not v.is_quantized and "_packed_params" not in k}
            save_file({**rest, **packed}, str(w.dir / QWEIGHTS))
            files["weights"] = QWEIGHTS
            n_quant = sum(k.endswith(".int8_weight") for k in packed)
        else:
            model = _load_bnb(lm.source if lm.artifact is None else lm.artifact.path, lm.task, cfg)
            files = save_model(model, lm.tokenizer, w.dir)
            n_quant = sum(type(m).__name__ in ("Linear8bitLt", "Linear4bit") for m in model.modules())
        size = sum((w.dir / p).stat().st_size for p in files.values())
        return w.commit(
            stage="quantize", format="torch-quantized", task=lm.task, labels=lm.labels, files=files,
            parent=lm.artifact, config=config_to_dict(cfg), metrics={"size_bytes": size, "quantized_ops": n_quant},
            runtime=lm.runtime.replace(precision=TORCH_PRECISION[cfg.method], quantization=cfg.method,
                                       torch_source=str(lm.source)),
            extra=lm.extra,
        )


def _load_bnb(path: Path, task: str, cfg: TorchQuantConfig) -> Any:
    import torch
    from transformers import AutoModel, AutoModelForSequenceClassification, BitsAndBytesConfig

    bnb = (BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=list(cfg.skip_modules))
           if cfg.method == "bnb-int8" else
           BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.float32,
                              llm_int8_skip_modules=list(cfg.skip_modules)))
    cls = AutoModelForSequenceClassification if task == "text-classification" else AutoModel
    return cls.from_pretrained(path, quantization_config=bnb).eval()


def load_quantized_torch(path: str | os.PathLike) -> Any:
    """Load a ``torch-quantized`` artifact as an eval-mode torch model (weights read with safetensors)."""
    art = Artifact.open(path)
    if art.format != "torch-quantized":
        raise ArtifactError(f"{art.path} is a '{art.format}' artifact, not 'torch-quantized'")
    method = art.config.get("method")
    if method not in TORCH_METHODS:
        raise ArtifactError(f"{art.path}: unknown torch quantization method {method!r}")
    import torch
    from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification

    cls = AutoModelForSequenceClassification if art.task == "text-classification" else AutoModel
    if method != "torch-dynamic-int8":
        require_bitsandbytes()
        return cls.from_pretrained(art.path).eval()
    from safetensors.torch import load_file

    model = cls.from_config(AutoConfig.from_pretrained(art.path)).eval()
    tensors = load_file(str(art.file("weights")))
    qkeys = ("int8_weight", "scales", "zero_points")
    # float tensors first (into the fp32 architecture), then the int8 Linear weights after quantizing it
    rest = {k: v for k, v in tensors.items() if k.rsplit(".", 1)[-1] not in qkeys and k in model.state_dict()}
    result = model.load_state_dict(rest, strict=False)
    quantized = {k.rsplit(".", 1)[0] for k in tensors if k.endswith(".int8_weight")}
    bad = [k for k in result.missing_keys if k.rsplit(".", 1)[0] not in quantized]
    if bad:
        raise ArtifactError(f"{art.path}: weights missing for {', '.join(bad[:3])}")
    _dynamic_int8(model, art.config.get("per_channel", True), tuple(art.config.get("skip_modules", ())))
    for name, mod in model.named_modules():
        if name in quantized:
            q, s, z = (tensors[f"{name}.{k}"] for k in qkeys)
            if s.numel() > 1:
                qw = torch._make_per_channel_quantized_tensor(q, s.double(), z, 0)
            else:
                qw = torch._make_per_tensor_quantized_tensor(q, float(s), int(z))
            mod.set_weight_bias(qw, tensors.get(f"{name}.bias"))
    return model
