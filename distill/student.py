"""Build a student from a teacher: k of its n layers (DistilBERT style) or a smaller config.

init="teacher-layers": same width as the teacher; embeddings, pooler and classifier are copied and
  student block i is a copy of teacher block ``layers[i]`` (default: the block it will imitate,
  ``round((i+1)*n/k) - 1``).
init="truncated": a narrower/shallower config; every weight is the leading slice of the teacher's
  matching weight (block i from teacher block ``layers[i]``), a cheap warm start.
init="random": the smaller config with fresh random weights.
init="pretrained": an existing model of any supported family, with its own tokenizer (``model``: a local
  HF folder or ``hf`` artifact; ``edgepack.distill.pretrained``); the shape fields do not apply.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

from edgepack.distill.layer_map import default_teacher_layer

from edgepack.config import ConfigError, check_choice, check_fields, check_min
from edgepack.errors import EdgepackError
from edgepack.families import attention_overrides

INITS = ("teacher-layers", "truncated", "random", "pretrained")


@dataclass(frozen=True)
class StudentConfig:
    """The student's shape and initialisation. None = keep the teacher's value.

    init="pretrained" takes the student from ``model`` (its own depth, width and tokenizer; num_layers
    is then ignored and layers/hidden_size/num_heads/intermediate_size must stay unset).
    """

    num_layers: int = 3
    layers: tuple[int, ...] | None = None  # teacher blocks to copy, default round((i+1)*n/k)-1
    hidden_size: int | None = None
    num_heads: int | None = None
    intermediate_size: int | None = None
    init: str = "teacher-layers"
    model: str | None = None  # init="pretrained": local HF folder or 'hf' artifact of the student

    def __post_init__(self) -> None:
        check_fields(self)
        check_min(self, 1, "num_layers", "hidden_size", "num_heads", "intermediate_size")
        check_choice(self, "init", INITS)
        if (self.init == "pretrained") != (self.model is not None):
            raise ConfigError("model", "is required with init='pretrained' (a model folder or 'hf' artifact)"
                              if self.model is None else f"is only used with init='pretrained', not '{self.init}'")
        if self.init == "pretrained":
            shaped = [f for f in ("layers", "hidden_size", "num_heads", "intermediate_size")
                      if getattr(self, f) is not None]
            if shaped:
                raise ConfigError(shaped[0], "does not apply to init='pretrained' (the model's own shape is used)")
        if self.layers is not None:
            if len(self.layers) != self.num_layers:
                raise ConfigError("layers", f"must name num_layers ({self.num_layers}) teacher blocks, "
                                            f"got {list(self.layers)}")
            if any(i < 0 for i in self.layers):
                raise ConfigError("layers", f"must be teacher block indices >= 0, got {list(self.layers)}")


def _layer_attr(config: Any) -> str:
    """The config field holding the number of encoder blocks (``edgepack.families``)."""
    from edgepack.families import family_of

    return family_of(getattr(config, "model_type", None), "distillation").layers_field


def _encoder_layers(model: Any):
    """The encoder's nn.ModuleList of blocks (``edgepack.families``: e.g. ``encoder.layer``, ``model.layers``)."""
    from edgepack.families import family_of

    base = getattr(model, model.base_model_prefix, model)
    obj = base
    for part in family_of(getattr(model.config, "model_type", None), "distillation").layers.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            raise EdgepackError(f"cannot find the transformer blocks of {type(model).__name__}")
    return obj


def student_layers(cfg: StudentConfig, n_T: int) -> tuple[int, ...]:
    """The teacher blocks the student's blocks are taken from."""
    k = cfg.num_layers
    layers = cfg.layers or tuple(default_teacher_layer(i, n_T, k) for i in range(k))
    if len(layers) != k or any(not 0 <= i < n_T for i in layers):
        raise EdgepackError(f"student layers {layers} must be {k} indices in [0, {n_T})")
    return tuple(layers)


