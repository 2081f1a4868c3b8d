"""Where the prunable parts of each supported encoder family live (torch modules, no torch import here).

Every encoder edgepack prunes has, per layer, an attention block whose heads end in one output
projection, and a feed-forward block ``up`` (hidden -> intermediate, or -> 2 x intermediate for a
gated GLU block) followed by ``down`` (intermediate -> hidden). The family table (submodule paths,
the config fields that size them, what head pruning can do) lives in ``edgepack.families``, so the
importance and surgery code is family-agnostic.
"""

from __future__ import annotations

from typing import Any

from edgepack.errors import EdgepackError
from edgepack.families import FAMILIES, Family, family_of

__all__ = [
    "FAMILIES",
    "Family",
    "check_head_pruning",
    "family",
    "ffn_size",
    "get_path",
    "head_size",
    "heads_in_layer",
    "layers",
    "original_head_ids",
    "pruned_heads",
    "set_path",
]


def family(model: Any) -> Family:
    """The family description of ``model`` (a transformers PreTrainedModel); EdgepackError if unsupported."""
    return family_of(getattr(model.config, "model_type", None), "pruning")


def check_head_pruning(model: Any) -> None:
    """One EdgepackError line when the model's family cannot have attention heads removed."""
    reason = family(model).head_pruning
    if reason:
        raise EdgepackError(reason)


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
    fam = family(model)
    return getattr(model.config, fam.hidden_field) // getattr(model.config, fam.heads_field)


def heads_in_layer(model: Any, i: int) -> int:
    """Heads currently present in layer ``i`` (after any earlier head pruning)."""
    return get_path(layers(model)[i], family(model).attn_out).in_features // head_size(model)


def pruned_heads(model: Any, i: int) -> set[int]:
    """Original indices of the heads already removed from layer ``i``."""
    return set(getattr(get_path(layers(model)[i], family(model).attention), "pruned_heads", ()))


def original_head_ids(model: Any, i: int) -> list[int]:
    """Original index of each head currently in layer ``i`` (current position -> original id)."""
    total = getattr(model.config, family(model).heads_field)
    gone = pruned_heads(model, i)
    return [h for h in range(total) if h not in gone]


def ffn_size(model: Any, i: int) -> int:
    """FFN neurons of layer ``i`` (the down projection's input width; a GLU's up projection is twice that)."""
    return get_path(layers(model)[i], family(model).ffn_down).in_features
