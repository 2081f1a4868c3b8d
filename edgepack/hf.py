"""Load and save Hugging Face models from local folders (torch side; imports torch lazily).

``load_model`` accepts everything a user may call "a model":
  * a plain Hugging Face model folder (``config.json`` + weights + tokenizer files),
  * a PEFT/LoRA adapter folder (``adapter_config.json``) whose base is a local folder; the adapter
    is merged into a full-precision base with ``merge_and_unload()`` (a LoRA trained on a
    bitsandbytes 8/4-bit base is merged into the fp32 base, never into quantized weights),
  * an edgepack artifact of format ``hf`` (written by finetune/distill/prune), checksums verified.
Nothing is ever downloaded: all paths must be local (``HF_HUB_OFFLINE`` is forced on).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgepack.artifact import Artifact, ArtifactError, is_artifact
from edgepack.contract import RuntimeContract
from edgepack.errors import EdgepackError, MissingDependencyError

# The encoder families edgepack exports, optimizes and distills (the table is edgepack.families); others fail
# with a clear error.
from edgepack.families import SUPPORTED_MODEL_TYPES as SUPPORTED_MODEL_TYPES
from edgepack.families import family_of

TOKENIZER_FILES = (
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt", "vocab.json",
    "merges.txt", "sentencepiece.bpe.model", "added_tokens.json",
)


@dataclass
class LoadedModel:
    """A torch model with its tokenizer and what edgepack needs to know about it."""

    model: Any  # transformers.PreTrainedModel, eval mode
    tokenizer: Any  # transformers.PreTrainedTokenizerFast
    task: str  # "text-classification" | "feature-extraction"
    labels: list[str]
    source: Path
    artifact: Artifact | None = None  # set when loaded from an edgepack artifact
    extra: dict = field(default_factory=dict)  # adapter info (adapter, base_model) and the source's extra
    runtime: RuntimeContract = field(default_factory=RuntimeContract)  # pooling/normalize (embedding models)

    @property
    def max_length(self) -> int:
        return model_max_length(self.model.config, self.tokenizer)


def _offline() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def require_torch(purpose: str = "this step") -> None:
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError:
        raise MissingDependencyError("torch/transformers", "tools", purpose) from None


def detect_task(config: Any) -> str:
    archs = list(getattr(config, "architectures", None) or [])
    if any(a.endswith("ForSequenceClassification") for a in archs):
        return "text-classification"
    if not archs or any(a.endswith("Model") for a in archs):
        return "feature-extraction"
    raise EdgepackError(
        f"unsupported architecture {archs[0]}: edgepack handles sequence classification and "
        "feature extraction (embedding) encoders"
    )


def check_supported(config: Any) -> None:
    family_of(getattr(config, "model_type", None))


def label_names(config: Any) -> list[str]:
    id2label = {int(k): str(v) for k, v in (getattr(config, "id2label", None) or {}).items()}
    return [id2label[i] for i in sorted(id2label)]


def model_max_length(config: Any, tokenizer: Any, cap: int = 512) -> int:
    n = getattr(config, "max_position_embeddings", cap) or cap
    if config.model_type in ("roberta", "xlm-roberta", "mpnet"):
        n -= 2  # position ids start at padding_idx + 1
    tok = getattr(tokenizer, "model_max_length", n) or n
    return int(min(n, tok, cap))


def _model_class(task: str):
    from transformers import AutoModel, AutoModelForSequenceClassification

    return AutoModelForSequenceClassification if task == "text-classification" else AutoModel


def load_model(path: str | os.PathLike, task: str | None = None, base_model: str | None = None) -> LoadedModel:
    """Load a model folder, PEFT adapter folder or ``hf`` artifact; returns it in eval mode on CPU, fp32."""
    src = Path(path).expanduser().resolve()
    if not src.exists():
        raise EdgepackError(f"model directory not found: {src}")
    if not src.is_dir():
        raise EdgepackError(f"expected a model directory, got a file: {src}")
    require_torch("loading a torch model")
    _offline()
    from transformers import AutoConfig, AutoTokenizer

    art = None
    extra: dict = {}
    runtime = RuntimeContract()
    if is_artifact(src):
        art = Artifact.open(src)
        if art.format != "hf":
            raise ArtifactError(
                f"{src} is a '{art.format}' artifact; this step needs a torch model "
                "(a Hugging Face folder, a PEFT adapter, or an edgepack 'hf' artifact)"
            )
        extra, runtime = art.extra, art.runtime
        task = task or art.task
    if (src / "adapter_config.json").is_file():
        model, tok, base_dir, task = _load_adapter(src, task, base_model or extra.get("base_model"))
        extra = {**extra, "adapter": str(src), "base_model": str(base_dir)}
    else:
        if not (src / "config.json").is_file():
            raise EdgepackError(
                f"{src} is not a Hugging Face model folder (no config.json) nor a PEFT adapter "
                "(no adapter_config.json)"
            )
        config = AutoConfig.from_pretrained(src)
        check_supported(config)
        task = task or detect_task(config)
        model = _model_class(task).from_pretrained(src, dtype="float32")
        tok = AutoTokenizer.from_pretrained(src)
    task = task or detect_task(model.config)
    if task not in ("text-classification", "feature-extraction"):
        raise EdgepackError(f"unsupported task '{task}': use text-classification or feature-extraction")
    model.eval()
    if task == "feature-extraction":
        if art is None:  # a plain folder: a sentence-transformers model says how it pools
            runtime = sentence_transformers_pooling(src)
        pooling, normalize = runtime.embedding_pooling()
        runtime = runtime.replace(pooling=pooling, normalize=normalize)
    return LoadedModel(model, tok, task, label_names(model.config) if task == "text-classification" else [],
                       src, art, extra, runtime)


_ST_POOLING = {"mean_tokens": "mean", "cls_token": "cls"}


def sentence_transformers_pooling(folder: Path) -> RuntimeContract:
    """pooling/normalize of a sentence-transformers folder (``modules.json``: its Pooling module's config and
    whether a Normalize module follows); an empty contract (defaults: mean + L2 norm) for other folders."""
    mods = Path(folder) / "modules.json"
    if not mods.is_file():
        return RuntimeContract()
    entries = json.loads(mods.read_text())
    kinds = [str(m.get("type", "")) for m in entries]
    pool = next((m for m in entries if str(m.get("type", "")).endswith(".Pooling")), None)
    cfg_path = Path(folder) / str(pool.get("path", "")) / "config.json" if pool else None
    if cfg_path is None or not cfg_path.is_file():
        return RuntimeContract()
    modes = [k.removeprefix("pooling_mode_") for k, v in json.loads(cfg_path.read_text()).items()
             if k.startswith("pooling_mode_") and v is True]
    if len(modes) != 1 or modes[0] not in _ST_POOLING:
        raise EdgepackError(f"{folder}: sentence-transformers pooling {modes} is not supported; edgepack serves "
                            "mean_tokens or cls_token pooling")
    return RuntimeContract(pooling=_ST_POOLING[modes[0]], normalize=any(k.endswith(".Normalize") for k in kinds))


def _load_adapter(src: Path, task: str | None, base_override: str | None):
    try:
        from peft import PeftConfig, PeftModel
    except ImportError:
        raise MissingDependencyError("peft", "tools", "loading a LoRA adapter") from None
    from transformers import AutoConfig, AutoTokenizer

    pcfg = PeftConfig.from_pretrained(src)
    base = Path(base_override or pcfg.base_model_name_or_path or "").expanduser()
    if not base.is_absolute():
        base = (src / base).resolve() if (src / base).exists() else base.resolve()
    if not (base / "config.json").is_file() and not is_artifact(base):
        raise EdgepackError(
            f"the adapter {src} needs its base model '{pcfg.base_model_name_or_path}', which is not a local "
            "model folder; pass the base folder explicitly (--base-model)"
        )
    if is_artifact(base):
        base = Artifact.open(base).require(format="hf").path
    config = AutoConfig.from_pretrained(base)
    check_supported(config)
    if task is None:
        task = "text-classification" if str(pcfg.task_type) in ("SEQ_CLS", "TaskType.SEQ_CLS") else detect_task(config)
    kwargs: dict = {"dtype": "float32"}
    if task == "text-classification":
        # The adapter folder may carry its own label count (saved next to the adapter).
        cfg_path = src / "config.json"
        if cfg_path.is_file():
            id2label = {int(k): v for k, v in json.loads(cfg_path.read_text()).get("id2label", {}).items()}
            if id2label:
                kwargs.update(num_labels=len(id2label), id2label=id2label,
                              label2id={v: k for k, v in id2label.items()})
    base_model = _model_class(task).from_pretrained(base, **{k: v for k, v in kwargs.items() if v is not None})
    peft_model = PeftModel.from_pretrained(base_model, src)
    merged = peft_model.merge_and_unload()
    tok_dir = src if any((src / f).is_file() for f in ("tokenizer.json", "vocab.txt")) else base
    return merged, AutoTokenizer.from_pretrained(tok_dir), base, task


def save_model(lm_or_model: Any, tokenizer: Any, out_dir: Path) -> dict[str, str]:
    """Save model + tokenizer as a Hugging Face folder into ``out_dir``; return artifact file roles.

    Roles: ``weights`` (model.safetensors), ``config`` (config.json), ``tokenizer`` (tokenizer.json) and
    one role per other tokenizer file (its file name).
    """
    out_dir = Path(out_dir)
    lm_or_model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    files = {"weights": "model.safetensors", "config": "config.json"}
    if (out_dir / "tokenizer.json").is_file():
        files["tokenizer"] = "tokenizer.json"
    for name in TOKENIZER_FILES:
        if name != "tokenizer.json" and (out_dir / name).is_file():
            files[name] = name
    if "generation_config.json" in os.listdir(out_dir):
        files["generation_config.json"] = "generation_config.json"
    return files


def hf_inputs_spec(tokenizer: Any) -> list[dict]:
    """The model's input names and dtypes, with symbolic batch/sequence axes."""
    return [{"name": n, "dtype": "int64", "shape": ["batch", "sequence"]} for n in tokenizer.model_input_names]


def count_parameters(model: Any) -> int:
    return int(sum(p.numel() for p in model.parameters()))