def student_config(teacher_config: Any, cfg: StudentConfig) -> Any:
    """The student's transformers config: the teacher's, with the requested sizes."""
    c = teacher_config.__class__.from_dict(teacher_config.to_dict())
    n_T = getattr(c, _layer_attr(c))
    if not 1 <= cfg.num_layers <= n_T and cfg.init != "random":
        raise EdgepackError(f"student needs 1..{n_T} layers to copy from the teacher, got {cfg.num_layers}")
    setattr(c, _layer_attr(c), cfg.num_layers)
    names = {"hidden_size": "dim", "num_attention_heads": "n_heads", "intermediate_size": "hidden_dim"}
    wanted = {"hidden_size": cfg.hidden_size, "num_attention_heads": cfg.num_heads,
              "intermediate_size": cfg.intermediate_size}
    changed = False
    for attr, value in wanted.items():
        if value is None:
            continue
        attr = names[attr] if c.model_type == "distilbert" else attr
        changed |= getattr(c, attr) != value
        setattr(c, attr, value)
    hidden = getattr(c, "dim", None) or c.hidden_size
    heads = getattr(c, "n_heads", None) or c.num_attention_heads
    if hidden % heads:
        raise EdgepackError(f"hidden size {hidden} is not divisible by {heads} attention heads")
    if changed and cfg.init == "teacher-layers":
        raise EdgepackError("init='teacher-layers' keeps the teacher's width; use init='truncated' or 'random' "
                            "for a narrower student")
    return c


def make_student(teacher: Any, cfg: StudentConfig, seed: int = 0, overrides: dict | None = None) -> Any:
    """A new student model (same class as ``teacher``) initialised as ``cfg.init`` says.

    overrides: config attributes to set on the student (e.g. ``attention_probs_dropout_prob=0`` when
    attention maps are distilled: HF returns the probabilities after dropout). For families that alternate
    global and local attention by block position (ModernBERT), the student's alternation is chosen so each
    copied block keeps its teacher kind (``edgepack.families.attention_overrides``); a warning names the blocks
    no alternation can keep.
    """
    import torch

    n_T = getattr(teacher.config, _layer_attr(teacher.config))
    c = student_config(teacher.config, cfg)
    layers = student_layers(cfg, n_T) if cfg.init != "random" else None
    if layers is not None:  # alternating global/local families: copied blocks keep their attention kind
        kinds, changed = attention_overrides(teacher.config, layers)
        overrides = {**kinds, **(overrides or {})}
        if changed:
            warnings.warn(f"student blocks {changed} (copied from teacher blocks {[layers[i] for i in changed]}) "
                          "run the other attention kind than in the teacher (global vs local): no "
                          "global_attn_every_n_layers reproduces them; choose student layers to avoid it",
                          stacklevel=2)
    for k, v in (overrides or {}).items():
        setattr(c, k, v)
    torch.manual_seed(seed)
    student = teacher.__class__(c)
    if layers is None:
        return student.train()
    t_sd = teacher.state_dict()
    prefix_T = _block_prefix(teacher, _encoder_layers(teacher))
    new_sd = {}
    for name, p in student.state_dict().items():
        src = name
        if name.startswith(prefix_T):  # same module path in student and teacher
            i, rest = name[len(prefix_T):].split(".", 1)
            src = f"{prefix_T}{layers[int(i)]}.{rest}"
        if src not in t_sd:
            new_sd[name] = p
            continue
        w = t_sd[src]
        if w.shape != p.shape:  # truncated init: leading slice of the teacher weight
            if len(w.shape) != len(p.shape) or any(s > t for s, t in zip(p.shape, w.shape)):
                new_sd[name] = p
                continue
            w = w[tuple(slice(0, s) for s in p.shape)]
        new_sd[name] = w.clone()
    student.load_state_dict(new_sd)
    return student.train()


def _block_prefix(model: Any, blocks: Any) -> str:
    for name, mod in model.named_modules():
        if mod is blocks:
            return name + "."
    raise EdgepackError("cannot locate the encoder blocks by name")
