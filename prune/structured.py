"""Structured pruning that really shrinks the matrices: attention heads, FFN neurons, whole layers.

Heads go through the model's own ``prune_heads`` (it slices Q/K/V rows and the output projection's
columns and records ``config.pruned_heads``, which ``from_pretrained`` replays on load); families where
that cannot work (MPNet, DeBERTa-v2, ModernBERT: ``edgepack.families``) refuse with one EdgepackError line. FFN neurons are
rows of the up projection and columns of the down projection (``transformers.pytorch_utils.
prune_linear_layer``), with the config's intermediate size updated; every layer keeps the same count
so the saved folder reloads with plain ``from_pretrained`` (a gated GLU up projection, ModernBERT's ``Wi``,
loses both halves' rows). Layer dropping shortens the layer list and renumbers ``config.pruned_heads``;
for ModernBERT it also sets ``global_attn_every_n_layers`` so every kept block keeps its global/local
attention on reload (refused when no value does, or when block 0 would be dropped).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from edgepack.prune import arch

from edgepack.errors import EdgepackError
from edgepack.families import kept_attention_config


def prune_heads(model: Any, heads: dict[int, Sequence[int]]) -> dict[int, list[int]]:
    """Remove heads ``{layer: [original head ids]}`` in place; return what was removed (sorted).

    Head ids are the layer's original numbering (as in ``config.pruned_heads``). Raises EdgepackError
    for an unknown layer/head, or when a layer would be left with no head.
    """
    arch.check_head_pruning(model)
    n_layers, total = len(arch.layers(model)), getattr(model.config, arch.family(model).heads_field)
    done: dict[int, list[int]] = {}
    for layer, ids in heads.items():
        layer, ids = int(layer), sorted({int(h) for h in ids})
        if not 0 <= layer < n_layers:
            raise EdgepackError(f"cannot prune heads of layer {layer}: the model has {n_layers} layers")
        bad = [h for h in ids if not 0 <= h < total]
        if bad:
            raise EdgepackError(f"layer {layer} has heads 0..{total - 1}; got {bad}")
        remaining = set(arch.original_head_ids(model, layer)) - set(ids)
        if not remaining:
            raise EdgepackError(
                f"pruning heads {ids} would remove all heads of layer {layer}; keep at least one head per "
                "layer (drop the whole layer with drop_layers instead)")
        new = [h for h in ids if h not in arch.pruned_heads(model, layer)]
        if new:
            done[layer] = new
    if done:
        model.prune_heads(done)
    return done


def prune_ffn(model: Any, remove: dict[int, Sequence[int]]) -> dict[int, int]:
    """Remove FFN neurons ``{layer: [current neuron indices]}`` in place; return kept size per layer.

    Every layer must end with the same intermediate size (the config has one ``intermediate_size``);
    layers not listed keep all their neurons. Raises EdgepackError on bad indices or unequal sizes.
    """
    import torch
    from transformers.pytorch_utils import prune_linear_layer

    fam, layer_list = arch.family(model), arch.layers(model)
    keep_idx = {}
    for i, layer in enumerate(layer_list):
        size = arch.ffn_size(model, i)
        ids = sorted({int(n) for n in remove.get(i, remove.get(str(i), ()))})
        if ids and not (0 <= ids[0] and ids[-1] < size):
            raise EdgepackError(f"layer {i} has FFN neurons 0..{size - 1}; got indices outside that range")
        if len(ids) >= size:
            raise EdgepackError(f"cannot remove all {size} FFN neurons of layer {i}")
        keep = torch.ones(size, dtype=torch.bool)
        keep[ids] = False
        keep_idx[i] = keep.nonzero().flatten()
    unknown = [k for k in remove if not 0 <= int(k) < len(layer_list)]
    if unknown:
        raise EdgepackError(f"cannot prune FFN of layers {unknown}: the model has {len(layer_list)} layers")
    sizes = {len(v) for v in keep_idx.values()}
    if len(sizes) != 1:
        raise EdgepackError(f"FFN pruning must leave every layer the same size (got {sorted(sizes)}): "
                            "a transformers config has one intermediate size for all layers")
    for i, layer in enumerate(layer_list):
        up, down = arch.get_path(layer, fam.ffn_up), arch.get_path(layer, fam.ffn_down)
        rows = keep_idx[i]
        if fam.ffn_gated:  # GLU: the up projection's rows are [input | gate], neuron n is rows n and size + n
            rows = torch.cat([rows, rows + down.in_features])
        arch.set_path(layer, fam.ffn_up, prune_linear_layer(up, rows, dim=0))
        arch.set_path(layer, fam.ffn_down, prune_linear_layer(down, keep_idx[i], dim=1))
    setattr(model.config, fam.ffn_field, sizes.pop())
    return {i: len(v) for i, v in keep_idx.items()}


def drop_layers(model: Any, indices: Sequence[int]) -> list[int]:
    """Remove whole encoder layers in place (negative indices allowed); return the removed indices."""
    import torch

    fam, layer_list = arch.family(model), arch.layers(model)
    n = len(layer_list)
    drop = sorted({i + n if i < 0 else i for i in map(int, indices)})
    if any(not 0 <= i < n for i in drop):
        raise EdgepackError(f"drop_layers {list(indices)} out of range for a model with {n} layers")
    if len(drop) >= n:
        raise EdgepackError(f"cannot drop all {n} layers; keep at least one")
    kept = [i for i in range(n) if i not in drop]
    overrides = kept_attention_config(model.config, kept)  # alternating attention kinds stay
    arch.set_path(model.base_model, fam.layers, torch.nn.ModuleList([layer_list[i] for i in kept]))
    for new_i, old_i in enumerate(kept):
        for mod in layer_list[old_i].modules():
            if hasattr(mod, "layer_idx"):
                mod.layer_idx = new_i  # kv-cache bookkeeping; harmless for encoders
    old_pruned = {int(k): v for k, v in (model.config.pruned_heads or {}).items()}
    model.config.pruned_heads = {new_i: old_pruned[old_i] for new_i, old_i in enumerate(kept) if old_i in old_pruned}
    setattr(model.config, fam.layers_field, len(kept))
    for k, v in overrides.items():
        setattr(model.config, k, v)
    return drop


def select_heads(model: Any, scores: Sequence[Any], fraction: float, scope: str = "global") -> dict[int, list[int]]:
    """Choose the lowest-scoring heads to remove: ``round(fraction * all current heads)`` of them.

    ``scores[i]`` scores the current heads of layer i. "global" ranks all heads after dividing each
    layer's scores by their L2 norm (Michel et al. 2019); "layer" removes the same share per layer.
    Every layer keeps at least one head. Returns ``{layer: [original head ids]}``.
    """
    import torch

    if not 0.0 <= fraction < 1.0:
        raise EdgepackError(f"head fraction must be in [0, 1), got {fraction}")
    counts = [len(s) for s in scores]
    chosen: dict[int, list[int]] = {}
    if scope == "layer":
        for i, s in enumerate(scores):
            k = min(round(fraction * len(s)), len(s) - 1)
            chosen[i] = torch.argsort(s)[:k].tolist()
    elif scope == "global":
        normed = [s / (s.norm() + 1e-12) for s in scores]
        flat = sorted((float(v), i, h) for i, s in enumerate(normed) for h, v in enumerate(s))
        budget = round(fraction * sum(counts))
        for _, i, h in flat:
            if budget == 0:
                break
            if len(chosen.get(i, [])) < counts[i] - 1:
                chosen.setdefault(i, []).append(h)
                budget -= 1
    else:
        raise EdgepackError(f"head scope must be 'global' or 'layer', got {scope!r}")
    return {i: sorted(arch.original_head_ids(model, i)[h] for h in hs) for i, hs in chosen.items() if hs}


def select_ffn(scores: Sequence[Any], fraction: float, multiple_of: int = 1) -> dict[int, list[int]]:
    """Choose the lowest-scoring FFN neurons of each layer; the same count in every layer.

    The kept count ``round((1 - fraction) * size / multiple_of) * multiple_of`` (at least
    ``multiple_of``) keeps matrix sizes friendly to vectorised kernels. Returns ``{layer: [indices]}``.
    """
    import torch

    if not 0.0 <= fraction < 1.0:
        raise EdgepackError(f"ffn fraction must be in [0, 1), got {fraction}")
    sizes = {len(s) for s in scores}
    if len(sizes) != 1:
        raise EdgepackError(f"layers have different FFN sizes {sorted(sizes)}; cannot prune them uniformly")
    size = sizes.pop()
    keep = max(multiple_of, round((1.0 - fraction) * size / multiple_of) * multiple_of)
    keep = min(keep, size)
    return {i: sorted(torch.argsort(s)[: size - keep].tolist()) for i, s in enumerate(scores)}
