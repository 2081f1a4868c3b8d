"""Where the prunable parts of each supported encoder family live (torch modules, no torch import here).

Every encoder edgepack prunes has, per layer, an attention block whose heads end in one output
projection, and a feed-forward block ``up`` (hidden -> intermediate) followed by ``down``
(intermediate -> hidden). This module names those submodules and the config fields that size them,
so the importance and surgery code is family-agnostic.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from edgepack.errors import EdgepackError


@dataclass(frozen=True)
class Family:
    """Attribute paths for one model family, relative to the base model / one encoder layer."""

    layers: str  # base model -> nn.ModuleList of layers
    attention: str  # layer -> module with .prune_heads(); its pruned_heads set
    attn_out: str  # layer -> Linear whose input is the concatenated per-head context (B, T, heads*dh)
    ffn_up: str  # layer -> Linear hidden -> intermediate
    ffn_down: str  # layer -> Linear intermediate -> hidden
    heads_field: str  # config field: heads per layer
    ffn_field: str  # config field: intermediate size
    layers_field: str  # config field: number of layers


_BERT_LIKE = Family("encoder.layer", "attention", "attention.output.dense", "intermediate.dense",
                    "output.dense", "num_attention_heads", "intermediate_size", "num_hidden_layers")
FAMILIES = {
    "bert": _BERT_LIKE,
    "roberta": _BERT_LIKE,
    "xlm-roberta": _BERT_LIKE,
    "electra": _BERT_LIKE,
    "mpnet": Family("encoder.layer", "attention", "attention.attn.o", "intermediate.dense", "output.dense",
                    "num_attention_heads", "intermediate_size", "num_hidden_layers"),
    "distilbert": Family("transformer.layer", "attention", "attention.out_lin", "ffn.lin1", "ffn.lin2",
                         "n_heads", "hidden_dim", "n_layers"),
}


def family(model: Any) -> Family:
    """The family description of ``model`` (a transformers PreTrainedModel); EdgepackError if unsupported."""
    mt = getattr(model.config, "model_type", None)
    if mt not in FAMILIES:
        raise EdgepackError(f"pruning supports {', '.join(sorted(FAMILIES))} encoders, not '{mt}'")
    return FAMILIES[mt]


def get_path(obj: Any, path: str) -> Any:
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


def set_path(obj: Any, path: str, value: Any) -> None:
    parent, _, last = path.rpartition(".")
    setattr(get_path(obj, parent) if parent else obj, last, value)


def layers(model: Any) -> Any:
    """The encoder's nn.ModuleList of layers."""
    return get_path(model.base_model, family(model).layers)


def head_size(model: Any) -> int:
    cfg = model.config
    hidden = getattr(cfg, "hidden_size", None) or cfg.dim
    return hidden // getattr(cfg, family(model).heads_field)


def heads_in_layer(model: Any, i: int) -> int:
    """Heads currently present in layer ``i`` (after any earlier head pruning)."""
    return get_path(layers(model)[i], family(model).attn_out).in_features // head_size(model)


def pruned_heads(model: Any, i: int) -> set[int]:
    """Original indices of the heads already removed from layer ``i``."""
    return set(get_path(layers(model)[i], family(model).attention).pruned_heads)


def original_head_ids(model: Any, i: int) -> list[int]:
    """Original index of each head currently in layer ``i`` (current position -> original id)."""
    total = getattr(model.config, family(model).heads_field)
    gone = pruned_heads(model, i)
    return [h for h in range(total) if h not in gone]


def ffn_size(model: Any, i: int) -> int:
    return get_path(layers(model)[i], family(model).ffn_up).out_features
